"""Soak: a long stream under a random control flood, checked for leaks, hanging notes and drift.

`python -m bench.soak --seconds 1800` (`make soak`) starts its own JACK server (dummy driver);
the test suite runs `soak(...)` for about a minute on its own server. A flood process sends the
stream's control input a random mix at `--rate` messages per second: controllers (temperature,
tempo, density, key, all notes off, any other), program changes, MIDI clock and active sensing,
SysEx, truncated and stray bytes, and now and then a short phrase of notes. At the end it checks:
- resident memory (engine + sender) grew at most 5 % from the end of the first fifth of the run;
- no note left sounding (a note-on with no note-off, all-notes-off counting for every note);
- the timing error's p99 over the last fifth is no worse than over the first fifth (+1 ms);
- the stream exited 0 and its --record take reads back.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import rtmidi

from bench.stream_timing import BACKEND, REPO, StampedListener, _family, _status_mb, match_messages, private_jack_server
from streamer.outputs import midi_backend

PERIOD_FRAMES = 256


def flood_message(rng: np.random.Generator) -> list[int]:
    """One random message for the control input, as raw bytes (some of them malformed)."""
    kind = rng.choice(["cc", "program", "clock", "sysex", "junk", "position"], p=[0.45, 0.1, 0.3, 0.05, 0.05, 0.05])
    channel = int(rng.integers(16))
    if kind == "cc":
        controller = int(rng.choice([1, 71, 72, 74, 7, 10, 64, 123, int(rng.integers(128))]))
        if controller == 123 and rng.random() < 0.8:
            controller = 1  # all-notes-off now and then, not a fifth of all CCs
        return [0xB0 | channel, controller, int(rng.integers(128))]
    if kind == "program":
        return [0xC0 | channel, int(rng.integers(128))]
    if kind == "clock":
        return [int(rng.choice([0xF8, 0xFA, 0xFB, 0xFC, 0xFE]))]
    if kind == "sysex":
        return [0xF0, *map(int, rng.integers(0, 128, int(rng.integers(1, 40)))), 0xF7]
    if kind == "position":
        return [0xF2, int(rng.integers(128)), int(rng.integers(128))]
    return [int(b) for b in rng.integers(0, 256, int(rng.integers(1, 4)))]  # whatever: stray, truncated bytes


def flood(port_name: str, rate: float, stop: threading.Event, seed: int = 0) -> dict:
    """Send the flood to the input port ending in `port_name` until `stop`; counts per kind."""
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="soak-flood")
    ports = out.get_ports()
    out.open_port(next(i for i, name in enumerate(ports) if name.endswith(port_name)))
    rng = np.random.default_rng(seed)
    sent = {"messages": 0, "phrases": 0}
    next_phrase = time.monotonic() + 5.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_phrase:  # the player plays a few notes: the stream listens, then answers
                for pitch in rng.integers(48, 84, 4):
                    out.send_message([0x90, int(pitch), 80])
                    stop.wait(0.08)
                    out.send_message([0x80, int(pitch), 0])
                sent["phrases"] += 1
                next_phrase = now + float(rng.uniform(6.0, 12.0))
            try:
                out.send_message(flood_message(rng))
                sent["messages"] += 1
            except (ValueError, rtmidi.InvalidUseError, rtmidi.SystemError):
                pass  # rtmidi refuses some junk outright (an empty or unknown status): never sent
            stop.wait(1.0 / rate)
    finally:
        out.close_port()
        out.delete()
    return sent


def hanging_notes(arrivals: list) -> int:
    """Notes the listener heard start and never heard end (all-notes-off ends a channel's notes)."""
    sounding: dict[tuple[int, int], int] = {}
    for _, data in arrivals:
        status, channel = data[0] & 0xF0, data[0] & 0x0F
        if status == 0x90 and data[2] > 0:
            sounding[(channel, data[1])] = sounding.get((channel, data[1]), 0) + 1
        elif status == 0x80 or (status == 0x90 and data[2] == 0):
            if sounding.get((channel, data[1])):
                sounding[(channel, data[1])] -= 1
        elif status == 0xB0 and data[1] in (120, 123):
            sounding = {key: 0 if key[0] == channel else count for key, count in sounding.items()}
    return sum(sounding.values())


@dataclass
class SoakResult:
    seconds: float
    messages_flooded: int
    phrases: int
    notes_heard: int
    rss_mb_start: float
    rss_mb_end: float
    p99_ms_start: float
    p99_ms_end: float
    hanging: int
    exit_code: int
    record_notes: int
    stderr_tail: str

    @property
    def rss_growth(self) -> float:
        return self.rss_mb_end / self.rss_mb_start - 1.0

    def failures(self) -> list[str]:
        problems = []
        if self.rss_growth > 0.05:
            problems.append(f"RSS grew {self.rss_growth:.1%} ({self.rss_mb_start:.0f} -> {self.rss_mb_end:.0f} MB)")
        if self.hanging:
            problems.append(f"{self.hanging} notes left sounding")
        if self.p99_ms_end > self.p99_ms_start + 1.0:
            problems.append(f"timing p99 {self.p99_ms_start:.2f} -> {self.p99_ms_end:.2f} ms")
        if self.exit_code != 0:
            problems.append(f"exit code {self.exit_code}: {self.stderr_tail}")
        if self.record_notes < 1:
            problems.append("the --record take holds no notes")
        return problems


def _rss_mb(pids: list) -> float:
    return sum(_status_mb(pid, "VmRSS") for pid in pids)


def soak(seconds: float, rate: float = 200.0, folder: Path | None = None, seed: int = 0) -> SoakResult:
    """Stream for `seconds` under the flood on the JACK server named by JACK_DEFAULT_SERVER."""
    folder = Path(folder or tempfile.mkdtemp())
    port = f"soak-{os.getpid()}"
    log, record = folder / "timing.log", folder / "take.mid"
    backend = midi_backend("jack")
    inputs_before = set(backend.get_output_names())
    stream = subprocess.Popen(
        [sys.executable, "-m", "cadenza_cli", "stream", "--midi-api", "jack", "--port", port, "--no-keys",
         "--seed", str(seed), "--timing-log", str(log), "--record", str(record)],
        cwd=REPO, env=dict(os.environ, MIDO_BACKEND=BACKEND), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 60
    while not any(name.endswith(f":{port}") for name in backend.get_input_names()):
        if time.monotonic() > deadline or stream.poll() is not None:
            stream.kill()
            raise RuntimeError(f"the stream did not open its port: {stream.communicate()[1][-500:]}")
        time.sleep(0.05)
    listener = StampedListener(f":{port}")
    control = None
    while control is None and time.monotonic() < deadline:
        control = next((n for n in set(backend.get_output_names()) - inputs_before if "cadenza-control" in n), None)
        time.sleep(0.05)
    if control is None:
        stream.kill()
        raise RuntimeError("the stream did not open its control input")
    stop, counts = threading.Event(), {}
    flooder = threading.Thread(target=lambda: counts.update(flood(control, rate, stop, seed)), daemon=True)
    flooder.start()
    started = time.monotonic()
    pids = _family(stream.pid)
    warm_up = started + seconds / 5
    rss_start = None
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
        if rss_start is None and time.monotonic() >= warm_up:
            rss_start = _rss_mb(pids)
    rss_end = _rss_mb(pids)
    stop.set()
    flooder.join(timeout=10)
    stream.send_signal(signal.SIGINT)
    _, stderr = stream.communicate(timeout=30)
    time.sleep(0.3)  # the last note-offs and all-notes-off reach the listener
    arrivals = listener.arrivals()
    errors_ms = _errors_by_time(log, arrivals)
    fifth = seconds / 5
    first = [e for t, e in errors_ms if t - started < fifth]
    last = [e for t, e in errors_ms if t - started > seconds - fifth]
    try:
        record_notes = sum(1 for m in mido.MidiFile(str(record)) if m.type == "note_on" and m.velocity > 0)
    except (OSError, EOFError, ValueError):
        record_notes = 0
    return SoakResult(
        seconds=seconds, messages_flooded=counts.get("messages", 0), phrases=counts.get("phrases", 0),
        notes_heard=sum(1 for _, d in arrivals if d[0] & 0xF0 == 0x90 and d[2] > 0),
        rss_mb_start=rss_start or rss_end, rss_mb_end=rss_end,
        p99_ms_start=float(np.percentile(first, 99)) if first else float("nan"),
        p99_ms_end=float(np.percentile(last, 99)) if last else float("nan"),
        hanging=hanging_notes(arrivals), exit_code=stream.returncode, record_notes=record_notes,
        stderr_tail=" | ".join(stderr.strip().splitlines()[-3:]))


def _errors_by_time(log: Path, arrivals: list) -> list[tuple[float, float]]:
    """(arrival monotonic seconds, timing error ms) for every message matched to its schedule."""
    matched, _ = match_messages(log, arrivals)
    return [(arrived, error * 1e3) for arrived, error, _ in matched]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--rate", type=float, default=200.0, help="Flood messages per second.")
    args = parser.parse_args(argv)
    with private_jack_server("soak", PERIOD_FRAMES):
        result = soak(args.seconds, args.rate)
    print(result)
    problems = result.failures()
    print("soak: " + ("; ".join(problems) if problems else "passed"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
