"""OSC in and out: what SuperCollider, Max, TouchOSC and TidalCycles speak (python-osc, UDP).

In (`--osc PORT`, or HOST:PORT to listen beyond this machine), each address sets one control:

  /cadenza/temperature f     0.05-5
  /cadenza/density f         notes per second (0.5-40), 0 = free
  /cadenza/key s             "D minor", "none" or "auto"
  /cadenza/dynamics f        mean velocity 1-127, 0 = free
  /cadenza/instrument i      General MIDI program 0-127
  /cadenza/tempo_scale f     0.25-4
  /cadenza/pause i           1 pauses, 0 plays on
  /cadenza/panic             every note off now
  /cadenza/note_on i i       the player's note (pitch, velocity), fed to the model as on the control port
  /cadenza/note_off i

A message of the wrong types, out of range or to an unknown address is skipped and counted; the
first is reported on stderr, as on the MIDI control input. Out (`--osc-out HOST:PORT`):
/cadenza/note i i f (pitch, velocity, duration in seconds) at each onset cadenza plays.
"""

from __future__ import annotations

import functools
import queue
import sys
import threading
import time

from models.errors import CadenzaError
from streamer.control_values import SETTINGS, BadControl, checked_change
from streamer.controls import Controls, PlayerNotes

PREFIX = "/cadenza/"


def parse_host_port(text: str, option: str) -> tuple[str, int]:
    """'9000' -> ('127.0.0.1', 9000); '0.0.0.0:9000' -> ('0.0.0.0', 9000); a one-line error otherwise."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise CadenzaError(f"{option} {text!r}: expected PORT or HOST:PORT with a port 1-65535")
    return host or "127.0.0.1", number


def _integer(args: tuple, count: int, low: int, high: int) -> tuple[int, ...]:
    if len(args) != count or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise BadControl(f"expects {count} integer{'s' if count > 1 else ''}")
    if not all(low <= a <= high for a in args):
        raise BadControl(f"values must be {low}-{high}")
    return tuple(args)


class OscControls:
    """Applies OSC messages to Controls and the player-note feed (no sockets: OscSurface has them)."""

    def __init__(self, controls: Controls, notes: PlayerNotes | None = None):
        self.controls = controls
        self.notes = notes or PlayerNotes(controls)
        self.skipped = 0
        self._handlers = {"pause": self._pause, "panic": self._panic, "note_on": self._note_on,
                          "note_off": self._note_off}
        for name in SETTINGS:
            self._handlers[name] = functools.partial(self._setting, name)

    def handle(self, address: str, *args) -> None:
        """One message; a bad one is skipped, counted, and the first reported."""
        name = address[len(PREFIX):] if address.startswith(PREFIX) else None
        try:
            if name not in self._handlers:
                raise BadControl("unknown address")
            self._handlers[name](args)
        except BadControl as why:
            self.skipped += 1
            if self.skipped == 1:
                sys.stderr.write(f"\ncadenza: skipped an OSC message {address} {list(args)!r}: {why}; "
                                 "later ones are only counted\n")

    def _setting(self, name: str, args: tuple) -> None:
        if len(args) != 1:
            raise BadControl(f"{name} expects one value")
        setter, value = checked_change(name, args[0])
        getattr(self.controls, setter)(value)

    def _pause(self, args):
        self.controls.paused = bool(_integer(args, 1, 0, 1)[0])

    def _panic(self, args):
        if args:
            raise BadControl("takes no arguments")
        self.controls.silence.set()
        self.notes.clear()

    def _note_on(self, args):
        pitch, velocity = _integer(args, 2, 0, 127)
        if velocity == 0:
            self.notes.ended(pitch)
        else:
            self.notes.started(pitch, velocity)

    def _note_off(self, args):
        self.notes.ended(_integer(args, 1, 0, 127)[0])


class OscSurface:
    """`--osc`: an OSC server on its own thread; it acts only on Controls and the player-note feed."""

    kind = "OSC"  # in the stream's last line: "2 OSC messages skipped"

    def __init__(self, controls: Controls, host: str, port: int):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.handler = OscControls(controls)
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self.handler.handle)
        try:
            self.server = BlockingOSCUDPServer((host, port), dispatcher)
        except OSError as error:
            raise CadenzaError(f"cannot listen for OSC on {host}:{port}: {error.strerror or error}") from None
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="osc-in", daemon=True)

    @property
    def skipped(self) -> int:
        """Messages it could not use (reported once, then counted)."""
        return self.handler.skipped

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


class OscNoteSender:
    """`--osc-out`: /cadenza/note pitch velocity duration at each onset, from the note feed."""

    name = "OSC out"

    def __init__(self, controls: Controls, host: str, port: int):
        from pythonosc.udp_client import SimpleUDPClient

        self.client = SimpleUDPClient(host, port)
        self.address = f"{host}:{port}"
        self.feed = controls.subscribe_notes()
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osc-out", daemon=True)

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    def _run(self) -> None:
        while self._running.is_set():
            try:
                note = self.feed.get(timeout=0.1)
            except queue.Empty:
                continue
            wait = note["onset_monotonic"] - time.monotonic()  # sent at the onset, as it sounds
            if wait > 0:
                time.sleep(wait)
            self._send(note)

    def _send(self, note: dict) -> None:
        if note["source"] != "cadenza":
            return
        try:
            self.client.send_message(PREFIX + "note", [note["pitch"], note["velocity"], note["duration"]])
        except OSError:
            pass  # nobody listening (UDP): nothing to tell

    def close(self) -> None:
        """Stop; the notes already sounded but not yet sent go out now, those still ahead never sound."""
        self._running.clear()
        self._thread.join(timeout=1)
        now = time.monotonic()
        while True:
            try:
                note = self.feed.get_nowait()
            except queue.Empty:
                return
            if note["onset_monotonic"] <= now:
                self._send(note)
