"""The sender process: it waits for each message's time and sends it, nothing else.

It runs apart from the engine so that nothing the engine does (inference, Python's GIL, the
garbage collector) can hold a message back. It owns the outputs and the schedule, so whatever
ends the stream (a stop command, Ctrl-C or SIGTERM, the engine process dying and its pipe
closing, a vanished port, a failing output) every note it started gets its note-off and every
output all-notes-off before it exits.
"""

from __future__ import annotations

import gc
import math
import select
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection, Pipe
from contextlib import ExitStack
from pathlib import Path

import mido

from models.errors import CadenzaError
from streamer.outputs import OutputSpec, open_outputs
from streamer.realtime import SENDER_PRIORITY, realtime_library_threads, request_realtime_priority
from streamer.scheduler import Scheduler

WATCH_SECONDS = 0.5  # how often a MIDI port is checked for having vanished (or its server)
START_TIMEOUT_SECONDS = 60.0


class SenderProcess:
    """The engine's side: schedule notes and controls; the process sends them on time."""

    def __init__(self, spec: OutputSpec, timing_log: Path | None = None):
        # A fresh interpreter that imports only what sending needs; one socket pair carries
        # commands one way and replies the other.
        self._connection, child_end = Pipe()
        self._process = subprocess.Popen([sys.executable, "-m", "streamer.sender", str(child_end.fileno())],
                                         pass_fds=[child_end.fileno()], stdin=subprocess.DEVNULL)
        child_end.close()
        self._connection.send((spec, timing_log))
        self._last_time = time.monotonic()
        self._error: str | None = None
        self.stopped = False
        self.notes_played: int | None = None  # note-ons actually sent, known once stopped
        self.notes_dropped = 0

    def wait_until_ready(self) -> None:
        """Block until the outputs are open; raise CadenzaError with the sender's reason if they are not."""
        if not self._connection.poll(START_TIMEOUT_SECONDS):
            self._process.terminate()
            raise CadenzaError("the sender process did not start")
        try:
            kind, detail = self._connection.recv()
        except EOFError:
            raise CadenzaError(f"the sender process exited (code {self._process.wait()})") from None
        if kind == "error":
            self._process.wait(5)
            raise CadenzaError(detail)

    def schedule_note(self, onset: float, end: float, channel: int, pitch: int, velocity: int) -> None:
        self._last_time = max(self._last_time, end)
        self._send(("note", onset, end, channel, pitch, velocity))

    def schedule_message(self, when: float, message: mido.Message) -> None:
        self._send(("at", when, message.bytes()))

    def send_soon(self, message: mido.Message) -> None:
        self._send(("now", message.bytes()))

    def tempo_point(self, when: float, beat: float, seconds_per_beat: float) -> None:
        """Musical time: song position `beat` is sent at `when` (monotonic), at this tempo (see recording.py)."""
        self._send(("beat", when, beat, seconds_per_beat))

    def silence_now(self) -> None:
        self._send(("silence",))

    def last_scheduled_time(self) -> float:
        return self._last_time

    @property
    def error(self) -> str | None:
        """Why the sender stopped on its own (a vanished port, a failed output), else None."""
        self._read_replies()
        if self._error is None and not self.stopped and self._process.poll() is not None:
            self._error = f"the sender process exited (code {self._process.returncode})"
        return self._error

    def _read_replies(self) -> None:
        while self._connection.poll():
            try:
                kind, detail = self._connection.recv()
            except (EOFError, OSError):
                return
            if kind == "error":
                self._error = detail
            elif kind == "played":
                self.notes_played, self.notes_dropped = detail
            elif kind == "stopped":  # after our stop, or a SIGTERM of its own (to the process group)
                self.stopped = True

    def stop(self) -> None:
        """Silence everything, close the outputs and wait for the process to end."""
        self._send(("stop",))
        deadline = time.monotonic() + 10
        while self._process.poll() is None and self.notes_played is None and time.monotonic() < deadline:
            if self._connection.poll(0.05):
                self._read_replies()
        self._read_replies()
        try:
            self._process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._connection.close()

    def _send(self, command: tuple) -> None:
        try:
            self._connection.send(command)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the sender has already stopped; `error` says why


