"""Reading held clock pulses: how many pulses were lost before them, or whether they tell a new tempo.

ClockFollower (streamer/clock.py) holds a pulse that comes half an interval late or more, with
the ones after it, until they tell why: a lost pulse (they stand level, whole intervals late), a
late stamp (they come back to the line) or a slower tempo (they drift on). These read it from
how late each held pulse is by the line, in the line's intervals.
"""

from __future__ import annotations

import numpy as np

LATE_PULSE = 0.5  # a pulse this many intervals late by the line is held until the next ones tell why
STEADY_NOISE = 0.1  # a clock whose pulses stray less than this (intervals, a standard deviation) is steady


def falling_steadily(late: np.ndarray) -> bool:
    """The last arrivals each earlier on the line than the one before by less than 0.7 of an
    interval: a faster tempo (up to twice as fast). Three falling, or two by a clear step. (A
    stall's backlog drains by about one interval a pulse; late stamps come back at once.)"""
    falls = -np.diff(late[-4:])
    steady = (falls > 0) & (falls < 0.7)
    return bool((len(falls) >= 3 and np.all(steady)) or (len(falls) >= 2 and np.all(steady[-2:] & (falls[-2:] > 0.15))))


def step_pending(late: np.ndarray) -> bool:
    """The last held pulse jumped a whole interval off level ones, or jumped and the next stands
    level: one more pulse lost, not yet a drift; the next pulses tell (a halved tempo jumps on
    every pulse, so the pulses before its jump are not level)."""
    jumps = np.diff(late[-4:])
    return bool(len(jumps) >= 2 and ((jumps[-1] > LATE_PULSE and np.ptp(late[-4:-1]) < LATE_PULSE)
                                     or (jumps[-2] > LATE_PULSE and jumps[-1] < LATE_PULSE)))


def _pending_step(late: np.ndarray) -> int:
    """How many of the last held pulses stand past a step up that step_pending sees (1 or 2; 0
    where it sees none). Held to the count, the pulses before a step are told without them: with
    them, 5 pulses lost and 14 more as those were told read as a new tempo, and none counted."""
    if not step_pending(late):
        return 0
    jumps = np.diff(late[-4:])
    return 1 if jumps[-1] > LATE_PULSE else 2


def lost_by_pulse(held: int, tail: np.ndarray, back: bool, drifted: bool, noise: float | None,
                  jitter: float) -> tuple[list | None, int]:
    """For each of `held` pulses, how many pulses were lost before it (None where they tell a new
    tempo), and how many of the last are left held, to be told with the pulses after them.

    `tail`: how late the held pulses since a stall drained are by the line (its intervals);
    `back`: the last are back on it; `drifted`: they drift on (a slower tempo); `noise`: the
    spread of pulses about the line in its intervals (at least JACK's quantization), None until a
    beat has measured it; `jitter`: the spread as measured, in its intervals."""
    if back:
        return [0] * held, 0
    stairs = _stairs(tail, noise)
    if stairs is not None:  # more lost while the first was being told
        levels, unconfirmed = stairs
        return [int(levels[0])] * (held - len(tail)) + [int(level) for level in levels] + [0] * unconfirmed, unconfirmed
    step = _one_step(tail, jitter)
    if step is not None:  # one more lost while the first was being told, on a jittery clock
        return [step[0]] * (held - len(tail)) + step, 0
    pending = _pending_step(tail)
    if pending and not drifted:  # more lost as the first were being told: those before the step now
        lost = lost_before(tail[:-pending], jitter)
        if lost is not None:
            return [lost] * (held - pending) + [0] * pending, pending
    lost = None if drifted else lost_before(tail, jitter)
    return (None if lost is None else [lost] * held), 0


def _one_step(tail: np.ndarray, jitter: float) -> list | None:
    """Pulses lost before each held pulse where they stand on two levels, k and k + 1 intervals
    late, the second on two pulses or more (four in all), and two levels fit them better than a
    line (a slower tempo drifts on; a step stands). A server losing 1 pulse in 80 lost two 8
    apart, and on a clock jittering +-5 ms (where _stairs does not read) they were read as one
    loss and a tempo change: every note after them a pulse late. None where it is not so plain."""
    count = len(tail)
    if count < 4:
        return None
    spread = max(jitter, 0.05)  # the pulses' spread about their level (intervals)
    best = None
    for split in range(1, count - 1):
        before, after = tail[:split], tail[split:]
        level = round(float(np.mean(before)))
        if level < 1 or round(float(np.mean(after))) != level + 1:
            continue
        if any(abs(float(np.mean(part)) - part_level) > 3.0 * spread / np.sqrt(len(part)) + 0.1
               for part, part_level in ((before, level), (after, level + 1))):
            continue
        misfit = float(np.sum((before - level) ** 2) + np.sum((after - level - 1) ** 2))
        if best is None or misfit < best[0]:
            best = (misfit, split, level)
    if best is None:
        return None
    misfit, split, level = best
    index = np.arange(count)
    line_misfit = float(np.sum((tail - np.polyval(np.polyfit(index, tail, 1), index)) ** 2))
    return [level] * split + [level + 1] * (count - split) if misfit < line_misfit else None

def _stairs(tail: np.ndarray, noise: float | None) -> tuple[np.ndarray, int] | None:
    """(pulses lost before each held pulse, how many of the last are not told yet) where they
    stand on whole intervals late and step up: a server dropping pulses (8 of 433 in one run
    here, two in a row, four within 13 pulses) made them read as one loss and a slower tempo,
    and the notes came pulses late. Only on a steady clock, where jitter cannot blur a step
    into a drift. A step must stand on two pulses (the last ones, until it does, wait for the
    next pulses); stepping on three pulses running, or more than once in three, is a slower
    tempo (a halved one steps every pulse)."""
    if len(tail) < 4 or noise is None or noise >= STEADY_NOISE:
        return None
    levels = np.round(tail).astype(int)
    if levels[0] < 1 or np.any(np.abs(tail - levels) >= 0.3) or np.any(np.diff(levels) < 0):
        return None
    steps = np.diff(levels) > 0
    if levels[-1] - levels[0] > len(tail) // 3 or np.any(steps[2:] & steps[1:-1] & steps[:-2]):
        return None
    told = len(levels)
    while told >= 2 and levels[told - 1] != levels[told - 2]:  # a last step standing on one pulse
        told -= 1
    if told < 4 or (told == len(levels) and levels[-1] == levels[0]):
        return None  # too few told, or all on one level (one loss: lost_before)
    return levels[:told], len(levels) - told

def lost_before(tail: np.ndarray, jitter_in_intervals: float) -> int | None:
    """How many pulses were lost, read from the settled held pulses: level at about k intervals
    late (k = 0: late stamps only). None where they drift (more than their jitter explains):
    a slower tempo; a 10 % slowdown at 200 BPM reaches half an interval before the tempo check
    has seen it twice."""
    settled = tail[2:] if len(tail) > 4 else tail
    level = float(np.median(settled))
    lost = round(level)
    if lost < 0 or abs(level - lost) >= LATE_PULSE:
        return None
    index = np.arange(len(settled))
    if len(settled) < 3:
        return lost
    trend = float(np.polyfit(index, settled, 1)[0])
    trend_limit = max(0.05, 3.0 * jitter_in_intervals / np.sqrt(np.sum((index - index.mean()) ** 2)))
    return lost if abs(trend) < trend_limit else None
