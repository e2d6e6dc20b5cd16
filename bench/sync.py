"""Playing with others, measured: cadenza following a MIDI clock sent by another process.

`python -m bench.sync` starts its own JACK server (dummy driver, 64-frame periods) and runs
scripted sessions (bench/daw.py: a script plays the DAW). Figures: onset error against the grid
implied by the pulses as sent (p50/p99), the time from a tempo change until onsets lock to the
new grid, Stop to silence, where a turn's answer starts against its bar line, the grid under
+-5 ms of jitter, the first note against the downbeat (beside a bare rtmidi echo's), and a vanished clock.
"""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np

from bench.daw import PULSES_PER_BEAT, Script, Session, echo_downbeat, session
from streamer.jack import close_jack_client

# A pulse further than this (seconds) off the line through its neighbours, and further than
# OFF_LINE_SPREADS of their spread, was held back in the DAW's thread: it says nothing of the
# grid. One sent 34.7 ms late bent the line by 1.9 ms (a test's onsets 2.40 ms off the pulses as
# sent, 0.49 ms off the grid the DAW meant).
OFF_LINE_SECONDS = 0.003
OFF_LINE_SPREADS = 4.0


def grid_errors(onsets: np.ndarray, pulses: list[float], first_pulse: int, pulses_per_step: int,
                breaks: tuple = ()) -> np.ndarray:
    """Each onset minus its nearest grid point (seconds, NaN where it cannot be told); the grid is every `pulses_per_step` pulses
    from pulse index `first_pulse`, through the pulses as sent, their jitter fitted out by a line
    through the 24 pulses around each onset (not across `breaks`, the pulse indices where the
    tempo changed), less any the DAW's thread sent late (`grid_line`). Outside the pulses (before
    the first, after the last: the DAW had stopped) the grid is not known, only extrapolated from
    one side: NaN there."""
    pulses = np.asarray(pulses)
    edges = [0, *sorted(breaks), len(pulses)]
    errors = []
    for onset in onsets:
        index = int(np.searchsorted(pulses, onset))
        if index == 0 or index == len(pulses):
            errors.append(np.nan)
            continue
        segment = max(i for i in range(len(edges) - 1) if edges[i] <= max(index - 1, 0))
        lo, hi = max(index - 12, edges[segment]), min(index + 12, edges[segment + 1])
        if hi - lo < 6:
            errors.append(np.nan)  # too few pulses around it to say where the grid is
            continue
        slope, intercept = grid_line(np.arange(lo, hi), pulses[lo:hi])
        position = (onset - intercept) / slope
        nearest = first_pulse + round((position - first_pulse) / pulses_per_step) * pulses_per_step
        errors.append(onset - (intercept + slope * nearest))
    return np.array(errors)


