"""Live controls without a stream: the control map, the controller input's mapping, the density bridge."""

from __future__ import annotations

import time

import mido
import pytest

from conftest import run_cadenza
from streamer.controls import ControlMap, ControlMapper, Controls


def test_density_bridge_holds_the_target_until_the_network_catches_up():
    from streamer.density import DensityBridge

    bridge = DensityBridge(recent_notes=4)
    assert [bridge.stretch(0.1) for _ in range(4)] == [0.1] * 4  # free play: steps unchanged
    bridge.retarget(2.5)  # the network plays 10/s; the target is a quarter of that
    assert bridge.stretch(0.1) == pytest.approx(0.4)
    bridge.retarget(2.5)  # the same target again (a key change) keeps bridging
    assert bridge.stretch(0.1) == pytest.approx(0.4)
    played = [bridge.stretch(0.4) for _ in range(4)]  # the network slows to the target: let go
    assert played[-1] == pytest.approx(0.4) and not bridge.active
    bridge.retarget(100.0)  # far beyond: bounded by max_stretch
    assert bridge.stretch(0.4) == pytest.approx(0.4 / bridge.max_stretch)
    bridge.retarget(None)
    assert bridge.stretch(0.4) == 0.4


@pytest.mark.parametrize("text, key", [
    ("temperature_range = [2.0]", "temperature_range"),
    ("tempo_range = [0, 2]", "tempo_range"),
    ("silence_ccs = 7", "silence_ccs"),
    ("density_cc = 1", "controller 1 is used for two things"),
    ("key_cc = 300", "key_cc"),
    ("response_gap_seconds = nan", "response_gap_seconds"),
])
def test_a_bad_control_map_is_refused_at_start(tmp_path, text, key):
    control_map = tmp_path / "map.toml"
    control_map.write_text(text + "\n")
    wav = tmp_path / "never.wav"
    result = run_cadenza("stream", "--no-keys", "--seconds", "1", "--audio-driver", "file", "--wav", str(wav),
                         "--control-map", str(control_map))
    assert result.returncode == 2, result.stderr
    assert key in result.stderr.strip().splitlines()[-1]
    assert not wav.exists()  # refused before any output opened


def test_the_sustain_pedal_is_not_a_turn_request_and_the_turn_cc_is():
    """A pianist's pedal (CC 64) must not hand cadenza the turn (issue 20); the default turn CC does."""
    controls = Controls()
    mapper = ControlMapper(controls, ControlMap())
    mapper.handle(mido.Message("control_change", control=64, value=127))
    assert controls.turn_request is None
    mapper.handle(mido.Message("control_change", control=ControlMap().turn_cc, value=127))
    assert controls.turn_request == "mine"
    mapper.handle(mido.Message("control_change", control=ControlMap().turn_cc, value=0))
    assert controls.turn_request == "yours"


def test_turn_cc_zero_means_none_and_does_not_clash_with_a_control_on_cc_0(tmp_path):
    path = tmp_path / "map.toml"
    path.write_text("turn_cc = 0\ntemperature_cc = 0\n")
    control_map = ControlMap.load(path)
    controls = Controls()
    mapper = ControlMapper(controls, control_map)
    mapper.handle(mido.Message("control_change", control=0, value=127))
    assert controls.turn_request is None and controls.temperature == pytest.approx(control_map.temperature_range[1])


def test_a_player_pausing_between_staccato_notes_is_still_playing_for_a_gap_of_a_beat():
    controls = Controls()
    mapper = ControlMapper(controls, ControlMap())
    mapper.handle(mido.Message("note_on", note=60, velocity=80))
    time.sleep(0.1)
    mapper.handle(mido.Message("note_off", note=60))
    time.sleep(0.15)  # the rest of a staccato eighth at 120 BPM
    assert controls.player_is_playing(0.5, 8.0)  # one beat at 120 BPM: the player has not stopped
    assert not controls.player_is_playing(0.05, 8.0)  # the old fixed 50 ms took the rest for a stop


def test_a_key_struck_before_the_input_went_deaf_stops_counting_as_held_a_gap_after():
    """Its note-off may have been lost with the clock pulses the follower counted lost: held for
    8 s, it kept a turn from being answered. A key struck after the loss is held as long as it is."""
    controls = Controls()
    now = time.monotonic()
    controls.held_since, controls.last_player_activity = {60: now - 3.0}, now - 3.0
    assert controls.player_is_playing(0.5, 8.0)  # no loss seen: a held key is held
    controls.input_lost_at = now - 0.2
    assert controls.player_is_playing(0.5, 8.0)  # within a gap of the loss: still held
    controls.input_lost_at = now - 1.0
    assert not controls.player_is_playing(0.5, 8.0)
    controls.held_since = {60: now - 3.0, 64: now - 0.9}  # struck after the loss
    assert controls.player_is_playing(0.5, 8.0)


def test_the_answer_cc_switches_follow_and_free_live_and_is_off_by_default(tmp_path):
    controls = Controls()
    ControlMapper(controls, ControlMap()).handle(mido.Message("control_change", control=86, value=127))
    assert controls.answer == "follow"  # no answer CC unless the map names one
    path = tmp_path / "map.toml"
    path.write_text("answer_cc = 86\n")
    mapper = ControlMapper(controls, ControlMap.load(path))
    version = controls.steering_version
    mapper.handle(mido.Message("control_change", control=86, value=127))
    assert controls.answer == "free" and controls.steering_version > version  # the engine steers again
    mapper.handle(mido.Message("control_change", control=86, value=0))
    assert controls.answer == "follow"
    path.write_text("answer_cc = 1\n")  # the temperature's controller
    with pytest.raises(Exception, match="controller 1 is used for two things"):
        ControlMap.load(path)


def test_the_model_hears_the_players_notes_in_the_order_they_started_not_released():
    """A bass note held under a chord and a melody note: released last, heard first, with the
    steps the player played; a key struck again before its note-off ends its first strike."""
    controls = Controls()
    mapper = ControlMapper(controls, ControlMap())
    script = [(0.00, "note_on", 36), (0.05, "note_on", 60), (0.05, "note_on", 64), (0.15, "note_off", 60),
              (0.15, "note_off", 64), (0.20, "note_on", 67), (0.30, "note_off", 67), (0.35, "note_off", 36),
              (0.40, "note_on", 72), (0.45, "note_on", 72), (0.50, "note_off", 72)]
    started = time.monotonic()
    for at, kind, pitch in script:
        time.sleep(max(started + at - time.monotonic(), 0))
        mapper.handle(mido.Message(kind, note=pitch, velocity=80 if kind == "note_on" else 0))
    heard = []
    while not controls.played_notes.empty():
        heard.append(controls.played_notes.get_nowait())
    assert [int(note["pitch"]) for note in heard] == [36, 60, 64, 67, 72, 72]
    steps = [float(note["step"]) for note in heard]
    assert steps[0] == 0.0 and min(steps[1:]) >= 0.0
    # Within a few ms of what was played (0.05, 0, 0.15, 0.2, 0.05).
    assert all(abs(got - want) < 0.03 for got, want in zip(steps[1:], [0.05, 0.0, 0.15, 0.2, 0.05])), steps
    assert 0.34 < float(heard[0]["duration"]) < 0.4, heard[0]
