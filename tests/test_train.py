"""Training on a tiny prepared set: checkpoints, resume, mirrored strategy, evaluate, export."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_cadenza, synthetic_midi

TINY = ["--lstm-units", "8", "--lstm-layers", "1", "--window", "16", "--batch-size", "8",
        "--steps-per-epoch", "3", "--validation-windows", "16"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    source = root / "midi"
    source.mkdir()
    for index in range(40):
        synthetic_midi(source / f"p{index}.mid", tempo_change=False)
    out = root / "prepared"
    assert run_cadenza("prepare", "--midi-dir", str(source), "--out", str(out)).returncode == 0
    return out


@pytest.mark.slow
def test_train_checkpoints_resumes_evaluates_and_exports(prepared, tmp_path):
    run = tmp_path / "run"
    first = run_cadenza("train", "--data", str(prepared), "--out", str(run), "--epochs", "1", *TINY, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (run / "last.keras").exists() and (run / "best.keras").exists()
    again = run_cadenza("train", "--data", str(prepared), "--out", str(run), "--epochs", "1", *TINY)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cadenza("train", "--data", str(prepared), "--out", str(run), "--epochs", "2", "--resume", *TINY, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert int(rows[1]["predictions_seen"]) == 2 * int(rows[0]["predictions_seen"])
    # Moving the end anneals from where the rate is; a run stopped by its budget goes on when given more.
    assert "annealing to" in resumed.stdout, resumed.stdout
    budget = run_cadenza("train", "--data", str(prepared), "--out", str(run), "--epochs", "4", "--resume",
                         "--max-minutes", "0.0001", *TINY, timeout=300)
    assert budget.returncode == 0 and json.loads((run / "state.json").read_text())["stopped_because"] == "time budget"
    more = run_cadenza("train", "--data", str(prepared), "--out", str(run), "--epochs", "4", "--resume", *TINY,
                       "--learning-rate", "0.0007", timeout=300)
    assert more.returncode == 0, more.stderr
    assert "learning rate: 0.00070" in more.stdout, more.stdout  # a warm restart anneals again from the rate given
    assert [int(r["epoch"]) for r in csv.DictReader(open(run / "log.csv"))] == [1, 2, 3, 4]
    evaluated = run_cadenza("evaluate", str(run), "--split", "train", timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((run / "evaluation" / "train.json").read_text())
    assert 0 < result["model"]["pitch_nll"] < 10 and 0 <= result["model"]["pitch_top1"] <= 1
    assert result["unigram"]["notes"] == result["model"]["notes"]
    for png in ("loss_curves.png", "train_pitch_class_confusion.png", "train_pitch_stretch.png"):
        assert (run / "evaluation" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    exported = run_cadenza("export", str(run), "--out", str(tmp_path / "model"), timeout=300)
    assert exported.returncode == 0, exported.stderr
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["training"]["epochs_run"] == 4 and "CC BY-NC-SA 4.0" in card["license"]
    assert card["start_notes"] and all(len(row) == 4 for row in card["start_notes"])
    # Fine-tuning the exported model with memory added: it starts where the export was, and says so.
    tuned = tmp_path / "tuned"
    warm = run_cadenza("train", "--data", str(prepared), "--out", str(tuned), "--epochs", "1", "--init-from",
                       str(tmp_path / "model"), "--memory", "8", "--memory-heads", "2", *TINY, timeout=300)
    assert warm.returncode == 0, warm.stderr
    assert "initialised from" in warm.stdout
    assert run_cadenza("export", str(tuned), "--out", str(tmp_path / "tuned_model"), timeout=300).returncode == 0
    tuned_card = json.loads((tmp_path / "tuned_model" / "card.json").read_text())
    assert tuned_card["training"]["started_from"]["predictions_seen"] == card["training"]["predictions_seen"]
    assert tuned_card["state_shape"] == [2 + 1, 8] and tuned_card["memory_shape"] == [8, 8]
    # Exported without an evaluation of its own: the training data's frequencies are still there (render --plots)
    assert tuned_card["training_distributions"] == card["training_distributions"]
    assert len(tuned_card["training_distributions"]["pitch"]) == 128


def test_an_export_keeps_real_training_notes_for_fresh_streams_to_start_from(prepared):
    from training.export_run import START_NOTES, start_notes
    from training.prepare import load_split

    train = load_split(prepared, "train").notes
    rows = start_notes(train)
    assert len(rows) == min(START_NOTES, len(train))
    real = {(int(note["pitch"]), round(float(note["step"]), 4), round(float(note["duration"]), 4), int(note["velocity"]))
            for note in train}
    assert all(tuple(row) in real for row in rows)
    assert len({tuple(row) for row in rows}) >= min(len(real), 20)  # drawn across the data, not one note over and over
    assert rows == start_notes(train)  # the same export writes the same table


def test_window_scope_gives_each_window_its_own_notes_per_second_at_every_position(prepared):
    """--density-scope window: one density a window, as a player asks for one (its notes over their
    span, time-stretched as they are); upcoming: each note's own, from the next density_seconds."""
    from dataclasses import replace

    from models.config import ModelConfig
    from models.controls import DENSITY, DENSITY_ON, DENSITY_REFERENCE
    from training.prepare import load_split
    from training.windows import WindowSampler

    split = load_split(prepared, "train")
    config = replace(ModelConfig(), window=16, density_scope="window", control_dropout=0.0)
    sampler = WindowSampler(split, config)
    raw = sampler.sample_notes(8, np.random.default_rng(0), augment=True)
    vectors = sampler.controls(raw, np.random.default_rng(1), dropout=0.0)
    onsets = np.cumsum(raw["step"][:, 1:], axis=1)
    expected = (config.window - 1) / (onsets[:, -1] - onsets[:, 0])
    assert np.all(vectors[..., DENSITY_ON] == 1)
    np.testing.assert_allclose(np.exp(vectors[..., DENSITY]) * DENSITY_REFERENCE, np.repeat(expected[:, None], config.window, 1),
                               rtol=1e-5)
    upcoming = WindowSampler(split, replace(config, density_scope="upcoming", density_seconds=1.0)).controls(
        raw, np.random.default_rng(1), dropout=0.0)
    assert np.ptp(upcoming[..., DENSITY][upcoming[..., DENSITY_ON] == 1]) > 0.1  # varies note by note


