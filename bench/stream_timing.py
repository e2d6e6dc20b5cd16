"""A live stream through JACK, heard by a listener in this (separate) process.

Per message: received minus scheduled (the streamer logs each message's scheduled monotonic time;
CLOCK_MONOTONIC is shared across processes). Also late notes, the streamer's CPU and peak RSS,
and the time from launch to the first note received.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido
import numpy as np

from streamer.midi_input import PolledMidiInput

REPO = Path(__file__).resolve().parent.parent
BACKEND = "mido.backends.rtmidi/UNIX_JACK"
PERIOD_FRAMES, RATE = 64, 44100


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(seconds: float = 60.0) -> list[tuple[str, str, str]]:
    name = f"cadenza-bench-{os.getpid()}"
    jackd = subprocess.Popen(["jackd", "-n", name, "-r", "-d", "dummy", "-r", str(RATE), "-p", str(PERIOD_FRAMES)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = name
    subprocess.run(["jack_wait", "-w", "-t", "10"], check=True, capture_output=True)
    log = Path(tempfile.mkdtemp()) / "timing.log"
    received: list[tuple[float, bytes]] = []
    try:
        backend = mido.Backend(BACKEND, load=True)
        launched = time.monotonic()
        stream = subprocess.Popen([sys.executable, "-m", "cadenza_cli", "stream", "--midi-api", "jack", "--port", "bench",
                                   "--no-keys", "--seed", "1", "--timing-log", str(log)],
                                  cwd=REPO, env=dict(os.environ, MIDO_BACKEND=BACKEND),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = None
        while port is None:
            port = next((n for n in backend.get_input_names() if n.endswith(":bench")), None)
            time.sleep(0.002)
        listener = PolledMidiInput(backend, port, lambda m: received.append((time.monotonic(), bytes(m.bytes()))),
                                   client_name="bench-listener", poll_seconds=0.0002)
        cpu_start, wall_start = None, None
        while not any(b[0] & 0xF0 == 0x90 for _, b in received):
            time.sleep(0.001)
        first_note = next(t for t, b in received if b[0] & 0xF0 == 0x90) - launched
        cpu_start, wall_start = _cpu_seconds(stream.pid), time.monotonic()
        time.sleep(seconds)
        cpu = (_cpu_seconds(stream.pid) - cpu_start) / (time.monotonic() - wall_start)
        rss = _peak_rss_mb(stream.pid)
        stream.send_signal(signal.SIGINT)
        stream.wait(timeout=15)
        time.sleep(0.2)
        listener.close()
    finally:
        jackd.send_signal(signal.SIGTERM)
        jackd.wait(timeout=10)
    scheduled = []
    for line in log.read_text().splitlines():
        when, _, *hex_bytes = line.split()
        scheduled.append((float(when), bytes.fromhex("".join(hex_bytes))))
    errors, pending = [], {}
    for when, data in scheduled:
        pending.setdefault(data, []).append(when)
    for arrived, data in received:
        queue = pending.get(data, [])
        # Note-offs sent while silencing at the stop are not in the log: never match them to a
        # scheduled message from long ago.
        while queue and queue[0] < arrived - 0.5:
            queue.pop(0)
        if queue and queue[0] <= arrived + 0.05:
            errors.append(arrived - queue.pop(0))
    errors_ms = np.asarray(errors) * 1e3
    notes = sum(1 for _, d in scheduled if d[0] & 0xF0 == 0x90)
    period_ms = PERIOD_FRAMES / RATE * 1e3
    return [
        ("stream: messages matched | notes/s", f"{len(errors)} | {notes / seconds:.1f}", ""),
        ("stream: timing error p50 / p99 / max (ms)",
         f"{np.percentile(errors_ms, 50):.2f} / {np.percentile(errors_ms, 99):.2f} / {errors_ms.max():.2f}",
         f"goal p99 <= {1 + period_ms:.2f} ms (1 ms + one JACK period)"),
        ("stream: late notes (> 1 ms + one period)", f"{int((errors_ms > 1 + period_ms).sum())}", "goal 0"),
        ("stream: streamer CPU (% of one core)", f"{cpu * 100:.1f}", "goal <= 5 %"),
        ("stream: streamer peak RSS (MB)", f"{rss:.0f}", ""),
        ("stream: launch to first note (s)", f"{first_note:.2f}", "goal <= 2 s"),
    ]
