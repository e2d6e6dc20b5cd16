"""Which order to draw a note's fields in: the same network trained the same way, in each order.

`python -m bench.field_order [--steps 600] [--batch 64] [--units 256]`. Every variant sees the
same training windows (same seed, same count) and is scored on the same validation windows with
controls dropped, so the joint NLL (nats per note, the sum over the four fields) compares them.
With perfect models every order gives the same joint probability (the chain rule); what differs
is how easy each conditional is to learn. "independent" is the previous design: four heads that
see only the recurrent state.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from models.config import FIELD_ORDER, ModelConfig  # noqa: E402

VARIANTS = {
    "step, pitch, duration, velocity (shipped)": (FIELD_ORDER, True),
    "pitch, step, duration, velocity": (("pitch", "step", "duration", "velocity"), True),
    "pitch, duration, velocity, step": (("pitch", "duration", "velocity", "step"), True),
    "independent heads": (FIELD_ORDER, False),
}


def _keep(inputs: dict, model) -> dict:
    return {name: values for name, values in inputs.items() if f"{name}_input" in {i.name for i in model.inputs}}


def run(data: str, steps: int, batch: int, units: int, validation_windows: int = 512):
    """[(variant, {field: validation nats/note}, joint, seconds)]."""
    from models.network import build_model, compile_model
    from training.prepare import load_split
    from training.windows import WindowSampler

    config = replace(ModelConfig(), batch_size=batch, lstm_units=units)
    train = WindowSampler(load_split(data, "train"), config)
    validation = WindowSampler(load_split(data, "validation"), config)
    valid_rng = np.random.default_rng(1)
    valid = [validation.categorical_batch(batch, valid_rng, augment=False, dropout=1.0, extra_next=True)
             for _ in range(validation_windows // batch)]
    results = []
    for name, (order, conditioned) in VARIANTS.items():
        import keras

        keras.utils.set_random_seed(0)
        model = build_model(config, order, conditioned)
        compile_model(model, config)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for _ in range(steps):
            inputs, targets = train.categorical_batch(batch, rng, extra_next=True)
            model.train_on_batch(_keep(inputs, model), targets)
        seconds = time.perf_counter() - started
        losses = {field: [] for field in FIELD_ORDER}
        for inputs, targets in valid:
            outputs = model.predict_on_batch(_keep(inputs, model))
            for field in FIELD_ORDER:
                log_probs = keras.ops.convert_to_numpy(keras.ops.log_softmax(outputs[field], axis=-1))
                losses[field].append(-np.take_along_axis(log_probs, targets[field][..., None], axis=-1).mean())
        per_field = {field: float(np.mean(values)) for field, values in losses.items()}
        results.append((name, per_field, sum(per_field.values()), seconds))
        print(f"{name:<44} joint {sum(per_field.values()):.3f}  " +
              "  ".join(f"{f} {v:.3f}" for f, v in per_field.items()) + f"  ({seconds:.0f} s)", flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/maestro")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--units", type=int, default=256)
    args = parser.parse_args(argv)
    run(args.data, args.steps, args.batch, args.units)


if __name__ == "__main__":
    main()
