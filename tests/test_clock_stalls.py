"""The clock follower through a loaded machine, fuzzed: seeded clocks that lose pulses, deliver a
stall's backlog at once with one stamp, or both, at random places (before Start, across it, long
enough to silence the clock). What cadenza must get right is the song position: where it puts a
beat at the end against where the DAW's clock put it. Seeded, so it cannot flake.

A clean-clone run placed a turn's answer 9 pulses (187 ms) late after counting 8 pulses lost;
these clocks found the ways the follower lost count before it was mended (a backlog across
Start, a backlog longer than two beats counted twice, pulses lost in the clock's first beat
bending the line for four, more lost while the first were being told)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from bench.daw import PULSES_PER_BEAT
from streamer.clock import ClockFollower

JACK_PERIOD_SECONDS = 64 / 44100  # the sync tests' server: a message is stamped at its cycle's start
START_PULSE = 2 * PULSES_PER_BEAT  # Start comes half a pulse before this one (the tests' DAW)
WATCH_SECONDS = 0.005  # how often the engine asks whether the clock is gone


@dataclass
class StalledClock:
    """How a loaded machine mangles a clock: every `every` pulses (a range) one event of `kinds`,
    `length` pulses long (a range): "lost" (they never arrive), "backlog" (they arrive at once,
    stamped with the last one's time) or "both" (the first of them lost, the rest a backlog)."""

    bpm: float = 120.0
    jitter_seconds: float = 0.001
    every: tuple = (30, 150)
    length: tuple = (1, 20)
    kinds: tuple = ("lost", "backlog", "both")
    near_start: bool = False  # the first event within half a beat of Start
    beats: int = 16  # after Start


def follow(clock_spec: StalledClock, seed: int) -> tuple[int, int, float] | None:
    """(pulses lost, pulses the follower counted lost, where it puts the last beat against the DAW
    in ms); None where Start itself was lost (then nothing plays, and nothing is placed)."""
    rng = np.random.default_rng(seed)
    seconds_per_pulse = 60 / clock_spec.bpm / PULSES_PER_BEAT
    total = START_PULSE + clock_spec.beats * PULSES_PER_BEAT
    ideal = 1.0 + seconds_per_pulse * np.arange(total)
    arrivals = np.ceil((ideal + rng.uniform(-1, 1, total) * clock_spec.jitter_seconds) / JACK_PERIOD_SECONDS) * JACK_PERIOD_SECONDS
    arrived = np.ones(total, dtype=bool)
    first = int(rng.integers(START_PULSE - 12, START_PULSE + 12)) if clock_spec.near_start else int(rng.integers(*clock_spec.every))
    while first < total - 40 - clock_spec.length[1]:
        kind = clock_spec.kinds[int(rng.integers(len(clock_spec.kinds)))]
        length = int(rng.integers(clock_spec.length[0], clock_spec.length[1] + 1))
        stall = slice(first, first + length)
        if kind == "lost":
            arrived[stall] = False
        else:
            arrivals[stall] = arrivals[first + length - 1]
            if kind == "both":
                arrived[first:first + int(rng.integers(1, length + 1))] = False
        first += length + int(rng.integers(*clock_spec.every))
    arrivals = np.maximum.accumulate(arrivals)
    if not arrived[START_PULSE - 1] and not arrived[START_PULSE]:
        return None
    start_sent = ideal[START_PULSE] - seconds_per_pulse / 2 + rng.uniform(-1, 1) * clock_spec.jitter_seconds
    start_stamp = np.ceil(start_sent / JACK_PERIOD_SECONDS) * JACK_PERIOD_SECONDS
    before = arrivals[START_PULSE - 1] if arrived[START_PULSE - 1] else arrivals[START_PULSE]
    start_stamp = max(start_stamp, min(arrivals[START_PULSE], before))  # in a backlog, with it

    follower, last = ClockFollower(), None
    for index in range(total):
        if index == START_PULSE:
            follower.start(float(start_stamp))
        if not arrived[index]:
            continue
        if last is not None:
            for now in np.arange(last + WATCH_SECONDS, arrivals[index], WATCH_SECONDS):
                follower.watch(float(now))
        follower.pulse(float(arrivals[index]))
        last = float(arrivals[index])
    beat = clock_spec.beats - 1
    error_ms = (follower.time_of_beat(beat) - ideal[START_PULSE + beat * PULSES_PER_BEAT]) * 1e3
    return int(np.sum(~arrived)), follower.lost_pulses, error_ms


def _misplaced(clock_spec: StalledClock, seeds: range, limit_ms: float = 3.0) -> list:
    results = [(seed, follow(clock_spec, seed)) for seed in seeds]
    return [(seed, result) for seed, result in results if result is not None and abs(result[2]) > limit_ms]


@pytest.mark.parametrize("near_start", [False, True])
@pytest.mark.parametrize("bpm", [60, 120, 200])
def test_losses_and_backlogs_on_a_steady_clock_never_move_the_song(bpm, near_start):
    """A clock jittering +-1 ms (the tests' DAW), an event every 30-150 pulses, each up to 20
    pulses long: every beat where the DAW put it, within 3 ms, on 100 clocks of 16 beats."""
    assert _misplaced(StalledClock(bpm=bpm, near_start=near_start), range(100)) == []


@pytest.mark.parametrize("near_start", [False, True])
def test_stalls_longer_than_the_clock_may_be_silent_are_counted_once(near_start):
    """20-100 pulses at a time at 120 BPM, past the two beats after which the clock is taken for
    gone: a backlog that long was counted as pulses unheard and then once more as it came (every
    note 2.5 s off)."""
    assert _misplaced(StalledClock(length=(20, 100), near_start=near_start), range(60)) == []


def test_a_machine_stalling_every_few_beats_keeps_the_song_on_nearly_every_clock():
    """An event every 10-60 pulses (a stall or a loss every quarter second to second): before the
    mending 24 of 200 clocks ended off the DAW's grid; now none does (one is let pass)."""
    assert len(_misplaced(StalledClock(every=(10, 60)), range(200))) <= 1


@pytest.mark.parametrize("near_start, most", [(False, 3), (True, 4)])
def test_losses_and_backlogs_on_a_clock_jittering_five_ms_at_200_bpm_mostly_keep_the_song(near_start, most):
    """+-5 ms at 200 BPM is +-0.4 of an interval: a step of one lost pulse and the jitter can read
    alike, and a few clocks still end a pulse or more off (measured: 2 of 200, and 3 with the first
    event near Start; before the mending 5 and 9). Kept from growing."""
    clock_spec = StalledClock(bpm=200, jitter_seconds=0.005, near_start=near_start)
    assert len(_misplaced(clock_spec, range(200))) <= most
