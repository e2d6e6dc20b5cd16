"""The exported step graph must reproduce the full-sequence Keras network, on both backends."""

import json

import numpy as np
import pytest

from models.config import Bins, ModelConfig
from models.errors import CadenzaError
from models.runtime import Runtime, load_step, read_card

TINY = ModelConfig(lstm_layers=2, lstm_units=16, pitch_embedding=8, time_embedding=4, velocity_embedding=4,
                   time_bins=16, velocity_bins=8, dropout=0.1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import keras

    from models.export import export_model
    from models.network import build_model

    keras.utils.set_random_seed(3)
    model = build_model(TINY)
    out = tmp_path_factory.mktemp("export") / "tiny"
    export_model(model, TINY, out, {"training": {"note": "random weights"}})
    return model, out


def _random_sequence(length, rng):
    return {
        "pitch": rng.integers(0, 128, (2, length)).astype(np.int32),
        "step": rng.integers(0, TINY.time_bins, (2, length)).astype(np.int32),
        "duration": rng.integers(0, TINY.time_bins, (2, length)).astype(np.int32),
        "velocity": rng.integers(0, TINY.velocity_bins, (2, length)).astype(np.int32),
    }


@pytest.mark.parametrize("backend", ["savedmodel", "tflite"])
def test_stepping_matches_full_sequence(exported, backend):
    model, out = exported
    sequence = _random_sequence(20, np.random.default_rng(0))
    full = model(sequence, training=False)
    step = load_step(out, backend)
    state = np.zeros((2, 2 * TINY.lstm_layers, TINY.lstm_units), np.float32)
    differences = []
    for t in range(20):
        logits, state = step({k: v[:, t].copy() for k, v in sequence.items()}, state)
        for head in logits:
            differences.append(np.abs(np.asarray(full[head])[:, t] - logits[head]))
    differences = np.concatenate([d.ravel() for d in differences])
    assert np.isfinite(differences).all()
    assert differences.max() <= 1e-4


def test_card_records_config_bins_and_license(exported):
    _, out = exported
    card = read_card(out)
    assert card["config"]["lstm_units"] == 16
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


def test_missing_and_corrupt_model_are_one_line_errors(tmp_path, exported):
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


def test_bins_round_trip_times():
    bins = Bins(ModelConfig())
    seconds = np.array([0.0, 0.004, 0.01, 0.1, 0.5, 1.0, 4.0, 10.0])
    back = bins.bin_to_time(bins.time_to_bin(seconds))
    assert back[0] == 0 and back[1] == 0
    ratio = back[2:] / np.minimum(seconds[2:], 4.0)
    assert np.all(np.abs(np.log(ratio)) < 0.06)  # within half a bin (bins are ~10 % apart)
