"""Would the pitch gain from knowing where the line is? A probe for the next network design.

`python -m bench.relative_pitch [--model models/default] [--windows 256]`. The model's pitch
logits, teacher-forced on MAESTRO windows (given the true history and the true step, with the
controls as in training), get one fitted bias per interval (-127 .. +127 semitones) from an
anchor pitch: the note before, the last chord's top, or both. The biases are fitted on train
windows by maximum likelihood and scored on validation windows, so the gain in pitch NLL (nats
per note) says how much a pitch head that sees intervals could take from this network without
any other change. Measured on the shipped network (December 2, validation): 2.655 -> 2.622 (the
note before), 2.633 (the last chord's top), 2.610 (both); the bias on striking the note before
again is about -1.5 nats (the sampler's restrike redraw takes part of that already), a second up
or down +0.14-0.36. The network shipped since has such biases of its own (`--interval-bias`,
models/intervals.py): on it (December 3) validation 2.588, and 2.587-2.589 with biases fitted on
top: nothing left to take. About 3 minutes on 2 cores. Needs TensorFlow and `data/maestro`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from models.intervals import chord_tops  # noqa: E402
from models.notes import CHORD_SECONDS  # noqa: E402

INTERVALS = 255  # -127 .. +127 semitones
WINDOWS_PER_CALL = 32


def last_chord_tops(pitch: np.ndarray, step_seconds: np.ndarray) -> np.ndarray:
    """[B, T-1]: for note t+1 of each window ([B, T] MIDI numbers, seconds), the top (highest
    pitch) of the chord before it as the sampler sees it when drawing that note: the chord being
    played if note t+1 starts a new one, else the chord before the one it joins (the anchor the
    shipped network's interval bias reads from models.intervals.chord_tops)."""
    tops = chord_tops(pitch, step_seconds)[:, :-1]  # after note t: (its chord's top, the one before's)
    starts = np.asarray(step_seconds)[:, 1:] >= CHORD_SECONDS
    return np.where(starts, tops[..., 0], tops[..., 1]).astype(np.int64)


def teacher_forced(model, sampler, windows: int, seed: int) -> dict:
    """Pitch logits [N, 128], the true pitch [N] and the two anchors [N] over `windows` windows."""
    rng = np.random.default_rng(seed)
    parts = {"logits": [], "true": [], "note_before": [], "chord_top": []}
    for _ in range(max(1, windows // WINDOWS_PER_CALL)):
        inputs, targets = sampler.categorical_batch(WINDOWS_PER_CALL, rng, augment=False)
        parts["logits"].append(np.asarray(model.predict_on_batch(inputs)["pitch"]).reshape(-1, 128))
        parts["true"].append(targets["pitch"].reshape(-1))
        parts["note_before"].append(inputs["pitch"].reshape(-1))
        pitch = np.concatenate([inputs["pitch"], targets["pitch"][:, -1:]], axis=1)
        steps = sampler.bins.bin_to_time(np.concatenate([inputs["step"], targets["step"][:, -1:]], axis=1))
        parts["chord_top"].append(last_chord_tops(pitch, steps).reshape(-1))
    return {name: np.concatenate(values) for name, values in parts.items()}


def pitch_nll(tf, data: dict, biases: dict) -> "tf.Tensor":
    """Mean pitch NLL (nats) with each anchor's interval bias added to the logits."""
    logits = tf.constant(data["logits"])
    candidates = np.arange(128)[None, :]
    for anchor, bias in biases.items():
        logits = logits + tf.gather(bias, candidates - data[anchor][:, None] + 127)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(data["true"], logits))


def fit(tf, keras, data: dict, anchors: tuple, steps: int = 300) -> dict:
    biases = {anchor: tf.Variable(tf.zeros(INTERVALS)) for anchor in anchors}
    optimizer = keras.optimizers.Adam(0.05)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = pitch_nll(tf, data, biases)
        variables = list(biases.values())
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return biases


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data", default="data/maestro")
    parser.add_argument("--windows", type=int, default=256, help="train windows (validation: half as many)")
    args = parser.parse_args(argv)
    import keras
    import tensorflow as tf

    from models.config import ModelConfig
    from models.graph import read_card
    from models.network import build_model
    from training.prepare import load_split
    from training.warm_start import load_exported_weights
    from training.windows import WindowSampler

    config = ModelConfig.from_dict(read_card(args.model)["config"])
    model = build_model(config)
    load_exported_weights(model, config, args.model)
    train = teacher_forced(model, WindowSampler(load_split(args.data, "train"), config), args.windows, 0)
    validation = teacher_forced(model, WindowSampler(load_split(args.data, "validation"), config), args.windows // 2, 1)
    print(f"pitch NLL, teacher-forced ({len(train['true']):,} train / {len(validation['true']):,} validation notes)")
    print(f"  the network as it is: train {float(pitch_nll(tf, train, {})):.4f}, validation {float(pitch_nll(tf, validation, {})):.4f}")
    for anchors in (("note_before",), ("chord_top",), ("note_before", "chord_top")):
        biases = fit(tf, keras, train, anchors)
        shown = biases[anchors[-1]].numpy()[[125, 126, 127, 128, 129, 115, 139]]
        print(f"  + an interval bias from {' and '.join(a.replace('_', ' ') for a in anchors)}: "
              f"train {float(pitch_nll(tf, train, biases)):.4f}, validation {float(pitch_nll(tf, validation, biases)):.4f} "
              f"(bias at -2 -1 0 +1 +2 -12 +12: {' '.join(f'{v:+.2f}' for v in shown)})")


if __name__ == "__main__":
    main()
