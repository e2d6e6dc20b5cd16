"""The exported step graph: same numbers as the Keras network, draws that follow its distributions,
scores that match the draws, on both backends."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from models.config import FIELD_ORDER, Bins, ModelConfig
from models.controls import CONTROL_SIZE, control_vector
from models.errors import CadenzaError
from models.notes import NOTE_DTYPE, make_notes
from models.runtime import START_NOTE, Runtime, load_step, read_card

TINY = ModelConfig(lstm_layers=2, lstm_units=16, pitch_embedding=8, time_embedding=4, velocity_embedding=4,
                   time_bins=16, velocity_bins=8, dropout=0.1, head_units=12, field_embedding=4)
# With memory over 4 notes: the sequences below run past the point where the memory is full.
TINY_MEMORY = replace(TINY, memory=4, memory_heads=2)
# The shipped shape: memory and a bias on the pitch by interval (models/intervals.py).
TINY_INTERVALS = replace(TINY_MEMORY, interval_bias=True)
# ...and the pitch's softmax over the keys not sounding at the next onset (mask_sounding_keys).
TINY_SOUNDING = replace(TINY_INTERVALS, mask_sounding_keys=True)
CONFIGS = {"lstm": TINY, "memory": TINY_MEMORY, "intervals": TINY_INTERVALS, "sounding": TINY_SOUNDING}


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request, tmp_path_factory):
    import keras

    from models.export import export_model
    from models.network import build_model

    config = CONFIGS[request.param]
    keras.utils.set_random_seed(3)
    model = build_model(config)
    rng = np.random.default_rng(5)
    if config.memory:  # a fresh memory reads nothing (its output starts at zero): give it weights that read
        attention = model.get_layer("memory")
        for weight in (attention.output_kernel, attention.distance_bias):
            weight.assign(rng.normal(size=weight.shape).astype("float32"))
    if config.interval_bias:  # the tables too start at zero
        intervals = model.get_layer("pitch_intervals")
        for weight in (intervals.from_note, intervals.from_top):
            weight.assign(rng.normal(scale=0.05, size=weight.shape).astype("float32"))
    out = tmp_path_factory.mktemp("export") / f"tiny_{request.param}"
    export_model(model, config, out, {"training": {"note": "random weights"}})
    return model, out


def _random_sequence(length, rng, batch=2):
    sequence = {
        "pitch": rng.integers(0, 128, (batch, length + 1)).astype(np.int32),
        "step": rng.integers(0, TINY.time_bins, (batch, length + 1)).astype(np.int32),
        "duration": rng.integers(0, TINY.time_bins, (batch, length + 1)).astype(np.int32),
        "velocity": rng.integers(0, TINY.velocity_bins, (batch, length + 1)).astype(np.int32),
    }
    controls = rng.normal(size=(batch, length, CONTROL_SIZE)).astype(np.float32)
    return sequence, controls


def _step_inputs(sequence, controls, state, t, forced):
    batch = state.shape[0]
    return {**{k: v[:, t].copy() for k, v in sequence.items()}, "state": state, "controls": controls[:, t].copy(),
            "temperature": np.ones((batch, 4), np.float32), "top_p": np.full((batch, 4), 2.0, np.float32),
            "uniform": np.full((batch, 4), 0.5, np.float32), "forced": forced}


@pytest.mark.parametrize("backend", ["savedmodel", "tflite"])
def test_forced_step_log_probs_match_the_keras_network(exported, backend):
    """Teacher-forced full sequence in Keras == the step graph forcing each next note, field by field."""
    from scipy.special import log_softmax

    model, out = exported
    rng = np.random.default_rng(0)
    sequence, controls = _random_sequence(20, rng)
    tops = rng.integers(0, 128, (2, 20, 2)).astype(np.int32)  # any chord tops: both sides read the same
    inputs = {k: v[:, :-1] for k, v in sequence.items()} | {"controls": controls}
    inputs |= {f"next_{name}": sequence[name][:, 1:] for name in FIELD_ORDER[:-1]}
    with_tops = "pitch_intervals" in [layer.name for layer in model.layers]
    with_sounding = "pitch_sounding" in [layer.name for layer in model.layers]
    # Keys sounding at each next onset: a random third of them, never the pitch that comes next.
    sounding = rng.random((2, 20, 128)) < 0.3
    sounding[np.arange(2)[:, None], np.arange(20)[None, :], sequence["pitch"][:, 1:]] = False
    full = model(inputs | ({"chord_tops": tops} if with_tops else {})
                 | ({"sounding": sounding.astype(np.float32)} if with_sounding else {}), training=False)
    step = load_step(out, backend)
    card = read_card(out)
    state = np.zeros((2, *card["state_shape"]), np.float32)
    memory = np.zeros((2, *card["memory_shape"]), np.float32) if card.get("memory_shape") else None
    differences = []
    for t in range(20):
        forced = np.stack([sequence[name][:, t + 1] for name in FIELD_ORDER], axis=1).astype(np.int32)
        inputs = _step_inputs(sequence, controls, state, t, forced)
        if memory is not None:
            inputs["memory"] = memory
        if with_tops:
            inputs["chord_tops"] = tops[:, t].copy()
        if with_sounding:  # seconds each key sounds on: past any onset (the top bin's stands at 1e9 s) where masked
            inputs["sounding"] = np.where(sounding[:, t], 1e10, 0.0).astype(np.float32)
        outputs = step(inputs)
        state = outputs["state"]
        if memory is not None:  # the ring: note t in row t % memory
            memory[:, t % memory.shape[1]] = outputs["memory_row"]
        for column, name in enumerate(FIELD_ORDER):
            expected = log_softmax(np.asarray(full[name])[:, t], axis=-1)[np.arange(2), forced[:, column]]
            differences.append(np.abs(expected - outputs["log_prob"][:, column]))
            assert np.array_equal(outputs[name], forced[:, column])
    differences = np.concatenate(differences)
    assert np.isfinite(differences).all()
    assert differences.max() <= 1e-4


def _distribution(runtime, state, controls, prefix):
    """Probabilities of every category of the field after `prefix` (bins of the fields before it)."""
    column = len(prefix)
    name = FIELD_ORDER[column]
    size = {"pitch": 128, "velocity": TINY.velocity_bins}.get(name, TINY.time_bins)
    forced = np.full((size, 4), -1, np.int32)
    forced[:, :column] = prefix
    forced[:, column] = np.arange(size)
    outputs = runtime.step_function({
        "pitch": np.full(size, 60, np.int32), "step": np.full(size, 3, np.int32),
        "duration": np.full(size, 5, np.int32), "velocity": np.full(size, 4, np.int32),
        "state": np.repeat(state, size, axis=0), "controls": np.repeat(controls, size, axis=0),
        "temperature": np.ones((size, 4), np.float32), "top_p": np.full((size, 4), 2.0, np.float32),
        "uniform": np.full((size, 4), 0.5, np.float32), "forced": forced, **_memory_inputs(runtime, size)})
    return np.exp(outputs["log_prob"][:, column].astype(np.float64))


def _memory_inputs(runtime, batch: int) -> dict:
    """A model with memory also reads a ring of remembered notes: the same random one for every row;
    one with an interval bias, chord tops (the same for every row)."""
    shape = runtime.card.get("memory_shape")
    inputs = {}
    if shape:
        ring = np.random.default_rng(7).normal(size=(1, *shape)).astype(np.float32)
        inputs["memory"] = np.repeat(ring, batch, axis=0)
    if runtime.config.interval_bias:
        inputs["chord_tops"] = np.tile(np.array([[64, 55]], np.int32), (batch, 1))
    if runtime.config.mask_sounding_keys:  # as the runtime has it: nothing sounding yet
        inputs["sounding"] = runtime.sounding[:1].repeat(batch, axis=0)
    return inputs


def test_draws_follow_the_conditional_distributions(exported):
    """Chi-squared on 20,000 draws: the step drawn, and the pitch drawn given a fixed step."""
    from scipy.stats import chisquare

    _, out = exported
    runtime = Runtime(out, backend="tflite", batch=1, seed=0)
    rng = np.random.default_rng(1)
    state = rng.normal(size=(1, *read_card(out)["state_shape"])).astype(np.float32)
    controls = np.zeros((1, CONTROL_SIZE), np.float32)
    draws = 20000
    for prefix in ([], [7]):
        column = len(prefix)
        expected = _distribution(runtime, state, controls, prefix)
        assert abs(expected.sum() - 1) < 1e-4
        forced = np.full((draws, 4), -1, np.int32)
        forced[:, :column] = prefix
        outputs = runtime.step_function({
            "pitch": np.full(draws, 60, np.int32), "step": np.full(draws, 3, np.int32),
            "duration": np.full(draws, 5, np.int32), "velocity": np.full(draws, 4, np.int32),
            "state": np.repeat(state, draws, axis=0), "controls": np.repeat(controls, draws, axis=0),
            "temperature": np.ones((draws, 4), np.float32), "top_p": np.full((draws, 4), 2.0, np.float32),
            "uniform": rng.random((draws, 4), dtype=np.float32), "forced": forced, **_memory_inputs(runtime, draws)})
        counts = np.bincount(outputs[FIELD_ORDER[column]], minlength=len(expected))
        common = expected * draws >= 5  # chi-squared wants >= 5 expected per cell: pool the rare ones
        observed = np.append(counts[common], counts[~common].sum())
        wanted = np.append(expected[common], expected[~common].sum()) * draws
        keep = wanted > 0
        assert chisquare(observed[keep], wanted[keep] * observed.sum() / wanted[keep].sum()).pvalue > 1e-3


def test_the_pitch_temperature_tempers_the_class_and_leaves_the_octave(exported):
    """At pitch temperature 0.5 the class is drawn from p(class)^2 (normalised) and the octave within
    it from p(pitch | class), as the network has it; the whole pitch tempered (p^2), the register
    narrowed with the key. Chi-squared on 20,000 draws, and the log-probability the graph reports."""
    from scipy.stats import chisquare

    _, out = exported
    assert read_card(out)["pitch_temperature_scope"] == "pitch_class"
    runtime = Runtime(out, backend="tflite", batch=1, seed=0)
    rng = np.random.default_rng(4)
    state = rng.normal(size=(1, *read_card(out)["state_shape"])).astype(np.float32)
    controls = np.zeros((1, CONTROL_SIZE), np.float32)
    plain = _distribution(runtime, state, controls, [7])
    classes = np.arange(128) % 12
    class_mass = np.bincount(classes, weights=plain, minlength=12)
    sharper = class_mass ** 2 / (class_mass ** 2).sum()
    expected = sharper[classes] * plain / class_mass[classes]
    draws, column = 20000, FIELD_ORDER.index("pitch")
    forced = np.full((draws, 4), -1, np.int32)
    forced[:, :column] = 7
    temperature = np.ones((draws, 4), np.float32)
    temperature[:, column] = 0.5
    outputs = runtime.step_function({
        "pitch": np.full(draws, 60, np.int32), "step": np.full(draws, 3, np.int32),
        "duration": np.full(draws, 5, np.int32), "velocity": np.full(draws, 4, np.int32),
        "state": np.repeat(state, draws, axis=0), "controls": np.repeat(controls, draws, axis=0),
        "temperature": temperature, "top_p": np.full((draws, 4), 2.0, np.float32),
        "uniform": rng.random((draws, 4), dtype=np.float32), "forced": forced, **_memory_inputs(runtime, draws)})
    drawn = outputs["pitch"]
    assert np.allclose(outputs["log_prob"][:, column], np.log(expected[drawn]), atol=1e-4)
    assert np.all(outputs["most_likely"][:, column] == np.argmax(plain))  # the network's, whatever the temperature
    counts = np.bincount(drawn, minlength=128)
    whole_pitch = plain ** 2 / (plain ** 2).sum()

    def fits(wanted):
        common = wanted * draws >= 5
        observed = np.append(counts[common], counts[~common].sum())
        cells = np.append(wanted[common], wanted[~common].sum()) * draws
        return chisquare(observed[cells > 0], cells[cells > 0] * observed.sum() / cells[cells > 0].sum()).pvalue

    assert fits(expected) > 1e-3
    assert fits(whole_pitch) < 1e-6  # the test can tell the two apart


@pytest.mark.parametrize("backend", ["savedmodel", "tflite"])
def test_score_gives_back_the_log_probs_sample_used(exported, backend):
    _, out = exported
    runtime = Runtime(out, backend=backend, batch=3, seed=4)
    notes, used = [], []
    for _ in range(25):
        notes.append(runtime.sample(1.0))
        used.append(runtime.last_log_prob)
    notes = np.stack(notes, axis=1)  # [B, T]
    scores = Runtime(out, backend=backend).score(notes, start=runtime.start_notes)
    for name in FIELD_ORDER:
        drawn = np.stack([u[name] for u in used], axis=1)
        assert np.allclose(scores[name], drawn, atol=1e-4), name
    joint = sum(scores[name] for name in FIELD_ORDER)
    assert np.all(joint < 0)


@pytest.mark.parametrize("backend", ["savedmodel", "tflite"])
def test_prime_then_sample_is_scoring_the_primer_then_sampling_and_reset_forgets(exported, backend):
    """The primer leaves the same state (LSTM and memory) whether fed by `prime` or by `score`, and
    a stream reset after playing past its memory scores the primer as a fresh one does."""
    _, out = exported
    rng = np.random.default_rng(2)
    primer = make_notes(rng.integers(40, 90, 12), rng.uniform(0, 0.4, 12), rng.uniform(0.05, 1, 12), rng.integers(30, 110, 12))
    primed = Runtime(out, backend=backend, seed=9)
    primed.prime(primer)
    scored = Runtime(out, backend=backend, seed=9)
    first_scores = scored.score(primer[None], start=primed.start_notes)
    assert np.array_equal(primed.sample(1.0), scored.sample(1.0))
    assert np.allclose(primed.state, scored.state, atol=1e-6)
    if primed.memory is not None:
        assert np.allclose(primed.memory, scored.memory, atol=1e-6)
    for _ in range(30):
        scored.sample(1.0)
    again = scored.score(primer[None], start=primed.start_notes)
    for name in FIELD_ORDER:
        assert np.array_equal(again[name], first_scores[name]), name


def test_fresh_streams_start_from_the_cards_real_notes_and_a_score_from_a_fixed_one(exported, tmp_path):
    """Issue 17: every stream continued from one fixed note of velocity 80 and played loud for
    hundreds of notes (75 against MAESTRO's 64). Training begins each window at a real note with
    a zero state, so a fresh stream now continues from a real training note, one drawn per stream."""
    _, out = exported
    assert np.array_equal(Runtime(out, backend="tflite", batch=3, seed=0).start_notes,
                          np.repeat(np.array([START_NOTE], dtype=NOTE_DTYPE), 3))  # a card without the table
    with_table = tmp_path / "with_start_notes"
    shutil.copytree(out, with_table)
    card = json.loads((with_table / "card.json").read_text())
    card["start_notes"] = [[40 + row, 0.05 * (row % 4), 0.1 + 0.1 * (row % 3), 20 + 3 * row] for row in range(30)]
    (with_table / "card.json").write_text(json.dumps(card))
    runtime = Runtime(with_table, backend="tflite", batch=64, seed=0)
    starts = runtime.start_notes
    assert len(np.unique(starts["pitch"])) > 10  # streams start differently
    assert np.array_equal(starts["velocity"], 20 + 3 * (starts["pitch"].astype(int) - 40))  # each a row of the table
    encoded = runtime.bins.encode(starts)
    assert all(np.array_equal(runtime.previous[name], encoded[name]) for name in FIELD_ORDER)
    runtime.reset(start=make_notes([70], [0.1], [0.5], [33]))  # or the note asked for, for every stream
    assert np.all(runtime.start_notes["pitch"] == 70) and np.all(runtime.start_notes["velocity"] == 33)
    # A score continues from START_NOTE unless told otherwise, so it does not depend on a draw.
    notes = np.stack([Runtime(with_table, backend="tflite", batch=2, seed=seed).sample(1.0) for seed in (1, 2)], axis=1)
    scored = Runtime(with_table, backend="tflite", seed=5)
    assert np.array_equal(scored.score(notes)["pitch"], Runtime(with_table, backend="tflite", seed=6).score(notes)["pitch"])
    assert np.all(scored.start_notes["velocity"] == START_NOTE[3])


def test_an_exported_model_exports_again_through_todays_graph_keeping_its_records(exported, tmp_path):
    """`cadenza export MODEL --out MODEL`: an older export (here: its card without the pitch
    temperature's scope, as every model before it) goes through today's graph, scoring the same,
    its card's records and its evaluation/ kept."""
    from conftest import run_cadenza

    _, out = exported
    older = tmp_path / "older"
    shutil.copytree(out, older)
    card = json.loads((older / "card.json").read_text())
    del card["pitch_temperature_scope"]
    card["sampling"] = {"pitch_temperature": 0.85}
    (older / "card.json").write_text(json.dumps(card))
    (older / "evaluation").mkdir()
    (older / "evaluation" / "style.json").write_text('{"auc": 0.9}')
    rng = np.random.default_rng(3)
    notes = make_notes(rng.integers(40, 90, 30), rng.uniform(0, 0.4, 30), rng.uniform(0.05, 1, 30), rng.integers(30, 110, 30))
    before = Runtime(older, backend="tflite").score(notes[None])
    result = run_cadenza("export", str(older), "--out", str(older), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    again = read_card(older)
    assert again["pitch_temperature_scope"] == "pitch_class"
    assert again["sampling"] == {"pitch_temperature": 0.85} and again["training"] == card["training"]
    assert again["exported_again"]["from_commit"] == card["source_commit"]
    assert (older / "evaluation" / "style.json").read_text() == '{"auc": 0.9}'
    after = Runtime(older, backend="tflite").score(notes[None])
    for name in FIELD_ORDER:  # at temperature 1 the graph computes what it did
        assert np.allclose(after[name], before[name], atol=1e-4), name


def test_score_respects_lengths_and_top_p_truncates(exported):
    _, out = exported
    runtime = Runtime(out, backend="tflite", seed=0)
    notes = np.stack([make_notes([60, 62, 64, 65], [0.1] * 4, [0.2] * 4, [80] * 4)] * 2)
    scores = runtime.score(notes, lengths=[4, 2])
    assert np.all(scores["pitch"][1, 2:] == 0) and np.all(scores["pitch"][0] < 0)
    assert np.allclose(scores["pitch"][0, :2], scores["pitch"][1, :2], atol=1e-5)
    narrow = Runtime(out, backend="tflite", batch=200, seed=1)
    wide = Runtime(out, backend="tflite", batch=200, seed=1)
    assert len(np.unique(narrow.sample(1.0, top_p=0.05)["pitch"])) < len(np.unique(wide.sample(1.0)["pitch"]))


def test_dropped_control_is_the_same_as_no_control(exported):
    """A control vector with every 'given' flag off and zero values is exactly the no-control input."""
    _, out = exported
    notes = np.stack([make_notes([60, 67, 64], [0.0, 0.3, 0.2], [0.5] * 3, [70, 80, 90])])
    plain = Runtime(out, backend="tflite").score(notes)
    dropped = Runtime(out, backend="tflite").score(notes, controls=control_vector(None, None, None))
    steered = Runtime(out, backend="tflite").score(notes, controls=control_vector(None, density=16.0))
    for name in FIELD_ORDER:
        assert np.array_equal(plain[name], dropped[name])
    assert not np.allclose(plain["step"], steered["step"])


def test_card_records_config_bins_order_and_license(exported):
    _, out = exported
    card = read_card(out)
    assert card["config"]["lstm_units"] == 16
    assert card["field_order"] == list(FIELD_ORDER) and card["control_size"] == CONTROL_SIZE
    assert len(card["bins"]["time_seconds"]) == TINY.time_bins
    assert card["bins"]["time_seconds"][0] == 0.0
    assert "CC BY-NC-SA 4.0" in card["license"]


def test_runtime_seed_is_reproducible_and_streams_independent(exported):
    _, out = exported
    first = Runtime(out, backend="tflite", batch=3, seed=7)
    second = Runtime(out, backend="tflite", batch=3, seed=7)
    a = np.stack([first.sample(1.0) for _ in range(30)])
    b = np.stack([second.sample(1.0) for _ in range(30)])
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:, 0], a[:, 1])  # streams differ
    assert a["duration"].min() > 0 and a["velocity"].min() >= 1 and a["pitch"].max() <= 127


def test_runtime_tflite_does_not_import_tensorflow(exported):
    import subprocess
    import sys

    _, out = exported
    code = ("import sys; from models.runtime import Runtime; r = Runtime(%r, backend='tflite'); r.sample(1.0); "
            "print('tensorflow' in sys.modules)" % str(out))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_missing_corrupt_and_mismatched_models_are_one_line_errors(tmp_path, exported):
    with pytest.raises(CadenzaError, match="not found"):
        Runtime(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "card.json").write_text("{not json")
    with pytest.raises(CadenzaError, match="corrupt model card"):
        Runtime(broken)
    _, out = exported
    bad_tflite = tmp_path / "bad"
    bad_tflite.mkdir()
    (bad_tflite / "card.json").write_text((out / "card.json").read_text())
    (bad_tflite / "model.tflite").write_bytes(b"garbage" * 10)
    with pytest.raises(CadenzaError, match="corrupt TFLite"):
        Runtime(bad_tflite, backend="tflite")
    card = json.loads((out / "card.json").read_text())
    for field_name, value, message in [("state_shape", [4, 32], "state_shape"),
                                       ("tflite_output_order", list(reversed(card["tflite_output_order"])), "output"),
                                       ("format", "cadenza-step-v1", "re-export")]:
        wrong = tmp_path / field_name
        shutil.copytree(out, wrong)
        (wrong / "card.json").write_text(json.dumps(card | {field_name: value}))
        with pytest.raises(CadenzaError, match=message):
            Runtime(wrong, backend="tflite")


def test_bins_round_trip_times():
    bins = Bins(ModelConfig())
    seconds = np.array([0.0, 0.004, 0.01, 0.1, 0.5, 1.0, 4.0, 10.0])
    back = bins.bin_to_time(bins.time_to_bin(seconds))
    assert back[0] == 0 and back[1] == 0
    ratio = back[2:] / np.minimum(seconds[2:], 4.0)
    assert np.all(np.abs(np.log(ratio)) < 0.06)  # within half a bin (bins are ~10 % apart)


def test_a_notes_length_lies_anywhere_in_its_bin_and_reads_back_as_it(exported):
    """A duration bin stands for a span of lengths: decoded at its centre alone, every note of the
    30.4-33.5 ms bin was 31.9 ms long, under the 32 ms a short note is counted below."""
    _, out = exported
    runtime = Runtime(out, backend="tflite", batch=256, seed=3)
    for _ in range(4):
        notes = runtime.sample(1.0)
        assert np.array_equal(runtime.bins.time_to_bin(notes["duration"]), runtime.previous["duration"])
    bins = Bins(ModelConfig())
    lengths = bins.time_within_bin(np.full(1000, 13), np.random.default_rng(0).random(1000))
    assert np.all(bins.time_to_bin(lengths) == 13)
    assert 0.3 < np.mean(lengths < 0.032) < 0.7  # the bin of 31.9 ms lies across 32 ms
    assert lengths.max() / lengths.min() > 1.09  # the whole width of the bin (10 %)
    assert np.all(bins.time_within_bin(np.zeros(3, int), np.array([0.0, 0.5, 1.0])) == 0)


def test_the_top_length_bin_plays_the_lengths_it_stands_for(exported, tmp_path):
    """Training clips every length from the top bin's lower edge (3.8 s) up into it, so a note drawn
    there was played at 3.8-4.2 s, and no note ever sounded longer; MAESTRO's longest 0.9 % ring on
    to 5 s, 10 s and more. The card records the training data's lengths in that bin, and the runtime
    draws from them."""
    from training.export_run import duration_tail

    bins = Bins(ModelConfig())
    top = len(bins.time_centers) - 1
    rng = np.random.default_rng(1)
    lengths = np.concatenate([rng.uniform(0.05, 3.0, 9000), bins.top_bin_edge * np.exp(rng.exponential(0.5, 1000))])
    notes = np.zeros(len(lengths), NOTE_DTYPE)
    notes["duration"] = lengths
    tail = duration_tail(notes, ModelConfig())
    assert tail["share_of_notes"] == 0.1 and tail["from_seconds"] == round(bins.top_bin_edge, 4)
    assert len(tail["seconds"]) == 64 and np.all(np.diff(tail["seconds"]) >= 0)
    played = bins.time_within_bin(np.full(20000, top), rng.random(20000), tail["seconds"])
    assert np.all(bins.time_to_bin(played) == top)  # still the top bin
    beyond = lengths[lengths >= bins.top_bin_edge]
    assert abs(np.median(played) / np.median(beyond) - 1) < 0.03
    assert abs(np.quantile(played, 0.9) / np.quantile(beyond, 0.9) - 1) < 0.05
    assert bins.time_within_bin(np.full(100, top), rng.random(100)).max() < 4.3  # no tail: the bin's width
    other = bins.time_within_bin(np.full(100, 40), np.linspace(0, 1, 100), tail["seconds"])
    assert np.array_equal(other, bins.time_within_bin(np.full(100, 40), np.linspace(0, 1, 100)))  # other bins as before

    _, out = exported  # the runtime reads the card's tail
    with_tail = tmp_path / "with_tail"
    shutil.copytree(out, with_tail)
    card = json.loads((with_tail / "card.json").read_text())
    tiny_bins = Bins(TINY)
    card["duration_tail"] = duration_tail(notes, TINY)
    (with_tail / "card.json").write_text(json.dumps(card))
    runtime = Runtime(with_tail, backend="tflite", batch=500, seed=0)
    drawn = runtime.notes_from_bins({"pitch": np.full(500, 60), "step": np.full(500, 3), "velocity": np.full(500, 4),
                                     "duration": np.full(500, TINY.time_bins - 1)})
    assert np.all(drawn["duration"] >= tiny_bins.top_bin_edge)
    assert np.median(drawn["duration"]) > 1.3 * tiny_bins.time_centers[-1]
    assert Runtime(out, backend="tflite").duration_tail is None  # a card without it: as before


def test_a_key_still_sounding_is_not_struck_again(exported):
    """With mask_sounding_keys the graph gives no probability to a key whose last note sounds more
    than SOUNDING_MARGIN_SECONDS past the onset just drawn (the runtime tracks how long each key
    sounds on). The unmasked tiny models strike such keys (9-27 times in 1,200 notes): the check can fail."""
    from models.config import SOUNDING_MARGIN_SECONDS

    _, out = exported
    runtime = Runtime(out, backend="tflite", batch=8, seed=6)
    sounding = np.zeros((8, 128))  # seconds each key sounds on after the last onset
    struck_while_sounding = 0
    for _ in range(150):
        notes = runtime.sample(1.0)
        onset = runtime.bins.time_upper_edges[runtime.previous["step"]]  # the step bin's latest onset
        left = sounding[np.arange(8), notes["pitch"]] - onset
        struck_while_sounding += int(np.sum(left > SOUNDING_MARGIN_SECONDS))
        sounding = np.maximum(sounding - notes["step"][:, None], 0.0)
        sounding[np.arange(8), notes["pitch"]] = notes["duration"]
    if read_card(out)["config"].get("mask_sounding_keys"):
        assert struck_while_sounding == 0
    else:
        assert struck_while_sounding > 5, struck_while_sounding  # 9-27 of 1,200 notes (seeded)
