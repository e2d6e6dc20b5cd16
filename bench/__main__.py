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


def _step_inputs(runtime, batch: int = 1) -> dict:
    """Inputs of one joint-graph call that draws every field (no forcing)."""
    return {**{k: np.ones(batch, np.int32) for k in ("pitch", "step", "duration", "velocity")},
            "state": np.zeros((batch, *runtime.card["state_shape"]), np.float32),
            "controls": np.zeros((batch, 17), np.float32), "temperature": np.ones((batch, 4), np.float32),
            "top_p": np.full((batch, 4), 2.0, np.float32), "uniform": np.full((batch, 4), 0.5, np.float32),
            "forced": np.full((batch, 4), -1, np.int32),
            **({"memory": np.zeros((batch, *runtime.card["memory_shape"]), np.float32)}
               if runtime.card.get("memory_shape") else {}),
            **({"chord_tops": np.full((batch, 2), 60, np.int32)} if runtime.config.interval_bias else {}),
            **({"sounding": np.zeros((batch, 128), np.float32)} if runtime.config.mask_sounding_keys else {})}


def _time_calls(function, count: int) -> list:
    for _ in range(50):
        function()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def independent_heads_step(config):
    """The previous design's step graph, same size with random weights: four independent heads, no
    sampling in the graph (numpy drew each field). TFLite, for a side-by-side latency figure."""
    import keras
    import tensorflow as tf

    cells = [keras.layers.LSTMCell(config.lstm_units) for _ in range(config.lstm_layers)]
    embeddings = [keras.layers.Embedding(n, d) for n, d in ((128, 64), (64, 24), (64, 24), (32, 12))]
    heads = [keras.layers.Dense(n) for n in (128, 64, 64, 32)]

    @tf.function(input_signature=[tf.TensorSpec([1], tf.int32)] * 4 + [tf.TensorSpec([1, 4, config.lstm_units], tf.float32)])
    def step(pitch, step_bin, duration, velocity, state):
        hidden = tf.concat([e(v) for e, v in zip(embeddings, (pitch, step_bin, duration, velocity))], axis=-1)
        new_state = []
        for index, cell in enumerate(cells):
            hidden, (h, c) = cell(hidden, [state[:, 2 * index], state[:, 2 * index + 1]])
            new_state += [h, c]
        return [head(hidden) for head in heads] + [tf.stack(new_state, axis=1)]

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(step.get_concrete_function())
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert(), num_threads=1)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interpreter.invoke


def bench_inference() -> None:
    """Single-note latency and batch throughput of the shipped model, beside the previous design and the original method."""
    from models.runtime import Runtime, load_step
    from models.config import SEED_CONFIG
    from models.network import build_seed_model

    model_dir = REPO / "models" / "default"
    runtime = Runtime(model_dir, backend="tflite", seed=0)
    timings = {}
    for backend in ("tflite", "savedmodel"):
        step = load_step(model_dir, backend)
        inputs = _step_inputs(runtime)
        samples = _time_calls(lambda: step(inputs), 2000 if backend == "tflite" else 300)
        timings[backend] = np.median(samples)
        row(f"{backend} joint step (whole note drawn) p50 / p99 (us)", _percentiles(samples),
            "goal TFLite p50 <= 150 us" if backend == "tflite" else "")
    previous = _time_calls(independent_heads_step(runtime.config), 2000)
    row("previous design: 4 independent heads, TFLite p50 / p99 (us)", _percentiles(previous), "same run, random weights")
    samples = _time_calls(lambda: runtime.sample(1.0), 1000)
    row("Runtime.sample, one stream p50 / p99 (us)", _percentiles(samples))
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


