"""A live stream through JACK, heard by a listener in this (separate) process.

Per message: received minus scheduled. The streamer logs each message's scheduled and sent
times on CLOCK_MONOTONIC; the listener takes each message's arrival from JACK itself (rtmidi
stamps it with jack_get_time() in the listener's process cycle), so the listener's own polling
delay is not counted against the streamer. Also late messages, the streamer's CPU and peak RSS,
and the time from launch to the first note received.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido
import numpy as np

from streamer.jack import close_jack_client
from streamer.midi_input import PolledMidiInput
from streamer.outputs import midi_backend

REPO = Path(__file__).resolve().parent.parent
BACKEND = "mido.backends.rtmidi/UNIX_JACK"
PERIOD_FRAMES, RATE = 64, 44100


class StampedListener(PolledMidiInput):
    """Reads a JACK MIDI port and keeps (arrival monotonic seconds, bytes) per message.

    rtmidi gives each message the JACK time since the previous one; their running sum fixes every
    arrival up to one offset, taken as the smallest (polled time - running sum): a poll can only
    come after the arrival, so that bound is the tightest.
    """

    def __init__(self, port_suffix: str, poll_seconds: float = 0.001):
        self._events: list[tuple[float, float, bytes]] = []  # polled time, JACK delta, bytes
        super().__init__(midi_backend("jack"), port_suffix, on_message=None,
                         client_name="bench-listener", poll_seconds=poll_seconds)

    def handle_event(self, data: list[int], delta_seconds: float) -> None:
        self._events.append((time.monotonic(), delta_seconds, bytes(data)))

    def first_polled(self, status: int) -> float | None:
        return next((polled for polled, _, data in list(self._events) if data[0] & 0xF0 == status), None)

    def polled_note_ons(self) -> list[float]:
        """When each note-on heard so far was polled (monotonic seconds): for waiting, not timing."""
        return [polled for polled, _, data in list(self._events) if data[0] & 0xF0 == 0x90 and data[2] > 0]

    def arrivals(self) -> list[tuple[float, bytes]]:
        """Close the port; (arrival monotonic seconds, bytes) per message received."""
        self.close()
        if not self._events:
            return []
        polled = np.array([event[0] for event in self._events])
        jack_seconds = np.cumsum([event[1] for event in self._events])
        arrivals = jack_seconds + np.min(polled - jack_seconds)
        return [(float(arrival), event[2]) for arrival, event in zip(arrivals, self._events)]


def _family(pid: int) -> list[int]:
    """The streamer and its child processes (the sender)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_for_port(backend: mido.Backend, suffix: str) -> None:
    while not any(name.endswith(suffix) for name in backend.get_input_names()):
        time.sleep(0.002)


