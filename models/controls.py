"""The controls a player steers with: target density, key and dynamics.

During training each control is measured on the real upcoming notes; at play time it comes from
the command line, a CC or the player. A control vector has CONTROL_SIZE floats:

  [0:12]  key: a pitch-class profile (sums to 1), C first
  [12]    1 if the key is given, else 0 (the profile is then all zeros)
  [13]    density: log(notes per second / DENSITY_REFERENCE)
  [14]    1 if the density is given
  [15]    dynamics: (mean velocity - 64) / 32
  [16]    1 if the dynamics are given

No TensorFlow here: the streamer and the runtime use it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CONTROL_SIZE = 17
KEY, KEY_ON, DENSITY, DENSITY_ON, DYNAMICS, DYNAMICS_ON = slice(0, 12), 12, 13, 14, 15, 16
DENSITY_REFERENCE = 8.0  # notes per second; only centres the input
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
# Scales as pitch-class sets from the tonic. Minor is harmonic minor: classical minor keys raise the
# seventh, and natural minor's set is already its relative major's.
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class 0-11 (C = 0) and mode 'major' or 'minor'."""

    tonic: int
    mode: str

    @property
    def scale(self) -> np.ndarray:
        """The 7 pitch classes of the key's scale."""
        steps = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        return np.array([(self.tonic + s) % 12 for s in steps])

    def __str__(self) -> str:
        return f"{PITCH_CLASSES[self.tonic]} {self.mode}"


def parse_key(text: str) -> Key:
    """'D minor', 'Dm', 'F# major', 'Bb', 'eb minor' -> Key; ValueError naming the problem."""
    match = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s*(major|minor|maj|min|m|M)?\s*", text)
    if not match:
        raise ValueError(f"cannot read key {text!r} (e.g. 'D minor', 'F# major', 'Bb')")
    name = match.group(1).upper() + match.group(2)
    name = _FLATS.get(name, name)
    mode = "minor" if match.group(3) in ("minor", "min", "m") else "major"
    return Key(PITCH_CLASSES.index(name), mode)


def scale_mask(key: Key) -> np.ndarray:
    """[12] booleans: which pitch classes belong to the key's scale."""
    mask = np.zeros(12, bool)
    mask[key.scale] = True
    return mask


def all_keys() -> list[Key]:
    return [Key(tonic, mode) for mode in ("major", "minor") for tonic in range(12)]


def best_key(pitch_class_counts: np.ndarray) -> tuple[Key, float]:
    """The major/minor key whose scale holds the largest share of the notes, and that share."""
    counts = np.asarray(pitch_class_counts, dtype=np.float64)
    total = max(counts.sum(), 1e-12)
    keys = all_keys()
    shares = np.array([counts[scale_mask(k)].sum() / total for k in keys])
    index = int(np.argmax(shares))
    return keys[index], float(shares[index])


def key_profile(key: Key, profiles: dict, strict: bool = True) -> np.ndarray:
    """A key's profile: the card's tonic-C profile of its mode ({'major': [12], 'minor': [12]}),
    rolled to its tonic. Real passages in a key also use a few notes outside its scale; `strict`
    keeps the profile to the scale (asking for a key asks for its scale, weighted as the music
    weights it), otherwise the outside notes keep their share."""
    profile = np.roll(np.asarray(profiles[key.mode], dtype=np.float32), key.tonic)
    if strict:
        profile = profile * scale_mask(key)
    return profile / max(float(profile.sum()), 1e-6)


def played_profile(pitches) -> np.ndarray | None:
    """Pitch-class profile of notes a player played (MIDI numbers), or None for no notes."""
    pitches = np.asarray(pitches, dtype=np.int64)
    if len(pitches) == 0:
        return None
    counts = np.bincount(pitches % 12, minlength=12).astype(np.float32)
    return counts / counts.sum()


def control_vector(key_profile_values=None, density: float | None = None, dynamics: float | None = None) -> np.ndarray:
    """One control vector: a key profile [12], notes per second, mean velocity; None = not given."""
    vector = np.zeros(CONTROL_SIZE, np.float32)
    if key_profile_values is not None:
        profile = np.asarray(key_profile_values, dtype=np.float32)
        vector[KEY] = profile / max(float(profile.sum()), 1e-6)
        vector[KEY_ON] = 1
    if density is not None:
        vector[DENSITY] = np.log(max(density, 0.05) / DENSITY_REFERENCE)
        vector[DENSITY_ON] = 1
    if dynamics is not None:
        vector[DYNAMICS] = (dynamics - 64.0) / 32.0
        vector[DYNAMICS_ON] = 1
    return vector


def with_densities(vectors: np.ndarray, densities: np.ndarray) -> np.ndarray:
    """Control vectors [B, CONTROL_SIZE] with each row's density set (NaN: not given), the rest kept."""
    vectors = np.array(vectors, dtype=np.float32)
    given = np.isfinite(densities)
    vectors[:, DENSITY] = np.where(given, np.log(np.maximum(np.nan_to_num(densities, nan=1.0), 0.05) / DENSITY_REFERENCE), 0.0)
    vectors[:, DENSITY_ON] = given.astype(np.float32)
    return vectors


