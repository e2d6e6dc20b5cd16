"""Playing with others: a test process plays the DAW (MIDI clock with jitter, Start, Stop, Continue,
Song Position, a phrase), cadenza follows on a JACK server of 64-frame periods (1.45 ms, so
that JACK's own quantization leaves room for a 2 ms check), and a listener records it."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import mido
import numpy as np
import pytest
from scipy.stats import theilslopes

from conftest import FLOOR_LOST_LIMIT, delivery_floor, dummy_jack_server
from bench.daw import PULSES_PER_BEAT, Script, SessionCrashed, session_elsewhere
from bench.input_log import clock_sent_late_ms, read_input_log
from bench.sync import errors_from_ideal_grid, grid_errors, still_sounding_after


# A bare sender's messages must reach a listener within this (p99) on the server for its 2 ms
# checks to mean anything; on a healthy 2-core VM the floor is about 1.5 ms, none lost.
FLOOR_LIMIT_MS = 3.0
# ... and at most FLOOR_LOST_LIMIT of its 300 lost.


@pytest.fixture(scope="module")
def fast_jack():
    """A server of this module's own with 64-frame periods (1.45 ms), checked first: if this host
    cannot run it in time (a bare sender's MIDI, no cadenza at all, arrives late or not at all),
    the musical-time tests say so and are skipped rather than failing on the host's account."""
    with dummy_jack_server(f"cadenza-sync-{os.getpid()}", 64) as name:
        floor = delivery_floor()
        if floor["p99"] > FLOOR_LIMIT_MS or floor["lost"] > FLOOR_LOST_LIMIT:
            pytest.skip(f"this host cannot run a 64-frame JACK server in time: a bare sender's MIDI arrives "
                        f"p50 {floor['p50']:.1f} / p99 {floor['p99']:.1f} ms late, {floor['lost']} of 300 lost "
                        f"(healthy: p99 ~1.5 ms, none lost)")
        yield name


# What cadenza places is checked to 2 ms, and what its sender did with it: the messages handed
# over at their time (less the half JACK period it sends early: JACK delivers at the next cycle's
# start). The median within SENT_MEDIAN_LIMIT_MS: typically 0.1-0.3 ms; a turn's 22 messages beside
# a busy loop once had 0.58 ms. At 90 % of the moments something is due (a chord is one), all of it
# within SENT_LIMIT_MS. Not every moment: the sender is a real-time thread, yet this VM's host now
# and then holds it back. A bare
# real-time thread waking every 10 ms, nothing else running, woke late by over 1 ms 6 times in
# 2,000 (at most 2.2 ms); beside a busy loop at most 6.7 ms (select() timed against
# the clock). What the check catches: a chord drawn after Start rolled over 12 ms (3 % of a
# session's notes late; and test_..._jittering_... checks that chord itself), notes no longer
# due sent 23 ms late (every note of a session). A stall holds back a whole chord: one run of `make test`
# saw two chords of 31 held 5 ms.
# What a listener hears adds JACK's delivery, which is the host's: on this VM a cycle now and then
# runs 5-20 ms late with nothing of cadenza's running (the floor). A test cannot tell that from
# cadenza's own lateness, so what is heard is measured by `python -m bench --only sync` beside the
# floor, and the tests check what cadenza decided and did.
SENT_MEDIAN_LIMIT_MS = 1.0
SENT_LIMIT_MS = 2.0
EARLY_SECONDS = 64 / 44100 / 2


# Sessions run in all when the stream's input keeps losing what the DAW sent (see `session`).
SESSION_ATTEMPTS = 3
# A pulse the DAW's own thread sent later than this beyond its time and the script's jitter (half a
# pulse at 120 BPM) was held back by the host: against the grid the pulses belonged on, the session
# did not play its script (see `session`). Beside two busy loops the DAW sent a pulse up to 10.9 ms
# late (1 ms of it jitter) in 1 of 6 sessions, and cadenza's notes stayed within 1 ms of that grid.
DAW_LATE_LIMIT_MS = 10.0


def session(script: Script, stream_args: list, seed: int = 0, on_the_daws_grid: bool = False):
    """bench.daw's session, with the stream's --input-log read into `received`. A session whose
    input never received a message the DAW sent other than a clock pulse (Start, a phrase's
    note-off, the turn CC) is run again: the loaded host's JACK lost it on the way in (a client
    that misses a cycle loses its MIDI), and what cadenza did without it tests nothing (one
    note-off lost held the player's key down for 8 s, and no answer came). Lost pulses stay:
    cadenza's clock follower must count them. `on_the_daws_grid` (a test that measures against
    the grid the pulses belonged on, not the pulses as sent): so is one whose DAW sent a pulse more
    than DAW_LATE_LIMIT_MS late beyond the script's jitter. (Pulses soon after a pulled cable's
    return left 7-35 ms late in every session; those tests measure against the pulses as sent.)"""
    losses, crashes = [], []
    for _ in range(SESSION_ATTEMPTS):
        with tempfile.TemporaryDirectory() as folder:
            log = Path(folder) / "input.log"
            try:
                result = session_elsewhere(script, [*stream_args, "--input-log", str(log)], seed)
            except SessionCrashed as crash:
                # The DAW's side killed by a signal (libjack in the harness; once in a clean-clone
                # run, stderr empty), not cadenza's exit: played again. An exit of its own fails.
                if crash.exit_code >= 0:
                    raise
                crashes.append(str(crash))
                continue
            assert log.exists(), f"the stream wrote no --input-log: {result.stderr[-600:]}"
            result.received = read_input_log(log)
        lost = {kind: count for kind, count in result.lost_on_the_way().items() if kind != "clock"}
        daw_late_ms = float(np.max(clock_sent_late_ms(result.sent), initial=0.0)) - script.jitter_seconds * 1e3
        if on_the_daws_grid and daw_late_ms > DAW_LATE_LIMIT_MS:
            lost["the DAW's own pulse late beyond its jitter (ms)"] = round(daw_late_ms, 1)
        if not lost:
            return result
        losses.append(lost)
    assert len(crashes) < SESSION_ATTEMPTS, crashes[-1]
    pytest.skip(f"the host's JACK server lost the DAW's messages on their way into the stream, or held "
                f"the DAW back, in {SESSION_ATTEMPTS} sessions running: {losses}"
                + (f"; the others crashed: {crashes}" if crashes else ""))


def timing_lines(log: Path) -> list[tuple[float, float, bytes]]:
    """(scheduled monotonic seconds, sent monotonic seconds, message bytes) per line of a --timing-log."""
    lines = [line.split() for line in log.read_text().splitlines()]
    return [(float(words[0]), float(words[1]), bytes.fromhex("".join(words[2:]))) for words in lines]


def placed_onsets(log: Path) -> np.ndarray:
    """When cadenza scheduled each note-on (monotonic seconds), from its --timing-log."""
    return np.array([scheduled for scheduled, _, data in timing_lines(log) if data[0] & 0xF0 == 0x90])


def _sent_late_ms(scheduled: float, sent: float) -> float:
    """How late the sender handed a message over, against its time less the half period it sends early."""
    return (sent - scheduled + EARLY_SECONDS) * 1e3


def assert_sent_on_time(log: Path, after: float = -np.inf) -> None:
    """The note-ons and note-offs scheduled `after` (monotonic seconds) left the sender at their
    time (less the half period it sends early): the median within SENT_MEDIAN_LIMIT_MS; at 90 % of
    the moments they were due, all of that moment's within SENT_LIMIT_MS."""
    late_by_moment: dict[float, float] = {}
    late_ms = []
    for scheduled, sent, data in timing_lines(log):
        if data[0] & 0xE0 == 0x80 and scheduled > after:
            late_ms.append(_sent_late_ms(scheduled, sent))
            late_by_moment[scheduled] = max(late_by_moment.get(scheduled, -np.inf), late_ms[-1])
    moments_ms = np.array(list(late_by_moment.values()))
    assert len(late_ms) > 0 and np.median(late_ms) <= SENT_MEDIAN_LIMIT_MS and np.percentile(moments_ms, 90) <= SENT_LIMIT_MS, (
        round(float(np.median(late_ms)), 2), np.round(np.sort(moments_ms)[-5:], 2), len(moments_ms))


def _first_moment_sent_late_ms(log: Path) -> list[float]:
    """How late each note-on of the first moment (the first chord after Start) left its sender (ms)."""
    lines = [(scheduled, sent) for scheduled, sent, data in timing_lines(log) if data[0] & 0xF0 == 0x90 and data[2]]
    return [_sent_late_ms(scheduled, sent) for scheduled, sent in lines if scheduled == lines[0][0]]


def assert_first_chord_sent_together(log: Path) -> None:
    """The notes of the first chord after Start (all placed on the downbeat) left within 2 ms of
    their time: drawn before Start, not one by one after it."""
    chord_ms = _first_moment_sent_late_ms(log)
    assert len(chord_ms) > 1 and max(chord_ms) <= 2.0, np.round(chord_ms, 2)


def assert_on_grid_point(onset: float, pulses: np.ndarray, index: int, context=None) -> None:
    """`onset` (placed) is on the grid point at pulse `index`: within 2 ms of where a line through
    the pulses around it puts that point. One pulse as sent carries the DAW's jitter (+-1 ms) and
    its thread's delays, which cadenza's follower rightly smooths out."""
    coarse_ms = (onset - pulses[index]) * 1e3
    fitted_ms = grid_errors(np.array([onset]), pulses, index, 10**6)[0] * 1e3
    assert abs(coarse_ms) <= 12.0 and abs(fitted_ms) <= 2.0, (round(coarse_ms, 2), round(fitted_ms, 2), context)


def _bar_pulse_after(pulses: np.ndarray, start_index: int, moment: float) -> int:
    """The index of the first bar line's pulse (4 beats from Start's) at or after `moment`."""
    bar_indices = np.arange(start_index, len(pulses), 4 * PULSES_PER_BEAT)
    return int(bar_indices[np.searchsorted(pulses[bar_indices], moment)])


def _pulses_from_start(result) -> tuple[np.ndarray, int]:
    pulses = np.array(result.times("clock"))
    return pulses, int(np.sum(pulses < result.times("start")[0]))


def test_follows_a_midi_clock_on_the_grid_through_a_tempo_change_and_stops_at_once(fast_jack, tmp_path):
    """Onsets as cadenza places them (its timing log) within 2 ms of the 16th grid of the pulses as
    sent, and sent on time; the listener hears nothing before Start or after Stop."""
    script = Script(tempo_changes={6.0: 90.0}, stop_beat=12.0, end_beat=14.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--timing-log", str(log)], seed=1)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    start, stop = result.times("start")[0], result.times("stop")[0]
    heard = result.onsets()
    assert len(heard) > 30
    assert heard.min() > start, "a note before Start"
    placed = placed_onsets(log)
    change_index = start_index + 6 * PULSES_PER_BEAT
    change = pulses[change_index]
    onsets = placed[placed < stop]
    errors_ms = np.abs(grid_errors(onsets, pulses, start_index, 6, breaks=(change_index,))) * 1e3
    after_a_beat = (onsets > change + 60 / 90) | (onsets < change)
    checked = errors_ms[after_a_beat & np.isfinite(errors_ms)]
    assert len(checked) > 25 and np.all(checked <= 2.0), (np.round(np.sort(checked)[-5:], 2), result.input_story())
    assert abs(placed[0] - pulses[start_index]) * 1e3 <= 2.0, "the first note is not on the downbeat"
    assert_sent_on_time(log)
    left, released = still_sounding_after(result.heard, stop)
    assert left == 0 and (released is None or released - stop <= 0.05), (left, released and released - stop)
    assert not any(t > stop + 0.05 for t in heard), "a note after Stop"


def test_a_take_following_a_clock_starts_at_its_downbeat_with_its_tempo_changes(fast_jack, tmp_path):
    """Issue 20: with --sync the take began with the wait before Start, said 120 BPM through a tempo
    change, and each Stop wrote 32 all-notes-off controls."""
    from test_stream import _ticks

    take = tmp_path / "take.mid"
    script = Script(tempo_changes={4.0: 90.0}, stop_beat=8.0, continue_after_beats=1.0, end_beat=11.0)
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--record", str(take)], seed=7)
    assert result.exit_code == 0, result.stderr
    tempos, onsets, others = _ticks(take)
    ticks_per_beat = mido.MidiFile(str(take)).ticks_per_beat
    assert onsets[0] == 0, onsets[:5]  # the downbeat of Start, not the seconds before it
    assert all(tick % (ticks_per_beat // 4) == 0 for tick in onsets)
    assert tempos[0][1] == pytest.approx(120, abs=0.5) and tempos[-1][1] == pytest.approx(90, abs=0.5), tempos
    changed = next(tick for tick, bpm in tempos if bpm < 119)
    assert 4 * ticks_per_beat <= changed <= 6 * ticks_per_beat, (tempos, result.input_story())  # where the DAW changed it, within its beat
    assert not [m for m in others if m.type == "control_change"], others[:5]
    assert max(onsets) <= 11 * ticks_per_beat  # Stop then Continue: the song's bars, not the seconds that passed


def test_continue_resumes_from_the_song_position(fast_jack, tmp_path):
    # Stopped, then a Song Position of 1 sixteenth: on a grid of eighths the first note after
    # Continue comes half an eighth (6 pulses) after the first pulse, not on it.
    script = Script(stop_beat=4.0, song_position=1, continue_after_beats=2.0, end_beat=9.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/8", "--timing-log", str(log)], seed=2)
    assert result.exit_code == 0, result.stderr
    pulses = np.array(result.times("clock"))
    resumed = result.times("continue")[0]
    first_pulse = int(np.searchsorted(pulses, resumed))
    after = placed_onsets(log)[placed_onsets(log) > resumed]
    assert len(after) > 3
    # (once in a clean-clone run its first note came 40 ms early: the stream's lines say what it heard)
    assert_on_grid_point(after[0], pulses, first_pulse + 6, result.stderr.strip().splitlines()[-2:])
    assert_sent_on_time(log)
    assert len(result.onsets()[result.onsets() > resumed]) > 3, "nothing heard after Continue"


def test_turns_answer_from_the_first_bar_line_a_beat_after_the_player_stops_and_end_on_one(fast_jack, tmp_path):
    script = Script(phrase_beat=0.5, stop_beat=None, end_beat=12.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--turns", "1", "--timing-log", str(log)], seed=3)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    phrase_end = result.times("note_off")[-1]
    answer_index = _bar_pulse_after(pulses, start_index, phrase_end + 60 / script.bpm)  # a beat of silence
    onsets = result.onsets()
    assert not any(t < phrase_end for t in onsets), "cadenza played while the player played"
    placed = placed_onsets(log)
    assert len(placed), result.stderr  # (once in a clean-clone run it placed nothing; its lines say why)
    assert_on_grid_point(placed[0], pulses, answer_index)
    assert_sent_on_time(log)
    last = max(scheduled for scheduled, _, data in timing_lines(log) if data[0] & 0xE0 == 0x80)  # ons and offs
    past_the_bar_ms = grid_errors(np.array([last]), pulses, answer_index + 4 * PULSES_PER_BEAT, 10**6)[0] * 1e3
    assert len(onsets) > 0 and past_the_bar_ms <= 2.0, past_the_bar_ms


def test_turns_wait_through_a_staccato_phrase_with_rests_between_its_notes(fast_jack, tmp_path):
    """Eighths held 100 ms with 150 ms rests (issue 20): the player has not stopped at each rest."""
    script = Script(phrase_beat=0.5, phrase_notes=16, phrase_legato=0.4, stop_beat=None, end_beat=16.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--turns", "1", "--timing-log", str(log)], seed=4)
    assert result.exit_code == 0, result.stderr
    phrase_start, phrase_end = result.times("note_on")[0], result.times("note_off")[-1]
    over = [t for t in result.onsets() if phrase_start <= t <= phrase_end]
    assert not over, f"cadenza played {len(over)} notes over the player"
    pulses, start_index = _pulses_from_start(result)
    answer_index = _bar_pulse_after(pulses, start_index, phrase_end + 60 / script.bpm)
    # With the stream's last word (it counts the clock pulses it found lost): a miss says whose it is.
    said = result.stderr.strip().splitlines()[-1:] + [result.input_story()]
    placed = placed_onsets(log)
    assert len(placed), f"no answer placed; {said}; {len(result.onsets())} heard"
    try:
        assert_on_grid_point(placed[0], pulses, answer_index)
    except AssertionError as error:
        raise AssertionError(f"{error}; {said}") from None
    assert_sent_on_time(log)


def test_a_note_off_lost_with_the_pulses_around_it_does_not_keep_the_answer_from_coming(fast_jack, tmp_path):
    """A loaded server drops what arrives while a client misses its cycles: a clean-clone run lost
    a note-off of the phrase (and a pulse with it), the player's key stayed down for 8 s, and no
    answer came. The pulses counted lost say the input was deaf then: the key counts as released
    a beat on, and the answer comes at the bar line it would have come at."""
    last_off_pulse = round((0.5 + 15 * 0.5 + 0.5 * 0.4) * PULSES_PER_BEAT)  # the phrase's last note-off, from Start
    script = Script(phrase_beat=0.5, phrase_notes=16, phrase_legato=0.4, stop_beat=None, end_beat=16.0,
                    unsent_note_offs=(15,), unsent_pulses=tuple(range(last_off_pulse - 1, last_off_pulse + 2)))
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--turns", "1", "--timing-log", str(log)], seed=4)
    assert result.exit_code == 0, result.stderr
    grid = np.array(result.times("grid"))  # every pulse where the DAW's clock put it, sent or not
    start_index = int(np.sum(grid < result.times("start")[0]))
    placed = placed_onsets(log)
    said = result.stderr.strip().splitlines()[-1:] + [result.input_story()]
    assert len(placed), f"no answer placed; {said}"
    answer_index = _bar_pulse_after(grid, start_index, result.times("unsent_note_off")[0] + 60 / script.bpm)
    assert abs(placed[0] - grid[answer_index]) * 1e3 <= 2.0, ((placed[0] - grid[answer_index]) * 1e3, said)


def test_the_turn_pedal_asks_for_an_answer_from_the_next_bar_line(fast_jack, tmp_path):
    log = tmp_path / "timing.log"
    result = session(Script(my_turn_beat=2.5, stop_beat=None, end_beat=8.0),
                     ["--sync", "midi-clock", "--turns", "1", "--timing-log", str(log)], seed=6)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    asked = result.times("my_turn")[0]
    placed = placed_onsets(log)
    assert len(placed) > 0 and placed.min() > asked, "played before it was asked"
    assert_on_grid_point(placed[0], pulses, _bar_pulse_after(pulses, start_index, asked))


def _pulled_cable_session(tmp_path, seed: int):
    """No pulse and no Stop for 4 beats at 120 BPM, the DAW playing on (issue 20: cadenza played on
    at the old tempo, then went silent for seconds when the clock came back)."""
    script = Script(stop_beat=None, end_beat=18.0, vanish_beat=4.0, vanish_beats=4.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/8", "--timing-log", str(log)], seed=seed)
    assert result.exit_code == 0, result.stderr
    pulses = np.array(result.times("clock"))
    vanished = result.times("vanish")[0]
    return script, result, log, pulses[pulses < vanished].max(), pulses[pulses > vanished].min()


def test_a_clock_pulled_out_mid_song_silences_within_two_beats_and_plays_on_when_it_returns(fast_jack, tmp_path):
    script, result, log, last_pulse, back = _pulled_cable_session(tmp_path, seed=9)
    assert "stopped without Stop" in result.stderr
    two_beats = 2 * 60 / script.bpm
    assert not any(last_pulse + two_beats + 0.05 < t < back for t in result.onsets()), "a note while the clock was gone"
    left, _ = still_sounding_after(result.heard, last_pulse + two_beats + 0.05)
    assert left == 0, f"{left} notes left sounding after the clock vanished"
    after = placed_onsets(log)
    after = after[after > back]
    # Playing on: notes through to the clock's last beat (how many depends on what it draws).
    last_pulse_sent = np.array(result.times("clock")).max()
    assert len(after) >= 5 and after.max() > last_pulse_sent - two_beats, "it did not play on when the clock came back"


def test_after_a_pulled_clock_returns_the_notes_are_on_the_grid_of_the_song_the_daw_played_on(fast_jack, tmp_path):
    """Counting the pulses it never heard. The first beats after the return are placed off by up to
    ~12 ms on a loaded test server (the returning pulses' stamps settle; under load this check
    failed 1 run in 3 even from three beats on: the follower's reading of a loaded clock, issue 22)."""
    script, result, log, last_pulse, back = _pulled_cable_session(tmp_path, seed=9)
    pulses, start_index = _pulses_from_start(result)
    unheard = [n for kind, n in result.sent if kind == "unheard_pulses"][0]
    song_pulses = np.concatenate([pulses[pulses <= last_pulse],
                                  back + np.arange(-unheard, 0) * (60 / script.bpm / PULSES_PER_BEAT),
                                  pulses[pulses >= back]])
    after = placed_onsets(log)
    after = after[after > back + 3 * 60 / script.bpm]
    errors_ms = grid_errors(after, song_pulses, start_index, 12) * 1e3
    errors_ms = errors_ms[np.isfinite(errors_ms)]
    assert len(errors_ms) > 5 and np.all(np.abs(errors_ms) <= 2.0), (np.round(errors_ms, 2), unheard,
                                                                     result.stderr.strip().splitlines()[-1:])


def test_a_clock_jittering_five_ms_at_200_bpm_keeps_the_notes_on_the_daws_grid(fast_jack, tmp_path):
    """Issue 20: at +-5 ms the follower took jitter for lost pulses and played 15-62 ms off the grid."""
    # Start four beats (1.2 s) after the clock: two (0.6 s, the scripts' default) after cadenza's
    # ports opened was, on a loaded host now and then, before it had drawn its first chord, and
    # the chord went out note by note as drawn (1.2-4.6 ms late).
    script = Script(bpm=200.0, jitter_seconds=0.005, start_beat=4.0, stop_beat=None, end_beat=16.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--timing-log", str(log)], seed=5, on_the_daws_grid=True)
    assert result.exit_code == 0, result.stderr
    # No count of lost pulses is checked here: a loaded JACK server now and then really drops one
    # (385 sent, 384 arrived, measured), and counting it is right. The grid is what a pulse taken
    # wrongly for lost would break (by 12.5 ms); the seeded test above checks the count.
    placed = placed_onsets(log)
    placed_ms = np.abs(errors_from_ideal_grid(placed, result, 6)) * 1e3
    placed_ms = placed_ms[np.isfinite(placed_ms)]  # until the clock's last pulse
    assert len(placed_ms) > 30 and np.percentile(placed_ms, 95) <= 3.0, (
        np.round(np.sort(placed_ms)[-5:], 2), result.stderr.strip().splitlines()[-1:], result.input_story())
    assert_sent_on_time(log)
    assert_first_chord_sent_together(log)


def test_start_sent_as_soon_as_the_port_appears_finds_the_first_chord_drawn(fast_jack, tmp_path):
    """A DAW may press play as soon as it sees cadenza's port. The notes for the downbeat are drawn
    before the control input opens (on a loaded host a Start 0.6 s after the port opened once found
    them not yet drawn, and the first chord went out note by note). This did not fail before on an
    idle host: it keeps the order, it does not reproduce the race."""
    script = Script(start_beat=0.0, stop_beat=None, end_beat=4.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--timing-log", str(log)], seed=3)
    assert result.exit_code == 0, result.stderr
    assert_sent_on_time(log)
    assert_first_chord_sent_together(log)


@pytest.mark.parametrize("clock_lead_ms", [5, 10])
def test_a_daw_clock_sent_ahead_of_its_sound_puts_the_first_chord_on_its_downbeat_on_time(fast_jack, tmp_path, clock_lead_ms):
    """Start marks a downbeat only half a pulse away, so the first note can leave only once Start has
    crossed JACK: heard 2-6 ms late, as a bare echo's is. A DAW lines a clocked instrument up by
    sending its clock ahead of its own sound (a "MIDI clock sync delay"); told that lead with a
    negative --latency-ms, cadenza places the first chord on the DAW's downbeat with time to send it.
    Without the lead (--latency-ms 0, the rest the same) the first chord left 2.1-4.0 ms after its time
    in 7 of 10 runs."""
    script = Script(start_lead_seconds=0.0005, stop_beat=None, end_beat=4.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--latency-ms", str(-clock_lead_ms),
                              "--timing-log", str(log)], seed=1)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    assert_on_grid_point(placed_onsets(log)[0] - clock_lead_ms / 1e3, pulses, start_index)
    late_ms = _first_moment_sent_late_ms(log)
    assert max(late_ms) <= SENT_LIMIT_MS, np.round(late_ms, 2)
    assert "later than --latency-ms asks" not in result.stderr, result.stderr
    assert_sent_on_time(log)


def test_a_pulse_lost_just_before_start_does_not_put_the_song_a_pulse_early(fast_jack, tmp_path):
    """A clean-clone run placed every note one pulse (20.6 ms) early: its loaded server lost a pulse
    shortly before Start, which the follower could tell only half a beat later, after the downbeat.
    The DAW here leaves out the third pulse before Start."""
    script = Script(stop_beat=None, end_beat=8.0, unsent_pulses=(-3,))
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--timing-log", str(log)], seed=2, on_the_daws_grid=True)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    placed = placed_onsets(log)
    # From the second beat on: the loss is told half a beat after Start, with notes placed ahead.
    placed = placed[placed > pulses[start_index + 2 * PULSES_PER_BEAT]]
    placed_ms = np.abs(errors_from_ideal_grid(placed, result, 6)) * 1e3
    placed_ms = placed_ms[np.isfinite(placed_ms)]
    assert len(placed_ms) > 20 and np.percentile(placed_ms, 95) <= 3.0, (
        np.round(np.sort(placed_ms)[-5:], 2), result.stderr.strip().splitlines()[-2:], result.input_story())


@pytest.mark.parametrize("unsent", [(-1,), (-2, -1)])
def test_pulses_lost_right_before_start_do_not_put_the_first_chord_early(fast_jack, tmp_path, unsent):
    """The first chord is placed the moment Start comes; a pulse lost just before it was told only
    half a beat later, so the chord stood on the lost pulse's time: 20.4-20.9 ms early at 120 BPM
    (the bench, 2 of 36 sessions on a server losing pulses). Here the DAW leaves it out."""
    script = Script(start_lead_seconds=0.0005, stop_beat=None, end_beat=4.0, unsent_pulses=unsent)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/16", "--timing-log", str(log)], seed=6, on_the_daws_grid=True)
    assert result.exit_code == 0, result.stderr
    first_ms = errors_from_ideal_grid(placed_onsets(log)[:1], result, 6)[0] * 1e3  # the grid the pulses belonged on
    assert abs(first_ms) <= 2.0, (round(first_ms, 2), result.stderr.strip().splitlines()[-1:], result.input_story())
    # The stream counts the pulses the DAW left out, and any its server lost on the way in (once in
    # a clean-clone run: "2 clock pulses lost" where one was left out).
    counted = re.search(r"(\d+) clock pulses? lost", result.stderr)
    lost_on_the_way = result.lost_on_the_way().get("clock", 0)
    assert counted and len(unsent) <= int(counted.group(1)) <= len(unsent) + lost_on_the_way, (
        result.stderr.strip().splitlines()[-1:], result.input_story())


def test_latency_sends_early_on_the_clock_it_follows(fast_jack, tmp_path):
    # Ten beats: a model that holds chords leaves eighths empty, and seven beats once gave 6 onsets
    # to judge. (The last notes are heard after the last pulse: not judged.)
    script = Script(stop_beat=None, end_beat=10.0)
    log = tmp_path / "timing.log"
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/8", "--latency-ms", "30", "--timing-log", str(log)],
                     seed=4)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    # The first note cannot leave before Start arrives (about 10 ms before the downbeat here), so
    # with 30 ms of latency it is late by the difference; the notes after it are not.
    onsets = placed_onsets(log)
    onsets = onsets[onsets > pulses[start_index + 12]]
    errors_ms = grid_errors(onsets + 0.030, pulses, start_index, 12) * 1e3
    errors_ms = errors_ms[np.isfinite(errors_ms)]
    assert len(errors_ms) > 10 and np.all(np.abs(errors_ms) <= 2.0), (
        np.round(errors_ms, 2), result.stderr.strip().splitlines()[-1:], result.input_story())
    assert_sent_on_time(log, after=pulses[start_index + 12])
    assert len(result.onsets()) > 10, "too little heard"


def test_latency_beyond_the_lookahead_still_plays(fast_jack):
    """--latency-ms 110 on a MIDI clock played nothing ("4067 skips", issue 20): the placer restarted
    at the beat of now + 50 ms, which the latency always put in the past."""
    free = session(Script(stop_beat=None, end_beat=8.0), ["--sync", "midi-clock", "--latency-ms", "110"], seed=7)
    assert free.exit_code == 0, free.stderr
    assert len(free.onsets()) > 20, (len(free.onsets()), free.stderr)


# Was quarantined: 1 clean-clone run in about 60 placed every note one pulse (20.6 ms) early, on a
# server that lost MIDI. A pulse lost in the half beat before Start was counted after the downbeat
# (test_a_pulse_lost_just_before_start_... makes that loss on purpose).
def test_latency_beyond_the_lookahead_plays_on_the_grid_of_the_clock(fast_jack, tmp_path):
    """On the grid within 2 ms from the second beat."""
    log = tmp_path / "timing.log"
    result = session(Script(stop_beat=None, end_beat=8.0), ["--sync", "midi-clock", "--quantize", "1/8",
                                                           "--latency-ms", "110", "--timing-log", str(log)], seed=7)
    assert result.exit_code == 0, result.stderr
    pulses, start_index = _pulses_from_start(result)
    onsets = placed_onsets(log)
    onsets = onsets[onsets > pulses[start_index + 24]]  # after the first beat, which Start came too late for
    # Heard 110 ms after it is sent: the last notes fall after the DAW's last pulse, where its grid is not known.
    errors_ms = grid_errors(onsets + 0.110, pulses, start_index, 12) * 1e3
    errors_ms = errors_ms[np.isfinite(errors_ms)]
    assert len(errors_ms) > 10 and np.all(np.abs(errors_ms) <= 2.0), (np.round(errors_ms, 2), result.stderr.strip().splitlines()[-2:])


@pytest.mark.parametrize("latency_ms", ["150", "500"])
def test_latency_up_to_the_limit_plays_at_cadenzas_own_tempo(fast_jack, latency_ms):
    result = session(Script(stop_beat=None, end_beat=8.0), ["--bpm", "120", "--latency-ms", latency_ms,
                                                           "--seconds", "4"], seed=8)
    assert result.exit_code == 0, result.stderr
    onsets = result.onsets()
    assert len(onsets) > 15, (len(onsets), result.stderr)
    assert onsets.max() - onsets.min() > 2.5, "it stopped playing"


def test_clock_out_leads_at_cadenzas_own_tempo(fast_jack, tmp_path):
    """--bpm 100 --clock-out: Start, then 24 pulses a beat at 100 BPM, notes on the 1/16 grid of
    those pulses, and Stop at the end. (The session's own clock on the control input is ignored
    without --sync.)"""
    log = tmp_path / "timing.log"
    result = session(Script(stop_beat=None, end_beat=8.0), ["--bpm", "100", "--quantize", "1/16", "--clock-out",
                                                            "--seconds", "5", "--timing-log", str(log)], seed=5)
    assert result.exit_code == 0, result.stderr
    sent = [line.split()[2] for line in log.read_text().splitlines()]  # Start may leave before the listener joins
    assert sent.count("FA") == 1 and sent.index("FA") < sent.index("F8"), sent[:3]
    assert [m.type for _, m in result.heard].count("stop") == 1
    # cadenza's part: its pulses left the sender at their times.
    pulses_late_ms = np.array([_sent_late_ms(scheduled, sent) for scheduled, sent, data in timing_lines(log) if data[0] == 0xF8])
    assert np.median(pulses_late_ms) <= SENT_MEDIAN_LIMIT_MS and np.percentile(pulses_late_ms, 90) <= SENT_LIMIT_MS, (
        np.round(np.sort(pulses_late_ms)[-5:], 2))
    pulses = np.array([t for t, m in result.heard if m.type == "clock"])
    # Each pulse's index from its time, so that one the loaded test server drops cannot bend the line.
    index = np.concatenate([[0], np.cumsum(np.round(np.diff(pulses) / np.median(np.diff(pulses))))])
    # The median of the pairwise slopes (Theil-Sen), not a least-squares line: a clean-clone run once
    # heard 100.75 BPM, a run of pulses delivered late by the loaded test server bending the line
    # (a DAW follows the tempo the rest keep); what cadenza sent is checked above.
    bpm = 60 / (theilslopes(pulses, index)[0] * PULSES_PER_BEAT)
    assert abs(bpm - 100) < 0.5, bpm
    # The listener joins after the first pulses: the grid's phase comes from the pulses as sent.
    scheduled = [float(line.split()[0]) for line in log.read_text().splitlines() if line.split()[2] == "F8"]
    # What cadenza decides, exactly: its notes on its own pulses' 1/16 grid (placed, before JACK).
    placed_ms = grid_errors(placed_onsets(log), scheduled, 0, 6) * 1e3
    placed_ms = placed_ms[np.isfinite(placed_ms)]
    assert len(placed_ms) > 20 and np.all(np.abs(placed_ms) <= 2.0), np.round(np.sort(np.abs(placed_ms))[-5:], 2)
    assert_sent_on_time(log)
    # As heard, through a server that on a loaded host now and then delivers a cycle late (a clean-
    # clone run heard 6.3 ms once): the typical note within 2 ms and two periods.
    heard_ms = grid_errors(result.onsets(), scheduled, 0, 6) * 1e3
    heard_ms = heard_ms[np.isfinite(heard_ms)]
    typical_limit_ms = 2.0 + 2 * 64 / 44100 * 1e3
    assert len(heard_ms) > 20 and np.median(np.abs(heard_ms)) <= typical_limit_ms, np.round(np.sort(np.abs(heard_ms))[-5:], 2)