def bench_quality() -> None:
    """Runtime.score throughput and the style evaluation's run time (48 x 1000 notes, 8 x 10,000 drift)."""
    from models.runtime import Runtime
    from training.model_eval import ModelEvaluation, run_style
    from training.prepare import load_split
    from training.style import StyleSettings

    data = REPO / "data" / "maestro"
    if not (data / "test.npz").exists():
        row("style evaluation / score", "skipped", "needs data/maestro (cadenza prepare)")
        return
    test = load_split(data, "test")
    pieces = np.stack([test.piece(i)[:2000] for i in range(len(test)) if len(test.piece(i)) >= 2000][:64])
    runtime = Runtime(REPO / "models" / "default", backend="tflite", seed=0)
    started = time.perf_counter()
    runtime.score(pieces)
    row("Runtime.score, 64 pieces x 2000 notes (notes/s)", f"{pieces.size / (time.perf_counter() - started):,.0f}")
    out = Path(tempfile.mkdtemp(prefix="cadenza-bench-style-"))
    try:
        started = time.perf_counter()
        run_style(ModelEvaluation(REPO / "models" / "default", data, out=out, plots=True),
                  _card_sampling(), StyleSettings(), log=lambda message: None)
        row("style evaluation, default settings, with plots (s)", f"{time.perf_counter() - started:.1f}", "goal: a few minutes")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _card_sampling(model_dir: Path = REPO / "models" / "default"):
    from models.graph import read_card
    from models.sampling import Sampling

    return Sampling.from_card(read_card(model_dir))


def bench_render(original_seconds_per_note: float) -> None:
    from training.render import RenderSettings, generate
    from models.runtime import Runtime

    runtime = Runtime(REPO / "models" / "default", backend="tflite", batch=64, seed=0)
    _, rate = generate(runtime, RenderSettings(out=Path("."), count=64, notes=512, progress=False, sampling=_card_sampling()))
    row("render K=64 x N=512 (notes/s)", f"{rate:,.0f}")
    row("render speed-up over original per-note predict (x)", f"{rate * original_seconds_per_note:,.0f}", "goal >= 1000x")


def bench_training() -> None:
    """Training throughput of the default network beside a bare 2 x LSTM floor, same windows, same run."""
    from bench.training_throughput import measure

    data = REPO / "data" / "maestro"
    if not (data / "train.npz").exists():
        row("training throughput", "skipped", "needs data/maestro (cadenza prepare)")
        return
    from models.graph import read_card

    shipped = read_card(REPO / "models" / "default")["config"]  # the shipped design: its memory, window, interval bias
    for result in measure(str(data), (64, 256), 20.0, shipped.get("memory", 0), shipped["window"],
                          shipped.get("interval_bias", False)):
        batch, floor, full = result["batch"], result["floor"], result["cadenza"]
        row(f"training, batch {batch}: cadenza / bare-LSTM floor (notes/s)", f"{full:,.0f} / {floor:,.0f}",
            f"ratio {result['cadenza ratio']:.2f}, its arithmetic allows {result['cadenza bound']:.2f} (aim >= 0.80)")
        for part in ("without memory", "without interval bias"):
            if part in result:
                row(f"  the same {part} (notes/s)", f"{result[part]:,.0f}",
                    f"ratio {result[f'{part} ratio']:.2f}, its arithmetic allows {result[f'{part} bound']:.2f}")
        row(f"window sampler, batch {batch} (notes/s)", f"{result['sampler']:,.0f}")


