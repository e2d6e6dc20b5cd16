"""Live controls: the shared settings every surface acts on, the control map, and the player-note feed."""

from __future__ import annotations

import json
import math
import queue
import threading
import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from models.controls import all_keys
from models.errors import CadenzaError
from models.notes import NOTE_DTYPE
from models.sampling import DENSITY_RANGE, TEMPERATURE_RANGE

import numpy as np

# Free play: the model answers this long after the player stops (ControlMap.response_gap_seconds).
FREE_PLAY_GAP_SECONDS = 0.6


@dataclass
class ControlMap:
    """Which controller numbers do what; override any field from a TOML or JSON file."""

    temperature_cc: int = 1  # mod wheel
    temperature_range: tuple = (0.1, 2.0)
    tempo_cc: int = 74
    tempo_range: tuple = (0.5, 2.0)  # log scale; the middle of the knob is 1.0
    silence_ccs: tuple = (120, 123)
    density_cc: int = 71  # 0 = no density control, 1-127 = density_range on a log scale
    density_range: tuple = (1.0, 24.0)
    key_cc: int = 72  # 0 = no key, then the 24 keys (C major .. B major, C minor .. B minor), top = auto
    # The model answers this long after the player stops. None: FREE_PLAY_GAP_SECONDS in free play,
    # one beat of the clock in --turns (a player's rests between staccato notes are not a stop).
    response_gap_seconds: float | None = None
    # With --turns: >= 64 "my turn" (cadenza answers), < 64 "your turn"; 0 = none. CC 85 is
    # undefined in the MIDI spec, so no pedal or wheel a pianist plays with sends it by default
    # (CC 64, the sustain pedal, would hand cadenza the turn at every pedal).
    turn_cc: int = 85
    # Switches how an answer takes its call, live: >= 64 "free" (contrast: as if nothing had been
    # played), < 64 "follow" (the call's key, pace and dynamics). 0 = none (the default).
    answer_cc: int = 0

    @classmethod
    def load(cls, path: Path | None) -> "ControlMap":
        if path is None:
            return cls()
        path = Path(path)
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as error:
            raise CadenzaError(f"cannot read control map {path}: {error}") from None
        if not isinstance(data, dict):
            raise CadenzaError(f"control map {path} must be a table of keys, e.g. temperature_cc = 16")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CadenzaError(f"unknown keys in control map {path}: {', '.join(sorted(unknown))}")
        control_map = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        control_map.validate(path)
        return control_map

    def validate(self, path) -> None:
        """Every key's type and range, and no controller number used twice; a one-line error naming the key."""
        def refuse(key: str, expected: str):
            raise CadenzaError(f"control map {path}: {key} = {getattr(self, key)!r}; expected {expected}")

        def is_number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        for key in ("temperature_cc", "tempo_cc", "density_cc", "key_cc", "turn_cc", "answer_cc"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 127:
                refuse(key, "a controller number 0-127")
        limits = {"temperature_range": TEMPERATURE_RANGE, "tempo_range": (0.25, 4.0), "density_range": DENSITY_RANGE}
        for key, (low_limit, high_limit) in limits.items():
            value = getattr(self, key)
            if not (isinstance(value, tuple) and len(value) == 2 and all(is_number(v) for v in value)
                    and low_limit <= value[0] < value[1] <= high_limit):
                refuse(key, f"[low, high] with {low_limit} <= low < high <= {high_limit}")
        silence = self.silence_ccs
        if not (isinstance(silence, tuple) and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 127
                                                   for c in silence)):
            refuse("silence_ccs", "a list of controller numbers 0-127, e.g. [120, 123]")
        gap = self.response_gap_seconds
        if gap is not None and (not is_number(gap) or not 0.05 <= gap <= 30):
            refuse("response_gap_seconds", "seconds between 0.05 and 30")
        numbers = [self.temperature_cc, self.tempo_cc, self.density_cc, self.key_cc, *silence]
        numbers += [cc for cc in (self.turn_cc, self.answer_cc) if cc]  # 0 is "none" there, not controller 0
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise CadenzaError(f"control map {path}: controller {repeated[0]} is used for two things")


KEY_CHOICES = [None] + [str(key) for key in all_keys()] + ["auto"]


