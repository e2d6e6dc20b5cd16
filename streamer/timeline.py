"""Where the model's notes go when cadenza plays in musical time (--bpm, --sync, --quantize, --turns).

The model thinks in seconds. In musical time its seconds become beats at a fixed rate chosen so
that its typical note lands on one sixteenth (`beats_per_model_second` = typical density / 4):
the rhythm keeps its proportions, it sits on the beat, and like a human player it plays slower at
a slower tempo. Beats become seconds through the clock (cadenza's own tempo, or a MIDI clock it
follows), so a tempo change is heard on the next note placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.notes import CHORD_SECONDS  # notes the model plays this close together share the first one's grid point
from streamer.clock import PULSES_PER_BEAT, ClockFollower
from streamer.tempo import QUANTIZE_CHOICES, FixedTempo, Grid
# An answer never starts at a bar line closer than this (seconds): the first note must be sent in time.
BAR_MARGIN_SECONDS = 0.02


@dataclass
class TimingSettings:
    """Musical time for a stream; the defaults (no bpm, no sync) play in free time as before."""

    bpm: float | None = None  # cadenza's own tempo
    sync: str | None = None  # "midi-clock": follow the control input's clock instead
    quantize: str = "off"  # a key of QUANTIZE_CHOICES
    swing: float = 0.0  # 0-0.75 of a grid step, on every second grid point
    latency_seconds: float = 0.0  # everything is sent this much early (negative: late)
    clock_out: bool = False  # send MIDI clock, Start and Stop from cadenza's own tempo
    turns_bars: int | None = None  # call and response in phrases of this many bars
    beats_per_bar: int = 4

    @property
    def early_seconds(self) -> float:
        """How much before its time a note leaves for the latency (a negative latency sends late,
        which needs no head start)."""
        return max(self.latency_seconds, 0.0)

    @property
    def timed(self) -> bool:
        return bool(self.bpm or self.sync or self.quantize != "off" or self.clock_out or self.turns_bars)


class BeatPlacer:
    """The model's notes onto song positions (beats) and times: the grid, chords, the clock."""

    def __init__(self, clock, grid: Grid | None, beats_per_model_second: float, latency_seconds: float = 0.0):
        self.clock = clock
        self.grid = grid
        self.beats_per_model_second = beats_per_model_second
        self.latency_seconds = latency_seconds
        self.restart(0.0)

    def restart(self, beat: float) -> None:
        """The next note lands on `beat` (a downbeat, a resumed position), or the grid point after it."""
        self.cursor = beat
        self.last_beat = None  # the last note's placed beat
        self.last_end_beat = None
        self.next_time = None  # when the last note placed sounds (monotonic seconds, before latency)
        self._sent_chord = None  # (beat, onset) of the last note sent (see sent_onset)

    def place(self, step_seconds: float, duration_seconds: float) -> tuple[float, float, float] | None:
        """(beat, onset, end) for the model's next note, times in monotonic seconds with the latency
        taken off; None while the clock cannot say when that beat is."""
        first = self.last_beat is None
        if first:
            beat = self.cursor if self.grid is None else self.grid.snap(self.cursor, not_before=self.cursor)
        else:
            self.cursor += step_seconds * self.beats_per_model_second
            if step_seconds < CHORD_SECONDS:
                beat = self.last_beat  # chords stay chords
            elif self.grid is None:
                beat = self.cursor
            else:  # the next free grid point: a fast run becomes a run on the grid, not a cluster
                beat = self.grid.snap(self.cursor, not_before=self.last_beat + 1e-6)
        self.cursor = max(self.cursor, beat)
        # Lengths keep their length (in beats), not snapped: legato and staccato stay as played.
        end_beat = beat + max(duration_seconds, 0.0) * self.beats_per_model_second
        times = self.times(beat, end_beat)
        if times is None:
            return None
        self.last_beat, self.last_end_beat, self.next_time = beat, end_beat, times[0] + self.latency_seconds
        return beat, *times

    def times(self, beat: float, end_beat: float) -> tuple[float, float] | None:
        """(onset, end) of a note placed at song positions `beat` to `end_beat`, by the clock as it is
        now (monotonic seconds, latency taken off); None while the clock cannot say."""
        onset, end = self.clock.time_of_beat(beat), self.clock.time_of_beat(end_beat)
        if onset is None:
            return None
        return onset - self.latency_seconds, end - self.latency_seconds

    def sent_onset(self, beat: float, onset: float) -> float:
        """The onset to send a placed note at, given its `beat` and its onset by the clock's line now.
        A chord's notes are sent one by one, and a pulse that comes between them moves the line (by
        microseconds): they share the onset the chord's first note was sent with (a clean-clone run
        saw a chord's notes part)."""
        if self._sent_chord is not None and self._sent_chord[0] == beat:
            onset = self._sent_chord[1]
        self._sent_chord = (beat, onset)
        return onset


class Turns:
    """Call and response in bars: listen while the player plays, then answer for `bars` bars from
    the next bar line, ending on a bar line, then listen again. A turn CC forces either side."""

    def __init__(self, bars: int, beats_per_bar: int):
        self.bar_beats = beats_per_bar
        self.answer_beats = bars * beats_per_bar
        self.answering = False
        self.start_beat = self.end_beat = None
        self.heard_player = False  # the player played since the last answer
        self.pending_bar = None  # the bar line the next answer starts on, once the player paused
        self.forced = False  # the pending answer was asked for ("my turn"): it starts even if they play

    def next_bar(self, clock, now: float) -> float | None:
        beat = clock.beat_at(now + BAR_MARGIN_SECONDS)
        return None if beat is None else math.ceil(beat / self.bar_beats - 1e-9) * self.bar_beats

    def begin(self, start_beat: float) -> None:
        self.answering, self.heard_player, self.pending_bar, self.forced = True, False, None, False
        self.start_beat, self.end_beat = start_beat, start_beat + self.answer_beats

    def cut_short(self, clock, now: float) -> None:
        """'Your turn': the answer ends at the next bar line."""
        bar = self.next_bar(clock, now)
        if bar is not None and self.end_beat is not None:
            self.end_beat = min(self.end_beat, max(bar, self.start_beat))

    def finish(self) -> None:
        self.answering = False


class Timeline:
    """Everything musical time needs in the engine: the clock, the placer, turns, clock out."""

    def __init__(self, settings: TimingSettings, typical_density: float, clock: ClockFollower | None, origin: float):
        self.settings = settings
        self.clock = clock if settings.sync == "midi-clock" else FixedTempo(settings.bpm or 120.0, origin)
        step = QUANTIZE_CHOICES[settings.quantize]
        grid = Grid(float(step), settings.swing) if step is not None else None
        self.placer = BeatPlacer(self.clock, grid, typical_density / 4.0, settings.latency_seconds)
        self.turns = Turns(settings.turns_bars, settings.beats_per_bar) if settings.turns_bars else None
        self._next_pulse = 0
        self.started_clock_out = False

    def clock_messages(self, until: float) -> list[tuple[float, list[int]]]:
        """(send time, bytes) of the clock-out messages due before `until`: Start, then 24 pulses a beat."""
        if not self.settings.clock_out:
            return []
        messages = []
        if not self.started_clock_out:
            self.started_clock_out = True
            messages.append((self.clock.time_of_beat(0.0) - 0.001 - self.settings.latency_seconds, [0xFA]))
        while (when := self.clock.time_of_beat(self._next_pulse / PULSES_PER_BEAT) - self.settings.latency_seconds) < until:
            messages.append((when, [0xF8]))
            self._next_pulse += 1
        return messages
