"""Export a trained network as a stateful single-step graph: SavedModel, .tflite and a model card.

One call of `step` plays one note of B streams, all in the graph: it takes the previous note
(pitch, step bin, duration bin, velocity bin, each int32 [B]), the state [B, rows, units]
(models.config.state_shape), the controls [B, CONTROL_SIZE], and per stream the temperature of each
field [B, 4] (the pitch's tempers its class alone: tempered_by_pitch_class), top-p per field
[B, 4], uniform noise [B, 4] and `forced` [B, 4] (a bin, or -1 to draw). It draws the next note's
fields in FIELD_ORDER, each conditioned on those before it, and returns them, their log-probabilities
[B, 4] (under the tempered, truncated distribution they were drawn from), the most
likely category of each field given the ones before it [B, 4], and the new state. Forcing every
field scores a known note; the columns of the [B, 4] inputs and outputs follow FIELD_ORDER. A model
with memory also takes the ring of remembered notes `memory` [B, memory, units]
(models.config.memory_shape), read in place, and returns this note's row `memory_row` [B, units]
for the runtime to write into it. A model with an interval bias also takes each stream's chord tops
`chord_tops` [B, 2] int32 (models/intervals.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from models.config import FIELD_ORDER, SOUNDING_MARGIN_SECONDS, Bins, ModelConfig, memory_shape, state_shape
from models.controls import CONTROL_SIZE
from models.network import HEADS
from models.graph import CARD_FORMAT

SAVEDMODEL_DIR = "savedmodel"
TFLITE_FILE = "model.tflite"
CARD_FILE = "card.json"
LICENSE = "CC BY-NC-SA 4.0 (inherited from the MAESTRO v3.0.0 training data)"
# Stands for log(0) where a category lies outside the nucleus: finite, so one-hot sums stay exact.
OUTSIDE_NUCLEUS_LOG_PROB = -1e30
PITCH_CLASS_ROWS = 11  # 128 pitches padded to 11 octaves of 12 classes
# What the pitch column of `temperature` tempers (the card says so; cards without it: the whole pitch).
PITCH_TEMPERATURE_SCOPE = "pitch_class"


def tempered(tf, logits, temperature):
    """Logits [B, C] at a temperature [B]: every category alike."""
    return logits / temperature[:, None]


def draw_field(tf, logits, temperature, top_p, uniform, forced, temper=tempered):
    """One category per row by inverse CDF on `uniform`, after temperature and nucleus (top-p);
    `temper(tf, logits, temperature)` applies the temperature (tempered_by_pitch_class: the pitch's).

    Returns (category int32 [B], its log-probability [B], the network's most likely category [B],
    whatever the temperature); where `forced` >= 0 that category is taken instead and scored. Only
    ops that TFLite's builtins have (TopK, Cumsum, ArgMax).
    """
    size = logits.shape[-1]
    log_probs = tf.nn.log_softmax(temper(tf, logits, temperature))
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
    chosen = tf.gather(kept_log_probs, choice, batch_dims=1)
    most_likely = tf.cast(tf.argmax(logits, axis=1), tf.int32)
    return choice, chosen, most_likely


def tempered_by_pitch_class(tf, logits, temperature):
    """Pitch logits [B, 128] at a temperature [B] that tempers the pitch class (C, C#, ...), not its
    octave: a draw from them takes a class with probability p(class)^(1/temperature) (normalised)
    and the octave within it as the network has it, p(pitch | class). For draw_field's `temper`.

    A temperature on the whole pitch sharpens the register as much as the key: below 1 the lines
    kept to fewer octaves, the hands closed in and the leaps between them thinned over a stream
    (the README's "The pitch temperature by class"). log q(pitch) = logit + (1/T - 1) * log of the
    class's summed probability (up to a constant), so at temperature 1 nothing changes.
    """
    padding = tf.fill(tf.stack([tf.shape(logits)[0], PITCH_CLASS_ROWS * 12 - 128]), -1e9)
    by_octave = tf.reshape(tf.concat([logits, padding], axis=1), [-1, PITCH_CLASS_ROWS, 12])
    class_mass = tf.reduce_logsumexp(by_octave, axis=1)  # [B, 12]: log of each class's summed exp(logit)
    per_pitch = tf.tile(class_mass, [1, PITCH_CLASS_ROWS])[:, :128]
    return logits + (1.0 / temperature - 1.0)[:, None] * per_pitch


def folded_weights(model, config: ModelConfig) -> dict:
    """The trained weights rearranged for one step, with the same arithmetic as the Keras layers.

    An embedding followed by a dense layer is one lookup table (embedding @ the kernel's rows for
    it), so each embedded input costs a gather instead of a matrix product; each LSTM layer's
    input and recurrent kernels are stacked to take [input, h] in one product. Measured on the
    shipped network this takes about a tenth off the TFLite step.
    """
    import numpy as np

    def embedding(name):
        return model.get_layer(name).embeddings.numpy()

    folded = {"lstm": [], "heads": {}}
    rows = 0
    tables = []
    for name in HEADS:
        table = embedding(f"{name}_embedding")
        tables.append((name, table, rows))
        rows += table.shape[1]
    for index in range(config.lstm_layers):
        cell = model.get_layer(f"lstm_{index}").cell
        kernel, recurrent, bias = (w.numpy() for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
        if index == 0:
            folded["inputs"] = {name: table @ kernel[start:start + table.shape[1]] for name, table, start in tables}
            folded["inputs"]["pitch"] = folded["inputs"]["pitch"] + bias  # added once, with the pitch row
            kernel, bias = kernel[rows:], np.zeros_like(bias)  # what is left: the controls' rows
        folded["lstm"].append((np.concatenate([kernel, recurrent]), bias))
    if config.memory:
        attention = model.get_layer("memory")
        value_notes, start = attention.value_notes.numpy(), 0
        folded["memory"] = {"value_tables": {}}
        for name, table, _ in tables:  # each note field's embedding times its rows of value_notes
            folded["memory"]["value_tables"][name] = table @ value_notes[start:start + table.shape[1]]
            start += table.shape[1]
        for weight in ("query", "key", "value"):
            folded["memory"][weight] = getattr(attention, weight).numpy()
        folded["memory"]["output"] = attention.output_kernel.numpy()
        folded["memory"]["distance_bias"] = attention.distance_bias.numpy().T.copy()  # [distance, head]
    if config.interval_bias:
        layer = model.get_layer("pitch_intervals")
        folded["intervals"] = (layer.from_note.numpy(), layer.from_top.numpy())
    for column, name in enumerate(FIELD_ORDER):
        hidden_layer, logits_layer = model.get_layer(name).layers
        kernel, bias = hidden_layer.kernel.numpy(), hidden_layer.bias.numpy()
        drawn, start = {}, config.lstm_units
        for earlier in FIELD_ORDER[:column]:
            table = embedding(f"{earlier}_drawn")
            drawn[earlier] = table @ kernel[start:start + table.shape[1]]
            start += table.shape[1]
        folded["heads"][name] = {"state_kernel": kernel[:config.lstm_units], "bias": bias, "drawn": drawn,
                                 "logits": (logits_layer.kernel.numpy(), logits_layer.bias.numpy())}
    return folded


def make_step_module(model, config: ModelConfig):
    """A tf.Module whose `step` and `initial_state` functions compute what the trained layers do."""
    import tensorflow as tf

    from models.intervals import TfOps, interval_bias, starts_chord_table
    from models.memory import attention_step, next_count

    batch_vector = lambda name, dtype=tf.int32: tf.TensorSpec([None], dtype, name=name)  # noqa: E731
    per_field = lambda name, dtype=tf.float32: tf.TensorSpec([None, len(FIELD_ORDER)], dtype, name=name)  # noqa: E731
    weights = folded_weights(model, config)
    constant = lambda array: tf.constant(array, tf.float32)  # noqa: E731

    class StepModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.input_tables = {name: constant(table) for name, table in weights["inputs"].items()}
            self.lstm = [(constant(kernel), constant(bias)) for kernel, bias in weights["lstm"]]
            self.memory = None
            if "memory" in weights:
                self.memory = {name: constant(value) for name, value in weights["memory"].items() if name != "value_tables"}
                self.value_tables = {name: constant(table) for name, table in weights["memory"]["value_tables"].items()}
            self.heads = {name: {"state_kernel": constant(head["state_kernel"]), "bias": constant(head["bias"]),
                                 "drawn": {k: constant(v) for k, v in head["drawn"].items()},
                                 "logits": tuple(constant(w) for w in head["logits"])}
                          for name, head in weights["heads"].items()}
            self.intervals = tuple(constant(table) for table in weights["intervals"]) if "intervals" in weights else None
            self.starts_table = starts_chord_table(Bins(config).time_centers)

            signature = [batch_vector(n) for n in HEADS] + [
                tf.TensorSpec([None, *state_shape(config)], tf.float32, name="state"),
                tf.TensorSpec([None, CONTROL_SIZE], tf.float32, name="controls"),
                per_field("temperature"), per_field("top_p"), per_field("uniform"), per_field("forced", tf.int32)]
            if config.memory:
                signature.append(tf.TensorSpec([None, *memory_shape(config)], tf.float32, name="memory"))
            if config.interval_bias:
                signature.append(tf.TensorSpec([None, 2], tf.int32, name="chord_tops"))
            if config.mask_sounding_keys:  # after chord_tops, positionally: build_model requires the bias
                signature.append(tf.TensorSpec([None, 128], tf.float32, name="sounding"))
            self.time_upper_edges = Bins(config).time_upper_edges.astype("float32")  # a constant of the graph
            self.step = tf.function(self._step if config.memory else self._step_without_memory,
                                    input_signature=signature)

        def _step_without_memory(self, pitch, step, duration, velocity, state, controls, temperature, top_p, uniform,
                                 forced, chord_tops=None, sounding=None):
            return self._step(pitch, step, duration, velocity, state, controls, temperature, top_p, uniform, forced,
                              None, chord_tops, sounding)

        def _step(self, pitch, step, duration, velocity, state, controls, temperature, top_p, uniform, forced,
                  memory=None, chord_tops=None, sounding=None):
            previous = {"pitch": pitch, "step": step, "duration": duration, "velocity": velocity}
            looked_up = tf.add_n([tf.gather(self.input_tables[name], previous[name]) for name in HEADS])
            hidden, new_state = controls, []
            before = state[:, 2 * len(self.lstm) - 2]  # the last layer's output for the note before
            for index, (kernel, bias) in enumerate(self.lstm):
                h, c = state[:, 2 * index], state[:, 2 * index + 1]
                z = tf.matmul(tf.concat([hidden, h], axis=1), kernel) + (looked_up if index == 0 else bias)
                gate_in, gate_forget, candidate, gate_out = tf.split(z, 4, axis=1)  # Keras' gate order
                c = tf.sigmoid(gate_forget) * c + tf.sigmoid(gate_in) * tf.tanh(candidate)
                hidden = tf.sigmoid(gate_out) * tf.tanh(c)
                new_state += [hidden, c]
            new_state = tf.stack(new_state, axis=1)
            if self.memory is not None:
                note_values = tf.add_n([tf.gather(self.value_tables[name], previous[name]) for name in HEADS])
                count = state[:, -1, 0]
                hidden, memory_row = attention_step(tf, self.memory, hidden, before, note_values, count, memory,
                                                    config.memory_heads)
                count_row = tf.ones_like(hidden) * next_count(tf, count, config.memory)[:, None]
                new_state = tf.concat([new_state, count_row[:, None]], axis=1)
            outputs, log_probs, most_likely = {}, [], []
            for column, name in enumerate(FIELD_ORDER):
                head = self.heads[name]
                pre = [tf.matmul(hidden, head["state_kernel"])]
                pre += [tf.gather(table, outputs[earlier]) for earlier, table in head["drawn"].items()]
                logits = tf.matmul(tf.nn.relu(tf.add_n(pre) + head["bias"]), head["logits"][0]) + head["logits"][1]
                if name == "pitch" and self.intervals is not None:  # the starts table is a constant of the graph
                    logits += interval_bias(TfOps(tf), self.intervals, pitch, chord_tops, outputs["step"],
                                            tf.constant(self.starts_table))
                if name == "pitch" and sounding is not None:  # keys still sounding at the onset just drawn
                    # The step bin's latest onset: a key free anywhere in the bin is free (a real note
                    # struck where its key's last note ended is never masked; training marks the same).
                    onset = tf.gather(tf.constant(self.time_upper_edges), outputs["step"])
                    logits -= 1e4 * tf.cast(sounding - onset[:, None] > SOUNDING_MARGIN_SECONDS, tf.float32)
                choice, log_prob, best = draw_field(tf, logits, temperature[:, column], top_p[:, column],
                                                    uniform[:, column], forced[:, column],
                                                    tempered_by_pitch_class if name == "pitch" else tempered)
                outputs[name] = choice
                log_probs.append(log_prob)
                most_likely.append(best)
            outputs["log_prob"] = tf.stack(log_probs, axis=1)
            outputs["most_likely"] = tf.stack(most_likely, axis=1)
            outputs["state"] = new_state
            if self.memory is not None:
                outputs["memory_row"] = memory_row
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
        **({"memory_shape": list(memory_shape(config))} if config.memory else {}),
        "bins": {
            "time_seconds": [round(float(t), 6) for t in bins.time_centers],
            "velocity": [int(v) for v in bins.velocity_centers],
            "zero_bin_below_seconds": 0.005,
        },
        "pitch_temperature_scope": PITCH_TEMPERATURE_SCOPE,
        "license": LICENSE,
        "source_commit": source_commit(),
        **extra,
    }


def export_model(model, config: ModelConfig, out: Path, card_extra: dict | None = None, keep_from: Path | None = None) -> Path:
    """Write SavedModel + TFLite + card.json to `out`, replacing it only once all three are complete.

    `keep_from`: an exported model folder whose other entries (its evaluation/) the new one keeps."""
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
    for entry in Path(keep_from).iterdir() if keep_from else ():
        if entry.name not in (SAVEDMODEL_DIR, TFLITE_FILE, CARD_FILE):
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, temporary / entry.name)
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
