"""The note representation: real MIDI files written and parsed back."""

import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings, strategies as st

from conftest import synthetic_midi
from models.midi_reader import MidiError
from models.notes import Representation, make_notes, onsets, read_notes, write_midi


def test_merges_instruments_drops_drums_sorts_by_onset_then_pitch(tmp_path):
    path = synthetic_midi(tmp_path / "song.mid", pedal=False)
    notes = read_notes(path)
    assert len(notes) == 8 * 3 + 1  # chords + the violin note, no drums
    assert 36 not in notes["pitch"]
    starts = onsets(notes)
    assert np.all(np.diff(starts) >= -1e-9)
    same_onset = np.isclose(np.diff(starts), 0)
    assert np.all(np.diff(notes["pitch"].astype(int))[same_onset] > 0)


def test_matches_pretty_midi_including_tempo_change(tmp_path):
    path = synthetic_midi(tmp_path / "song.mid")
    for representation in (Representation(sustain_pedal=False), Representation()):
        ours = read_notes(path, representation)
        theirs = read_notes(pretty_midi.PrettyMIDI(str(path)), representation)
        assert np.array_equal(ours["pitch"], theirs["pitch"])
        assert np.allclose(onsets(ours), onsets(theirs), atol=1e-6)
        assert np.allclose(ours["duration"], theirs["duration"], atol=1e-6)
    # the second tempo (150 bpm from beat 2) shortens later steps: 8 notes 0.5 s apart at 100 bpm
    starts = onsets(read_notes(path, Representation(sustain_pedal=False)))
    assert starts.max() < 3.5


def test_sustain_pedal_holds_notes_until_release(tmp_path):
    path = synthetic_midi(tmp_path / "song.mid", chords=False, drums=False, second_instrument=False, tempo_change=False)
    dry = read_notes(path, Representation(sustain_pedal=False))
    wet = read_notes(path)
    assert np.allclose(dry["duration"], 0.2, atol=0.01)
    # notes released while the pedal is down (0.1 s .. 1.4 s) last until 1.4 s or the next strike
    held = onsets(wet)[:3]
    assert np.allclose(wet["duration"][:3], 1.4 - held, atol=0.01)
    assert np.allclose(wet["duration"][3:], 0.2, atol=0.01)


def test_a_key_struck_again_under_the_pedal_is_held_to_the_pedal_and_cut_when_heard(tmp_path):
    """With restrikes not cut, a held note lasts to the pedal's release, as the key was left;
    playing it (texture.heard, a MIDI file) cuts it at the restrike, where the default
    representation cut it when read."""
    from training.texture import heard

    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(velocity=70, pitch=60, start=0.0, end=0.2),
                    pretty_midi.Note(velocity=60, pitch=64, start=0.25, end=0.4),
                    pretty_midi.Note(velocity=80, pitch=60, start=0.5, end=0.7)]
    piano.control_changes += [pretty_midi.ControlChange(64, 100, 0.05), pretty_midi.ControlChange(64, 0, 2.0)]
    midi.instruments.append(piano)
    path = tmp_path / "restruck.mid"
    midi.write(str(path))
    held = read_notes(path, Representation(restrikes_cut=False))
    cut = read_notes(path)
    assert Representation().restrikes_cut and Representation.from_dict({"sustain_pedal": True, "version": 1}) == Representation()
    assert list(held["pitch"]) == [60, 64, 60]
    assert np.allclose(held["duration"], [2.0, 1.75, 1.5], atol=0.01)
    assert np.allclose(cut["duration"], [0.5, 1.75, 1.5], atol=0.01)
    assert np.allclose(heard(held)["duration"], cut["duration"], atol=1e-9)
    write_midi(held, tmp_path / "written.mid")  # a file holds what is heard
    assert np.allclose(read_notes(tmp_path / "written.mid", Representation(sustain_pedal=False))["duration"],
                       cut["duration"], atol=0.003)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_round_trip_through_a_midi_file(tmp_path_factory, seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 60))
    pitch = rng.choice(128, size=count, replace=False) if count <= 128 else rng.integers(0, 128, count)
    notes = make_notes(pitch, rng.uniform(0.01, 0.5, count), rng.uniform(0.01, 1.0, count), rng.integers(1, 128, count))
    notes["step"][0] = 0.0
    path = tmp_path_factory.mktemp("rt") / "notes.mid"
    write_midi(notes, path, program=0)
    back = read_notes(path, Representation(sustain_pedal=False))
    tick = 0.5 / 480  # 120 bpm, 480 ticks per beat
    order = np.lexsort((notes["pitch"], np.round(onsets(notes) / tick)))
    assert np.array_equal(back["pitch"], notes["pitch"][order])
    assert np.array_equal(back["velocity"], notes["velocity"][order])
    assert np.allclose(onsets(back), onsets(notes)[order], atol=tick)
    assert np.allclose(back["duration"], notes["duration"][order], atol=2 * tick)


def test_a_key_struck_again_is_written_as_heard(tmp_path):
    # C4 held 1 s, struck again at 0.3 s: the file holds a 0.3 s note, then the second; not two overlapping.
    notes = make_notes([60, 64, 60], [0.0, 0.1, 0.2], [1.0, 0.5, 0.4], [80, 70, 90])
    write_midi(notes, tmp_path / "restrike.mid")
    back = read_notes(tmp_path / "restrike.mid", Representation(sustain_pedal=False))
    assert list(back["pitch"]) == [60, 64, 60]
    assert np.allclose(back["duration"], [0.3, 0.5, 0.4], atol=0.003)


@pytest.mark.parametrize("data, reason", [
    (b"", "not a MIDI file"),
    (b"RIFF....WAVEfmt " * 4, "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x10\x00\x90\x3c", "truncated"),
])
def test_bad_bytes_raise_midi_error(data, reason):
    with pytest.raises(MidiError, match=reason):
        read_notes(data)
