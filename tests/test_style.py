"""Style features with known answers, the overlap measure, key parsing, and controls that reach
the exported graph of a tiny model trained on a corpus where the control decides the answer."""

import json

import numpy as np
import pytest

from conftest import run_cadenza
from models.controls import UpcomingControls, best_key, control_vector, parse_key, scale_mask
from models.errors import CadenzaError
from models.notes import make_notes, write_midi
from models.sampling import Sampling, controls_for, parse_density, stream_controls
from training import features
from training.style import compare_sets, overlap_and_kl


def c_major_run():
    """Eight notes up the C major scale, one every 0.25 s (4 notes/s), the last two a chord."""
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    steps = [0.0, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.0]
    return make_notes(pitches, steps, [0.2] * 6 + [1.0, 1.0], [40, 60] * 4)


def test_features_of_a_hand_made_passage():
    notes = c_major_run()
    assert features.pitch_count(notes) == 8
    assert features.pitch_range(notes) == 12
    assert features.average_pitch_interval(notes) == pytest.approx(12 / 7)
    assert features.notes_per_second(notes) == pytest.approx(7 / 1.5)
    assert features.average_inter_onset_interval(notes) == pytest.approx(0.25)
    assert features.chord_fraction(notes) == pytest.approx(2 / 8)
    assert features.key_fit(notes) == 1.0
    assert features.velocity_mean(notes) == 50 and features.velocity_spread(notes) == 10
    # At each onset: itself only, except the chord's second note (2 sounding).
    assert features.polyphony(notes) == pytest.approx(9 / 8)
    histogram = features.pitch_class_histogram(notes)
    assert histogram[0] == pytest.approx(2 / 8) and histogram[1] == 0 and histogram.sum() == pytest.approx(1)
    transitions = features.pitch_class_transition_matrix(notes).reshape(12, 12)
    assert transitions[0, 2] == pytest.approx(1 / 7) and transitions.sum() == pytest.approx(1)
    lengths = features.note_length_histogram(notes)
    assert lengths.sum() == pytest.approx(1) and lengths.max() == pytest.approx(6 / 8)


def test_entropy_and_key_fit_of_the_chromatic_scale():
    chromatic = make_notes(np.arange(60, 72), [0.1] * 12, [0.1] * 12, [64] * 12)
    assert features.pitch_class_entropy(chromatic) == pytest.approx(np.log2(12))
    assert features.key_fit(chromatic) == pytest.approx(7 / 12)
    assert features.pitch_class_entropy(make_notes([60] * 5, [0.1] * 5, [0.1] * 5, [64] * 5)) == 0


def test_overlap_is_one_for_identical_sets_and_near_zero_for_disjoint_ones():
    rng = np.random.default_rng(0)
    values = rng.normal(10, 2, 48)
    overlap, kl = overlap_and_kl(values, values)
    assert overlap == pytest.approx(1.0, abs=1e-6) and kl == pytest.approx(0.0, abs=1e-6)
    overlap, kl = overlap_and_kl(values, values + 100)
    assert overlap < 0.01 and kl > 5
    constant = np.full(10, 3.0)
    assert overlap_and_kl(constant, constant)[0] == pytest.approx(1.0, abs=1e-3)
    pieces = [c_major_run(), make_notes(np.arange(40, 60), [0.1] * 20, [0.3] * 20, [90] * 20)] * 4
    table = features.feature_table(pieces)
    for name, row in compare_sets(table, table).items():
        assert row["overlap"] > 0.97, name


def test_keys_parse_and_fit():
    assert str(parse_key("D minor")) == "D minor" and str(parse_key("dm")) == "D minor"
    assert str(parse_key("Bb")) == "A# major" and str(parse_key("F# major")) == "F# major"
    assert scale_mask(parse_key("D minor")).sum() == 7
    assert scale_mask(parse_key("D minor"))[1]  # C#, the raised seventh of harmonic minor
    with pytest.raises(ValueError, match="cannot read key"):
        parse_key("H major")
    counts = np.zeros(12)
    counts[scale_mask(parse_key("E major"))] = 1
    assert str(best_key(counts)[0]) == "E major" and best_key(counts)[1] == 1.0
    assert parse_density("6") == 6.0 and parse_density("auto") == "auto" and parse_density("none") is None
    for bad in ("nan", "0", "1e9", "fast"):
        with pytest.raises(CadenzaError):
            parse_density(bad)


