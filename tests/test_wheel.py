"""The wheel a user would install: built from the repo, installed into a fresh venv outside the
checkout (no TensorFlow), it carries the shipped model and soundfont, and `cadenza render` runs."""

from __future__ import annotations

import subprocess
import sys
import venv
import wave
import zipfile

import mido
import numpy as np
import pytest

from conftest import REPO


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    return result


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_renders(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, REPO])
    (wheel,) = wheels.glob("cadenza-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"models/default/model.tflite", "models/default/card.json", "cadenza_cli.py"} <= names

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", wheel])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cadenza = environment / "bin" / "cadenza"
    _run([cadenza, "render", "--count", "2", "--notes", "48", "--seed", "3", "--wav", "--out", "pieces"], cwd=elsewhere)

    midi_files = sorted((elsewhere / "pieces").glob("*.mid"))
    assert len(midi_files) == 2
    for path in midi_files:
        assert len([m for m in mido.MidiFile(str(path)) if m.type == "note_on" and m.velocity > 0]) == 48
    with wave.open(str(sorted((elsewhere / "pieces").glob("*.wav"))[0])) as audio:
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype=np.int16)
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 100  # the bundled soundfont made sound

    # Training needs TensorFlow, which this install left out: one line saying how to get it.
    result = subprocess.run([str(cadenza), "train", "--data", "nowhere", "--out", "run"], cwd=elsewhere,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'cadenza[cpu]'" in result.stderr.strip().splitlines()[-1], result.stderr
    assert "Traceback" not in result.stderr
