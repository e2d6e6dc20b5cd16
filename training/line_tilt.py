"""Fit a model's line tables (models/lines.py): the data's line intervals over the model's own.

`cadenza evaluate MODEL --fit-lines` draws free-running excerpts with the model's sampling (the
line tilt, the chord join and the span hold off) and as many real excerpts of the training split,
and writes each line's table into the model card. The tables are data statistics, like the card's key profiles and density
quantiles: fitted on train, so that the style figures on validation and test stay honest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.lines import INTERVAL_LIMIT, tables_from_shares
from models.sampling import Sampling
from training.prepare import PreparedSplit
from training.style import generate_pieces, real_excerpts
from training.texture import bass_line_intervals, heard, top_line_intervals


@dataclass(frozen=True)
class LineFitSettings:
    """`pieces` excerpts of `notes` notes a side. 640 (the excerpts of the style test's four draws)
    give each line's rarer classes, a few tenths of a per cent of its steps, a few hundred steps."""

    pieces: int = 640
    notes: int = 400
    seed: int = 0


def line_shares(pieces: list) -> dict:
    """{"top": [25], "bass": [25]}: each line's share of each interval class, the mean over the
    pieces as heard (each excerpt counts once, as the classifier sees them)."""
    heard_pieces = [heard(piece) for piece in pieces]
    return {"top": np.mean([top_line_intervals(piece) for piece in heard_pieces], axis=0),
            "bass": np.mean([bass_line_intervals(piece) for piece in heard_pieces], axis=0)}


def fit_line_tables(runtime, sampling: Sampling, train: PreparedSplit, settings: LineFitSettings = LineFitSettings()) -> dict:
    """The card's `line_tilt` entry: both tables, and the shares they came from."""
    runtime.rng = np.random.default_rng(settings.seed)
    # The lines the other tilts (the chord join, the span hold) leave are not what is fitted: fitted
    # against them, the tables over-corrected (validation AUC 0.882 against 0.859). The echo is as
    # given: the shipped tables were fitted with `--echo 0.9` (README, "The lines' leaps").
    untilted = replace(sampling, line_tilt=0.0, chord_join=1.0, span_hold=0.0)
    generated = list(generate_pieces(runtime, untilted, settings.pieces, settings.notes))
    real = line_shares(real_excerpts(train, settings.pieces, settings.notes, settings.seed).notes)
    own = line_shares(generated)
    tables = tables_from_shares(real["top"], own["top"], real["bass"], own["bass"])
    return tables | {
        "fitted_on": "train", "pieces": settings.pieces, "notes": settings.notes, "seed": settings.seed,
        "sampling": untilted.to_dict(),
        "shares": {side: {line: [round(float(v), 5) for v in values] for line, values in shares.items()}
                   for side, shares in (("real", real), ("generated", own))}}


def format_tables(entry: dict) -> str:
    """Two lines: each table's smallest entries, with the intervals (semitones) they belong to."""
    lines = []
    for line in ("top", "bass"):
        table = np.asarray(entry[line])
        lowest = np.argsort(table)[:4]
        shares = entry["shares"]
        moves = (f"{int(k) - INTERVAL_LIMIT:+d} st: keeps {table[k]:.2f} (data {shares['real'][line][k]:.3f}, "
                 f"model {shares['generated'][line][k]:.3f})" for k in lowest)
        lines.append(f"{line} line, least kept: " + "; ".join(moves))
    return "\n".join(lines)
