"""Evaluate an exported model through the runtime, as it plays: stateful NLL over whole pieces,
and the free-running style evaluation with its sweep (`cadenza evaluate MODEL --stateful/--style/--sweep`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.config import FIELD_ORDER
from models.errors import CadenzaError, require_scikit_learn, require_tensorflow
from models.notes import NOTE_DTYPE
from models.runtime import Runtime
from models.sampling import Sampling
from training.evaluate import write_json
from training.prepare import PreparedSplit, load_split
from training.style import RealSets, StyleSettings, evaluate_style, format_table, real_excerpts
from training.style_sweep import sweep


@dataclass
class ModelEvaluation:
    """Where the model and the data are, and where the results go."""

    model_dir: Path
    data: Path
    split: str = "test"
    reference_split: str = "train"  # the human ceiling's second set of real excerpts
    out: Path | None = None  # default: MODEL/evaluation
    backend: str = "tflite"
    plots: bool = True

    @property
    def out_dir(self) -> Path:
        return Path(self.out or Path(self.model_dir) / "evaluation")


def resolve_model(path: Path) -> Path:
    """An exported model folder as is; a training run is exported to RUN/exported first (once per checkpoint)."""
    path = Path(path)
    if (path / "card.json").exists():
        return path
    if (path / "config.json").exists() and (path / "best.keras").exists():
        exported = path / "exported"
        if not (exported / "card.json").exists() or (exported / "card.json").stat().st_mtime < (path / "best.keras").stat().st_mtime:
            from training.export_run import export_run

            require_tensorflow(f"exporting the run {path}")
            export_run(path, exported)
        return exported
    raise CadenzaError(f"{path} is neither an exported model (card.json) nor a training run with best.keras")


def model_data(evaluation: ModelEvaluation, split: str, card: dict) -> PreparedSplit:
    """The split the model with `card` is scored or prompted on, refused when it was prepared another
    way than the model's training data (lengths cut at restrikes or not): its figures would be wrong silently."""
    from models.notes import Representation

    trained = Representation.of_card(card)
    manifest = Path(evaluation.data) / "manifest.json"
    prepared = Representation.from_dict(json.loads(manifest.read_text()).get("representation") if manifest.exists() else None)
    if trained != prepared:
        flags = [flag for flag, wanted in (("--no-sustain", not trained.sustain_pedal),
                                           ("--hold-restrikes", not trained.restrikes_cut)) if wanted]
        raise CadenzaError(f"{evaluation.data} was prepared as {prepared.to_dict()}, the model trained on "
                           f"{trained.to_dict()}: prepare it again with "
                           + (" ".join(flags) or "neither --no-sustain nor --hold-restrikes"))
    return load_split(evaluation.data, split)


def stateful_nll(runtime: Runtime, split: PreparedSplit, max_notes: int | None, batch: int = 64, log=print) -> dict:
    """Per-field and joint NLL (nats per note) and pitch top-1, one stateful pass over each whole piece."""
    lengths = np.diff(split.offsets)
    if max_notes:
        lengths = np.minimum(lengths, max_notes)
    order = np.argsort(lengths)  # similar lengths batched together: less padding
    sums = {name: 0.0 for name in FIELD_ORDER}
    hits, notes_scored = 0, 0
    started = time.perf_counter()
    for begin in range(0, len(order), batch):
        pieces = order[begin : begin + batch]
        width = int(lengths[pieces].max())
        padded = np.zeros((len(pieces), width), dtype=NOTE_DTYPE)
        for row, piece in enumerate(pieces):
            padded[row, : lengths[piece]] = split.piece(piece)[: lengths[piece]]
        scores, pitch_hits = runtime.score_with_pitch_hits(padded, lengths[pieces])
        for name in FIELD_ORDER:
            sums[name] -= float(scores[name].sum())
        hits += int(pitch_hits.sum())
        notes_scored += int(lengths[pieces].sum())
        log(f"  scored {notes_scored:,} notes ({notes_scored / (time.perf_counter() - started):,.0f} notes/s)")
    result = {f"{name}_nll": round(sums[name] / notes_scored, 4) for name in FIELD_ORDER}
    result["joint_nll"] = round(sum(sums.values()) / notes_scored, 4)
    result["pitch_top1"] = round(hits / notes_scored, 4)
    result["notes"] = notes_scored
    result["pieces"] = len(order)
    result["max_notes_per_piece"] = max_notes
    result["notes_per_second_scored"] = round(notes_scored / (time.perf_counter() - started), 1)
    return result


def run_stateful(evaluation: ModelEvaluation, max_notes: int | None, log=print) -> dict:
    """Write the stateful figures into evaluation/<split>.json (kept beside what is there)."""
    runtime = Runtime(evaluation.model_dir, backend=evaluation.backend, seed=0)
    result = stateful_nll(runtime, model_data(evaluation, evaluation.split, runtime.card), max_notes, log=log)
    path = evaluation.out_dir / f"{evaluation.split}.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing["stateful"] = result | {"bins": {"time": runtime.config.time_bins, "velocity": runtime.config.velocity_bins}}
    write_json(path, existing)
    if evaluation.out is None:
        update_card(Path(evaluation.model_dir), lambda card: card.setdefault("metrics", {}).setdefault(
            evaluation.split, {}).update({"stateful": existing["stateful"]}))
    return result


