"""Random training windows from a prepared split, with pitch and time augmentation."""

from __future__ import annotations

import numpy as np

from models.config import Bins, ModelConfig
from models.errors import CadenzaError
from training.prepare import PreparedSplit


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

    def sample_notes(self, batch_size: int, rng: np.random.Generator, augment: bool) -> dict:
        """Raw windows: pitch (int32) and step, duration (seconds), velocity, shape (batch, window + 1)."""
        piece = rng.choice(len(self._piece_start), size=batch_size, p=self._piece_probability)
        start = self._piece_start[piece] + (rng.random(batch_size) * self._start_count[piece]).astype(np.int64)
        notes = self.notes[start[:, None] + np.arange(self.config.window + 1)]
        pitch = notes["pitch"].astype(np.int32)
        step = notes["step"].astype(np.float64)
        duration = notes["duration"].astype(np.float64)
        if augment and self.config.transpose_semitones:
            shift = rng.integers(-self.config.transpose_semitones, self.config.transpose_semitones + 1, batch_size)
            shift = np.clip(shift, -pitch.min(axis=1), 127 - pitch.max(axis=1))
            pitch = pitch + shift[:, None]
        if augment and self.config.time_stretch:
            stretch = 1 + rng.uniform(-self.config.time_stretch, self.config.time_stretch, (batch_size, 1))
            step, duration = step * stretch, duration * stretch
        return {"pitch": pitch, "step": step, "duration": duration, "velocity": notes["velocity"].astype(np.int32)}

    def categorical_batch(self, batch_size: int, rng: np.random.Generator, augment: bool = True):
        """(inputs, targets) for the sequence model: targets are the inputs shifted by one note."""
        raw = self.sample_notes(batch_size, rng, augment)
        features = {
            "pitch": raw["pitch"],
            "step": self.bins.time_to_bin(raw["step"]),
            "duration": self.bins.time_to_bin(raw["duration"]),
            "velocity": self.bins.velocity_to_bin(raw["velocity"]),
        }
        inputs = {name: values[:, :-1] for name, values in features.items()}
        targets = {name: values[:, 1:] for name, values in features.items()}
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

    def batch(self, batch_size: int, rng: np.random.Generator, augment: bool = True):
        if self.config.preset == "seed":
            return self.seed_batch(batch_size, rng, augment)
        return self.categorical_batch(batch_size, rng, augment)

    def predictions_per_batch(self, batch_size: int) -> int:
        return batch_size if self.config.preset == "seed" else batch_size * self.config.window
