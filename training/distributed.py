"""Training across machines (`cadenza train --strategy multiworker`) and the strategies by name.

TensorFlow's MultiWorkerMirroredStrategy keeps one set of weights on every worker: each step's
gradients are summed across them. Every worker runs the same command with its own TF_CONFIG
(cluster addresses and its index) and its own --out; each draws windows of its own.
"""

from __future__ import annotations

import json
import os

import numpy as np

from models.config import ModelConfig
from models.errors import CadenzaError


def configure_strategy(name: str):
    """tf.distribute strategy by name; 'mirrored' spans every GPU, or every logical CPU when none."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise CadenzaError(f"unknown strategy {name!r} (none, mirrored, multiworker)")


def worker_index() -> tuple[int, int]:
    """(this worker's index, the number of workers) from TF_CONFIG; (0, 1) outside a cluster."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        workers = len(config.get("cluster", {}).get("worker", [])) or 1
        return int(config.get("task", {}).get("index", 0)), workers
    except (ValueError, TypeError, AttributeError):
        raise CadenzaError("TF_CONFIG is not valid JSON with cluster.worker and task.index") from None


def train_across_workers(model, strategy, dataset, settings, config: ModelConfig, validation, callback,
                         first_epoch: int) -> None:
    """--strategy multiworker: every step runs the model's own train_step under strategy.run, so
    the workers' gradients are summed and their weights stay one. (Keras 3's fit cannot feed a
    MultiWorkerMirroredStrategy its distributed batches: keras-team/keras#20585.) Each worker
    validates on the same fixed windows, so every worker's log and early stopping agree."""
    import tensorflow as tf

    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def train_step(iterator):
        strategy.run(model.train_step, args=(next(iterator),))

    callback.set_model(model)
    for epoch in range(first_epoch, settings.epochs):
        callback.on_epoch_begin(epoch)
        model.reset_metrics()
        for _ in range(settings.steps_per_epoch):
            train_step(iterator)
        logs = {name: float(value) for name, value in model.get_metrics_result().items()}
        logs |= {f"val_{name}": value for name, value in _validation_losses(model, validation, config).items()}
        logs = dict(sorted(logs.items()))
        print(f"epoch {epoch + 1}/{settings.epochs}: " + " - ".join(f"{k} {v:.4f}" for k, v in logs.items()), flush=True)
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break


def _validation_losses(model, validation, config: ModelConfig) -> dict:
    """The compiled losses on the validation windows, computed here (model.evaluate cannot run
    under a MultiWorkerMirroredStrategy either): {'loss', '<head>_loss', 'pitch_accuracy'}."""
    inputs, targets = validation
    weights = dict(config.loss_weights)
    sums, count = {}, 0
    size = len(next(iter(targets.values())))
    for begin in range(0, size, config.batch_size * 4):
        part = slice(begin, begin + config.batch_size * 4)
        outputs = model({name: value[part] for name, value in inputs.items()}, training=False)
        for head, logits in outputs.items():
            logits = np.asarray(logits, np.float64)
            shifted = logits - logits.max(axis=-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            truth = np.asarray(targets[head][part])
            sums[f"{head}_loss"] = sums.get(f"{head}_loss", 0.0) - float(np.take_along_axis(log_probs, truth[..., None], -1).sum())
            if head == "pitch":
                sums["pitch_accuracy"] = sums.get("pitch_accuracy", 0.0) + float((log_probs.argmax(-1) == truth).sum())
        count += np.asarray(targets["pitch"][part]).size
    result = {name: value / count for name, value in sums.items()}
    result["loss"] = sum(weights[head] * result[f"{head}_loss"] for head in weights)
    return result