class _Stopped(Exception):
    pass


def _raise_stopped(*_) -> None:
    raise _Stopped


def serve(connection: Connection) -> None:
    """The sender process: open the outputs the first command names, then wait and send."""
    # Ctrl-C in a terminal reaches the engine too, which stops us in order; a SIGTERM may be ours alone.
    # Ctrl-C, a closed terminal (SIGHUP) and Ctrl-\ reach the whole process group: the engine
    # handles them and tells this process to stop; if the engine dies, its pipe closes.
    for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(ignored, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stopped)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    spec, timing_log = connection.recv()
    with ExitStack() as stack:
        try:
            with realtime_library_threads():  # JACK's thread hands what we send to the server
                outputs, watch = open_outputs(spec, stack, log)
        except CadenzaError as error:
            connection.send(("error", str(error)))
            return
        except _Stopped:
            return
        scheduler = Scheduler(outputs, timing_log=timing_log is not None, early_seconds=_jack_half_period(outputs))
        # The collector's full pass walks every object the imports made (20,000: 4 ms, measured) and
        # holds the only thread that sends; frozen, they are left out (0.15 ms with 3,000 messages
        # waiting). Sends had come 4-6 ms late now and then, beside a busy loop.
        gc.freeze()
        request_realtime_priority(SENDER_PRIORITY)
        connection.send(("ready", None))
        try:
            reason = _loop(connection, scheduler, watch)
        except _Stopped:
            reason = None
        except Exception as error:  # a failing output: say why, after silencing
            reason = f"output failed: {type(error).__name__}: {error}".splitlines()[0]
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing may interrupt the silencing
            scheduler.silence_now()
            if timing_log:
                scheduler.write_timing_log(timing_log)
        try:
            connection.send(("error", reason) if reason else ("stopped", None))
            connection.send(("played", (scheduler.notes_played, scheduler.notes_dropped)))
        except OSError:
            pass  # the engine is gone


def _jack_half_period(outputs: list) -> float:
    """Half the JACK period when a JACK MIDI port is among the outputs, else 0."""
    import rtmidi

    from streamer.jack import jack_period_seconds

    if not any(getattr(output, "api", None) == rtmidi.API_UNIX_JACK for output in outputs):
        return 0.0
    return (jack_period_seconds() or 0.0) / 2


def _loop(connection, scheduler: Scheduler, watch: list) -> str | None:
    """Wait, send, take commands; return why it stopped on its own (None for a stop command)."""
    next_watch = time.monotonic() + WATCH_SECONDS if watch else math.inf
    while True:
        due = scheduler.next_time()
        wake = min(due, next_watch) if due is not None else next_watch
        timeout = None if wake == math.inf else max(wake - time.monotonic(), 0)
        # select() waits with microsecond resolution; Connection.poll() rounds up to milliseconds.
        readable, _, _ = select.select([connection], [], [], timeout)
        scheduler.send_due()
        if readable:
            try:
                command = connection.recv()
            except EOFError:
                return None  # the engine process is gone: silence and exit
            if command[0] == "stop":
                return None
            _apply(command, scheduler)
            scheduler.send_due()
        now = time.monotonic()
        if now >= next_watch:
            due = scheduler.next_time()
            if due is not None and due - now < 0.02:
                next_watch = due + 0.005  # listing ports takes a while: right after that message
                continue
            next_watch = now + WATCH_SECONDS
            for output in watch:
                reason = output.missing()
                if reason:
                    return reason


def _apply(command: tuple, scheduler: Scheduler) -> None:
    kind = command[0]
    if kind == "note":
        scheduler.schedule_note(*command[1:])
    elif kind == "now":
        scheduler.send_soon(mido.Message.from_bytes(command[1]))
    elif kind == "at":
        scheduler.schedule_message(command[1], mido.Message.from_bytes(command[2]))
    elif kind == "silence":
        scheduler.silence_now()
    elif kind == "beat":
        scheduler.tempo_point(*command[1:])


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