def key_from_cc(value: int) -> str | None:
    """CC value 0-127 -> None, one of the 24 keys, or 'auto', in equal slices."""
    return KEY_CHOICES[min(value * len(KEY_CHOICES) // 128, len(KEY_CHOICES) - 1)]


@dataclass
class Controls:
    """What the engine reads before each note; written by the command line, MIDI and keys.

    `density` (notes/s, 'auto' or None) and `key` ('D minor', 'auto' or None) steer the model;
    every change bumps `steering_version` so the engine re-sends the controls to the runtime.
    """

    temperature: float = 1.0
    program: int = 0
    tempo_scale: float = 1.0
    density: float | str | None = None
    density_drawn: bool = False  # True for a density drawn by --density random (see set_density)
    key: str | None = None
    key_strict: bool = True  # False for a key drawn by --key random (see Sampling)
    steering_version: int = 0
    paused: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    silence: threading.Event = field(default_factory=threading.Event)
    program_changed: threading.Event = field(default_factory=threading.Event)
    played_notes: queue.Queue = field(default_factory=queue.Queue)
    last_player_activity: float = 0.0
    held_since: dict = field(default_factory=dict)  # pitch -> monotonic onset, keys the player holds
    # When the control input was last found deaf (monotonic): its clock counted pulses lost. A
    # note-off may have been lost with them (see player_is_playing).
    input_lost_at: float | None = None
    clock: object = None  # a ClockFollower with --sync midi-clock: the control input's clock feeds it
    turn_request: str | None = None  # "mine" or "yours", from the turn CC, taken by the engine
    answer: str = "follow"  # how an answer takes its call (Sampling.answer); the answer CC switches it live
    dynamics: float | None = None  # mean velocity 1-127 asked of the notes ahead (None: free)
    # Every note played (cadenza's and the player's) goes to each subscriber's bounded queue: a web
    # page or an OSC sender watches without the engine knowing them, and never holds it up.
    note_subscribers: list = field(default_factory=list)
    musical_clock: object = None  # in musical time, the clock the engine places notes on (beats, tempo)
    turn_state: str | None = None  # with --turns: "player" (cadenza listens) or "cadenza" (it answers)
    notes_played: int = 0
    started: float = field(default_factory=time.monotonic)

    def subscribe_notes(self, size: int = 512) -> queue.Queue:
        feed: queue.Queue = queue.Queue(maxsize=size)
        self.note_subscribers.append(feed)
        return feed

    def publish_note(self, onset: float, pitch: int, velocity: int, duration: float, source: str) -> None:
        """A note scheduled (cadenza) or played (player); onset in monotonic seconds, duration in seconds.
        A subscriber too slow to keep up loses notes; the stream never waits for it."""
        if source == "cadenza":
            self.notes_played += 1
        note = {"onset_monotonic": onset, "onset": onset - self.started, "pitch": int(pitch),
                "velocity": int(velocity), "duration": float(duration), "source": source}
        for feed in list(self.note_subscribers):
            try:
                feed.put_nowait(note)
            except queue.Full:
                pass

    def set_temperature(self, value: float) -> None:
        self.temperature = float(min(max(value, 0.05), 5.0))

    def set_program(self, program: int) -> None:
        self.program = int(program) % 128
        self.program_changed.set()

    def set_tempo_scale(self, value: float) -> None:
        self.tempo_scale = float(min(max(value, 0.25), 4.0))

    def set_density(self, value, drawn: bool = False) -> None:
        """`drawn`: a density drawn for the stream ('--density random'), not asked for by the player:
        an answer that follows its call takes the call's instead."""
        self.density = value if value in (None, "auto", "hold") else float(min(max(value, DENSITY_RANGE[0]), DENSITY_RANGE[1]))
        self.density_drawn = drawn
        self.steering_version += 1

    def set_answer(self, answer: str) -> None:
        if answer not in ("follow", "free"):
            raise ValueError(f"answer must be 'follow' or 'free', not {answer!r}")
        self.answer = answer
        self.steering_version += 1

    def set_dynamics(self, velocity: float | None) -> None:
        self.dynamics = None if velocity is None else float(min(max(velocity, 1.0), 127.0))
        self.steering_version += 1

    def set_key(self, key: str | None) -> None:
        self.key = key
        self.key_strict = True
        self.steering_version += 1

    def step_key(self, direction: int) -> None:
        index = KEY_CHOICES.index(self.key) if self.key in KEY_CHOICES else 0
        self.set_key(KEY_CHOICES[(index + direction) % len(KEY_CHOICES)])

    def scale_density(self, factor: float, typical: float) -> None:
        current = self.density if isinstance(self.density, float) else typical
        self.set_density(current * factor)

    def player_is_playing(self, gap: float, longest_note: float) -> bool:
        """A key held (for less than `longest_note` seconds: a stuck key or a lost note-off must
        not pause the stream forever), or the last note ended less than `gap` seconds ago. A key
        struck before the input was last found deaf (`input_lost_at`) counts as held only `gap`
        past that: its note-off may have been lost with the pulses (a loaded JACK server drops what
        a client misses a cycle for), and held for 8 s it kept a turn from ever being answered."""
        now = time.monotonic()
        lost_at = self.input_lost_at

        def held(onset: float) -> bool:
            if lost_at is not None and onset < lost_at and now - lost_at >= gap:
                return False
            return now - onset < longest_note

        return any(held(onset) for onset in list(self.held_since.values())) or now - self.last_player_activity < gap


class ControlMapper:
    """MIDI messages from the player onto Controls, through the control map; played notes feed the model."""

    def __init__(self, controls: Controls, control_map: ControlMap):
        self.controls = controls
        self.map = control_map
        self.notes = PlayerNotes(controls)

    def handle(self, message, arrival: float | None = None) -> None:
        """One message; `arrival` is when it arrived (monotonic seconds), which clock pulses need."""
        controls = self.controls
        if message.type in ("clock", "start", "stop", "continue", "songpos"):
            self._transport(message, time.monotonic() if arrival is None else arrival)
        elif message.type == "control_change":
            self._control_change(message.control, message.value)
        elif message.type == "program_change":
            controls.set_program(message.program)
        elif message.type == "note_on" and message.velocity > 0:
            self.notes.started(message.note, message.velocity)
        elif message.type in ("note_off", "note_on"):
            self.notes.ended(message.note)

    def _transport(self, message, arrival: float) -> None:
        clock = self.controls.clock
        if clock is None:
            return  # not following a clock (--sync): a DAW's clock on the control input is ignored
        if message.type == "clock":
            clock.pulse(arrival)
        elif message.type == "start":
            clock.start(arrival)
        elif message.type == "stop":
            clock.stop()
        elif message.type == "continue":
            clock.resume(arrival)
        else:
            clock.song_position(message.pos, arrival)

    def _control_change(self, control: int, value: int) -> None:
        controls, control_map = self.controls, self.map
        if control == control_map.turn_cc and control_map.turn_cc:
            controls.turn_request = "mine" if value >= 64 else "yours"
        elif control == control_map.answer_cc and control_map.answer_cc:
            controls.set_answer("free" if value >= 64 else "follow")
        elif control == control_map.temperature_cc:
            low, high = control_map.temperature_range
            controls.set_temperature(low + (high - low) * value / 127)
        elif control == control_map.tempo_cc:
            low, high = control_map.tempo_range
            controls.set_tempo_scale(math.exp(math.log(low) + (math.log(high) - math.log(low)) * value / 127))
        elif control == control_map.density_cc:
            if value == 0:
                controls.set_density(None)
            else:
                low, high = control_map.density_range
                controls.set_density(math.exp(math.log(low) + (math.log(high) - math.log(low)) * (value - 1) / 126))
        elif control == control_map.key_cc:
            controls.set_key(key_from_cc(value))
        elif control in control_map.silence_ccs:
            controls.silence.set()
            self.notes.clear()  # all notes off means the player's too



class PlayerNotes:
    """The player's notes, from whichever surface they come (MIDI, OSC), into Controls: the keys
    held, the time of the last activity, and each finished note for the model to hear.

    The model hears notes in the order they started, as it was trained (and as `render --primer`
    feeds a call): a note that ends is held back while a note that started before it still sounds.
    Played live in release order, a chord under a held bass note reached the model scrambled, with
    steps of 0 where the player had moved on. A key held longer than `STUCK_SECONDS` (a lost
    note-off) holds nothing back.
    """

    STUCK_SECONDS = 8.0

    def __init__(self, controls: Controls):
        self.controls = controls
        self._open_notes: dict[int, tuple[float, int]] = {}
        self._finished: list[tuple[float, int, float, int]] = []  # (onset, pitch, duration, velocity), held back
        self._last_onset: float | None = None

    def started(self, pitch: int, velocity: int) -> None:
        now = time.monotonic()
        if pitch in self._open_notes:  # struck again before its note-off: the first strike ends here
            self.ended(pitch)
        self._open_notes[pitch] = (now, velocity)
        self.controls.held_since = {p: onset for p, (onset, _) in self._open_notes.items()}
        self.controls.last_player_activity = now

    def ended(self, pitch: int) -> None:
        now = time.monotonic()
        if pitch not in self._open_notes:
            return
        onset, velocity = self._open_notes.pop(pitch)
        self._finished.append((onset, pitch, now - onset, velocity))
        self.controls.publish_note(onset, pitch, velocity, now - onset, "player")
        self._release_in_order(now)
        self.controls.held_since = {p: onset for p, (onset, _) in self._open_notes.items()}
        self.controls.last_player_activity = now

    def _release_in_order(self, now: float) -> None:
        """Finished notes that started before every key still held go to the model, by onset."""
        blocking = [onset for onset, _ in self._open_notes.values() if now - onset < self.STUCK_SECONDS]
        earliest_held = min(blocking, default=float("inf"))
        self._finished.sort()
        while self._finished and self._finished[0][0] <= earliest_held:
            onset, pitch, duration, velocity = self._finished.pop(0)
            step = 0.0 if self._last_onset is None else max(onset - self._last_onset, 0.0)
            self._last_onset = max(onset, self._last_onset or onset)
            self.controls.played_notes.put(np.array([(pitch, step, duration, velocity)], dtype=NOTE_DTYPE)[0])

    def clear(self) -> None:
        """All notes off: the player's too (what they finished still reaches the model)."""
        self._open_notes.clear()
        self._release_in_order(time.monotonic())
        self.controls.held_since = {}
