"""Musical time from a DAW: a MIDI clock to follow.

Times are monotonic seconds, positions are beats (quarter notes) from the song's start.
`ClockFollower` is fed the clock messages of the control input with their arrival times and
answers "when is beat x?" from a straight line fitted through the last beat of pulses, so
jitter in single pulses averages out while a tempo change is followed within one beat.
streamer/tempo.py answers the same questions for cadenza's own tempo (FixedTempo) and snaps
beats to a grid (Grid).
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from streamer.lost_pulses import LATE_PULSE, STEADY_NOISE, falling_steadily, lost_before, lost_by_pulse, step_pending
from streamer.tempo_change import ChangeReading, read_through_change

PULSES_PER_BEAT = 24
PULSES_PER_SIXTEENTH = 6
# A clock silent this many beats (at its last tempo) while playing is gone: a pulled cable, a
# crashed DAW. cadenza stops as on Stop and plays on when pulses return.
CLOCK_LOST_BEATS = 2.0
RETURN_PULSES = PULSES_PER_SIXTEENTH  # pulses a returning clock must send before notes follow it
HELD_PULSES = 12  # ...this many (half a beat): enough to tell a level step (a lost pulse) from a drift (a slower tempo)
# Pulses counted lost at Start at most (a longer silence before it is a paused clock, not losses).
MISSING_AT_START_LIMIT = 4
STALL_PULSES = 4 * PULSES_PER_BEAT  # held at most this many while a stalled machine's backlog drains
# The tempi a line may say (BPM). A line through pulses delivered together (one JACK cycle, one
# stamp) says a pulse lasts microseconds; a DAW's clock runs at 20-999 BPM.
SLOWEST_BPM, FASTEST_BPM = 10.0, 1000.0
CHANGE_READ_PULSES = 12  # the recent pulses a tempo change is read from (where it began, pulses lost)
ON_LINE_FLOOR = 0.15  # intervals off the line a held pulse may be and still join it (see _hold)
QUANTIZATION_SECONDS = 0.0004  # the least spread about the line: JACK stamps to periods (1.45 ms, sd 0.42 ms)
# A stall's backlog comes with one stamp: each pulse an interval less late than the one before.
# Jitter alone moves two neighbours by at most 0.8 of an interval (+-5 ms at 200 BPM).
DRAIN_STEP = 0.85
# Held pulses this many intervals later than the one before: pulses lost between them (a tempo
# slowing to half adds one interval a pulse; see _hold).
LOSS_LEAP = 1.5
# A young line's gap this many of its intervals wide is pulses lost (see _count_gap_in_a_young_line):
# +-5 ms of jitter at 200 BPM parts two pulses by 1.8 intervals at most.
YOUNG_GAP_INTERVALS = 2.5
# A young line this long whose pulses stray less than STEADY_NOISE judges late pulses as a measured
# line does (see _fewest_to_judge_by): eight pulses +-1 ms apart give the slope within 0.2 %.
YOUNG_JUDGE_PULSES = 8
# Pulses stamped this close together came in one JACK cycle (a backlog, or a clock starting in a
# burst): counted, but only the last of them is a point of the line. A line that took a backlog
# across Start in whole said a pulse lasts 3 ms (a fuzzed clock: notes 9 pulses off).
BUNCHED_SECONDS = 0.0005
# A line this long leaves out its late stamps (see _refit), young or not. A beat after a tempo
# change the young line of 15 pulses held one the DAW sent 2.9 ms late: it said 89.65 BPM for 90,
# and a note timed by it came 1.95 ms early.
LATE_STAMP_PULSES = 12


def _plausible(seconds_per_pulse: float) -> bool:
    return 60.0 / (FASTEST_BPM * PULSES_PER_BEAT) <= seconds_per_pulse <= 60.0 / (SLOWEST_BPM * PULSES_PER_BEAT)


class ClockFollower:
    """Follows MIDI clock: tempo from pulse arrival times, transport from Start/Stop/Continue/SPP.

    Every pulse ever received has a counter value; while running, song position (in pulses) =
    counter - origin. Start makes the next pulse position 0 (the downbeat), Continue makes it the
    position where play stopped or the last Song Position Pointer (sixteenths) sent while stopped.
    Pulses that arrive while stopped keep the tempo fresh but do not move the song position.
    """

    def __init__(self, fit_pulses: int = 4 * PULSES_PER_BEAT, change_pulses: int = 6, change_seconds: float = 0.0025):
        self._lock = threading.Lock()
        # Four beats of pulses in the line: against +-5 ms of jitter (USB, network MIDI) a line
        # through two beats threw notes placed 200 ms ahead off by up to 3 ms; a tempo change is
        # still followed within a beat, because the line forgets the old pulses when it sees one.
        self._pulses: collections.deque = collections.deque(maxlen=fit_pulses)  # (counter, arrival)
        # A tempo change: the last `change_pulses` pulses all off the line, by `change_seconds` on
        # average (more where the clock jitters more: see _change_limit).
        self._change_pulses, self._change_seconds = change_pulses, change_seconds
        self._counter = 0  # the counter value the next pulse gets
        self._fit = None  # (seconds per pulse, arrival time of counter 0)
        self._jitter = 0.0  # the spread of pulses about the line (seconds, a robust standard deviation)
        self._jitter_known = False  # ...measured over a beat
        self._line_spread = float("inf")  # the spread about the line as it stands, however young (seconds)
        self._origin = None  # counter value at song position 0, while running
        self._resume_position = 0  # song position (pulses) play resumes from
        self._played_from = 0  # song position (pulses) of the last Start, Continue or jump
        self.running = False
        self.transport_version = 0  # bumped by Start, Stop, Continue: the engine re-syncs
        # Set with each bump: the engine waiting for Start wakes at once (a DAW sends Start right
        # before the downbeat, so every millisecond spent noticing it is a millisecond late).
        self.transport_changed = threading.Event()
        self._change_base = None  # (the old line, its last pulses) through the beat after a tempo change
        self._held: list = []  # arrivals kept out of the line while a late pulse is told (see _hold)
        self._last_arrival = None
        self._change_suspected = False  # the last pulse saw the line broken (see pulse)
        self.lost_pulses = 0
        self._young_gap_lost = 0  # pulses the last gap in a young line was counted to have lost
        self._backlog_across_transport = False  # Start or Continue came inside that gap's backlog
        self._vanished = None  # (last arrival, seconds per pulse) while the clock is gone (see watch)
        self._returning: list = []  # arrivals of the pulses since it came back, until RETURN_PULSES
        self._slope_kept = None  # the tempo before the clock vanished, until a beat of new pulses
        # (arrival, counter) of the last Start, Continue or jump while the counter still stands
        # where it set the song position: pulses told lost there may have come before it.
        self._transport_mark = None

    def pulse(self, arrival: float) -> None:
        with self._lock:
            if self._vanished is not None:
                if self._returning and arrival - self._returning[-1] < BUNCHED_SECONDS:
                    # A stall's backlog, one stamp for all: _came_back counts what was sent by the time
                    # since the last pulse heard (counted one by one too, a 2.5 s backlog moved every note 2.5 s).
                    self._returning[-1] = arrival
                else:
                    self._returning.append(arrival)
                if len(self._returning) >= RETURN_PULSES:
                    self._came_back()
                self._last_arrival = arrival
                return
            if self._last_arrival is not None and arrival - self._last_arrival > 0.5 and not self.running:
                # A stopped clock paused: a line through old pulses would mislead. While playing, a
                # gap is a stalled machine's (its pulses follow at once) and is held and told as one.
                self._pulses.clear()
                self._held, self._change_suspected = [], False
            self._last_arrival = arrival
            if self._held or self._late_by(arrival, self._counter) > LATE_PULSE:
                self._hold(arrival)
                return
            self._count_gap_in_a_young_line(arrival)
            self._add_to_line([arrival])

    def _late_by(self, arrival: float, counter: int) -> float:
        """How late `arrival` is for pulse `counter` by the line, in pulse intervals (0 before the
        line holds enough pulses, see _fewest_to_judge_by: a slope through fewer jittered pulses
        misjudges the next ones; but a clock back after it vanished keeps its old tempo until
        then, and pulses lost meanwhile, as a stall right after the return loses them, must still
        be counted)."""
        if self._fit is None or (len(self._pulses) < self._fewest_to_judge_by() and self._slope_kept is None):
            return 0.0
        seconds_per_pulse, zero = self._fit
        return (arrival - (zero + seconds_per_pulse * counter)) / seconds_per_pulse

    def _count_gap_in_a_young_line(self, arrival: float) -> None:
        """Pulses lost in a line too young to judge late pulses by (see _late_by): a gap of
        YOUNG_GAP_INTERVALS or more of its fit's intervals (no jitter a DAW's clock has makes one)
        is whole intervals of lost pulses, counted; a gap between whole intervals is a new tempo,
        and the line starts again from this pulse. (Measured by the median interval instead,
        JACK's 1.45 ms stamps put a 17-interval gap at 17.4.) Taken into the line as the next
        pulse, 11 lost in the clock's first beat made a line of 27-40 ms a pulse (20.8 sent) that
        lasted four beats, and every lost pulse after Start was misread (a fuzzed clock)."""
        if self._young_gap_lost and self._bunched_with_line(arrival):
            # A backlog after the gap (stamped with its last pulse's time): each of its pulses is
            # one the gap had counted lost.
            self._young_gap_lost -= 1
            self._counter -= 1
            self.lost_pulses -= 1
            return
        if self._backlog_across_transport:
            # Start came inside the backlog, and the song position was set as if all the gap's pulses
            # followed it: those that did not were lost before the gap, so before Start.
            self._origin += self._young_gap_lost
            self._backlog_across_transport = False
        self._young_gap_lost = 0
        if self._slope_kept is not None or len(self._pulses) < 5 or len(self._pulses) >= self._fewest_to_judge_by():
            return
        seconds_per_pulse, zero = self._fit
        late = (arrival - (zero + seconds_per_pulse * self._counter)) / seconds_per_pulse
        if late < YOUNG_GAP_INTERVALS - 1:
            return
        if abs(late - round(late)) < 0.25:
            self._young_gap_lost = round(late)
            self._counter += self._young_gap_lost
            self.lost_pulses += self._young_gap_lost
        else:
            self._pulses.clear()

    def _bunched_with_line(self, arrival: float) -> bool:
        """`arrival` came in the JACK cycle of the line's last pulse (see BUNCHED_SECONDS)."""
        return bool(self._pulses) and arrival - self._pulses[-1][1] < BUNCHED_SECONDS

    def _fewest_to_judge_by(self) -> int:
        """Pulses the line needs before a late pulse is judged by it. Three, restarted at a tempo
        change on a steady clock: a pulse lost in the beat after a change went uncounted. Until a
        beat has shown the clock steady, a beat: a slope through a few pulses +-5 ms apart misjudges
        the next ones (lost pulses counted that never were). Unless the young line itself, over
        YOUNG_JUDGE_PULSES, strays no more than a steady clock does: then from there. A pulse lost
        in a clock's first beat was otherwise never counted (one interval is below the young line's
        gap rule), and the line through it, restarted as a tempo change, said 115-119 BPM at Start
        for 120 (sync tests; tests/data/clock_pulse*_lost_*)."""
        steady = self._jitter_known and self._noise() < STEADY_NOISE
        if steady:
            return 3
        young_and_steady = (not self._jitter_known and self._fit is not None
                            and len(self._pulses) >= YOUNG_JUDGE_PULSES
                            and self._line_spread / self._fit[0] < STEADY_NOISE)
        return YOUNG_JUDGE_PULSES if young_and_steady else PULSES_PER_BEAT

    def _hold(self, arrival: float) -> None:
        """A pulse half an interval late or more is a lost pulse before it, a late stamp (a loaded
        machine), or a slower tempo. Which one the next pulses tell, so they stay out of the line
        until HELD_PULSES have come: all about one interval late and level, the one before was
        lost; back on the line, it was a late stamp; drifting on, the tempo changed. Reading it
        from single intervals instead took +-5 ms of jitter at 200 BPM for 85 lost pulses in 64 beats.

        A stalled machine delivers the pulses of the stall at once, with one stamp (JACK stamps a
        late cycle's events alike): they come later by less and less, an interval each. While
        they drain that way they stay held, however many; then they are back on the line.
        """
        self._held.append(arrival)
        late = np.array([self._late_by(a, self._counter + index) for index, a in enumerate(self._held)])
        drained = np.nonzero(np.diff(late) < -DRAIN_STEP)[0]
        tail = late[drained[-1] + 1:] if len(drained) else late  # the pulses since a stall drained
        rising = len(tail) >= 3 and np.all(np.diff(tail[-3:]) > 0)
        # Told early where it is plain: rising later than lost pulses explain is a slower tempo
        # (to be followed now, not half a beat on); the last two back on the line, late stamps.
        spread = 6.0 * self._jitter / self._fit[0]  # how far apart two held pulses of one level can lie
        # (Later than lost pulses explain: past the level the first held pulse stands at; several
        # pulses lost together, as a stall loses them, put it at two or more intervals.)
        level = max(round(float(tail[0])), 1)
        # A leap of more than LOSS_LEAP intervals from one held pulse to the next is pulses lost,
        # never a tempo drifting (a late stamp then 18 lost was read as one: none counted).
        drifted = rising and not step_pending(tail) and not np.any(np.diff(tail) > LOSS_LEAP) and (
            tail[-1] - tail[0] > max(LATE_PULSE, spread)
            or (len(drained) == 0 and tail[-1] > level + max(LATE_PULSE, spread / 2) + 0.1 * len(tail) ** 0.5))
        # Back on the line, unless falling steadily to it: a faster tempo after a lost pulse.
        back = len(late) >= 3 and np.all(np.abs(late[-2:]) < LATE_PULSE) and not (
            len(self._pulses) >= PULSES_PER_BEAT and falling_steadily(late))
        if len(tail) < HELD_PULSES and len(late) < STALL_PULSES and not drifted and not back:
            return
        held, self._held = self._held, []
        steady_noise = self._noise() if self._jitter_known else None
        lost, unconfirmed = lost_by_pulse(len(held), tail, back, drifted, steady_noise, self._jitter / self._fit[0])
        if lost is not None:
            if unconfirmed:  # told with the pulses after them, from the line as counted now
                held, self._held, lost, late = held[:-unconfirmed], held[-unconfirmed:], lost[:-unconfirmed], late[:-unconfirmed]
            # Counted all, `lost` more before each for pulses that never came; on the line only
            # those on it within its jitter (late stamps and a stall's backlog stay out: one
            # stamped half an interval late, let in, read as a tempo change and then as a lost pulse).
            first = self._counter
            self._put_lost_before_transport(first, lost[0])
            self._counter += lost[-1] + len(held)
            self.lost_pulses += lost[-1]
            # On a clock jittering wider (+-5 ms at 200 BPM), half an interval late is within its
            # jitter: with such pulses kept out, the line lost the late side of its spread and ran 1.3 % fast.
            on_line_within = max(min(LATE_PULSE, max(4.0 * self._noise(), ON_LINE_FLOOR)), 3.0 * self._noise())
            on_line = [(first + lost[index] + index, arrival) for index, arrival in enumerate(held)
                       if abs(late[index] - lost[index]) < on_line_within]
            self._add_counted(on_line)
        else:  # a new tempo from the last pulse before it (on both tempos) through those after
            self._counter += len(held) - len(tail)
            counted = [(self._counter + index, arrival) for index, arrival in enumerate(held[len(held) - len(tail):])]
            self._counter += len(tail)
            self._change_suspected = False
            pulses = list(self._pulses)
            recent_count = min(len(pulses) - PULSES_PER_BEAT, CHANGE_READ_PULSES // 2)
            if recent_count < 1:  # no line yet to tell lost pulses by
                before, after = pulses, counted
            else:
                before, after = self._split_at_change(pulses[:-recent_count], pulses[-recent_count:] + counted)
            self._pulses.clear()
            self._pulses.append(before[-1])
            self._add_counted(after)

    def _put_lost_before_transport(self, first: int, lost: int) -> None:
        """Of `lost` pulses told lost just before counter `first`, those that belonged before the last
        Start, Continue or jump (which was told as if they had not been sent) go before the song
        position it set: by the line, due a quarter interval or more before it arrived (a DAW sends
        Start up to just before its pulse). A pulse lost in the half beat before Start is told only
        after it (HELD_PULSES); counted after the downbeat, it moved every note one pulse early for
        good (a clean-clone run, issue 20)."""
        if self._transport_mark is None or self._transport_mark[1] != first:
            return
        arrival = self._transport_mark[0]
        self._transport_mark = None
        seconds_per_pulse, zero = self._fit
        due = zero + seconds_per_pulse * np.arange(first, first + lost)
        self._origin += int(np.sum(due < arrival - 0.25 * seconds_per_pulse))

    def _split_at_change(self, line: list, recent: list) -> tuple[list, list]:
        """(counter, arrival) pairs through a tempo change: those on the old line, `line` and the
        first of `recent`, and those after the change, counted anew where pulses were lost."""
        counters, arrivals = np.array(line, dtype=np.float64).T
        old_line = tuple(np.polyfit(counters, arrivals, 1))  # (seconds per pulse, arrival of counter 0)
        reading = self._read_against(old_line, recent)
        recent = recent[:reading.first_after] + [(counter + reading.lost, arrival) for counter, arrival in recent[reading.first_after:]]
        after = [pulse for index, pulse in enumerate(recent) if index >= reading.first_new and index not in reading.stamped_late]
        before = line + recent[:reading.first_new]
        # Read again through the beat after, unless a loss was found already (two in one change
        # are rarer than a reading that sees the one it counted again).
        self._change_base = None if reading.lost else (old_line, before[-CHANGE_READ_PULSES // 2:])
        return before, after

    def _read_against(self, old_line: tuple, pulses: list) -> ChangeReading:
        """read_through_change of (counter, arrival) pairs against `old_line` (seconds per pulse,
        arrival of counter 0); the pulses it finds lost are counted."""
        seconds_per_pulse, zero = old_line
        counters, arrivals = np.array(pulses, dtype=np.float64).T
        late = (arrivals - (zero + seconds_per_pulse * counters)) / seconds_per_pulse
        reading = read_through_change(counters.astype(int), late, self._noise())
        self._counter += reading.lost
        self.lost_pulses += reading.lost
        return reading

    def _reread_change(self) -> None:
        """Through the beat after a tempo change, read it again with each pulse: a pulse lost
        just after the change, before the new line could tell it, shows as a step once a few
        more have come (with only a few of the new tempo, a change and a loss read alike)."""
        if self._change_base is None:
            return
        old_line, before = self._change_base
        line = list(self._pulses)
        if len(line) >= PULSES_PER_BEAT or line[0] != before[-1]:  # settled, or restarted since
            self._change_base = None
            return
        reading = self._read_against(old_line, before + line[1:])
        if reading.lost:
            self._change_base = None  # counted: read no more (a step read in `before` would be read again)
            first = max(reading.first_after - len(before) + 1, 1)
            line[first:] = [(counter + reading.lost, arrival) for counter, arrival in line[first:]]
            self._pulses.clear()
            self._pulses.extend(line)

    def _noise(self) -> float:
        """The spread of pulses about the line in its intervals (at least JACK's quantization's)."""
        return max(self._jitter, QUANTIZATION_SECONDS) / self._fit[0]

    def _add_counted(self, pulses: list) -> None:
        """(counter, arrival) pairs into the line, in order."""
        shift = 0  # pulses found lost as the line restarted: those after them count on from there
        for counter, arrival in pulses:
            if self._bunched_with_line(arrival):
                self._pulses.pop()  # one stamp for several: only the last was sent near it
            self._pulses.append((counter + shift, arrival))
            suspected, self._change_suspected = self._change_suspected, self._tempo_changed()
            if suspected and self._change_suspected:
                shift += self._restart_line()
        self._reread_change()
        self._refit()

    def _add_to_line(self, arrivals: list) -> None:
        """Arrivals counted one after another from the next counter value, into the line. One pulse
        run off the line can be a loaded machine (JACK stamps a late cycle's pulses late): a change
        must be seen on two pulses running before the line lets go (_add_counted)."""
        first = self._counter
        self._counter += len(arrivals)
        self._add_counted([(first + index, arrival) for index, arrival in enumerate(arrivals)])

    def _restart_line(self) -> int:
        """The tempo changed: the pulses since it changed, and the last one before (on both
        tempos), start a new line. (Keeping a fixed four mixed in old-tempo pulses after a fast
        change, and the line then took a beat and a half to find 120 after 60.) Where the change
        began, and any pulse lost since, is read from the recent pulses against the line through
        the earlier ones; returns how many pulses were lost."""
        self._change_suspected = False
        pulses, counted_before = list(self._pulses), self.lost_pulses
        recent_count = min(len(pulses) - PULSES_PER_BEAT, CHANGE_READ_PULSES)
        if recent_count < 2:  # a young line: the pulses off it, from the end back
            first_off = self._first_off_the_line(pulses)
            before, after = pulses[:first_off], pulses[first_off:]
        else:
            before, after = self._split_at_change(pulses[:-recent_count], pulses[-recent_count:])
        kept = before[-1:] + after
        self._pulses.clear()
        self._pulses.extend(kept if len(kept) >= 3 else (before + after)[-3:])
        return self.lost_pulses - counted_before

    def _first_off_the_line(self, pulses: list) -> int:
        seconds_per_pulse, zero = self._fit
        limit = self._change_limit()
        first_off = len(pulses)
        while first_off > 1 and abs(pulses[first_off - 1][1] - (zero + seconds_per_pulse * pulses[first_off - 1][0])) > limit:
            first_off -= 1
        return first_off

    def _refit(self) -> None:
        counters, arrivals = np.array(self._pulses, dtype=np.float64).T
        if self._slope_kept is not None and len(self._pulses) < PULSES_PER_BEAT:
            # Back after a lost clock: the tempo it had, the line through the new pulses.
            slope = self._slope_kept
            intercept = float(np.median(arrivals - slope * (counters - counters[-1])))
            self._fit = (slope, intercept - slope * counters[-1])
        elif len(self._pulses) >= 3:
            self._slope_kept = None
            x = counters - counters[-1]
            slope, intercept = np.polyfit(x, arrivals, 1)
            residuals = arrivals - (intercept + slope * x)
            spread = 1.4826 * float(np.median(np.abs(residuals)))
            self._line_spread = max(spread, QUANTIZATION_SECONDS)
            # Stamps come late on a loaded machine, never early: those far later than the spread
            # explains leave the line, so a burst of them cannot drag it (and the notes) late.
            on_time = residuals < 3.0 * spread + 0.0002
            if len(self._pulses) >= LATE_STAMP_PULSES and 3 <= on_time.sum() < len(x):
                slope, intercept = np.polyfit(x[on_time], arrivals[on_time], 1)
            if not _plausible(slope):
                return  # the line it had stands (none yet: none), until the pulses say a real tempo
            self._fit = (float(slope), float(intercept - slope * counters[-1]))
            if len(self._pulses) >= PULSES_PER_BEAT:
                self._jitter, self._jitter_known = spread, True

    def watch(self, now: float) -> bool:
        """Call often while playing: True once the clock has been silent CLOCK_LOST_BEATS beats
        without a Stop, and then it is stopped as by Stop (the engine releases every note)."""
        with self._lock:
            if not self.running or not self._pulses or self._fit is None:
                return False
            last_arrival, (seconds_per_pulse, zero) = self._last_arrival, self._fit
            if now - last_arrival <= CLOCK_LOST_BEATS * PULSES_PER_BEAT * seconds_per_pulse:
                return False
            self._count_held()
            self._resume_position = max(self._counter - self._origin, 0)
            self.running = False
            self._bump_transport()
            # When the last pulse heard belonged, by the line (its own stamp may have come late).
            self._vanished = (zero + seconds_per_pulse * (self._counter - 1), seconds_per_pulse)
            return True

    def _count_held(self) -> None:
        """Pulses held to be told (see _hold) when the transport changes: counted now, as they came.
        They came before it, so the song position it sets must not count them after it (held
        through a Start, four pulses put every note 83 ms early). Pulses lost among them are
        told with the pulses after it, and put before it by _put_lost_before_transport."""
        self._counter += len(self._held)
        self._held = []

    def _came_back(self) -> None:
        """RETURN_PULSES pulses again after the clock vanished: the DAW played on (a cable put back),
        so play on as by Continue from where its song is now. The pulses it sent unheard are
        counted from the time since the last one heard, through the earliest phase of the returning
        pulses (one of them stamped late, as a loaded machine does, must not shift the song)."""
        last_arrival, seconds_per_pulse = self._vanished
        arrivals = np.array(self._returning)
        # The earliest phase: a stamp can come late (a loaded machine, a burst after a stall),
        # never early, so the earliest of them is nearest the truth (within the jitter).
        phase = float(np.min(arrivals - seconds_per_pulse * np.arange(len(arrivals))))
        self._counter += max(round((phase - last_arrival) / seconds_per_pulse) - 1, 0)
        self._pulses.clear()
        self._pulses.extend((self._counter + index, arrival) for index, arrival in enumerate(arrivals))
        # The tempo it had, through the new pulses: a slope through a few jittered pulses would
        # throw notes placed 200 ms ahead off by milliseconds.
        self._slope_kept = seconds_per_pulse
        self._fit = (seconds_per_pulse, phase - seconds_per_pulse * self._counter)
        self._counter += len(arrivals)
        self._held, self._change_suspected = [], False
        self._vanished, self._returning = None, []
        self._played_from = self._counter - self._origin  # the next pulse: nothing is placed in the past
        self.running = True
        self._bump_transport()

    def _tempo_changed(self) -> bool:
        if self._fit is None or len(self._pulses) < 2 * self._change_pulses:
            return False
        seconds_per_pulse, zero = self._fit
        recent = list(self._pulses)[-self._change_pulses:]
        residuals = [arrival - (zero + seconds_per_pulse * counter) for counter, arrival in recent]
        return abs(float(np.mean(residuals))) > self._change_limit()

    def _change_limit(self) -> float:
        """Seconds the mean of the last pulses must be off the line to be a tempo change: at least
        change_seconds, and four standard errors of that mean, so a jittery clock (+-5 ms is
        common over USB or a network) does not throw the line away every few beats."""
        return max(self._change_seconds, 4.0 * self._jitter / np.sqrt(self._change_pulses))

    def _bump_transport(self) -> None:
        self.transport_version += 1
        self.transport_changed.set()

    def start(self, arrival: float | None = None) -> None:
        """Start, arrived at `arrival` (monotonic seconds; None: when it is not known)."""
        self._run_from(0, arrival)

    def resume(self, arrival: float | None = None) -> None:
        """Continue: play on from where it stopped, or from the last Song Position Pointer."""
        self._run_from(self._resume_position, arrival)

    def _run_from(self, position: int, arrival: float | None) -> None:
        with self._lock:
            in_backlog = self._in_backlog(arrival)
            if not in_backlog:
                self._count_lost_before_held()
            self._count_held()
            if not in_backlog:
                self._count_missing_before(arrival)
            # Inside a young line's backlog, the rest of the backlog comes after Start.
            backlog_after = self._young_gap_lost if in_backlog else 0
            self._backlog_across_transport = backlog_after > 0
            self._origin = self._counter - backlog_after - position  # the next pulse is `position`
            self._mark_transport(arrival)
            self._played_from = position
            self._vanished, self._returning = None, []  # Start or Continue after a lost clock: the DAW says where
            self.running = True
            self._bump_transport()

    def _count_lost_before_held(self) -> None:
        """Pulses held when Start or Continue comes that stand level, whole intervals late, tell
        pulses lost before them, so before it: counted now. Left to be told after it, by how long
        before Start's own stamp they were due, one of three lost was counted after the downbeat on
        a clock jittering +-5 ms (Start itself jitters), and every note came a pulse early."""
        if len(self._held) < 3:
            return
        late = np.array([self._late_by(arrival, self._counter + index) for index, arrival in enumerate(self._held)])
        lost = lost_before(late, self._jitter / self._fit[0])
        if lost is not None and lost >= 1:
            self._counter += lost
            self.lost_pulses += lost

    def _in_backlog(self, arrival: float | None) -> bool:
        """Start or Continue came in a stall's backlog: with the late pulses held before it, and a
        stamp of theirs (JACK stamps a late cycle's events alike). Its stamp then says nothing of
        when it was sent, and the pulses due before that stamp come right after it: counted lost
        by it, a 5-pulse backlog across Start put every note a pulse early (a fuzzed clock)."""
        if arrival is None:
            return False
        if self._held:
            return arrival - self._held[-1] < BUNCHED_SECONDS
        return bool(self._young_gap_lost) and self._bunched_with_line(arrival)

    def _count_missing_before(self, arrival: float | None) -> None:
        """Pulses the line says were due before Start or Continue came (at `arrival`) and never came
        were lost on the way: counted now, before the song position is set. (Pulses arrive in the
        order sent, so none of them can still come.) Told only HELD_PULSES on, as other losses
        are, each put the first notes, placed the moment Start comes, a pulse early (the bench: 20.4-
        20.9 ms at 120 BPM, on a server losing pulses). Due means by more than the clock's jitter
        explains, and a quarter interval at least: a DAW sends Start up to just before its pulse.
        A clock that paused longer than MISSING_AT_START_LIMIT pulses is left to restart its line."""
        if arrival is None or self._fit is None or self._vanished is not None:
            return
        if len(self._pulses) < self._fewest_to_judge_by():
            return
        seconds_per_pulse, zero = self._fit
        margin = seconds_per_pulse * min(max(0.25, 3.0 * self._jitter / seconds_per_pulse), 0.75)
        due = zero + seconds_per_pulse * (self._counter + np.arange(MISSING_AT_START_LIMIT + 1))
        missing = int(np.sum(due < arrival - margin))
        if 0 < missing <= MISSING_AT_START_LIMIT:
            self._counter += missing
            self.lost_pulses += missing

    def stop(self) -> None:
        with self._lock:
            self._count_held()
            if self.running:
                self._resume_position = max(self._counter - self._origin, 0)
            self.running = False
            self._transport_mark = None
            self._vanished, self._returning = None, []  # stopped for real: pulses wait for Start or Continue
            self._bump_transport()

    def _mark_transport(self, arrival: float | None) -> None:
        self._transport_mark = None if arrival is None else (arrival, self._counter)

    def song_position(self, sixteenths: int, arrival: float | None = None) -> None:
        with self._lock:
            position = sixteenths * PULSES_PER_SIXTEENTH
            self._count_held()
            if self.running:  # a jump while playing: the next pulse is there
                self._origin = self._counter - position
                self._mark_transport(arrival)
                self._played_from = position
                self._bump_transport()
            else:
                self._resume_position = position

    @property
    def seconds_per_beat(self) -> float | None:
        fit = self._fit
        return fit[0] * PULSES_PER_BEAT if fit else None

    @property
    def bpm(self) -> float | None:
        spb = self.seconds_per_beat
        return 60.0 / spb if spb else None

    def start_beat(self) -> float:
        """The song position (beats) play started from at the last Start, Continue or jump; while
        stopped, where it will resume. Not the position of the next pulse: a DAW sends Start just
        before its first pulse, and the engine may only look after that pulse has come."""
        with self._lock:
            if not self.running:
                return self._resume_position / PULSES_PER_BEAT
            return self._played_from / PULSES_PER_BEAT

    def time_of_beat(self, beat: float) -> float | None:
        """When song position `beat` sounds (monotonic seconds); None before a tempo is known or
        before Start."""
        with self._lock:
            if self._fit is None or self._origin is None:
                return None
            seconds_per_pulse, zero = self._fit
            return zero + seconds_per_pulse * (self._origin + beat * PULSES_PER_BEAT)

    def beat_at(self, time: float) -> float | None:
        """The song position (beats) at monotonic `time`."""
        with self._lock:
            if self._fit is None or self._origin is None:
                return None
            seconds_per_pulse, zero = self._fit
            return ((time - zero) / seconds_per_pulse - self._origin) / PULSES_PER_BEAT
