"""`cadenza prepare` on a small folder: caches, manifest, skipped files, errors."""

import json
import time

import numpy as np

from conftest import run_cadenza, synthetic_midi
from training.prepare import hashed_split, load_split


def make_folder(root):
    for index in range(12):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_midi(folder / f"piece{index}.mid")
    (root / "corrupt.mid").write_bytes(b"\x00garbage" * 20)
    good = (root / "a" / "piece1.mid").read_bytes()
    (root / "truncated.midi").write_bytes(good[: len(good) // 2])
    (root / "empty.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
    (root / "notes.txt").write_text("not midi, not listed")


def test_prepare_midi_dir_writes_caches_and_manifest(tmp_path):
    source, out = tmp_path / "midi", tmp_path / "out"
    make_folder(source)
    result = run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == 15
    skipped = {entry["file"]: entry["reason"] for entry in manifest["skipped"]}
    assert set(skipped) == {"corrupt.mid", "truncated.midi", "empty.mid"}
    assert skipped["empty.mid"].startswith("empty")
    assert "skipped 3 of 15" in result.stdout
    total = sum(info["pieces"] for info in manifest["splits"].values())
    assert total == 12
    assert sum(info["notes"] for info in manifest["splits"].values()) == 12 * 25
    assert len(manifest["inputs_sha256"]) == 64
    assert manifest["representation"]["sustain_pedal"] is True
    assert manifest["representation"]["restrikes_cut"] is True
    for split, info in manifest["splits"].items():
        cached = load_split(out, split)
        assert len(cached) == info["pieces"]
        for name in cached.sources:
            assert hashed_split(str(name)) == split
    train = load_split(out, "train")
    assert np.all(np.diff(train.offsets) == 25)


def test_rerun_is_quick_and_does_not_reparse(tmp_path):
    source, out = tmp_path / "midi", tmp_path / "out"
    make_folder(source)
    assert run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out)).returncode == 0
    before = (out / "train.npz").stat().st_mtime_ns
    started = time.perf_counter()
    again = run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out))
    assert again.returncode == 0 and "up to date" in again.stdout
    assert (out / "train.npz").stat().st_mtime_ns == before
    assert time.perf_counter() - started < 10  # includes interpreter start-up; bench/ measures the real figure


def test_missing_folder_and_csv_are_one_line_errors(tmp_path):
    result = run_cadenza("prepare", "--midi-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "not found" in result.stderr
    (tmp_path / "maestro").mkdir()
    result = run_cadenza("prepare", "--maestro", str(tmp_path / "maestro"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "maestro-v*.csv" in result.stderr


def test_corrupt_manifest_out_as_a_file_and_malformed_csv_are_handled(tmp_path):
    from conftest import run_cadenza, synthetic_midi

    source = tmp_path / "midi"
    source.mkdir()
    synthetic_midi(source / "a.mid", tempo_change=False)
    out = tmp_path / "prepared"
    assert run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out)).returncode == 0
    (out / "manifest.json").write_text("{truncated")
    again = run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out))
    assert again.returncode == 0, again.stderr  # parsed again, manifest rewritten
    assert '"fingerprint"' in (out / "manifest.json").read_text()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = run_cadenza("prepare", "--midi-dir", str(source), "--out", str(a_file))
    assert result.returncode == 2 and "is a file" in result.stderr
    maestro = tmp_path / "maestro"
    maestro.mkdir()
    (maestro / "maestro-v3.0.0.csv").write_bytes(b'split,midi_filename\n"unterminated,\xff\xfe\n')
    result = run_cadenza("prepare", "--maestro", str(maestro), "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "cannot read" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_can_hold_restruck_notes_to_the_pedal(tmp_path):
    """`--hold-restrikes`: a note the pedal holds lasts until the pedal lifts even where its key is
    struck again, and the manifest says so (a model trained on it records it on its card)."""
    import pretty_midi

    source = tmp_path / "midi"
    source.mkdir()
    for index in range(6):
        midi = pretty_midi.PrettyMIDI(initial_tempo=120)
        piano = pretty_midi.Instrument(program=0)
        piano.notes += [pretty_midi.Note(velocity=70, pitch=60 + index, start=0.0, end=0.2),
                        pretty_midi.Note(velocity=70, pitch=60 + index, start=0.5, end=0.7)]
        piano.control_changes += [pretty_midi.ControlChange(64, 100, 0.05), pretty_midi.ControlChange(64, 0, 2.0)]
        midi.instruments.append(piano)
        midi.write(str(source / f"restruck{index}.mid"))
    lengths = {}
    for flag in ([], ["--hold-restrikes"]):
        out = tmp_path / ("held" if flag else "cut")
        result = run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out), "--workers", "1", *flag)
        assert result.returncode == 0, result.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["representation"]["restrikes_cut"] is not bool(flag)
        notes = np.concatenate([load_split(out, split).notes for split in manifest["splits"]])
        lengths[bool(flag)] = sorted(np.round(notes["duration"], 2).tolist())
    assert lengths[False] == [0.5] * 6 + [1.5] * 6  # the first strike cut at the second
    assert lengths[True] == [1.5] * 6 + [2.0] * 6  # held to the pedal's release
