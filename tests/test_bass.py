"""The bass line's last note (models/bass.py) on hand-made chords, and the sampler's `bass_repeat`
on the shipped model: the left hand strikes its last bass note again less."""

from __future__ import annotations

import numpy as np

from conftest import shipped_model_figure
from models.bass import ChordBass
from models.notes import make_notes
from training import texture

NEW_CHORD, SAME_CHORD = 0.5, 0.01  # steps in seconds: a new onset, a note struck with the one before


def _played(chords: list) -> ChordBass:
    bass = ChordBass(1)
    for chord in chords:
        for position, pitch in enumerate(chord):
            bass.strike(np.array([pitch]), np.array([SAME_CHORD if position else NEW_CHORD]))
    return bass


def test_a_chord_starting_on_the_last_bass_repeats_it():
    bass = _played([[48, 64, 67]])
    assert bass.repeats(np.array([0]), np.array([48]), np.array([NEW_CHORD])).tolist() == [True]
    assert bass.repeats(np.array([0]), np.array([50]), np.array([NEW_CHORD])).tolist() == [False]
    assert bass.repeats(np.array([0]), np.array([64]), np.array([NEW_CHORD])).tolist() == [False]  # its top


def test_a_note_in_a_chord_repeats_the_bass_only_as_that_chords_lowest_so_far():
    # The melody first, then the old bass under it: the chord's bass would be the last one again.
    bass = _played([[48, 64, 67], [72]])
    assert bass.repeats(np.array([0]), np.array([48]), np.array([SAME_CHORD])).tolist() == [True]
    # A chord that already went below the old bass has another bass, whatever comes in it.
    bass = _played([[48, 64, 67], [72, 43]])
    assert bass.repeats(np.array([0]), np.array([48]), np.array([SAME_CHORD])).tolist() == [False]
    # Nothing was played before the first chord: no bass to repeat.
    bass = _played([[48]])
    assert bass.repeats(np.array([0]), np.array([48]), np.array([SAME_CHORD])).tolist() == [False]


def test_streams_keep_their_own_bass():
    bass = ChordBass(2)
    bass.strike(np.array([40, 50]), np.array([NEW_CHORD, NEW_CHORD]))
    bass.strike(np.array([38, 60]), np.array([SAME_CHORD, NEW_CHORD]))  # stream 0 lower, stream 1 a new chord
    rows = np.array([0, 1])
    assert bass.repeats(rows, np.array([38, 50]), np.array([NEW_CHORD, NEW_CHORD])).tolist() == [True, False]
    assert bass.repeats(rows, np.array([40, 60]), np.array([NEW_CHORD, NEW_CHORD])).tolist() == [False, True]


def test_the_figure_counts_the_bass_lines_repeated_notes():
    # Chords with bass 48, 48, 43, 43, 43: three of the four bass steps strike the last note again.
    rows = [(48, NEW_CHORD), (60, SAME_CHORD), (48, NEW_CHORD), (64, SAME_CHORD), (43, NEW_CHORD),
            (55, NEW_CHORD), (43, SAME_CHORD), (43, NEW_CHORD)]
    pitch, step = zip(*rows)
    notes = make_notes(np.array(pitch), np.array(step), np.full(len(rows), 0.3), np.full(len(rows), 64))
    assert texture.bass_line(notes).tolist() == [48, 48, 43, 43, 43]
    assert texture.bass_line_repeats(notes) == 0.75


def test_a_bass_repeat_below_one_makes_the_bass_line_strike_its_last_note_again_less():
    """Free-running, the bass line struck its last note again on 9 % of its steps (MAESTRO
    validation 3.5 %). A note that would do it keeps `bass_repeat` of its probability."""
    # The top line's tilt off: a one-note chord struck again repeats both lines at once.
    shares = {bass_repeat: shipped_model_figure(texture.bass_line_repeats, bass_repeat=bass_repeat, top_repeat=1.0)
              for bass_repeat in (1.0, 0.3)}
    assert shares[0.3] < 0.6 * shares[1.0], shares


def test_a_bass_repeat_outside_zero_to_one_is_refused():
    import pytest

    from models.errors import CadenzaError
    from models.sampling import Sampling

    for wrong in (0.0, -0.5, 1.5):
        with pytest.raises(CadenzaError, match="bass-repeat"):
            Sampling(bass_repeat=wrong).validate()


def test_a_bass_struck_again_is_drawn_again_with_its_step_kept():
    """The network errs on the pitch given the step (models/bass.py), so a rejected bass repeat
    keeps its step: the tilt moves the bass, not the pace (drawn whole again, a live density
    change lagged: CC71 to 4 notes/s played 4.6 on average over seven seeds against 3.9)."""
    from models.notes import NOTE_DTYPE
    from models.runtime import Runtime

    streams = 2048
    chord = [(36, 0.5), (60, 0.01), (64, 0.01), (67, 0.01)]  # a bass under a chord, four times over
    primer = np.array([(pitch, step, 0.45, 70) for _ in range(4) for pitch, step in chord], dtype=NOTE_DTYPE)
    drawn = {}
    for bass_repeat in (1.0, 0.1):
        runtime = Runtime(batch=streams, seed=3, backend="tflite")
        runtime.reset(start=primer[0])
        runtime.prime(primer[1:])
        drawn[bass_repeat] = runtime.sample(bass_repeat=bass_repeat)
    repeats = {key: float(np.mean((notes["step"] >= 0.03) & (notes["pitch"] == 36))) for key, notes in drawn.items()}
    assert repeats[1.0] > 0.05, repeats  # the network does strike the bass again here
    assert repeats[0.1] < 0.3 * repeats[1.0], repeats
    # The same uniforms drew the same first notes; a redrawn bass kept its step.
    assert np.mean(drawn[0.1]["step"] != drawn[1.0]["step"]) < 0.01


def test_the_relative_pitch_probe_anchors_each_note_on_the_top_of_the_chord_before():
    """bench.relative_pitch: the anchor of note t+1 is the top of the chord before it, as the
    sampler sees it (the chord being played if the note starts a new one)."""
    from bench.relative_pitch import last_chord_tops

    pitch = np.array([[48, 64, 50, 67, 72, 40]])
    steps = np.array([[0.0, SAME_CHORD, NEW_CHORD, SAME_CHORD, SAME_CHORD, NEW_CHORD]])
    # chords: {48, 64} top 64, {50, 67, 72} top 72, {40}
    assert last_chord_tops(pitch, steps).tolist() == [[48, 64, 64, 64, 72]]
