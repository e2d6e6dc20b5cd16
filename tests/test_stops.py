"""Every way a stream can stop leaves nothing sounding: signals, a vanished port, a killed engine or
JACK server, start-up, and the stop loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

from streamer.midi_input import PolledMidiInput
from conftest import JACK_BACKEND, REPO, cadenza_command, wait_for_port


from streaming import Listener, start_stream, still_sounding, stop_mid_stream, unreleased_in_take


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_notes_pair_up_and_a_signal_silences_everything(jack_midi, stop_signal, tmp_path):
    record = tmp_path / "played.mid"
    stop_mid_stream(jack_midi, f"pair{int(stop_signal)}", record, stop_signal, expect_code=0)
    recorded = [m for m in mido.MidiFile(str(record)) if not m.is_meta]
    ons = [m for m in recorded if m.type == "note_on" and m.velocity > 0]
    offs = [m for m in recorded if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)]
    assert len(ons) >= 12 and len(ons) == len(offs)


def test_stream_stops_with_an_error_when_its_port_vanishes(jack_midi):
    target = PolledMidiInput(jack_midi, "vanishing", lambda m, arrival: None, virtual=True, client_name="listener")
    try:
        name = wait_for_port(jack_midi.get_output_names, ":vanishing")
        env = dict(os.environ, MIDO_BACKEND=JACK_BACKEND)
        process = subprocess.Popen(cadenza_command("stream", "--midi-api", "jack", "--connect", name, "--no-keys"),
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
    finally:
        target.close()
    try:
        code = process.wait(timeout=15)
        error = process.stderr.read()
    finally:
        process.kill()
    assert code == 1
    assert "disappeared" in error.splitlines()[-1]


def test_a_killed_engine_still_leaves_nothing_sounding(jack_midi, tmp_path):
    """SIGKILL gives the engine no chance to clean up: the sender process sees its pipe close."""
    record = tmp_path / "played.mid"
    stop_mid_stream(jack_midi, "killed", record, signal.SIGKILL, expect_code=None)
    assert len([m for m in mido.MidiFile(str(record)) if m.type == "note_on" and m.velocity > 0]) >= 12


def test_a_stop_says_all_notes_off_twice_cycles_apart(jack_midi):
    """A client that misses one JACK cycle loses all a stop sent in it: the second all-notes-off
    comes cycles later, so one missed cycle cannot leave a note sounding."""
    process = start_stream("twice", "--seed", "4")
    try:
        listener = Listener(jack_midi, wait_for_port(jack_midi.get_input_names, ":twice"))
        listener.wait_for_notes(6)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(listener.all_notes_off_arrivals()) < 2:
            time.sleep(0.01)
        listener.close()
    finally:
        process.kill()
    arrivals = listener.all_notes_off_arrivals()
    assert len(arrivals) == 2, arrivals
    assert arrivals[1] - arrivals[0] >= 2 * 256 / 44100 - 0.001, arrivals  # two periods of the suite's server at least


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_a_closed_terminal_stops_as_cleanly_as_ctrl_c(jack_midi, stop_signal, tmp_path):
    record = tmp_path / f"take-{stop_signal}.mid"
    stop_mid_stream(jack_midi, f"hup{int(stop_signal)}", record, stop_signal, expect_code=0)
    assert len([m for m in mido.MidiFile(str(record)) if m.type == "note_on" and m.velocity > 0]) >= 12


def test_a_killed_jack_server_stops_the_stream_with_one_line_and_keeps_the_take(tmp_path):
    name = f"cadenza-doomed-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, MIDO_BACKEND=JACK_BACKEND, JACK_NO_AUDIO_RESERVATION="1")
    server = subprocess.Popen(["jackd", "-n", name, "-r", "-d", "dummy", "-r", "44100", "-p", "256"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    record = tmp_path / "take.mid"
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, check=True, capture_output=True, timeout=15)
        process = subprocess.Popen(cadenza_command("stream", "--port", "cadenza", "--record", str(record),
                                                   "--seconds", "60", "--no-keys", "--seed", "1"),
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(5.0)
        # SIGTERM, not SIGKILL: a jackd killed outright keeps its slot in JACK's server registry,
        # and after a few of those no server starts on this machine ("Too many servers already
        # active"). The stream sees the same thing either way: its server gone.
        server.terminate()
        server.wait()
        killed = time.monotonic()
        _, stderr = process.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
        for leftover in Path("/dev/shm").glob(f"jack_sem.*_{name}_*"):
            leftover.unlink(missing_ok=True)
    assert process.returncode == 1, stderr
    assert time.monotonic() - killed < 5, "noticed too late"
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "cadenza: stream stopped: the JACK server stopped", stderr
    take = mido.MidiFile(str(record))
    assert len([m for m in take if m.type == "note_on" and m.velocity > 0]) >= 10


def _wait_until_cadenza_runs(pid: int, timeout: float = 20.0) -> None:
    """Until the interpreter runs cadenza's first imports (numpy's extension is mapped). A signal
    before that lands in CPython's own start-up (its site module), which no program can handle:
    on a loaded machine that takes longer than a fixed 50 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            return  # it ended already: the assertions say how
        time.sleep(0.002)


