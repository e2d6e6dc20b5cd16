"""Does an answer belong to its call? Continuation coherence (`cadenza evaluate MODEL --continuation`).

Prompts are stretches of MAESTRO test pieces (sustain applied, as at ingest). The model is primed
with each, as a live call primes it (every note fed, in order), and continues it. Each
continuation is compared with its prompt on key, register, density, dynamics, texture and motifs,
and every distance is placed between two references: the piece's real continuation (coherence 1:
as coherent as the pianist) and the real continuation of an unrelated test piece (coherence 0:
not listening). A figure below 0 is further from the call than an unrelated piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.notes import NOTE_DTYPE
from models.sampling import Sampling
from training.features import notes_per_second, pitch_class_histogram
from training.prepare import PreparedSplit
from training.texture import heard, interval_patterns, median_duration, polyphony_over_time, top_line

MOTIF_INTERVALS = 3


@dataclass
class ContinuationSettings:
    """`prompts` calls of `prompt_notes` notes, each continued for `continuation_notes`."""

    prompts: int = 100
    prompt_notes: int = 200
    continuation_notes: int = 200
    seed: int = 0


@dataclass
class Calls:
    """Prompts [P, prompt_notes], their real continuations and unrelated pieces' real continuations."""

    prompts: np.ndarray
    real: np.ndarray
    unrelated: np.ndarray
    sources: list


def draw_calls(split: PreparedSplit, settings: ContinuationSettings) -> Calls:
    """Prompts from inside the pieces (not their first notes), one piece each as far as the split allows."""
    rng = np.random.default_rng(settings.seed)
    span = settings.prompt_notes + settings.continuation_notes
    lengths = np.diff(split.offsets)
    long_enough = np.flatnonzero(lengths >= span + settings.prompt_notes)
    if len(long_enough) < 2:
        raise ValueError(f"fewer than two pieces have {span + settings.prompt_notes} notes")
    pieces = rng.choice(long_enough, size=settings.prompts, replace=settings.prompts > len(long_enough))
    starts = [split.offsets[p] + rng.integers(settings.prompt_notes, lengths[p] - span + 1) for p in pieces]
    windows = np.stack([split.notes[start : start + span].astype(NOTE_DTYPE) for start in starts])
    windows[:, 0]["step"] = 0.0
    windows[:, settings.prompt_notes]["step"] = 0.0  # a continuation starts at its own time 0
    prompts, real = windows[:, : settings.prompt_notes], windows[:, settings.prompt_notes :]
    # The unrelated reference: another prompt's real continuation, always from a different piece.
    others = np.array([rng.choice(np.flatnonzero(pieces != piece)) for piece in pieces])
    return Calls(prompts, real, real[others], [split.sources[p] for p in pieces])


def continue_calls(runtime, sampling: Sampling, prompts: np.ndarray, notes: int) -> np.ndarray:
    """[P, notes] continuations drawn by the same code path as `cadenza render --primer`."""
    from training.render import RenderSettings, generate

    settings = RenderSettings(out=None, count=len(prompts), notes=notes, sampling=sampling, primer=prompts,
                              progress=False)
    pieces, _ = generate(runtime, settings)
    return pieces.T


def _log_ratio(a: float, b: float) -> float:
    return abs(float(np.log(max(a, 1e-6) / max(b, 1e-6))))


def motif_share(prompt: np.ndarray, continuation: np.ndarray, length: int = MOTIF_INTERVALS) -> float:
    """Share of the continuation's top-line interval patterns (`length` intervals) that occur in the prompt."""
    heard_in_prompt = set(interval_patterns(top_line(prompt), length))
    patterns = interval_patterns(top_line(continuation), length)
    return float(np.mean([pattern in heard_in_prompt for pattern in patterns])) if patterns else 0.0


def distances(prompt: np.ndarray, continuation: np.ndarray) -> dict:
    """How far a continuation is from its prompt, per figure (0 = the same; larger = further)."""
    prompt, continuation = heard(prompt), heard(continuation)
    pitch_p, pitch_c = prompt["pitch"].astype(np.float64), continuation["pitch"].astype(np.float64)
    return {
        "key": float(np.abs(pitch_class_histogram(prompt) - pitch_class_histogram(continuation)).sum()),
        "register_mean": abs(pitch_p.mean() - pitch_c.mean()),
        "register_range": abs(np.ptp(pitch_p) - np.ptp(pitch_c)),
        "density": _log_ratio(notes_per_second(prompt), notes_per_second(continuation)),
        "dynamics": abs(float(prompt["velocity"].mean()) - float(continuation["velocity"].mean())),
        "polyphony": _log_ratio(polyphony_over_time(prompt), polyphony_over_time(continuation)),
        "durations": _log_ratio(median_duration(prompt), median_duration(continuation)),
        "motifs": 1.0 - motif_share(prompt, continuation),
    }


def coherence(calls: Calls, generated: np.ndarray) -> dict:
    """Per figure: mean distances (generated, real, unrelated) and the coherence
    (unrelated - generated) / (unrelated - real); their mean (each capped at 1) and the worst figure."""
    tables = {}
    for name, continuations in (("generated", generated), ("real", calls.real), ("unrelated", calls.unrelated)):
        rows = [distances(prompt, continuation) for prompt, continuation in zip(calls.prompts, continuations)]
        tables[name] = {figure: np.array([row[figure] for row in rows]) for figure in rows[0]}
    figures = {}
    for figure in tables["real"]:
        generated_d, real_d, unrelated_d = (float(tables[name][figure].mean()) for name in ("generated", "real", "unrelated"))
        span = unrelated_d - real_d
        figures[figure] = {"generated": round(generated_d, 4), "real": round(real_d, 4), "unrelated": round(unrelated_d, 4),
                           "coherence": round((unrelated_d - generated_d) / span, 4) if abs(span) > 1e-9 else 0.0}
    # Closer to the call than the pianist (a constant loudness, say) is not more musical: in the
    # mean a figure counts at most 1. Nor does one figure whose pianist and unrelated references
    # lie almost together (the range of a 2-bar answer: 12.5 against 13.0 semitones) swamp the
    # rest with noise scaled by that small gap (-31 once): it counts at least -1.
    values = {figure: float(np.clip(row["coherence"], -1.0, 1.0)) for figure, row in figures.items()}
    worst = min(values, key=values.get)
    return {"figures": figures, "coherence": round(float(np.mean(list(values.values()))), 4),
            "worst": {"figure": worst, "coherence": values[worst]}, "prompts": len(calls.prompts)}


def format_coherence(result: dict) -> str:
    lines = [f"{'figure':<16}{'generated':>11}{'real':>9}{'unrelated':>11}{'coherence':>11}"]
    for figure, row in result["figures"].items():
        lines.append(f"{figure:<16}{row['generated']:>11.3f}{row['real']:>9.3f}{row['unrelated']:>11.3f}{row['coherence']:>11.2f}")
    lines.append(f"continuation coherence over {result['prompts']} prompts: {result['coherence']:.3f} "
                 f"(worst: {result['worst']['figure']} {result['worst']['coherence']:.2f}; 1 = as the pianist, 0 = unrelated)")
    return "\n".join(lines)