def test_a_length_a_restrike_cut_is_found_in_its_own_piece_only():
    """Two pieces: in the first, C held 1 s is struck again at 1 s (cut: it ends there), E ends at
    0.3 s and is struck again at 0.5 s (not cut). The second piece strikes C where the first
    piece's last C ends, counted on through both (1.5 s): pieces never cut each other."""
    from models.notes import make_notes
    from training.prepare import PreparedSplit
    from training.windows import cut_by_restrike

    first = make_notes([60, 64, 64, 60], [0.0, 0.0, 0.5, 0.5], [1.0, 0.3, 0.2, 0.5], [64] * 4)
    second = make_notes([62, 60], [0.0, 0.5], [0.5, 0.5], [64] * 2)
    split = PreparedSplit(np.concatenate([first, second]), np.array([0, 4, 6]), np.array(["a", "b"]))
    assert list(cut_by_restrike(split)) == [True, False, False, False, False, False]


def test_a_censored_length_is_trained_as_at_least_that_long():
    """CensoredLengthLoss: a plain label's loss is -log p(bin); a censored one (bin + classes) is
    -log p(bin or longer); the windows mark the lengths a restrike cut so."""
    import keras

    from models.network import CensoredLengthLoss

    logits = np.random.default_rng(0).normal(size=(2, 3, 6)).astype(np.float32)
    labels = np.array([[0, 3, 5], [2 + 6, 0 + 6, 5 + 6]])
    loss = keras.ops.convert_to_numpy(CensoredLengthLoss(6).call(labels, logits))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = [[-np.log(probs[0, t, labels[0, t]]) for t in range(3)],
                [-np.log(probs[1, t, labels[1, t] - 6:].sum()) for t in range(3)]]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert loss[1, 1] == pytest.approx(0.0, abs=1e-5)  # at least the shortest length: certain


def test_windows_mark_the_lengths_a_restrike_cut_for_the_censored_loss():
    from dataclasses import replace

    from models.config import ModelConfig
    from models.notes import make_notes
    from training.prepare import PreparedSplit
    from training.windows import WindowSampler, cut_by_restrike

    # C and E in turn every 0.25 s, each held until its key comes again (cut) or 0.3 s (not).
    lengths = np.where(np.arange(80) % 3 == 0, 0.3, 0.5)
    notes = make_notes(np.tile([60, 64], 40), np.full(80, 0.25), lengths, np.full(80, 64))
    split = PreparedSplit(notes, np.array([0, 40, 80]), np.array(["a", "b"]))
    config = replace(ModelConfig(), window=16, censor_cut_lengths=True)
    sampler = WindowSampler(split, config)
    inputs, targets = sampler.categorical_batch(32, np.random.default_rng(0), augment=False)
    plain_inputs, plain_targets = WindowSampler(split, replace(config, censor_cut_lengths=False)).categorical_batch(
        32, np.random.default_rng(0), augment=False)
    censored = targets["duration"] >= config.time_bins
    cut = cut_by_restrike(split)
    assert 0 < cut.mean() < 1 and censored.any()
    np.testing.assert_array_equal(np.where(censored, targets["duration"] - config.time_bins, targets["duration"]),
                                  plain_targets["duration"])
    np.testing.assert_array_equal(inputs["next_duration"], plain_inputs["next_duration"])  # the heads see plain bins


