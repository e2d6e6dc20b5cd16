"""Start a training run from an exported model's weights (`cadenza train --init-from MODEL`).

An exported model keeps only its folded step graph (models/export.py): each embedding is already
multiplied into the first LSTM kernel, the first layer's bias into the pitch table. Those products
have the embedding's rank, so a truncated SVD splits each table back into an embedding and kernel
rows that compute exactly the same function (not the same numbers the run trained, which are not
recoverable and not needed). The network built from them is checked against the exported graph
before training starts; a mismatch refuses to train.

An export with memory also holds each field's embedding times the attention's `value_notes`; it is
split together with the LSTM's rows, so one embedding serves both. What the new config adds
(memory or an interval bias to a model without it, a longer window, another learning rate) starts
fresh; memory's output and the interval tables start at zero, so the warm-started network plays
exactly like the model it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.config import FIELD_ORDER, ModelConfig
from models.errors import CadenzaError
from models.network import HEADS, head_sizes
from models.graph import read_card

SHAPE_FIELDS = ("lstm_layers", "lstm_units", "pitch_embedding", "time_embedding", "velocity_embedding", "time_bins",
                "velocity_bins", "head_units", "field_embedding")
# How far the warm-started network may differ from the exported graph (log-probability, nats).
MATCH_TOLERANCE = 1e-3


def _split(table: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """table [V, N] = embedding [V, rank] @ rows [rank, N], by truncated SVD (zero-padded where the
    table is narrower than the embedding, as in a network with few units)."""
    u, s, vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
    embedding, rows = u[:, :rank] * s[:rank], vt[:rank]
    missing = rank - embedding.shape[1]
    embedding = np.pad(embedding, [(0, 0), (0, missing)])
    rows = np.pad(rows, [(0, missing), (0, 0)])
    return embedding.astype(np.float32), rows.astype(np.float32)


MEMORY_WEIGHTS = ("key", "value", "query", "distance_bias", "output")  # in the order attention_step uses them


def _split_with_bias(table: np.ndarray, values: np.ndarray, rank: int):
    """[table | values] = embedding @ [rows | value_rows] + [bias | 0]: the pitch field, whose table
    carries the first layer's bias while its memory values have none.

    Centred, both are embedding-times-rows; the embedding is then shifted by one row `shift` that
    gives back the values' mean through value_rows, and the LSTM's bias takes the rest of the mean.
    """
    table_mean, values_mean = table.mean(axis=0), values.mean(axis=0)
    embedding, rows = _split(np.concatenate([table - table_mean, values - values_mean], axis=1), rank)
    rows, value_rows = rows[:, :table.shape[1]], rows[:, table.shape[1]:]
    shift = np.linalg.lstsq(value_rows.T.astype(np.float64), values_mean, rcond=None)[0] if values.size else np.zeros(rank)
    bias = table_mean - shift @ rows
    return (embedding + shift).astype(np.float32), rows, value_rows, bias.astype(np.float32)


def _captured(model_dir: Path, config: ModelConfig) -> dict:
    """The folded weights of an exported step graph, named (in the order the graph uses them)."""
    import tensorflow as tf

    captured = [t.numpy() for t in tf.saved_model.load(str(model_dir / "savedmodel")).signatures["step"].captured_inputs]
    names = [f"input_{name}" for name in HEADS] + ["lstm_kernel_0"]
    for index in range(1, config.lstm_layers):
        names += [f"lstm_kernel_{index}", f"lstm_bias_{index}"]
    if config.memory:
        names += [f"values_{name}" for name in HEADS] + [f"memory_{name}" for name in MEMORY_WEIGHTS]
    for column, name in enumerate(FIELD_ORDER):
        names += [f"{name}_state_kernel"] + [f"{name}_drawn_{earlier}" for earlier in FIELD_ORDER[:column]]
        names += [f"{name}_bias", f"{name}_logits_kernel", f"{name}_logits_bias"]
        if name == "pitch" and config.interval_bias:
            names += ["intervals_from_note", "intervals_from_top"]
    if len(captured) != len(names):
        raise CadenzaError(f"{model_dir}: cannot read its weights back (another export format); "
                           "start from its training run's last.keras instead")
    return dict(zip(names, captured))


def load_exported_weights(model, config: ModelConfig, model_dir: Path) -> None:
    """Set `model`'s LSTM, embeddings and heads to compute what the exported model at `model_dir` does."""
    model_dir = Path(model_dir)
    source = ModelConfig.from_dict(read_card(model_dir)["config"])
    differing = [name for name in SHAPE_FIELDS if getattr(source, name) != getattr(config, name)]
    if source.memory and (source.memory, source.memory_heads) != (config.memory, config.memory_heads):
        differing += ["memory", "memory_heads"]
    if differing:
        raise CadenzaError(f"--init-from {model_dir}: its {', '.join(differing)} differ from this run's")
    weights = _captured(model_dir, source)
    units = config.lstm_units
    kernel_rows, value_rows, first_bias = [], [], None
    for name in HEADS:
        layer = model.get_layer(f"{name}_embedding")
        rank, table = layer.embeddings.shape[1], weights[f"input_{name}"]
        values = weights.get(f"values_{name}", np.zeros((len(table), 0), np.float32))
        if name == HEADS[0]:  # the pitch table also carries the first layer's bias
            embedding, rows, field_values, first_bias = _split_with_bias(table, values, rank)
        else:
            embedding, stacked = _split(np.concatenate([table, values], axis=1), rank)
            rows, field_values = stacked[:, :table.shape[1]], stacked[:, table.shape[1]:]
        layer.set_weights([embedding])
        kernel_rows.append(rows)
        value_rows.append(field_values)
    if source.memory:
        _load_memory(model, weights, np.concatenate(value_rows))
    controls_kernel, recurrent = weights["lstm_kernel_0"][:-units], weights["lstm_kernel_0"][-units:]
    model.get_layer("lstm_0").set_weights([np.concatenate(kernel_rows + [controls_kernel]), recurrent, first_bias])
    for index in range(1, config.lstm_layers):
        stacked = weights[f"lstm_kernel_{index}"]
        model.get_layer(f"lstm_{index}").set_weights([stacked[:units], stacked[units:], weights[f"lstm_bias_{index}"]])
    _load_heads(model, config, weights)
    if source.interval_bias and config.interval_bias:
        model.get_layer("pitch_intervals").set_weights([weights["intervals_from_note"], weights["intervals_from_top"]])
    elif source.interval_bias:
        raise CadenzaError(f"--init-from {model_dir}: it has an interval bias and this run's network has none")
    _check_matches(model, config, model_dir)