def bench_whole_note(model_dirs: list) -> None:
    """A whole note as the stream draws it (Runtime.sample with the shipped sampling: the nucleus on
    step and pitch takes two graph calls, the top and bass repeats and the echo draw some notes
    again), each model primed past its memory, in blocks taken in turn so every model meets the
    same machine load; the first model also without its echo, its bass tilt, and its line tilt and
    chord join, beside it."""
    from dataclasses import replace

    from models.notes import NOTE_DTYPE
    from models.runtime import Runtime

    sampling = _card_sampling(Path(model_dirs[0]))
    variants = {Path(d).name: (d, sampling) for d in model_dirs}
    if sampling.echo > 0:
        variants[f"{Path(model_dirs[0]).name}, echo off"] = (model_dirs[0], replace(sampling, echo=0.0))
    if sampling.bass_repeat < 1:
        variants[f"{Path(model_dirs[0]).name}, bass tilt off"] = (model_dirs[0], replace(sampling, bass_repeat=1.0))
    if sampling.line_tilt > 0 or sampling.chord_join < 1:
        variants[f"{Path(model_dirs[0]).name}, line tilt and chord join off"] = (
            model_dirs[0], replace(sampling, line_tilt=0.0, chord_join=1.0))
    runtimes = {name: Runtime(d, backend="tflite", seed=0) for name, (d, _) in variants.items()}
    rng = np.random.default_rng(0)
    primer = np.zeros(320, NOTE_DTYPE)
    primer["pitch"], primer["step"] = rng.integers(40, 90, 320), rng.uniform(0, 0.3, 320)
    primer["duration"], primer["velocity"] = rng.uniform(0.05, 1, 320), rng.integers(30, 110, 320)
    samples = {name: [] for name in runtimes}
    for name, runtime in runtimes.items():
        runtime.prime(primer)
    for _ in range(20):
        for name, runtime in runtimes.items():
            chosen = variants[name][1]
            options = chosen.draw_options()
            samples[name] += _time_calls(lambda: runtime.sample(chosen.temperature, **options), 100)
    first = next(iter(samples))
    for name, times in samples.items():
        memory = runtimes[name].config.memory
        ratio = np.median(times) / np.median(samples[first])
        row(f"whole note, {name} (memory {memory}) p50 / p99 (us)", _percentiles(times),
            f"x{ratio:.2f} of {first}; goal p50 <= 1000, p99 <= 3000")


def bench_stream(seconds: float, jack_flags: str) -> None:
    from bench.stream_timing import run

    for name, value, goal in run(seconds, jack_flags=jack_flags):
        row(name, value, goal)


def bench_sync() -> None:
    """Following a MIDI clock with jitter: grid error, tempo lock, Stop to silence, turns (bench/sync.py)."""
    from bench.sync import main as sync_main

    sync_main([])


def bench_listen() -> None:
    """Live answers to MAESTRO calls on JACK, scored as offline continuations are (bench/listen.py)."""
    from bench.listen import main as listen_main

    if not (REPO / "data" / "maestro" / "test.npz").exists():
        print("listen: skipped: needs data/maestro (cadenza prepare --maestro ../shared/data/maestro-v3.0.0 --out data/maestro)")
        return
    listen_main([])


def bench_surfaces(seconds: float) -> None:
    """Stream timing with --web and --osc on and flooded, beside the same stream without them."""
    from bench.stream_timing import run_surfaces

    for name, value, goal in run_surfaces(seconds):
        print(f"{name:<52} {value:>24}  {goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=["ingest", "inference", "render", "quality", "training", "stream", "sync",
                                                   "memory", "surfaces", "listen"])
    parser.add_argument("--models", nargs="*", default=[],
                        help="--only memory: exported models to time side by side [default: the shipped one]")
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--jack-flags", default="-r",
                        help="jackd's own flags: -r (no real-time, as the tests run it) or e.g. '-R -S'")
    arguments = parser.parse_args()
    chosen = set(arguments.only or ["ingest", "inference", "render", "quality", "training", "stream", "sync"])
    print(f"{'figure':<52} {'value':>24}  goal")
    if "ingest" in chosen:
        bench_ingest()
    original = None
    if chosen & {"inference", "render"}:
        original = bench_inference()
    if "render" in chosen:
        bench_render(original)
    if "quality" in chosen:
        bench_quality()
    if "training" in chosen:
        bench_training()
    if "stream" in chosen:
        bench_stream(arguments.stream_seconds, arguments.jack_flags)
    if "sync" in chosen:
        bench_sync()
    if "surfaces" in chosen:
        bench_surfaces(arguments.stream_seconds)
    if "listen" in chosen:
        bench_listen()
    if "memory" in chosen:
        bench_whole_note(arguments.models or [REPO / "models" / "default"])


if __name__ == "__main__":
    main()
