"""Export a trained network as a stateful single-step graph: SavedModel, .tflite and a model card.

The step takes the current note of B streams (pitch, step bin, duration bin, velocity bin,
each int32 of shape [B]) and the recurrent state [B, 2 * layers, units] (h and c per layer),
and returns the NEXT note's logits per head and the new state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from models.config import Bins, ModelConfig
from models.network import HEADS

SAVEDMODEL_DIR = "savedmodel"
TFLITE_FILE = "model.tflite"
CARD_FILE = "card.json"
LICENSE = "CC BY-NC-SA 4.0 (inherited from the MAESTRO v3.0.0 training data)"


def state_shape(config: ModelConfig) -> tuple:
    return (2 * config.lstm_layers, config.lstm_units)


def make_step_module(model, config: ModelConfig):
    """A tf.Module whose `step` and `initial_state` functions reuse the trained layers."""
    import tensorflow as tf

    class StepModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = [model.get_layer(f"{name}_embedding") for name in HEADS]
            self.cells = [model.get_layer(f"lstm_{i}").cell for i in range(config.lstm_layers)]
            self.heads = [model.get_layer(name) for name in HEADS]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name=n) for n in HEADS]
                     + [tf.TensorSpec([None, *state_shape(config)], tf.float32, name="state")])
        def step(self, pitch, step, duration, velocity, state):
            features = [embedding(v) for embedding, v in zip(self.embeddings, (pitch, step, duration, velocity))]
            hidden = tf.concat(features, axis=-1)
            new_state = []
            for index, cell in enumerate(self.cells):
                hidden, (h, c) = cell(hidden, [state[:, 2 * index], state[:, 2 * index + 1]], training=False)
                new_state += [h, c]
            outputs = {name: head(hidden) for name, head in zip(HEADS, self.heads)}
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
        "format": "cadenza-step-v1",
        "config": config.to_dict(),
        "heads": list(HEADS),
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
