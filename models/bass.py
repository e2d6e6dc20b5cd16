"""The bass line's last note, kept for the sampler (Runtime.sample's `bass_repeat`).

The bass line is the lowest note of each chord (training.texture.bass_line). Free-running, the
network's left hand strikes the bass it just played again far more often than a pianist's does
(validation, 160 x 400 notes: 9 % of the bass line's steps against MAESTRO's 3.5 %), and the
classifier two-sample test leans on the bass line's intervals more than on any other feature.
The error is the network's pitch given the step: teacher-forced, given the true history and step,
it draws such a note about twice as often as the pianists played one, so the sampler draws it
again with its step kept. A chord's notes come in any order, so whether a note drawn now makes
its chord's bass the last chord's again is judged on the notes of the chord played so far.
"""

from __future__ import annotations

import numpy as np

from models.echo import NO_PITCH
from models.notes import CHORD_SECONDS

ABOVE_ALL = 128  # the lowest pitch of a chord with no notes yet


class ChordBass:
    """Per stream: the lowest pitch (MIDI number) of the chord being played, and of the chord before it."""

    def __init__(self, batch: int):
        self.chord_lowest = np.full(batch, ABOVE_ALL, np.int64)
        self.last_lowest = np.full(batch, NO_PITCH, np.int64)

    def strike(self, pitch: np.ndarray, step_seconds: np.ndarray) -> None:
        """A note of every stream (MIDI numbers [B], seconds since the note before [B])."""
        pitch = pitch.astype(np.int64)
        starts = step_seconds >= CHORD_SECONDS
        self.last_lowest = np.where(starts & (self.chord_lowest != ABOVE_ALL), self.chord_lowest, self.last_lowest)
        self.chord_lowest = np.where(starts, pitch, np.minimum(self.chord_lowest, pitch))

    def repeats(self, rows: np.ndarray, pitch: np.ndarray, step_seconds: np.ndarray) -> np.ndarray:
        """[len(rows)] booleans: would these notes of streams `rows` (MIDI numbers, their steps in
        seconds) strike the last chord's bass again as the lowest note of their own chord so far?
        A note that starts a chord is its chord's lowest so far; the chord being played ends."""
        pitch = pitch.astype(np.int64)
        starts = step_seconds >= CHORD_SECONDS
        lowest, last = self.chord_lowest[rows], self.last_lowest[rows]
        return np.where(starts, pitch == lowest, (pitch == last) & (pitch < lowest))
