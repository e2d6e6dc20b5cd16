"""Benchmarks: `python -m bench [--only NAME ...]` prints a table of figures, each measured in this run.

Needs ../shared/data/maestro-v3.0.0 for the ingest rows. Ratios compare things measured side by side
in the same run, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
MAESTRO = REPO.parent / "shared" / "data" / "maestro-v3.0.0"
ROWS: list[tuple[str, str, str]] = []


def row(name: str, value: str, goal: str = "") -> None:
    ROWS.append((name, value, goal))
    print(f"{name:<52} {value:>24}  {goal}", flush=True)


def bench_ingest() -> None:
    from training.prepare import SPLITS, list_maestro, load_split, prepare
    from models.notes import Representation

    out = Path(tempfile.mkdtemp(prefix="cadenza-bench-"))
    try:
        files = list_maestro(MAESTRO)
        started = time.perf_counter()
        manifest = prepare(files, out, {"kind": "maestro"}, Representation(), progress=False, force=True)
        seconds = time.perf_counter() - started
        notes = sum(s["notes"] for s in manifest["splits"].values())
        row("ingest MAESTRO v3 cold (s)", f"{seconds:.1f}", "goal <= 60 s")
        row("ingest files/s | notes/s", f"{len(files) / seconds:.0f} | {notes / seconds:,.0f}")
        row("ingest files | notes | skipped", f"{len(files)} | {notes:,} | {len(manifest['skipped'])}")
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "cadenza_cli", "prepare", "--maestro", str(MAESTRO),
                                 "--out", str(out)], capture_output=True, text=True, cwd=REPO)
        assert "up to date" in result.stdout, result.stdout + result.stderr
        row("prepare re-run, cache up to date (s, whole CLI)", f"{time.perf_counter() - started:.2f}", "goal < 2 s")
        started = time.perf_counter()
        for split in SPLITS:
            load_split(out, split)
        row("cached load, all splits (s)", f"{time.perf_counter() - started:.2f}", "goal <= 2 s")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _percentiles(samples_seconds) -> str:
    micro = np.asarray(samples_seconds) * 1e6
    return f"{np.percentile(micro, 50):.0f} / {np.percentile(micro, 99):.0f}"


def bench_inference() -> None:
    """Single-step latency and batch throughput of the shipped model, beside the original method."""
    from models.runtime import Runtime, load_step
    from models.config import SEED_CONFIG
    from models.network import build_seed_model

    model_dir = REPO / "models" / "default"
    runtime = Runtime(model_dir, backend="tflite", seed=0)
    features = {k: np.array([1], np.int32) for k in ("pitch", "step", "duration", "velocity")}
    timings = {}
    for backend in ("tflite", "savedmodel"):
        step = load_step(model_dir, backend)
        state = np.zeros((1, *runtime.card["state_shape"]), np.float32)
        for _ in range(50):
            step(features, state)
        samples = []
        for _ in range(2000 if backend == "tflite" else 300):
            started = time.perf_counter()
            step(features, state)
            samples.append(time.perf_counter() - started)
        timings[backend] = np.median(samples)
        row(f"{backend} single step p50 / p99 (us)", _percentiles(samples), "goal TFLite p50 <= 100 us" if backend == "tflite" else "")
    samples = []
    for _ in range(1000):
        started = time.perf_counter()
        runtime.sample(1.0)
        samples.append(time.perf_counter() - started)
    row("tflite step + sampling, one stream p50 / p99 (us)", _percentiles(samples))
    batch = Runtime(model_dir, backend="tflite", batch=256, seed=0)
    started = time.perf_counter()
    for _ in range(50):
        batch.sample(1.0)
    batch_rate = 50 * 256 / (time.perf_counter() - started)
    row("tflite batch 256 throughput (notes/s)", f"{batch_rate:,.0f}")
    seed = build_seed_model(SEED_CONFIG)
    window = np.random.default_rng(0).random((1, 25, 3)).astype(np.float32)
    seed.predict(window, verbose=0)
    started = time.perf_counter()
    for _ in range(30):
        seed.predict(window, verbose=0)
    original = (time.perf_counter() - started) / 30
    row("original method: model.predict per note (ms)", f"{original * 1e3:.1f}")
    row("single step speed-up over original (x)", f"{original / timings['tflite']:,.0f}", "goal >= 300x")
    return original


def bench_render(original_seconds_per_note: float) -> None:
    from training.render import RenderSettings, generate
    from models.runtime import Runtime

    runtime = Runtime(REPO / "models" / "default", backend="tflite", batch=64, seed=0)
    _, rate = generate(runtime, RenderSettings(out=Path("."), count=64, notes=512, progress=False))
    row("render K=64 x N=512 (notes/s)", f"{rate:,.0f}")
    row("render speed-up over original per-note predict (x)", f"{rate * original_seconds_per_note:,.0f}", "goal >= 1000x")


def bench_training() -> None:
    data = REPO / "data" / "maestro"
    if not (data / "train.npz").exists():
        row("training throughput", "skipped", "needs data/maestro (cadenza prepare)")
        return
    for preset in ("default", "seed"):
        out = Path(tempfile.mkdtemp(prefix="cadenza-bench-train-"))
        try:
            subprocess.run([sys.executable, "-m", "cadenza_cli", "train", "--preset", preset, "--data", str(data),
                            "--out", str(out / "run"), "--epochs", "2", "--steps-per-epoch", "40",
                            "--validation-windows", "64"], capture_output=True, check=True, cwd=REPO)
            last = (out / "run" / "log.csv").read_text().strip().splitlines()[-1].split(",")
            row(f"training throughput, {preset} preset (predicted notes/s)", f"{float(last[3]):,.0f}")
        finally:
            shutil.rmtree(out, ignore_errors=True)


def bench_stream(seconds: float, jack_flags: str) -> None:
    from bench.stream_timing import run

    for name, value, goal in run(seconds, jack_flags=jack_flags):
        row(name, value, goal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=["ingest", "inference", "render", "training", "stream"])
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--jack-flags", default="-r",
                        help="jackd's own flags: -r (no real-time, as the tests run it) or e.g. '-R -S'")
    arguments = parser.parse_args()
    chosen = set(arguments.only or ["ingest", "inference", "render", "training", "stream"])
    print(f"{'figure':<52} {'value':>24}  goal")
    if "ingest" in chosen:
        bench_ingest()
    original = None
    if chosen & {"inference", "render"}:
        original = bench_inference()
    if "render" in chosen:
        bench_render(original)
    if "training" in chosen:
        bench_training()
    if "stream" in chosen:
        bench_stream(arguments.stream_seconds, arguments.jack_flags)


if __name__ == "__main__":
    main()
