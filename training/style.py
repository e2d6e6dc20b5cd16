"""Free-running style evaluation: generated pieces against real MAESTRO excerpts (`cadenza evaluate --style`).

Two yardsticks. The classifier two-sample test (training/two_sample.py) asks whether gradient-
boosted trees, given every feature of an excerpt at once, can tell generated excerpts from real
ones (AUC; its ceiling: train excerpts against test). The per-feature comparison below says where
they differ.

For each feature (training/features.py) the generated and the real per-piece values are compared
as distributions over pieces: the overlapping area of their Gaussian KDEs (1 = the same) and
KL(real || generated) in nats. Scalar features are compared directly; a vector feature (a
histogram, the transition matrix) through each piece's Euclidean distance to the mean vector of
the real pieces. (MGEval compares real-to-real with real-to-generated pairwise distances; that
counts a piece's distance to itself when the sets share pieces, so identical sets would not
overlap fully.) The human ceiling is the same comparison for a second set of real
excerpts (another split) against the first: no model should be expected to beat it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.notes import NOTE_DTYPE
from models.sampling import Sampling
from training.features import SCALAR_FEATURES, VECTOR_FEATURES, feature_table
from training.prepare import PreparedSplit
from training.texture import heard, texture_figures
from training.two_sample import classifier_test

GRID_POINTS = 512


@dataclass
class StyleSettings:
    """K pieces of N notes each; the drift stream is `drift_streams` x `drift_notes`, cut in `drift_parts`."""

    # 160 excerpts a side: enough for the classifier's five folds (the test split has 177 pieces).
    pieces: int = 160
    notes: int = 400
    seed: int = 0
    # Each stream wanders in density for thousands of notes: with 8 streams the median moved
    # +-20 % between quarters by chance, with 48 still about +-10 %; the change gets a bootstrap CI.
    drift_streams: int = 96
    drift_notes: int = 10000
    drift_parts: int = 4
    # The classifier test on this many pairs of sets, draw d with seed `seed + d` for both its
    # generated and its real excerpts: one generated set of 160 x 400 notes moves the AUC by about
    # +-0.015 (validation, eight draws spread 0.916-0.958), and so does one real set (RealSets).
    # Their mean is the figure.
    draws: int = 4


@dataclass
class Excerpts:
    """Note arrays and, for each, the piece it came from (excerpts of one piece share a fold)."""

    notes: list
    pieces: np.ndarray

    @classmethod
    def generated(cls, pieces) -> "Excerpts":
        """Generated streams: each its own piece."""
        return cls(list(pieces), np.arange(len(pieces)))


class RealSets:
    """Sets of real excerpts of one split, one per seed, each with its feature table (made once).

    The classifier test draws its real side afresh with each generated set. Measured on the
    shipped model's eight generated validation sets: against the one set of 160 excerpts every
    draw used to share, AUC 0.880; against each of eight such sets in turn, 0.880-0.922 (mean
    0.903). A fixed set's luck is never averaged away, and a sampling chosen against it keeps it.
    """

    def __init__(self, split: PreparedSplit, count: int, length: int):
        self.split, self.count, self.length = split, count, length
        self._sets: dict = {}

    def excerpts(self, seed: int) -> Excerpts:
        if seed not in self._sets:
            excerpts = real_excerpts(self.split, self.count, self.length, seed)
            self._sets[seed] = (excerpts, feature_table(excerpts.notes))
        return self._sets[seed][0]

    def table(self, seed: int) -> dict:
        self.excerpts(seed)
        return self._sets[seed][1]


def real_excerpts(split: PreparedSplit, count: int, length: int, seed: int) -> Excerpts:
    """`count` excerpts of `length` notes, from as many different pieces as the split allows."""
    rng = np.random.default_rng(seed)
    lengths = np.diff(split.offsets)
    long_enough = np.flatnonzero(lengths >= length)
    if len(long_enough) == 0:
        raise ValueError(f"no piece has {length} notes")
    pieces = rng.choice(long_enough, size=count, replace=count > len(long_enough))
    excerpts = []
    for piece in pieces:
        start = split.offsets[piece] + rng.integers(0, lengths[piece] - length + 1)
        notes = split.notes[start : start + length].astype(NOTE_DTYPE)
        notes["step"][0] = 0.0
        excerpts.append(notes)
    return Excerpts(excerpts, pieces)


def _kde(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde

    values = np.asarray(values, dtype=np.float64)
    spread = values.std()
    if spread < 1e-9 or len(values) < 2:
        # A set with one value: a narrow bump, so that identical sets still overlap fully.
        width = max(1e-3 * (abs(values.mean()) + 1e-3), (grid[-1] - grid[0]) / GRID_POINTS * 2)
        density = np.exp(-0.5 * ((grid[:, None] - values[None, :]) / width) ** 2).sum(axis=1)
    else:
        density = gaussian_kde(values)(grid)
    return density / max(np.trapezoid(density, grid), 1e-300)


def overlap_and_kl(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Overlapping area of the two KDEs (0-1) and KL(reference || other) in nats."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    low, high = min(reference.min(), other.min()), max(reference.max(), other.max())
    pad = 0.25 * (high - low) + 1e-6 * (abs(high) + 1)
    grid = np.linspace(low - pad, high + pad, GRID_POINTS)
    p, q = _kde(reference, grid), _kde(other, grid)
    overlap = float(np.trapezoid(np.minimum(p, q), grid))
    tiny = 1e-12
    kl = float(np.trapezoid(p * np.log((p + tiny) / (q + tiny)), grid))
    return min(overlap, 1.0), max(kl, 0.0)


def compare_sets(real: dict, other: dict) -> dict:
    """{feature: {real_median, other_median, overlap, kl}} for two feature tables.

    For a vector feature the medians are of the distance to the real pieces' mean vector.
    """
    result = {}
    for name in (*SCALAR_FEATURES, *VECTOR_FEATURES):
        real_values, other_values = real[name], other[name]
        if name in VECTOR_FEATURES:
            centre = real_values.mean(axis=0)
            real_values = np.linalg.norm(real_values - centre, axis=1)
            other_values = np.linalg.norm(other_values - centre, axis=1)
        overlap, kl = overlap_and_kl(real_values, other_values)
        result[name] = {"real_median": float(np.median(real_values)), "other_median": float(np.median(other_values)),
                        "overlap": overlap, "kl": kl}
    return result


def generate_pieces(runtime, sampling: Sampling, count: int, length: int) -> np.ndarray:
    """[count, length] notes drawn free-running, by the same code path as `cadenza render`."""
    from training.render import RenderSettings, generate

    pieces, _ = generate(runtime, RenderSettings(out=None, count=count, notes=length, sampling=sampling, progress=False))
    return pieces.T


def drift(runtime, sampling: Sampling, settings: StyleSettings) -> dict:
    """Median of each scalar feature over the streams, per part of one long stream."""
    streams = generate_pieces(runtime, sampling, settings.drift_streams, settings.drift_notes)
    parts = np.array_split(np.arange(settings.drift_notes), settings.drift_parts)
    curves = {name: [] for name in SCALAR_FEATURES}
    for part in parts:
        table = feature_table([stream[part] for stream in streams])
        for name in SCALAR_FEATURES:
            curves[name].append(float(np.median(table[name])))
    first, last = curves["notes_per_second"][0], curves["notes_per_second"][-1]
    return {"parts": settings.drift_parts, "notes_per_part": len(parts[0]), "streams": settings.drift_streams,
            "curves": curves, "density_change": (last - first) / first if first else 0.0,
            "density_change_ci90": _bootstrap_change(streams, parts[0], parts[-1], settings.seed)}


def _bootstrap_change(streams, first_part, last_part, seed: int, resamples: int = 500) -> list:
    """90 % interval of the first-to-last change in median notes/s, resampling the streams."""
    from training.features import notes_per_second

    first = np.array([notes_per_second(stream[first_part]) for stream in streams])
    last = np.array([notes_per_second(stream[last_part]) for stream in streams])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(streams), (resamples, len(streams)))
    changes = np.median(last[picks], axis=1) / np.median(first[picks], axis=1) - 1
    return [round(float(v), 4) for v in np.percentile(changes, [5, 95])]


STEERING_DENSITIES = (4.0, 8.0, 16.0)
STEERING_KEY = "D minor"
STEERING_DYNAMICS = (40.0, 90.0)  # mean velocities asked for


def steering(runtime, sampling: Sampling, pieces: int = 16, notes: int = 500) -> dict:
    """How well the controls are followed: measured notes/s at each target density (and the chord
    fraction it plays at: a density can be met by dropping chords, which MAESTRO's passages do not
    do, 0.18 under 5 notes/s to 0.40 over 14, on validation), and the share of notes in the scale
    when a key is asked for (on top of `sampling`'s temperatures)."""
    from models.controls import parse_key, scale_mask
    from training.features import chord_fraction, notes_per_second

    result = {"density": {}, "key": STEERING_KEY}
    for target in STEERING_DENSITIES:
        drawn = generate_pieces(runtime, replace(sampling, density=target), pieces, notes)
        measured = float(np.median([notes_per_second(piece) for piece in drawn]))
        chords = float(np.median([chord_fraction(piece) for piece in drawn]))
        result["density"][f"{target:g}"] = {"measured": round(measured, 3), "error": round(measured / target - 1, 4),
                                            "chord_fraction": round(chords, 4)}
    drawn = generate_pieces(runtime, replace(sampling, key=STEERING_KEY), pieces, notes)
    mask = scale_mask(parse_key(STEERING_KEY))
    result["in_scale"] = round(float(np.mean(mask[np.concatenate([p["pitch"] for p in drawn]) % 12])), 4)
    result["dynamics"] = {}
    for target in STEERING_DYNAMICS:
        drawn = generate_pieces(runtime, replace(sampling, dynamics=target), pieces, notes)
        measured = float(np.median([piece["velocity"].mean() for piece in drawn]))
        result["dynamics"][f"{target:g}"] = {"measured": round(measured, 2)}
    return result


def summarize(generated: dict, ceiling: dict) -> dict:
    """One row per feature: real median, generated median, overlap, KL, and the human ceiling's."""
    features = {}
    for name, row in generated.items():
        features[name] = {"real_median": row["real_median"], "generated_median": row["other_median"],
                          "overlap": round(row["overlap"], 4), "kl": round(row["kl"], 4),
                          "ceiling_overlap": round(ceiling[name]["overlap"], 4), "ceiling_kl": round(ceiling[name]["kl"], 4)}
    overlaps = [row["overlap"] for row in features.values()]
    return {"features": features, "mean_overlap": round(float(np.mean(overlaps)), 4),
            "min_overlap": round(float(np.min(overlaps)), 4),
            "min_overlap_feature": min(features, key=lambda name: features[name]["overlap"]),
            "mean_ceiling_overlap": round(float(np.mean([r["ceiling_overlap"] for r in features.values()])), 4)}


def evaluate_style(runtime, sampling: Sampling, reals: RealSets, second_real: Excerpts, settings: StyleSettings,
                   with_drift: bool = True, ceiling: dict | None = None) -> tuple[dict, dict]:
    """(summary for style.json, the raw material for plots). The real excerpts are `reals`' set
    `settings.seed` (each further classifier draw takes the next). `ceiling`: the real-against-real
    figures when already measured (they do not depend on the sampling)."""
    generated, generated_table = _generated_set(runtime, sampling, settings, settings.seed)
    real, real_table = reals.excerpts(settings.seed), reals.table(settings.seed)
    ceiling = ceiling or real_ceiling(real, second_real, real_table, settings.seed)
    summary = summarize(compare_sets(real_table, generated_table), ceiling["features"])
    summary["classifier"] = classifier_test(real_table, generated_table, real.pieces, generated.pieces, settings.seed)
    summary["classifier"]["ceiling"] = ceiling["classifier"]
    summary["texture"] = {"real": texture_figures(real.notes), "generated": texture_figures(generated.notes)}
    summary["sampling"] = sampling.to_dict()
    summary["pieces"], summary["notes"] = settings.pieces, settings.notes
    material = {"real": real_table, "generated": generated_table, "real_piece": real.notes[0],
                "generated_piece": heard(generated.notes[0])}
    if with_drift:
        summary["drift"] = drift(runtime, sampling, settings)
        summary["steering"] = steering(runtime, sampling)
        # After the drift and steering, so that their streams do not depend on how many draws there are.
        draws, textures = classifier_draws(runtime, sampling, reals, summary["classifier"], settings)
        summary["classifier"] |= draws
        summary["texture"] |= texture_over_draws([summary["texture"]["generated"], *textures])
    return summary, material


def texture_over_draws(textures: list) -> dict:
    """The texture figures of every generated set, and their mean: one set of 160 x 400 notes moves
    the share of short notes by about +-0.005 and the median length by a bin (10 %)."""
    names = list(textures[0])
    return {"generated_draws": textures,
            "generated_mean": {name: round(float(np.mean([texture[name] for texture in textures])), 4) for name in names}}


def _generated_set(runtime, sampling: Sampling, settings: StyleSettings, seed: int) -> tuple[Excerpts, dict]:
    """`settings.pieces` excerpts of `settings.notes` notes drawn with `seed`, and their feature table."""
    runtime.rng = np.random.default_rng(seed)
    generated = Excerpts.generated(generate_pieces(runtime, sampling, settings.pieces, settings.notes))
    return generated, feature_table(generated.notes)


def classifier_draws(runtime, sampling: Sampling, reals: RealSets, first: dict, settings: StyleSettings) -> dict:
    """The classifier test on `settings.draws` pairs of sets, the first one `first` (already run;
    draw d has seed `settings.seed + d` for its generated notes, its real set and its folds): each
    AUC, their mean and range; and the texture figures of the further generated sets."""
    draws, textures = [{"seed": settings.seed, "auc": first["auc"], "accuracy": first["accuracy"]}], []
    for offset in range(1, settings.draws):
        seed = settings.seed + offset
        generated, generated_table = _generated_set(runtime, sampling, settings, seed)
        real = reals.excerpts(seed)
        test = classifier_test(reals.table(seed), generated_table, real.pieces, generated.pieces, seed)
        draws.append({"seed": seed, "auc": test["auc"], "accuracy": test["accuracy"]})
        textures.append(texture_figures(generated.notes))
    aucs = [draw["auc"] for draw in draws]
    return {"draws": draws, "auc_mean": round(float(np.mean(aucs)), 4),
            "auc_range": [round(float(min(aucs)), 4), round(float(max(aucs)), 4)]}, textures


def real_ceiling(real: Excerpts, second_real: Excerpts, real_table: dict | None = None, seed: int = 0) -> dict:
    """The same comparisons for a second set of real excerpts: per feature and the classifier's."""
    real_table = real_table or feature_table(real.notes)
    second_table = feature_table(second_real.notes)
    return {"features": compare_sets(real_table, second_table),
            "classifier": {key: value for key, value in classifier_test(
                real_table, second_table, real.pieces, second_real.pieces, seed).items() if key in ("auc", "accuracy")}}


def format_table(summary: dict) -> str:
    """The one-screen table: feature, real median, generated median, overlap, ceiling (vector
    features: median distance to the real mean, marked with *)."""
    lines = [f"{'feature':<32}{'real':>9}{'generated':>11}{'overlap':>9}{'ceiling':>9}{'KL':>8}"]
    for name, row in summary["features"].items():
        label = f"{name}*" if name in VECTOR_FEATURES else name
        lines.append(f"{label:<32}{row['real_median']:>9.3g}{row['generated_median']:>11.3g}{row['overlap']:>9.3f}"
                     f"{row['ceiling_overlap']:>9.3f}{row['kl']:>8.3f}")
    lines.append(f"{'mean':<32}{'':>9}{'':>11}{summary['mean_overlap']:>9.3f}{summary['mean_ceiling_overlap']:>9.3f}")
    lines.append(f"lowest overlap: {summary['min_overlap']:.3f} ({summary['min_overlap_feature']})")
    if "classifier" in summary:
        test = summary["classifier"]
        lines.append(f"classifier two-sample test ({test['excerpts']} excerpts a side, {test['folds']} folds by piece): "
                     f"AUC {test['auc']:.3f}, accuracy {test['accuracy']:.3f}; ceiling (real against real) AUC "
                     f"{test['ceiling']['auc']:.3f}; separated most by " + ", ".join(row["feature"] for row in test["separating"][:4]))
        if len(test.get("draws", [])) > 1:
            lines.append(f"  over {len(test['draws'])} draws of a generated and a real set (seeds {test['draws'][0]['seed']}-{test['draws'][-1]['seed']}): AUC "
                         + " ".join(f"{draw['auc']:.3f}" for draw in test["draws"]) + f", mean {test['auc_mean']:.3f}")
    if "texture" in summary:
        real, generated = summary["texture"]["real"], summary["texture"]["generated"]
        lines.append("texture (real / generated): " + ", ".join(f"{name.replace('_', ' ')} {real[name]:.3g} / {generated[name]:.3g}"
                                                           for name in real))
        if len(summary["texture"].get("generated_draws", [])) > 1:
            mean = summary["texture"]["generated_mean"]
            lines.append(f"  over {len(summary['texture']['generated_draws'])} generated sets (mean): "
                         + ", ".join(f"{name.replace('_', ' ')} {mean[name]:.3g}" for name in real))
    if "drift" in summary:
        curve = summary["drift"]["curves"]["notes_per_second"]
        low, high = summary["drift"].get("density_change_ci90", (float("nan"), float("nan")))
        lines.append(f"drift of notes/s over {summary['drift']['parts']} parts of {summary['drift']['notes_per_part']} notes "
                     f"({summary['drift']['streams']} streams): " + " ".join(f"{v:.2f}" for v in curve)
                     + f" ({100 * summary['drift']['density_change']:+.1f} %, 90 % CI {100 * low:+.1f} to {100 * high:+.1f} %)")
        # The texture over a long stream: a model can keep its pace and still thin to one line.
        texture = [name for name in ("chord_fraction", "polyphony_over_time") if name in summary["drift"]["curves"]]
        lines.extend(f"  {name} by part: " + " ".join(f"{v:.2f}" for v in summary["drift"]["curves"][name]) for name in texture)
    if "steering" in summary:
        steer = summary["steering"]
        lines.append("--density " + ", ".join(f"{target}: {row['measured']:.2f} notes/s ({100 * row['error']:+.0f} %"
                                             + (f", chords {row['chord_fraction']:.2f}" if "chord_fraction" in row else "") + ")"
                                             for target, row in steer["density"].items())
                     + f"; --key '{steer['key']}': {100 * steer['in_scale']:.1f} % of notes in the scale"
                     + "".join(f"; --dynamics {target}: mean velocity {row['measured']:.1f}"
                               for target, row in steer.get("dynamics", {}).items()))
    return "\n".join(lines)