def test_own_notes_replace_a_share_of_the_history_with_the_networks_own_draws(prepared):
    """--own-notes: history notes replaced by what the network draws there (here a pitch head that
    says 60, always), never the first note, the controls, or the true fields of the note predicted."""
    from dataclasses import replace

    from models.config import ModelConfig
    from training.prepare import load_split
    from training.train import _build, mix_in_own_notes
    from training.windows import WindowSampler

    config = replace(ModelConfig(), window=16, batch_size=8, lstm_units=8, lstm_layers=1, memory=0)
    model = _build(config, total_steps=10)
    head = model.get_layer("pitch").get_layer("pitch_logits")
    kernel, bias = head.get_weights()
    bias[:] = -50.0
    bias[60] = 50.0
    head.set_weights([np.zeros_like(kernel), bias])
    sampler = WindowSampler(load_split(prepared, "train"), config)
    inputs, _ = sampler.batch(8, np.random.default_rng(0))
    inputs["pitch"][inputs["pitch"] == 60] = 61  # so that every note the network gave is seen
    mixed = mix_in_own_notes(model, inputs, 0.3, np.random.default_rng(1), sampler)
    own = mixed["pitch"] == 60
    assert not own[:, 0].any() and 0.2 < own[:, 1:].mean() < 0.4, own.mean()
    for name in ("step", "duration", "velocity"):  # the whole note is the network's
        unchanged = mixed[name] == inputs[name]
        assert np.all(unchanged[~own]) and not np.all(unchanged[own])
    for name in ("controls", "next_step", "next_pitch", "next_duration"):
        np.testing.assert_array_equal(mixed[name], inputs[name])
    np.testing.assert_array_equal(mix_in_own_notes(model, inputs, 0.0, np.random.default_rng(1), sampler)["pitch"], inputs["pitch"])


def test_warm_start_rebuilds_an_exported_network_exactly_and_refuses_another_shape(tmp_path, monkeypatch):
    """Embeddings folded into the LSTM kernel are split back by SVD; the result is checked against the graph."""
    from dataclasses import replace

    import keras

    from models.config import ModelConfig
    from models.errors import CadenzaError
    from models.export import export_model
    from models.network import build_model
    from training.warm_start import load_exported_weights

    config = ModelConfig(lstm_layers=2, lstm_units=16, pitch_embedding=8, time_embedding=4, velocity_embedding=4,
                         time_bins=16, velocity_bins=8, head_units=12, field_embedding=4)
    keras.utils.set_random_seed(1)
    source = build_model(config)
    for layer in source.layers:  # biases away from zero, as after training
        for weight in layer.weights:
            if "bias" in weight.path:
                weight.assign(np.random.default_rng(0).normal(size=weight.shape).astype("float32"))
    export_model(source, config, tmp_path / "source")
    with_memory = replace(config, memory=6, memory_heads=2, window=32)
    load_exported_weights(build_model(with_memory), with_memory, tmp_path / "source")  # raises if it differs
    # An export with memory reads back too (its ring wraps within the 24 checked notes), and only into the same memory.
    remembering = build_model(with_memory)
    rng = np.random.default_rng(2)
    for weight in remembering.get_layer("memory").weights:  # trained attention: nothing at zero
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    export_model(remembering, with_memory, tmp_path / "remembering")
    load_exported_weights(build_model(with_memory), with_memory, tmp_path / "remembering")
    wider = replace(with_memory, memory=8)
    with pytest.raises(CadenzaError, match="memory"):
        load_exported_weights(build_model(wider), wider, tmp_path / "remembering")
    # An interval bias is added to a model without one (it starts at zero), and read back from one with it.
    relative = replace(with_memory, interval_bias=True)
    load_exported_weights(build_model(relative), relative, tmp_path / "remembering")
    remembering_intervals = build_model(relative)
    for weight in remembering_intervals.get_layer("pitch_intervals").weights + remembering_intervals.get_layer("memory").weights:
        weight.assign(rng.normal(scale=0.1, size=weight.shape).astype("float32"))
    export_model(remembering_intervals, relative, tmp_path / "relative")
    rebuilt = build_model(relative)
    load_exported_weights(rebuilt, relative, tmp_path / "relative")
    np.testing.assert_allclose(rebuilt.get_layer("pitch_intervals").get_weights()[1],
                               remembering_intervals.get_layer("pitch_intervals").get_weights()[1])
    with pytest.raises(CadenzaError, match="interval bias"):
        load_exported_weights(build_model(with_memory), with_memory, tmp_path / "relative")
    # A check that can fail: the same rebuild with one weight disturbed is refused.
    import training.warm_start as warm_start

    original = warm_start._load_heads

    def disturbed(model, cfg, weights):
        original(model, cfg, weights)
        layer = model.get_layer("pitch").layers[1]
        layer.set_weights([layer.get_weights()[0] * 1.5, layer.get_weights()[1]])

    monkeypatch.setattr(warm_start, "_load_heads", disturbed)
    with pytest.raises(CadenzaError, match="differs from the export"):
        load_exported_weights(build_model(config), config, tmp_path / "source")
    monkeypatch.undo()
    with pytest.raises(CadenzaError, match="lstm_units differ"):
        wider = replace(config, lstm_units=24)
        load_exported_weights(build_model(wider), wider, tmp_path / "source")