def _stream(seconds: float, tempo_scale: float, log: Path, port: str, extra_args: list = ()) -> tuple[list, dict]:
    """Run the streamer for `seconds` after its first note; the listener's arrivals and the figures."""
    backend = midi_backend("jack")
    launched = time.monotonic()
    stream = subprocess.Popen([sys.executable, "-m", "cadenza_cli", "stream", "--midi-api", "jack", "--port", port,
                               "--no-keys", "--seed", "1", "--tempo-scale", str(tempo_scale), "--timing-log", str(log),
                               *extra_args],
                              cwd=REPO, env=dict(os.environ, MIDO_BACKEND=BACKEND),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(backend, f":{port}")
    listener = StampedListener(f":{port}")
    while (first := listener.first_polled(0x90)) is None:
        time.sleep(0.001)
    processes = _family(stream.pid)
    cpu_start, wall_start = [_cpu_seconds(pid) for pid in processes], time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - wall_start
    figures = {"cpu": [(_cpu_seconds(pid) - start) / wall for pid, start in zip(processes, cpu_start)],
               "rss_mb": [_status_mb(pid, "VmHWM") for pid in processes],
               "shared_mb": _status_mb(processes[-1], "RssShmem"), "first_note": first - launched}
    stream.send_signal(signal.SIGINT)
    stream.wait(timeout=15)
    time.sleep(0.2)
    return listener.arrivals(), figures


def _replay_bare(streamer_log: Path, log: Path) -> list:
    """The same message times sent by bench/bare_sender.py (no model): the listener's arrivals."""
    lines = [line.split(maxsplit=2) for line in streamer_log.read_text().splitlines()]
    schedule = log.with_suffix(".schedule")
    schedule.write_text("".join(f"{float(when) - float(lines[0][0]):.6f} {data}\n" for when, _, data in lines))
    sender = subprocess.Popen([sys.executable, "-m", "bench.bare_sender", str(schedule), str(log)], cwd=REPO)
    _wait_for_port(midi_backend("jack"), ":bench-bare")
    listener = StampedListener(":bench-bare")
    sender.send_signal(signal.SIGUSR1)
    sender.wait(timeout=float(lines[-1][0]) - float(lines[0][0]) + 30)
    return listener.arrivals()


def match_messages(log: Path, arrivals: list) -> tuple[list, int]:
    """[(arrival, arrival - scheduled, sent - scheduled)] in seconds per message matched; and the notes scheduled."""
    pending: dict[bytes, list] = {}
    notes = 0
    for line in log.read_text().splitlines():
        when, sent, *hex_bytes = line.split()
        data = bytes.fromhex("".join(hex_bytes))
        pending.setdefault(data, []).append((float(when), float(sent)))
        notes += data[0] & 0xF0 == 0x90
    matched = []
    for arrived, data in arrivals:
        queue = pending.get(data, [])
        # Note-offs sent while silencing at the stop are not in the log: never match them to a
        # scheduled message from long ago.
        while queue and queue[0][0] < arrived - 0.5:
            queue.pop(0)
        if queue and queue[0][0] <= arrived + 0.05:
            when, sent = queue.pop(0)
            matched.append((arrived, arrived - when, sent - when))
    return matched, notes


def _match(log: Path, arrivals: list) -> tuple[np.ndarray, np.ndarray, int]:
    """Per message matched: (arrival - scheduled, sent - scheduled) in ms; and the notes scheduled."""
    matched, notes = match_messages(log, arrivals)
    errors = np.asarray([m[1] for m in matched]) * 1e3
    wakes = np.asarray([m[2] for m in matched]) * 1e3
    return errors, wakes, notes


def _timing_rows(label: str, errors_ms: np.ndarray, wakes_ms: np.ndarray) -> list[tuple[str, str, str]]:
    period_ms = PERIOD_FRAMES / RATE * 1e3
    delivery_ms = errors_ms - wakes_ms
    late = errors_ms > 1 + period_ms
    return [
        (f"{label}: timing error p50 / p99 / max (ms)",
         f"{np.percentile(errors_ms, 50):.2f} / {np.percentile(errors_ms, 99):.2f} / {errors_ms.max():.2f}",
         f"goal p99 <= {1 + period_ms:.2f} ms (1 ms + one JACK period)"),
        (f"{label}: sender wake-up p99 / max (ms)", f"{np.percentile(wakes_ms, 99):.2f} / {wakes_ms.max():.2f}",
         "sent minus scheduled"),
        (f"{label}: JACK delivery p99 / max (ms)",
         f"{np.percentile(delivery_ms, 99):.2f} / {delivery_ms.max():.2f}", "arrival minus sent"),
        (f"{label}: late messages (> 1 ms + one period)", f"{int(late.sum())} of {len(errors_ms)}", "goal 0"),
    ]


@contextlib.contextmanager
def private_jack_server(purpose: str, period_frames: int = PERIOD_FRAMES, jack_flags: str = "-r"):
    """A JACK server of this bench's own (dummy driver), made the default for everything started
    inside; stopped with SIGTERM (a jackd killed outright keeps its slot in JACK's registry)."""
    name = f"cadenza-{purpose}-{os.getpid()}"
    jackd = subprocess.Popen(["jackd", "-n", name, *jack_flags.split(), "-d", "dummy", "-r", str(RATE),
                              "-p", str(period_frames)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], check=True, capture_output=True)
        yield name
    finally:
        close_jack_client()
        jackd.send_signal(signal.SIGTERM)
        jackd.wait(timeout=10)


def run(seconds: float = 60.0, tempo_scales=(2.0, 1.0), jack_flags: str = "-r") -> list[tuple[str, str, str]]:
    """One streamer run per tempo scale, then the last run's message times replayed with no model."""
    folder = Path(tempfile.mkdtemp())
    rows = [("stream: JACK server", f"jackd {jack_flags} -d dummy -p {PERIOD_FRAMES}", "")]
    with private_jack_server("bench", jack_flags=jack_flags):
        for tempo_scale in tempo_scales:
            log = folder / f"x{tempo_scale:g}.log"
            arrivals, figures = _stream(seconds, tempo_scale, log, port=f"bench-x{tempo_scale:g}")
            errors_ms, wakes_ms, notes = _match(log, arrivals)
            label = f"stream x{tempo_scale:g} tempo"
            rows += [(f"{label}: notes/s | messages matched", f"{notes / seconds:.1f} | {len(errors_ms)}", ""),
                     *_timing_rows(label, errors_ms, wakes_ms),
                     (f"{label}: CPU, % of one core: all (engine + sender)",
                      f"{sum(figures['cpu']) * 100:.1f} ({' + '.join(f'{c * 100:.1f}' for c in figures['cpu'])})",
                      "goal <= 5 % at ~10 notes/s"),
                     (f"{label}: peak RSS, MB: engine + sender",
                      " + ".join(f"{r:.0f}" for r in figures["rss_mb"]),
                      f"each counts JACK's {figures['shared_mb']:.0f} MB of shared memory"),
                     (f"{label}: launch to first note (s)", f"{figures['first_note']:.2f}", "goal <= 2 s")]
        bare_log = folder / "bare.log"
        errors_ms, wakes_ms, _ = _match(bare_log, _replay_bare(log, bare_log))
        rows += _timing_rows("floor, same times, no model", errors_ms, wakes_ms)
    return rows


def _flood(web_port: int, osc_port: int, stop, counts: dict) -> None:
    """A client flooding each surface until `stop` is set: OSC at ~1,000 messages/s, the API at
    ~100 requests/s, and a page reading the WebSocket; what each managed."""
    import json
    import threading
    import urllib.request

    from pythonosc.udp_client import SimpleUDPClient

    counts.update(osc=0, posts=0)

    def osc():
        client = SimpleUDPClient("127.0.0.1", osc_port)
        while not stop.is_set():
            client.send_message("/cadenza/temperature", 0.8 + 0.1 * (counts["osc"] % 3))
            counts["osc"] += 1
            time.sleep(0.001)

    def posts():
        while not stop.is_set():
            body = json.dumps({"temperature": 0.9, "dynamics": 70 + counts["posts"] % 20}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/controls", data=body, method="POST")
            try:
                urllib.request.urlopen(request, timeout=5).read()
                counts["posts"] += 1
            except OSError:
                time.sleep(0.05)
            time.sleep(0.01)

    threads = [threading.Thread(target=osc, daemon=True), threading.Thread(target=posts, daemon=True)]
    for thread in threads:
        thread.start()


def run_surfaces(seconds: float = 60.0) -> list[tuple[str, str, str]]:
    """The same stream twice, side by side on one server: plain, then with --web and --osc on and a
    client flooding each. The goal: p99 within 0.5 ms of the plain run."""
    import socket
    import threading

    def free_port(kind) -> int:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    folder = Path(tempfile.mkdtemp())
    rows = []
    with private_jack_server("surfaces"):
        results = {}
        for label in ("plain", "surfaces"):
            log = folder / f"{label}.log"
            extra, stop, counts = [], threading.Event(), None
            if label == "surfaces":
                web_port, osc_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
                extra = ["--web", f"127.0.0.1:{web_port}", "--osc", str(osc_port)]
                started = time.monotonic()
                counts = {}

                def start_flood():
                    time.sleep(3)  # once the stream is up
                    _flood(web_port, osc_port, stop, counts)

                threading.Thread(target=start_flood, daemon=True).start()
            arrivals, _ = _stream(seconds, 1.0, log, port=f"surfaces-{label}", extra_args=extra)
            stop.set()
            errors_ms, wakes_ms, notes = _match(log, arrivals)
            results[label] = errors_ms
            rows += _timing_rows(f"{label}", errors_ms, wakes_ms)
            if counts is not None:
                rows.append(("surfaces: flood sent during the run", f"{counts.get('osc', 0)} OSC, {counts.get('posts', 0)} POSTs",
                             f"over {time.monotonic() - started:.0f} s"))
        difference = np.percentile(results["surfaces"], 99) - np.percentile(results["plain"], 99)
        rows.append(("surfaces: p99 with --web and --osc flooded minus plain (ms)", f"{difference:+.2f}", "goal <= +0.5"))
    return rows
