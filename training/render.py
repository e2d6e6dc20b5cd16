"""Batch rendering: K pieces of N notes in one batch, to MIDI, WAV and plots (`cadenza render`).

All K streams advance together: one graph call per note step for the whole batch.
"""

from __future__ import annotations

import json
import os
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.config import Bins
from models.instruments import default_soundfont, instrument_name
from models.notes import NOTE_DTYPE, onsets, write_midi
from models.runtime import Runtime
from models.controls import with_densities
from models.sampling import (CALL_NOTES, DensityHold, Sampling, follow_call, random_densities, register_weights,
                             stream_controls)

SAMPLE_RATE = 44100
PEAK_LEVEL = 0.89  # -1 dBFS: loud enough to hear, clear of clipping


@dataclass
class RenderSettings:
    """What to render. Times in seconds; program is a General MIDI number 0-127."""

    out: Path
    count: int = 4
    notes: int = 256
    sampling: Sampling = field(default_factory=Sampling)
    program: int = 0
    seed: int | None = None
    model: Path | None = None
    backend: str = "auto"
    primer: np.ndarray | None = field(default=None, repr=False)  # [T] notes for every piece, or [count, T]
    primer_path: str | None = None
    include_primer: bool = False
    wav: bool = False
    plots: bool = False
    soundfont: Path | None = None
    name: str = "piece"
    progress: bool = True


def generate(runtime: Runtime, settings: RenderSettings) -> tuple[np.ndarray, float]:
    """[notes, count] sampled notes and the generation rate in notes per second."""
    from tqdm import tqdm

    runtime.reset(settings.count)
    if settings.primer is not None:
        runtime.prime(settings.primer)
    controls, hold, pitch_weights = _steering(runtime, settings)
    runtime.set_controls(with_densities(controls, hold.targets) if hold is not None else controls)
    sampling = settings.sampling
    options = sampling.draw_options()
    pieces = np.zeros((settings.notes, settings.count), dtype=NOTE_DTYPE)
    started = time.perf_counter()
    for step in tqdm(range(settings.notes), desc="render", unit="step", disable=not settings.progress, dynamic_ncols=True):
        pieces[step] = runtime.sample(sampling.temperature, pitch_weights=pitch_weights, **options)
        if hold is not None and hold.observe(pieces[step]["step"]):
            runtime.set_controls(with_densities(controls, hold.targets))
    seconds = time.perf_counter() - started
    return pieces, settings.notes * settings.count / max(seconds, 1e-9)


def _steering(runtime: Runtime, settings: RenderSettings) -> tuple[np.ndarray, DensityHold | None, np.ndarray | None]:
    """Control vectors [count, CONTROL_SIZE], the density hold (or None) and the pitch weights of
    a register ([count, 128] or None) for the streams. A primer is a call: with answer 'follow'
    each stream takes what was left free from its primer."""
    sampling, primer, count = settings.sampling, settings.primer, settings.count
    if primer is None:
        controls = stream_controls(sampling, runtime.card, count, runtime.rng)
        held = random_densities(count, runtime.card, runtime.rng) if sampling.density == "hold" else None
        return controls, DensityHold(held) if held is not None else None, register_weights(sampling.register)
    calls = primer if primer.ndim == 2 else np.repeat(primer[None], count, axis=0)
    vectors, held, weights = [], [], []
    for call in calls:
        answer, density = follow_call(sampling, call)  # 'random' density or key left is drawn here
        vectors.append(stream_controls(answer, runtime.card, 1, runtime.rng, call["pitch"][-CALL_NOTES:])[0])
        weights.append(register_weights(answer.register))
        if sampling.density == "hold":  # a call too short to follow holds a drawn density
            held.append(density if density is not None else random_densities(1, runtime.card, runtime.rng)[0])
    pitch_weights = np.stack([np.ones(128) if w is None else w for w in weights]) if any(w is not None for w in weights) else None
    if sampling.density != "hold":
        return np.stack(vectors), None, pitch_weights
    hold = DensityHold(held, asking=sampling.answer == "follow")
    if sampling.answer == "follow":
        hold.heard(np.stack([call["step"] for call in calls], axis=1))
    return np.stack(vectors), hold, pitch_weights


