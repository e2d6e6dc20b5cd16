"""MIDI learn on JACK: a scripted controller answers `cadenza learn`'s prompts; the map it writes
is the one `stream --control-map` takes."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from conftest import JACK_BACKEND, REPO, cadenza_command, run_cadenza
from streamer.controls import ControlMap


def _knob(out, number: int) -> None:
    """A knob turned: a burst of values on one controller number."""
    for value in range(0, 128, 16):
        out.send_message([0xB0, number, value])
        time.sleep(0.005)


def test_learn_asks_for_each_control_and_writes_a_map_the_stream_takes(jack_midi, tmp_path):
    import rtmidi

    controller = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="knobs")
    controller.open_virtual_port("knobs")
    out = tmp_path / "map.toml"
    env = dict(os.environ, MIDO_BACKEND=JACK_BACKEND)
    learn = subprocess.Popen(cadenza_command("learn", "--midi-api", "jack", "--control-port", "knobs", "--out", str(out),
                                             "--wait-seconds", "20"),
                             cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1)
    # What the player does at each prompt: a knob (its number) or Enter (None).
    answers = {"temperature": 16, "density": None, "key": [16, 17], "tempo": None, "turns": 18, "answer": None}
    try:
        asked = []
        while len(asked) < len(answers):
            line = learn.stdout.readline()
            assert line, f"learn ended early: {learn.stderr.read()}"
            if not line.startswith("move the control for "):
                continue
            name = line.removeprefix("move the control for ").split()[0]
            asked.append(name)
            answer = answers[name]
            time.sleep(0.2)
            if answer is None:
                learn.stdin.write("\n")
                learn.stdin.flush()
            else:
                for number in answer if isinstance(answer, list) else [answer]:
                    _knob(controller, number)  # 16 again for the key: taken, so it waits for 17
                    time.sleep(0.1)
        stdout, stderr = learn.communicate(timeout=30)
    finally:
        learn.kill()
        controller.close_port()
    assert learn.returncode == 0, stderr
    assert asked == list(answers)
    control_map = ControlMap.load(out)
    assert (control_map.temperature_cc, control_map.key_cc, control_map.turn_cc) == (16, 17, 18)
    defaults = ControlMap()
    assert (control_map.density_cc, control_map.tempo_cc, control_map.answer_cc) == (
        defaults.density_cc, defaults.tempo_cc, defaults.answer_cc)  # skipped: the defaults
    played = run_cadenza("stream", "--no-keys", "--seconds", "1", "--audio-driver", "file", "--wav", str(tmp_path / "t.wav"),
                         "--control-map", str(out))
    assert played.returncode == 0, played.stderr


def test_learn_from_a_missing_port_is_a_one_line_error(jack_midi, tmp_path):
    env = dict(os.environ, MIDO_BACKEND=JACK_BACKEND)
    result = subprocess.run(cadenza_command("learn", "--midi-api", "jack", "--control-port", "no-such-knobs",
                                            "--out", str(tmp_path / "m.toml")),
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "cannot open control port 'no-such-knobs'" in result.stderr, result.stderr
    assert not (tmp_path / "m.toml").exists()


@pytest.mark.parametrize("learned, message", [({"temperature_cc": 123}, "used for two things")])
def test_a_learned_map_that_clashes_is_refused_not_written(tmp_path, learned, message):
    from models.errors import CadenzaError
    from streamer.learn import _write_map

    with pytest.raises(CadenzaError, match=message):
        _write_map(learned, tmp_path / "m.toml")
    assert not (tmp_path / "m.toml").exists()