def run_style(evaluation: ModelEvaluation, sampling: Sampling, settings: StyleSettings, log=print) -> dict:
    """Generate, compare with real excerpts and the human ceiling, write style.json and the plots."""
    require_scikit_learn("the style evaluation")
    runtime = Runtime(evaluation.model_dir, backend=evaluation.backend, seed=settings.seed)
    reals = RealSets(load_split(evaluation.data, evaluation.split), settings.pieces, settings.notes)
    second = real_excerpts(load_split(evaluation.data, evaluation.reference_split), settings.pieces, settings.notes,
                           settings.seed + 1)
    started = time.perf_counter()
    summary, material = evaluate_style(runtime, sampling, reals, second, settings)
    summary |= {"split": evaluation.split, "ceiling_split": evaluation.reference_split,
                "seconds": round(time.perf_counter() - started, 1)}
    out = evaluation.out_dir
    write_json(out / "style.json", summary)
    if evaluation.out is None:  # the model's own evaluation: its card carries the headline figures
        figures = {key: summary[key] for key in ("mean_overlap", "min_overlap", "min_overlap_feature",
                                                 "mean_ceiling_overlap", "sampling", "texture")}
        figures["classifier"] = {key: summary["classifier"][key] for key in ("auc", "accuracy", "ceiling", "auc_mean", "auc_range")
                                 if key in summary["classifier"]}
        figures["density_change_over_stream"] = summary["drift"]["density_change"]
        figures["steering"] = summary["steering"]
        update_card(Path(evaluation.model_dir), lambda card: card.setdefault("metrics", {}).setdefault(
            evaluation.split, {}).update({"style": figures}))
    if evaluation.plots:
        from training import plots

        plots.style_distributions(material["real"], material["generated"], summary, out / "style_distributions.png")
        plots.piano_roll_pair(material["generated_piece"], material["real_piece"], out / "style_piano_roll.png")
        medians = {name: row["real_median"] for name, row in summary["features"].items()}
        plots.drift_curves(summary["drift"], medians, out / "style_drift.png")
    log(format_table(summary))
    return summary


def run_sweep(evaluation: ModelEvaluation, base: Sampling, settings: StyleSettings, log=print) -> dict:
    """The sweep runs on the validation split (ceiling: train excerpts); writes sweep.json with the best setting."""
    require_scikit_learn("the style sweep")
    runtime = Runtime(evaluation.model_dir, backend=evaluation.backend, seed=settings.seed)
    reals = RealSets(load_split(evaluation.data, "validation"), settings.pieces, settings.notes)
    second = real_excerpts(load_split(evaluation.data, "train"), settings.pieces, settings.notes, settings.seed + 1)
    best, rows, finalists = sweep(runtime, reals, second, settings, base, log=log)
    result = {"split": "validation", "best": best.to_dict(), "rows": rows, "finalists": finalists}
    write_json(evaluation.out_dir / "sweep.json", result)
    chosen = [row for row in rows if row["sampling"] == best.to_dict()][-1]
    record_sampling(Path(evaluation.model_dir), best, chosen)
    return result


def run_fit_lines(evaluation: ModelEvaluation, sampling: Sampling, settings: StyleSettings, log=print) -> dict:
    """Fit the line tables on the training split (training/line_tilt.py), on as many excerpts as
    the style test's draws hold; write line_tilt.json and the tables into the model's card."""
    from training.line_tilt import LineFitSettings, fit_line_tables, format_tables

    runtime = Runtime(evaluation.model_dir, backend=evaluation.backend)
    fit = LineFitSettings(pieces=settings.pieces * settings.draws, notes=settings.notes, seed=settings.seed)
    entry = fit_line_tables(runtime, sampling, model_data(evaluation, "train", runtime.card), fit)
    write_json(evaluation.out_dir / "line_tilt.json", entry)
    update_card(Path(evaluation.model_dir), lambda card: card.update({"line_tilt": entry}))
    log(format_tables(entry))
    return entry


def run_continuation(evaluation: ModelEvaluation, sampling: Sampling, settings, log=print) -> dict:
    """Continue prompts from the split at `sampling`; write continuation.json and its picture."""
    from training.continuation import coherence, continue_calls, draw_calls, format_coherence

    runtime = Runtime(evaluation.model_dir, backend=evaluation.backend, seed=settings.seed)
    calls = draw_calls(model_data(evaluation, evaluation.split, runtime.card), settings)
    started = time.perf_counter()
    generated = continue_calls(runtime, sampling, calls.prompts, settings.continuation_notes)
    result = coherence(calls, generated) | {
        "split": evaluation.split, "sampling": sampling.to_dict(), "prompt_notes": settings.prompt_notes,
        "continuation_notes": settings.continuation_notes, "seconds": round(time.perf_counter() - started, 1)}
    write_json(evaluation.out_dir / "continuation.json", result)
    if evaluation.out is None:
        update_card(Path(evaluation.model_dir), lambda card: card.setdefault("metrics", {}).setdefault(
            evaluation.split, {}).update({"continuation": {key: result[key] for key in ("coherence", "worst", "prompts")}}))
    if evaluation.plots:
        from training import plots

        plots.continuation(calls.prompts[0], calls.real[0], generated[0], calls.sources[0],
                           evaluation.out_dir / "continuation.png")
    log(format_coherence(result))
    return result


def update_card(model_dir: Path, change) -> None:
    """Apply `change(card)` to the model's card.json and write it back atomically."""
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    change(card)
    write_json(card_path, card)


def record_sampling(model_dir: Path, sampling: Sampling, row: dict) -> None:
    """The sweep's choice becomes the model's default sampling: written into its card."""
    update_card(model_dir, lambda card: card.update({
        "sampling": sampling.to_dict(),
        "sampling_chosen_by": {"method": "style sweep on validation (cadenza evaluate --sweep): the lowest "
                                         "classifier AUC, then the highest held-out log-loss, inside the "
                                         "overlap guard rails",
                               "auc": round(row["auc"], 4), "mean_overlap": round(row["mean_overlap"], 4)}}))
