"""The engine in musical time: notes placed on a clock (cadenza's own or a MIDI clock it follows),
on a grid, in turns; Start, Stop and Continue from the clock. See streamer/timeline.py."""

from __future__ import annotations

import sys
import time

import mido

from streamer.tempo import FixedTempo
from streamer.controls import FREE_PLAY_GAP_SECONDS
from streamer.engine import Engine

MAX_ARMED_NOTES = 16


class TimedEngine(Engine):
    def __init__(self, runtime, sender, controls, settings, timeline):
        super().__init__(runtime, sender, controls, settings)
        self.timeline = timeline
        # Notes drawn while waiting for the clock to start: as many as sound within the lookahead,
        # so that at Start they only need placing. Drawn after it, a 9-note chord on the downbeat
        # left one note a millisecond (its draw), the last 12 ms after the downbeat.
        self._armed: list = []
        # A note placed on its beat but not yet sent: it is timed (beat -> seconds) only when it is
        # within the lookahead, so a tempo change heard meanwhile moves it (one placed after a long
        # rest was timed up to a second ahead, 6 ms off after a tempo change).
        self._ahead = None  # (note, beat, end beat)
        self.late_sends = 0  # notes sent later than --latency-ms asked (still on time as heard)
        self._lost_pulses_seen = 0

    def prepare(self) -> None:
        """Following a MIDI clock: the notes for the downbeat, drawn before the control input opens.
        A DAW may send Start as soon as it sees the port; drawn after, the first chord went out
        note by note as drawn (1.2-4.6 ms late, Start 0.6 s after the port opened on a loaded host)."""
        if isinstance(self.timeline.clock, FixedTempo):
            return  # cadenza's own tempo starts when its first note is ready (see _run_timed)
        self._apply_steering()
        lookahead = self.settings.lookahead_seconds + self.timeline.settings.early_seconds
        while self._arm(lookahead):
            pass

    def run(self) -> None:
        try:
            self._run_timed()
        finally:
            if self.timeline.settings.clock_out:
                self.sender.send_soon(mido.Message("stop"))

    def on_player_note(self) -> None:
        self._armed = []  # drawn before the player's notes: the answer must hear them

    def _run_timed(self) -> None:
        """Musical time: notes placed by the timeline on a clock; turns; transport from a MIDI clock."""
        settings, controls, timeline = self.settings, self.controls, self.timeline
        clock, placer, turns = timeline.clock, timeline.placer, timeline.turns
        if isinstance(clock, FixedTempo):
            # cadenza's own tempo starts when the first note is ready, not when the session was
            # built: on a slow start the downbeat would be gone and the first note skipped past it.
            self._apply_steering()
            self._armed = [self._draw()]
            clock.origin = time.monotonic() + settings.lead_in_seconds + timeline.settings.early_seconds
        self.started = time.monotonic()
        deadline = self.started + settings.seconds if settings.seconds else None
        lookahead = settings.lookahead_seconds + timeline.settings.early_seconds
        self._send_program()
        transport_seen, resting = None, True
        self._next_check = self.started
        while not controls.stop.is_set():
            now = time.monotonic()
            if self._should_stop(now, deadline):
                break
            self._apply_live_controls()
            self._apply_steering()
            for when, data in timeline.clock_messages(now + lookahead):
                self.sender.schedule_message(when, mido.Message.from_bytes(data))
            self._note_input_losses(now)
            if clock.watch(now):
                sys.stderr.write("cadenza: the MIDI clock stopped without Stop (a cable, a crashed DAW?): every "
                                 "note released; playing on when its pulses return\n")
            clock.transport_changed.clear()  # before reading the version: a change after it wakes the next wait
            if clock.transport_version != transport_seen:  # Start, Stop, Continue, a lost clock
                transport_seen = clock.transport_version
                if not clock.running:
                    self.sender.silence_now()  # Stop: every sounding note off now
                if turns:
                    turns.finish()
                self._restart_at(clock.start_beat())
                resting = False
            if not clock.running or clock.time_of_beat(placer.cursor) is None:
                self._absorb_player_notes()
                self._arm(lookahead)  # one draw at a time: Start wakes the wait below
                clock.transport_changed.wait(0.001)  # Start comes right before the downbeat: woken by it
                continue
            end_beat = self._turn_window(now) if turns else None
            if turns and not turns.answering:
                controls.stop.wait(0.002)
                continue
            if not turns and (controls.paused or controls.player_is_playing(settings.free_play_gap_seconds, settings.max_note_seconds)
                              or not controls.played_notes.empty()):
                self._absorb_player_notes()  # call and response, as in free time: then on the grid
                resting = True
                controls.stop.wait(0.005)
                continue
            if resting:
                resting = False
                self._restart_at(self._beat_soonest(now))
            if self._ahead is None:
                if placer.next_time is not None and placer.next_time - now > lookahead:
                    controls.stop.wait(min(placer.next_time - now - lookahead, 0.005))
                    continue
                self._place_one(end_beat)
            if self._ahead is not None:
                wait = self._send_ahead(time.monotonic(), lookahead, end_beat)
                if wait:
                    controls.stop.wait(min(wait, 0.005))

    def _note_input_losses(self, now: float) -> None:
        """Pulses the clock follower newly counted lost: the control input was deaf a moment, and
        what else came then (a note-off) is gone too (Controls.player_is_playing)."""
        lost = getattr(self.timeline.clock, "lost_pulses", 0)  # a ClockFollower's; cadenza's own tempo loses none
        if lost > self._lost_pulses_seen:
            self._lost_pulses_seen, self.controls.input_lost_at = lost, now

    def _turn_window(self, now: float) -> float | None:
        """Turns: start an answer at the bar line after the player stops (or on request); its end beat."""
        controls, turns, clock = self.controls, self.timeline.turns, self.timeline.clock
        request, controls.turn_request = controls.turn_request, None
        controls.turn_state = "cadenza" if turns.answering else "player"
        if turns.answering:
            if request == "yours":
                turns.cut_short(clock, now)
            placer = self.timeline.placer
            if placer.last_beat is not None and placer.cursor >= turns.end_beat and self._ahead is None:
                turns.finish()
            return turns.end_beat
        turns.heard_player |= not controls.played_notes.empty() or bool(controls.held_since)
        self._absorb_player_notes()
        playing = controls.player_is_playing(self._turn_gap_seconds(), self.settings.max_note_seconds)
        if request == "mine" or (turns.heard_player and not playing and turns.pending_bar is None):
            turns.pending_bar = turns.next_bar(clock, now)
            turns.forced = request == "mine"
        elif playing and not turns.forced:
            turns.pending_bar = None  # the player went on: the answer waits for the next pause
        if turns.pending_bar is not None and clock.time_of_beat(turns.pending_bar) - now <= self.settings.lookahead_seconds:
            turns.begin(turns.pending_bar)
            self._restart_at(turns.start_beat)
        return turns.end_beat if turns.answering else None

    def _beat_soonest(self, now: float) -> float:
        """The first song position a note can still be sent for in time: lead-in and latency ahead."""
        early = self.timeline.settings.early_seconds
        return self.timeline.clock.beat_at(now + self.settings.lead_in_seconds + early)

    def _sent_late(self, seconds: float) -> None:
        """Count a note sent after its time (early by less than --latency-ms); say so once."""
        self.late_sends += 1
        if self.late_sends == 1:
            sys.stderr.write(f"cadenza: a note was sent {seconds * 1e3:.0f} ms later than --latency-ms asks "
                             "(it was placed closer to its beat than the latency: after Start, a resume or a pause)\n")

    def _turn_gap_seconds(self) -> float:
        """How long the player must have been silent for their turn to be over: the control map's
        response_gap_seconds, or one beat at the clock's tempo (FREE_PLAY_GAP_SECONDS before it has one)."""
        if self.settings.response_gap_seconds:
            return self.settings.response_gap_seconds
        return self.timeline.clock.seconds_per_beat or FREE_PLAY_GAP_SECONDS

    def _restart_at(self, beat: float) -> None:
        self._ahead = None
        self.timeline.placer.restart(beat)

    def _arm(self, lookahead: float) -> bool:
        """Draw one more note to have ready for Start, while those ready sound within `lookahead`
        of the first (at the network's own pace) and are fewer than MAX_ARMED_NOTES; whether it drew."""
        armed = self._armed
        if len(armed) < MAX_ARMED_NOTES and sum(float(note["step"]) for note in armed[1:]) < lookahead:
            armed.append(self._draw())
            return True
        return False

    def _place_one(self, end_beat: float | None) -> None:
        """Draw the next note and place it on its beat (self._ahead); notes of a finished turn end it."""
        armed = self._armed  # (a player's note may empty it meanwhile, by putting a new list in its place)
        note = armed.pop(0) if armed else self._draw()
        self._observe_density(float(note["step"]))
        scale = self.controls.tempo_scale
        step = self.density_bridge.stretch(float(note["step"])) * scale
        placer = self.timeline.placer
        if placer.place(step, float(note["duration"]) * scale) is None:
            return
        if end_beat is not None and placer.last_beat >= end_beat - 1e-9:
            self.timeline.turns.finish()  # the answer is complete: its last note ends by the bar line
            return
        self._ahead = (note, placer.last_beat, placer.last_end_beat)

    def _send_ahead(self, now: float, lookahead: float, end_beat: float | None) -> float:
        """Send the placed note if it sounds within the lookahead, timed by the clock as it is now;
        else the seconds until it does."""
        note, beat, note_end_beat = self._ahead
        if end_beat is not None:
            note_end_beat = min(note_end_beat, end_beat)
        times = self.timeline.placer.times(beat, note_end_beat)
        if times is None:
            return 0.005
        onset, end = times
        early = self.timeline.settings.early_seconds
        if onset + early - now > lookahead:
            return onset + early - now - lookahead
        onset = self.timeline.placer.sent_onset(beat, onset)
        self._ahead = None
        settings = self.settings
        if onset + early < now - settings.late_limit_seconds:  # the note itself would sound late: generation stalled
            self.skips += 1
            self._restart_at(self._beat_soonest(now))
            return 0.0
        if early and onset < now:  # it can sound on time, but not leave as early as --latency-ms asks
            self._sent_late(now - onset)  # (the sender sends what is due at once)
        end = min(end, onset + settings.max_note_seconds)
        self.sender.tempo_point(onset, beat, self.timeline.clock.seconds_per_beat)  # a take in the song's bars
        self.sender.schedule_note(onset, max(end, onset + 0.005), settings.channel, int(note["pitch"]), int(note["velocity"]))
        self.controls.publish_note(onset, note["pitch"], note["velocity"], max(end - onset, 0.005), "cadenza")
        self.notes_generated += 1
        return 0.0
