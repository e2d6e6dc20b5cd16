"""The Keras 3 networks: the categorical sequence model and the `seed` baseline."""

from __future__ import annotations

import warnings

import keras
from keras import layers

# Inputs are keyed "pitch" etc. but named "pitch_input": the output layers own the plain names.
warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")

import numpy as np

from models.config import FIELD_ORDER, Bins, ModelConfig
from models.controls import CONTROL_SIZE
from models.errors import CadenzaError
from models.intervals import INTERVALS, interval_bias, starts_chord_table
from models.memory import PastAttention

HEADS = ("pitch", "step", "duration", "velocity")


def head_sizes(config: ModelConfig) -> dict:
    return {"pitch": 128, "step": config.time_bins, "duration": config.time_bins, "velocity": config.velocity_bins}


def build_model(config: ModelConfig, field_order: tuple = FIELD_ORDER, conditioned: bool = True) -> keras.Model:
    """Sequence to sequence: at every position, the NEXT note's four fields, drawn one after another.

    With `config.memory`, the LSTM's output also reads from the last `memory` notes (models/memory.py);
    with `config.interval_bias`, the pitch's logits get a bias by interval from the note before and
    the last chord's top (models/intervals.py), given as "chord_tops" [B, T, 2]; with
    `config.mask_sounding_keys`, the pitch's logits leave out the keys still sounding at the next
    onset, given as "sounding" [B, T, 128] (1 where masked: training.windows.sounding_keys).

    Inputs: the current note's four fields ("pitch" ...), the controls for what comes next
    ("controls", [B, T, CONTROL_SIZE]), and the next note's true fields ("next_step" ...) for the
    heads of the fields drawn after them (teacher forcing). Each head sees the recurrent state and
    the fields before it in FIELD_ORDER (`field_order` other than that is for the ablation in
    bench/field_order.py only: the export and runtime draw in FIELD_ORDER; so is `conditioned`
    False, four independent heads as in the previous design).
    """
    if config.mask_sounding_keys and not config.interval_bias:  # the step graph takes "sounding" after "chord_tops"
        raise CadenzaError("--mask-sounding-keys needs the interval bias (--interval-bias)")
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=f"{name}_input") for name in HEADS}
    inputs["controls"] = keras.Input(shape=(None, CONTROL_SIZE), dtype="float32", name="controls_input")
    if config.interval_bias:
        inputs["chord_tops"] = keras.Input(shape=(None, 2), dtype="int32", name="chord_tops_input")
    if config.mask_sounding_keys:
        inputs["sounding"] = keras.Input(shape=(None, 128), dtype="float32", name="sounding_input")
    for name in field_order[:-1]:
        inputs[f"next_{name}"] = keras.Input(shape=(None,), dtype="int32", name=f"next_{name}_input")
    embedded = [
        layers.Embedding(128, config.pitch_embedding, name="pitch_embedding")(inputs["pitch"]),
        layers.Embedding(config.time_bins, config.time_embedding, name="step_embedding")(inputs["step"]),
        layers.Embedding(config.time_bins, config.time_embedding, name="duration_embedding")(inputs["duration"]),
        layers.Embedding(config.velocity_bins, config.velocity_embedding, name="velocity_embedding")(inputs["velocity"]),
        inputs["controls"],
    ]
    hidden = layers.Concatenate(name="features")(embedded)
    for index in range(config.lstm_layers):
        hidden = layers.LSTM(config.lstm_units, return_sequences=True, name=f"lstm_{index}")(hidden)
        if config.dropout:
            hidden = layers.Dropout(config.dropout, name=f"dropout_{index}")(hidden)
    if config.memory:
        notes = layers.Concatenate(name="notes")(embedded[:len(HEADS)])
        hidden = PastAttention(config.memory, config.memory_heads, name="memory")([hidden, notes])
    sizes = head_sizes(config)
    outputs, context = {}, [hidden]
    for name in field_order:
        head_input = context[0] if len(context) == 1 else layers.Concatenate(name=f"{name}_context")(context)
        outputs[name] = field_head(config, name, sizes[name])(head_input)
        if name == "pitch" and config.interval_bias:
            starts = starts_chord_table(Bins(config).time_centers)
            outputs[name] = IntervalBias(starts, name="pitch_intervals")(
                [outputs[name], inputs["pitch"], inputs["chord_tops"], inputs["next_step"]])
        if name == "pitch" and config.mask_sounding_keys:
            outputs[name] = SoundingMask(name="pitch_sounding")([outputs[name], inputs["sounding"]])
        if conditioned and name != field_order[-1]:
            context.append(layers.Embedding(sizes[name], config.field_embedding, name=f"{name}_drawn")(inputs[f"next_{name}"]))
    return keras.Model(inputs, outputs, name="cadenza")


