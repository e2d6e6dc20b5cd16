"""The throughput bench's arithmetic count (bench/training_throughput.py), checked against the network's own weights."""

from dataclasses import replace

import numpy as np

from bench.training_throughput import bare_lstm, multiply_adds_per_note
from models.config import ModelConfig
from models.network import build_model

SMALL = replace(ModelConfig(), lstm_units=32, window=16, memory=16, memory_heads=2, head_units=24, pitch_embedding=8,
                time_embedding=4, velocity_embedding=4, time_bins=16, velocity_bins=8, field_embedding=4)


def _matrix_weights(model) -> int:
    """Multiply-adds per note of a model's matrix products: every kernel is used once per note.
    Look-up tables (embeddings, the distance and interval biases) multiply nothing."""
    skipped = ("embeddings", "distance_bias", "from_note", "from_top")
    return sum(int(np.prod(w.shape)) for w in model.weights
               if len(w.shape) == 2 and not any(name in w.path for name in skipped))


def test_the_count_is_the_networks_kernels_plus_the_attention_over_the_window():
    for config in (SMALL, replace(SMALL, memory=0), replace(SMALL, interval_bias=False)):
        attention = 2 * config.window * (config.lstm_units // 2) if config.memory else 0
        assert multiply_adds_per_note(config) == _matrix_weights(build_model(config)) + attention
    assert multiply_adds_per_note(SMALL, floor=True) == _matrix_weights(bare_lstm(SMALL))