def synthesize(notes: np.ndarray, program: int, soundfont: Path | None) -> np.ndarray:
    """Offline FluidSynth rendering (faster than real time) at 44.1 kHz, normalised to -1 dBFS; mono float."""
    from models.notes import notes_to_pretty_midi

    midi = notes_to_pretty_midi(notes, program)
    audio = midi.fluidsynth(fs=SAMPLE_RATE, sf2_path=str(soundfont or default_soundfont()))
    peak = np.abs(audio).max()
    return audio * (PEAK_LEVEL / peak) if peak > 0 else audio


def write_wav(audio: np.ndarray, path: Path) -> None:
    """16-bit mono WAV, written under a temporary name and renamed."""
    temporary = path.with_name(f".{path.name}.partial")
    with wave.open(str(temporary), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    os.replace(temporary, path)


def piece_summary(notes: np.ndarray, path: Path) -> dict:
    ends = onsets(notes) + notes["duration"]
    return {
        "file": path.name,
        "notes": int(len(notes)),
        "seconds": round(float(ends.max()), 3) if len(notes) else 0.0,
        "pitch_range": [int(notes["pitch"].min()), int(notes["pitch"].max())],
        "mean_velocity": round(float(notes["velocity"].mean()), 2),
    }


def _distributions(notes: np.ndarray, bins: Bins, config) -> dict:
    encoded = bins.encode(notes)
    sizes = {"pitch": 128, "step": config.time_bins, "duration": config.time_bins, "velocity": config.velocity_bins}
    return {head: np.bincount(encoded[head], minlength=size) / max(len(notes), 1) for head, size in sizes.items()}


def check_writable(folder: Path) -> None:
    """Create `folder` and write a probe file in it, or a one-line error."""
    from models.errors import CadenzaError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".cadenza-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CadenzaError(f"cannot write to {folder}: {error.strerror or error}") from None


def render(settings: RenderSettings) -> dict:
    """Generate, write every file, and return the summary (also written as summary.json)."""
    runtime = Runtime(settings.model, backend=settings.backend, seed=settings.seed, batch=settings.count)
    out = Path(settings.out)
    check_writable(out)  # before the generating, not after it
    pieces, notes_per_second = generate(runtime, settings)
    summaries = []
    for index in range(settings.count):
        notes = pieces[:, index]
        if settings.include_primer and settings.primer is not None:
            notes = np.concatenate([settings.primer.astype(NOTE_DTYPE), notes])
        midi_path = out / f"{settings.name}_{index:03d}.mid"
        write_midi(notes, midi_path, settings.program)
        summary = piece_summary(notes, midi_path)
        if settings.wav:
            wav_path = midi_path.with_suffix(".wav")
            write_wav(synthesize(notes, settings.program, settings.soundfont), wav_path)
            summary["wav"] = wav_path.name
        if settings.plots:
            from training.plots import piano_roll_and_histograms

            png = midi_path.with_suffix(".png")
            piano_roll_and_histograms(notes, png, f"{midi_path.name}: {instrument_name(settings.program)}, "
                                      f"T={settings.sampling.temperature:g}")
            summary["plot"] = png.name
        summaries.append(summary)
    if settings.plots:
        _plot_against_training(runtime, pieces.reshape(-1), out / f"{settings.name}_distributions.png")
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items() if k not in ("primer", "out")},
        "model": str(runtime.model_dir),
        "backend": runtime.backend,
        "instrument": instrument_name(settings.program),
        "pieces": summaries,
        "generation": {"notes": int(pieces.size), "notes_per_second": round(notes_per_second, 1)},
    }
    temporary = out / ".summary.json.partial"
    temporary.write_text(json.dumps(summary, indent=2))
    os.replace(temporary, out / "summary.json")
    return summary


def _plot_against_training(runtime: Runtime, notes: np.ndarray, path: Path) -> None:
    from training.plots import compare_distributions

    reference = runtime.card.get("training_distributions")
    if not reference:
        return  # a model exported before evaluation has no training statistics in its card
    generated = _distributions(notes, runtime.bins, runtime.config)
    centers = {"pitch": "MIDI pitch", "step": "step bin (0 s, then 10 ms .. 4 s)",
               "duration": "duration bin (0 s, then 10 ms .. 4 s)", "velocity": "velocity bin"}
    compare_distributions(generated, {k: np.asarray(v) for k, v in reference.items()}, centers, path)
