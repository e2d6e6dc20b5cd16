"""The clock follower a beat after a tempo change, on seeded clocks: `python -m bench.tempo_change`.

A DAW's clock at 120 BPM changes to 90 after 8 beats. Its pulses carry +-1 ms of jitter, a share
of them is sent late (a DAW's thread held back), and JACK stamps each at the start of the next
64-frame cycle. For each 16th 1-2 beats after the change, the follower is asked where it is 0.25 s
before it sounds (when the engine times a note, its lookahead and some). Figures: that error,
less its median (the stamping's constant delay), p99, max and the share over 1.5 ms. Nothing
timed: the same figures every run.
"""

from __future__ import annotations

import argparse

import numpy as np

from streamer.clock import PULSES_PER_BEAT, ClockFollower

JACK_PERIOD_SECONDS = 64 / 44100
CHANGE_BEAT = 8
TIMED_AHEAD_SECONDS = 0.25


def errors_after_change(seed: int, late_seconds: float, late_share: float) -> np.ndarray:
    """Milliseconds the follower is off at the 16ths 1-2 beats after the change, each asked
    TIMED_AHEAD_SECONDS before it sounds."""
    rng = np.random.default_rng(seed)
    before, after = 60 / 120 / PULSES_PER_BEAT, 60 / 90 / PULSES_PER_BEAT
    intervals = np.where(np.arange(PULSES_PER_BEAT * 14) < PULSES_PER_BEAT * CHANGE_BEAT, before, after)
    ideal = 1.0 + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    sent = ideal + rng.uniform(-0.001, 0.001, len(ideal))
    sent[rng.random(len(ideal)) < late_share] += late_seconds
    stamps = (np.floor(sent / JACK_PERIOD_SECONDS) + 1) * JACK_PERIOD_SECONDS
    change = ideal[PULSES_PER_BEAT * CHANGE_BEAT]
    targets = [change + after * 6 * sixteenth for sixteenth in range(4, 9)]
    clock, errors = ClockFollower(), {}
    for index, stamp in enumerate(stamps):
        clock.pulse(stamp)
        if index == 2 * PULSES_PER_BEAT:
            clock.start(stamp)
        for target in targets:
            if target not in errors and stamp >= target - TIMED_AHEAD_SECONDS and clock.bpm:
                beat = clock.beat_at(target + JACK_PERIOD_SECONDS / 2)
                errors[target] = (beat - round(beat * 4) / 4) * after * PULSES_PER_BEAT * 1e3
    return np.array(list(errors.values()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=200, help="seeded clocks per case")
    arguments = parser.parse_args(argv)
    for late_ms, share in ((0, 0.0), (3, 0.05), (5, 0.05)):
        errors = np.concatenate([errors_after_change(seed, late_ms / 1e3, share) for seed in range(arguments.clocks)])
        off = np.abs(errors - np.median(errors))
        print(f"pulses {late_ms} ms late at {share:.0%}: onsets 1-2 beats after the change off p99 "
              f"{np.percentile(off, 99):.2f} ms, max {off.max():.2f} ms, over 1.5 ms {np.mean(off > 1.5):.1%}")


if __name__ == "__main__":
    main()
