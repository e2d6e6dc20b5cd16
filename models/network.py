"""The Keras 3 networks: the categorical sequence model and the `seed` baseline."""

from __future__ import annotations

import warnings

import keras
from keras import layers

# Inputs are keyed "pitch" etc. but named "pitch_input": the output layers own the plain names.
warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")

from models.config import ModelConfig

HEADS = ("pitch", "step", "duration", "velocity")


def head_sizes(config: ModelConfig) -> dict:
    return {"pitch": 128, "step": config.time_bins, "duration": config.time_bins, "velocity": config.velocity_bins}


def build_model(config: ModelConfig) -> keras.Model:
    """Sequence to sequence: at every position, logits for the NEXT note's four categories."""
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=f"{name}_input") for name in HEADS}
    embedded = [
        layers.Embedding(128, config.pitch_embedding, name="pitch_embedding")(inputs["pitch"]),
        layers.Embedding(config.time_bins, config.time_embedding, name="step_embedding")(inputs["step"]),
        layers.Embedding(config.time_bins, config.time_embedding, name="duration_embedding")(inputs["duration"]),
        layers.Embedding(config.velocity_bins, config.velocity_embedding, name="velocity_embedding")(inputs["velocity"]),
    ]
    hidden = layers.Concatenate(name="features")(embedded)
    for index in range(config.lstm_layers):
        hidden = layers.LSTM(config.lstm_units, return_sequences=True, name=f"lstm_{index}")(hidden)
        if config.dropout:
            hidden = layers.Dropout(config.dropout, name=f"dropout_{index}")(hidden)
    outputs = {name: layers.Dense(size, name=name)(hidden) for name, size in head_sizes(config).items()}
    return keras.Model(inputs, outputs, name="cadenza")


def compile_model(model: keras.Model, config: ModelConfig) -> None:
    weights = dict(config.loss_weights)
    optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clip_norm or None)
    model.compile(
        optimizer=optimizer,
        loss={name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in HEADS},
        loss_weights=weights,
        metrics={"pitch": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
    )


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
