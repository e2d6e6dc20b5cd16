"""The lines' leaps: a tilt that keeps the top and bass lines moving as the pianists' do.

The top line (the highest note of each chord) and the bass line (the lowest) are where the
classifier two-sample test hears cadenza most (README, "What the trees hear, by group").
Free-running, the network's lines move by small steps too often and leap too rarely: on
validation its top line moved by a second on 36.5 % of its steps (MAESTRO 26.8 %) and leapt an
octave or more on 22.1 % (29.9 %); the bass line leapt so on 32.4 % (39.5 %). Teacher-forced it
is near the data (models/intervals.py); the error grows as it plays from its own notes.

`LineTables` holds, for each line, how much of its probability a note keeps by the interval it
would make from where the line is (25 classes: -12 .. +12 semitones, beyond an octave in the
outer classes, as training.texture counts them). A table is the data's share of each class over
the model's own share (training/line_tilt.py fits it on the training split), divided by its
largest entry: at full strength the sampler would draw the lines' intervals as the data has
them, as far as one note's choice decides its line's. `strength` (the Sampling's `line_tilt`)
is the power the tables are raised to: 0 leaves the network alone, 1 is the full correction.

A note is judged where it starts a chord: against the last chord's top for the top line and
its lowest for the bass line (a chord's first note is both its top and its lowest so far). A
note the echo offered (a figure coming back, models/echo.py) is left alone: most figures move by
step, and the tilt would undo the motifs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import CadenzaError

INTERVAL_LIMIT = 12  # beyond an octave: the outer classes
LINE_CLASSES = 2 * INTERVAL_LIMIT + 1


def interval_class(pitch: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """[...] int64: the class (0 .. 24) of the interval from `anchor` to `pitch` (MIDI numbers)."""
    interval = np.asarray(pitch, np.int64) - np.asarray(anchor, np.int64)
    # np.clip's own checks cost more than the clip at every note: the same bounds, directly.
    return np.minimum(np.maximum(interval, -INTERVAL_LIMIT), INTERVAL_LIMIT) + INTERVAL_LIMIT


@dataclass(frozen=True)
class LineTables:
    """Per line, [LINE_CLASSES] acceptances (0-1, the largest 1) by the interval a note would make."""

    top: np.ndarray
    bass: np.ndarray

    @classmethod
    def from_card(cls, card: dict) -> "LineTables | None":
        """The card's `line_tilt` tables, or None for a card without them (the tilt is then off)."""
        tables = card.get("line_tilt")
        if not tables:
            return None
        top, bass = (np.asarray(tables[name], np.float64) for name in ("top", "bass"))
        if top.shape != (LINE_CLASSES,) or bass.shape != (LINE_CLASSES,):
            raise CadenzaError(f"the card's line_tilt tables must have {LINE_CLASSES} entries each")
        return cls(np.clip(top, 1e-3, 1.0), np.clip(bass, 1e-3, 1.0))

    def acceptance(self, strength: float, top_class: np.ndarray, bass_class: np.ndarray) -> np.ndarray:
        """How much of its probability each note keeps, by its classes from the two lines (each [N])."""
        return (self.top[top_class] * self.bass[bass_class]) ** strength


def tables_from_shares(real_top, generated_top, real_bass, generated_bass, floor: float = 1e-4) -> dict:
    """{"top": [25], "bass": [25]}: the real share of each interval class over the generated one,
    divided by the largest (so 0-1). A class neither set plays counts as a ratio of 1."""

    def table(real, generated):
        real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
        ratio = np.where((real > 0) | (generated > 0), (real + floor) / (generated + floor), 1.0)
        return [round(float(value), 4) for value in ratio / ratio.max()]

    return {"top": table(real_top, generated_top), "bass": table(real_bass, generated_bass)}
