"""The span a stream plays in: notes far beyond the last few hundred notes' are drawn less often.

A pianist's passage keeps to a register for a while. Free-running, the network wanders: over 400
notes its excerpts spanned 63 semitones (the lowest to the highest pitch) against MAESTRO test's
56 and validation's 58, and the pitch range was what the classifier two-sample test told them
apart by most. `RecentSpan` keeps each stream's last SPAN_NOTES pitches (drawn, fed, or a call
played to it); the sampler keeps of a pitch's probability e^(-d / softness), d being how many
semitones the pitch lies beyond that span (`Runtime.sample`'s `span_hold`, the softness in
semitones; 0: off). Within the span nothing changes, so the stream can still reach further,
a semitone or an octave at a time, and the span moves with it.
"""

from __future__ import annotations

import numpy as np

SPAN_NOTES = 200  # chosen on validation: 100 and 400 (at softness 4) scored worse
SPAN_WARMUP = 50  # a stream's first notes have no span to keep to


class RecentSpan:
    """Per stream, the last SPAN_NOTES pitches (MIDI numbers), one note of every stream at a time."""

    def __init__(self, batch: int, notes: int = SPAN_NOTES):
        self.pitches = np.zeros((batch, notes), np.int64)
        self.count = 0

    def strike(self, pitch: np.ndarray) -> None:
        self.pitches[:, self.count % self.pitches.shape[1]] = pitch
        self.count += 1

    def weights(self, softness: float) -> np.ndarray | None:
        """[B, 128] the share of its probability each pitch keeps (1 within the span), or None
        while the streams have played fewer than SPAN_WARMUP notes."""
        if self.count < SPAN_WARMUP:
            return None
        played = self.pitches[:, : min(self.count, self.pitches.shape[1])]
        lowest, highest = played.min(axis=1), played.max(axis=1)
        keys = np.arange(128)
        beyond = np.maximum(np.maximum(lowest[:, None] - keys, keys - highest[:, None]), 0)
        return np.exp(-beyond / softness)