def test_upcoming_controls_measure_the_notes_ahead():
    # Two pieces: 8 notes/s for 10 s of C major, then 2 notes/s of F# major.
    first = make_notes([60, 62, 64, 65, 67, 69, 71] * 12, [0.125] * 84, [0.1] * 84, [30] * 84)
    second = make_notes([66, 68, 70] * 8, [0.5] * 24, [0.4] * 24, [100] * 24)
    notes = np.concatenate([first, second])
    upcoming = UpcomingControls(notes, np.array([0, 84, 108]), density_seconds=2.0, key_seconds=4.0)
    measured = upcoming.at(np.array([0, 84, 83]))
    assert measured["density"][0] == pytest.approx(8.0) and measured["density"][1] == pytest.approx(2.0)
    assert measured["dynamics"][0] == 30 and measured["dynamics"][1] == 100
    assert measured["key_counts"][0].sum() == 32 and measured["key_counts"][0][scale_mask(parse_key("C"))].sum() == 32
    assert measured["key_counts"][1][[6, 8, 10]].sum() == 8
    assert bool(measured["density_valid"][0]) and not measured["density_valid"][2]  # the last note: nothing ahead


def test_control_vectors_from_sampling():
    card = {"controls": {"typical_density": 9.0}}
    auto = controls_for(Sampling(density="auto"), card)
    assert np.array_equal(auto, control_vector(None, 9.0, None))
    keyed = controls_for(Sampling(key="D minor"), card)
    assert keyed[12] == 1 and keyed[:12].sum() == pytest.approx(1) and keyed[:12][scale_mask(parse_key("D minor"))].sum() > 0.99
    assert controls_for(Sampling(key="auto"), card, [62, 65, 69])[:12].max() == pytest.approx(1 / 3)
    assert not controls_for(Sampling(), card).any()
    vectors = stream_controls(Sampling(key="random"), card, 64, np.random.default_rng(0))
    assert vectors.shape == (64, 17) and np.all(vectors[:, 12] == 1)
    assert len({tuple(np.round(v[:12], 4)) for v in vectors}) > 12  # many of the 24 keys drawn
    spread = {"controls": {"density_quantiles": list(np.linspace(4, 20, 21))}}
    densities = np.exp(stream_controls(Sampling(density="random"), spread, 500, np.random.default_rng(1))[:, 13]) * 8
    assert 4 <= densities.min() and densities.max() <= 20 and 10 < np.median(densities) < 14


# ---------------------------------------------------------------------------------------------
# A tiny model trained on a corpus where the controls decide the answer.

def _synthetic_corpus(root, pieces=100, seed=0):
    """Pieces of random pitches in runs of 6 notes at 3 or 12 notes per second (drawn per run), as
    MIDI files. Trained with a key horizon shorter than one note, the key control names the next
    note's pitch class, and the density control tells the rate of a run before it starts: the
    controls alone decide the answer."""
    rng = np.random.default_rng(seed)
    folder = root / "midi"
    folder.mkdir()
    for index in range(pieces):
        rates = np.repeat(rng.choice([3.0, 12.0], 20), 6)
        pitches = rng.integers(48, 72, len(rates))
        write_midi(make_notes(pitches, 1 / rates, 0.5 / rates, np.full(len(rates), 70)), folder / f"piece_{index:03d}.mid")
    return folder


@pytest.fixture(scope="module")
def steered_model(tmp_path_factory):
    from models.config import ModelConfig
    from training.export_run import export_run
    from training.train import TrainSettings, train

    root = tmp_path_factory.mktemp("steer")
    midi = _synthetic_corpus(root)
    data = root / "prepared"
    assert run_cadenza("prepare", "--midi-dir", str(midi), "--out", str(data)).returncode == 0
    config = ModelConfig(window=32, lstm_layers=1, lstm_units=48, batch_size=32, learning_rate=0.01,
                         key_seconds=0.05, density_seconds=0.3, transpose_semitones=0, control_dropout=0.2)
    run = root / "run"
    train(TrainSettings(data=data, out=run, epochs=4, steps_per_epoch=100, validation_windows=32), config)
    exported = root / "exported"
    export_run(run, exported)
    return exported, data


