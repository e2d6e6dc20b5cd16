"""Training throughput (predicted notes per second) of the default network beside a bare-LSTM floor.

`python -m bench.training_throughput [--batch 64 256 512] [--seconds 20] [--memory 256 --window 256]`
(the shipped design: memory over 256 notes on 256-note windows; the floor has no memory). Both train on the same
pre-drawn MAESTRO windows in this one run, so the ratio is fair on a noisy machine; the window
sampler's own cost is timed apart. The floor is the same 2 x LSTM with one plain pitch head: what
the recurrent core alone costs.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from models.config import ModelConfig  # noqa: E402


def bare_lstm(config: ModelConfig):
    import keras
    from keras import layers

    pitch = keras.Input(shape=(None,), dtype="int32", name="pitch_input")
    hidden = layers.Embedding(128, config.pitch_embedding + 2 * config.time_embedding + config.velocity_embedding)(pitch)
    for index in range(config.lstm_layers):
        hidden = layers.LSTM(config.lstm_units, return_sequences=True)(hidden)
    model = keras.Model({"pitch": pitch}, {"pitch": layers.Dense(128, name="pitch")(hidden)})
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss={"pitch": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    return model


def notes_per_second(model, batches, config: ModelConfig, seconds: float) -> float:
    model.train_on_batch(*batches[0])
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        model.train_on_batch(*batches[steps % len(batches)])
        steps += 1
    return steps * config.batch_size * config.window / (time.perf_counter() - started)


def measure(data: str, batch_sizes, seconds: float, memory: int = 0, window: int | None = None):
    """[(batch, floor notes/s, cadenza notes/s, cadenza without its memory notes/s or None, sampler
    notes/s)] measured side by side (without memory: what the heads and controls cost, apart)."""
    from models.network import build_model, compile_model
    from training.prepare import load_split
    from training.windows import WindowSampler

    base = replace(ModelConfig(), memory=memory, window=window or ModelConfig().window)
    sampler = WindowSampler(load_split(data, "train"), base)
    rng = np.random.default_rng(0)
    results = []
    for batch in batch_sizes:
        config = replace(base, batch_size=batch)
        started = time.perf_counter()
        batches = [sampler.batch(batch, rng) for _ in range(8)]
        sampler_rate = 8 * batch * config.window / (time.perf_counter() - started)
        floor_batches = [({"pitch": x["pitch"]}, {"pitch": y["pitch"]}) for x, y in batches]
        floor = notes_per_second(bare_lstm(config), floor_batches, config, seconds)
        model = build_model(config)
        compile_model(model, config)
        full = notes_per_second(model, batches, config, seconds)
        without_memory = None
        if memory:
            bare_config = replace(config, memory=0)
            model = build_model(bare_config)
            compile_model(model, bare_config)
            without_memory = notes_per_second(model, batches, bare_config, seconds)
        results.append((batch, floor, full, without_memory, sampler_rate))
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/maestro")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--memory", type=int, default=0, help="cadenza's network with memory over N notes")
    parser.add_argument("--window", type=int, help="notes per training window [default: the preset's]")
    args = parser.parse_args(argv)
    print(f"{'batch':>6} {'floor notes/s':>14} {'cadenza notes/s':>16} {'ratio':>6} {'no memory':>10} {'ratio':>6} "
          f"{'sampler notes/s':>16}")
    for batch, floor, full, bare, sampler_rate in measure(args.data, args.batch, args.seconds, args.memory, args.window):
        bare_text = f"{bare:>10,.0f} {bare / floor:>6.2f}" if bare else f"{'-':>10} {'-':>6}"
        print(f"{batch:>6} {floor:>14,.0f} {full:>16,.0f} {full / floor:>6.2f} {bare_text} {sampler_rate:>16,.0f}", flush=True)


if __name__ == "__main__":
    main()
