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


def style_distributions(real: dict, generated: dict, summary: dict, path: Path) -> None:
    """One panel per feature: real against generated, over pieces (vectors: mean per bin)."""
    names = list(summary["features"])
    columns = 4
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows))
    for axis, name in zip(axes.ravel(), names):
        row = summary["features"][name]
        real_values, generated_values = np.asarray(real[name]), np.asarray(generated[name])
        if real_values.ndim == 1:
            low = min(real_values.min(), generated_values.min())
            high = max(real_values.max(), generated_values.max())
            edges = np.linspace(low, high + 1e-9, 25)
            axis.hist(real_values, bins=edges, alpha=0.55, density=True, label="MAESTRO", color="tab:blue")
            axis.hist(generated_values, bins=edges, alpha=0.55, density=True, label="cadenza", color="tab:orange")
        else:
            axis.plot(real_values.mean(axis=0), label="MAESTRO", color="tab:blue")
            axis.plot(generated_values.mean(axis=0), label="cadenza", color="tab:orange")
        axis.set_title(f"{name}\noverlap {row['overlap']:.2f} (ceiling {row['ceiling_overlap']:.2f})", fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in axes.ravel()[len(names):]:
        axis.axis("off")
    axes.ravel()[0].legend(fontsize=8)
    figure.tight_layout()
    save(figure, path)


def piano_roll_pair(generated: np.ndarray, real: np.ndarray, path: Path, seconds: float = 30.0) -> None:
    """A generated excerpt above a MAESTRO one, the same time and pitch scales."""
    figure, axes = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True, sharey=True)
    for axis, notes, title in ((axes[0], generated, "cadenza"), (axes[1], real, "MAESTRO")):
        starts = onsets(notes)
        shown = starts < seconds
        colours = plt.cm.magma(notes["velocity"][shown] / 127.0)
        axis.barh(notes["pitch"][shown], notes["duration"][shown], left=starts[shown], height=0.8, color=colours)
        axis.set(ylabel="MIDI pitch", title=f"{title}: first {seconds:g} s")
    axes[1].set(xlabel="time (s)", xlim=(0, seconds), ylim=(20, 109))
    save(figure, path)


def continuation(prompt: np.ndarray, real: np.ndarray, generated: np.ndarray, source: str, path: Path) -> None:
    """A prompt, then its real continuation and cadenza's on the same time and pitch axes."""
    figure, axis = plt.subplots(figsize=(12, 5))
    prompt_end = onsets(prompt)[-1] + prompt["step"][-1] if len(prompt) else 0.0
    for notes, start, colour, label, lift in ((prompt, 0.0, "tab:gray", "prompt", 0.0),
                                              (real, prompt_end, "tab:blue", "the pianist's continuation", -0.2),
                                              (generated, prompt_end, "tab:orange", "cadenza's continuation", 0.2)):
        starts = start + onsets(notes)
        axis.barh(notes["pitch"] + lift, notes["duration"], left=starts, height=0.45, color=colour, alpha=0.75, label=label)
    axis.axvline(prompt_end, color="black", linewidth=0.8)
    axis.set(xlabel="time (s)", ylabel="MIDI pitch", title=f"A call and two answers: {Path(source).name}")
    axis.legend(loc="upper right", fontsize=8)
    save(figure, path)


def drift_curves(drift: dict, real_medians: dict, path: Path) -> None:
    """Each scalar feature by part of a long stream, relative to the real median (1 = MAESTRO)."""
    figure, axis = plt.subplots(figsize=(9, 5))
    parts = np.arange(1, drift["parts"] + 1)
    for name, curve in drift["curves"].items():
        reference = real_medians.get(name) or 1.0
        axis.plot(parts, np.asarray(curve) / reference, marker="o", label=name)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set(xlabel=f"part of the stream ({drift['notes_per_part']} notes each)", ylabel="generated / MAESTRO median",
             title=f"Drift over {drift['streams']} streams of {drift['parts'] * drift['notes_per_part']} notes")
    axis.legend(fontsize=7, ncol=2)
    save(figure, path)
