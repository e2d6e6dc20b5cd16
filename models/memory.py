"""Memory: attention over the last few hundred notes, beside the LSTM (ModelConfig.memory).

An LSTM's state forgets a phrase within a few dozen notes; a pianist comes back to a figure
hundreds of notes later. This layer lets every position look back over the last `memory` notes:
its query (from the LSTM's output) is matched against each earlier note's key, and what it reads
is added to the LSTM's output before the heads.

The key of a remembered note comes from the LSTM's output *before* that note, its value from the
output *after* it and the note itself. So a position whose recent past resembles the moment before
an earlier note reads that note: what came next last time (the "induction" pattern that lets a
transformer repeat a motif). A learned bias per head and distance (in notes) says how far back
each head tends to look. The output projection starts at zero, so a network given memory starts
out as the same function as the one without.

Two forms with the same arithmetic: `PastAttention`, a Keras layer over whole windows (training),
and `attention_step`, one note of the exported step graph, whose state keeps each remembered
note's key and value (see models.config.state_shape).
"""

from __future__ import annotations

import keras
from keras import layers

MASKED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="cadenza")
class PastAttention(layers.Layer):
    """[hidden [B, T, U], notes [B, T, E]] -> hidden [B, T, U] plus what it read from the last `memory` positions.

    `notes` is each position's own note, embedded (what the LSTM read there); U must divide into
    2 * heads: keys and values are U / 2 wide so one remembered note fits one state row.
    """

    def __init__(self, memory: int, heads: int, **kwargs):
        super().__init__(**kwargs)
        self.memory, self.heads = int(memory), int(heads)

    def build(self, input_shapes):
        hidden_shape, notes_shape = input_shapes
        units = hidden_shape[-1]
        if units % (2 * self.heads):
            raise ValueError(f"lstm_units ({units}) must be a multiple of 2 * memory_heads ({2 * self.heads})")
        half = units // 2
        self.query = self.add_weight(name="query", shape=(units, half), initializer="glorot_uniform")
        self.key = self.add_weight(name="key", shape=(units, half), initializer="glorot_uniform")
        self.value = self.add_weight(name="value", shape=(units, half), initializer="glorot_uniform")
        self.value_notes = self.add_weight(name="value_notes", shape=(notes_shape[-1], half), initializer="glorot_uniform")
        self.distance_bias = self.add_weight(name="distance_bias", shape=(self.heads, self.memory), initializer="zeros")
        self.output_kernel = self.add_weight(name="output", shape=(half, units), initializer="zeros")

    def _split(self, values):
        """[B, T, U/2] -> [B, heads, T, U/2/heads]"""
        ops = keras.ops
        shape = ops.shape(values)
        return ops.transpose(ops.reshape(values, (shape[0], shape[1], self.heads, -1)), (0, 2, 1, 3))

    def call(self, inputs):
        ops = keras.ops
        hidden, notes = inputs
        before = ops.pad(hidden[:, :-1], [[0, 0], [1, 0], [0, 0]])  # the LSTM's output before each note (0 at the start)
        query = self._split(ops.matmul(hidden, self.query))
        key = self._split(ops.matmul(before, self.key))
        value = self._split(ops.matmul(hidden, self.value) + ops.matmul(notes, self.value_notes))
        depth = ops.cast(ops.shape(query)[-1], "float32")
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))) / ops.sqrt(depth)  # [B, H, T, T]
        length = ops.shape(hidden)[1]
        distance = ops.arange(length)[:, None] - ops.arange(length)[None, :]
        inside = ops.logical_and(distance >= 0, distance < self.memory)
        bias = ops.take(self.distance_bias, ops.clip(distance, 0, self.memory - 1), axis=1)  # [H, T, T]
        scores = ops.where(inside[None, None], scores + bias[None], MASKED_SCORE)
        read = ops.matmul(ops.softmax(scores, axis=-1), value)  # [B, H, T, d]
        shape = ops.shape(read)
        read = ops.reshape(ops.transpose(read, (0, 2, 1, 3)), (shape[0], shape[2], -1))
        return hidden + ops.matmul(read, self.output_kernel)

    def get_config(self):
        return {**super().get_config(), "memory": self.memory, "heads": self.heads}


def attention_step(tf, weights: dict, hidden, before, note_values, memory_state, heads: int):
    """One note of PastAttention in the step graph.

    `hidden` [B, U]: the LSTM's output for this note; `before` [B, U]: its output for the note
    before; `note_values` [B, U/2]: this note's embedding times value_notes (looked up);
    `memory_state` [B, memory + 1, U]: the remembered notes' [key | value] rows, oldest first, and
    a last row filled with how many of them are real (a fresh stream remembers none).
    Returns (hidden plus what was read [B, U], the new memory state).
    """
    memory = memory_state.shape[1] - 1
    units = hidden.shape[-1]
    half, depth = units // 2, units // 2 // heads
    row = tf.concat([tf.matmul(before, weights["key"]), tf.matmul(hidden, weights["value"]) + note_values], axis=1)
    remembered = tf.concat([memory_state[:, 1:memory], row[:, None]], axis=1)  # [B, M, U]
    count = tf.minimum(memory_state[:, memory, 0] + 1.0, float(memory))
    # Products and sums over the remembered rows as they lie: no transposes (each copied the cache).
    keys = tf.reshape(remembered[:, :, :half], [-1, memory, heads, depth])  # [B, M, H, d]
    values = tf.reshape(remembered[:, :, half:], [-1, memory, heads, depth])
    query = tf.reshape(tf.matmul(hidden, weights["query"]), [-1, 1, heads, depth])
    scores = tf.reduce_sum(keys * query, axis=3) / float(depth) ** 0.5 + weights["distance_bias_by_row"][None]  # [B, M, H]
    distance = tf.range(memory - 1, -1, -1, dtype=tf.float32)  # row j lies memory - 1 - j notes back
    real = distance[None] < count[:, None]  # [B, M]
    scores = tf.where(real[:, :, None], scores, MASKED_SCORE)
    attention = tf.nn.softmax(scores, axis=1)  # over the remembered notes
    read = tf.reduce_sum(values * attention[:, :, :, None], axis=1)  # [B, H, d]
    hidden = hidden + tf.matmul(tf.reshape(read, [-1, half]), weights["output"])
    count_row = tf.ones_like(hidden) * count[:, None]
    return hidden, tf.concat([remembered, count_row[:, None]], axis=1)
