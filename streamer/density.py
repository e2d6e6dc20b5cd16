"""Bridge a live density change until the network has caught up with it.

The network hears a new density at once (it is a control input of the step graph) but follows
it over many notes (ten seconds and more for the shipped model, which learned the density as one
value for a passage): it learned from real music, whose density changes smoothly. Until its own
rate reaches the new target, each step it draws is stretched (or shrunk) by its recent rate over
the target, so a CC or a key press is heard on the next note generated, within the lookahead.
Once the network plays within `tolerance` of the target the bridge lets go, and its own timing,
with all its variety, plays unchanged.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass
class DensityBridge:
    """Steps in seconds, rates in notes per second."""

    recent_notes: int = 12  # the network's current rate: over its last this many notes
    tolerance: float = 0.15  # let go once the network's own rate is this close to the target
    # Never stretch or shrink a step by more than this factor. 4 was too tight for a network that
    # holds its pace for a passage (the model trained on a passage's density): turned to 4 notes/s
    # from about 15, 11 of 48 streams still played over 6 in the next 24 notes; at 8, 3 of 48
    # (median 3.9 notes/s, was 4.6).
    max_stretch: float = 8.0

    def __post_init__(self):
        self.steps = collections.deque(maxlen=self.recent_notes)
        self.target = None
        self.active = False

    def retarget(self, density: float | None) -> None:
        """A new target (None: free play); bridging starts if the network is off it."""
        if density != self.target:
            self.target = density
            self.active = density is not None

    def network_rate(self) -> float | None:
        seconds = sum(self.steps)
        if len(self.steps) < self.steps.maxlen or seconds <= 0:
            return None
        return len(self.steps) / seconds

    def stretch(self, step_seconds: float) -> float:
        """The step to play for the step the network drew (which it keeps as its own context)."""
        self.steps.append(step_seconds)
        rate = self.network_rate()
        if not self.active or rate is None:
            return step_seconds
        factor = rate / self.target
        if abs(factor - 1.0) <= self.tolerance:
            self.active = False
            return step_seconds
        factor = min(max(factor, 1.0 / self.max_stretch), self.max_stretch)
        return step_seconds * factor
