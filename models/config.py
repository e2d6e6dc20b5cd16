"""Model configuration and the bins that turn times and velocities into categories.

No TensorFlow here: the runtime reads these from the model card on the TFLite path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

# The order in which a note's fields are drawn; each is conditioned on those before it.
FIELD_ORDER = ("step", "pitch", "duration", "velocity")
# Steps shorter than this are "together" (a chord) and go to the zero bin.
ZERO_BIN_LIMIT_SECONDS = 0.005


# A key whose note sounds more than this past the next onset is not struck there (mask_sounding_keys).
SOUNDING_MARGIN_SECONDS = 0.05


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the network and its training. Times in seconds."""

    preset: str = "default"
    window: int = 64  # notes per training window
    lstm_layers: int = 2
    lstm_units: int = 256
    dropout: float = 0.1
    pitch_embedding: int = 64
    time_embedding: int = 24
    velocity_embedding: int = 12
    time_bins: int = 64  # bin 0 is 0 s, then log-spaced from min_time to max_time
    min_time: float = 0.01
    max_time: float = 4.0
    velocity_bins: int = 32
    # Memory: attention over the states of the last `memory` notes (0: none, the plain LSTM), with
    # `memory_heads` heads. Windows should then be at least as long, so training sees the whole span.
    memory: int = 0
    memory_heads: int = 4
    # A learned bias on each pitch by its interval from the note before and from the last chord's
    # top (models/intervals.py); the graph then also takes each stream's chord tops.
    interval_bias: bool = False
    head_units: int = 128  # hidden layer of each field's head
    field_embedding: int = 16  # how a head sees the fields already drawn for the same note
    # Controls, measured on the real notes ahead: density and dynamics over the next
    # density_seconds, the key profile over the next key_seconds; each dropped with control_dropout.
    density_seconds: float = 4.0
    # What the density control was measured over in training: "upcoming", the notes of the next
    # density_seconds (each note's own value); "window", the whole training window's notes per
    # second, one value for a passage as a player asks for it (a constant --density or the hold).
    # A model trained on "upcoming" trusts the control as an exact count of the next 4 s, and
    # asked for a steady density it drops its chords (see README, "the density control").
    density_scope: str = "upcoming"
    key_seconds: float = 8.0
    control_dropout: float = 0.5
    # Equal weights: the loss is then the joint NLL of a note (nats), the figure models are judged by.
    loss_weights: tuple = (("pitch", 1.0), ("step", 1.0), ("duration", 1.0), ("velocity", 1.0))
    learning_rate: float = 0.004  # for batch 256 (0.002 at 64, scaled by sqrt of the batch ratio)
    batch_size: int = 256
    clip_norm: float = 1.0
    transpose_semitones: int = 5
    time_stretch: float = 0.05  # each window's times are scaled by U(1 - s, 1 + s)
    # A length a restrike cut (its key struck again while it sounded; prepare cuts it there) says
    # only that the note would have sounded at least that long: trained as P(length >= it), so the
    # network learns the lengths notes are held, and the restrikes it plays cut them as the data's did.
    censor_cut_lengths: bool = False
    # The pitch's softmax over the keys not still sounding at the next onset (input "sounding": the
    # data as prepared never strikes a key while its last note sounds; the unmasked network put 12 %
    # of its pitch probability there, and a note it drew there cut the sounding one short).
    mask_sounding_keys: bool = False

    def to_dict(self) -> dict:
        data = asdict(self)
        data["loss_weights"] = dict(self.loss_weights)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("loss_weights"), dict):
            values["loss_weights"] = tuple(values["loss_weights"].items())
        return cls(**values)


def state_shape(config: ModelConfig) -> tuple:
    """The step graph's state per stream: [rows, lstm_units]: each LSTM layer's h and c, and with
    memory one more row filled with the number of notes the stream has remembered."""
    return (2 * config.lstm_layers + (1 if config.memory else 0), config.lstm_units)


def memory_shape(config: ModelConfig) -> tuple | None:
    """With memory, the remembered notes per stream: [memory, lstm_units], each row one note's
    attention key and value (half a row each), a ring: note number n lies in row n % memory."""
    return (config.memory, config.lstm_units) if config.memory else None


SEED_CONFIG = ModelConfig(
    preset="seed", window=25, lstm_layers=1, lstm_units=128, dropout=0.0,
    loss_weights=(("pitch", 0.05), ("step", 1.0), ("duration", 1.0)),
    learning_rate=0.005, batch_size=64, transpose_semitones=0, time_stretch=0.0, clip_norm=0.0,
)
PRESETS = {"default": ModelConfig(), "seed": SEED_CONFIG}