class UpcomingControls:
    """The controls as measured on the real notes ahead of each note of a note cache (for training).

    For note j (onset o_j) the density and dynamics cover onsets in [o_j, o_j + density_seconds),
    the key profile those in [o_j, o_j + key_seconds). Where that span runs past the piece's last
    onset the control is marked as not given: it cannot be measured there.
    """

    def __init__(self, notes: np.ndarray, offsets: np.ndarray, density_seconds: float, key_seconds: float):
        count = len(notes)
        piece_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        # One increasing time line for all pieces: each piece starts far after the previous one ended.
        local = np.cumsum(notes["step"].astype(np.float64))
        piece_start = np.concatenate(([0.0], local[offsets[1:-1] - 1])) if len(offsets) > 1 else np.zeros(0)
        local = local - piece_start[piece_of] if count else local
        last_onset = np.maximum.reduceat(local, offsets[:-1]) if count else np.zeros(0)
        self.onset = local + piece_of * 1e7
        self.density_seconds, self.key_seconds = density_seconds, key_seconds
        self.density_end = np.searchsorted(self.onset, self.onset + density_seconds)
        self.key_end = np.searchsorted(self.onset, self.onset + key_seconds)
        self.density_valid = local + density_seconds <= last_onset[piece_of]
        self.key_valid = local + key_seconds <= last_onset[piece_of]
        one_hot = np.zeros((count + 1, 12), np.int32)
        one_hot[np.arange(1, count + 1), notes["pitch"].astype(np.int64) % 12] = 1
        self.pitch_class_cumsum = np.cumsum(one_hot, axis=0, dtype=np.int32)
        self.velocity_cumsum = np.concatenate(([0.0], np.cumsum(notes["velocity"].astype(np.float64))))

    def at(self, index: np.ndarray) -> dict:
        """Raw controls for notes `index` (any shape): key counts [..., 12], notes/s, mean velocity, validity."""
        density_end, key_end = self.density_end[index], self.key_end[index]
        counts = self.pitch_class_cumsum[key_end] - self.pitch_class_cumsum[index]
        in_density = np.maximum(density_end - index, 1)
        return {
            "key_counts": counts,
            "density": in_density / self.density_seconds,
            "dynamics": (self.velocity_cumsum[density_end] - self.velocity_cumsum[index]) / in_density,
            "key_valid": self.key_valid[index],
            "density_valid": self.density_valid[index],
        }


def encode_controls(raw: dict, keep: dict) -> np.ndarray:
    """Control vectors [..., CONTROL_SIZE] from UpcomingControls.at(); keep[name] masks what is given."""
    counts = raw["key_counts"].astype(np.float32)
    shape = counts.shape[:-1]
    vectors = np.zeros((*shape, CONTROL_SIZE), np.float32)
    key_on = keep["key"] & raw["key_valid"] & (counts.sum(-1) > 0)
    vectors[..., KEY] = np.where(key_on[..., None], counts / np.maximum(counts.sum(-1, keepdims=True), 1), 0)
    vectors[..., KEY_ON] = key_on
    density_on = keep["density"] & raw["density_valid"]
    vectors[..., DENSITY] = np.where(density_on, np.log(raw["density"] / DENSITY_REFERENCE), 0)
    vectors[..., DENSITY_ON] = density_on
    dynamics_on = keep["dynamics"] & raw["density_valid"]
    vectors[..., DYNAMICS] = np.where(dynamics_on, (raw["dynamics"] - 64.0) / 32.0, 0)
    vectors[..., DYNAMICS_ON] = dynamics_on
    return vectors


def tonic_profiles(notes: np.ndarray, offsets: np.ndarray, seconds: float = 8.0) -> dict:
    """Mean pitch-class profile of real passages in a major and in a minor key, rotated to tonic C.

    Passages are consecutive spans of `seconds`; each is assigned its best-fitting key. A player's
    '--key D minor' is the minor profile rolled to D: what D minor sounds like in the data.
    """
    upcoming = UpcomingControls(notes, offsets, seconds, seconds)
    starts = np.flatnonzero(upcoming.key_valid)
    # Non-overlapping passages: keep a start only when it is `seconds` past the last one kept.
    chosen, next_time = [], -np.inf
    for index in starts[:: max(1, len(starts) // 20000)]:
        if upcoming.onset[index] >= next_time:
            chosen.append(index)
            next_time = upcoming.onset[index] + seconds
    sums = {"major": np.zeros(12), "minor": np.zeros(12)}
    counts = upcoming.at(np.array(chosen, dtype=np.int64))["key_counts"] if chosen else np.zeros((0, 12))
    for passage in counts:
        if passage.sum() == 0:
            continue
        key, _ = best_key(passage)
        sums[key.mode] += np.roll(passage / passage.sum(), -key.tonic)
    return {mode: np.round(total / max(total.sum(), 1e-12), 5).tolist() for mode, total in sums.items()}
