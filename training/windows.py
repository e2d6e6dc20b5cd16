"""Random training windows from a prepared split, with pitch and time augmentation."""

from __future__ import annotations

import numpy as np

from models.config import FIELD_ORDER, SOUNDING_MARGIN_SECONDS, Bins, ModelConfig
from models.controls import UpcomingControls, encode_controls
from models.errors import CadenzaError
from models.intervals import chord_tops
from training.prepare import PreparedSplit


def add_chord_tops(inputs: dict, config: ModelConfig, bins: Bins) -> dict:
    """With config.interval_bias, the network's inputs (pitch and step bins [B, T]) also get
    "chord_tops" [B, T, 2] (models/intervals.py), from the binned steps as the runtime sees them.
    In place; returns `inputs`."""
    if config.interval_bias:
        inputs["chord_tops"] = chord_tops(inputs["pitch"], bins.bin_to_time(inputs["step"]))
    return inputs


def cut_by_restrike(split: PreparedSplit, tolerance_seconds: float = 0.001) -> np.ndarray:
    """[N] True where a note ends where its key is struck again in its piece (within
    `tolerance_seconds`): a length the restrike cut when the data was prepared (Representation's
    restrikes_cut), so the note would have sounded at least that long."""
    notes = split.notes
    piece = np.repeat(np.arange(len(split)), np.diff(split.offsets))
    steps = notes["step"].astype(np.float64)
    steps[split.offsets[:-1][np.diff(split.offsets) > 0]] = 0.0  # each piece from its own 0 s
    starts = np.cumsum(steps)
    order = np.lexsort((starts, notes["pitch"], piece))
    same_key_next = np.concatenate(((piece[order][1:] == piece[order][:-1]) & (notes["pitch"][order][1:] == notes["pitch"][order][:-1]), [False]))
    next_start = np.concatenate((starts[order][1:], [np.inf]))
    ends = starts[order] + notes["duration"][order].astype(np.float64)
    cut = np.zeros(len(notes), bool)
    cut[order] = same_key_next & (np.abs(ends - next_start) <= tolerance_seconds)
    return cut


def sounding_keys(raw: dict, bins: Bins, margin: float = SOUNDING_MARGIN_SECONDS) -> np.ndarray:
    """[B, T, 128] float32: at each position, the keys a note of the window up to it still sounds
    on more than `margin` after the latest onset the next note's step bin stands for (as the step
    graph masks them: models.export, once the step is drawn)."""
    pitch, step, duration = raw["pitch"], raw["step"].copy(), raw["duration"]
    step[:, 0] = 0.0
    onsets = np.cumsum(step, axis=1)
    latest_next = onsets[:, :-1] + bins.time_upper_edges[bins.time_to_bin(step[:, 1:])]
    batch, length = pitch.shape
    ends = np.full((batch, 128), -np.inf)
    rows = np.arange(batch)
    mask = np.zeros((batch, length - 1, 128), np.float32)
    for position in range(length - 1):
        ends[rows, pitch[:, position]] = onsets[:, position] + duration[:, position]
        mask[:, position] = ends > (latest_next[:, position] + margin)[:, None]
    return mask


