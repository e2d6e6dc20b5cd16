"""Subcommands of the real-time side: stream, ports."""

from __future__ import annotations

import gc
import threading
from contextlib import ExitStack
from pathlib import Path

import click

from models.errors import CadenzaError
from models.options import BoundedFloat, sampling_options
from streamer.tempo import QUANTIZE_CHOICES
from streamer.stop_signals import stop_on_signals

MIDI_API_CHOICES = click.Choice(["auto", "alsa", "jack", "coremidi"])


class StreamFailed(click.ClickException):
    """The stream started but something broke; every note was silenced first."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"cadenza: stream stopped: {self.format_message()}", err=True, file=file)


def _log(message: str) -> None:
    click.echo(message, err=True)


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
@click.option("--osc", metavar="[HOST:]PORT", help="Take controls and the player's notes as OSC on this UDP port (127.0.0.1 unless a host is given).")
@click.option("--web", metavar="[HOST:]PORT", is_flag=False, flag_value="default",
              help="Serve a page to watch and steer the stream (default 127.0.0.1:8765; beyond loopback it needs the printed token).")
@click.option("--osc-out", metavar="HOST:PORT", help="Send /cadenza/note pitch velocity seconds at each onset to this OSC address.")
@click.option("--timing-log", type=click.Path(path_type=Path, dir_okay=False), hidden=True)
@click.option("--input-log", type=click.Path(path_type=Path, dir_okay=False), hidden=True)
def stream(**options):
    """Improvise live: to a virtual MIDI port, an existing port and/or FluidSynth. Ctrl-C stops."""
    # From here on every terminating signal a user can send (Ctrl-C, kill, a closed terminal,
    # Ctrl-\) only asks the stream to stop: whatever was started is silenced on the way out.
    stop = threading.Event()
    stop_on_signals(stop)
    from streamer.engine import StreamError
    from streamer.session import open_session

    with ExitStack() as stack:
        session = open_session(options, stop, stack, _log)
        # What is loaded now (the model, the libraries) stays for good: a full collection that
        # walked it held every thread (the control input's too) for 8 ms, measured.
        gc.freeze()
        try:
            session.engine.run()
        except StreamError as error:
            raise StreamFailed(str(error)) from None
        except Exception as error:  # a failed model step still silences everything on the way out
            raise StreamFailed(f"{type(error).__name__}: {error}") from None
    _log("\n" + session.summary())


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
    from streamer.realtime import realtime_library_threads

    backend = midi_backend(midi_api)
    with realtime_library_threads():  # the output's JACK thread, as the stream's
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


@click.command()
@click.option("--control-port", required=True, help="The MIDI input your controller sends on (see `cadenza ports`).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Control map to write (*.toml).")
@click.option("--midi-api", type=MIDI_API_CHOICES, default="auto", show_default=True)
@click.option("--wait-seconds", type=BoundedFloat(1, 3600), default=60.0, show_default=True,
              help="How long to wait for each control before skipping it.")
def learn(control_port, out, midi_api, wait_seconds):
    """MIDI learn: move a knob for each control in turn (Enter skips); writes a map for stream --control-map."""
    from streamer.learn import LearnSettings, learn as run_learn

    learned = run_learn(LearnSettings(control_port=control_port, out=out, midi_api=midi_api, wait_seconds=wait_seconds))
    click.echo(f"wrote {out} ({len(learned)} learned); play with: cadenza stream --control-map {out}")


def register(group: click.Group) -> None:
    group.add_command(stream)
    group.add_command(ports)
    group.add_command(calibrate)
    group.add_command(learn)
