"""A stream, assembled from the command line's options: runtime, sender, controls, surfaces, engine.

Surfaces are the ways a player steers: the MIDI control input, terminal keys, OSC (and the page
of --web). They share one small interface, as mido's ports do (`start`, `close`), and act only on
`Controls` and the player-note feed; the engine reads Controls and knows none of them.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from models.errors import CadenzaError


@dataclass
class Session:
    runtime: object
    sender: object
    controls: object
    engine: object
    surfaces: list = field(default_factory=list)

    def summary(self) -> str:
        engine, sender, clock = self.engine, self.sender, self.controls.clock
        played = sender.notes_played if sender.notes_played is not None else "?"
        return (f"stopped after {played} notes played ({engine.notes_generated} generated"
                + (f", {engine.skips} skips" if engine.skips else "")
                + (f", {engine.late_sends} sent late for the latency" if getattr(engine, "late_sends", 0) else "")
                + (f", {sender.notes_dropped} dropped after a suspension" if sender.notes_dropped else "")
                + (f", {clock.lost_pulses} clock pulses lost on the way" if clock and clock.lost_pulses else "")
                + (", no Start or Continue came with the clock" if clock and clock.transport_version == 0 else "")
                + "".join(f", {surface.skipped} {surface.kind} messages skipped"
                          for surface in self.surfaces if getattr(surface, "skipped", 0))
                + ")")


def open_session(options: dict, stop: threading.Event, stack: ExitStack, log) -> Session:
    """Everything a stream needs, opened in order, each closed by `stack` (the sender last: every
    note off). Bad input is refused before any output opens."""
    from models.instruments import instrument_name, resolve_instrument
    from models.options import sampling_from_options
    from models.primer import read_primer
    from models.runtime import DEFAULT_MODEL_DIR, Runtime, read_card
    from models.sampling import resolve_random
    from streamer.controls import ControlMap, Controls
    from streamer.outputs import OutputSpec
    from streamer.recording import check_record_path
    from streamer.sender import SenderProcess

    program = resolve_instrument(options["instrument"])
    card = read_card(options["model"] or DEFAULT_MODEL_DIR)
    sampling = sampling_from_options(card, options)
    density_drawn = sampling.density == "random"
    # 'random' density or key: drawn once for this stream now (reproducible with --seed), then kept.
    sampling = resolve_random(sampling, card, np.random.default_rng(options["seed"]))
    control_map = ControlMap.load(options["control_map"])
    timing = timing_settings(options)
    surface_specs = _surface_addresses(options)
    spec = OutputSpec(port=options["port"], connect=options["connect"], midi_api=options["midi_api"],
                      fluidsynth=options["fluidsynth"], soundfont=options["soundfont"],
                      audio_driver=options["audio_driver"], wav=options["wav"], record=options["record"])
    if options["record"]:
        check_record_path(options["record"])
    runtime = Runtime(options["model"], backend=options["backend"], seed=options["seed"])
    if options["primer"]:
        runtime.prime(read_primer(options["primer"], card))
    sender = SenderProcess(spec, timing_log=options["timing_log"])
    stack.callback(sender.stop)  # every note off, all-notes-off everywhere, outputs closed
    sender.wait_until_ready()
    controls = Controls(temperature=sampling.temperature, program=program, tempo_scale=options["tempo_scale"],
                        answer=sampling.answer, dynamics=sampling.dynamics,
                        density=sampling.density, density_drawn=density_drawn, key=sampling.key,
                        key_strict=sampling.key_strict, stop=stop)
    if timing.sync == "midi-clock":
        from streamer.clock import ClockFollower

        controls.clock = ClockFollower()
    session = Session(runtime, sender, controls, engine=_engine(options, runtime, sender, controls, sampling,
                                                                   control_map, timing, card, log))
    session.engine.prepare()  # before any input opens: a DAW may send Start at once
    input_record = None
    if options.get("input_log"):
        input_record = []
        stack.callback(write_input_log, options["input_log"], input_record)  # after the input closed
    surfaces = _open_surfaces(options, surface_specs, controls, control_map, card, required=bool(timing.sync), log=log,
                              input_record=input_record)
    for surface in surfaces:
        surface.start()
        stack.callback(surface.close)
        if getattr(surface, "url", None):
            log(f"page: {surface.url}")
    session.surfaces = surfaces
    from streamer.keys import TerminalKeys, status_line

    if any(isinstance(surface, TerminalKeys) for surface in surfaces):
        session.engine.on_tick = lambda e: sys.stderr.write(status_line(controls, e.notes_generated, instrument_name))
    log(f"streaming with {runtime.backend} ({instrument_name(program)}, T={controls.temperature:g}, "
        f"density {controls.density or 'free'}, key {controls.key or 'free'}); Ctrl-C stops")
    return session


def _engine(options, runtime, sender, controls, sampling, control_map, timing, card, log):
    from models.sampling import typical_density
    from streamer.engine import Engine, StreamSettings

    settings = StreamSettings(lookahead_seconds=options["lookahead"], max_note_seconds=options["max_note_seconds"],
                              notes=options["notes"], seconds=options["seconds"], draw_options=sampling.draw_options(),
                              start_temperature=sampling.temperature,
                              response_gap_seconds=control_map.response_gap_seconds, register=sampling.register)
    if not timing.timed:
        return Engine(runtime, sender, controls, settings)
    from streamer.timed_engine import TimedEngine
    from streamer.timeline import Timeline

    timeline = Timeline(timing, typical_density(card), controls.clock, origin=time.monotonic() + 0.2)
    controls.musical_clock = timeline.clock
    log(describe_timing(timing))
    return TimedEngine(runtime, sender, controls, settings, timeline)


def _surface_addresses(options: dict) -> dict:
    """The network surfaces' addresses, checked before anything opens."""
    from streamer.osc import parse_host_port

    addresses = {}
    if options.get("osc"):
        addresses["osc"] = parse_host_port(options["osc"], "--osc")
    if options.get("osc_out"):
        addresses["osc_out"] = parse_host_port(options["osc_out"], "--osc-out")
    if options.get("web"):
        addresses["web"] = parse_host_port("127.0.0.1:8765" if options["web"] == "default" else options["web"], "--web")
    return addresses