# How finely the card records the lengths the top time bin stands for (Bins.top_bin_tail).
TAIL_QUANTILES = 64


class Bins:
    """Categorical bins for step, duration (seconds) and velocity (MIDI 1-127)."""

    def __init__(self, config: ModelConfig):
        self.time_centers = np.concatenate(([0.0], np.geomspace(config.min_time, config.max_time, config.time_bins - 1)))
        log_centers = np.log(self.time_centers[1:])
        # Boundaries halfway between centers in log space; below ZERO_BIN_LIMIT goes to bin 0.
        self._time_edges = np.exp((log_centers[1:] + log_centers[:-1]) / 2)
        self.velocity_bins = config.velocity_bins
        self.velocity_centers = np.round(1 + np.arange(config.velocity_bins) * 126 / (config.velocity_bins - 1))

    def time_to_bin(self, seconds: np.ndarray) -> np.ndarray:
        seconds = np.asarray(seconds, dtype=np.float64)
        bins = 1 + np.searchsorted(self._time_edges, seconds)
        return np.where(seconds < ZERO_BIN_LIMIT_SECONDS, 0, bins).astype(np.int32)

    def bin_to_time(self, bins: np.ndarray) -> np.ndarray:
        return self.time_centers[np.asarray(bins)]

    def time_within_bin(self, bins: np.ndarray, position: np.ndarray, top_tail=None) -> np.ndarray:
        """Seconds at `position` (0-1) across each time bin, log-uniformly: a bin stands for a span of
        lengths, and its centre alone would put every note of it on one length (bin 0, "under
        ZERO_BIN_LIMIT_SECONDS", is 0). Each reads back as its own bin.

        The top bin stands for every length from its lower edge up (training clips them to it):
        `top_tail`, quantiles of the training data's lengths in it (seconds, ascending; the card's
        `duration_tail`, see top_bin_tail), places a note there as the data has them. Without it
        the top bin spans its own width, as the others do."""
        bins, position = np.asarray(bins), np.asarray(position)
        half_width = np.log(self.time_centers[2] / self.time_centers[1]) / 2  # the bins are evenly spaced in log
        inside = (2 * position - 1) * half_width * (1 - 1e-6)
        seconds = np.where(bins > 0, self.time_centers[bins] * np.exp(inside), 0.0)
        if top_tail is not None and len(top_tail):
            tail = np.interp(position, _quantile_positions(len(top_tail)), top_tail)
            seconds = np.where(bins == len(self.time_centers) - 1, np.maximum(tail, self.top_bin_edge), seconds)
        return seconds

    @property
    def time_upper_edges(self) -> np.ndarray:
        """[time_bins] seconds: the longest time each bin stands for (the top bin: every length up,
        written as 1e9 s)."""
        return np.concatenate(([ZERO_BIN_LIMIT_SECONDS], self._time_edges, [1e9]))

    @property
    def top_bin_edge(self) -> float:
        """Seconds: the lower edge of the top time bin (training clips every longer length into it)."""
        return float(self._time_edges[-1])

    def top_bin_tail(self, seconds: np.ndarray, quantiles: int = TAIL_QUANTILES) -> list:
        """Quantiles (seconds, ascending) of the lengths `seconds` that fall in the top bin, at the
        middles of `quantiles` equal shares (the rarest extremes left out), for time_within_bin."""
        seconds = np.asarray(seconds, np.float64)
        beyond = seconds[seconds >= self.top_bin_edge]
        if not len(beyond):
            return []
        return [round(float(q), 4) for q in np.quantile(beyond, (np.arange(quantiles) + 0.5) / quantiles)]

    def velocity_to_bin(self, velocity: np.ndarray) -> np.ndarray:
        velocity = np.clip(np.asarray(velocity, dtype=np.float64), 1, 127)
        return np.round((velocity - 1) * (self.velocity_bins - 1) / 126).astype(np.int32)

    def bin_to_velocity(self, bins: np.ndarray) -> np.ndarray:
        return self.velocity_centers[np.asarray(bins)].astype(np.int32)

    def encode(self, notes: np.ndarray) -> dict:
        """Model inputs (int32 arrays) for a note array."""
        return {
            "pitch": notes["pitch"].astype(np.int32),
            "step": self.time_to_bin(notes["step"]),
            "duration": self.time_to_bin(notes["duration"]),
            "velocity": self.velocity_to_bin(notes["velocity"]),
        }


@lru_cache(maxsize=8)
def _quantile_positions(count: int) -> np.ndarray:
    """0-1 at `count` evenly spaced quantiles (read-only: shared by every call; made once, since a
    note's length is placed with it at every draw)."""
    positions = np.linspace(0, 1, count)
    positions.flags.writeable = False
    return positions
