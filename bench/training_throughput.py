"""Training throughput (predicted notes per second) of the default network beside a bare-LSTM floor.

`python -m bench.training_throughput [--batch 64 256 512] [--seconds 20] [--memory 256 --window 256]
[--interval-bias]` (the shipped design: memory over 256 notes on 256-note windows and the interval
bias; the floor has neither). Each part the design adds is also timed taken away, so its cost
is split. All train on the same
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


def measure(data: str, batch_sizes, seconds: float, memory: int = 0, window: int | None = None,
            interval_bias: bool = False) -> list:
    """One dict per batch: the floor's notes/s, cadenza's, cadenza's with each part it has taken
    away ("without memory", "without interval bias"), and the window sampler's, measured side by side."""
    from models.network import build_model, compile_model
    from training.prepare import load_split
    from training.windows import WindowSampler

    base = replace(ModelConfig(), memory=memory, window=window or ModelConfig().window, interval_bias=interval_bias)
    sampler = WindowSampler(load_split(data, "train"), base)
    rng = np.random.default_rng(0)
    parts = {"without memory": {"memory": 0}, "without interval bias": {"interval_bias": False}}
    results = []
    for batch in batch_sizes:
        config = replace(base, batch_size=batch)
        started = time.perf_counter()
        batches = [sampler.batch(batch, rng) for _ in range(8)]
        row = {"batch": batch, "sampler": 8 * batch * config.window / (time.perf_counter() - started)}
        floor_batches = [({"pitch": x["pitch"]}, {"pitch": y["pitch"]}) for x, y in batches]
        row["floor"] = notes_per_second(bare_lstm(config), floor_batches, config, seconds)
        for name, change in {"cadenza": {}, **parts}.items():
            if change and all(getattr(config, field) == value for field, value in change.items()):
                continue  # the design has no such part
            variant = replace(config, **change)
            model = build_model(variant)
            compile_model(model, variant)
            # Without the interval bias the network takes no chord tops: the same windows without them.
            inputs = [({k: v for k, v in x.items() if k != "chord_tops" or variant.interval_bias}, y) for x, y in batches]
            row[name] = notes_per_second(model, inputs, variant, seconds)
        results.append(row)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/maestro")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--memory", type=int, default=0, help="cadenza's network with memory over N notes")
    parser.add_argument("--window", type=int, help="notes per training window [default: the preset's]")
    parser.add_argument("--interval-bias", action="store_true", help="cadenza's network with the interval bias")
    args = parser.parse_args(argv)
    for row in measure(args.data, args.batch, args.seconds, args.memory, args.window, args.interval_bias):
        figures = [f"floor {row['floor']:,.0f} notes/s", f"cadenza {row['cadenza']:,.0f} ({row['cadenza'] / row['floor']:.2f})"]
        figures += [f"{name} {row[name]:,.0f} ({row[name] / row['floor']:.2f})"
                    for name in ("without memory", "without interval bias") if name in row]
        print(f"batch {row['batch']}: " + ", ".join(figures) + f"; sampler {row['sampler']:,.0f} notes/s", flush=True)


if __name__ == "__main__":
    main()