def grid_line(indices: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """(seconds per pulse, intercept): the least-squares line through pulse `times` (seconds) by
    pulse index, less the pulses off the median line (Theil-Sen: a few late pulses do not bend
    it) by more than OFF_LINE_SECONDS and OFF_LINE_SPREADS robust spreads: a pulse the DAW sent
    late, and any it sent in a burst after it."""
    first, second = np.triu_indices(len(indices), 1)
    median_slope = np.median((times[second] - times[first]) / (indices[second] - indices[first]))
    residuals = times - median_slope * indices
    residuals -= np.median(residuals)
    spread = 1.4826 * np.median(np.abs(residuals))
    on_line = np.abs(residuals) <= max(OFF_LINE_SPREADS * spread, OFF_LINE_SECONDS)
    return tuple(np.polyfit(indices[on_line], times[on_line], 1))


def errors_from_ideal_grid(onsets: np.ndarray, result: "Session", pulses_per_step: int) -> np.ndarray:
    """Each onset minus the nearest point of the DAW's grid (seconds): every `pulses_per_step`
    pulses from Start, at the times the pulses belonged before their jitter; NaN before Start and
    after the clock's last pulse."""
    grid = np.array(result.times("grid"))
    points = grid[downbeat_grid_index(result)::pulses_per_step]
    step = points[1] - points[0]
    nearest = np.abs(onsets[:, None] - points[None, :]).argmin(axis=1)
    errors = onsets - points[nearest]
    # After the clock's last pulse there is no grid (the stream plays on until it sees the clock gone).
    errors[(onsets < points[0] - step / 2) | (onsets > points[-1] + step / 2)] = np.nan
    return errors


def downbeat_grid_index(result: "Session") -> int:
    """The index, among every pulse the DAW's grid holds (sent or left out), of the pulse Start marked."""
    start = result.times("start")[0]
    return int(np.sum(np.array(result.times("clock")) < start) + np.sum(np.array(result.times("unsent")) < start))


def still_sounding_after(heard: list, moment: float) -> tuple[int, float | None]:
    """(notes sounding at `moment` never released, the time the last of them was released)."""
    sounding: dict[int, float] = {}
    last_release = None
    for arrival, message in heard:
        if message.type == "note_on" and message.velocity > 0:
            sounding[message.note] = arrival
        elif message.type in ("note_on", "note_off") or (message.type == "control_change" and message.control == 123):
            released = list(sounding) if message.type == "control_change" else [message.note]
            for note in released:
                if note in sounding and sounding[note] <= moment < arrival + 1e-9:
                    last_release = arrival if last_release is None else max(last_release, arrival)
                sounding.pop(note, None)
    return len(sounding), last_release


def figures() -> list[tuple[str, str, str]]:
    rows = []
    script = Script(tempo_changes={6.0: 90.0}, stop_beat=12.0, end_beat=14.0)
    result, placed = _with_timing_log(script, ["--sync", "midi-clock", "--quantize", "1/16"])
    start_index = sum(1 for t in result.times("clock") if t < result.times("start")[0])
    change_time = result.times("grid")[start_index + 6 * PULSES_PER_BEAT]
    stop = result.times("stop")[0]
    placed, heard = placed[placed < stop], result.onsets()[result.onsets() < stop]
    placed_ms = errors_from_ideal_grid(placed, result, 6) * 1e3
    heard_ms = _finite(np.abs(errors_from_ideal_grid(heard, result, 6)) * 1e3)
    settled = heard[(heard < change_time) | (heard > change_time + 60 / 90)]  # all but the beat after the change
    settled_ms = _finite(np.abs(errors_from_ideal_grid(settled, result, 6)) * 1e3)
    rows.append(("sync: +-1 ms jitter, 16th grid: onset error as heard, p50 / p99 / max (ms)",
                 f"{np.percentile(settled_ms, 50):.2f} / {np.percentile(settled_ms, 99):.2f} / {settled_ms.max():.2f}",
                 f"{len(settled)} onsets (the beat after the tempo change apart); all {len(heard)}: max {heard_ms.max():.2f}"))
    off = placed[(placed > change_time) & (np.abs(placed_ms) > 2.0)]
    lock = (off.max() - change_time) if len(off) else 0.0
    rows.append(("sync: tempo change 120 -> 90: last onset placed > 2 ms off the new grid, after the change (s)",
                 f"{lock:.3f}", f"one beat at 90 = {60 / 90:.3f} s"))
    left, released = still_sounding_after(result.heard, stop)
    rows.append(("sync: Stop to silence (ms)", f"{((released or stop) - stop) * 1e3:.1f}", f"goal <= 50; {left} left on"))
    turns = session(Script(phrase_beat=2.0, stop_beat=None, end_beat=16.0), ["--sync", "midi-clock", "--turns", "1"])
    pulses = turns.times("clock")
    start_index = sum(1 for t in pulses if t < turns.times("start")[0])
    answer = [t for t in turns.onsets() if t > turns.times("note_off")[-1]]
    if answer:
        bars = np.array(pulses[start_index::96])
        offset = (answer[0] - bars[np.argmin(np.abs(bars - answer[0]))]) * 1e3
        rows.append(("turns: answer's first note minus its bar line (ms)", f"{offset:+.2f}", "goal within 2 ms"))
    rows += _jitter_rows() + _downbeat_rows() + _vanish_rows()
    return rows


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _with_timing_log(script: Script, stream_args: list, seed: int = 0) -> tuple[Session, np.ndarray]:
    """A session and the onsets cadenza placed (its --timing-log: what it scheduled, before JACK)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "timing.log")
        result = session(script, [*stream_args, "--timing-log", log], seed)
        lines = open(log).read().splitlines()
    placed = np.array([float(line.split()[0]) for line in lines if line.split()[2].startswith("9")])
    return result, placed


def _jitter_rows() -> list:
    rows = []
    for bpm in (60.0, 120.0, 200.0):
        script = Script(bpm=bpm, jitter_seconds=0.005, stop_beat=None, end_beat=24.0)
        result, placed = _with_timing_log(script, ["--sync", "midi-clock", "--quantize", "1/16"])
        placed_ms = _finite(np.abs(errors_from_ideal_grid(placed, result, 6)) * 1e3)
        heard_ms = _finite(np.abs(errors_from_ideal_grid(result.onsets(), result, 6)) * 1e3)
        lost = "pulses lost" in result.stderr
        rows.append((f"sync: +-5 ms clock jitter at {bpm:.0f} BPM: 16th-grid error placed / heard, p95 (ms)",
                     f"{np.percentile(placed_ms, 95):.2f} / {np.percentile(heard_ms, 95):.2f}",
                     f"goal <= 3; max {placed_ms.max():.2f} / {heard_ms.max():.2f}; {len(placed)} onsets"
                     + ("; the follower counted a lost pulse" if lost else "")))
    return rows


def _downbeat_rows(sessions: int = 12, clock_lead_seconds: float = 0.005) -> list:
    """The first note against the downbeat, Start sent 0.5 ms before the first pulse (as DAWs do),
    over a few sessions: one Start is one sample, and JACK's cycles make each land differently.
    Beside it, a bare rtmidi echo answering Start from its input callback (echo_downbeat), and the
    way a DAW lines a clocked instrument up with its own sound: its clock sent `clock_lead_seconds`
    ahead of it (a "MIDI clock sync delay"), cadenza told to wait as long (`--latency-ms`, negative)."""
    placed_ms, heard_ms, echo_ms, chord_ms, lost = [], [], [], [], 0
    for seed in range(sessions):
        placed, heard, chord, pulses_lost = _first_notes(seed, 0.0)
        placed_ms.append(placed), heard_ms.append(heard), chord_ms.append(chord)
        lost += pulses_lost
        echo_ms.append(echo_downbeat(Script(start_lead_seconds=0.0005, stop_beat=None, end_beat=1.0), seed) * 1e3)
    led = np.array([_first_notes(seed, clock_lead_seconds) for seed in range(sessions)])
    against_echo = np.array(heard_ms) - np.median(echo_ms)
    lead_ms = clock_lead_seconds * 1e3
    return [("sync: Start 0.5 ms before the first pulse: first note minus the downbeat, placed / heard, "
             f"median (max of {sessions}) (ms)",
             f"{np.median(placed_ms):+.2f} ({max(placed_ms, key=abs):+.2f}) / {np.median(heard_ms):+.2f} ({max(heard_ms, key=abs):+.2f})",
             f"goal within 2; heard within 2: {sum(abs(h) <= 2 for h in heard_ms)} of {sessions}"
             + _losses(lost)),
            ("sync: the same, the last note of the first chord heard, median (max) (ms)",
             f"{np.median(chord_ms):+.2f} ({max(chord_ms, key=abs):+.2f})", "the chord together, not rolled"),
            ("sync: the same, a bare rtmidi echo answering Start in cadenza's place: heard, median (max) (ms)",
             f"{np.median(echo_ms):+.2f} ({max(echo_ms):+.2f})", "Start's way in and the note's way out, plainly"),
            ("sync: cadenza's first note heard minus the echo's median, median (max) (ms)",
             f"{np.median(against_echo):+.2f} ({against_echo.max():+.2f})", "below 0: sooner than the echo"),
            (f"sync: the DAW's clock {lead_ms:.0f} ms ahead of its sound, --latency-ms {-lead_ms:.0f}: first note minus "
             "the DAW's downbeat, placed / heard, median (max) (ms)",
             f"{np.median(led[:, 0]):+.2f} ({max(led[:, 0], key=abs):+.2f}) / {np.median(led[:, 1]):+.2f} ({max(led[:, 1], key=abs):+.2f})",
             f"goal within 2; heard within 2: {int(np.sum(np.abs(led[:, 1]) <= 2))} of {sessions}; "
             f"last of the first chord heard {np.median(led[:, 2]):+.2f} ({max(led[:, 2], key=abs):+.2f})"
             + _losses(int(led[:, 3].sum())))]


def _losses(sessions_losing: int) -> str:
    """Says in how many sessions the server lost clock pulses (the follower counts them back in; one
    lost near Start has put a first note a pulse, about 20 ms, off)."""
    return f"; the server lost clock pulses in {sessions_losing}" if sessions_losing else ""


def _first_notes(seed: int, clock_lead_seconds: float) -> tuple[float, float, float, bool]:
    """One session, Start 0.5 ms before the first pulse: (the first note placed, the first note heard,
    the first chord's last note heard), each minus the DAW's downbeat (ms), and whether the follower
    counted clock pulses the server lost. The DAW sends its clock `clock_lead_seconds` ahead of its
    own sound, so its downbeat is the first pulse plus that; and cadenza is told to send that much late."""
    script = Script(start_lead_seconds=0.0005, stop_beat=None, end_beat=4.0)
    latency = ["--latency-ms", f"{-clock_lead_seconds * 1e3:g}"] if clock_lead_seconds else []
    result, placed = _with_timing_log(script, ["--sync", "midi-clock", "--quantize", "1/16", *latency], seed=seed)
    downbeat = result.times("grid")[downbeat_grid_index(result)] + clock_lead_seconds
    chord_size = int(np.sum(placed == placed[0]))  # the notes placed on the downbeat
    heard = np.sort(result.onsets())
    return ((placed[0] - downbeat) * 1e3, (heard[0] - downbeat) * 1e3, (heard[chord_size - 1] - downbeat) * 1e3,
            "pulses lost" in result.stderr)


def _vanish_rows() -> list:
    script = Script(stop_beat=None, end_beat=12.0, vanish_beat=4.0, vanish_beats=4.0)
    result = session(script, ["--sync", "midi-clock", "--quantize", "1/8"])
    pulses = np.array(result.times("clock"))
    vanished = result.times("vanish")[0]
    last_pulse, back = pulses[pulses < vanished].max(), pulses[pulses > vanished].min()
    releases = [t for t, m in result.heard if last_pulse < t < back and (
        m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)
        or (m.type == "control_change" and m.control == 123))]
    onsets_while_gone = [t for t in result.onsets() if last_pulse + 2 * 60 / script.bpm + 0.05 < t < back]
    silent = (max(releases) - last_pulse) * 1e3 if releases else float("nan")
    return [("sync: clock pulled out at 120 BPM: last pulse to silence (ms)", f"{silent:.0f}",
             f"goal <= {2 * 60 / script.bpm * 1e3 + 50:.0f} (two beats + 50 ms); "
             f"{len(onsets_while_gone)} notes after that, {len(result.onsets()[result.onsets() > back])} after it came back")]


def main(argv=None) -> None:
    name = f"cadenza-sync-{os.getpid()}"
    jackd = subprocess.Popen(["jackd", "-n", name, "-r", "-d", "dummy", "-r", "44100", "-p", "64"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], check=True, capture_output=True)
        for name_, value, goal in figures():
            print(f"{name_:<88} {value:>22}  {goal}")
    finally:
        close_jack_client()
        jackd.send_signal(signal.SIGTERM)
        jackd.wait(timeout=10)


if __name__ == "__main__":
    main()
