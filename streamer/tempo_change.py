"""Reading a tempo change from MIDI clock arrivals: where it began and how many pulses were lost
in it. Pure functions of lateness on the line the clock kept before (intervals); the clock
follower (streamer/clock.py) asks when a change has shown itself, and again through the beat after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOST_LOST_IN_A_CHANGE = 2  # pulses a tempo change may hide (more lost at once is a stall's, told by level)
BUNCHED = 0.35  # arrivals closer than this (intervals) came together: a stall's backlog
STALL_JUMP = 4.5  # intervals one arrival may come later than the one before through a change (see _told)


@dataclass
class ChangeReading:
    """Arrivals read through a tempo change: `lost` pulses never came before arrival `first_after`,
    and arrival `first_new` is the first at the new tempo (indices; the arrivals' count for none)."""

    lost: int
    first_after: int
    first_new: int
    stamped_late: frozenset = frozenset()  # arrivals a stall held back: counted, no time to go by


def read_through_change(counters: np.ndarray, late: np.ndarray, noise: float) -> ChangeReading:
    """Where a tempo change begins among recent arrivals, and how many pulses were lost among them.

    `late` is each arrival's lateness on the line through the pulses before them (intervals) by
    its `counters` as counted so far. A tempo change from pulse K on makes lateness a ramp from
    K (continuous: the old line holds up to it); a lost pulse adds a step of one. Read as a ramp
    alone, a pulse lost within a beat of a change went uncounted and the grid stayed a pulse off
    (a CI run, 27.8 ms). A step must leave three pulses after it (one late stamp is no step) and
    fit better than the ramp alone by more than `noise` (a standard deviation, intervals)
    explains: a halved tempo is a ramp of one a pulse, not a pulse lost each time.
    """
    told = _told(np.asarray(counters), late)
    if len(told) < 2:
        return ChangeReading(0, len(late), len(late), frozenset(range(len(late))))
    if len(told) < len(late):  # read the others, and say where their indices fall among all
        reading = read_through_change(np.asarray(counters)[told], late[told], noise)
        among_all = np.append(told, len(late))
        return ChangeReading(reading.lost, int(among_all[reading.first_after]), int(among_all[reading.first_new]),
                             frozenset(set(range(len(late))) - set(told.tolist())))
    count = len(late)
    counters = np.asarray(counters) - counters[0]
    outlier = max(5.0 * noise, 0.5)
    errors, kinks = _ramp_fit(late, counters[None, :], outlier)
    best_error, best = errors[0], ChangeReading(0, count, _first_after_kink(counters, kinks[0]))
    if count < 4:
        return best
    index = np.arange(count)
    penalty = max(25.0 * noise ** 2, 0.05)
    for lost in range(1, MOST_LOST_IN_A_CHANGE + 1):
        steps = lost * (index[None, :] >= index[:count - 2, None])  # row j: `lost` before arrival j
        errors, kinks = _ramp_fit(late[None, :] - steps, counters[None, :] + steps, outlier)
        row = int(np.argmin(errors))
        if errors[row] + penalty >= best_error:
            break
        best_error, best = errors[row], ChangeReading(lost, row, _first_after_kink(counters + steps[row], kinks[row]))
    return best


def _told(counters: np.ndarray, late: np.ndarray) -> np.ndarray:
    """The indices of arrivals whose time tells the tempo. Not a stall's backlog: arrivals
    stamped together (less than BUNCHED of an interval apart; no tempo change goes that fast),
    nor one later than the one before by more than a third of the tempo and two lost pulses
    explain (a stall's late stamp)."""
    gaps = np.diff(counters) + np.diff(late)  # the old line's intervals between arrivals
    bunched = np.zeros(len(late), bool)
    bunched[:-1] |= gaps < BUNCHED
    bunched[1:] |= gaps < BUNCHED
    told: list = []
    for index in np.nonzero(~bunched)[0]:
        if not told or late[index] - late[told[-1]] <= STALL_JUMP:
            told.append(int(index))
    return np.array(told, dtype=int)


def _first_after_kink(counters: np.ndarray, kink: int) -> int:
    return int(np.searchsorted(counters, kink, side="right"))


def _ramp_fit(late: np.ndarray, counters: np.ndarray, outlier: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row of lateness (and counters) the best ramp from any pulse on: lateness =
    slope * max(counter - kink, 0). Its error and its kink (a counter) per row. An arrival
    `outlier` or more off the ramp (a late stamp) counts as that much, and the ramp is fitted
    again without it, so that one stamp cannot make a lost pulse."""
    late = np.atleast_2d(late)
    kinks = np.arange(counters.min() - 1, counters.max() + 1)
    ramp = np.maximum(counters[None] - kinks[:, None, None], 0).astype(float)  # (kinks, rows, pulses)
    weight = np.ones_like(ramp)
    for _ in range(2):
        scale = np.sum(weight * ramp * ramp, axis=-1)
        slope = np.where(scale > 0, np.sum(weight * ramp * late[None], axis=-1) / np.maximum(scale, 1e-12), 0.0)
        residuals = late[None] - slope[..., None] * ramp
        weight = (np.abs(residuals) < outlier).astype(float)
    errors = np.sum(np.minimum(residuals ** 2, outlier ** 2), axis=-1)  # (kinks, rows)
    best = np.argmin(errors, axis=0)
    return errors[best, np.arange(len(best))], kinks[best]
