"""Export a trained network as a stateful single-step graph: SavedModel, .tflite and a model card.

One call of `step` plays one note of B streams, all in the graph: it takes the previous note
(pitch, step bin, duration bin, velocity bin, each int32 [B]), the recurrent state
[B, 2 * layers, units], the controls [B, CONTROL_SIZE], and per stream the temperature of each
field [B, 4], top-p [B], uniform noise [B, 4] and `forced` [B, 4] (a bin, or -1 to draw). It draws
the next note's fields in FIELD_ORDER, each conditioned on those before it, and returns them,
their log-probabilities [B, 4] (under the tempered, truncated distribution they were drawn from)
the most likely category of each field given the ones before it [B, 4], and the new state.
Forcing every field scores a known note; the columns of the [B, 4] inputs
and outputs follow FIELD_ORDER.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from models.config import FIELD_ORDER, Bins, ModelConfig
from models.controls import CONTROL_SIZE
from models.network import HEADS
from models.runtime import CARD_FORMAT

SAVEDMODEL_DIR = "savedmodel"
TFLITE_FILE = "model.tflite"
CARD_FILE = "card.json"
LICENSE = "CC BY-NC-SA 4.0 (inherited from the MAESTRO v3.0.0 training data)"
# Stands for log(0) where a category lies outside the nucleus: finite, so one-hot sums stay exact.
OUTSIDE_NUCLEUS_LOG_PROB = -1e30


def state_shape(config: ModelConfig) -> tuple:
    return (2 * config.lstm_layers, config.lstm_units)


def draw_field(tf, logits, temperature, top_p, uniform, forced):
    """One category per row by inverse CDF on `uniform`, after temperature and nucleus (top-p).

    Returns (category int32 [B], its log-probability [B], the most likely category [B]); where
    `forced` >= 0 that category is taken instead and scored. Only ops that TFLite's builtins have (TopK, Cumsum, ArgMax).
    """
    size = logits.shape[-1]
    log_probs = tf.nn.log_softmax(logits / temperature[:, None])
    probs = tf.exp(log_probs)
    ranked = tf.math.top_k(probs, k=size).values
    mass_before = tf.cumsum(ranked, axis=1, exclusive=True)
    # The nucleus: the most likely categories until their mass reaches top_p (at least one).
    threshold = tf.reduce_min(tf.where(mass_before < top_p[:, None], ranked, 2.0), axis=1)
    keep = probs >= threshold[:, None]
    cumulative = tf.cumsum(tf.where(keep, probs, 0.0), axis=1)
    mass = cumulative[:, -1:]
    # The first kept category whose cumulative mass reaches u * mass; the last kept one always does.
    reached = tf.logical_and(keep, cumulative >= uniform[:, None] * mass)
    sampled = tf.cast(tf.argmax(tf.cast(reached, tf.int32), axis=1), tf.int32)
    choice = tf.where(forced >= 0, forced, sampled)
    kept_log_probs = tf.where(keep, log_probs - tf.math.log(mass), OUTSIDE_NUCLEUS_LOG_PROB)
    chosen = tf.reduce_sum(tf.one_hot(choice, size, dtype=tf.float32) * kept_log_probs, axis=1)
    most_likely = tf.cast(tf.argmax(logits, axis=1), tf.int32)
    return choice, chosen, most_likely


def make_step_module(model, config: ModelConfig):
    """A tf.Module whose `step` and `initial_state` functions reuse the trained layers."""
    import tensorflow as tf

    batch_vector = lambda name, dtype=tf.int32: tf.TensorSpec([None], dtype, name=name)  # noqa: E731
    per_field = lambda name, dtype=tf.float32: tf.TensorSpec([None, len(FIELD_ORDER)], dtype, name=name)  # noqa: E731

    class StepModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = [model.get_layer(f"{name}_embedding") for name in HEADS]
            self.cells = [model.get_layer(f"lstm_{i}").cell for i in range(config.lstm_layers)]
            # A head's layers one by one: the Sequential itself was built for [B, T, features].
            self.heads = {name: model.get_layer(name).layers for name in FIELD_ORDER}
            self.drawn = {name: model.get_layer(f"{name}_drawn") for name in FIELD_ORDER[:-1]}

        @tf.function(input_signature=[batch_vector(n) for n in HEADS] + [
            tf.TensorSpec([None, *state_shape(config)], tf.float32, name="state"),
            tf.TensorSpec([None, CONTROL_SIZE], tf.float32, name="controls"),
            per_field("temperature"), batch_vector("top_p", tf.float32), per_field("uniform"),
            per_field("forced", tf.int32)])
        def step(self, pitch, step, duration, velocity, state, controls, temperature, top_p, uniform, forced):
            features = [embedding(v) for embedding, v in zip(self.embeddings, (pitch, step, duration, velocity))]
            hidden = tf.concat(features + [controls], axis=-1)
            new_state = []
            for index, cell in enumerate(self.cells):
                hidden, (h, c) = cell(hidden, [state[:, 2 * index], state[:, 2 * index + 1]], training=False)
                new_state += [h, c]
            outputs, log_probs, most_likely, context = {}, [], [], [hidden]
            for column, name in enumerate(FIELD_ORDER):
                logits = tf.concat(context, axis=-1)
                for layer in self.heads[name]:
                    logits = layer(logits)
                choice, log_prob, best = draw_field(tf, logits, temperature[:, column], top_p, uniform[:, column],
                                                    forced[:, column])
                outputs[name] = choice
                log_probs.append(log_prob)
                most_likely.append(best)
                if name in self.drawn:
                    context.append(self.drawn[name](choice))
            outputs["log_prob"] = tf.stack(log_probs, axis=1)
            outputs["most_likely"] = tf.stack(most_likely, axis=1)
            outputs["state"] = tf.stack(new_state, axis=1)
            return outputs

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="batch")])
        def initial_state(self, batch):
            return {"state": tf.zeros(tf.stack([batch, *state_shape(config)]), tf.float32)}

    return StepModule()


def source_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_card(config: ModelConfig, extra: dict) -> dict:
    bins = Bins(config)
    return {
        "format": CARD_FORMAT,
        "config": config.to_dict(),
        "heads": list(HEADS),
        "field_order": list(FIELD_ORDER),
        "control_size": CONTROL_SIZE,
        "state_shape": list(state_shape(config)),
        "bins": {
            "time_seconds": [round(float(t), 6) for t in bins.time_centers],
            "velocity": [int(v) for v in bins.velocity_centers],
            "zero_bin_below_seconds": 0.005,
        },
        "license": LICENSE,
        "source_commit": source_commit(),
        **extra,
    }


def export_model(model, config: ModelConfig, out: Path, card_extra: dict | None = None) -> Path:
    """Write SavedModel + TFLite + card.json to `out`, replacing it only once all three are complete."""
    import tensorflow as tf

    if config.preset == "seed":
        raise ValueError("the seed preset predicts one note per 25-note window and has no step graph to export")
    out = Path(out)
    temporary = out.with_name(f".{out.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    module = make_step_module(model, config)
    tf.saved_model.save(module, str(temporary / SAVEDMODEL_DIR),
                        signatures={"step": module.step, "initial_state": module.initial_state})
    # Keras 3 weights are resource variables; freeze them into constants, or TFLite reads them uninitialised.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = module.step.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    (temporary / TFLITE_FILE).write_bytes(converter.convert())
    # The frozen graph loses output names; its outputs keep the flattening order of the output dict.
    output_order = list(tf.nest.flatten({k: k for k in concrete.structured_outputs}))
    card = build_card(config, {"tflite_output_order": output_order, **(card_extra or {})})
    (temporary / CARD_FILE).write_text(json.dumps(card, indent=2))
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(temporary, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, out)
    return out
