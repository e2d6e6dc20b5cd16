"""`cadenza render` on the shipped model: files that parse, audio at the right pitch, honest summaries."""

import json

import mido
import numpy as np
import pretty_midi
import pytest

from conftest import REPO as REPO_ROOT, pitch_entropy, run_cadenza, synthetic_midi
from models.notes import make_notes, read_notes
from models.runtime import Runtime
from training.render import SAMPLE_RATE, synthesize


def test_render_writes_midi_wav_plots_and_summary(tmp_path):
    out = tmp_path / "out"
    result = run_cadenza("render", "--count", "3", "--notes", "40", "--temperature", "0.9", "--instrument", "violin",
                         "--seed", "5", "--out", str(out), "--wav", "--plots")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["instrument"] == "Violin" and len(summary["pieces"]) == 3
    for index, piece in enumerate(summary["pieces"]):
        path = out / f"piece_{index:03d}.mid"
        midi = pretty_midi.PrettyMIDI(str(path))
        assert [i.program for i in midi.instruments] == [40]
        notes = midi.instruments[0].notes
        assert len(notes) == 40 == piece["notes"]
        assert all(n.end > n.start for n in notes)
        assert sum(1 for m in mido.MidiFile(str(path)) if m.type == "note_on" and m.velocity > 0) == 40
        assert piece["pitch_range"] == [min(n.pitch for n in notes), max(n.pitch for n in notes)]
        assert (out / piece["wav"]).stat().st_size > 1000
        png = (out / piece["plot"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert 400 <= width <= 3000 and 300 <= height <= 3000
    assert (out / "piece_distributions.png").exists()
    assert summary["generation"]["notes"] == 120 and summary["generation"]["notes_per_second"] > 0


def test_wav_of_one_pitch_peaks_at_its_fundamental():
    notes = make_notes([69] * 4, [0.0, 0.5, 0.5, 0.5], [0.45] * 4, [100] * 4)  # A4 = 440 Hz
    audio = synthesize(notes, program=73, soundfont=None)  # flute: a strong fundamental
    assert 0.5 < np.abs(audio).max() <= 0.9  # normalised, not clipped
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    frequencies = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    peak = frequencies[np.argmax(spectrum)]
    assert abs(peak - 440.0) < 440.0 * 0.03, peak


def test_lower_temperature_gives_lower_pitch_entropy():
    entropies = []
    for temperature in (0.3, 1.0, 1.5):
        runtime = Runtime(batch=16, seed=11)
        pitches = np.concatenate([runtime.sample(temperature)["pitch"] for _ in range(64)])
        entropies.append(pitch_entropy(pitches))
    assert entropies[0] < entropies[1] < entropies[2], entropies


def test_key_and_density_steer_the_shipped_model(tmp_path):
    from models.controls import parse_key, scale_mask
    from training.features import notes_per_second

    result = run_cadenza("render", "--count", "8", "--notes", "300", "--seed", "2", "--key", "D minor",
                         "--density", "4", "--out", str(tmp_path / "d4"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "d4" / "summary.json").read_text())
    assert summary["settings"]["sampling"]["key"] == "D minor" and summary["settings"]["sampling"]["density"] == 4.0
    in_scale, rates = [], []
    for index in range(8):
        notes = read_notes(tmp_path / "d4" / f"piece_{index:03d}.mid")
        in_scale.append(np.mean(scale_mask(parse_key("D minor"))[notes["pitch"] % 12]))
        rates.append(notes_per_second(notes))
    assert np.mean(in_scale) > 0.85, in_scale
    assert 2.5 < np.median(rates) < 6, rates


def test_dynamics_and_density_hold_reach_the_shipped_model(tmp_path):
    velocities = {}
    for target in (35, 95):
        out = tmp_path / f"v{target}"
        result = run_cadenza("render", "--count", "4", "--notes", "200", "--seed", "4", "--dynamics", str(target),
                             "--density", "hold", "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "summary.json").read_text())["settings"]["sampling"]["density"] == "hold"
        velocities[target] = np.mean([read_notes(path)["velocity"].mean() for path in sorted(out.glob("*.mid"))])
    assert velocities[35] < 55 < 75 < velocities[95], velocities


def test_same_seed_same_pieces(tmp_path):
    for name in ("a", "b"):
        assert run_cadenza("render", "--count", "2", "--notes", "20", "--seed", "9", "--out", str(tmp_path / name)).returncode == 0
    assert (tmp_path / "a" / "piece_001.mid").read_bytes() == (tmp_path / "b" / "piece_001.mid").read_bytes()


def test_primer_is_not_in_output_unless_asked(tmp_path):
    primer = synthetic_midi(tmp_path / "primer.mid", drums=False, second_instrument=False)
    for flag, expected in (([], 10), (["--include-primer"], 10 + 24)):
        out = tmp_path / f"out{len(flag)}"
        result = run_cadenza("render", "--count", "1", "--notes", "10", "--primer", str(primer), "--out", str(out), *flag)
        assert result.returncode == 0, result.stderr
        assert len(pretty_midi.PrettyMIDI(str(out / "piece_000.mid")).instruments[0].notes) == expected


@pytest.mark.parametrize("arguments, message", [
    (["--instrument", "Violn"], "did you mean 'Violin'"),
    (["--instrument", "200"], "out of range"),
    (["--temperature", "0"], "temperature"),
    (["--temperature", "nan"], "temperature"),
    (["--pitch-temperature", "inf"], "pitch-temperature"),
    (["--top-p", "1.5"], "top-p"),
    (["--density", "0"], "density"),
    (["--density", "fast"], "density"),
    (["--key", "H major"], "cannot read key"),
    (["--register", "C5-C3"], "lowest first"),
    (["--register", "low-high"], "not a MIDI number or a note name"),
    (["--register", "60"], "LOWEST-HIGHEST"),
    (["--seed", "-1"], "seed"),
    (["--count", "0"], "count"),
    (["--notes", "0"], "notes"),
])
def test_bad_render_input_exits_2_and_writes_nothing(tmp_path, arguments, message):
    out = tmp_path / "out"
    result = run_cadenza("render", "--out", str(out), "--notes", "5", *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists()


def test_empty_primer_is_a_one_line_error(tmp_path):
    primer = tmp_path / "empty.mid"
    primer.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
    result = run_cadenza("render", "--out", str(tmp_path / "out"), "--primer", str(primer))
    assert result.returncode == 2 and "has no notes" in result.stderr
    assert not (tmp_path / "out").exists()


def test_notebook_logic_with_widget_values(tmp_path):
    import json as json_module

    from training.interactive import generate_piece

    result = generate_piece(temperature=0.8, notes=32, instrument="Flute", seed=4, out=tmp_path)
    assert result["summary"]["pieces"][0]["notes"] == 32 and result["summary"]["instrument"] == "Flute"
    assert result["wav"].stat().st_size > 1000 and result["plot"].read_bytes()[:4] == b"\x89PNG"
    notebook = json_module.loads((REPO_ROOT / "examples" / "interactive.ipynb").read_text())
    assert "build_interface" in "".join(notebook["cells"][1]["source"])


def test_garbage_soundfont_name_with_folders_and_unwritable_out_are_refused(tmp_path):
    garbage = tmp_path / "garbage.sf2"
    garbage.write_bytes(b"RIFF" + b"\x00" * 400)
    result = run_cadenza("render", "--out", str(tmp_path / "a"), "--notes", "5", "--wav", "--soundfont", str(garbage))
    assert result.returncode == 2 and "cannot load soundfont" in result.stderr
    assert not (tmp_path / "a").exists()
    result = run_cadenza("render", "--out", str(tmp_path / "b"), "--notes", "5", "--name", "../escape")
    assert result.returncode == 2 and "--name" in result.stderr
    assert not (tmp_path / "escape_000.mid").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cadenza("render", "--out", str(blocker / "sub"), "--notes", "5")
    assert result.returncode == 2 and "cannot write to" in result.stderr
