"""It listens, live: MAESTRO calls played into a stream's control input on JACK, its answers
heard on its port and scored as `cadenza evaluate --continuation` scores them offline.

`python -m bench.listen [--prompts 24] [--parallel 6]` starts its own JACK server (dummy driver)
and, for each way of answering, runs one stream per call at the shipped defaults:
- `free`: free call and response: the call is played, cadenza answers when the player stops;
- `turns`: `--sync midi-clock --turns 2`, a DAW's clock at 120 BPM with Start, the call played
  after Start; cadenza answers at the bar line after it for two bars.
A player plays each call (200 notes from inside a MAESTRO test piece, sustain applied as at
ingest) with its own timing, into a virtual port the stream reads (`--control-port`). The answer
is every note heard after the call's last note (the first 200 in free play). The same calls are
continued offline through `render`'s code path (several draws); the offline answers and both
references (the piece's own continuation: 1; an unrelated piece's: 0) are cut to each live
answer's length, and live and offline are scored alike. They should agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import mido
import numpy as np
import rtmidi

from bench.stream_timing import BACKEND, REPO, StampedListener, private_jack_server
from bench.daw import ClockSender, Script, stop_stream
from models.notes import NOTE_DTYPE

MODES = {"free": [], "turns": ["--sync", "midi-clock", "--turns", "2"]}
BPM = 120.0
ANSWER_NOTES = 200  # free play: the answer scored is its first 200 notes, as offline
QUIET_SECONDS = 2.0  # turns: the answer is over when nothing more is heard for this long


@dataclass
class LiveAnswer:
    notes: np.ndarray  # NOTE_DTYPE, the answer as heard (step from the previous onset, the first 0)
    call_seconds: float  # how long the call took to play
    stderr: str
    exit_code: int | None


def call_events(call: np.ndarray) -> list[tuple[float, list[int]]]:
    """(seconds from the call's start, MIDI bytes), in order. A key struck again while it sounds is
    released first, as a piano's key must be."""
    onsets = np.cumsum(call["step"].astype(np.float64))
    events = []
    for onset, note in zip(onsets, call):
        end = onset + max(float(note["duration"]), 0.01)
        events += [(onset, 1, [0x90, int(note["pitch"]), int(max(note["velocity"], 1))]), (end, 0, [0x80, int(note["pitch"]), 0])]
    events.sort(key=lambda event: (event[0], event[1]))  # at one moment, releases before strikes
    sounding, ordered = {}, []
    for when, is_on, data in events:
        pitch = data[1]
        if is_on:
            if sounding.get(pitch):
                ordered.append((when, [0x80, pitch, 0]))
            sounding[pitch] = sounding.get(pitch, 0) + 1
            ordered.append((when, data))
        elif sounding.get(pitch):
            sounding[pitch] -= 1
            if sounding[pitch] == 0:
                ordered.append((when, data))
    return ordered


def play_call(out, lock: threading.Lock, call: np.ndarray, start: float) -> float:
    """Send the call through `out` from monotonic time `start`; returns when its last note ended."""
    when = start
    for offset, data in call_events(call):
        when = start + offset
        if (wait := when - time.monotonic()) > 0:
            time.sleep(wait)
        with lock:
            out.send_message(data)
    return when


def heard_notes(heard: list, after: float) -> np.ndarray:
    """The notes heard (arrival seconds, mido message) that start after `after`, as NOTE_DTYPE."""
    started, notes = {}, []
    for arrival, message in heard:
        if message.type == "note_on" and message.velocity > 0:
            started[message.note] = (arrival, message.velocity)
        elif message.type in ("note_on", "note_off") and message.note in started:
            onset, velocity = started.pop(message.note)
            notes.append((onset, message.note, arrival - onset, velocity))
    notes = sorted(note for note in notes if note[0] > after)
    result = np.zeros(len(notes), NOTE_DTYPE)
    if notes:
        onsets = np.array([note[0] for note in notes])
        result["pitch"] = [note[1] for note in notes]
        result["step"] = np.diff(onsets, prepend=onsets[0])
        result["duration"] = [note[2] for note in notes]
        result["velocity"] = [note[3] for note in notes]
    return result


def _wait_for_ports(stream: subprocess.Popen, port: str, timeout: float = 60.0) -> None:
    from streamer.outputs import midi_backend

    backend, deadline = midi_backend("jack"), time.monotonic() + timeout
    while not any(name.endswith(f":{port}") for name in backend.get_input_names()):
        if time.monotonic() > deadline or stream.poll() is not None:
            raise RuntimeError(f"the stream did not start: {stream.communicate(timeout=10)[1][-800:]}")
        time.sleep(0.05)


def live_answer(call: np.ndarray, mode: str, tag: str, seed: int, answer_notes: int = ANSWER_NOTES,
                model: Path | None = None) -> LiveAnswer:
    """One stream answering one call, on the server JACK_DEFAULT_SERVER names."""
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"player-{tag}")
    player.open_virtual_port(f"call-{tag}")
    port = f"answer-{tag}"
    stream = subprocess.Popen([sys.executable, "-m", "cadenza_cli", "stream", "--midi-api", "jack", "--port", port,
                               "--control-port", f"call-{tag}", "--no-keys", "--seed", str(seed), *MODES[mode],
                               *(["--model", str(model)] if model else [])],
                              cwd=REPO, env=dict(os.environ, MIDO_BACKEND=BACKEND, PYTHONFAULTHANDLER="1"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    clock, stderr = None, ""
    try:
        _wait_for_ports(stream, port)
        listener = StampedListener(f":{port}", poll_seconds=0.005)
        lock = threading.Lock()
        if mode == "turns":
            call_beats = float(np.sum(call["step"])) * BPM / 60
            clock = ClockSender(None, Script(bpm=BPM, start_beat=1.0, stop_beat=None, end_beat=call_beats + 64.0),
                                seed=seed, out=player, precise=False)
            lock = clock.lock
            clock.thread.start()
            while not any(kind == "start" for kind, _ in list(clock.sent)):
                time.sleep(0.01)
        started = time.monotonic() + 0.5
        call_end = play_call(player, lock, call, started)
        deadline = call_end + 90.0
        while time.monotonic() < deadline:
            time.sleep(0.25)
            onsets = [t for t in listener.polled_note_ons() if t > call_end]
            if mode == "free" and len(onsets) >= answer_notes + 1:
                break
            if mode == "turns" and onsets and time.monotonic() - onsets[-1] > QUIET_SECONDS:
                break
    finally:
        if clock is not None:
            clock.finish.set()
            clock.thread.join(timeout=5)
            clock.out = None  # the player's client is freed with `player`, here: a clock kept alive
            # by its thread's cycle would free it in the collector, later, and crash there
        stderr = stop_stream(stream)
        player.close_port()
    heard = [(arrival, mido.Message.from_bytes(data)) for arrival, data in listener.arrivals()]
    notes = heard_notes(heard, call_end)
    if mode == "free":
        notes = notes[:answer_notes]
    if len(notes):
        notes[0]["step"] = 0.0
    return LiveAnswer(notes, call_end - started, stderr, stream.returncode)


def live_answer_elsewhere(call: np.ndarray, mode: str, tag: str, seed: int, model: Path | None = None) -> LiveAnswer:
    """`live_answer` in a process of its own: each session's JACK clients live and die with it (a
    dozen sessions' clients in one process crashed it when they were freed)."""
    request = json.dumps({"call": call.tolist(), "mode": mode, "tag": tag, "seed": seed,
                          "model": str(model) if model else None})
    result = subprocess.run([sys.executable, "-m", "bench.listen", "--session", request], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return LiveAnswer(np.zeros(0, NOTE_DTYPE), 0.0, result.stderr[-2000:], result.returncode)
    data = json.loads(lines[-1])
    notes = np.array([tuple(row) for row in data["notes"]], dtype=NOTE_DTYPE)
    return LiveAnswer(notes, data["call_seconds"], data["stderr"], data["exit_code"])


def _serve_session(request: str) -> None:
    data = json.loads(request)
    call = np.array([tuple(row) for row in data["call"]], dtype=NOTE_DTYPE)
    answer = live_answer(call, data["mode"], data["tag"], data["seed"], model=Path(data["model"]) if data["model"] else None)
    print(json.dumps({"notes": answer.notes.tolist(), "call_seconds": answer.call_seconds, "stderr": answer.stderr,
                      "exit_code": answer.exit_code}), flush=True)


def live_answers(model: Path, prompts: np.ndarray, mode: str, parallel: int, seed: int) -> list[LiveAnswer]:
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda item: live_answer_elsewhere(item[1], mode, f"{mode}{item[0]}", seed + item[0], model),
                             enumerate(prompts)))


def offline_answers(model: Path, prompts: np.ndarray, lengths: list[int], draws: int) -> list[list[np.ndarray]]:
    """`draws` offline continuations of every call (render's code path, the card's sampling), each
    cut to the live answer's length."""
    from models.options import sampling_from_options
    from models.runtime import Runtime, read_card
    from training.continuation import continue_calls

    sampling = sampling_from_options(read_card(model), {})
    result = []
    for draw in range(draws):
        generated = continue_calls(Runtime(model, seed=1000 + draw), sampling, prompts, max(max(lengths), 2))
        result.append([piece[:length] for piece, length in zip(generated, lengths)])
    return result


def kept_calls(calls, indices: list[int], lengths: list[int]):
    """The calls answered, each reference cut to its answer's length: a 2-bar answer is judged
    against the pianist's next 2 bars' worth of notes, not 200 (its range and figures are fewer)."""
    return replace(calls, prompts=calls.prompts[indices], real=[calls.real[i][:n] for i, n in zip(indices, lengths)],
                   unrelated=[calls.unrelated[i][:n] for i, n in zip(indices, lengths)],
                   sources=[calls.sources[i] for i in indices])


def compare(model: Path, data: Path, prompts: int, parallel: int, draws: int, seed: int, modes) -> dict:
    from training.continuation import ContinuationSettings, coherence, draw_calls
    from training.prepare import load_split

    calls = draw_calls(load_split(data, "test"), ContinuationSettings(prompts=prompts, seed=seed))
    report = {}
    for mode in modes:
        started = time.monotonic()
        live = live_answers(model, calls.prompts, mode, parallel, seed)
        kept = [i for i, answer in enumerate(live) if len(answer.notes) >= 4]
        lengths = [len(live[i].notes) for i in kept]
        subset = kept_calls(calls, kept, lengths)
        offline = [coherence(subset, answers) for answers in offline_answers(model, subset.prompts, lengths, draws)]
        live_score = coherence(subset, [live[i].notes for i in kept])
        offline_mean = float(np.mean([result["coherence"] for result in offline]))
        report[mode] = {
            "prompts": prompts, "answered": len(kept), "answer_notes_median": float(np.median(lengths)) if lengths else 0,
            "live": live_score, "offline_draws": [result["coherence"] for result in offline],
            "offline_figures": {figure: round(float(np.mean([r["figures"][figure]["coherence"] for r in offline])), 4)
                                for figure in live_score["figures"]},
            "difference": round(live_score["coherence"] - offline_mean, 4),
            "seconds": round(time.monotonic() - started, 1),
            "failed": [{"prompt": i, "exit": a.exit_code, "stderr": a.stderr[-1500:]} for i, a in enumerate(live)
                       if i not in kept or a.exit_code != 0],
        }
    return report


def print_report(report: dict) -> None:
    for mode, result in report.items():
        live = result["live"]
        print(f"\n{mode}: {result['answered']} of {result['prompts']} calls answered live "
              f"(median {result['answer_notes_median']:.0f} notes), {result['seconds']:.0f} s")
        print(f"{'figure':<16}{'live':>8}{'offline':>9}")
        for figure, row in live["figures"].items():
            print(f"{figure:<16}{row['coherence']:>8.2f}{result['offline_figures'][figure]:>9.2f}")
        draws = result["offline_draws"]
        print(f"coherence: live {live['coherence']:.3f}, offline {np.mean(draws):.3f} "
              f"(draws {min(draws):.3f}..{max(draws):.3f}); live - offline {result['difference']:+.3f} (goal within 0.10)")
        for failure in result["failed"]:
            print(f"  call {failure['prompt']}: exit {failure['exit']}: {failure['stderr'].strip().splitlines()[-1:]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "maestro", help="written by `cadenza prepare`")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--parallel", type=int, default=8, help="streams answering at once")
    parser.add_argument("--draws", type=int, default=5, help="offline continuations of each call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="*", choices=list(MODES), default=list(MODES))
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--session", help=argparse.SUPPRESS)  # live_answer_elsewhere's child
    arguments = parser.parse_args(argv)
    if arguments.session:
        _serve_session(arguments.session)
        return
    with private_jack_server("listen", period_frames=256):
        report = compare(arguments.model, arguments.data, arguments.prompts, arguments.parallel, arguments.draws,
                         arguments.seed, arguments.modes)
        print_report(report)
        if arguments.json:
            arguments.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
