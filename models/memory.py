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
and `attention_step`, one note of the exported step graph, which reads each remembered note's key
and value from a ring the runtime keeps (see models.config.memory_shape).
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
        depth = self.query.shape[-1] // self.heads
        # Scaled here, on [B, T, U/2], rather than the scores [B, H, T, T]: the scores are the big
        # tensor, and every pass over them (scale, bias, mask) is most of this layer's time on a CPU.
        query = self._split(ops.matmul(hidden, self.query) * (1.0 / float(depth) ** 0.5))
        key = self._split(ops.matmul(before, self.key))
        value = self._split(ops.matmul(hidden, self.value) + ops.matmul(notes, self.value_notes))
        scores = ops.einsum("bhqd,bhkd->bhqk", query, key) + self._distance_bias(ops.shape(hidden)[1])[None]
        read = ops.matmul(ops.softmax(scores, axis=-1), value)  # [B, H, T, d]
        shape = ops.shape(read)
        read = ops.reshape(ops.transpose(read, (0, 2, 1, 3)), (shape[0], shape[2], -1))
        return hidden + ops.matmul(read, self.output_kernel)

    def _distance_bias(self, length):
        """[H, T, T] each head's bias by distance from query to key, MASKED_SCORE beyond the memory
        or ahead of the query: the mask and the bias in one tensor, added to the scores in one pass."""
        ops = keras.ops
        distance = ops.arange(length)[:, None] - ops.arange(length)[None, :]
        inside = ops.logical_and(distance >= 0, distance < self.memory)
        bias = ops.take(self.distance_bias, ops.clip(distance, 0, self.memory - 1), axis=1)
        return ops.where(inside[None], bias, MASKED_SCORE)

    def get_config(self):
        return {**super().get_config(), "memory": self.memory, "heads": self.heads}


def next_count(tf, count, memory: int):
    """A stream's note count after one more note, kept below 2 * memory with its remainder (the ring
    position) unchanged, so that a float32 count stays exact however long the stream plays."""
    count = count + 1.0
    return tf.where(count >= 2.0 * memory, count - memory, count)


def attention_step(tf, weights: dict, hidden, before, note_values, count, remembered, heads: int):
    """One note of PastAttention in the step graph; returns (hidden plus what was read [B, U], this
    note's [key | value] row [B, U], which the runtime writes into the ring at row count % memory).

    `hidden` [B, U]: the LSTM's output for this note; `before` [B, U]: its output for the note
    before; `note_values` [B, U/2]: this note's embedding times value_notes (looked up); `count`
    [B]: the notes before this one (see next_count); `remembered` [B, memory, U]: the ring, read in
    place (no row is copied or shifted: at batch 256 those copies took most of a step). The row
    this note will overwrite holds the note `memory` back, which the window leaves out.
    """
    memory, units = remembered.shape[1], hidden.shape[-1]
    half, depth = units // 2, units // 2 // heads
    scale = 1.0 / float(depth) ** 0.5
    own_key = tf.reshape(tf.matmul(before, weights["key"]), [-1, 1, heads, depth])
    own_value = tf.matmul(hidden, weights["value"]) + note_values
    query = tf.reshape(tf.matmul(hidden, weights["query"]), [-1, 1, heads, depth])
    keys = tf.reshape(remembered[:, :, :half], [-1, memory, heads, depth])  # [B, M, H, d]
    values = tf.reshape(remembered[:, :, half:], [-1, memory, heads, depth])
    distance = tf.math.floormod(count[:, None] - tf.range(memory, dtype=tf.float32)[None], float(memory))  # [B, M]
    real = tf.logical_and(distance >= 1.0, distance <= count[:, None])  # 0: the row this note replaces
    bias = tf.gather(weights["distance_bias"], tf.cast(distance, tf.int32))  # [B, M, H]
    scores = tf.where(real[:, :, None], tf.reduce_sum(keys * query, axis=3) * scale + bias, MASKED_SCORE)
    own_score = tf.reduce_sum(own_key * query, axis=3) * scale + weights["distance_bias"][0]  # [B, 1, H]
    attention = tf.nn.softmax(tf.concat([scores, own_score], axis=1), axis=1)  # over the window and itself
    read = tf.reduce_sum(values * attention[:, :memory, :, None], axis=1)  # [B, H, d]
    read += tf.reshape(own_value, [-1, heads, depth]) * attention[:, memory, :, None]
    hidden = hidden + tf.matmul(tf.reshape(read, [-1, half]), weights["output"])
    return hidden, tf.concat([tf.reshape(own_key, [-1, half]), own_value], axis=1)
