"""Per-piece style features, the way a listener hears a passage of piano music.

The MGEval set (Yang & Lerch, "On the evaluation of generative models in music", 2018) adapted to
performed piano in seconds, plus piano-specific figures, plus texture and phrasing
(training/texture.py). Each function takes a note array (NOTE_DTYPE, sorted by onset) and returns
a float or a vector. Times in seconds, pitches in MIDI numbers. `piece_features` measures a piece
as it sounds: a key struck again cuts its sounding note first (as ingest does to MAESTRO).
"""

from __future__ import annotations

import numpy as np

from models.config import ZERO_BIN_LIMIT_SECONDS
from models.controls import best_key
from models.notes import onsets
from training.texture import TEXTURE_SCALARS, TEXTURE_VECTORS, heard

# Note lengths from 10 ms to 8 s in 12 log-spaced classes (MGEval uses 12 beat-fraction classes).
NOTE_LENGTH_EDGES = np.geomspace(0.01, 8.0, 13)[1:-1]


def pitch_count(notes: np.ndarray) -> float:
    """How many different pitches are used."""
    return float(len(np.unique(notes["pitch"])))


def pitch_class_histogram(notes: np.ndarray) -> np.ndarray:
    """[12] share of notes per pitch class, C first."""
    counts = np.bincount(notes["pitch"].astype(np.int64) % 12, minlength=12).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def pitch_class_transition_matrix(notes: np.ndarray) -> np.ndarray:
    """[144] share of each (pitch class, next pitch class) pair between consecutive notes."""
    classes = notes["pitch"].astype(np.int64) % 12
    counts = np.bincount(classes[:-1] * 12 + classes[1:], minlength=144).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def pitch_range(notes: np.ndarray) -> float:
    """Highest minus lowest pitch, in semitones."""
    return float(notes["pitch"].max()) - float(notes["pitch"].min()) if len(notes) else 0.0


def average_pitch_interval(notes: np.ndarray) -> float:
    """Mean absolute interval between consecutive notes, in semitones."""
    return float(np.abs(np.diff(notes["pitch"].astype(np.int64))).mean()) if len(notes) > 1 else 0.0


def average_inter_onset_interval(notes: np.ndarray) -> float:
    """Mean time between consecutive distinct onsets (a chord's notes share one), in seconds."""
    steps = notes["step"][1:]
    distinct = steps[steps >= ZERO_BIN_LIMIT_SECONDS]
    return float(distinct.mean()) if len(distinct) else 0.0


def note_length_histogram(notes: np.ndarray) -> np.ndarray:
    """[12] share of notes per length class (log-spaced, 10 ms to 8 s)."""
    counts = np.bincount(np.searchsorted(NOTE_LENGTH_EDGES, notes["duration"]), minlength=12).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def notes_per_second(notes: np.ndarray) -> float:
    """Notes per second between the first and the last onset."""
    starts = onsets(notes)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    return float((len(notes) - 1) / span) if span > 0 else 0.0


def polyphony(notes: np.ndarray) -> float:
    """Mean number of notes sounding at each onset (the note itself included)."""
    starts = onsets(notes)
    ends = np.sort(starts + notes["duration"])
    started = np.arange(1, len(starts) + 1)  # onsets are sorted: notes started up to and including this one
    ended = np.searchsorted(ends, starts, side="right")
    return float(np.mean(started - ended)) if len(notes) else 0.0


def chord_fraction(notes: np.ndarray) -> float:
    """Share of notes that start together (within the zero step) with another note."""
    together = notes["step"] < ZERO_BIN_LIMIT_SECONDS
    together[0] = False
    with_next = np.append(together[1:], False)
    return float(np.mean(together | with_next)) if len(notes) else 0.0


def key_fit(notes: np.ndarray) -> float:
    """Share of notes in the best-fitting major or (harmonic) minor scale."""
    return best_key(np.bincount(notes["pitch"].astype(np.int64) % 12, minlength=12))[1]


def pitch_class_entropy(notes: np.ndarray) -> float:
    """Entropy of the pitch-class histogram in bits (0: one class, 3.58: all twelve equally)."""
    shares = pitch_class_histogram(notes)
    shares = shares[shares > 0]
    return float(-(shares * np.log2(shares)).sum())


def velocity_mean(notes: np.ndarray) -> float:
    return float(notes["velocity"].mean())


def velocity_spread(notes: np.ndarray) -> float:
    """Standard deviation of the velocities."""
    return float(notes["velocity"].astype(np.float64).std())


SCALAR_FEATURES = {
    "pitch_count": pitch_count,
    "pitch_range": pitch_range,
    "average_pitch_interval": average_pitch_interval,
    "average_inter_onset_interval": average_inter_onset_interval,
    "notes_per_second": notes_per_second,
    "polyphony": polyphony,
    "chord_fraction": chord_fraction,
    "key_fit": key_fit,
    "pitch_class_entropy": pitch_class_entropy,
    "velocity_mean": velocity_mean,
    "velocity_spread": velocity_spread,
    **TEXTURE_SCALARS,
}
VECTOR_FEATURES = {
    "pitch_class_histogram": pitch_class_histogram,
    "pitch_class_transition_matrix": pitch_class_transition_matrix,
    "note_length_histogram": note_length_histogram,
    **TEXTURE_VECTORS,
}
FEATURES = {**SCALAR_FEATURES, **VECTOR_FEATURES}


def piece_features(notes: np.ndarray) -> dict:
    """Every feature of one piece as heard: floats for the scalar ones, arrays for the vector ones."""
    notes = heard(notes)
    return {name: function(notes) for name, function in FEATURES.items()}


def feature_table(pieces: list) -> dict:
    """{feature: [pieces] or [pieces, size]} over a list of note arrays."""
    rows = [piece_features(notes) for notes in pieces]
    return {name: np.array([row[name] for row in rows]) for name in FEATURES}
