"""Gather what a model card says about a run (data, epochs, test metrics) and export it."""

from __future__ import annotations

import json
from pathlib import Path

from models.errors import CadenzaError
from models.export import export_model
from training.evaluate import load_run


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def card_details(run: Path, saved: dict) -> dict:
    data = Path(saved["settings"]["data"])
    manifest = _read_json(data / "manifest.json") or {}
    state = _read_json(run / "state.json") or {}
    test = _read_json(run / "evaluation" / "test.json")
    return {
        "training": {
            "data": manifest.get("source", {"path": str(data)}),
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
            "settings": saved["settings"],
        },
        "metrics": {"test": {"model": test["model"], "unigram": test["unigram"]}} if test else {},
        "training_distributions": test["training_distributions"] if test else None,
    }


def export_run(run: Path, out: Path) -> Path:
    model, config, saved = load_run(run)
    if config.preset == "seed":
        raise CadenzaError("the seed preset is for comparison only; it has no step graph to export")
    return export_model(model, config, out, card_details(Path(run), saved))