def _load_memory(model, weights: dict, value_notes: np.ndarray) -> None:
    """The attention's weights as exported; value_notes as split beside the embeddings."""
    memory = {name: weights[f"memory_{name}"] for name in MEMORY_WEIGHTS}
    model.get_layer("memory").set_weights([memory["query"], memory["key"], memory["value"], value_notes,
                                           memory["distance_bias"].T, memory["output"]])


def _load_heads(model, config: ModelConfig, weights: dict) -> None:
    """Each drawn field's embedding is shared by the heads after it: split their tables side by side."""
    drawn_rows = {}
    for column, earlier in enumerate(FIELD_ORDER[:-1]):
        later = FIELD_ORDER[column + 1:]
        side_by_side = np.concatenate([weights[f"{name}_drawn_{earlier}"] for name in later], axis=1)
        embedding, rows = _split(side_by_side, config.field_embedding)
        model.get_layer(f"{earlier}_drawn").set_weights([embedding])
        drawn_rows[earlier] = dict(zip(later, np.split(rows, len(later), axis=1)))
    for column, name in enumerate(FIELD_ORDER):
        kernel = np.concatenate([weights[f"{name}_state_kernel"]] + [drawn_rows[e][name] for e in FIELD_ORDER[:column]])
        hidden_layer, logits_layer = model.get_layer(name).layers
        hidden_layer.set_weights([kernel, weights[f"{name}_bias"]])
        logits_layer.set_weights([weights[f"{name}_logits_kernel"], weights[f"{name}_logits_bias"]])


def _check_matches(model, config: ModelConfig, model_dir: Path, length: int = 24) -> None:
    """The warm-started network scores random notes as the exported graph does, or training is refused."""
    from scipy.special import log_softmax

    from models.controls import CONTROL_SIZE
    from models.graph import load_step

    rng = np.random.default_rng(0)
    sizes = head_sizes(config)
    sequence = {name: rng.integers(0, sizes[name], (2, length + 1)).astype(np.int32) for name in HEADS}
    controls = np.zeros((2, length, CONTROL_SIZE), np.float32)
    inputs = {name: values[:, :-1] for name, values in sequence.items()} | {"controls": controls}
    inputs |= {f"next_{name}": sequence[name][:, 1:] for name in FIELD_ORDER[:-1]}
    tops = rng.integers(0, 128, (2, length, 2)).astype(np.int32)  # any tops: both sides read the same
    if config.mask_sounding_keys:
        inputs["sounding"] = np.zeros((*inputs["pitch"].shape, 128), np.float32)
    full = model(inputs | ({"chord_tops": tops} if config.interval_bias else {}), training=False)
    step = load_step(model_dir, "tflite")
    card = read_card(model_dir)
    state = np.zeros((2, *card["state_shape"]), np.float32)
    ring = np.zeros((2, *card["memory_shape"]), np.float32) if card.get("memory_shape") else None
    worst = 0.0
    for position in range(length):
        forced = np.stack([sequence[name][:, position + 1] for name in FIELD_ORDER], axis=1)
        step_inputs = {**{name: values[:, position].copy() for name, values in sequence.items()}, "state": state,
                       "controls": controls[:, position].copy(), "temperature": np.ones((2, 4), np.float32),
                       "top_p": np.full((2, 4), 2.0, np.float32), "uniform": np.full((2, 4), 0.5, np.float32),
                       "forced": forced.astype(np.int32)}
        if card["config"].get("interval_bias"):
            step_inputs["chord_tops"] = tops[:, position].copy()
        if card["config"].get("mask_sounding_keys"):  # nothing sounding, as the network was given
            step_inputs["sounding"] = np.zeros((2, 128), np.float32)
        outputs = step(step_inputs | ({"memory": ring.copy()} if ring is not None else {}))
        if ring is not None:  # the runtime's ring: note n in row n % memory
            ring[:, position % ring.shape[1]] = outputs["memory_row"]
        state = outputs["state"]
        for column, name in enumerate(FIELD_ORDER):
            expected = log_softmax(np.asarray(full[name])[:, position], axis=-1)[np.arange(2), forced[:, column]]
            worst = max(worst, float(np.abs(expected - outputs["log_prob"][:, column]).max()))
    if not worst <= MATCH_TOLERANCE:
        raise CadenzaError(f"--init-from {model_dir}: the rebuilt network differs from the export by {worst:.2g} nats")
    print(f"initialised from {model_dir} (largest difference from its graph {worst:.1e} nats)", flush=True)
