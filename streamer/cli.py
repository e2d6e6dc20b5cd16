"""Subcommands of the real-time side: stream, ports."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import click

from models.errors import CadenzaError
from models.options import BoundedFloat, sampling_options
from models.primer import read_primer
from streamer.clock import QUANTIZE_CHOICES

MIDI_API_CHOICES = click.Choice(["auto", "alsa", "jack", "coremidi"])
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class StreamFailed(click.ClickException):
    """The stream started but something broke; every note was silenced first."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"cadenza: stream stopped: {self.format_message()}", err=True, file=file)


def _log(message: str) -> None:
    click.echo(message, err=True)


def _timing_settings(options: dict):
    """Musical-time options checked together (before anything opens); a TimingSettings."""
    from streamer.timeline import TimingSettings

    sync = None if options["sync"] == "off" else options["sync"]
    if sync and options["bpm"]:
        raise CadenzaError("--bpm sets cadenza's own tempo; with --sync midi-clock the clock sets it: give one")
    if sync and options["clock_out"]:
        raise CadenzaError("--clock-out sends cadenza's own tempo; it cannot also follow a clock (--sync)")
    if options["swing"] and options["quantize"] == "off":
        raise CadenzaError("--swing moves grid points: give a grid with --quantize, e.g. --quantize 1/16")
    return TimingSettings(bpm=options["bpm"], sync=sync, quantize=options["quantize"], swing=options["swing"] / 100,
                          latency_seconds=options["latency_ms"] / 1000, clock_out=options["clock_out"],
                          turns_bars=options["turns"], beats_per_bar=options["beats_per_bar"])


def _open_control_input(stack: ExitStack, options: dict, backend_factory, controls, control_map, required: bool):
    from streamer.controls import MidiControlInput

    from models.stderr import silenced_stderr

    try:
        with silenced_stderr(active=not (options["control_port"] or required)):
            control = MidiControlInput(backend_factory(), controls, control_map, options["control_port"],
                                       poll_seconds=0.001 if required else 0.005)
    except CadenzaError:
        if options["control_port"] or required:
            raise
        return  # no MIDI system here for the default virtual input: keys and flags still work
    stack.callback(control.close)
    _log(f"MIDI control in: {options['control_port'] or f'virtual port {control.name!r}'}")
    if control.same_name_as:
        _log(f"note: a control input named 'cadenza-control' was already open ({', '.join(control.same_name_as)}): "
             f"is another cadenza running? Send controls to {control.name!r}")


@click.command()
@click.option("--model", type=click.Path(path_type=Path), help="Exported model folder [default: the shipped model].")
@click.option("--backend", type=click.Choice(["auto", "tflite", "savedmodel"]), default="auto", show_default=True)
@click.option("--port", help="Open a virtual MIDI output port with this name (e.g. cadenza).")
@click.option("--connect", help="Send to an existing MIDI input port by name instead.")
@click.option("--midi-api", type=MIDI_API_CHOICES, default="auto", show_default=True)
@click.option("--fluidsynth", is_flag=True, help="Play through a live FluidSynth synth (the default with no other output).")
@click.option("--soundfont", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--audio-driver", type=click.Choice(["auto", "pipewire", "pulseaudio", "alsa", "jack", "coreaudio", "file"]),
              default="auto", show_default=True)
@click.option("--wav", type=click.Path(path_type=Path, dir_okay=False), help="WAV path for the file audio driver.")
@click.option("--record", type=click.Path(path_type=Path, dir_okay=False), help="Also write what is played to this MIDI file.")
@sampling_options
@click.option("--instrument", default="Acoustic Grand Piano", show_default=True, help="GM name or program 0-127.")
@click.option("--tempo-scale", type=BoundedFloat(0.25, 4.0), default=1.0, show_default=True,
              help="Multiplies every step and duration (2 = half speed).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random seed: the same seed gives the same notes.")
@click.option("--primer", type=click.Path(path_type=Path), help="MIDI file that primes the model (not played).")
@click.option("--notes", type=click.IntRange(min=1), help="Stop after this many notes.")
@click.option("--seconds", type=BoundedFloat(0, 7 * 86400, min_open=True), help="Stop after this many seconds.")
@click.option("--lookahead", type=BoundedFloat(0.01, 5.0), default=0.2, show_default=True, help="Seconds generated ahead.")
@click.option("--max-note-seconds", type=BoundedFloat(0.05, 60.0), default=8.0, show_default=True)
@click.option("--bpm", type=BoundedFloat(20, 400), help="Play in musical time at this tempo (cadenza's own clock).")
@click.option("--sync", type=click.Choice(["off", "midi-clock"]), default="off", show_default=True,
              help="midi-clock: follow the MIDI clock (tempo, Start/Stop/Continue, Song Position) on the control input.")