@pytest.mark.slow
def test_key_and_density_controls_change_what_is_drawn(steered_model):
    from models.runtime import Runtime

    exported, _ = steered_model
    runtime = Runtime(exported, backend="tflite", batch=32, seed=0)
    in_triad = {}
    for tonic in (2, 6, None):  # D and F# major triads, and no key control
        triad = (np.array([0, 4, 7]) + (tonic or 2)) % 12
        profile = np.zeros(12)
        profile[triad] = 1
        runtime.reset()
        runtime.set_controls(control_vector(profile if tonic is not None else None))
        pitches = np.concatenate([runtime.sample(1.0)["pitch"] for _ in range(24)])
        in_triad[tonic] = float(np.mean(np.isin(pitches % 12, triad)))
    # Uncontrolled, about a quarter of the notes land in a given triad by chance.
    assert in_triad[None] < 0.4 and in_triad[2] > 0.6 and in_triad[6] > 0.6, in_triad
    rates = {}
    for density in (3.0, 12.0):
        runtime.reset()
        runtime.set_controls(controls_for(Sampling(density=density), runtime.card))
        steps = np.concatenate([runtime.sample(1.0)["step"] for _ in range(48)])
        rates[density] = 1 / steps.mean()
    assert rates[12.0] > 2 * rates[3.0], rates


