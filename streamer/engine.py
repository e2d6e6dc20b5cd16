"""The real-time engine: sample a note, place it on the monotonic clock ahead of time, repeat.

Notes are generated up to `lookahead_seconds` before they sound, so an inference hiccup
shorter than that never makes a note late, and a control change is heard within it.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field, replace

import mido
import numpy as np

from models.controls import with_densities
from models.notes import NOTE_DTYPE
from models.sampling import (CALL_NOTES, DensityHold, Sampling, controls_for, follow_call, random_densities,
                             register_weights, typical_density)

from streamer.controls import FREE_PLAY_GAP_SECONDS, Controls
from streamer.density import DensityBridge
from streamer.sender import SenderProcess


@dataclass
class StreamSettings:
    """Times in seconds."""

    lookahead_seconds: float = 0.2
    max_note_seconds: float = 8.0
    notes: int | None = None  # stop after this many notes
    seconds: float | None = None  # stop after this long
    # Runtime.sample's options from the stream's Sampling (Sampling.draw_options). Its per-field
    # temperatures are at the start temperature; a live temperature change scales them alike.
    draw_options: dict = field(default_factory=dict)
    start_temperature: float = 1.0
    channel: int = 0
    lead_in_seconds: float = 0.05
    # A note that would start further behind the clock than this means generation stalled:
    # skip ahead rather than burst the backlog.
    late_limit_seconds: float = 0.05
    response_gap_seconds: float | None = None  # None: FREE_PLAY_GAP_SECONDS, or a beat in turns
    key_memory_notes: int = 32  # --key auto follows the pitch classes of the player's last notes
    call_notes: int = CALL_NOTES  # the player's last notes are the call an answer follows (its key too)
    register: tuple | None = None  # (lowest, highest) pitch to keep to; None: free, or the call's in an answer

    @property
    def free_play_gap_seconds(self) -> float:
        """How long after the player's last note the model answers in free play."""
        return self.response_gap_seconds or FREE_PLAY_GAP_SECONDS


class StreamError(RuntimeError):
    """The stream stopped because something broke (a vanished port, a failed model step)."""


