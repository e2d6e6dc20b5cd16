"""The top line's memory: where a figure it is playing was played before, and how it went on.

A pianist states a figure and comes back to it, often a step higher or lower (a sequence). The
top line (the highest note of each chord) is where a listener hears that. `TopLineEcho` keeps the
last tops of each stream (what it played and what it was fed); when the last ECHO_INTERVALS
intervals of its top line were played before, the interval that followed them then is the
figure's next step now. The sampler offers that pitch to the network (Runtime.sample's `echo`),
which takes it only where it finds it plausible.
"""

from __future__ import annotations

import numpy as np

from models.notes import CHORD_SECONDS

# The intervals of a figure that must match before it is taken up: two (a three-note figure).
# With the pitch drawn at temperature 1, three matched too rarely (validation: motif recurrence
# 0.13 against MAESTRO's 0.19; two, offered 9 times in 10, 0.20).
ECHO_INTERVALS = 2
ECHO_MEMORY = 256  # chord tops remembered per stream (a few hundred notes, as the network's memory)
# A figure carried on this many chords running is let go: a pianist comes back to a motif and
# moves on; an echo that never stops is an ostinato.
ECHO_RUN = 8
NO_PITCH = -1


class TopLineEcho:
    """Per stream: the tops of the last ECHO_MEMORY chords, and the pitch that would carry a figure
    heard before on (the echo target) for a note drawn now."""

    def __init__(self, batch: int):
        self.tops = np.full((batch, ECHO_MEMORY), NO_PITCH, np.int64)  # oldest first, the last column the latest
        self.chord_top = np.full(batch, NO_PITCH, np.int64)  # the highest pitch of the chord being played
        self.run = np.zeros(batch, np.int64)  # chords running before this one in which an echo was played
        self.echoed = np.zeros(batch, bool)  # an echo was played in the chord being played
        self.pending = np.zeros(batch, bool)  # the note being drawn is an echo (see took)

    def took(self, rows: np.ndarray) -> None:
        """The notes being drawn for streams `rows` carry a figure on (counted when they are struck)."""
        self.pending[rows] = True

    def strike(self, pitch: np.ndarray, step_seconds: np.ndarray) -> None:
        """A note of every stream (MIDI numbers [B], seconds since the note before [B])."""
        pitch = pitch.astype(np.int64)
        starts = step_seconds >= CHORD_SECONDS
        if np.any(starts):
            self.run = np.where(starts, np.where(self.echoed, self.run + 1, 0), self.run)
            ended = starts & (self.chord_top != NO_PITCH)
            self.tops[ended] = np.concatenate((self.tops[ended, 1:], self.chord_top[ended, None]), axis=1)
            self.echoed &= ~starts
        self.echoed |= self.pending
        self.pending[:] = False
        self.chord_top = np.where(starts, pitch, np.maximum(self.chord_top, pitch))

    def targets(self, step_seconds: np.ndarray) -> np.ndarray:
        """[B] the echo target of a note drawn with these steps (seconds): a new chord's (the chord
        being played ends), or the current chord's while it has not reached it (a chord's notes
        come lowest first); NO_PITCH where none, or where a figure has run ECHO_RUN chords."""
        target = np.full(len(step_seconds), NO_PITCH, np.int64)
        starts = step_seconds >= CHORD_SECONDS
        rows = np.flatnonzero(starts & (np.where(self.echoed, self.run + 1, 0) < ECHO_RUN))
        if len(rows):
            target[rows] = echo_targets(np.concatenate((self.tops[rows, 1:], self.chord_top[rows, None]), axis=1))
        rows = np.flatnonzero(~starts & (self.run < ECHO_RUN))
        if len(rows):
            current = echo_targets(self.tops[rows])  # as it was when the chord began
            target[rows] = np.where(self.chord_top[rows] < current, current, NO_PITCH)
        return target


def echo_targets(lines: np.ndarray, intervals: int = ECHO_INTERVALS) -> np.ndarray:
    """[B] for each line of pitches [B, N] (NO_PITCH where unknown, at the start): the pitch that
    follows its last note as an earlier occurrence of its last `intervals` intervals went on (the
    same interval from the note it reached), or NO_PITCH where none. A figure of repeated
    notes alone is no motif (as training.texture.motif_recurrence counts them)."""
    batch, length = lines.shape
    earlier = length - 1 - 2 * intervals  # earlier figures: figure i is steps i .. i + intervals - 1
    if earlier < 1:
        return np.full(batch, NO_PITCH, np.int64)
    steps = np.diff(lines, axis=1)  # [B, N-1]
    known = lines != NO_PITCH
    last = steps[:, -intervals:]  # the figure just played
    last_known = known[:, -intervals - 1:].all(axis=1) & np.any(last != 0, axis=1)
    if not last_known.any():
        return np.full(batch, NO_PITCH, np.int64)
    # Earlier figures with the step that followed them, ending before the figure just played begins:
    # slices of `earlier` columns, compared interval by interval (a live stream draws through here
    # at every note, and window views over the line cost more than the comparisons).
    matches = np.repeat(last_known[:, None], earlier, axis=1)
    for offset in range(intervals):
        matches &= steps[:, offset:offset + earlier] == last[:, offset, None]
    for offset in range(intervals + 2):  # the figure's pitches and the one that followed them, all known
        matches &= known[:, offset:offset + earlier]
    # Of the occurrences, the one played nearest the pitch the line is at now (a motif comes back
    # where it was more often than a step away), the latest of those.
    level = np.abs(lines[:, intervals:intervals + earlier] - lines[:, -1:])
    rank = np.where(matches, level * earlier - np.arange(earlier), np.iinfo(np.int64).max)
    chosen = np.argmin(rank, axis=1)
    found = matches.any(axis=1)
    target = lines[:, -1] + steps[np.arange(batch), chosen + intervals]
    return np.where(found & (target >= 0) & (target <= 127), target, NO_PITCH)
