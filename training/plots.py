"""PNG plots for evaluation and rendering. Matplotlib runs headless (Agg)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.notes import onsets  # noqa: E402

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def save(figure, path: Path) -> None:
    """Save atomically: a reader never sees half a PNG."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.partial.png")
    figure.savefig(temporary, dpi=100, bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, path)


def loss_curves(log_csv: Path, path: Path) -> None:
    with open(log_csv) as handle:
        rows = list(csv.DictReader(handle))
    seen = [int(r["predictions_seen"]) / 1e6 for r in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot(seen, [float(r["loss"]) for r in rows], label="train")
    loss_axis.plot(seen, [float(r["val_loss"]) for r in rows], label="validation")
    loss_axis.set(xlabel="predicted notes seen (millions)", ylabel="weighted loss", title="Loss")
    loss_axis.legend()
    accuracy_axis.plot(seen, [float(r["pitch_accuracy"]) for r in rows], label="train")
    accuracy_axis.plot(seen, [float(r["val_pitch_accuracy"]) for r in rows], label="validation")
    accuracy_axis.set(xlabel="predicted notes seen (millions)", ylabel="pitch top-1 accuracy", title="Pitch accuracy")
    accuracy_axis.legend()
    save(figure, path)


def pitch_stretch(true_pitch: np.ndarray, predicted_pitch: np.ndarray, path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(11, 4))
    axis.plot(true_pitch, ".-", label="true next pitch", alpha=0.8)
    axis.plot(predicted_pitch, "x", label="predicted (most likely)", alpha=0.8)
    axis.set(xlabel="note index", ylabel="MIDI pitch", title=title)
    axis.legend()
    save(figure, path)


def pitch_class_confusion(confusion: np.ndarray, path: Path) -> None:
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(6, 5))
    image = axis.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    axis.set_xticks(range(12), PITCH_CLASSES)
    axis.set_yticks(range(12), PITCH_CLASSES)
    axis.set(xlabel="predicted pitch class", ylabel="true pitch class", title="Pitch-class confusion (row-normalised)")
    figure.colorbar(image)
    save(figure, path)


def piano_roll_and_histograms(notes: np.ndarray, path: Path, title: str) -> None:
    """Piano roll (velocity as colour) over histograms of pitch, step and duration."""
    starts = onsets(notes)
    figure = plt.figure(figsize=(12, 7))
    grid = figure.add_gridspec(2, 3, height_ratios=[2, 1])
    roll = figure.add_subplot(grid[0, :])
    colours = plt.cm.magma(notes["velocity"] / 127.0)
    roll.barh(notes["pitch"], notes["duration"], left=starts, height=0.8, color=colours)
    roll.set(xlabel="time (s)", ylabel="MIDI pitch", title=title)
    figure.colorbar(plt.cm.ScalarMappable(cmap="magma", norm=plt.Normalize(0, 127)), ax=roll, label="velocity")
    for column, (field, label, bins) in enumerate([
        ("pitch", "pitch (MIDI)", np.arange(0, 129, 2)),
        ("step", "step (s)", np.linspace(0, 1.5, 40)),
        ("duration", "duration (s)", np.linspace(0, 3, 40)),
    ]):
        axis = figure.add_subplot(grid[1, column])
        axis.hist(np.clip(notes[field], bins[0], bins[-1]), bins=bins, color="tab:blue")
        axis.set(xlabel=label, ylabel="notes")
    save(figure, path)


def compare_distributions(generated: dict, reference: dict, centers: dict, path: Path) -> None:
    """Generated vs training-data distributions (each a probability per category) per head."""
    heads = [h for h in ("pitch", "step", "duration", "velocity") if h in generated and h in reference]
    figure, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 3.5))
    for axis, head in zip(np.atleast_1d(axes), heads):
        x = np.arange(len(reference[head]))
        axis.plot(x, reference[head], label="training data")
        axis.plot(x, generated[head], label="generated")
        axis.set(title=head, xlabel=centers.get(head, "category"), ylabel="probability")
        axis.legend(fontsize=8)
    save(figure, path)
