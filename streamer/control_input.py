"""The MIDI control input: a controller or a virtual port, read through a ControlMapper (a surface)."""

from __future__ import annotations

from models.errors import CadenzaError
from streamer.controls import ControlMap, ControlMapper, Controls
from streamer.outputs import virtual_port_name


class MidiControlInput:
    """A MIDI input (a controller or a virtual port) whose messages go through a ControlMapper."""

    kind = "MIDI control"

    def __init__(self, backend, controls: Controls, control_map: ControlMap, name: str | None = None,
                 poll_seconds: float = 0.005, start_poll_seconds: float | None = None, record: list | None = None):
        """poll_seconds: how often an empty input is looked at; start_poll_seconds: how often while
        a clock it follows waits for Start (a DAW sends Start right before the downbeat, and the
        first note can only leave once Start was read); record: see PolledMidiInput."""
        self.mapper = ControlMapper(controls, control_map)
        self._poll_seconds, self._start_poll_seconds = poll_seconds, start_poll_seconds or poll_seconds
        from streamer.jack import jack_period_seconds
        from streamer.midi_input import PolledMidiInput, rtmidi_api

        import rtmidi

        period = jack_period_seconds() if rtmidi_api(backend) == rtmidi.API_UNIX_JACK else None
        before = _sendable_ports(backend) if not name else []
        try:
            self.port = PolledMidiInput(backend, name or "cadenza-control", self.mapper.handle, virtual=not name,
                                        client_name="cadenza-control", poll_seconds=self._poll_interval,
                                        stamp_bias_seconds=(period or 0.0) / 2, record=record)
        except (OSError, IOError, SystemError, RuntimeError) as error:
            raise CadenzaError(f"cannot open control port {name or 'cadenza-control'!r}: {error}".splitlines()[0]) from None
        # The name a controller or DAW sends to: a second cadenza's virtual input is renamed by the
        # MIDI system (JACK: 'cadenza-control-01:cadenza-control'), and the log must say so.
        self.name, self.same_name_as = name, []
        if not name:
            self.name, self.same_name_as = virtual_port_name("cadenza-control", before, _sendable_ports(backend))

    def _poll_interval(self) -> float:
        clock = self.mapper.controls.clock
        return self._start_poll_seconds if clock is not None and not clock.running else self._poll_seconds

    @property
    def skipped(self) -> int:
        """Messages it could not use (reported once, then counted)."""
        return self.port.skipped

    def start(self) -> None:
        """Listening since it opened (a surface's start, for the session)."""

    def close(self) -> None:
        self.port.close()


def _sendable_ports(backend) -> list:
    try:
        return list(backend.get_output_names())
    except Exception:  # noqa: BLE001 - no MIDI system: nothing to compare
        return []
