"""The clock follower and the grid on their own, from seeded pulse times: tempo, transport, jitter,
stalls and lost pulses. No JACK, nothing timed: these cannot flake (tests/test_sync.py plays the
same through a real server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.daw import PULSES_PER_BEAT
from streamer.clock import ClockFollower
from streamer.tempo import FixedTempo, Grid
from streamer.timeline import BeatPlacer


def test_tempo_estimate_is_within_half_a_bpm_after_one_beat_and_follows_a_change():
    rng = np.random.default_rng(1)
    # Arrival times as JACK gives them: +-1 ms of sender jitter, then up to one 64-frame period late.
    def arrival(ideal):
        return ideal + rng.uniform(-0.001, 0.001) + rng.uniform(0, 64 / 44100)

    for trial in range(50):
        clock, t = ClockFollower(), 10.0
        for _ in range(PULSES_PER_BEAT + 1):
            clock.pulse(arrival(t))
            t += 0.5 / PULSES_PER_BEAT
        assert abs(clock.bpm - 120) < 0.5, clock.bpm
        for _ in range(3 * PULSES_PER_BEAT):
            clock.pulse(arrival(t))
            t += 0.5 / PULSES_PER_BEAT
        for _ in range(PULSES_PER_BEAT):  # one beat at the new tempo
            clock.pulse(arrival(t))
            t += (60 / 90) / PULSES_PER_BEAT
        assert abs(clock.bpm - 90) < 0.5, clock.bpm


def test_song_position_start_stop_continue():
    clock = ClockFollower()
    for k in range(30):
        clock.pulse(k * 0.02)
    assert clock.time_of_beat(0) is None  # before Start there is no song position
    clock.start()
    assert clock.time_of_beat(0) == pytest.approx(30 * 0.02)  # the next pulse is the downbeat
    for k in range(30, 30 + 48):
        clock.pulse(k * 0.02)
    clock.stop()
    assert clock.start_beat() == pytest.approx(2.0)  # stopped after two beats
    clock.song_position(10)  # sixteenths
    clock.pulse(78 * 0.02)
    clock.resume()
    assert clock.start_beat() == pytest.approx(2.5)
    assert clock.time_of_beat(2.5) == pytest.approx(79 * 0.02)


def test_start_stop_and_continue_wake_an_engine_waiting_for_them():
    """The engine waits on transport_changed before Start (a DAW sends Start right before the
    downbeat): each transport change sets it; pulses alone do not."""
    import threading

    clock = ClockFollower()
    for k in range(30):
        clock.pulse(k * 0.02)
    assert not clock.transport_changed.is_set()
    for change in (clock.start, clock.stop, clock.resume):
        clock.transport_changed.clear()
        woken = []
        waiter = threading.Thread(target=lambda: woken.append(clock.transport_changed.wait(10)))
        waiter.start()
        change()
        waiter.join()
        assert woken == [True], change.__name__
    clock.transport_changed.clear()
    clock.pulse(30 * 0.02)
    assert not clock.transport_changed.is_set()


def test_grid_swing_and_chords():
    grid = Grid(0.25, swing=0.5)
    assert [grid.point(i) for i in range(4)] == [0.0, 0.375, 0.5, 0.875]
    assert grid.snap(0.3) == 0.375 and grid.snap(0.3, not_before=0.4) == 0.5
    placer = BeatPlacer(FixedTempo(120, origin=100.0), Grid(0.25), beats_per_model_second=2.0)
    placed = [placer.place(step, 0.1)[0] for step in (0.0, 0.01, 0.13, 0.01, 0.02, 0.3)]
    assert placed == [0.0, 0.0, 0.25, 0.25, 0.25, 1.0]  # near-simultaneous notes stay one chord


def test_a_chord_is_sent_at_one_moment_while_the_clocks_line_moves_between_its_notes():
    """A chord's notes are sent one by one; a pulse that comes between them moves the follower's
    line (by microseconds here), and a clean-clone run saw the first chord's notes scheduled that far
    apart. They share the onset its first note was sent with; their ends, and the next chord, follow
    the line as it is."""
    clock, t, jitter = ClockFollower(), 0.0, np.random.default_rng(0)
    for _ in range(48):
        clock.pulse(t + jitter.uniform(-0.001, 0.001))
        t += 0.02
    clock.start()
    placer = BeatPlacer(clock, Grid(0.25), beats_per_model_second=2.0)
    first_onset = placer.sent_onset(0.0, placer.times(0.0, 1.0)[0])
    clock.pulse(t - 0.0009)  # an early pulse (a late one may be kept off the line): the line moves
    line_onset, chord_end = placer.times(0.0, 1.0)
    assert line_onset != pytest.approx(first_onset, abs=1e-9)
    assert placer.sent_onset(0.0, line_onset) == first_onset
    assert chord_end == pytest.approx(clock.time_of_beat(1.0), abs=1e-9)
    next_onset = placer.sent_onset(0.25, placer.times(0.25, 1.0)[0])
    assert next_onset == pytest.approx(clock.time_of_beat(0.25), abs=1e-9)
    placer.restart(0.0)  # a new start: nothing is shared across it
    assert placer.sent_onset(0.0, line_onset) == line_onset


def test_start_just_before_a_pulse_starts_on_that_pulse_even_read_after_it():
    """A DAW sends Start right before its first pulse; the engine may look only after that pulse
    has come. Play still starts at the downbeat, that pulse (it was one pulse late, issue 20)."""
    clock, t = ClockFollower(), 0.0
    for _ in range(48):
        clock.pulse(t)
        t += 0.02
    clock.start()
    clock.pulse(t)  # the downbeat
    clock.pulse(t + 0.02)
    assert clock.start_beat() == 0.0
    assert clock.time_of_beat(clock.start_beat()) == pytest.approx(t, abs=1e-6)
    clock.stop()
    assert clock.start_beat() == pytest.approx(2 / PULSES_PER_BEAT)  # Continue resumes after the two pulses


@pytest.mark.parametrize("transport", ["start", "continue"])
@pytest.mark.parametrize("held", [2, 4, 6])
def test_pulses_held_as_late_when_start_comes_do_not_move_the_downbeat(held, transport):
    """The last CI run: a loaded server stamped the pulses before Start late; the follower held
    them to tell why, Start set the downbeat, and then they were counted after it: every note
    came 4 pulses (83 ms) early."""
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    ideal = 10.0 + seconds_per_pulse * np.arange(10 * PULSES_PER_BEAT)
    stamps = ideal.copy()
    first = 2 * PULSES_PER_BEAT  # the downbeat's pulse
    stamps[first - held:first] = ideal[first - 1] + 0.7 * seconds_per_pulse  # delivered late, together
    clock = ClockFollower()
    for stamp in stamps[:first]:
        clock.pulse(float(stamp))
    if transport == "start":
        clock.start()
    else:
        clock.song_position(8)  # two beats in (sixteenths)
        clock.resume()
    for stamp in stamps[first:]:
        clock.pulse(float(stamp))
    song_start = 0.0 if transport == "start" else 2.0
    for beat in (0.0, 4.0, 7.0):
        assert clock.time_of_beat(song_start + beat) == pytest.approx(ideal[first + int(beat * PULSES_PER_BEAT)], abs=0.001)
    clock.stop()
    assert clock.start_beat() == pytest.approx(song_start + 8.0)


@pytest.mark.parametrize("start_lead", [0.5, 0.05])  # intervals before the downbeat's pulse: the tests' DAW; a real one
@pytest.mark.parametrize("lost", [(-1,), (-4,), (-2, -1), (0,), (-1, 0)])  # pulses from the downbeat's
def test_a_pulse_lost_in_the_half_beat_before_start_does_not_move_the_downbeat(lost, start_lead):
    """A clean-clone run placed every note one pulse early: a loaded server lost a pulse shortly
    before Start, which the follower tells only half a beat on (HELD_PULSES), after Start had set
    the downbeat, and so counted it after the downbeat. A pulse lost right after Start (the
    downbeat's own) still counts in the song."""
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    ideal = 10.0 + seconds_per_pulse * np.arange(8 * PULSES_PER_BEAT)
    first = 2 * PULSES_PER_BEAT  # the downbeat's pulse
    sent = np.ones(len(ideal), dtype=bool)
    sent[[first + offset for offset in lost]] = False
    clock = ClockFollower()
    for index in range(len(ideal)):
        if index == first:
            clock.start(float(ideal[first] - start_lead * seconds_per_pulse))
        if sent[index]:
            clock.pulse(float(ideal[index]))
    assert clock.lost_pulses == len(lost)
    for beat in (0.0, 3.0, 5.5):
        assert clock.time_of_beat(beat) == pytest.approx(ideal[first + int(beat * PULSES_PER_BEAT)], abs=0.001)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lost_at", [9, 12, 18, 22])  # pulses from the clock's first
def test_a_pulse_lost_in_the_clocks_first_beat_is_counted_and_the_tempo_at_start_holds(lost_at, seed):
    """A sync test recorded 118.4 BPM at Start for a clock of 120 (+-1 ms): the server lost one
    pulse in the clock's first beat, where the young line judged no late pulse, and the pulses
    after it, one counter short, pulled the line slow for four beats."""
    rng = np.random.default_rng(seed)
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    ideal = 10.0 + seconds_per_pulse * np.arange(8 * PULSES_PER_BEAT)
    first = 2 * PULSES_PER_BEAT  # the downbeat's pulse
    clock, bpm_at_start = ClockFollower(), None
    for index in range(len(ideal)):
        if index == first:
            clock.start(float(ideal[first] - 0.5 * seconds_per_pulse))
            bpm_at_start = 60 / clock.seconds_per_beat
        if index != lost_at:
            clock.pulse(float(ideal[index] + rng.uniform(-1, 1) * 0.001))
    assert clock.lost_pulses == 1
    assert bpm_at_start == pytest.approx(120, abs=0.1)
    for beat in (0.0, 3.0, 5.5):
        assert clock.time_of_beat(beat) == pytest.approx(ideal[first + int(beat * PULSES_PER_BEAT)], abs=0.0015)


def _follow_a_jittery_clock(bpm: float, jitter_seconds: float, seed: int, lose_one_a_beat: bool = False):
    """Pulses +-jitter_seconds about their ideal times (USB or network MIDI); (pulses counted lost,
    errors in seconds of where the follower places 16th-grid points 200 ms ahead, ideal pulses lost)."""
    rng = np.random.default_rng(seed)
    seconds_per_pulse = 60 / bpm / PULSES_PER_BEAT
    clock = ClockFollower()
    clock.start()
    errors, dropped = [], 0
    for index in range(64 * PULSES_PER_BEAT):
        ideal = index * seconds_per_pulse
        if lose_one_a_beat and index > 2 * PULSES_PER_BEAT and index % PULSES_PER_BEAT == 12:
            dropped += 1
            continue
        clock.pulse(ideal + rng.uniform(-1, 1) * jitter_seconds)
        if index > 2 * PULSES_PER_BEAT:
            sixteenth = np.ceil((ideal + 0.2) / seconds_per_pulse / 6) * 6 / PULSES_PER_BEAT
            errors.append(clock.time_of_beat(sixteenth) - sixteenth * PULSES_PER_BEAT * seconds_per_pulse)
    return clock.lost_pulses, np.abs(errors), dropped


@pytest.mark.parametrize("bpm", [60, 120, 200])
def test_five_ms_of_clock_jitter_is_not_taken_for_lost_pulses_and_the_grid_holds(bpm):
    """Issue 20: at +-5 ms of jitter the follower counted 85 lost pulses in 64 beats at 200 BPM and
    put onsets 15-62 ms off the DAW's grid. Deterministic (seeded), so it cannot flake."""
    for seed in range(3):
        lost, errors, _ = _follow_a_jittery_clock(bpm, 0.005, seed)
        assert lost == 0, f"{lost} pulses taken for lost at {bpm} BPM"
        assert np.percentile(errors, 95) * 1e3 <= 3.0 and errors.max() * 1e3 < 6.0, (np.percentile(errors, 95), errors.max())
    lost, errors, dropped = _follow_a_jittery_clock(bpm, 0.005, 0, lose_one_a_beat=True)
    assert dropped - 1 <= lost <= dropped, (lost, dropped)  # the last may still be told when the clock ends
    assert np.percentile(errors, 95) * 1e3 <= 3.0


def _two_lost_on_a_jittering_clock(bpm: float, apart: int, seed: int) -> tuple[int, float]:
    """A clock +-5 ms about its pulses that loses two, `apart` pulses apart, in its fifth beat;
    (pulses counted lost, where the follower puts beat 11 against the DAW's, in ms)."""
    seconds_per_pulse = 60 / bpm / PULSES_PER_BEAT
    rng = np.random.default_rng(seed)
    lost_at = {4 * PULSES_PER_BEAT + 5, 4 * PULSES_PER_BEAT + 5 + apart}
    clock = ClockFollower()
    clock.start()
    for index in range(12 * PULSES_PER_BEAT):
        if index not in lost_at:
            clock.pulse(index * seconds_per_pulse + rng.uniform(-1, 1) * 0.005)
    return clock.lost_pulses, (clock.time_of_beat(11.0) - 11 * PULSES_PER_BEAT * seconds_per_pulse) * 1e3


# The share of 20 seeded clocks on which both are counted, at least (before: 0-3 of 20 at 120 BPM
# for 2-11 apart, 0-2 at 200). At 200 BPM +-5 ms is +-0.4 of an interval: a step and a drift
# over a few pulses can look alike, and some pairs still read as one loss.
@pytest.mark.parametrize("bpm, least", [(60, 20), (120, 18), (200, 13)])
@pytest.mark.parametrize("apart", [2, 3, 6, 8, 11])
def test_two_pulses_lost_close_together_on_a_jittering_clock_are_both_counted(bpm, least, apart):
    """The bench's +-5 ms clock at 120 BPM on a server losing 1 pulse in 80: two lost 8 apart (the
    second while the first was being told) read as one loss and a slower tempo, and every note
    after them came a pulse (21 ms) late. Seeded: it cannot flake."""
    results = [_two_lost_on_a_jittering_clock(bpm, apart, seed) for seed in range(20)]
    counted = sum(1 for lost, error_ms in results if lost == 2 and abs(error_ms) <= 3.0)
    assert counted >= least, results


def _stamps_of_a_stalling_machine(ideal: np.ndarray, jitter_seconds: float, rng) -> np.ndarray:
    """Pulse stamps as a loaded machine gives them: jitter, one pulse in ten up to 4 ms late, and
    every 30-80 pulses a stall whose 2-15 pulses arrive at once with one stamp (a late JACK cycle)."""
    stamps = ideal + rng.uniform(-1, 1, len(ideal)) * jitter_seconds
    late = rng.random(len(ideal)) < 0.1
    stamps[late] += rng.uniform(0, 0.004, late.sum())
    index = 60
    while index < len(ideal) - 20:
        count = int(rng.integers(2, 16))
        stamps[index:index + count] = stamps[index + count - 1] + 0.001
        index += count + int(rng.integers(30, 80))
    return np.maximum.accumulate(stamps)


@pytest.mark.parametrize("bpm, jitter_seconds, limit_ms", [(120, 0.001, 1.0), (200, 0.005, 3.0)])
def test_a_stalling_machine_neither_loses_pulses_nor_moves_the_grid(bpm, jitter_seconds, limit_ms):
    """Issue 22: on a busy machine the clock tests failed 1 run in 3 (a stall's burst of pulses,
    stamped alike, threw the line: tempo read as 260 BPM, notes 28-62 ms off). Seeded: cannot flake."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ideal = np.arange(40 * PULSES_PER_BEAT) * (60 / bpm / PULSES_PER_BEAT)
        clock = ClockFollower()
        clock.start()
        errors = []
        for index, stamp in enumerate(_stamps_of_a_stalling_machine(ideal, jitter_seconds, rng)):
            clock.pulse(stamp)
            if 2 * PULSES_PER_BEAT < index < len(ideal) - 12:
                errors.append(clock.time_of_beat((index + 10) / PULSES_PER_BEAT) - ideal[index + 10])
        errors_ms = np.abs(errors) * 1e3
        assert clock.lost_pulses == 0
        assert np.percentile(errors_ms, 95) <= limit_ms and errors_ms.max() <= 2 * limit_ms + 1, (
            np.percentile(errors_ms, 95), errors_ms.max())


@pytest.mark.parametrize("lost", [0, 1, 2])
def test_pulses_lost_in_a_stall_longer_than_half_a_second_are_counted(lost):
    """A 0.75 s stall while playing was taken for a paused clock: the line was dropped and pulses
    lost in it went uncounted (a clean-clone run: the turn answered 41.8 ms, two pulses, late)."""
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    ideal = np.arange(30 * PULSES_PER_BEAT) * seconds_per_pulse
    stamps = ideal + np.random.default_rng(0).uniform(-1, 1, len(ideal)) * 0.001
    stamps[200:236] = stamps[235] + 0.001  # 36 pulses arrive at once
    arrived = np.ones(len(ideal), bool)
    arrived[205:205 + lost] = False
    clock = ClockFollower()
    clock.start()
    for stamp in stamps[arrived]:
        clock.pulse(stamp)
    assert clock.lost_pulses == lost
    assert abs(clock.time_of_beat(25) - ideal[25 * PULSES_PER_BEAT]) < 0.001


def test_a_lost_pulse_is_counted_back_in_and_a_halved_tempo_is_not_taken_for_one():
    clock, t = ClockFollower(), 0.0
    for k in range(60):
        if k != 40:  # pulse 40 never arrives
            clock.pulse(t)
        t += 0.02
    assert clock.lost_pulses == 1
    clock.start()
    assert clock.time_of_beat(0) == pytest.approx(60 * 0.02, abs=1e-6)
    slow = ClockFollower()
    t = 0.0
    for k in range(60):
        slow.pulse(t)
        t += 0.02 if k < 30 else 0.04
    assert slow.lost_pulses == 0 and slow.bpm == pytest.approx(60 / (24 * 0.04), rel=1e-3)


def test_pulses_lost_soon_after_a_pulled_clock_returns_are_counted():
    """Seen in the suite: 0.4 s after a pulled clock came back, a stall lost four pulses in JACK.
    The follower's new line then held less than a beat, so it judged no pulse late and took the
    next one for the one after the last it heard: the song ran four pulses (83 ms) behind the DAW's."""
    rng = np.random.default_rng(3)
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    clock = ClockFollower()

    def daw_time(pulse: int) -> float:
        return 10.0 + pulse * seconds_per_pulse

    for pulse in range(48):  # two beats of clock, then Start: pulse 48 is the downbeat
        clock.pulse(daw_time(pulse) + rng.uniform(-0.001, 0.001))
    clock.start()
    for pulse in range(48, 144):
        clock.pulse(daw_time(pulse) + rng.uniform(-0.001, 0.001))
    assert clock.watch(daw_time(144 + 60))  # pulled out: silent for over two beats
    back = 144 + 96  # the DAW played on through four unheard beats
    lost = range(back + 19, back + 23)
    for pulse in range(back, back + 4 * PULSES_PER_BEAT):
        if pulse not in lost:
            clock.pulse(daw_time(pulse) + rng.uniform(-0.001, 0.001))
    assert clock.running and clock.lost_pulses == len(lost)
    song_beat = (back + 90 - 48) / PULSES_PER_BEAT
    assert clock.time_of_beat(song_beat) == pytest.approx(daw_time(back + 90), abs=0.002)


@pytest.mark.parametrize("bpm, jitter_seconds", [(60, 0.005), (120, 0.001), (200, 0.005)])
def test_four_pulses_lost_together_are_counted_not_taken_for_a_slower_tempo(bpm, jitter_seconds):
    """A held pulse standing two or more intervals late and rising by chance was read as a slower
    tempo (it was judged against one lost pulse): four lost together were counted in 2 of 20 seeds."""
    seconds_per_pulse = 60 / bpm / PULSES_PER_BEAT
    for seed in range(5):
        rng, clock = np.random.default_rng(seed), ClockFollower()
        for pulse in range(300):
            if not 100 <= pulse < 104:
                clock.pulse(10.0 + pulse * seconds_per_pulse + rng.uniform(-jitter_seconds, jitter_seconds))
        assert clock.lost_pulses == 4, seed
        assert clock.bpm == pytest.approx(bpm, rel=0.005)


@pytest.mark.parametrize("bunched", [2, 3, 5])
def test_pulses_bunched_into_one_stamp_as_the_clock_starts_are_not_a_vanished_clock(bunched):
    """Seen with twelve DAW scripts sending clock from one busy process: the first pulses came in
    one JACK cycle, with one stamp. A line through them said a pulse lasts microseconds, so the
    clock was "gone" a moment later, and on the next pulse it "came back" millions of pulses on:
    the stream played nothing. A tempo no MIDI clock runs at is no line to follow."""
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    clock = ClockFollower()
    stamps = 10.0 + seconds_per_pulse * np.arange(4 * PULSES_PER_BEAT)
    stamps[:bunched] = stamps[bunched - 1]  # the first pulses delivered late, together
    clock.start()
    for stamp in stamps:
        clock.pulse(float(stamp))
        assert not clock.watch(float(stamp) + 0.005), "a clock pulsing every 21 ms taken for gone"
    assert clock.running and clock.lost_pulses == 0
    assert clock.time_of_beat(2.0) == pytest.approx(10.0 + 2 * PULSES_PER_BEAT * seconds_per_pulse, abs=0.002)
    assert clock.bpm == pytest.approx(120, abs=0.5)


@pytest.mark.parametrize("bpm_after", [90, 60, 150])
def test_a_pulse_lost_in_the_beat_around_a_tempo_change_is_counted(bpm_after):
    """A CI run: a pulse lost within a beat of 120 -> 90 was read as part of the slowdown, and
    every note after it sat one pulse (27.8 ms) off the grid. Within two pulses of the change a
    loss and a change read alike (the same arrivals fit both), so drops from three on are checked.
    Arrivals as JACK gives them: +-0.5 ms, then quantized to 64-frame periods. Seeded."""
    period = 64 / 44100
    before, after = 0.5 / PULSES_PER_BEAT, 60 / bpm_after / PULSES_PER_BEAT
    ideal = np.concatenate([np.arange(8 * PULSES_PER_BEAT) * before,
                            8 * PULSES_PER_BEAT * before + np.arange(10 * PULSES_PER_BEAT) * after])
    change = 8 * PULSES_PER_BEAT
    for offset in (None, -11, -8, -5, -3, 3, 5, 8, 12, 16, 20):
        rng = np.random.default_rng(5)
        stamps = ideal + rng.uniform(-0.0005, 0.0005, len(ideal)) + rng.uniform(0, period, len(ideal))
        stamps = np.maximum.accumulate(np.ceil(stamps / period) * period)
        arrived = np.ones(len(ideal), bool)
        if offset is not None:
            arrived[change + offset] = False
        clock = ClockFollower()
        clock.start()
        for stamp in stamps[arrived]:
            clock.pulse(float(stamp))
        error_ms = (clock.time_of_beat(17) - ideal[17 * PULSES_PER_BEAT]) * 1e3
        assert clock.lost_pulses == (offset is not None) and abs(error_ms) < 2.0, (offset, clock.lost_pulses, error_ms)


def test_a_stall_after_a_tempo_change_on_a_loaded_server_is_not_taken_for_a_lost_pulse():
    """Recorded: 1.5 beats after 120 -> 90, a stall held six pulses back and delivered them at once;
    one stamped half an interval late joined the line, read as a tempo change and then as a lost
    pulse, and every note after it sat a pulse (27.8 ms) early. Nothing was lost."""
    clock, arrivals, started_at = _follow_recorded("clock_stall_after_a_tempo_change.txt")
    assert clock.lost_pulses == 0
    # Beat 11 (after the stall): where its pulse arrived, not a pulse before.
    assert abs(clock.time_of_beat(11) - arrivals[started_at + 11 * PULSES_PER_BEAT]) < 0.002


def test_two_pulses_lost_eight_apart_on_a_loaded_server_are_both_counted():
    """Recorded: the server dropped a pulse, then another 8 pulses later, before the first was
    told; the pair read as one loss and a slower tempo, and every note after it came a pulse late
    (test_sync's tempo-change test, 28 ms off)."""
    clock, arrivals, started_at = _follow_recorded("clock_two_pulses_lost_close_together.txt")
    assert clock.lost_pulses == 4
    # Beat 11 (90 BPM, after all four losses): where its pulse arrived, four fewer having come.
    assert abs(clock.time_of_beat(11) - arrivals[started_at + 11 * PULSES_PER_BEAT - 4]) < 0.002



def test_pulses_lost_in_a_cluster_on_a_loaded_server_are_all_counted():
    """Recorded (test_sync's staccato turns, answered 62 ms late): four pulses lost within 13, two
    of them in a row, read as one loss and a slower tempo: three went uncounted. The two the server
    dropped in the clock's first beat, before Start, are counted too (all eight it dropped)."""
    clock, arrivals, started_at = _follow_recorded("clock_pulses_lost_in_a_cluster.txt")
    assert clock.lost_pulses == 8
    # Beat 8, after all six lost since Start: where its pulse arrived, six fewer having come.
    assert abs(clock.time_of_beat(8) - arrivals[started_at + 8 * PULSES_PER_BEAT - 6]) < 0.002


@pytest.mark.parametrize("name", ["clock_pulse_lost_in_the_first_beat.txt",
                                  "clock_pulses_lost_before_start_on_a_stalling_server.txt"])
def test_recorded_losses_before_start_leave_the_tempo_at_start_right(name):
    """Recorded (test_sync's tempo-change session, a clock of 120 BPM): the takes said 119.3 and
    115.3 BPM at Start; the first beat's loss was never counted and the line restarted from a few
    pulses."""
    clock, bpm_at_downbeat = ClockFollower(), None
    for kind, seconds in _recorded_rows(name):
        if kind == "start":
            clock.start(seconds)
        elif kind == "clock":
            clock.pulse(seconds)
            if clock.running and bpm_at_downbeat is None:
                bpm_at_downbeat = 60 / clock.seconds_per_beat
    assert bpm_at_downbeat == pytest.approx(120, abs=0.25)
    assert clock.lost_pulses >= 1


def _recorded_rows(name: str) -> list[tuple[str, float]]:
    """tests/data/`name`: what a stream received, a (kind: "clock"/"start"/"stop", arrival
    seconds) pair per line; lines starting with # say where it was recorded."""
    lines = (Path(__file__).parent / "data" / name).read_text().splitlines()
    return [(kind, float(seconds)) for kind, seconds in (line.split() for line in lines if not line.startswith("#"))]


def _follow_recorded(name: str) -> tuple[ClockFollower, list, int]:
    """A follower fed tests/data/`name` (see _recorded_rows) up to Stop; (the follower, the pulse
    arrivals, how many came before Start)."""
    clock, arrivals, started_at = ClockFollower(), [], 0
    for kind, seconds in _recorded_rows(name):
        if kind == "clock":
            clock.pulse(seconds)
            arrivals.append(seconds)
        elif kind == "start":
            clock.start()
            started_at = len(arrivals)  # the next pulse is the downbeat
        elif kind == "stop":
            break
    return clock, arrivals, started_at


@pytest.mark.parametrize("start_lead", [0.5, 0.05])  # intervals before the downbeat's pulse
@pytest.mark.parametrize("lost", [(-1,), (-2, -1), (-3, -2, -1)])  # pulses from the downbeat's
def test_a_pulse_lost_just_before_start_does_not_put_the_first_note_a_pulse_early(lost, start_lead):
    """The engine places the first chord the moment Start comes, long before a loss can be told
    (HELD_PULSES). Pulses the line says were due before Start and never came were lost: without
    counting them there, the downbeat stood on the last lost pulse's time (the bench measured a
    first note 20.4-20.9 ms early at 120 BPM in 2 of 36 sessions, both on a server losing pulses);
    told later, they are not counted twice."""
    seconds_per_pulse = 0.5 / PULSES_PER_BEAT
    ideal = 10.0 + seconds_per_pulse * np.arange(8 * PULSES_PER_BEAT)
    first = 2 * PULSES_PER_BEAT
    clock = ClockFollower()
    for index in range(first):
        if index - first not in lost:
            clock.pulse(float(ideal[index]))
    clock.start(float(ideal[first] - start_lead * seconds_per_pulse))
    assert clock.time_of_beat(0.0) == pytest.approx(ideal[first], abs=0.001)
    for index in range(first, len(ideal)):
        clock.pulse(float(ideal[index]))
    assert clock.lost_pulses == len(lost)
    for beat in (0.0, 3.0, 5.5):
        assert clock.time_of_beat(beat) == pytest.approx(ideal[first + int(beat * PULSES_PER_BEAT)], abs=0.001)


@pytest.mark.parametrize("bpm", [60, 120, 200])
def test_start_on_a_jittering_clock_with_no_pulse_lost_puts_the_downbeat_on_its_pulse(bpm):
    """Counting pulses lost before Start must not take a late pulse's jitter (+-5 ms; at 200 BPM
    0.4 of an interval) for a loss, wherever in the interval before its pulse Start comes."""
    seconds_per_pulse = 60 / bpm / PULSES_PER_BEAT
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ideal = 10.0 + seconds_per_pulse * np.arange(6 * PULSES_PER_BEAT)
        stamps = ideal + rng.uniform(-0.005, 0.005, len(ideal))
        first = 4 * PULSES_PER_BEAT
        clock = ClockFollower()
        for index in range(len(ideal)):
            if index == first:
                # Start goes out on the DAW's MIDI thread, jittered as the pulses are, between them.
                start = ideal[first] - rng.uniform(0.05, 0.9) * seconds_per_pulse + rng.uniform(-0.005, 0.005)
                clock.start(float(np.clip(start, stamps[first - 1] + 1e-4, stamps[first] - 1e-4)))
                assert abs(clock.time_of_beat(0.0) - ideal[first]) < 0.5 * seconds_per_pulse, seed
            clock.pulse(float(stamps[index]))
        assert clock.lost_pulses == 0, seed


@pytest.mark.parametrize("late_at", [6, 9, 11, 13])
def test_a_pulse_sent_late_a_beat_after_a_tempo_change_does_not_bend_the_young_line(late_at):
    """A clean-clone run's tempo-change session: the DAW sent the 12th pulse after a change 2.9 ms
    late, the new tempo's young line of 15 pulses said 89.65 BPM for 90, and a note it timed a beat
    after the change came 1.95 ms off the grid."""
    clock, t, at_change = ClockFollower(), 10.0, None
    clock.start(t - 0.001)  # then the downbeat's pulse: pulse n is beat n / 24
    clock.pulse(t)
    for pulse in range(1, 8 * PULSES_PER_BEAT + 20):
        after_change = pulse - 8 * PULSES_PER_BEAT
        t += (0.5 if after_change <= 0 else 60 / 90) / PULSES_PER_BEAT
        at_change = t if after_change == 0 else at_change
        clock.pulse(t + (0.003 if after_change == late_at else 0.0))
        if after_change >= max(late_at, 12) + 1:
            assert clock.bpm == pytest.approx(90, abs=0.05), (after_change, clock.bpm)
            one_beat_after = clock.time_of_beat(9.0)
            assert abs(one_beat_after - (at_change + 60 / 90)) <= 0.0002, (after_change, one_beat_after - at_change - 60 / 90)
