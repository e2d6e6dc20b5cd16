"""The pitch's bias by interval (models/intervals.py): where the line is, in training and in a stream,
and what the bias adds to which pitch."""

import numpy as np

from models.intervals import INTERVALS, TABLE_SCALE, StreamChordTops, chord_tops, interval_bias, starts_chord_table
from models.notes import CHORD_SECONDS

TOGETHER, APART = 0.0, 0.25  # seconds since the note before: the same chord, a new one


def test_chord_tops_of_a_hand_made_passage():
    """C-E-G struck together (in any order), then a melody note, then a chord joined by a higher note."""
    pitch = np.array([64, 60, 67, 72, 55, 59, 74])
    steps = np.array([APART, TOGETHER, TOGETHER, APART, APART, TOGETHER, TOGETHER])
    tops = chord_tops(pitch, steps)
    expected_current = [64, 64, 67, 72, 55, 59, 74]  # the chord being played, so far
    expected_before = [64, 64, 64, 67, 72, 72, 72]  # the chord before it
    assert tops[:, 0].tolist() == expected_current
    assert tops[:, 1].tolist() == expected_before


def test_a_stream_keeps_the_tops_training_computes():
    """The runtime's per-stream tops after each note are the training windows' tops, for random lines."""
    rng = np.random.default_rng(0)
    pitch = rng.integers(30, 100, (5, 60))
    steps = np.where(rng.random((5, 60)) < 0.4, TOGETHER, rng.uniform(CHORD_SECONDS, 0.5, (5, 60)))
    steps[:, 0] = APART
    expected = chord_tops(pitch, steps)
    stream = StreamChordTops(pitch[:, 0])
    assert np.array_equal(stream.tops, expected[:, 0])
    for position in range(1, 60):
        stream.strike(pitch[:, position], steps[:, position])
        assert np.array_equal(stream.tops, expected[:, position]), position


def test_the_bias_lands_on_the_interval_and_the_step_class():
    """One table entry set: a second up from the note before for a note that starts a chord. It
    raises exactly that pitch, only for such a note; the chord-top table anchors on the right top."""
    time_centers = np.array([0.0, 0.01, 0.02, 0.05, 0.1])
    starts_table = starts_chord_table(time_centers)
    assert starts_table.tolist() == [0, 0, 0, 1, 1]
    from_note, from_top = np.zeros((2, INTERVALS), np.float32), np.zeros((2, INTERVALS), np.float32)
    from_note[1, INTERVALS // 2 + 2] = 0.1  # starts a chord, +2 semitones
    from_top[0, INTERVALS // 2 - 12] = 0.05  # joins a chord, an octave below the chord before's top
    ops = _NumpyOps()
    pitch, tops = np.array([60, 60]), np.array([[70, 80], [70, 80]])
    bias = interval_bias(ops, (from_note, from_top), pitch, tops, np.array([4, 1]), starts_table)
    starting, joining = bias
    assert np.flatnonzero(starting).tolist() == [62] and np.isclose(starting[62], TABLE_SCALE * 0.1)
    assert np.flatnonzero(joining).tolist() == [68] and np.isclose(joining[68], TABLE_SCALE * 0.05)  # 80 - 12


class _NumpyOps:
    """keras.ops as numpy, for the arithmetic alone."""

    take = staticmethod(lambda values, indices, axis=0: np.take(values, indices, axis=axis))
    where = staticmethod(np.where)
    arange = staticmethod(lambda count, dtype="int32": np.arange(count, dtype=dtype))
    reshape = staticmethod(np.reshape)


def test_each_pitch_reads_its_own_entry_for_every_anchor_at_the_edges_too():
    """The bias read as rows (one per note) is, pitch by pitch, the table's entry at that pitch's
    interval from either anchor: random tables, every anchor 0-127, both step classes."""
    rng = np.random.default_rng(1)
    tables = rng.normal(size=(2, 2, INTERVALS)).astype(np.float32)
    starts_table = np.array([0, 1], np.int32)
    anchors = np.arange(128)
    previous = rng.integers(0, 128, 128)
    for step in (0, 1):
        tops = np.stack([anchors, anchors[::-1]], axis=1)  # the anchor: tops[:, 0] to start, tops[:, 1] to join
        bias = interval_bias(_NumpyOps(), tables, previous, tops, np.full(128, step), starts_table)
        anchor = tops[:, 0] if step else tops[:, 1]
        keys = np.arange(128)
        expected = TABLE_SCALE * (tables[0][step][INTERVALS // 2 + keys[None] - previous[:, None]]
                                  + tables[1][step][INTERVALS // 2 + keys[None] - anchor[:, None]])
        np.testing.assert_allclose(bias, expected, rtol=1e-6)
