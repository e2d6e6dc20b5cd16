"""Gather what a model card says about a run (data, epochs, test metrics) and export it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from models.config import Bins, ModelConfig
from models.errors import CadenzaError
from models.export import CARD_FILE, export_model
from models.graph import read_card
from training.evaluate import Unigram, load_run
from training.prepare import load_split


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def control_details(train, config) -> dict:
    """What the controls mean for this model, measured on its training data (a PreparedSplit): the
    key profiles a '--key D minor' stands for, and the typical density and dynamics ('--density auto')."""
    import numpy as np

    from models.controls import DENSITY_REFERENCE, tonic_profiles
    from training.features import notes_per_second

    densities = [notes_per_second(train.piece(i)) for i in range(len(train))]
    return {
        "density_seconds": config.density_seconds,
        "key_seconds": config.key_seconds,
        "density_reference": DENSITY_REFERENCE,
        "typical_density": round(float(np.median(densities)), 3),
        "density_quantiles": [round(float(q), 3) for q in np.percentile(densities, np.linspace(0, 100, 21))],
        "typical_velocity": round(float(np.median(train.notes["velocity"])), 1),
        "key_profiles": tonic_profiles(train.notes, train.offsets, config.key_seconds),
    }


def duration_tail(notes, config) -> dict:
    """The lengths the top duration bin stands for, measured on the training notes: training clips
    every length from the bin's lower edge up into it, and the runtime plays a note drawn there as
    long as these say (Bins.time_within_bin), not at the bin's 4 s."""
    bins = Bins(config)
    return {"seconds": bins.top_bin_tail(notes["duration"]), "from_seconds": round(bins.top_bin_edge, 4),
            "share_of_notes": round(float((notes["duration"] >= bins.top_bin_edge).mean()), 5)}


# Enough real notes that streams started together start differently; each is a row of the card.
START_NOTES = 256


def start_notes(notes, count: int = START_NOTES, seed: int = 0) -> list:
    """[pitch, step, duration, velocity] rows (MIDI numbers, seconds): notes drawn evenly from all
    of the training data's `notes`. A fresh stream continues from one of them (models.runtime), as
    every training window began at a real note."""
    import numpy as np

    chosen = notes[np.sort(np.random.default_rng(seed).choice(len(notes), min(count, len(notes)), replace=False))]
    return [[int(note["pitch"]), round(float(note["step"]), 4), round(float(note["duration"]), 4), int(note["velocity"])]
            for note in chosen]


def _portable_source(source: dict) -> dict:
    """The data source without this machine's absolute paths: only the folder's own name."""
    return {key: (Path(value).name if key == "path" else value) for key, value in source.items()}


def _started_from(model_dir: str | None) -> dict:
    """A fine-tuned run's card also records the training its starting model had had."""
    if not model_dir:
        return {}
    card = _read_json(Path(model_dir) / "card.json") or {}
    earlier = card.get("training", {})
    return {"started_from": {"model": Path(model_dir).name, "source_commit": card.get("source_commit"),
                             "predictions_seen": earlier.get("predictions_seen"),
                             "train_seconds": earlier.get("train_seconds"),
                             "started_from": earlier.get("started_from")}}


def card_details(run: Path, saved: dict, config) -> dict:
    data = Path(saved["settings"]["data"])
    train = load_split(data, "train")  # read once: the controls' profiles and the start notes both come from it
    manifest = _read_json(data / "manifest.json") or {}
    state = _read_json(run / "state.json") or {}
    test = _read_json(run / "evaluation" / "test.json")
    settings = {key: (Path(value).name if key in ("data", "out") else value) for key, value in saved["settings"].items()}
    return {
        "controls": control_details(train, config),
        "start_notes": start_notes(train.notes),
        "duration_tail": duration_tail(train.notes, config),
        "training": {
            "data": _portable_source(manifest.get("source", {"path": str(data)})),
            "splits": manifest.get("splits"),
            "inputs_sha256": manifest.get("inputs_sha256"),
            "representation": manifest.get("representation"),
            "trained_on": "train",
            "selected_on": "validation (lowest validation loss)",
            "epochs_run": state.get("epoch"),
            "best_epoch": state.get("best_epoch"),
            "best_validation_loss": state.get("best_val_loss"),
            "predictions_seen": state.get("predictions_seen"),
            "train_seconds": state.get("train_seconds"),
            "settings": settings,
            **_started_from(saved["settings"].get("init_from")),
        },
        "metrics": {"test": {"model": test["model"], "unigram": test["unigram"]}} if test else {},
        # The training data's category frequencies (render --plots draws against them): counted
        # here, so a run exported without `evaluate` (a fine-tune) has them too.
        "training_distributions": Unigram.count(train, Bins(config), config).distributions(),
    }


def export_again(model_dir: Path, out: Path) -> Path:
    """An exported model through today's step graph: its network read back from the graph it has
    (as `train --init-from` does, checked against it), exported again with its card's records (its
    training, sampling, metrics) and its other files (evaluation/) kept. `out` may be `model_dir`."""
    from models.export import build_card
    from models.network import build_model
    from training.warm_start import load_exported_weights

    model_dir = Path(model_dir)
    card = read_card(model_dir)
    config = ModelConfig.from_dict(card["config"])
    model = build_model(config)
    load_exported_weights(model, config, model_dir)
    graph_fields = set(build_card(config, {})) | {"tflite_output_order"}
    records = {name: value for name, value in card.items() if name not in graph_fields}
    # The commit its weights were first exported at, however often the graph is exported again since.
    first = card.get("exported_again", {}).get("from_commit") or card.get("source_commit", "unknown")
    records["exported_again"] = {"from_commit": first, "date": time.strftime("%Y-%m-%d")}
    return export_model(model, config, out, records, keep_from=model_dir)


def export_run(run: Path, out: Path) -> Path:
    if (Path(run) / CARD_FILE).exists():  # an exported model, not a run: through today's graph
        return export_again(run, out)
    model, config, saved = load_run(run)
    if config.preset == "seed":
        raise CadenzaError("the seed preset is for comparison only; it has no step graph to export")
    return export_model(model, config, out, card_details(Path(run), saved, config))
