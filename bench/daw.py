"""The DAW, played by a script: MIDI clock, transport and phrases sent to a cadenza stream's
control input on JACK, and what the stream plays heard back, each with its time.

A `ClockSender` sends a `Script`: MIDI clock with +-1 ms of jitter on every pulse (more if
asked), Start, Stop, Continue, Song Position, tempo changes, a vanishing clock, and phrases on
the control input; it records when it sent each. `session(...)` runs one stream under a script
on the server JACK_DEFAULT_SERVER names; `session_elsewhere` runs it in a process of its own.
`python -m bench.sync` turns sessions into figures; `delivery_floor` says what the server itself
delivers, with no cadenza in the way.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import mido
import numpy as np
import rtmidi

from bench import input_log
from bench.stream_timing import BACKEND, REPO, StampedListener
from streamer.controls import ControlMap
from streamer.outputs import midi_backend
from streamer.realtime import realtime_library_threads

PULSES_PER_BEAT = 24


@dataclass
class Script:
    """What the DAW does, in beats of its own clock from the first pulse sent."""

    bpm: float = 120.0
    start_beat: float = 2.0  # Start is sent this many beats of clock after the clock starts
    tempo_changes: dict = field(default_factory=dict)  # beat after Start -> new bpm
    stop_beat: float | None = 12.0  # after Start
    song_position: int | None = None  # sixteenths, sent after Stop
    continue_after_beats: float | None = None  # Continue this long after Stop
    end_beat: float = 16.0  # after Start: the clock stops (it runs on while stopped, as a DAW's does)
    phrase_beat: float | None = None  # after Start: the player plays a phrase of eighths here
    phrase_notes: int = 4
    phrase_legato: float = 0.8  # each eighth is held for this fraction of it
    my_turn_beat: float | None = None  # after Start: the turn CC (127) asks cadenza to play
    jitter_seconds: float = 0.001
    vanish_beat: float | None = None  # after Start: the clock falls silent here, with no Stop (a pulled cable)
    vanish_beats: float = 4.0  # ...for this long, while the DAW plays on; then its pulses come back
    start_lead_seconds: float | None = None  # Start this long before the first pulse (None: half a pulse)
    unsent_pulses: tuple = ()  # pulses (counted from Start's, which is 0) never sent: as a loaded server loses them
    unsent_note_offs: tuple = ()  # the phrase's notes (0 the first) whose note-off is never sent: lost likewise


class ClockSender:
    """Sends the script to the stream's control input; `sent` holds (kind, monotonic seconds), and
    for every pulse ("grid", the time it belonged at before its jitter)."""

    def __init__(self, port_suffix: str | None, script: Script, seed: int = 0, out=None, precise: bool = True):
        """Sends into the port named by `port_suffix`, or through `out` (an rtmidi MidiOut already open).
        `precise`: spin the last millisecond before each message (many senders in one process
        must not: each spin holds the GIL from the others)."""
        self._own_port = out is None  # closed at the end only if opened here
        if out is None:
            with realtime_library_threads():  # a DAW's MIDI thread is real-time, as cadenza's is
                out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="daw")
                ports = out.get_ports()
                out.open_port(next(i for i, name in enumerate(ports) if name.endswith(port_suffix)))
        self.out = out
        self.script = script
        self.precise = precise
        self.rng = np.random.default_rng(seed)
        self.sent: list[tuple[str, float]] = []
        self.lock = threading.Lock()  # the clock and a phrase share one port
        self.finish = threading.Event()  # ends the clock before script.end_beat
        self.thread = threading.Thread(target=self._run, daemon=True)

    def times(self, kind: str) -> list[float]:
        return [t for k, t in self.sent if k == kind]

    def _send(self, kind: str, data: list[int], when: float | None = None) -> None:
        if when is not None:
            margin = 0.001 if self.precise else 0.0
            while (left := when - time.monotonic()) > margin:
                time.sleep(left - 0.0006 if self.precise else left)  # then a short spin: sleep alone overshoots by ~0.1 ms
            while self.precise and time.monotonic() < when:
                pass
        with self.lock:
            self.out.send_message(data)
            self.sent.append((kind, time.monotonic()))

    def _run(self) -> None:
        script = self.script
        seconds_per_pulse = 60.0 / script.bpm / PULSES_PER_BEAT
        ideal = time.monotonic() + 0.05
        beat = -script.start_beat  # beats relative to Start
        events = self._events()
        while beat < script.end_beat and not self.finish.is_set():
            due = [e for e in events if e[0] <= beat + 1e-9]
            for event in due:
                events.remove(event)
                lead = seconds_per_pulse / 2 if script.start_lead_seconds is None else script.start_lead_seconds
                self._fire(event, ideal - lead)
                if event[1] == "tempo":
                    seconds_per_pulse = 60.0 / event[2] / PULSES_PER_BEAT
            if script.vanish_beat is not None and abs(beat - script.vanish_beat) < 0.5 / PULSES_PER_BEAT:
                self.sent.append(("vanish", time.monotonic()))
                unheard = round(script.vanish_beats * PULSES_PER_BEAT)
                ideal += unheard * seconds_per_pulse
                beat += unheard / PULSES_PER_BEAT
                self.sent.append(("unheard_pulses", unheard))
            jittered = ideal + self.rng.uniform(-1, 1) * script.jitter_seconds
            if round(beat * PULSES_PER_BEAT) in script.unsent_pulses:
                with self.lock:
                    self.sent.append(("unsent", jittered))
            else:
                self._send("clock", [0xF8], jittered)
            with self.lock:
                self.sent.append(("grid", ideal))  # where the pulse belonged: the DAW's grid, without the jitter
            ideal += seconds_per_pulse
            beat += 1.0 / PULSES_PER_BEAT
        if self._own_port:
            self.out.close_port()

    def _events(self) -> list:
        script = self.script
        events = [(0.0, "start", None)]
        events += [(beat, "tempo", bpm) for beat, bpm in script.tempo_changes.items()]
        if script.stop_beat is not None:
            events.append((script.stop_beat, "stop", None))
            if script.song_position is not None:
                events.append((script.stop_beat + 0.5, "songpos", script.song_position))
            if script.continue_after_beats is not None:
                events.append((script.stop_beat + script.continue_after_beats, "continue", None))
        if script.phrase_beat is not None:
            events.append((script.phrase_beat, "phrase", None))
        if script.my_turn_beat is not None:
            events.append((script.my_turn_beat, "my_turn", None))
        return sorted(events, key=lambda e: e[0])

    def _fire(self, event, when: float) -> None:
        _, kind, value = event
        if kind == "start":
            self._send("start", [0xFA], when)
        elif kind == "stop":
            self._send("stop", [0xFC], when)
        elif kind == "continue":
            self._send("continue", [0xFB], when)
        elif kind == "songpos":
            self._send("songpos", [0xF2, value & 0x7F, value >> 7], when)
        elif kind == "my_turn":
            self._send("my_turn", [0xB0, ControlMap().turn_cc, 127], when)
        elif kind == "phrase":
            threading.Thread(target=self._phrase, daemon=True).start()

    def _phrase(self) -> None:
        eighth = 60.0 / self.script.bpm / 2
        for index in range(self.script.phrase_notes):
            pitch = (60, 64, 67, 72)[index % 4]
            self._send("note_on", [0x90, pitch, 90])
            time.sleep(eighth * self.script.phrase_legato)
            if index in self.script.unsent_note_offs:
                with self.lock:
                    self.sent.append(("unsent_note_off", time.monotonic()))
            else:
                self._send("note_off", [0x80, pitch, 0])
            time.sleep(eighth * (1 - self.script.phrase_legato))


@dataclass
class Session:
    sent: list  # (kind, monotonic seconds) from the ClockSender
    heard: list  # (arrival monotonic seconds, mido message) from the listener
    stderr: str
    exit_code: int
    # (arrival monotonic seconds, bytes) per message the stream's control input received, where
    # the stream was given --input-log (tests/test_sync.py's session); None where it was not.
    received: list | None = None

    def times(self, kind: str) -> list[float]:
        return [t for k, t in self.sent if k == kind]

    def onsets(self) -> np.ndarray:
        return np.array([t for t, m in self.heard if m.type == "note_on" and m.velocity > 0])

    def lost_on_the_way(self) -> dict:
        """kind -> how many of the messages the DAW sent of that kind the stream's input never
        received (bench/input_log.py); those with none lost left out."""
        return input_log.lost_on_the_way(self.sent, self.received or [])

    def input_story(self) -> str:
        """One line on what the stream's input received of the clock: for a failure's message."""
        return input_log.input_story(self.sent, self.received)


@contextlib.contextmanager
def no_collector_pauses():
    """A DAW's clock does not stop for Python's garbage collector, so none runs while the script
    plays: a full pass over this process's objects (numpy and all) holds every thread for
    milliseconds, and a pulse held back by it is jitter cadenza never met in a DAW."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def session(script: Script, stream_args: list, seed: int = 0) -> Session:
    """Run cadenza with `stream_args` under the script; everything sent and heard."""
    backend = midi_backend("jack")
    port = f"sync-{os.getpid()}-{seed}"
    controls_before = set(backend.get_output_names())
    # PYTHONFAULTHANDLER: a stream that does not stop is asked for every thread's stack (SIGABRT) before it is killed.
    stream = subprocess.Popen([sys.executable, "-m", "cadenza_cli", "stream", "--midi-api", "jack", "--port", port,
                               "--no-keys", "--seed", str(seed), *stream_args], cwd=REPO,
                              env=dict(os.environ, MIDO_BACKEND=BACKEND, PYTHONFAULTHANDLER="1"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        control = None
        while control is None or not any(n.endswith(f":{port}") for n in backend.get_input_names()):
            if time.monotonic() > deadline or stream.poll() is not None:
                raise RuntimeError(f"the stream did not start: {stream.communicate(timeout=10)[1][-800:]}")
            control = next((n for n in set(backend.get_output_names()) - controls_before if "cadenza-control" in n), None)
            time.sleep(0.05)
        listener = StampedListener(f":{port}", poll_seconds=0.005)  # arrivals come from JACK's stamps
        sender = ClockSender(control, script, seed)
        with no_collector_pauses():
            sender.thread.start()
            sender.thread.join(timeout=300)
            time.sleep(0.3)
    finally:
        stderr = stop_stream(stream)
    time.sleep(0.2)
    heard = [(arrival, mido.Message.from_bytes(data)) for arrival, data in listener.arrivals()]
    return Session(sent=sender.sent, heard=heard, stderr=stderr, exit_code=stream.returncode)


def stop_stream(stream: subprocess.Popen) -> str:
    """Ctrl-C a stream and return its stderr; one that does not stop within 30 s is asked for its
    threads' stacks (SIGABRT; with PYTHONFAULTHANDLER set they go to stderr), then killed."""
    stream.send_signal(signal.SIGINT)
    try:
        return stream.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        stream.send_signal(signal.SIGABRT)
        try:
            _, stderr = stream.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            stream.kill()
            _, stderr = stream.communicate()
        return "did not stop within 30 s of SIGINT:\n" + stderr


class SessionCrashed(RuntimeError):
    """The process that played the DAW's part died (exit code, the end of its stderr)."""

    def __init__(self, exit_code: int, stderr: str):
        super().__init__(f"the session failed (exit {exit_code}): {stderr}")
        self.exit_code = exit_code


def session_elsewhere(script: Script, stream_args: list, seed: int = 0) -> Session:
    """`session` run by a process of its own, on the server JACK_DEFAULT_SERVER names.

    libjack does not take one process talking to two servers: the test process, whose clients
    are on the suite's server, crashed opening one on the sync tests' own server.
    """
    import dataclasses
    import json

    request = json.dumps({"script": dataclasses.asdict(script), "stream_args": stream_args, "seed": seed})
    # -X faulthandler: a process killed by a signal (libjack's, once in a suite) says where.
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-m", "bench.daw", "--session", request],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise SessionCrashed(result.returncode, result.stderr[-2000:])
    data = json.loads(result.stdout.strip().splitlines()[-1])
    heard = [(arrival, mido.Message.from_bytes(bytes.fromhex(hex_bytes))) for arrival, hex_bytes in data["heard"]]
    return Session(sent=[tuple(item) for item in data["sent"]], heard=heard, stderr=data["stderr"],
                   exit_code=data["exit_code"])


def delivery_floor(messages: int = 300, every_seconds: float = 0.005) -> dict:
    """How well this machine's JACK server (JACK_DEFAULT_SERVER) delivers MIDI at all: a bare
    rtmidi sender, no cadenza, to a listener; delivery p50/p99/max in ms and the messages lost.
    On a healthy 2-core VM: p99 about 1.5 ms, none lost. A host that cannot keep a 64-frame
    server's cycles (seen here: sleeps overshooting by 1-4 ms) delivers 50-200 ms late and drops some."""
    with realtime_library_threads():  # as cadenza's sender's
        out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="floor-sender")
        out.open_virtual_port("floor-sender")
    time.sleep(0.3)
    listener = StampedListener(":floor-sender")
    time.sleep(0.3)
    sent = []
    with no_collector_pauses():
        start = time.monotonic()
        for index in range(messages):
            due = start + index * every_seconds
            while time.monotonic() < due:
                time.sleep(0.0003)
            out.send_message([0x90, 60 + index % 12, 64])
            sent.append(time.monotonic())
        time.sleep(0.3)
    arrivals = np.array([arrival for arrival, _ in listener.arrivals()])
    out.close_port()
    if len(arrivals) < len(sent):  # a message lost: match each arrival to the send just before it
        sent_array = np.array(sent)
        delays = arrivals - sent_array[np.clip(np.searchsorted(sent_array, arrivals) - 1, 0, None)]
    else:
        delays = arrivals - np.array(sent)
    delays_ms = delays * 1e3
    return {"p50": float(np.percentile(delays_ms, 50)), "p99": float(np.percentile(delays_ms, 99)),
            "max": float(delays_ms.max()), "lost": len(sent) - len(arrivals)}


def echo_downbeat(script: Script, seed: int = 0) -> float:
    """Seconds from the downbeat to a note heard from a bare echo in cadenza's place: an rtmidi
    input that answers Start with a note-on from its callback, no model, no engine: what the
    plainest program on this server does (measured: slower than cadenza, whose input is polled
    every 0.5 ms while it waits for Start and whose sender hands the note over at once)."""
    with realtime_library_threads():  # as cadenza's
        echo_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="echo")
        echo_in.open_virtual_port(f"echo-in-{seed}")
        echo_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="echo-out")
        echo_out.open_virtual_port(f"echo-out-{seed}")

    def answer(event, _data=None):
        if event[0][0] == 0xFA:
            echo_out.send_message([0x90, 60, 100])

    echo_in.set_callback(answer)
    listener = StampedListener(f":echo-out-{seed}", poll_seconds=0.005)
    try:
        sender = ClockSender(f":echo-in-{seed}", script, seed)
        sender.thread.start()
        sender.thread.join(timeout=60)
        time.sleep(0.2)
    finally:
        heard = [arrival for arrival, data in listener.arrivals() if data[0] & 0xF0 == 0x90]
        echo_in.close_port()
        echo_out.close_port()
        echo_in.delete()
        echo_out.delete()
    grid, pulses = np.array(sender.times("grid")), np.array(sender.times("clock"))
    downbeat = grid[int(np.sum(pulses < sender.times("start")[0]))]
    return heard[0] - downbeat


def _serve_session(request: str) -> None:
    import json

    data = json.loads(request)
    script = Script(**{**data["script"], "tempo_changes": {float(k): v for k, v in data["script"]["tempo_changes"].items()}})
    result = session(script, data["stream_args"], data["seed"])
    print(json.dumps({"sent": result.sent, "heard": [(t, m.hex()) for t, m in result.heard],
                      "stderr": result.stderr, "exit_code": result.exit_code}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="the child side of session_elsewhere and the tests' health check")
    parser.add_argument("--session", help="a session, as JSON (session_elsewhere)")
    parser.add_argument("--floor", action="store_true", help="print delivery_floor() as JSON")
    arguments = parser.parse_args(argv)
    if arguments.floor:
        import json

        print(json.dumps(delivery_floor()))
    elif arguments.session:
        _serve_session(arguments.session)


if __name__ == "__main__":
    main()
