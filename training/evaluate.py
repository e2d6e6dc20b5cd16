"""Per-note evaluation on a held-out split, beside a unigram baseline (`cadenza evaluate`).

Every note of every piece after the first is predicted from the notes before it. The sequence
model sees windows of 2 x window notes and is scored on the second half, so each scored
prediction has at least `window` notes of context (the first window of a piece has fewer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.config import FIELD_ORDER, Bins, ModelConfig
from models.controls import CONTROL_SIZE
from training.prepare import PreparedSplit
from training.windows import add_chord_tops

TIME_HEADS = ("step", "duration")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _median_bin(log_probabilities: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(np.exp(log_probabilities), axis=-1)
    return np.minimum((cumulative < 0.5 * cumulative[..., -1:]).sum(axis=-1), log_probabilities.shape[-1] - 1)


@dataclass
class Tally:
    """Running sums of per-note metrics."""

    notes: int = 0
    sums: dict = field(default_factory=dict)
    pitch_class_confusion: np.ndarray = field(default_factory=lambda: np.zeros((12, 12), np.int64))

    def add(self, name: str, values: np.ndarray) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(np.sum(values))

    def add_categorical(self, bins: Bins, log_probs: dict, targets: dict, raw: dict) -> None:
        """log_probs[head]: [N, K]; targets[head]: [N] bins; raw: true pitch/seconds/velocity [N]."""
        self.notes += len(targets["pitch"])
        pitch = log_probs["pitch"]
        self.add("pitch_nll", -np.take_along_axis(pitch, targets["pitch"][:, None], 1))
        top5 = np.argpartition(-pitch, 5, axis=1)[:, :5]
        predicted = pitch.argmax(axis=1)
        self.add("pitch_top1", predicted == targets["pitch"])
        self.add("pitch_top5", (top5 == targets["pitch"][:, None]).any(axis=1))
        np.add.at(self.pitch_class_confusion, (targets["pitch"] % 12, predicted % 12), 1)
        for head in TIME_HEADS:
            self.add(f"{head}_nll", -np.take_along_axis(log_probs[head], targets[head][:, None], 1))
            self.add(f"{head}_mae_seconds", np.abs(bins.bin_to_time(_median_bin(log_probs[head])) - raw[head]))
        self.add("velocity_nll", -np.take_along_axis(log_probs["velocity"], targets["velocity"][:, None], 1))
        self.add("velocity_mae", np.abs(bins.bin_to_velocity(_median_bin(log_probs["velocity"])) - raw["velocity"]))

    def means(self) -> dict:
        result = {name: round(total / max(self.notes, 1), 4) for name, total in self.sums.items()}
        nll = [f"{name}_nll" for name in FIELD_ORDER]
        if all(name in result for name in nll):
            result["joint_nll"] = round(sum(result[name] for name in nll), 4)
        result["notes"] = self.notes
        return result


def evaluation_windows(split: PreparedSplit, window: int):
    """Index rows [N, 2 * window] into split.notes (-1 = padding) and a mask of the scored positions."""
    rows, masks = [], []
    for piece in range(len(split)):
        first, last = int(split.offsets[piece]), int(split.offsets[piece + 1])
        for start in range(first, last - 1, window):
            context = max(first, start - window)
            end = min(start + window, last - 1)
            index = np.full(2 * window, -1, np.int64)
            index[: end - context] = np.arange(context, end)
            rows.append(index)
            masks.append((index >= start) & (index >= 0))
    return np.array(rows).reshape(-1, 2 * window), np.array(masks).reshape(-1, 2 * window)


def _raw_targets(notes: np.ndarray) -> dict:
    """True values to score against: pitch and velocity (MIDI numbers), step and duration (seconds)."""
    return {"pitch": notes["pitch"].astype(np.int32), "step": notes["step"].astype(np.float64),
            "duration": notes["duration"].astype(np.float64), "velocity": notes["velocity"].astype(np.int32)}


def _features(split: PreparedSplit, bins: Bins, index: np.ndarray) -> tuple[dict, dict]:
    raw = _raw_targets(split.notes[np.maximum(index, 0)])
    encoded = {"pitch": raw["pitch"], "step": bins.time_to_bin(raw["step"]),
               "duration": bins.time_to_bin(raw["duration"]), "velocity": bins.velocity_to_bin(raw["velocity"])}
    return encoded, raw


def evaluate_sequence_model(model, config: ModelConfig, split: PreparedSplit, batch_size: int = 128) -> Tally:
    bins = Bins(config)
    rows, masks = evaluation_windows(split, config.window)
    tally = Tally()
    for begin in range(0, len(rows), batch_size):
        index, mask = rows[begin : begin + batch_size], masks[begin : begin + batch_size]
        inputs, _ = _features(split, bins, index)
        targets, raw = _features(split, bins, np.where(index >= 0, index + 1, -1))
        # No controls given (the headline setting); the later heads see the true earlier fields.
        inputs["controls"] = np.zeros((*index.shape, CONTROL_SIZE), np.float32)
        inputs |= {f"next_{name}": targets[name] for name in FIELD_ORDER[:-1]}
        outputs = model(add_chord_tops(inputs, config, bins), training=False)
        log_probs = {head: _log_softmax(np.asarray(outputs[head])[mask]) for head in outputs}
        tally.add_categorical(bins, log_probs, {k: v[mask] for k, v in targets.items()}, {k: v[mask] for k, v in raw.items()})
    return tally


def evaluate_seed_model(model, config: ModelConfig, split: PreparedSplit, batch_size: int = 2048) -> Tally:
    """The seed design predicts note i from notes i-25 .. i-1, so only notes with 25 before them are scored."""
    targets = np.concatenate([np.arange(split.offsets[p] + config.window, split.offsets[p + 1]) for p in range(len(split))])
    tally = Tally()
    notes = split.notes
    for begin in range(0, len(targets), batch_size):
        target = targets[begin : begin + batch_size]
        window = notes[target[:, None] - config.window + np.arange(config.window)]
        inputs = np.stack([window["pitch"] / 128.0, window["step"], window["duration"]], axis=-1).astype(np.float32)
        outputs = model(inputs, training=False)
        pitch = _log_softmax(np.asarray(outputs["pitch"]))
        true = notes[target]
        true_pitch = true["pitch"].astype(np.int64)
        tally.notes += len(target)
        tally.add("pitch_nll", -pitch[np.arange(len(target)), true_pitch])
        predicted = pitch.argmax(axis=1)
        tally.add("pitch_top1", predicted == true_pitch)
        tally.add("pitch_top5", (np.argpartition(-pitch, 5, axis=1)[:, :5] == true_pitch[:, None]).any(axis=1))
        np.add.at(tally.pitch_class_confusion, (true_pitch % 12, predicted % 12), 1)
        for head in TIME_HEADS:
            tally.add(f"{head}_mae_seconds", np.abs(np.asarray(outputs[head])[:, 0] - true[head]))
    return tally


@dataclass
class Unigram:
    """Category frequencies counted on the training split (add-one smoothed), as log probabilities."""

    log_probs: dict

    @classmethod
    def count(cls, train: PreparedSplit, bins: Bins, config: ModelConfig) -> "Unigram":
        encoded = bins.encode(train.notes)
        sizes = {"pitch": 128, "step": config.time_bins, "duration": config.time_bins, "velocity": config.velocity_bins}
        log_probs = {}
        for head, size in sizes.items():
            counts = np.bincount(encoded[head], minlength=size) + 1.0
            log_probs[head] = np.log(counts / counts.sum())
        return cls(log_probs)

    def evaluate(self, split: PreparedSplit, bins: Bins) -> Tally:
        first_notes = split.offsets[:-1]
        keep = np.ones(len(split.notes), bool)
        keep[first_notes] = False  # the models never predict a piece's first note either
        notes = split.notes[keep]
        targets = bins.encode(notes)
        raw = _raw_targets(notes)
        tally = Tally()
        for begin in range(0, len(notes), 65536):
            part = slice(begin, begin + 65536)
            count = len(targets["pitch"][part])
            log_probs = {head: np.broadcast_to(values, (count, len(values))) for head, values in self.log_probs.items()}
            tally.add_categorical(bins, log_probs, {k: v[part] for k, v in targets.items()}, {k: v[part] for k, v in raw.items()})
        return tally

    def distributions(self) -> dict:
        return {head: np.round(np.exp(values), 6).tolist() for head, values in self.log_probs.items()}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(data, indent=2))
    temporary.replace(path)


def load_run(run: Path):
    """(keras model from best.keras, ModelConfig, run config dict) with one-line errors."""
    import keras

    from models.errors import CadenzaError
    from models.network import positive_pressure_mse

    run = Path(run)
    if not (run / "config.json").exists():
        raise CadenzaError(f"{run} is not a training run (no config.json)")
    checkpoint = run / "best.keras"
    if not checkpoint.exists():
        raise CadenzaError(f"{run} has no best.keras yet (no finished epoch)")
    saved = json.loads((run / "config.json").read_text())
    try:
        model = keras.models.load_model(checkpoint, compile=False, custom_objects={"positive_pressure_mse": positive_pressure_mse})
    except Exception as error:  # a damaged zip or h5 raises many kinds
        raise CadenzaError(f"cannot load {checkpoint}: {str(error).splitlines()[0]}") from None
    return model, ModelConfig.from_dict(saved["model"]), saved


def run_evaluation(run: Path, data: Path | None, split_name: str, plots: bool = True) -> dict:
    """Evaluate a run's best checkpoint on a split; write evaluation/<split>.json and plots."""
    from training import plots as plotting
    from training.prepare import load_split

    model, config, saved = load_run(run)
    data = Path(data or saved["settings"]["data"])
    split = load_split(data, split_name)
    bins = Bins(config)
    if config.preset == "seed":
        tally = evaluate_seed_model(model, config, split)
    else:
        tally = evaluate_sequence_model(model, config, split)
    unigram = Unigram.count(load_split(data, "train"), bins, config)
    result = {
        "split": split_name,
        "data": str(data),
        "preset": config.preset,
        "model": tally.means(),
        "unigram": unigram.evaluate(split, bins).means(),
        "pitch_class_confusion": tally.pitch_class_confusion.tolist(),
        "training_distributions": unigram.distributions(),
    }
    out = Path(run) / "evaluation"
    write_json(out / f"{split_name}.json", result)
    if plots:
        if (Path(run) / "log.csv").exists():
            plotting.loss_curves(Path(run) / "log.csv", out / "loss_curves.png")
        plotting.pitch_class_confusion(tally.pitch_class_confusion, out / f"{split_name}_pitch_class_confusion.png")
        if config.preset != "seed":
            _plot_stretch(model, config, split, out / f"{split_name}_pitch_stretch.png", plotting)
    return result


def _plot_stretch(model, config: ModelConfig, split: PreparedSplit, path: Path, plotting, length: int = 200) -> None:
    bins = Bins(config)
    piece = split.piece(0)[: length + 1]
    encoded = bins.encode(piece)
    inputs = {k: v[None, :-1] for k, v in encoded.items()}
    inputs["controls"] = np.zeros((1, len(piece) - 1, CONTROL_SIZE), np.float32)
    inputs |= {f"next_{name}": encoded[name][None, 1:] for name in FIELD_ORDER[:-1]}
    predicted = np.asarray(model(add_chord_tops(inputs, config, bins), training=False)["pitch"])[0].argmax(axis=-1)
    plotting.pitch_stretch(piece["pitch"][1:], predicted, path, f"{split.sources[0]} (first {len(predicted)} notes)")
