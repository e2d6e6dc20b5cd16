"""Pitch relative to the line: a bias on each pitch by its interval from where the line is.

The pitch head scores the 128 keys as absolute positions. What a pianist's hand does is
relative: it moves by a second, leaps an octave, rarely strikes the key it just struck. The
network learns that only through its state, and teacher-forced it stays miscalibrated however
long it trains (it strikes the top line's last note again 1.67 times as often as the pianists,
moves by a second 0.72-0.79 times as often; README, "What is left is the network's pitch").

`IntervalBias` (models/network.py; ModelConfig.interval_bias) adds to each pitch's logit one learned number per
interval from two anchors: the note before, and the top of the last chord (the chord being
played if the note starts a new one, else the chord before the one it joins: a chord's notes
come in any order). Each anchor has two tables, for a note that starts a chord and one that
joins it, chosen by the note's step (drawn before the pitch). The tables start at zero, so a
network given them starts out as the same function as the one without.

Training windows carry each position's two chord tops (`chord_tops`); the runtime keeps them
per stream (`StreamChordTops`) and hands them to the step graph, which applies the same bias.
"""

from __future__ import annotations

import numpy as np

from models.notes import CHORD_SECONDS

INTERVALS = 255  # -127 .. +127 semitones
# The tables are stored divided by this, so that Adam, whose moves are about one learning rate a
# step, can move them a nat or more within a short fine-tune (the fitted biases reach -1.5).
TABLE_SCALE = 20.0


def chord_tops(pitch: np.ndarray, step_seconds: np.ndarray) -> np.ndarray:
    """[..., T, 2] int32: after each note of `pitch` [..., T] (MIDI numbers; `step_seconds` [..., T]
    seconds since the note before), the top of the chord being played (that note's chord, so far)
    and the top of the chord before it. A line's first note starts a chord with itself before it."""
    pitch = np.asarray(pitch, np.int64)
    starts = np.asarray(step_seconds) >= CHORD_SECONDS
    tops = np.zeros((*pitch.shape, 2), np.int32)
    current = last = pitch[..., 0]
    for position in range(pitch.shape[-1]):
        if position:
            begins = starts[..., position]
            last = np.where(begins, current, last)
            current = np.where(begins, pitch[..., position], np.maximum(current, pitch[..., position]))
        tops[..., position, 0], tops[..., position, 1] = current, last
    return tops


class StreamChordTops:
    """Per stream, the two chord tops of `chord_tops` after the last note struck ([B, 2] int32),
    kept one note at a time. Before its first note a stream's tops are the note it starts from."""

    def __init__(self, start_pitch: np.ndarray):
        start = np.asarray(start_pitch, np.int32)
        self.tops = np.stack([start, start], axis=1)

    def strike(self, pitch: np.ndarray, step_seconds: np.ndarray) -> None:
        pitch = np.asarray(pitch, np.int32)
        begins = np.asarray(step_seconds) >= CHORD_SECONDS
        current = self.tops[:, 0]
        self.tops = np.stack([np.where(begins, pitch, np.maximum(current, pitch)),
                              np.where(begins, current, self.tops[:, 1])], axis=1).astype(np.int32)


def starts_chord_table(time_centers: np.ndarray) -> np.ndarray:
    """[time_bins] int32: 1 where a step bin starts a new chord (at least CHORD_SECONDS), else 0."""
    return (np.asarray(time_centers) >= CHORD_SECONDS).astype(np.int32)


# Row 128 * s + a of a table's slices holds its biases for keys 0-127 from anchor a (a MIDI
# number) in its row s (0: joins, 1: starts): the flat table's entries INTERVALS * s + 127 + key - a.
_SLICE_INDEX = (INTERVALS * np.arange(2)[:, None, None] + (INTERVALS // 2)
                + np.arange(128)[None, None, :] - np.arange(128)[None, :, None]).reshape(256, 128).astype(np.int32)


def interval_bias(ops, tables, pitch, tops, step, starts_table):
    """The bias [..., 128] for the pitch of notes whose step bin is `step` [...], after `pitch` [...]
    with chord tops `tops` [..., 2]; `tables` (from the note before, from the chord top), each
    [2 (joins, starts), INTERVALS] as stored (divided by TABLE_SCALE); `starts_table` from
    starts_chord_table; `ops`: keras.ops, or TfOps in the step graph.

    Each note reads one row of 128 biases (see _SLICE_INDEX) rather than 128 entries one by one:
    the same numbers, and in training the gradient goes back as whole rows, which a CPU adds up
    several times faster than 128 single entries per note."""
    starts = ops.take(starts_table, step, axis=0)  # 1: the note starts a chord
    anchor = ops.where(starts > 0, tops[..., 0], tops[..., 1])
    from_note, from_top = (ops.take(ops.reshape(table, (-1,)), _SLICE_INDEX, axis=0) for table in tables)
    return TABLE_SCALE * (ops.take(from_note, 128 * starts + pitch, axis=0) + ops.take(from_top, 128 * starts + anchor, axis=0))


class TfOps:
    """The few keras.ops `interval_bias` uses, as TensorFlow ops (the step graph is built without Keras)."""

    def __init__(self, tf):
        self.tf = tf

    def take(self, values, indices, axis=0):
        return self.tf.gather(values, indices, axis=axis)

    def where(self, condition, yes, no):
        return self.tf.where(condition, yes, no)

    def arange(self, count, dtype="int32"):
        return self.tf.range(count, dtype=dtype)

    def reshape(self, values, shape):
        return self.tf.reshape(values, shape)
