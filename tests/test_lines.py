"""The lines' leaps (models/lines.py, training/line_tilt.py) and the chord join."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPO, run_cadenza, shipped_model_figure
from models.errors import CadenzaError
from models.lines import LINE_CLASSES, LineTables, interval_class, tables_from_shares
from models.notes import make_notes
from training import texture
from training.features import chord_fraction


def _octave_leaps(notes: np.ndarray) -> float:
    """Share of the top line's steps (as heard) that leap an octave or more."""
    intervals = np.diff(texture.top_line(texture.heard(notes)))
    return float(np.mean(np.abs(intervals) >= 12)) if len(intervals) else 0.0


def test_interval_classes_clip_beyond_an_octave():
    assert interval_class(np.array([60, 61, 48, 30, 100]), np.array([60, 60, 60, 60, 60])).tolist() == [12, 13, 0, 0, 24]


def test_a_table_keeps_least_of_what_the_model_plays_too_often():
    """The data leaps an octave on a fifth of its steps and the model on a tenth; the model moves
    by a second on half of its steps and the data on a quarter."""
    real, own = np.full(LINE_CLASSES, 0.01), np.full(LINE_CLASSES, 0.01)
    real[[0, 24]], own[[0, 24]] = 0.1, 0.05  # octave leaps down and up
    real[[11, 13]], own[[11, 13]] = 0.125, 0.25  # a semitone down and up
    tables = tables_from_shares(real, own, real, own)
    top = np.array(tables["top"])
    assert top.max() == pytest.approx(1.0) and top[0] == pytest.approx(1.0) and top[24] == pytest.approx(1.0)
    assert top[11] == pytest.approx(0.25, abs=0.01), "a quarter: half the data's share over twice the leaps'"
    assert top[5] == pytest.approx(0.5, abs=0.01), "a class both play alike keeps the ratio 1, over the leaps' 2"
    assert tables["bass"] == tables["top"]


def test_line_tables_come_from_the_card_or_not_at_all():
    assert LineTables.from_card({}) is None
    tables = LineTables.from_card({"line_tilt": {"top": [0.5] * LINE_CLASSES, "bass": [1.0] * LINE_CLASSES}})
    shares = tables.acceptance(2.0, np.array([3, 12]), np.array([0, 24]))
    assert shares.tolist() == pytest.approx([0.25, 0.25]), "the strength is the power the tables are raised to"
    assert tables.acceptance(0.0, np.array([3]), np.array([3])).tolist() == [1.0]
    with pytest.raises(CadenzaError, match="25 entries"):
        LineTables.from_card({"line_tilt": {"top": [1.0] * 3, "bass": [1.0] * LINE_CLASSES}})


def test_the_shipped_card_carries_tables_fitted_on_train():
    card = json.loads((REPO / "models" / "default" / "card.json").read_text())
    entry = card["line_tilt"]
    assert entry["fitted_on"] == "train" and entry["sampling"]["line_tilt"] == 0.0
    for line in ("top", "bass"):
        assert len(entry[line]) == LINE_CLASSES and max(entry[line]) == pytest.approx(1.0) and min(entry[line]) > 0
    assert card["sampling"]["line_tilt"] > 0


def test_the_line_tilt_makes_the_top_line_leap_more():
    """Free-running, the shipped network's top line leapt an octave or more on 22 % of its steps
    (MAESTRO validation 30 %). The tables keep less of the small steps it plays too often."""
    shares = {tilt: shipped_model_figure(_octave_leaps, line_tilt=tilt) for tilt in (0.0, 1.0)}
    assert shares[1.0] > 1.15 * shares[0.0], shares


def test_a_chord_join_below_one_strikes_fewer_notes_together():
    shares = {join: shipped_model_figure(chord_fraction, chord_join=join) for join in (1.0, 0.5)}
    assert shares[0.5] < 0.8 * shares[1.0], shares


