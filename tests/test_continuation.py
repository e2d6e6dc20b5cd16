"""Continuation coherence on hand-made calls with known answers, and continuations that follow
what primed them (the shipped model)."""

import numpy as np
import pytest

from models.controls import parse_key
from models.notes import NOTE_DTYPE, make_notes
from training.continuation import Calls, coherence, continue_calls, distances, motif_share


def in_key(key: str, count: int, rng, low=55, high=80, velocity=64, step=0.15) -> np.ndarray:
    """Random notes of a key's scale, one every `step` seconds."""
    scale = parse_key(key).scale
    pitches = np.array([p for p in range(low, high) if p % 12 in scale])
    return make_notes(rng.choice(pitches, count), np.full(count, step), np.full(count, 0.3), np.full(count, velocity))


def calls(prompts, real, unrelated):
    return Calls(np.stack(prompts), np.stack(real), np.stack(unrelated), ["test"] * len(prompts))


def test_key_coherence_is_one_in_the_prompts_key_and_zero_in_a_far_one():
    rng = np.random.default_rng(0)
    prompts = [in_key("D minor", 200, rng) for _ in range(20)]
    made = calls(prompts, [in_key("D minor", 200, rng) for _ in range(20)], [in_key("F# major", 200, rng) for _ in range(20)])
    same = coherence(made, np.stack([in_key("D minor", 200, rng) for _ in range(20)]))
    far = coherence(made, np.stack([in_key("F# major", 200, rng) for _ in range(20)]))
    assert same["figures"]["key"]["coherence"] == pytest.approx(1.0, abs=0.1)
    assert far["figures"]["key"]["coherence"] == pytest.approx(0.0, abs=0.1)
    assert set(same["figures"]) == {"key", "register_mean", "register_range", "density", "dynamics", "polyphony",
                                    "durations", "motifs"}
    assert same["worst"]["coherence"] == min(row["coherence"] for row in same["figures"].values())


def test_a_figure_whose_references_lie_together_counts_at_least_minus_one():
    """Two-bar answers: the pianist's next notes and an unrelated piece's lie almost as far from the
    call in range, so a figure scaled by that gap read -31 once and swamped the other seven."""
    rng = np.random.default_rng(4)
    prompts = [in_key("C major", 120, rng, low=48, high=84) for _ in range(8)]
    real = [in_key("C major", 30, rng, low=60, high=73) for _ in range(8)]  # a range of 12
    unrelated = [in_key("C major", 30, rng, low=60, high=72) for _ in range(8)]  # 11: a gap of 1
    narrow = np.stack([in_key("C major", 30, rng, low=60, high=63) for _ in range(8)])
    result = coherence(calls(prompts, real, unrelated), narrow)
    assert result["figures"]["register_range"]["coherence"] < -3
    assert result["worst"]["coherence"] == -1.0
    capped = [min(max(row["coherence"], -1.0), 1.0) for row in result["figures"].values()]
    assert result["coherence"] == pytest.approx(np.mean(capped), abs=1e-4)


def test_a_continuation_that_copies_its_prompt_scores_one_on_motifs():
    rng = np.random.default_rng(1)
    prompts = [in_key("C major", 200, rng) for _ in range(10)]
    real = [p.copy() for p in prompts]
    for piece in real:  # the pianist restates the call a tone higher: the same figures
        piece["pitch"] += 2
    made = calls(prompts, real, [in_key("A minor", 200, rng) for _ in range(10)])
    copied = coherence(made, np.stack(prompts))
    assert copied["figures"]["motifs"]["coherence"] == pytest.approx(1.0)
    assert motif_share(prompts[0], prompts[0]) == 1.0 and motif_share(prompts[0], made.unrelated[0]) < 0.3


def test_distances_see_register_density_and_dynamics():
    rng = np.random.default_rng(2)
    low_slow_quiet = in_key("C major", 100, rng, low=36, high=50, velocity=40, step=0.4)
    high_fast_loud = in_key("C major", 100, rng, low=76, high=90, velocity=100, step=0.1)
    far = distances(low_slow_quiet, high_fast_loud)
    assert far["register_mean"] == pytest.approx(40, abs=4)
    assert far["density"] == pytest.approx(np.log(4), abs=0.05)
    assert far["dynamics"] == 60
    assert distances(low_slow_quiet, low_slow_quiet)["motifs"] == 0


def test_continuations_follow_what_primed_them():
    from models.runtime import Runtime
    from models.sampling import Sampling

    rng = np.random.default_rng(3)
    low = [in_key("C major", 60, rng, low=36, high=52) for _ in range(4)]
    high = [in_key("C major", 60, rng, low=76, high=92) for _ in range(4)]
    runtime = Runtime(backend="tflite", seed=0)
    answers = continue_calls(runtime, Sampling.from_card(runtime.card), np.stack(low + high).astype(NOTE_DTYPE), 40)
    assert answers.shape == (8, 40)
    assert answers[4:]["pitch"].mean() > answers[:4]["pitch"].mean() + 10


def test_an_answer_keeps_to_the_calls_register_and_a_free_one_wanders_further():
    """Issue 19: an answer follows its call's register (the call's lowest to highest pitch, softly:
    models.sampling.register_weights). Calls in a narrow middle register; the shipped model."""
    from dataclasses import replace

    from models.runtime import Runtime
    from models.sampling import Sampling

    rng = np.random.default_rng(5)
    prompts = np.stack([in_key("G major", 80, rng, low=62, high=72) for _ in range(16)]).astype(NOTE_DTYPE)
    outside = {}
    for answer in ("follow", "free"):
        runtime = Runtime(backend="tflite", seed=0)
        sampling = replace(Sampling.from_card(runtime.card), answer=answer)
        pitches = continue_calls(runtime, sampling, prompts, 100)["pitch"].astype(int)
        outside[answer] = float(np.mean((pitches < 62 - 2) | (pitches > 72 + 2)))
    assert outside["follow"] < 0.10 and outside["free"] > 2 * outside["follow"], outside


def test_a_register_asked_for_is_kept_to():
    from dataclasses import replace

    from models.runtime import Runtime
    from models.sampling import Sampling
    from training.style import generate_pieces

    runtime = Runtime(backend="tflite", seed=1)
    base = Sampling.from_card(runtime.card)
    free = generate_pieces(runtime, base, 16, 120)["pitch"].astype(int)
    kept = generate_pieces(runtime, replace(base, register=(48, 60)), 16, 120)["pitch"].astype(int)
    inside = lambda pitches: float(np.mean((pitches >= 48 - 2) & (pitches <= 60 + 2)))  # noqa: E731
    assert inside(kept) > 0.85 and inside(free) < 0.6, (inside(kept), inside(free))
