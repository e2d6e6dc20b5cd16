"""Helpers for the tests that run `cadenza stream` and listen to it on JACK."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import mido

from streamer.midi_input import PolledMidiInput
from conftest import JACK_BACKEND, REPO, cadenza_command, wait_for_port


class Listener:
    """Collects (monotonic seconds, message) from a JACK MIDI port."""

    def __init__(self, backend, port_name):
        self.messages: list[tuple[float, mido.Message]] = []
        self.port = PolledMidiInput(backend, port_name, lambda m, arrival: self.messages.append((arrival, m)),
                                    client_name="listener", poll_seconds=0.001)

    def note_ons(self, since: float = 0.0) -> list[mido.Message]:
        return [m for t, m in self.messages if t >= since and m.type == "note_on" and m.velocity > 0]

    def wait_for_notes(self, count: int, since: float = 0.0, timeout: float = 30.0) -> list[mido.Message]:
        deadline = time.monotonic() + timeout
        while len(self.note_ons(since)) < count:
            assert time.monotonic() < deadline, f"only {len(self.note_ons(since))} of {count} notes arrived"
            time.sleep(0.02)
        return self.note_ons(since)[:count]

    def wait_for_all_notes_off(self, timeout: float = 5.0) -> None:
        """Until the last message of a stop arrived (CC123 on channel 16): on a loaded machine the
        final messages can be a few JACK cycles behind the process's exit. Waits on what arrived,
        never on how soon: a stop that loses them fails here or in the count of notes left."""
        deadline = time.monotonic() + timeout
        while not self.all_notes_off_arrivals():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def all_notes_off_arrivals(self) -> list[float]:
        """When each CC123 on channel 16, the last a stop sends, arrived (monotonic seconds)."""
        return [t for t, m in self.messages if m.type == "control_change" and m.control == 123 and m.channel == 15]

    def close(self):
        self.port.close()


def start_stream(port: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, MIDO_BACKEND=JACK_BACKEND)
    return subprocess.Popen(cadenza_command("stream", "--midi-api", "jack", "--port", port, "--no-keys", *extra),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def still_sounding(messages) -> set:
    sounding = set()
    for _, message in messages:
        if message.type == "note_on" and message.velocity > 0:
            sounding.add((message.channel, message.note))
        elif message.type in ("note_on", "note_off"):
            sounding.discard((message.channel, message.note))
    return sounding


def stop_mid_stream(jack_midi, port: str, record, stop_signal: int, expect_code: int | None) -> Listener:
    """Stream to `port` until 12 notes arrived, send `stop_signal`, wait for --record; the listener."""
    process = start_stream(port, "--seed", "1", "--record", str(record))
    try:
        listener = Listener(jack_midi, wait_for_port(jack_midi.get_input_names, f":{port}"))
        listener.wait_for_notes(12)
        process.send_signal(stop_signal)
        code = process.wait(timeout=15)
        if expect_code is not None:
            assert code == expect_code, process.stderr.read()
        deadline = time.monotonic() + 10  # after SIGKILL the sender process writes it on its own
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        listener.wait_for_all_notes_off()
        listener.close()
    finally:
        process.kill()
    assert still_sounding(listener.messages) == set()
    assert any(m.type == "control_change" and m.control == 123 for _, m in listener.messages)
    return listener


@contextlib.contextmanager
def controlled_stream(jack_midi, port: str, *extra: str):
    """A stream to `port` with a listener and an output into its control input; Ctrl-C at the end
    must stop it with exit 0. Yields (process, listener, control_out)."""
    # An earlier test's stream may still be closing its own control input: take the new one.
    earlier = {name for name in jack_midi.get_output_names() if name.endswith(":cadenza-control")}
    process = start_stream(port, *extra)
    try:
        listener = Listener(jack_midi, wait_for_port(jack_midi.get_input_names, f":{port}"))
        control_out = jack_midi.open_output(wait_for_port(
            lambda: [n for n in jack_midi.get_output_names() if n not in earlier], ":cadenza-control"))
        listener.wait_for_notes(3)
        yield process, listener, control_out
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        control_out.close()
        listener.close()
    finally:
        process.kill()


def send_control(control_out, message, repeats: int = 3) -> None:
    """A control message sent as a moved knob sends it: more than once. The suite's JACK server runs
    without real-time scheduling, and beside a busy process a client now and then misses a cycle,
    losing the MIDI that arrived in it (a bare sender's: 1 of 300 in 2 of 10 runs beside one busy
    loop). A test of what a control does must not fail on that. (Whole streams whose control input
    heard nothing were another matter, fixed: see MidiBackend in streamer/outputs.py.) The messages
    here are all idempotent (a value, a program, all notes off)."""
    for _ in range(repeats):
        control_out.send(message)
        time.sleep(0.02)


def wait_for_program(listener, process, program: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.type == "program_change" and m.program == program for _, m in listener.messages):
        assert time.monotonic() < deadline, (
            f"the program change never reached the output: stream exit {process.poll()}, "
            f"{len(listener.messages)} messages, last {listener.messages[-1:]}")
        time.sleep(0.02)


def unreleased_in_take(record) -> int:
    sounding = set()
    for message in mido.MidiFile(str(record)):
        if message.type == "note_on" and message.velocity > 0:
            sounding.add((message.channel, message.note))
        elif message.type in ("note_on", "note_off"):
            sounding.discard((message.channel, message.note))
        elif message.type == "control_change" and message.control == 123:
            sounding = {key for key in sounding if key[0] != message.channel}
    return len(sounding)