@click.option("--quantize", type=click.Choice(list(QUANTIZE_CHOICES)), default="off", show_default=True,
              help="Snap onsets to this grid of the current tempo (chords stay chords; lengths are kept).")
@click.option("--swing", type=BoundedFloat(0, 75), default=0.0, show_default=True,
              help="Percent of a grid step by which every second grid point comes late (with --quantize).")
@click.option("--latency-ms", type=BoundedFloat(-500, 500), default=0.0, show_default=True,
              help="Send everything this many ms early (negative: late), for a synth's or interface's latency.")
@click.option("--clock-out", is_flag=True, help="Send MIDI clock, Start and Stop at cadenza's own tempo to the outputs.")
@click.option("--turns", type=click.IntRange(1, 64), help="Call and response: answer the player for this many bars, bar-aligned.")
@click.option("--beats-per-bar", type=click.IntRange(1, 16), default=4, show_default=True)
@click.option("--control-port", help="MIDI input to take live controls from [default: a virtual input 'cadenza-control'].")
@click.option("--control-map", type=click.Path(path_type=Path, exists=True, dir_okay=False), help="TOML/JSON CC mapping.")
@click.option("--no-keys", is_flag=True, help="Do not read keys from the terminal.")
@click.option("--timing-log", type=click.Path(path_type=Path, dir_okay=False), hidden=True)
def stream(**options):
    """Improvise live: to a virtual MIDI port, an existing port and/or FluidSynth. Ctrl-C stops."""
    # From here on every terminating signal a user can send (Ctrl-C, kill, a closed terminal,
    # Ctrl-\) only asks the stream to stop: whatever was started is silenced on the way out.
    stop = threading.Event()
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, lambda *_: stop.set())
    from models.instruments import instrument_name, resolve_instrument
    from models.runtime import Runtime
    from streamer.controls import KEY_HELP, ControlMap, Controls, TerminalKeys, status_line
    from streamer.engine import Engine, StreamError, StreamSettings
    from streamer.outputs import OutputSpec, midi_backend
    from streamer.recording import check_record_path
    from streamer.sender import SenderProcess

    import numpy as np

    from models.options import sampling_from_options
    from models.runtime import DEFAULT_MODEL_DIR, read_card
    from models.sampling import resolve_random, typical_density

    program = resolve_instrument(options["instrument"])
    card = read_card(options["model"] or DEFAULT_MODEL_DIR)
    sampling = sampling_from_options(card, options)
    density_drawn = sampling.density == "random"
    # 'random' density or key: drawn once for this stream now (reproducible with --seed), then kept.
    sampling = resolve_random(sampling, card, np.random.default_rng(options["seed"]))
    control_map = ControlMap.load(options["control_map"])
    timing = _timing_settings(options)
    spec = OutputSpec(port=options["port"], connect=options["connect"], midi_api=options["midi_api"],
                      fluidsynth=options["fluidsynth"], soundfont=options["soundfont"],
                      audio_driver=options["audio_driver"], wav=options["wav"], record=options["record"])
    if options["record"]:
        check_record_path(options["record"])
    runtime = Runtime(options["model"], backend=options["backend"], seed=options["seed"])
    if options["primer"]:
        runtime.prime(read_primer(options["primer"]))
    # Bad input is reported above, before any output opens (a WAV file, a port).
    sender = SenderProcess(spec, timing_log=options["timing_log"])
    try:
        sender.wait_until_ready()
    except BaseException:
        sender.stop()
        raise
    backend_cache = []

    def backend_factory():
        if not backend_cache:
            backend_cache.append(midi_backend(options["midi_api"]))
        return backend_cache[0]

    controls = Controls(temperature=sampling.temperature, program=program, tempo_scale=options["tempo_scale"],
                        answer=sampling.answer,
                        density=sampling.density, density_drawn=density_drawn, key=sampling.key,
                        key_strict=sampling.key_strict, stop=stop)
    if timing.sync == "midi-clock":
        from streamer.clock import ClockFollower

        controls.clock = ClockFollower()
    with ExitStack() as stack:
        stack.callback(sender.stop)  # every note off, all-notes-off everywhere, outputs closed
        _open_control_input(stack, options, backend_factory, controls, control_map, required=bool(timing.sync))
        settings = StreamSettings(lookahead_seconds=options["lookahead"], max_note_seconds=options["max_note_seconds"],
                                  notes=options["notes"], seconds=options["seconds"], top_p=sampling.top_p,
                                  top_p_fields=sampling.top_p_fields,
                                  head_temperature=sampling.head_temperature(), start_temperature=sampling.temperature,
                                  response_gap_seconds=control_map.response_gap_seconds, dynamics=sampling.dynamics)
        if timing.timed:
            from streamer.timed_engine import TimedEngine
            from streamer.timeline import Timeline

            timeline = Timeline(timing, typical_density(card), controls.clock, origin=time.monotonic() + 0.2)
            engine = TimedEngine(runtime, sender, controls, settings, timeline)
            _log(_describe_timing(timing))
        else:
            engine = Engine(runtime, sender, controls, settings)
        if TerminalKeys.available() and not options["no_keys"]:
            keys = TerminalKeys(controls, instrument_name, typical_density(card))
            stack.callback(keys.close)
            engine.on_tick = lambda e: sys.stderr.write(status_line(controls, e.notes_generated, instrument_name))
            _log(KEY_HELP)
        _log(f"streaming with {runtime.backend} ({instrument_name(program)}, T={controls.temperature:g}, "
             f"density {controls.density or 'free'}, key {controls.key or 'free'}); Ctrl-C stops")
        try:
            engine.run()
        except StreamError as error:
            raise StreamFailed(str(error)) from None
        except Exception as error:  # a failed model step still silences everything on the way out
            raise StreamFailed(f"{type(error).__name__}: {error}") from None
    played = sender.notes_played if sender.notes_played is not None else "?"
    _log(f"\nstopped after {played} notes played ({engine.notes_generated} generated"
         + (f", {engine.skips} skips" if engine.skips else "")
         + (f", {engine.late_sends} sent late for the latency" if getattr(engine, "late_sends", 0) else "")
         + (f", {sender.notes_dropped} dropped after a suspension" if sender.notes_dropped else "")
         + (f", {controls.clock.lost_pulses} clock pulses lost on the way" if controls.clock and controls.clock.lost_pulses else "")
         + ")")


