"""A MIDI input read by polling on our own thread.

rtmidi's callbacks run inside JACK's process thread; a Python callback there must take the GIL,
and when another thread holds it the JACK cycle overruns (XRun) and the server can stall. Polling
rtmidi's own queue keeps Python out of the audio thread.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable

import mido
import rtmidi

from models.stderr import silenced_stderr
from streamer.realtime import realtime_library_threads


def rtmidi_api(backend: mido.Backend) -> int:
    """The rtmidi API constant behind a mido backend name such as 'mido.backends.rtmidi/UNIX_JACK'."""
    api = getattr(backend, "api", None) or backend.name.partition("/")[2]
    return getattr(rtmidi, f"API_{api}") if api else rtmidi.API_UNSPECIFIED


def midi_system_alive(api: int) -> bool:
    """False once the MIDI system under our ports is gone (a JACK server that stopped or was
    killed). Nothing can be sent then, and closing a port would crash the process."""
    if api == rtmidi.API_UNIX_JACK:
        from streamer.jack import jack_client  # asked without a new client (see MidiBackend in outputs.py)

        client = jack_client()
        if client.library is not None:
            return client.running
    try:
        with silenced_stderr():  # libjack explains at length that there is no server
            rtmidi.MidiOut(api).delete()
    except (SystemError, OSError, RuntimeError):
        return False
    return True


class PolledMidiInput:
    """Opens a virtual input (virtual=True) or an existing port by name, and calls on_message per message."""

    def __init__(self, backend: mido.Backend, name: str, on_message, virtual: bool = False,
                 client_name: str = "cadenza", poll_seconds: float | Callable[[], float] = 0.002,
                 stamp_bias_seconds: float = 0.0, record: list | None = None):
        """`record`: a list that gets (arrival, polled, message bytes) per message, arrival and polled
        in monotonic seconds (what the stream's --input-log writes)."""
        self.api = rtmidi_api(backend)
        with realtime_library_threads():  # an input whose JACK thread misses a cycle loses its MIDI
            self.midi_in = self._open(name, virtual, client_name)
        self.name = name
        self._on_message = on_message
        self.skipped = 0
        self._record = record
        self._api_seconds = 0.0  # running sum of the API's deltas: arrival times up to one offset
        self._offset = float("inf")
        # Subtracted from every arrival: JACK stamps a message with the start of the cycle it
        # arrived in, on average half a period after it was sent (streamer/jack.py).
        self._stamp_bias = stamp_bias_seconds
        # Seconds between looks at an empty queue, or a function that says (asked at each look).
        self._poll_seconds = poll_seconds if callable(poll_seconds) else (lambda: poll_seconds)
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"midi-in-{name}", daemon=True)
        self._thread.start()

    def _open(self, name: str, virtual: bool, client_name: str) -> rtmidi.MidiIn:
        midi_in = rtmidi.MidiIn(self.api, name=client_name)
        # Nothing ignored: rtmidi drops the time delta of a message it ignores, which would shift
        # every arrival time after it (clock pulses are timed from these deltas).
        midi_in.ignore_types(sysex=False, timing=False, active_sense=False)
        if virtual:
            midi_in.open_virtual_port(name)
            return midi_in
        ports = midi_in.get_ports()
        matches = [i for i, port in enumerate(ports) if port == name or port.endswith(name)]
        if not matches:
            midi_in.delete()
            others = [port for port in ports if not port.startswith(f"{client_name}:")]  # not our own
            raise OSError(f"no MIDI input named {name!r} (have: {', '.join(others) or 'none'})")
        midi_in.open_port(matches[0])
        return midi_in

    def _run(self) -> None:
        while self._running:
            event = self.midi_in.get_message()
            if event is None:
                time.sleep(self._poll_seconds())
            else:
                self.handle_event(event[0], event[1])

    def arrival_time(self, delta_seconds: float) -> float:
        """When a message arrived (monotonic seconds), from the API's own time stamps.

        The deltas fix every arrival up to one offset; a poll can only come after the arrival,
        so the offset is the smallest (polled - running sum) seen, let up by 0.1 ms a second so
        that the two clocks' slightly different rates cannot pile up.
        """
        self._api_seconds += delta_seconds
        polled = time.monotonic()
        if self._offset == float("inf"):
            self._offset = polled - self._api_seconds
        else:
            self._offset = min(self._offset + 1e-4 * delta_seconds, polled - self._api_seconds)
        return self._api_seconds + self._offset - self._stamp_bias

    def handle_event(self, data: list[int], delta_seconds: float) -> None:
        """One message from rtmidi's queue; delta_seconds is the API's time since the previous one.

        The handler gets (message, arrival monotonic seconds). A message mido cannot read
        (truncated, unknown) or that its handler fails on is skipped and counted, and the first one
        is reported on stderr: one bad message never stops the input.
        """
        arrival = self.arrival_time(delta_seconds)
        if self._record is not None:
            self._record.append((arrival, time.monotonic(), bytes(data)))
        try:
            message = mido.Message.from_bytes(data)
            self._on_message(message, arrival)
        except Exception as error:  # noqa: BLE001 - whatever a hostile device sends
            self.skipped += 1
            if self.skipped == 1:
                hex_bytes = " ".join(f"{b:02X}" for b in data[:8])
                sys.stderr.write(f"\ncadenza: skipped a MIDI message on {self.name!r} that cannot be used "
                                 f"({hex_bytes}: {type(error).__name__}); later ones are only counted\n")

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=1)
        if midi_system_alive(self.api):  # else the port is gone with its server: closing it would crash
            self.midi_in.close_port()
            self.midi_in.delete()
