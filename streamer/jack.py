"""What cadenza asks libjack itself: the period, and whether the server and a port are still there.

rtmidi answers neither. Asking through rtmidi would mean opening a new JACK client each time,
and a client that is activated or closed makes JACK reorder its graph, in which MIDI events can
be lost (measured: 1 MIDI clock pulse of 385 lost to ten activations). So one client of our own,
never activated and with no ports, stays open from the start, asks, and is told by the server
when it shuts down (which a client that was never activated is told too).

The period matters because JACK moves MIDI once per period: a message handed to it is delivered
at the start of the next cycle, and an arriving one is stamped with its cycle's time. On average
a message so arrives half a period after it was sent, and is stamped half a period late.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib
import os
import threading
import time

from models.stderr import silenced_stderr

JACK_NO_START_SERVER = 0x01
JACK_PORT_IS_INPUT, JACK_PORT_IS_OUTPUT = 0x1, 0x2
_SHUTDOWN_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _libjack_path() -> str:
    """The libjack that rtmidi uses. The python-rtmidi wheel carries its own copy (JACK 1.9.22,
    renamed libjack-<hash>.so); this client opened the system's by name, so a process held two
    client libraries talking to one server. One is what libjack expects. Measured, 15 s streams on a
    non-real-time dummy server: with both in use, rtmidi's input client missed 92-182 cycles in 2
    of 4 streams (each miss loses the MIDI that arrived in that cycle); with one in use, 36-37 in
    2 of 24 (rtmidi built on the system's libjack included). The rest: see MidiBackend in streamer/outputs.py."""
    importlib.import_module("rtmidi")  # loads rtmidi's libjack, whichever it is

    try:
        with open("/proc/self/maps") as maps:
            loaded = [line.split()[-1] for line in maps if "/libjack" in line]
    except OSError:  # not Linux: rtmidi links the system's libjack there
        loaded = []
    loaded.sort(key=lambda path: "rtmidi" not in path)  # rtmidi's own first, where FluidSynth loaded the system's too
    return loaded[0] if loaded else ctypes.util.find_library("jack") or "libjack.so.0"


@functools.cache
def _library():
    try:
        library = ctypes.CDLL(_libjack_path())
    except OSError:
        return None
    library.jack_client_open.restype = ctypes.c_void_p
    library.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    for name in ("jack_get_buffer_size", "jack_get_sample_rate", "jack_client_close"):
        getattr(library, name).argtypes = [ctypes.c_void_p]
    library.jack_on_shutdown.argtypes = [ctypes.c_void_p, _SHUTDOWN_CALLBACK, ctypes.c_void_p]
    library.jack_port_by_name.restype = ctypes.c_void_p
    library.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    library.jack_last_frame_time.restype = ctypes.c_uint32
    library.jack_last_frame_time.argtypes = [ctypes.c_void_p]
    library.jack_get_ports.restype = ctypes.POINTER(ctypes.c_char_p)
    library.jack_get_ports.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
    library.jack_free.argtypes = [ctypes.c_void_p]
    return library


class JackClient:
    """One portless JACK client: period, server shutdown and port lookups without new clients."""

    def __init__(self, name: str = "cadenza-watch"):
        self.library = _library()
        self.client = None
        self.shut_down = threading.Event()
        if self.library is None:
            return
        status = ctypes.c_int(0)
        with silenced_stderr():  # libjack explains at length when no server runs
            self.client = self.library.jack_client_open(name.encode(), JACK_NO_START_SERVER, ctypes.byref(status))
        if not self.client:
            self.client = None
            return
        self._callback = _SHUTDOWN_CALLBACK(lambda _: self.shut_down.set())  # kept: libjack holds a pointer
        self.library.jack_on_shutdown(self.client, self._callback, None)

    @property
    def running(self) -> bool:
        """A server was found and has not shut down since."""
        return self.client is not None and not self.shut_down.is_set()

    def period_seconds(self) -> float | None:
        if not self.running:
            return None
        rate = self.library.jack_get_sample_rate(self.client)
        return self.library.jack_get_buffer_size(self.client) / rate if rate else None

    def frame(self) -> int | None:
        """The server's frame count at the start of its current cycle (it moves on a period per
        cycle, read from the server's shared state: this client need not be active)."""
        return self.library.jack_last_frame_time(self.client) if self.running else None

    def wait_cycles(self, cycles: int, timeout: float) -> bool:
        """Wait until the server has started `cycles` more process cycles; False on timeout or shutdown."""
        start, period = self.frame(), self.library.jack_get_buffer_size(self.client) if self.running else 0
        deadline = time.monotonic() + timeout
        while start is not None and period and time.monotonic() < deadline:
            now = self.frame()
            if now is None:
                return False
            if (now - start) % 2**32 >= cycles * period:
                return True
            time.sleep(0.0005)
        return False

    def midi_port_names(self, sendable: bool) -> list[str] | None:
        """Full names ('client:port') of the MIDI ports one can send to (sendable) or read from,
        as rtmidi lists them; None without a server."""
        if not self.running:
            return None
        flags = JACK_PORT_IS_INPUT if sendable else JACK_PORT_IS_OUTPUT
        names = self.library.jack_get_ports(self.client, None, b"midi", flags)
        if not names:
            return []
        try:
            found, index = [], 0
            while names[index] is not None:
                found.append(names[index].decode(errors="replace"))
                index += 1
            return found
        finally:
            self.library.jack_free(ctypes.cast(names, ctypes.c_void_p))

    def has_port(self, full_name: str) -> bool:
        return self.running and bool(self.library.jack_port_by_name(self.client, full_name.encode()))

    def close(self) -> None:
        if self.client is not None and not self.shut_down.is_set():
            self.library.jack_client_close(self.client)  # after a shutdown the client is gone with the server
        self.client = None


_clients: dict[str, JackClient] = {}


def jack_client() -> JackClient:
    """This process's one JackClient on the server JACK_DEFAULT_SERVER names (libjack's choice),
    opened at the first call and kept (closing one is a graph change too) until that server shuts
    down; the next call after that opens one on whichever server runs then. The process's exit
    closes it."""
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    if server not in _clients or not _clients[server].running:
        _clients[server] = JackClient("cadenza-watch")
    return _clients[server]


def close_jack_client() -> None:
    """Close this process's client on the current server, before stopping a server one started
    (libjack otherwise reports the lost server at length at exit)."""
    client = _clients.pop(os.environ.get("JACK_DEFAULT_SERVER", "default"), None)
    if client is not None:
        client.close()


def jack_period_seconds() -> float | None:
    """Frames per period / sample rate of the running JACK server, or None (no libjack, no server)."""
    return jack_client().period_seconds()