def test_signals_during_start_up_exit_quietly(tmp_path):
    """From the interpreter's first imports to the first note: a stop signal never prints a traceback."""
    env = dict(os.environ, MIDO_BACKEND="mido.backends.rtmidi/UNIX_JACK", JACK_DEFAULT_SERVER="no-server-here")
    for delay, stop_signal in ((0.05, signal.SIGINT), (0.3, signal.SIGTERM), (0.8, signal.SIGHUP), (1.5, signal.SIGINT)):
        process = subprocess.Popen(cadenza_command("stream", "--fluidsynth", "--audio-driver", "file", "--wav",
                                                   str(tmp_path / "a.wav"), "--seconds", "20", "--no-keys"),
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until_cadenza_runs(process.pid)
        time.sleep(delay)
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
        assert "Traceback" not in stderr, (delay, stderr)
        assert process.returncode in (0, 128 + stop_signal), (delay, process.returncode, stderr)


def test_a_stop_that_lands_inside_a_callback_still_stops():
    """A signal handled inside a weakref callback (as the import machinery runs them) raises a
    SystemExit that Python swallows; a clean-clone run saw a stream play on its full 20 s that way.
    Here the signal is raised inside such a callback on purpose, so it lands there every time."""
    script = ("import signal, time, weakref\nimport cadenza_cli\n"
              "class Held: pass\nheld = Held()\n"
              "watch = weakref.ref(held, lambda _: signal.raise_signal(signal.SIGTERM))\n"
              "del held\ntime.sleep(10)\nprint('played on')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "played on" not in result.stdout
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert result.stderr.count("stopped by SIGTERM") == 1, result.stderr


def test_stop_loop_leaves_nothing_sounding_and_every_take_valid(jack_midi, tmp_path):
    """Each way to stop, once: the short loop the default suite runs. It counts notes, never time."""
    _stop_loop(jack_midi, tmp_path, 6)


@pytest.mark.slow
def test_forty_stops_leave_nothing_sounding_and_every_take_valid(jack_midi, tmp_path):
    _stop_loop(jack_midi, tmp_path, 40)


def _stop_loop(jack_midi, tmp_path, streams: int) -> None:
    """Short streams stopped by the end of --notes, SIGINT, SIGTERM, SIGHUP, CC123 then a signal,
    or the port they play to vanishing: zero notes left on, and every --record take complete.
    (`make stop-loop` adds the other endings and busy loops beside it: bench/stop_loop.py.)"""
    endings = ["notes", signal.SIGINT, signal.SIGTERM, signal.SIGHUP, "cc123", "vanish"]
    control = jack_midi.open_output("stopctl", virtual=True, client_name="stoploop")
    left_on, takes = [], 0
    try:
        for index in range(streams):
            ending = endings[index % len(endings)]
            record = tmp_path / f"take{index}.mid"
            extra = ["--notes", "6"] if ending == "notes" else []
            sink, sunk = None, []
            if ending == "vanish":
                sink = PolledMidiInput(jack_midi, f"sink{index}", lambda m, arrival: sunk.append(m), virtual=True,
                                       client_name="sink")
                extra += ["--connect", f"sink{index}"]
            command = cadenza_command("stream", "--midi-api", "jack", "--no-keys", "--seed", str(index), "--record",
                                      str(record), "--control-port", "stopctl", *extra)
            if ending != "vanish":
                command += ["--port", f"loop{index}"]
            process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, MIDO_BACKEND=JACK_BACKEND),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                if ending == "vanish":
                    time.sleep(3.0)
                    assert len([m for m in sunk if m.type == "note_on"]) >= 3  # --connect reaches the port
                    sink.close()  # the port it plays to is gone: it stops with exit 1
                    assert process.wait(timeout=20) == 1, process.stderr.read()
                    assert "disappeared" in process.stderr.read()
                    left_on.append(unreleased_in_take(record))
                    takes += 1
                    continue
                listener = Listener(jack_midi, wait_for_port(jack_midi.get_input_names, f":loop{index}"))
                listener.wait_for_notes(3)
                if ending == "cc123":
                    control.send(mido.Message("control_change", control=123, value=0))
                    time.sleep(0.2)
                    process.send_signal(signal.SIGINT)
                elif ending != "notes":
                    process.send_signal(ending)
                assert process.wait(timeout=20) == 0, process.stderr.read()
                assert " notes played (" in process.stderr.read()
                listener.wait_for_all_notes_off()
                listener.close()
            finally:
                process.kill()
            left_on.append(len(still_sounding(listener.messages)) + unreleased_in_take(record))
            takes += len([m for m in mido.MidiFile(str(record)) if m.type == "note_on" and m.velocity > 0]) > 0
    finally:
        control.close()
    assert sum(left_on) == 0, left_on
    assert takes == streams