@pytest.mark.slow
def test_evaluate_style_stateful_and_sweep_on_a_tiny_model(steered_model, tmp_path):
    exported, data = steered_model
    out = tmp_path / "evaluation"
    common = ["--data", str(data), "--split", "test", "--out", str(out), "--pieces", "6", "--notes", "40",
              "--drift-notes", "80"]
    result = run_cadenza("evaluate", str(exported), "--style", *common, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "notes_per_second" in result.stdout and "ceiling" in result.stdout
    assert "chord_fraction by part:" in result.stdout and "polyphony_over_time by part:" in result.stdout
    style = json.loads((out / "style.json").read_text())
    assert set(style["features"]) >= {"pitch_class_histogram", "key_fit", "polyphony", "note_length_histogram",
                                      "motif_recurrence", "legato_histogram", "polyphony_over_time"}
    assert 0 <= style["classifier"]["auc"] <= 1 and 0 <= style["classifier"]["ceiling"]["auc"] <= 1
    # The classifier test on four draws of a generated and a real set (the default --draws): the
    # first is the headline's.
    draws = style["classifier"]["draws"]
    assert [draw["seed"] for draw in draws] == [0, 1, 2, 3] and draws[0]["auc"] == style["classifier"]["auc"]
    assert style["classifier"]["auc_mean"] == pytest.approx(np.mean([draw["auc"] for draw in draws]), abs=1e-4)
    assert style["classifier"]["auc_range"] == [min(d["auc"] for d in draws), max(d["auc"] for d in draws)]
    assert "over 4 draws of a generated and a real set (seeds 0-3): AUC" in result.stdout
    assert style["classifier"]["separating"]
    # The texture of every set, the first the headline's, and their mean.
    texture = style["texture"]
    assert set(texture) == {"real", "generated", "generated_draws", "generated_mean"}
    assert len(texture["generated_draws"]) == 4 and texture["generated_draws"][0] == texture["generated"]
    shares = [draw["short_note_fraction"] for draw in texture["generated_draws"]]
    assert texture["generated_mean"]["short_note_fraction"] == pytest.approx(np.mean(shares), abs=1e-4)
    assert "over 4 generated sets (mean): short note fraction" in result.stdout
    assert 0 <= style["mean_overlap"] <= 1 and len(style["drift"]["curves"]["notes_per_second"]) == 4
    assert set(style["steering"]["density"]) == {"4", "8", "16"} and 0 <= style["steering"]["in_scale"] <= 1
    assert all(0 <= row["chord_fraction"] <= 1 for row in style["steering"]["density"].values())
    for png in ("style_distributions.png", "style_piano_roll.png", "style_drift.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    result = run_cadenza("evaluate", str(exported), "--stateful", "--max-notes", "50", *common, timeout=300)
    assert result.returncode == 0, result.stderr
    stateful = json.loads((out / "test.json").read_text())["stateful"]
    parts = sum(stateful[f"{name}_nll"] for name in ("pitch", "step", "duration", "velocity"))
    assert stateful["joint_nll"] == pytest.approx(parts, abs=2e-3) and 0 <= stateful["pitch_top1"] <= 1
    result = run_cadenza("evaluate", str(exported), "--sweep", *common, "--no-plots", timeout=600)
    assert result.returncode == 0, result.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    # The grid, two more draws of each of its 4 finalists, then 8 per-field candidates.
    assert sweep["split"] == "validation" and len(sweep["rows"]) == 24 + 4 + 8
    finalists = sweep["finalists"]
    assert len(finalists) == 4 and all(0 <= row["auc"] <= 1 for row in finalists)
    # Chosen by the classifier (AUC, then log-loss) on means of three draws, inside the guard rails.
    from training.style_sweep import _best_mean_overlap, holds_texture, qualifies, separability

    grid = sweep["rows"][:24]
    best_mean, held_any = _best_mean_overlap(grid), any(holds_texture(row) for row in grid)
    confirmed = [(separability(row), row["sampling"]) for row in finalists]
    confirmed += [(separability(row), row["sampling"]) for row in sweep["rows"][28:]
                  if qualifies(row, best_mean) and (holds_texture(row) or not held_any)]
    assert min(score for score, sampling in confirmed if sampling == sweep["best"]) == min(s for s, _ in confirmed)
    card = json.loads((exported / "card.json").read_text())
    assert card["sampling"] == sweep["best"]


def test_density_hold_asks_only_for_streams_that_strayed():
    from models.sampling import DensityHold

    hold = DensityHold([10.0, 10.0], window_notes=20, tolerance=0.15)
    changed = [hold.observe(np.array([0.1, 0.05])) for _ in range(20)]  # 10 notes/s, and 20
    assert changed[-1] and np.isnan(hold.targets[0]) and hold.targets[1] == 10.0
    for _ in range(20):  # the second comes back to 10 notes/s: let go
        hold.observe(np.array([0.1, 0.1]))
    assert np.all(np.isnan(hold.targets))


def test_a_model_is_not_scored_on_data_prepared_another_way(tmp_path):
    """The shipped card records how its training data was prepared; scoring it on data whose
    lengths were prepared otherwise (cut at restrikes or not) gives wrong figures silently, so it
    is refused with the flag that fixes it."""
    from models.errors import CadenzaError
    from models.notes import Representation
    from models.runtime import DEFAULT_MODEL_DIR, read_card
    from training.model_eval import ModelEvaluation, model_data

    card = read_card(DEFAULT_MODEL_DIR)
    trained = Representation.of_card(card)
    other = Representation(restrikes_cut=not trained.restrikes_cut)
    (tmp_path / "manifest.json").write_text(json.dumps({"representation": other.to_dict()}))
    with pytest.raises(CadenzaError, match="prepare it again with (--hold-restrikes|neither --no-sustain nor --hold-restrikes)"):
        model_data(ModelEvaluation(DEFAULT_MODEL_DIR, tmp_path), "test", card)


def _split_of_random_pieces(pieces: int, notes: int, seed: int = 0):
    """A prepared split of `pieces` random pieces of `notes` notes each."""
    from training.prepare import PreparedSplit

    rng = np.random.default_rng(seed)
    parts = [make_notes(rng.integers(40, 90, notes), rng.uniform(0.0, 0.3, notes), rng.uniform(0.05, 1.0, notes),
                        rng.integers(30, 100, notes)) for _ in range(pieces)]
    offsets = np.arange(pieces + 1) * notes
    return PreparedSplit(np.concatenate(parts), offsets, np.array([f"piece{i}" for i in range(pieces)]))


def test_real_sets_draw_one_set_per_seed_and_keep_it():
    from training.features import feature_table
    from training.style import RealSets

    reals = RealSets(_split_of_random_pieces(20, 60), count=8, length=30)
    first, again, other = reals.excerpts(0), reals.excerpts(0), reals.excerpts(1)
    assert again is first, "the same seed gives back the set already drawn"
    assert len(first.notes) == 8 and all(len(notes) == 30 for notes in first.notes)
    assert any(not np.array_equal(a["pitch"], b["pitch"]) for a, b in zip(first.notes, other.notes))
    table = reals.table(1)
    assert np.array_equal(table["pitch_range"], feature_table(other.notes)["pitch_range"])


def test_each_classifier_draw_takes_the_real_set_of_its_own_seed():
    from models.runtime import Runtime
    from training.style import RealSets, StyleSettings, classifier_draws

    class RecordingRealSets(RealSets):
        """The real sets, noting which seeds the draws asked for."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.asked = []

        def excerpts(self, seed):
            self.asked.append(seed)
            return super().excerpts(seed)

    reals = RecordingRealSets(_split_of_random_pieces(20, 60), count=6, length=30)
    runtime = Runtime(seed=0, backend="tflite")
    settings = StyleSettings(pieces=6, notes=30, seed=5, draws=3)
    first = {"auc": 0.5, "accuracy": 0.5}
    draws, textures = classifier_draws(runtime, Sampling.from_card(runtime.card), reals, first, settings)
    assert [draw["seed"] for draw in draws["draws"]] == [5, 6, 7] and len(textures) == 2
    assert sorted(set(reals.asked)) == [6, 7], "draws 6 and 7 each drew their own real set"
    assert all(0 <= draw["auc"] <= 1 for draw in draws["draws"])