@keras.saving.register_keras_serializable(package="cadenza")
class IntervalBias(layers.Layer):
    """[pitch logits [B, T, 128], pitch [B, T], chord_tops [B, T, 2], next step bin [B, T]] ->
    the logits plus each pitch's bias by its interval from the note before and from the last
    chord's top (models/intervals.py: a table [2 (joins, starts), INTERVALS] per anchor, stored
    divided by TABLE_SCALE). The tables start at zero: the same function as without them."""

    def __init__(self, starts_table, **kwargs):
        super().__init__(**kwargs)
        self.starts_table = [int(value) for value in starts_table]

    def build(self, input_shapes):
        self.from_note = self.add_weight(name="from_note", shape=(2, INTERVALS), initializer="zeros")
        self.from_top = self.add_weight(name="from_top", shape=(2, INTERVALS), initializer="zeros")

    def call(self, inputs):
        ops = keras.ops
        logits, pitch, tops, step = (inputs[0], *(ops.cast(value, "int32") for value in inputs[1:]))
        starts = ops.convert_to_tensor(np.array(self.starts_table, np.int32))
        return logits + interval_bias(ops, (self.from_note, self.from_top), pitch, tops, step, starts)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "starts_table": self.starts_table}


@keras.saving.register_keras_serializable(package="cadenza")
class SoundingMask(layers.Layer):
    """[pitch logits [B, T, 128], sounding [B, T, 128] (1: the key still sounds at the next onset)] ->
    the logits with the sounding keys all but impossible."""

    def call(self, inputs):
        return inputs[0] - 1e4 * inputs[1]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


def field_head(config: ModelConfig, name: str, size: int) -> keras.Sequential:
    """A field's logits from the state and the fields drawn before it: one hidden layer."""
    return keras.Sequential([layers.Dense(config.head_units, activation="relu", name=f"{name}_hidden"),
                             layers.Dense(size, name=f"{name}_logits")], name=name)


def compile_model(model: keras.Model, config: ModelConfig) -> None:
    weights = dict(config.loss_weights)
    optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clip_norm or None)
    losses = {name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in HEADS}
    if config.censor_cut_lengths:
        losses["duration"] = CensoredLengthLoss(config.time_bins)
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights=weights,
        metrics={"pitch": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
    )


@keras.saving.register_keras_serializable(package="cadenza")
class CensoredLengthLoss(keras.losses.Loss):
    """Cross-entropy of length bins [..., classes] (logits) where a label of `classes` or more is a
    censored length, bin label - classes: the note sounded at least that long (a restrike cut it),
    so its loss is -log P(bin >= it) rather than -log P(bin). Other labels are plain bins."""

    def __init__(self, classes: int, name: str = "censored_length_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.classes = classes

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(y_true, "int32")
        censored = labels >= self.classes
        bins = ops.where(censored, labels - self.classes, labels)
        log_probs = ops.log_softmax(y_pred, axis=-1)
        point = ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(bins, -1), axis=-1), -1)
        at_least = ops.arange(self.classes, dtype="int32") >= ops.expand_dims(bins, -1)
        tail = ops.logsumexp(ops.where(at_least, log_probs, -1e9), axis=-1)
        return -ops.where(censored, tail, point)

    def get_config(self) -> dict:
        return {**super().get_config(), "classes": self.classes}


def positive_pressure_mse(y_true, y_pred):
    """The seed design's loss for step and duration: MSE plus a push away from negative values."""
    mse = keras.ops.mean((y_true - y_pred) ** 2)
    return mse + 10.0 * keras.ops.mean(keras.ops.maximum(-y_pred, 0.0))


def build_seed_model(config: ModelConfig) -> keras.Model:
    """The original design: 25 notes of (pitch/128, step, duration) -> the one note after them."""
    window = keras.Input(shape=(config.window, 3), name="window")
    hidden = layers.LSTM(config.lstm_units, name="lstm_0")(window)
    outputs = {
        "pitch": layers.Dense(128, name="pitch")(hidden),
        "step": layers.Dense(1, name="step")(hidden),
        "duration": layers.Dense(1, name="duration")(hidden),
    }
    model = keras.Model(window, outputs, name="seed")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={
            "pitch": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "step": positive_pressure_mse,
            "duration": positive_pressure_mse,
        },
        loss_weights=dict(config.loss_weights),
        metrics={"pitch": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
    )
    return model
