"""The exported step graph: its card (read and checked) and the two ways to run it.

The TFLite path imports only numpy and ai_edge_litert (about 0.1 s), never TensorFlow,
so the live streamer starts fast. The SavedModel path is for machines where TensorFlow sees a GPU.
`models.runtime` samples streams over whichever is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from models.config import FIELD_ORDER, ModelConfig, memory_shape, state_shape
from models.controls import CONTROL_SIZE
from models.errors import CadenzaError, require_tensorflow
from models.stderr import silenced_stderr

HEADS = ("pitch", "step", "duration", "velocity")
CARD_FORMAT = "cadenza-step-v3"  # v3: top_p per field [B, 4], state rows per models.config.state_shape
STEP_INPUTS = set(HEADS) | {"state", "controls", "temperature", "top_p", "uniform", "forced"}
STEP_OUTPUTS = set(HEADS) | {"state", "log_prob", "most_likely"}
MEMORY_INPUTS, MEMORY_OUTPUTS = {"memory"}, {"memory_row"}  # with memory (models/memory.py)
INTERVAL_INPUTS = {"chord_tops"}  # with an interval bias (models/intervals.py)


def step_names(card: dict) -> tuple[set, set]:
    """The step graph's input and output names for this card."""
    inputs, outputs = set(STEP_INPUTS), set(STEP_OUTPUTS)
    if card.get("memory_shape"):
        inputs, outputs = inputs | MEMORY_INPUTS, outputs | MEMORY_OUTPUTS
    if card.get("config", {}).get("interval_bias"):
        inputs |= INTERVAL_INPUTS
    if card.get("config", {}).get("mask_sounding_keys"):
        inputs |= {"sounding"}  # seconds each key still sounds after the previous onset [B, 128]
    return inputs, outputs


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
        config = ModelConfig.from_dict(card["config"])
    except (ValueError, KeyError, TypeError) as error:
        raise CadenzaError(f"corrupt model card {card_path}: {error}") from None
    if card.get("format") != CARD_FORMAT:
        raise CadenzaError(f"{model_dir} is a {card.get('format', 'unknown')} model; this cadenza reads "
                           f"{CARD_FORMAT} (re-export the run with `cadenza export`)")
    shape = memory_shape(config)
    expected = {"state_shape": list(state_shape(config)), "memory_shape": list(shape) if shape else None,
                "field_order": list(FIELD_ORDER),
                "control_size": CONTROL_SIZE}
    for field_name, value in expected.items():
        if card.get(field_name) != value:
            raise CadenzaError(f"model card {card_path}: {field_name} is {card.get(field_name)!r}, "
                               f"expected {value!r} for its config")
    if len(card.get("bins", {}).get("time_seconds", [])) != config.time_bins:
        raise CadenzaError(f"model card {card_path}: bins.time_seconds does not have config.time_bins entries")
    return card


class TFLiteStep:
    """The step graph through the LiteRT interpreter: one thread, inputs set by tensor index."""

    def __init__(self, path: Path, output_order: list, card: dict):
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
        output_details = self.interpreter.get_output_details()
        inputs, outputs = step_names(card)
        if set(self._inputs) != inputs or sorted(output_order) != sorted(outputs) \
                or len(output_details) != len(output_order):
            raise CadenzaError(f"{path} does not have the inputs and outputs of a cadenza step graph "
                               "(or the card's tflite_output_order does not match it)")
        self._outputs = {name: d["index"] for name, d in zip(output_order, output_details)}
        graph_state = list(self._input_details["state"]["shape_signature"][1:])
        if graph_state != list(card["state_shape"]):
            raise CadenzaError(f"model card: state_shape is {card['state_shape']}, the graph has {graph_state}")
        by_index = {d["index"]: d for d in output_details}
        if list(by_index[self._outputs["log_prob"]]["shape_signature"][1:]) != [len(FIELD_ORDER)] or \
                list(by_index[self._outputs["state"]]["shape_signature"][1:]) != graph_state:
            raise CadenzaError("model card: tflite_output_order does not match the graph's outputs")
        self.batch = None

    def _resize(self, batch: int) -> None:
        for name, index in self._inputs.items():
            shape = list(self._input_details[name]["shape_signature"])
            shape[0] = batch
            self.interpreter.resize_tensor_input(index, shape, strict=True)
        with silenced_stderr(active=self.batch is None):
            self.interpreter.allocate_tensors()
        self.batch = batch

    def __call__(self, inputs: dict) -> dict:
        if inputs["state"].shape[0] != self.batch:
            self._resize(inputs["state"].shape[0])
        set_tensor = self.interpreter.set_tensor
        for name, index in self._inputs.items():
            set_tensor(index, inputs[name])
        self.interpreter.invoke()
        get = self.interpreter.get_tensor
        return {name: get(index) for name, index in self._outputs.items()}


class SavedModelStep:
    """The step graph through TensorFlow: runs on the GPU where TensorFlow sees one."""

    def __init__(self, path: Path):
        require_tensorflow("the savedmodel backend")
        import tensorflow as tf

        try:
            self._step = tf.saved_model.load(str(path)).signatures["step"]
        except (OSError, ValueError, KeyError) as error:
            raise CadenzaError(f"corrupt SavedModel {path}: {str(error).splitlines()[0]}") from None
        self._tf = tf

    def __call__(self, inputs: dict) -> dict:
        outputs = self._step(**{name: self._tf.constant(value) for name, value in inputs.items()})
        return {name: value.numpy() for name, value in outputs.items()}


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
        return TFLiteStep(path, card.get("tflite_output_order", sorted(step_names(card)[1])), card)
    if backend == "savedmodel":
        path = model_dir / "savedmodel"
        if not path.is_dir():
            raise CadenzaError(f"{model_dir} has no savedmodel/")
        return SavedModelStep(path)
    raise CadenzaError(f"unknown backend {backend!r} (auto, tflite, savedmodel)")
