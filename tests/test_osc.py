"""OSC: a real python-osc client and server over UDP on 127.0.0.1, into Controls and a live stream."""

from __future__ import annotations

import math
import socket
import subprocess
import threading
import time

import mido
import pytest

from conftest import REPO, cadenza_command, run_cadenza
from streamer.controls import Controls
from streamer.osc import OscControls, OscSurface


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_every_address_sets_its_control():
    controls = Controls()
    osc = OscControls(controls)
    osc.handle("/cadenza/temperature", 0.7)
    osc.handle("/cadenza/density", 6.0)
    osc.handle("/cadenza/key", "d minor")
    osc.handle("/cadenza/dynamics", 90)
    osc.handle("/cadenza/instrument", 40)
    osc.handle("/cadenza/tempo_scale", 1.5)
    osc.handle("/cadenza/pause", 1)
    assert (controls.temperature, controls.density, controls.key, controls.dynamics) == (0.7, 6.0, "D minor", 90.0)
    assert (controls.program, controls.tempo_scale, controls.paused) == (40, 1.5, True)
    osc.handle("/cadenza/density", 0)
    osc.handle("/cadenza/key", "auto")
    osc.handle("/cadenza/dynamics", 0.0)
    assert (controls.density, controls.key, controls.dynamics) == (None, "auto", None)
    osc.handle("/cadenza/note_on", 60, 80)
    assert 60 in controls.held_since
    osc.handle("/cadenza/note_off", 60)
    note = controls.played_notes.get_nowait()
    assert int(note["pitch"]) == 60 and int(note["velocity"]) == 80 and not controls.held_since
    osc.handle("/cadenza/panic")
    assert controls.silence.is_set() and osc.skipped == 0


@pytest.mark.parametrize("address, args", [
    ("/cadenza/temperature", (0.0,)), ("/cadenza/temperature", (math.nan,)), ("/cadenza/temperature", ("hot",)),
    ("/cadenza/density", (100.0,)), ("/cadenza/key", ("H major",)), ("/cadenza/key", (3,)),
    ("/cadenza/instrument", (128,)), ("/cadenza/instrument", (1.5,)), ("/cadenza/tempo_scale", (9.0,)),
    ("/cadenza/pause", (2,)), ("/cadenza/note_on", (60,)), ("/cadenza/note_on", (200, 80)),
    ("/cadenza/panic", (1,)), ("/cadenza/volume", (1.0,)), ("/other/temperature", (1.0,)),
])
def test_a_bad_message_changes_nothing_and_is_counted(address, args, capsys):
    controls = Controls(temperature=1.0)
    osc = OscControls(controls)
    before = (controls.temperature, controls.density, controls.key, controls.program, controls.tempo_scale,
              controls.paused, controls.steering_version)
    osc.handle(address, *args)
    osc.handle(address, *args)
    after = (controls.temperature, controls.density, controls.key, controls.program, controls.tempo_scale,
             controls.paused, controls.steering_version)
    assert after == before and osc.skipped == 2 and not controls.silence.is_set()
    assert capsys.readouterr().err.count("skipped an OSC message") == 1  # reported once, then counted


def test_a_real_client_over_udp_reaches_the_controls():
    from pythonosc.udp_client import SimpleUDPClient

    controls = Controls()
    surface = OscSurface(controls, "127.0.0.1", _free_udp_port())
    surface.start()
    try:
        client = SimpleUDPClient("127.0.0.1", surface.server.server_address[1])
        client.send_message("/cadenza/temperature", 0.5)
        client.send_message("/cadenza/key", "F# major")
        client.send_message("/cadenza/temperature", "not a number")
        assert _wait_for(lambda: controls.key == "F# major" and surface.handler.skipped == 1)
        assert controls.temperature == 0.5
    finally:
        surface.close()


def test_a_busy_port_is_a_one_line_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cadenza("stream", "--no-keys", "--seconds", "1", "--audio-driver", "file", "--wav", "/dev/null",
                             "--osc", str(port))
    assert result.returncode == 2 and "cannot listen for OSC" in result.stderr, result.stderr
    bad = run_cadenza("stream", "--no-keys", "--seconds", "1", "--osc", "localhost:99999")
    assert bad.returncode == 2 and "--osc" in bad.stderr and "Traceback" not in bad.stderr


def test_a_stream_takes_osc_controls_and_notes_and_sends_its_notes(tmp_path):
    """A live stream: OSC switches its instrument (heard in the take) and the notes it plays come
    back as /cadenza/note to an OSC server of the test's own."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from pythonosc.udp_client import SimpleUDPClient

    received = []
    dispatcher = Dispatcher()
    dispatcher.map("/cadenza/note", lambda address, *args: received.append(args))
    listener = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    control_port = _free_udp_port()
    take = tmp_path / "take.mid"
    stream = subprocess.Popen(cadenza_command(
        "stream", "--no-keys", "--seconds", "5", "--seed", "3", "--audio-driver", "file", "--wav", str(tmp_path / "t.wav"),
        "--record", str(take), "--osc", str(control_port), "--osc-out", f"127.0.0.1:{listener.server_address[1]}"),
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: len(received) > 3, timeout=30), "no /cadenza/note came back"
        client = SimpleUDPClient("127.0.0.1", control_port)
        client.send_message("/cadenza/instrument", 40)
        client.send_message("/cadenza/note_on", [60, 90])
        client.send_message("/cadenza/note_off", 60)
        client.send_message("/cadenza/tempo", 2.0)  # no such address: skipped, and counted at the end
        client.send_message("/cadenza/temperature", "hot")
        _, stderr = stream.communicate(timeout=60)
    finally:
        stream.kill()
        listener.shutdown()
        listener.server_close()
    assert stream.returncode == 0, stderr
    assert "OSC in: 127.0.0.1:" in stderr and "OSC out:" in stderr
    assert stderr.count("skipped an OSC message") == 1 and "2 OSC messages skipped)" in stderr, stderr
    assert all(len(args) == 3 and 0 <= args[0] <= 127 and 1 <= args[1] <= 127 and args[2] > 0 for args in received)
    programs = [m.program for m in mido.MidiFile(str(take)) if m.type == "program_change"]
    assert programs[-1] == 40, programs
    notes_in_take = sum(1 for m in mido.MidiFile(str(take)) if m.type == "note_on" and m.velocity > 0)
    assert abs(len(received) - notes_in_take) <= 3, (len(received), notes_in_take)  # the last ones may be cut by the stop