def test_mirrored_strategy_on_two_logical_cpus(prepared, tmp_path):
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from training.train import TrainSettings, preset_config, train
config = preset_config("default", lstm_units=8, lstm_layers=1, window=16, batch_size=8)
state = train(TrainSettings(data=Path({str(prepared)!r}), out=Path({str(tmp_path / 'm')!r}), epochs=1,
              steps_per_epoch=3, validation_windows=16, strategy="mirrored"), config)
print("replicas", state["replicas"])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas 2" in result.stdout


def test_seed_preset_trains(prepared, tmp_path):
    result = run_cadenza("train", "--preset", "seed", "--data", str(prepared), "--out", str(tmp_path / "s"),
                         "--epochs", "1", "--steps-per-epoch", "3", "--validation-windows", "16", "--batch-size", "8",
                         "--window", "16", timeout=300)
    assert result.returncode == 0, result.stderr
    assert np.isfinite(float(list(csv.DictReader(open(tmp_path / "s" / "log.csv")))[0]["val_pitch_loss"]))


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_multiworker_strategy_trains_two_workers_in_step_and_resumes(prepared, tmp_path):
    """Two local workers (TF_CONFIG on 127.0.0.1) train a tiny model, checkpoint and resume: each
    draws windows of its own, and both end with the same weights."""
    import os

    import keras

    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}

    def run_workers(*extra):
        processes = []
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                       CUDA_VISIBLE_DEVICES="")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "cadenza_cli", "train", "--data", str(prepared), "--out", str(tmp_path / f"w{index}"),
                 "--strategy", "multiworker", *TINY, *extra],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [process.communicate(timeout=600)[0] for process in processes]
        for process, output in zip(processes, outputs):
            assert process.returncode == 0, output[-3000:]
        return outputs

    first = run_workers("--epochs", "1")
    digests = [line.split()[-1] for output in first for line in output.splitlines() if "first windows" in line]
    assert len(digests) == 2 and digests[0] != digests[1], digests
    run_workers("--epochs", "2", "--resume")
    weights = []
    for index in range(2):
        rows = list(csv.DictReader(open(tmp_path / f"w{index}" / "log.csv")))
        assert [int(r["epoch"]) for r in rows] == [1, 2]
        weights.append(keras.models.load_model(tmp_path / f"w{index}" / "last.keras", compile=False).get_weights())
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(*weights))


def test_the_keys_still_sounding_at_each_next_onset_are_marked_for_the_pitchs_mask():
    """C held 1.08 s; E at 0.2 s (C sounds on); G at 0.7 s, held 2 s (C sounds on, E has ended);
    C again at 1.05 s (its last note sounds 30 ms on, 5 ms past the step bin's latest onset: within
    the margin, so C is free); D at 1.25 s (G sounds on)."""
    from models.config import Bins, ModelConfig
    from training.windows import sounding_keys

    raw = {"pitch": np.array([[60, 64, 67, 60, 62]]), "step": np.array([[0.0, 0.2, 0.5, 0.35, 0.2]]),
           "duration": np.array([[1.08, 0.1, 2.0, 0.1, 0.1]])}
    mask = sounding_keys(raw, Bins(ModelConfig()))
    assert mask.shape == (1, 4, 128)
    assert [list(np.flatnonzero(mask[0, position])) for position in range(4)] == [[60], [60], [67], [67]]
    # A step of 1.0 s stands for 0.985-1.085 s (its bin), as the step graph knows it: C sounding to
    # 1.07 s may have ended before it, so it stays free.
    raw = {"pitch": np.array([[60, 60]]), "step": np.array([[0.0, 1.0]]), "duration": np.array([[1.07, 0.1]])}
    assert not sounding_keys(raw, Bins(ModelConfig())).any()


def test_the_sounding_mask_without_the_interval_bias_is_a_one_line_error():
    from models.config import ModelConfig
    from models.errors import CadenzaError
    from models.network import build_model

    with pytest.raises(CadenzaError, match="needs the interval bias"):
        build_model(ModelConfig(mask_sounding_keys=True, interval_bias=False))
