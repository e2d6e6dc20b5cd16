"""Where the stream's messages go. Every output has one interface, mido's: send(msg), panic(), close().

The engine talks to a list of these and never knows which is a MIDI port, a synth or a recorder.
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mido
import rtmidi

from models.errors import CadenzaError
from models.instruments import default_soundfont
from models.stderr import captured_stderr
from streamer.jack import jack_client
from streamer.midi_input import midi_system_alive, rtmidi_api
from streamer.recording import RecordOutput

MIDI_APIS = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE"}
# Longer than one JACK period at common settings (2048 frames at 44.1 kHz = 46 ms), short at a stop.
FLUSH_SECONDS = 0.06
FLUSH_CYCLES = 3  # JACK process cycles after the last message before a port closes
FLUSH_TIMEOUT_SECONDS = 1.0
AUDIO_DRIVERS = {"linux": ["pipewire", "pulseaudio", "alsa", "jack"], "darwin": ["coreaudio"], "win32": ["wasapi", "dsound"]}


class MidiBackend(mido.Backend):
    """mido's rtmidi backend; on JACK it lists ports without opening a client for each list.

    mido lists ports through a new rtmidi client, which JACK activates and closes again, reordering
    its graph each time. Measured on a non-real-time dummy server: a stream whose start-up (and
    whose listener's and controller's wait for its ports) listed ports that way had its control
    input never run by the server in 5 of 27 streams, so every control sent to it was lost; with
    the lists asked of one never-activated client (streamer/jack.py), 0 of 25.
    """

    def get_input_names(self, **kwargs) -> list[str]:
        names = self._jack_port_names(sendable=False)
        return names if names is not None else super().get_input_names(**kwargs)

    def get_output_names(self, **kwargs) -> list[str]:
        names = self._jack_port_names(sendable=True)
        return names if names is not None else super().get_output_names(**kwargs)

    def _jack_port_names(self, sendable: bool) -> list[str] | None:
        if rtmidi_api(self) != rtmidi.API_UNIX_JACK:
            return None
        return jack_client().midi_port_names(sendable)


def midi_backend(api: str = "auto") -> mido.Backend:
    """mido's rtmidi backend for an API name; 'auto' is rtmidi's own choice (or MIDO_BACKEND)."""
    if api == "auto":
        if "MIDO_BACKEND" in os.environ:
            return MidiBackend(os.environ["MIDO_BACKEND"], load=True)
        if sys.platform == "linux" and not os.path.exists("/dev/snd/seq"):
            api = "jack"  # no ALSA sequencer on this machine (a container, a headless box): JACK is what is left
        else:
            return MidiBackend("mido.backends.rtmidi", load=True)
    if api not in MIDI_APIS:
        raise CadenzaError(f"unknown MIDI API {api!r} ({', '.join(['auto', *MIDI_APIS])})")
    return MidiBackend(f"mido.backends.rtmidi/{MIDI_APIS[api]}", load=True)


def _silence_messages() -> list[mido.Message]:
    """All sound off, all notes off and sustain up on every channel."""
    messages = []
    for channel in range(16):
        messages.append(mido.Message("control_change", channel=channel, control=64, value=0))
        messages.append(mido.Message("control_change", channel=channel, control=123, value=0))
    return messages


def virtual_port_name(name: str, before: list, after: list) -> tuple[str, list]:
    """(the full name others see for the port just opened, the same-named ports already open).

    The MIDI system renames a second client of the same name (JACK: 'cadenza-01:cadenza'), so a
    second cadenza would otherwise open a port a DAW cannot tell apart from the first one's.
    """
    def named(port: str) -> bool:  # 'client:port' (JACK), 'client:port 128:0' (ALSA)
        return re.sub(r" \d+:\d+$", "", port.split(":", 1)[-1]) == name

    new = [port for port in after if port not in before and named(port)]
    return (new[0] if len(new) == 1 else name), [port for port in before if named(port)]


class _ConnectedPort:
    """An existing port, by name, from a client named "cadenza". (mido cannot: given a client name,
    its open_output opens a virtual port of that name instead, which nobody hears.)"""

    def __init__(self, api: int, name: str):
        self._midi_out = rtmidi.MidiOut(api, name="cadenza")
        ports = self._midi_out.get_ports()
        if name not in ports:
            self._midi_out.delete()
            raise OSError(f"no MIDI output port named {name!r}")
        self._midi_out.open_port(ports.index(name))

    def send(self, message: mido.Message) -> None:
        self._midi_out.send_message(message.bytes())

    def close(self) -> None:
        self._midi_out.close_port()
        self._midi_out.delete()


class MidiPortOutput:
    """A virtual MIDI output port a DAW can record from, or an existing port by name."""

    def __init__(self, backend: mido.Backend, name: str = "cadenza", connect: str | None = None):
        self.name = connect or name
        self.connected_to = connect
        if connect:
            names = backend.get_output_names()
            matches = [n for n in names if n == connect] or [n for n in names if n.endswith(connect)]
            if not matches:
                raise CadenzaError(f"no MIDI output port named {connect!r} (have: {', '.join(names) or 'none'})")
            connect = self.name = self.connected_to = matches[0]
        self.same_name_as = []  # ports of that name that were open before ours (a second cadenza?)
        try:
            if connect:
                self.port = _ConnectedPort(rtmidi_api(backend), connect)
            else:
                before = backend.get_input_names()  # our virtual output is an input for the others
                self.port = backend.open_output(name, virtual=True, client_name="cadenza")
                self.name, self.same_name_as = virtual_port_name(name, before, backend.get_input_names())
        except (OSError, IOError, SystemError) as error:
            where = f"port {connect!r}" if connect else f"a virtual port {name!r}"
            raise CadenzaError(f"cannot open {where}: {error}".splitlines()[0]) from None
        self.backend = backend
        self.api = rtmidi_api(backend)
        # Asked whether the server and the port are still there (opened now: before any clock runs).
        self._jack = jack_client() if self.api == rtmidi.API_UNIX_JACK else None

    def send(self, message: mido.Message) -> None:
        self.port.send(message)

    def panic(self) -> None:
        for message in _silence_messages():
            self.port.send(message)

    def missing(self) -> str | None:
        """Why nothing sent reaches anyone any more (the MIDI system or the port we connected to
        is gone), or None while all is well. On JACK, asked of one client of our own (streamer/jack.py):
        a client opened for each check would make JACK reorder its graph and drop MIDI events."""
        if self._jack is not None:
            if not self._jack.running:
                return "the JACK server stopped"
            if self.connected_to is not None and not self._jack.has_port(self.connected_to):
                return f"MIDI port {self.name!r} disappeared"
            return None
        if not midi_system_alive(self.api):
            return "the MIDI system stopped"
        if self.connected_to is not None and self.connected_to not in self.backend.get_output_names():
            return f"MIDI port {self.name!r} disappeared"
        return None

    def close(self) -> None:
        server_gone = self._jack.shut_down.is_set() if self._jack is not None else not midi_system_alive(self.api)
        if server_gone:
            return  # the port went with its server; closing it would crash the process
        # rtmidi hands messages to JACK's (or ALSA's) queue; the server sends them in its next
        # process cycle. Closing at once can drop the final note-offs and CC123 still queued. On
        # JACK a busy machine can hold a cycle back well past any fixed wait, and a port
        # unregistered before its readers ran that cycle takes its events with it: wait until
        # the server has run FLUSH_CYCLES cycles after the last message (and FLUSH_SECONDS at least).
        started = time.monotonic()
        if self._jack is not None:
            self._jack.wait_cycles(FLUSH_CYCLES, timeout=FLUSH_TIMEOUT_SECONDS)
            # A JACK client that misses a process cycle (a non-real-time server on a busy machine:
            # jackd logs 'client ... was not finished') loses the MIDI of that cycle, and a stop's
            # note-offs and all-notes-off all go in one: a stop loop left 9 notes sounding at a
            # listener that way. So all-notes-off once more, cycles later, before the port closes.
            self.panic()
            self._jack.wait_cycles(FLUSH_CYCLES, timeout=FLUSH_TIMEOUT_SECONDS)
        time.sleep(max(FLUSH_SECONDS - (time.monotonic() - started), 0.0))
        self.port.close()


class FluidSynthOutput:
    """A live FluidSynth synth that accepts mido messages.

    `driver='auto'` tries the platform's audio drivers in turn; with no sound device it falls
    back to FluidSynth's 'file' driver, which writes the live audio to a WAV file.
    """

    def __init__(self, soundfont: Path | None = None, driver: str = "auto", wav_path: Path | None = None,
                 sample_rate: int = 44100, gain: float = 0.8, log=print):
        import fluidsynth

        self._fluidsynth = fluidsynth
        self.synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
        soundfont = Path(soundfont) if soundfont else default_soundfont()
        if not soundfont.exists():
            raise CadenzaError(f"soundfont not found: {soundfont}")
        self.soundfont_id = self.synth.sfload(str(soundfont))
        if self.soundfont_id < 0:
            raise CadenzaError(f"cannot load soundfont {soundfont}")
        for channel in range(16):
            self.synth.program_select(channel, self.soundfont_id, 0, 0)
        self.wav_path = None
        self.driver = self._start_driver(driver, wav_path, log)

    def _try_driver(self, name: str) -> bool:
        self.synth.setting("audio.driver", name)
        # pyfluidsynth's start() reports success even when the driver failed: check the handle.
        # What FluidSynth and the audio libraries print on the way is kept for our own one line.
        with captured_stderr() as self.driver_messages:
            self.synth.audio_driver = self._fluidsynth.new_fluid_audio_driver(self.synth.settings, self.synth.synth)
        return bool(self.synth.audio_driver)

    def _start_driver(self, driver: str, wav_path: Path | None, log) -> str:
        candidates = AUDIO_DRIVERS.get(sys.platform, []) if driver == "auto" else [driver]
        for name in candidates:
            if name == "file":
                break
            if self._try_driver(name):
                return name
        if driver not in ("auto", "file"):
            errors = [line for line in self.driver_messages if "error" in line.lower()] or ["no such device or server"]
            raise CadenzaError(f"audio driver {driver!r} could not start: {errors[-1].removeprefix('fluidsynth: error: ')}")
        self.wav_path = Path(wav_path or f"cadenza-{time.strftime('%Y%m%d-%H%M%S')}.wav").resolve()
        self.synth.setting("audio.file.name", str(self.wav_path))
        self.synth.setting("audio.file.type", "wav")
        if driver == "auto":
            log(f"no sound device found; writing the live audio to {self.wav_path}")
        if not self._try_driver("file"):
            raise CadenzaError(f"FluidSynth could not write audio to {self.wav_path}")
        return "file"

    def send(self, message: mido.Message) -> None:
        if message.type == "note_on":
            self.synth.noteon(message.channel, message.note, message.velocity)
        elif message.type == "note_off":
            self.synth.noteoff(message.channel, message.note)
        elif message.type == "program_change":
            self.synth.program_select(message.channel, self.soundfont_id, 0, message.program)
        elif message.type == "control_change":
            self.synth.cc(message.channel, message.control, message.value)

    def panic(self) -> None:
        for message in _silence_messages():
            self.send(message)

    def close(self) -> None:
        driver, self.synth.audio_driver = self.synth.audio_driver, None
        if driver:
            self._fluidsynth.delete_fluid_audio_driver(driver)
        self.synth.delete()


@dataclass
class OutputSpec:
    """What to open, as plain values: the sender process opens the outputs itself."""

    port: str | None = None  # virtual MIDI output port name
    connect: str | None = None  # existing MIDI port to send to
    midi_api: str = "auto"
    fluidsynth: bool = False  # also the default when no MIDI port is asked for
    soundfont: Path | None = None
    audio_driver: str = "auto"
    wav: Path | None = None
    record: Path | None = None


def open_outputs(spec: OutputSpec, stack: ExitStack, log) -> tuple[list, list]:
    """(outputs, outputs to watch for vanishing); each is closed by `stack` in reverse order."""
    outputs, watch = [], []
    if spec.port or spec.connect:
        port = MidiPortOutput(midi_backend(spec.midi_api), name=spec.port or "cadenza", connect=spec.connect)
        stack.callback(port.close)
        outputs.append(port)
        watch.append(port)
        log(f"MIDI out: {'connected to' if spec.connect else 'virtual port'} {port.name!r}")
        if port.same_name_as:
            log(f"note: a port named {spec.port or 'cadenza'!r} was already open ({', '.join(port.same_name_as)}): "
                f"is another cadenza running? Route from {port.name!r}, or pick another name with --port")
    if spec.fluidsynth or not outputs:
        synth = FluidSynthOutput(spec.soundfont, spec.audio_driver, spec.wav, log=log)
        stack.callback(synth.close)
        outputs.append(synth)
        log(f"FluidSynth: audio driver {synth.driver}" + (f", writing {synth.wav_path}" if synth.wav_path else ""))
    if spec.record:
        recorder = RecordOutput(spec.record)
        def close_recorder():
            recorder.close()
            if recorder.failure:
                log(f"cadenza: {recorder.failure}")
            log(f"recorded to {recorder.path}")

        stack.callback(close_recorder)
        outputs.append(recorder)
    return outputs, watch