class Engine:
    def __init__(self, runtime, sender: SenderProcess, controls: Controls, settings: StreamSettings):
        self.runtime = runtime
        self.sender = sender
        self.controls = controls
        self.settings = settings
        self.notes_generated = 0
        self.skips = 0
        self.started = None
        self.on_tick = None  # called about every 0.1 s (status line)
        self.played_pitches = collections.deque(maxlen=settings.key_memory_notes)
        self._steering_applied = None
        self.density_bridge = DensityBridge()
        self.density_hold = None  # with density 'hold': this stream's DensityHold
        self._control_vector = None
        self._pitch_weights = register_weights(settings.register)  # the register kept to (None: free)
        self.call = collections.deque(maxlen=settings.call_notes)  # the player's last notes
        self._call_version = 0

    def prepare(self) -> None:
        """What must be ready before a player or a DAW can reach the stream (called before its
        inputs open). In free time, nothing: the first note is drawn when the stream starts."""

    def run(self) -> None:
        """Generate until --notes, --seconds or a stop; raise StreamError if something broke."""
        settings, controls = self.settings, self.controls
        self.started = time.monotonic()
        deadline = self.started + settings.seconds if settings.seconds else None
        self._send_program()
        onset = None
        self._next_check = self.started
        while not controls.stop.is_set():
            now = time.monotonic()
            if self._should_stop(now, deadline):
                break
            self._apply_live_controls()
            self._apply_steering()
            if controls.paused or controls.player_is_playing(settings.free_play_gap_seconds, settings.max_note_seconds) or not controls.played_notes.empty():
                self._absorb_player_notes()
                onset = None  # resume just after the pause or the player's phrase
                controls.stop.wait(0.01)
                continue
            if onset is not None and onset - now > settings.lookahead_seconds:
                controls.stop.wait(min(onset - now - settings.lookahead_seconds, 0.1))
                continue
            onset = self._generate_one(onset, now)

    def _should_stop(self, now: float, deadline: float | None) -> bool:
        """Health (and the status line) every 0.1 s; True at --seconds, or once --notes have rung out."""
        if now >= self._next_check:
            self._check_health()
            self._next_check = now + 0.1
            if self.on_tick:
                self.on_tick(self)
        if deadline and now >= deadline:
            return True
        if self.settings.notes is not None and self.notes_generated >= self.settings.notes:
            self._wait_for_last_notes(deadline)
            return True
        return False

    def _generate_one(self, onset: float | None, now: float) -> float:
        settings, controls = self.settings, self.controls
        note = self._draw()
        self._observe_density(float(note["step"]))
        scale = controls.tempo_scale
        if onset is None:
            onset = now + settings.lead_in_seconds
        else:
            onset += self.density_bridge.stretch(float(note["step"])) * scale
        if onset < time.monotonic() - settings.late_limit_seconds:
            self.skips += 1
            onset = time.monotonic() + settings.lead_in_seconds
        duration = min(float(note["duration"]) * scale, settings.max_note_seconds)
        self.sender.schedule_note(onset, onset + duration, settings.channel, int(note["pitch"]), int(note["velocity"]))
        self.controls.publish_note(onset, note["pitch"], note["velocity"], duration, "cadenza")
        self.notes_generated += 1
        return onset

    def _draw(self):
        """The model's next note (NOTE_DTYPE), at the live temperature."""
        ratio = self.controls.temperature / self.settings.start_temperature
        options = self.settings.draw_options
        head_temperature = {name: value * ratio for name, value in options.get("head_temperature", {}).items()}
        return self.runtime.sample(self.controls.temperature, pitch_weights=self._pitch_weights,
                                   **{**options, "head_temperature": head_temperature})[0]

    def _apply_live_controls(self) -> None:
        if self.controls.silence.is_set():
            self.controls.silence.clear()
            self.sender.silence_now()
        if self.controls.program_changed.is_set():
            self._send_program()

    def _apply_steering(self) -> None:
        """Density and key reach the model for the next note drawn: within the lookahead."""
        controls = self.controls
        version = (controls.steering_version, self._call_version, tuple(self.played_pitches) if controls.key == "auto" else ())
        if version == self._steering_applied:
            return
        self._steering_applied = version
        sampling = Sampling(density="random" if controls.density_drawn else controls.density, key=controls.key,
                            key_strict=controls.key_strict, dynamics=controls.dynamics, answer=controls.answer,
                            register=self.settings.register)
        call = np.array(self.call, dtype=NOTE_DTYPE)
        sampling, held = follow_call(sampling, call)
        self._pitch_weights = register_weights(sampling.register)
        if sampling.density == "random":  # no call to follow: the density drawn for the stream
            sampling = replace(sampling, density=controls.density)
        density = typical_density(self.runtime.card) if sampling.density == "auto" else sampling.density
        self.density_bridge.retarget(None if density == "hold" else density)
        if controls.density != "hold":
            self.density_hold = None
        elif held is not None:  # an answer starts at the call's pace, then holds near it
            self.density_hold = DensityHold([held], asking=True)
            self.density_hold.heard(call["step"][:, None])
        elif self.density_hold is None:
            self.density_hold = DensityHold(random_densities(1, self.runtime.card, self.runtime.rng))
        # An answer in the call's key hears the whole call, as offline; --key auto, the last few notes.
        following_key = controls.key is None and sampling.key == "auto"
        pitches = list(call["pitch"]) if following_key else list(self.played_pitches)
        self._control_vector = controls_for(sampling, self.runtime.card, pitches)[None]
        self._set_controls()

    def _set_controls(self) -> None:
        vector = self._control_vector
        if self.density_hold is not None:
            vector = with_densities(vector, self.density_hold.targets)
        self.runtime.set_controls(vector)

    def _observe_density(self, step_seconds: float) -> None:
        if self.density_hold is not None and self.density_hold.observe(np.array([step_seconds])):
            self._set_controls()

    def _send_program(self) -> None:
        self.controls.program_changed.clear()
        self.sender.send_soon(mido.Message("program_change", channel=self.settings.channel, program=self.controls.program))

    def _absorb_player_notes(self) -> None:
        """Call and response: what the player played becomes the model's context."""
        while not self.controls.played_notes.empty():
            self.on_player_note()
            note = self.controls.played_notes.get_nowait()
            self.played_pitches.append(int(note["pitch"]))
            if self.controls.answer == "follow":
                self.call.append(note)
                self._call_version += 1
            self.runtime.feed(note.reshape(1).repeat(self.runtime.batch))

    def on_player_note(self) -> None:
        """A hook: a note the player played is about to become the model's context."""

    def _check_health(self) -> None:
        if self.sender.error is not None:
            raise StreamError(self.sender.error)
        if self.sender.stopped:
            self.controls.stop.set()

    def _wait_for_last_notes(self, deadline: float | None) -> None:
        """After the last note, let the notes already scheduled ring out (capped by --seconds)."""
        end = self.sender.last_scheduled_time()
        if deadline:
            end = min(end, deadline)
        while not self.controls.stop.is_set() and time.monotonic() < end:
            self._check_health()
            self.controls.stop.wait(min(0.05, max(end - time.monotonic(), 0)))
