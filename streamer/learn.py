"""`cadenza learn`: MIDI learn. Move a knob for each control in turn; the map is written for --control-map.

It asks for each learnable control of ControlMap in turn ("move the control for temperature");
the first controller number that moves and is not taken yet is that control's, and Enter skips
it (it keeps its default). The map holds only what was learned, so the defaults stay visible
as defaults; it is checked as `stream --control-map` checks it, then written (temporary name,
then rename).
"""

from __future__ import annotations

import os
import queue
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from models.errors import CadenzaError
from streamer.controls import ControlMap

# (ControlMap field, what the player is asked to move)
LEARNABLE = [
    ("temperature_cc", "temperature (how adventurous)"),
    ("density_cc", "density (notes per second)"),
    ("key_cc", "key"),
    ("tempo_cc", "tempo"),
    ("turn_cc", "turns (my turn / your turn, with --turns)"),
    ("answer_cc", "answer (follow / free)"),
]
QUIET_SECONDS = 0.4  # a knob sends a burst; the next control is asked for once it has been still this long


@dataclass
class LearnSettings:
    control_port: str
    out: Path
    midi_api: str = "auto"
    wait_seconds: float = 60.0  # per control, before it is skipped


def _print(line: str) -> None:
    print(line, flush=True)


def learn(settings: LearnSettings, say=_print, keys=sys.stdin) -> dict:
    """Ask for each control; return {field: controller number} and write the map."""
    if settings.out.suffix != ".toml":
        raise CadenzaError(f"--out {settings.out}: a control map learned is written as TOML; name it *.toml")
    from streamer.midi_input import PolledMidiInput
    from streamer.outputs import midi_backend

    moved: queue.Queue = queue.Queue()

    def on_message(message, _arrival):
        if message.type == "control_change":
            moved.put((message.control, time.monotonic()))

    try:
        port = PolledMidiInput(midi_backend(settings.midi_api), settings.control_port, on_message,
                               client_name="cadenza-learn", poll_seconds=0.002)
    except (OSError, IOError, SystemError, RuntimeError) as error:
        raise CadenzaError(f"cannot open control port {settings.control_port!r}: {error}".splitlines()[0]) from None
    learned: dict[str, int] = {}
    try:
        for key, description in LEARNABLE:
            _wait_until_quiet(moved)
            say(f"move the control for {description} (Enter skips)")
            number = _next_control(moved, keys, taken=set(learned.values()), wait_seconds=settings.wait_seconds)
            if number is None:
                say(f"  {key}: skipped (default {getattr(ControlMap(), key)})")
            else:
                learned[key] = number
                say(f"  {key} = {number}")
    finally:
        port.close()
    _write_map(learned, settings.out)
    return learned


def _wait_until_quiet(moved: queue.Queue) -> None:
    """Let the last knob's burst end, and forget it."""
    while True:
        try:
            moved.get(timeout=QUIET_SECONDS)
        except queue.Empty:
            return


def _next_control(moved: queue.Queue, keys, taken: set, wait_seconds: float) -> int | None:
    """The first controller number that moves and is not taken; None on Enter, end of input or time out."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _enter_pressed(keys):
            return None
        try:
            number, _ = moved.get(timeout=0.02)
        except queue.Empty:
            continue
        if number not in taken and number not in ControlMap().silence_ccs:
            return number
    return None


def _enter_pressed(keys) -> bool:
    try:
        ready, _, _ = select.select([keys], [], [], 0)
    except (ValueError, OSError, TypeError):
        return False  # no stdin to read (closed, not a file): only a controller or the time out answers
    if not ready:
        return False
    return keys.readline().strip() == ""  # Enter (or the end of the input)


def _write_map(learned: dict, out: Path) -> None:
    control_map = ControlMap(**learned)
    control_map.validate(out)
    lines = ["# cadenza control map, written by `cadenza learn`; use with: cadenza stream --control-map " + out.name]
    lines += [f"{key} = {value}" for key, value in learned.items()]
    temporary = out.with_name(f".{out.name}.partial")
    try:
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, out)
    except OSError as error:
        raise CadenzaError(f"cannot write {out}: {error.strerror or error}") from None
