"""Training throughput (predicted notes per second) of the default network beside a bare-LSTM floor.

`python -m bench.training_throughput [--batch 64 256 512] [--seconds 20] [--memory 256 --window 256]
[--interval-bias]` (the shipped design: memory over 256 notes on 256-note windows and the interval
bias; the floor has neither). Each part the design adds is also timed taken away, so its cost
is split. All train on the same pre-drawn MAESTRO windows in this one run, taking turns in short
rounds (`--rounds`), and each ratio is the median of the rounds' ratios, so it holds on a noisy
machine; the window sampler's own cost is timed apart. The floor is the same 2 x LSTM with one
plain pitch head: what the recurrent core alone costs.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from models.config import FIELD_ORDER, ModelConfig  # noqa: E402


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


def multiply_adds_per_note(config: ModelConfig, floor: bool = False) -> int:
    """The multiply-adds of one note's forward pass through the network's matrix products (a train
    step costs about three times this; element-wise work and look-ups are left out). On a CPU the
    products set the pace, so the floor's count over a design's is the ratio it can reach at best."""
    from models.controls import CONTROL_SIZE
    from models.network import head_sizes

    embedded = config.pitch_embedding + 2 * config.time_embedding + config.velocity_embedding
    units, width, total = config.lstm_units, embedded + (0 if floor else CONTROL_SIZE), 0
    for _ in range(config.lstm_layers):
        total += 4 * units * (width + units)
        width = units
    if floor:
        return total + units * 128
    half = units // 2
    if config.memory:  # query, key and value, the note's value, the output; then scores and the read
        # over the whole window (the positions beyond the memory or ahead are masked, not skipped)
        total += 3 * units * half + embedded * half + half * units + 2 * config.window * half
    for index, (name, size) in enumerate((name, head_sizes(config)[name]) for name in FIELD_ORDER):
        total += (units + index * config.field_embedding) * config.head_units + config.head_units * size
    return total


def timed_steps(model, batches, config: ModelConfig, seconds: float, first_step: int = 0) -> float:
    """Notes per second over `seconds` of train steps, from batch `first_step` on."""
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        model.train_on_batch(*batches[(first_step + steps) % len(batches)])
        steps += 1
    return steps * config.batch_size * config.window / (time.perf_counter() - started)


def measure(data: str, batch_sizes, seconds: float, memory: int = 0, window: int | None = None,
            interval_bias: bool = False, rounds: int = 5) -> list:
    """One dict per batch: the floor's notes/s, cadenza's, cadenza's with each part it has taken
    away ("without memory", "without interval bias"), and the window sampler's; "<name> bound":
    the ratio its arithmetic allows (multiply_adds_per_note).

    The networks take turns: `rounds` rounds of `seconds / rounds` each, every network once a
    round, so a change in the machine's load meets them all. Each figure is the median over the
    rounds, and each ratio ("<name> ratio") the median of the rounds' ratios to the floor.
    """
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
        runs = {"floor": (bare_lstm(config), config, [({"pitch": x["pitch"]}, {"pitch": y["pitch"]}) for x, y in batches])}
        for name, change in {"cadenza": {}, **parts}.items():
            if change and all(getattr(config, field) == value for field, value in change.items()):
                continue  # the design has no such part
            variant = replace(config, **change)
            model = build_model(variant)
            compile_model(model, variant)
            # Without the interval bias the network takes no chord tops: the same windows without them.
            inputs = [({k: v for k, v in x.items() if k != "chord_tops" or variant.interval_bias}, y) for x, y in batches]
            runs[name] = (model, variant, inputs)
        for model, _, inputs in runs.values():
            model.train_on_batch(*inputs[0])  # traced and warm before any is timed
        rates = {name: [] for name in runs}
        for round_index in range(rounds):
            for name, (model, variant, inputs) in runs.items():
                rates[name].append(timed_steps(model, inputs, variant, seconds / rounds, round_index))
        floor = np.array(rates["floor"])
        for name, values in rates.items():
            row[name] = float(np.median(values))
            row[f"{name} ratio"] = float(np.median(np.array(values) / floor))
            if name != "floor":
                row[f"{name} bound"] = multiply_adds_per_note(config, floor=True) / multiply_adds_per_note(runs[name][1])
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
    parser.add_argument("--rounds", type=int, default=5, help="turns each network takes, --seconds shared among them")
    args = parser.parse_args(argv)
    for row in measure(args.data, args.batch, args.seconds, args.memory, args.window, args.interval_bias, args.rounds):
        figures = [f"floor {row['floor']:,.0f} notes/s"]
        figures += [f"{name} {row[name]:,.0f} ({row[f'{name} ratio']:.2f}; its arithmetic allows {row[f'{name} bound']:.2f})"
                    for name in ("cadenza", "without memory", "without interval bias") if name in row]
        print(f"batch {row['batch']}: " + ", ".join(figures) + f"; sampler {row['sampler']:,.0f} notes/s", flush=True)


if __name__ == "__main__":
    main()
