"""cadenza's own tempo (--bpm) and the grid its notes land on (--quantize, --swing).

Times are monotonic seconds, positions are beats (quarter notes) from the song's start, as in
streamer/clock.py, whose ClockFollower answers the same questions as FixedTempo for a DAW's clock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


class FixedTempo:
    """cadenza's own tempo: beat 0 at `origin` (monotonic seconds), always running."""

    def __init__(self, bpm: float, origin: float):
        self.bpm = bpm
        self.origin = origin
        self.running = True
        self.transport_version = 0
        self.transport_changed = threading.Event()  # never set: its transport never changes

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm

    def watch(self, now: float) -> bool:
        return False  # cadenza's own tempo never vanishes

    def start_beat(self) -> float:
        return 0.0

    def time_of_beat(self, beat: float) -> float:
        return self.origin + beat * self.seconds_per_beat

    def beat_at(self, time: float) -> float:
        return (time - self.origin) / self.seconds_per_beat


QUANTIZE_CHOICES = {"off": None, "1/4": Fraction(1), "1/8": Fraction(1, 2), "1/8t": Fraction(1, 3),
                    "1/16": Fraction(1, 4), "1/16t": Fraction(1, 6), "1/32": Fraction(1, 8)}


@dataclass
class Grid:
    """Onsets snapped to `step_beats`; with `swing` (0-0.75) every second grid point comes later
    by that fraction of a grid step (0: straight; about 0.33: a triplet feel)."""

    step_beats: float
    swing: float = 0.0

    def point(self, index: int) -> float:
        return (index + (self.swing if index % 2 else 0.0)) * self.step_beats

    def snap(self, beat: float, not_before: float = -np.inf) -> float:
        """The grid point nearest `beat` that is not earlier than `not_before`."""
        index = int(np.floor(beat / self.step_beats))
        candidates = [self.point(i) for i in (index - 1, index, index + 1, index + 2)]
        allowed = [c for c in candidates if c >= not_before - 1e-9] or [self.point(self.index_after(not_before))]
        return min(allowed, key=lambda c: abs(c - beat))

    def index_after(self, beat: float) -> int:
        index = int(np.floor(beat / self.step_beats)) - 1
        while self.point(index) < beat - 1e-9:
            index += 1
        return index