def _describe_timing(timing) -> str:
    parts = ["following the MIDI clock on the control input (nothing plays before Start)" if timing.sync
             else f"{timing.bpm or 120:g} BPM"]
    if timing.quantize != "off":
        parts.append(f"quantize {timing.quantize}" + (f", swing {timing.swing:.0%}" if timing.swing else ""))
    if timing.latency_seconds:
        parts.append(f"sent {timing.latency_seconds * 1000:+.0f} ms early")
    if timing.clock_out:
        parts.append("clock out")
    if timing.turns_bars:
        parts.append(f"turns of {timing.turns_bars} bars of {timing.beats_per_bar}")
    return "musical time: " + ", ".join(parts)


@click.command()
@click.option("--midi-api", type=MIDI_API_CHOICES, default="auto", show_default=True)
def ports(midi_api):
    """List the MIDI input and output ports."""
    from streamer.outputs import midi_backend

    backend = midi_backend(midi_api)
    try:
        inputs, outputs = backend.get_input_names(), backend.get_output_names()
    except Exception as error:
        raise CadenzaError(f"cannot list ports with the {midi_api} MIDI API: {error}".splitlines()[0]) from None
    click.echo("inputs:")
    for name in inputs:
        click.echo(f"  {name}")
    click.echo("outputs:")
    for name in outputs:
        click.echo(f"  {name}")


@click.command()
@click.option("--port", "output_name", required=True, help="Existing MIDI output to send the test notes to.")
@click.option("--input", "input_name", required=True, help="Existing MIDI input they come back on (the loopback).")
@click.option("--midi-api", type=MIDI_API_CHOICES, default="auto", show_default=True)
@click.option("--count", type=click.IntRange(2, 1000), default=16, show_default=True, help="Test notes, 0.25 s apart.")
def calibrate(output_name, input_name, midi_api, count):
    """Measure the delay from cadenza to what comes back through a loopback; prints the --latency-ms to use."""
    from streamer.calibrate import CalibrationSettings, calibrate as measure
    from streamer.midi_input import PolledMidiInput
    from streamer.outputs import MidiPortOutput, midi_backend

    backend = midi_backend(midi_api)
    output = MidiPortOutput(backend, name="cadenza-calibrate", connect=output_name)

    def open_input(on_message):
        try:
            return PolledMidiInput(backend, input_name, on_message, client_name="cadenza-calibrate", poll_seconds=0.001)
        except (OSError, SystemError) as error:
            raise CadenzaError(str(error).splitlines()[0]) from None

    try:
        result = measure(output, open_input, CalibrationSettings(count=count))
    finally:
        output.close()
    click.echo(result.describe())


def register(group: click.Group) -> None:
    group.add_command(stream)
    group.add_command(ports)
    group.add_command(calibrate)