def test_without_tables_the_line_tilt_changes_nothing():
    """A model exported before the tables (or a retrained one not yet fitted) plays as it did."""
    from models.runtime import Runtime

    drawn = []
    for tilt in (0.0, 1.0):
        runtime = Runtime(backend="tflite", batch=4, seed=3)
        runtime.line_tables = None
        drawn.append(np.stack([runtime.sample(line_tilt=tilt) for _ in range(40)]))
    assert np.array_equal(drawn[0], drawn[1])


@pytest.mark.parametrize("option, value, message", [("--line-tilt", "-0.5", "--line-tilt"), ("--line-tilt", "3", "--line-tilt"),
                                                    ("--chord-join", "0", "--chord-join")])
def test_a_line_tilt_or_chord_join_out_of_range_is_refused(tmp_path, option, value, message):
    result = run_cadenza("render", "--out", str(tmp_path / "out"), "--count", "1", "--notes", "20", option, value)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sampling_refuses_a_line_tilt_out_of_range():
    from models.sampling import Sampling

    for changes in ({"line_tilt": -0.1}, {"line_tilt": 2.5}, {"chord_join": 0.0}, {"chord_join": 1.5}):
        with pytest.raises(CadenzaError):
            Sampling(**changes).validate()


def _split_of_leaping_pieces(pieces: int, notes: int):
    """A prepared split whose top line leaps two octaves on every step (one note at a time)."""
    from training.prepare import PreparedSplit

    pitch = np.tile([48, 72], notes // 2)
    parts = [make_notes(pitch, np.full(notes, 0.2), np.full(notes, 0.3), np.full(notes, 70)) for _ in range(pieces)]
    return PreparedSplit(np.concatenate(parts), np.arange(pieces + 1) * notes, np.array([f"p{i}" for i in range(pieces)]))


def test_fitted_tables_keep_all_of_what_the_data_plays_and_the_model_does_not():
    """Against a split that only leaps, the shipped model's tables keep its leaps beyond an octave
    (most of them) and far less of its small steps; the card's entry records the shares."""
    from models.runtime import Runtime
    from models.sampling import Sampling
    from training.line_tilt import LineFitSettings, fit_line_tables

    runtime = Runtime(backend="tflite")
    entry = fit_line_tables(runtime, Sampling.from_card(runtime.card), _split_of_leaping_pieces(8, 60),
                            LineFitSettings(pieces=8, notes=60))
    top = np.array(entry["top"])
    assert max(top[0], top[24]) == pytest.approx(1.0) and min(top[0], top[24]) > 0.5
    assert top[11] < 0.05 and top[13] < 0.05
    assert entry["shares"]["real"]["top"][24] == pytest.approx(0.5, abs=0.02)
    assert entry["sampling"]["line_tilt"] == 0.0 and entry["pieces"] == 8


def _prepared_leaping_midi(tmp_path):
    """Twelve MIDI files of one leaping line each, prepared by `cadenza prepare` (most land in train)."""
    import pretty_midi

    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    for index in range(12):
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(program=0)
        for position in range(60):
            start = 0.2 * position
            piano.notes.append(pretty_midi.Note(velocity=70, pitch=48 + 24 * (position % 2), start=start, end=start + 0.15))
        midi.instruments.append(piano)
        midi.write(str(midi_dir / f"piece{index}.mid"))
    result = run_cadenza("prepare", "--midi-dir", str(midi_dir), "--out", str(tmp_path / "data"), "--workers", "1")
    assert result.returncode == 0, result.stderr
    return tmp_path / "data"


def test_evaluate_fit_lines_writes_the_tables_into_the_card(tmp_path):
    """`cadenza evaluate MODEL --fit-lines` on a copy of the shipped model and a tiny prepared set."""
    model = tmp_path / "model"
    shutil.copytree(REPO / "models" / "default", model)
    card = json.loads((model / "card.json").read_text())
    card.pop("line_tilt")
    (model / "card.json").write_text(json.dumps(card))
    data = _prepared_leaping_midi(tmp_path)
    result = run_cadenza("evaluate", str(model), "--fit-lines", "--data", str(data), "--pieces", "4", "--notes", "40",
                         "--draws", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "top line, least kept" in result.stdout
    written = json.loads((model / "card.json").read_text())["line_tilt"]
    assert written["fitted_on"] == "train" and written["pieces"] == 4 and len(written["top"]) == LINE_CLASSES
    assert json.loads((model / "evaluation" / "line_tilt.json").read_text())["top"] == written["top"]


def test_the_span_keeps_all_within_and_less_the_further_beyond():
    from models.span import SPAN_WARMUP, RecentSpan

    span = RecentSpan(batch=2)
    for position in range(SPAN_WARMUP):
        assert span.weights(6.0) is None, "no span to keep to before the warm-up"
        span.strike(np.array([60 + position % 13, 30]))
    weights = span.weights(6.0)
    assert np.all(weights[0, 60:73] == 1.0) and weights[1, 30] == 1.0
    assert weights[0, 78] == pytest.approx(np.exp(-1.0)) and weights[0, 48] == pytest.approx(np.exp(-2.0))
    assert weights[1, 42] == pytest.approx(np.exp(-2.0)) and weights[1, 29] == pytest.approx(np.exp(-1 / 6))


def test_the_span_forgets_what_was_played_long_ago():
    from models.span import SPAN_NOTES, RecentSpan

    span = RecentSpan(batch=1)
    span.strike(np.array([100]))
    for _ in range(SPAN_NOTES):
        span.strike(np.array([60]))
    assert span.weights(6.0)[0, 100] == pytest.approx(np.exp(-40 / 6)), "the high note fell out of the last 200"


def test_the_span_hold_narrows_the_range_of_an_excerpt():
    """Over 400 notes the shipped network's excerpts spanned 63 semitones (MAESTRO test 56)."""
    ranges = {hold: shipped_model_figure(lambda notes: float(np.ptp(notes["pitch"])), span_hold=hold) for hold in (0.0, 3.0)}
    assert ranges[3.0] < ranges[0.0] - 3, ranges


def test_the_span_hold_leaves_a_stream_that_keeps_to_a_register_alone():
    """A register (asked for, or an answer's: its call's) already keeps the notes where they belong;
    the span hold is for streams playing free."""
    from models.runtime import Runtime
    from models.sampling import register_weights

    narrow_past = make_notes(np.full(60, 60), np.full(60, 0.2), np.full(60, 0.3), np.full(60, 70))
    register = register_weights((48, 72))
    drawn = {}
    for name, weights in (("register", register), ("free", None)):
        for hold in (0.0, 3.0):
            runtime = Runtime(seed=3, backend="tflite")
            runtime.prime(narrow_past)  # a span of one key: a hold of 3 semitones has much to say
            drawn[name, hold] = [runtime.sample(1.0, pitch_weights=weights, span_hold=hold)["pitch"][0] for _ in range(60)]
    assert drawn["register", 0.0] == drawn["register", 3.0], "the span held a stream that keeps to a register"
    assert drawn["free", 0.0] != drawn["free", 3.0], "the span did not hold a free stream"
    # In one batch, stream by stream: the first keeps to the register, the second plays free.
    runtime = Runtime(batch=2, seed=3, backend="tflite")
    runtime.prime(narrow_past)
    held = runtime._hold_span(np.stack([register, np.ones(128)]), 3.0)
    assert np.array_equal(held[0], register)
    assert np.allclose(held[1], runtime.span.weights(3.0)[1]) and held[1, 90] < 1e-3


def test_a_span_hold_out_of_range_is_refused(tmp_path):
    result = run_cadenza("render", "--out", str(tmp_path / "out"), "--count", "1", "--notes", "20", "--span-hold", "-1")
    assert result.returncode == 2 and "--span-hold" in result.stderr