def _open_surfaces(options, addresses, controls, control_map, card, required: bool, log, input_record=None) -> list:
    from models.instruments import instrument_name
    from models.sampling import typical_density
    from streamer.keys import KEY_HELP, TerminalKeys

    surfaces = []
    control_input = _open_control_input(options, controls, control_map, required, log, input_record)
    if control_input:
        surfaces.append(control_input)
    if "osc" in addresses:
        from streamer.osc import OscSurface

        surfaces.append(OscSurface(controls, *addresses["osc"]))
        if addresses["osc"][0] not in ("127.0.0.1", "localhost", "::1"):
            log(f"warning: OSC listens on {addresses['osc'][0]}: anyone who can reach it steers the stream")
        log(f"OSC in: {surfaces[-1].address} (/cadenza/temperature, /density, /key, /dynamics, /instrument, "
            "/tempo_scale, /pause, /panic, /note_on, /note_off)")
    if "osc_out" in addresses:
        from streamer.osc import OscNoteSender

        surfaces.append(OscNoteSender(controls, *addresses["osc_out"]))
        log(f"OSC out: /cadenza/note to {surfaces[-1].address}")
    if "web" in addresses:
        from streamer.web import LOOPBACK, WebSurface

        surfaces.append(WebSurface(controls, *addresses["web"]))
        if addresses["web"][0] not in LOOPBACK:
            log(f"warning: the page is served beyond this machine ({addresses['web'][0]}); every request needs its token")
    if TerminalKeys.available() and not options["no_keys"]:
        surfaces.append(TerminalKeys(controls, instrument_name, typical_density(card)))
        log(KEY_HELP)
    return surfaces


def _open_control_input(options: dict, controls, control_map, required: bool, log, record=None):
    from models.stderr import silenced_stderr
    from streamer.control_input import MidiControlInput
    from streamer.outputs import midi_backend

    try:
        with silenced_stderr(active=not (options["control_port"] or required)):
            control = MidiControlInput(midi_backend(options["midi_api"]), controls, control_map,
                                       options["control_port"], poll_seconds=0.001 if required else 0.005,
                                       start_poll_seconds=0.0005 if required else None, record=record)
    except CadenzaError:
        if options["control_port"] or required:
            raise
        return None  # no MIDI system here for the default virtual input: keys and flags still work
    log(f"MIDI control in: {options['control_port'] or f'virtual port {control.name!r}'}")
    if control.same_name_as:
        log(f"note: a control input named 'cadenza-control' was already open ({', '.join(control.same_name_as)}): "
            f"is another cadenza running? Send controls to {control.name!r}")
    return control


def write_input_log(path: Path, record: list) -> None:
    """What the control input received, a line per message: arrival and polled (monotonic seconds:
    when JACK or the MIDI system stamped it, when cadenza read it) and its bytes in hex. Written
    under a temporary name and renamed."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(f"{arrival:.6f} {polled:.6f} {data.hex()}\n" for arrival, polled, data in list(record)))
    partial.replace(path)


def timing_settings(options: dict):
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


def describe_timing(timing) -> str:
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
