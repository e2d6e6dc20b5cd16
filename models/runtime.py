"""Load an exported model and sample notes from B independent streams.

The TFLite path imports only numpy and ai_edge_litert (about 0.1 s), never TensorFlow,
so the live streamer starts fast. The SavedModel path is for machines where TensorFlow sees a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from models.config import Bins, ModelConfig
from models.errors import CadenzaError
from models.notes import NOTE_DTYPE
from models.stderr import silenced_stderr

HEADS = ("pitch", "step", "duration", "velocity")
DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
# The note a stream starts from when nothing primes it: middle C, a quarter second, mezzo-forte.
START_NOTE = (60, 0.0, 0.25, 80)


def read_card(model_dir: Path) -> dict:
    """The model card, or a one-line error naming what is missing or broken."""
    model_dir = Path(model_dir)
    card_path = model_dir / "card.json"
    if not model_dir.is_dir():
        raise CadenzaError(f"model folder not found: {model_dir}")
    if not card_path.exists():
        raise CadenzaError(f"{model_dir} is not an exported cadenza model (no card.json)")
    try:
        card = json.loads(card_path.read_text())
        ModelConfig.from_dict(card["config"])
    except (ValueError, KeyError, TypeError) as error:
        raise CadenzaError(f"corrupt model card {card_path}: {error}") from None
    return card


class TFLiteStep:
    """The step graph through the LiteRT interpreter: one thread, inputs set by tensor index."""

    def __init__(self, path: Path, output_order: list):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # older installs ship the same interpreter inside TensorFlow
            from tensorflow.lite import Interpreter  # type: ignore
        try:
            with silenced_stderr():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        except (ValueError, RuntimeError) as error:
            raise CadenzaError(f"corrupt TFLite model {path}: {str(error).splitlines()[0]}") from None
        self._input_details = {d["name"]: d for d in self.interpreter.get_input_details()}
        self._inputs = {name: detail["index"] for name, detail in self._input_details.items()}
        self._outputs = {name: d["index"] for name, d in zip(output_order, self.interpreter.get_output_details())}
        if set(self._inputs) != set(HEADS) | {"state"} or set(self._outputs) != set(HEADS) | {"state"}:
            raise CadenzaError(f"{path} does not have the inputs and outputs of a cadenza step graph")
        self.batch = None

    def _resize(self, batch: int) -> None:
        for name, index in self._inputs.items():
            shape = list(self._input_details[name]["shape_signature"])
            shape[0] = batch
            self.interpreter.resize_tensor_input(index, shape, strict=True)
        with silenced_stderr(active=self.batch is None):
            self.interpreter.allocate_tensors()
        self.batch = batch

    def __call__(self, features: dict, state: np.ndarray) -> tuple[dict, np.ndarray]:
        if state.shape[0] != self.batch:
            self._resize(state.shape[0])
        set_tensor = self.interpreter.set_tensor
        for name in HEADS:
            set_tensor(self._inputs[name], features[name])
        set_tensor(self._inputs["state"], state)
        self.interpreter.invoke()
        get = self.interpreter.get_tensor
        return {name: get(self._outputs[name]) for name in HEADS}, get(self._outputs["state"])


class SavedModelStep:
    """The step graph through TensorFlow: runs on the GPU where TensorFlow sees one."""

    def __init__(self, path: Path):
        import tensorflow as tf

        try:
            self._step = tf.saved_model.load(str(path)).signatures["step"]
        except (OSError, ValueError, KeyError) as error:
            raise CadenzaError(f"corrupt SavedModel {path}: {str(error).splitlines()[0]}") from None
        self._tf = tf

    def __call__(self, features: dict, state: np.ndarray) -> tuple[dict, np.ndarray]:
        tensors = {name: self._tf.constant(features[name]) for name in HEADS}
        outputs = self._step(**tensors, state=self._tf.constant(state))
        return {name: outputs[name].numpy() for name in HEADS}, outputs["state"].numpy()


def tensorflow_sees_gpu() -> bool:
    """True only where an NVIDIA driver is present and TensorFlow lists a GPU (avoids importing TF otherwise)."""
    if not os.path.exists("/proc/driver/nvidia/version") or importlib.util.find_spec("tensorflow") is None:
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def load_step(model_dir: Path, backend: str = "auto", card: dict | None = None):
    """The step function of an exported model: 'tflite', 'savedmodel', or 'auto'."""
    model_dir = Path(model_dir)
    card = card or read_card(model_dir)
    if backend == "auto":
        backend = "savedmodel" if tensorflow_sees_gpu() else "tflite"
    if backend == "tflite":
        path = model_dir / "model.tflite"
        if not path.exists():
            raise CadenzaError(f"{model_dir} has no model.tflite")
        return TFLiteStep(path, card.get("tflite_output_order", sorted(HEADS + ("state",))))
    if backend == "savedmodel":
        path = model_dir / "savedmodel"
        if not path.is_dir():
            raise CadenzaError(f"{model_dir} has no savedmodel/")
        return SavedModelStep(path)
    raise CadenzaError(f"unknown backend {backend!r} (auto, tflite, savedmodel)")


def sample_categorical(logits: np.ndarray, temperature, top_p: float | None, rng: np.random.Generator) -> np.ndarray:
    """One category per row of logits [B, K] at a temperature (scalar or [B]), optionally nucleus-truncated."""
    temperature = np.maximum(np.asarray(temperature, dtype=np.float64).reshape(-1, 1), 1e-4)
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    probabilities = np.exp(scaled)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    draws = rng.random((len(logits), 1))
    if top_p is None or top_p >= 1.0:
        cumulative = np.cumsum(probabilities, axis=1)
        return np.minimum((cumulative < draws).sum(axis=1), logits.shape[1] - 1)
    order = np.argsort(-probabilities, axis=1)
    ranked = np.take_along_axis(probabilities, order, axis=1)
    cumulative = np.cumsum(ranked, axis=1)
    # Keep the smallest set whose mass reaches top_p (always at least the most likely category).
    ranked = np.where(cumulative - ranked < top_p, ranked, 0.0)
    cumulative = np.cumsum(ranked, axis=1)
    choice = np.minimum((cumulative < draws * cumulative[:, -1:]).sum(axis=1), logits.shape[1] - 1)
    return order[np.arange(len(logits)), choice]


class Runtime:
    """B independent note streams over one exported step graph.

    `prime` and `feed` push notes through the model; `sample` draws the next note of every
    stream at a temperature and feeds it back, so the streams continue from what they played.
    """

    def __init__(self, model_dir: Path | str | None = None, backend: str = "auto", batch: int = 1, seed: int | None = None):
        self.model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
        self.card = read_card(self.model_dir)
        self.config = ModelConfig.from_dict(self.card["config"])
        self.bins = Bins(self.config)
        self.step_function = load_step(self.model_dir, backend, self.card)
        self.backend = "tflite" if isinstance(self.step_function, TFLiteStep) else "savedmodel"
        self.rng = np.random.default_rng(seed)
        self.reset(batch)

    def reset(self, batch: int | None = None) -> None:
        """Forget everything: zero state, and each stream starts from START_NOTE."""
        self.batch = batch or self.batch
        self.state = np.zeros((self.batch, *self.card["state_shape"]), dtype=np.float32)
        self.logits = None
        self.feed(np.repeat(np.array([START_NOTE], dtype=NOTE_DTYPE), self.batch))

    def feed(self, notes: np.ndarray) -> None:
        """Advance every stream by one given note (NOTE_DTYPE, shape [B])."""
        features = self.bins.encode(notes)
        self.logits, self.state = self.step_function(features, self.state)

    def prime(self, notes: np.ndarray) -> None:
        """Feed a note sequence (the same for every stream) to set the model's state."""
        for note in notes:
            self.feed(np.repeat(note[None], self.batch))

    def sample(self, temperature: float = 1.0, top_p: float | None = None, head_temperature: dict | None = None) -> np.ndarray:
        """Draw the next note of every stream (NOTE_DTYPE, shape [B]) and feed it back.

        `temperature` applies to every head; `head_temperature` overrides it per head, e.g. {"step": 0.5}.
        """
        if np.any(np.asarray(temperature) <= 0):
            raise ValueError("temperature must be > 0")
        temperatures = {name: temperature for name in HEADS} | (head_temperature or {})
        chosen = {name: sample_categorical(self.logits[name], temperatures[name], top_p, self.rng) for name in HEADS}
        notes = np.zeros(self.batch, dtype=NOTE_DTYPE)
        notes["pitch"] = chosen["pitch"]
        notes["step"] = self.bins.bin_to_time(chosen["step"])
        notes["duration"] = np.maximum(self.bins.bin_to_time(chosen["duration"]), self.bins.time_centers[1])
        notes["velocity"] = self.bins.bin_to_velocity(chosen["velocity"])
        self.logits, self.state = self.step_function(
            {"pitch": chosen["pitch"].astype(np.int32), "step": chosen["step"].astype(np.int32),
             "duration": chosen["duration"].astype(np.int32), "velocity": chosen["velocity"].astype(np.int32)},
            self.state,
        )
        return notes