class WindowSampler:
    """Draws windows of `window + 1` consecutive notes, each start equally likely across all pieces."""

    def __init__(self, split: PreparedSplit, config: ModelConfig):
        lengths = np.diff(split.offsets)
        usable = lengths > config.window
        if not usable.any():
            raise CadenzaError(f"no training piece has more than {config.window} notes (the window); use a smaller --window")
        self.notes = split.notes
        self.config = config
        self.bins = Bins(config)
        self._piece_start = split.offsets[:-1][usable]
        self._start_count = lengths[usable] - config.window
        self._piece_probability = self._start_count / self._start_count.sum()
        self.upcoming = None
        self.cut = cut_by_restrike(split) if config.censor_cut_lengths else None
        if config.preset != "seed":
            self.upcoming = UpcomingControls(split.notes, split.offsets, config.density_seconds, config.key_seconds)

    def sample_notes(self, batch_size: int, rng: np.random.Generator, augment: bool) -> dict:
        """Raw windows: pitch (int32) and step, duration (seconds), velocity, shape (batch, window + 1).

        Also "index" (the notes' positions in the cache), "shift" (semitones) and "stretch" (time factor).
        """
        piece = rng.choice(len(self._piece_start), size=batch_size, p=self._piece_probability)
        start = self._piece_start[piece] + (rng.random(batch_size) * self._start_count[piece]).astype(np.int64)
        index = start[:, None] + np.arange(self.config.window + 1)
        notes = self.notes[index]
        pitch = notes["pitch"].astype(np.int32)
        step = notes["step"].astype(np.float64)
        duration = notes["duration"].astype(np.float64)
        shift, stretch = np.zeros(batch_size, np.int64), np.ones((batch_size, 1))
        if augment and self.config.transpose_semitones:
            shift = rng.integers(-self.config.transpose_semitones, self.config.transpose_semitones + 1, batch_size)
            shift = np.clip(shift, -pitch.min(axis=1), 127 - pitch.max(axis=1))
            pitch = pitch + shift[:, None]
        if augment and self.config.time_stretch:
            stretch = 1 + rng.uniform(-self.config.time_stretch, self.config.time_stretch, (batch_size, 1))
            step, duration = step * stretch, duration * stretch
        return {"pitch": pitch, "step": step, "duration": duration, "velocity": notes["velocity"].astype(np.int32),
                "index": index, "shift": shift, "stretch": stretch}

    def controls(self, raw: dict, rng: np.random.Generator, dropout: float) -> np.ndarray:
        """[batch, window, CONTROL_SIZE]: at each position, the controls measured from the next note on.

        Each control is dropped for a whole window with probability `dropout`, so one model learns
        both to follow a control and to play without it.
        """
        measured = self.upcoming.at(raw["index"][:, 1:])
        batch = len(raw["shift"])
        # Transposing the notes transposes their key; stretching time divides their density.
        rolled = (np.arange(12)[None, :] - raw["shift"][:, None]) % 12
        measured["key_counts"] = np.take_along_axis(measured["key_counts"], rolled[:, None, :], axis=2)
        measured["density"] = measured["density"] / raw["stretch"]
        if self.config.density_scope == "window":
            # (The dynamics are given where the density is valid, so in this scope also in a piece's
            # last density_seconds, over the fewer notes there: the shipped model was trained so.)
            measured["density"], measured["density_valid"] = self._window_density(raw)
        keep = {name: (rng.random(batch) >= dropout)[:, None] for name in ("key", "density", "dynamics")}
        return encode_controls(measured, keep)

    @staticmethod
    def _window_density(raw: dict) -> tuple[np.ndarray, np.ndarray]:
        """[batch, window] each window's notes per second (its notes after the first over their span,
        time-stretched as the notes are), the same at every position, and valid everywhere."""
        steps = raw["step"][:, 1:]
        span = steps[:, 1:].sum(axis=1, keepdims=True)
        density = (steps.shape[1] - 1) / np.maximum(span, 1e-3)
        return np.broadcast_to(density, steps.shape).copy(), np.ones(steps.shape, bool)

    def categorical_batch(self, batch_size: int, rng: np.random.Generator, augment: bool = True, dropout=None,
                          extra_next: bool = False):
        """(inputs, targets) for the sequence model: targets are the inputs shifted by one note.

        The inputs also hold the controls and the next note's true fields ("next_step" ...): the
        heads drawn later in FIELD_ORDER are trained on the true earlier fields (teacher forcing).
        """
        raw = self.sample_notes(batch_size, rng, augment)
        features = {
            "pitch": raw["pitch"],
            "step": self.bins.time_to_bin(raw["step"]),
            "duration": self.bins.time_to_bin(raw["duration"]),
            "velocity": self.bins.velocity_to_bin(raw["velocity"]),
        }
        inputs = {name: values[:, :-1] for name, values in features.items()}
        targets = {name: values[:, 1:] for name, values in features.items()}
        inputs["controls"] = self.controls(raw, rng, self.config.control_dropout if dropout is None else dropout)
        add_chord_tops(inputs, self.config, self.bins)
        for name in FIELD_ORDER[:-1]:
            inputs[f"next_{name}"] = targets[name]
        if extra_next:  # bench/field_order.py: every field, for other orders
            inputs |= {f"next_{name}": targets[name] for name in FIELD_ORDER}
        if self.config.mask_sounding_keys:
            inputs["sounding"] = sounding_keys(raw, self.bins)
        if self.cut is not None:  # models.network.CensoredLengthLoss reads these labels (the inputs keep the bins)
            targets["duration"] = targets["duration"] + self.config.time_bins * self.cut[raw["index"][:, 1:]]
        return inputs, targets

    def seed_batch(self, batch_size: int, rng: np.random.Generator, augment: bool = False):
        """(window, targets) for the seed design: 25 notes in, only the note after them out."""
        raw = self.sample_notes(batch_size, rng, augment)
        window = np.stack(
            [raw["pitch"][:, :-1] / 128.0, raw["step"][:, :-1], raw["duration"][:, :-1]], axis=-1
        ).astype(np.float32)
        targets = {
            "pitch": raw["pitch"][:, -1],
            "step": raw["step"][:, -1:].astype(np.float32),
            "duration": raw["duration"][:, -1:].astype(np.float32),
        }
        return window, targets

    def batch(self, batch_size: int, rng: np.random.Generator, augment: bool = True, dropout: float | None = None):
        """One training batch; `dropout` overrides the config's control dropout (1.0: no controls)."""
        if self.config.preset == "seed":
            return self.seed_batch(batch_size, rng, augment)
        return self.categorical_batch(batch_size, rng, augment, dropout)

    def predictions_per_batch(self, batch_size: int) -> int:
        return batch_size if self.config.preset == "seed" else batch_size * self.config.window
