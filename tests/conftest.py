"""Shared fixtures: a real JACK server (dummy driver), synthetic MIDI, the shipped model."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"


def _forget_dead_jack_servers() -> None:
    """With no jackd running at all, JACK's shared-memory registry can only hold dead servers (a
    jackd killed outright keeps its slot): once it holds a handful, every new server fails with
    "Too many servers already active" (seen here after killed test runs). Cleared then, never
    while any jackd runs."""
    if not _a_jackd_runs():
        for leftover in Path("/dev/shm").glob("jack*"):
            with contextlib.suppress(OSError):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def _a_jackd_runs() -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "jackd":
                return True
        except OSError:
            continue  # gone meanwhile
    return False


# At most this many of a bare sender's 300 messages lost on a server it is fair to test MIDI on.
# Beside one busy loop a non-real-time server loses one now and then (1 in 2 of 10 runs here);
# cadenza must cope with that: no reason to skip.
FLOOR_LOST_LIMIT = 3


def delivery_floor() -> dict:
    """bench.daw's delivery floor on the JACK server the tests use now (JACK_DEFAULT_SERVER): a
    bare rtmidi sender to a listener, no cadenza; p50/p99/max ms late and how many of 300 were lost."""
    import json

    checked = subprocess.run([sys.executable, "-m", "bench.daw", "--floor"], cwd=REPO, capture_output=True, text=True,
                             timeout=60)
    return json.loads(checked.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def dummy_jack_server(name: str, period_frames: int):
    """jackd with the dummy driver under `name`, the default server while it runs; stopped by its
    PID (SIGTERM: a killed jackd keeps its slot in JACK's server registry)."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd is not installed: run the README's set-up (apt package jackd2)")
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
    os.environ["JACK_NO_START_SERVER"] = "1"  # a client in a test never starts a server of its own
    _forget_dead_jack_servers()
    log = os.environ.get("CADENZA_JACK_LOG")
    # Not real-time (-r). A real-time server (-R) was tried in December: its threads, above the
    # sender's, held the sender's wake-ups back more often (11 late in 8 sessions against 2), and a
    # clean-clone run on it measured the 25 ms calibrate loopback at 37.5 ms and lost a clock pulse.
    process = subprocess.Popen(["jackd", "-n", name, "-r", "-d", "dummy", "-r", "44100", "-p", str(period_frames)],
                               stdout=open(log, "a") if log else subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], check=True, capture_output=True, timeout=15)
        yield name
    finally:
        from streamer.jack import close_jack_client

        close_jack_client()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
        # Clients killed on purpose (SIGKILL tests) leave their semaphores behind.
        for leftover in Path("/dev/shm").glob(f"jack_sem.*_{name}_*"):
            leftover.unlink(missing_ok=True)
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous


@pytest.fixture(scope="session")
def jack_server():
    """The suite's JACK server: 256-frame periods, steady under CI load."""
    with dummy_jack_server(f"cadenza-test-{os.getpid()}", 256) as name:
        yield name


@pytest.fixture(scope="session")
def jack_midi(jack_server):
    from streamer.outputs import midi_backend

    return midi_backend("jack")


def shipped_model_figure(figure, **sampling_changes) -> float:
    """`figure(notes)` averaged over 32 streams of 300 notes drawn free-running by the shipped
    model at its card's sampling with `sampling_changes` (the same seed every call)."""
    from dataclasses import replace

    from models.runtime import Runtime
    from models.sampling import Sampling
    from training.style import generate_pieces

    runtime = Runtime(seed=0, backend="tflite")
    sampling = replace(Sampling.from_card(runtime.card), **sampling_changes)
    return float(np.mean([figure(piece) for piece in generate_pieces(runtime, sampling, 32, 300)]))


def cadenza_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cadenza_cli", *args]


def run_cadenza(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cadenza_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, **kwargs)


def wait_for_port(names_function, suffix: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in names_function():
            if name.endswith(suffix):
                return name
        time.sleep(0.05)
    raise AssertionError(f"no port ending in {suffix!r} appeared within {timeout} s")


def synthetic_midi(path: Path, *, chords=True, pedal=True, drums=True, second_instrument=True, tempo_change=True):
    """A small MIDI file made with pretty_midi: chords, a pedal, drums, two instruments, tempo changes."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=100)
    piano = pretty_midi.Instrument(program=0)
    time_cursor = 0.0
    for index in range(8):
        pitches = [60 + index, 64 + index, 67 + index] if chords else [60 + index]
        for pitch in pitches:
            piano.notes.append(pretty_midi.Note(velocity=60 + index, pitch=pitch, start=time_cursor, end=time_cursor + 0.2))
        time_cursor += 0.5
    if pedal:
        piano.control_changes += [pretty_midi.ControlChange(64, 100, 0.1), pretty_midi.ControlChange(64, 0, 1.4)]
    midi.instruments.append(piano)
    if second_instrument:
        violin = pretty_midi.Instrument(program=40)
        violin.notes.append(pretty_midi.Note(velocity=90, pitch=76, start=0.25, end=1.0))
        midi.instruments.append(violin)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes += [pretty_midi.Note(velocity=100, pitch=36, start=t * 0.5, end=t * 0.5 + 0.1) for t in range(8)]
        midi.instruments.append(kit)
    midi.write(str(path))
    if tempo_change:
        _add_tempo_change(path)
    return path


def _add_tempo_change(path: Path) -> None:
    """Insert a second tempo (150 bpm) at beat 2 with mido, since pretty_midi writes one tempo only."""
    import mido

    midi = mido.MidiFile(str(path))
    track = midi.tracks[0]
    absolute, events = 0, []
    for message in track:
        absolute += message.time
        events.append((absolute, message))
    events.append((2 * midi.ticks_per_beat, mido.MetaMessage("set_tempo", tempo=400_000)))
    events.sort(key=lambda e: (e[0], e[1].type == "end_of_track"))
    track.clear()
    last = 0
    for absolute, message in events:
        track.append(message.copy(time=absolute - last))
        last = absolute
    midi.save(str(path))


def pitch_entropy(pitches) -> float:
    counts = np.bincount(np.asarray(pitches, dtype=np.int64), minlength=128).astype(float)
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * np.log2(probabilities)).sum())
