"""Training: random windows -> tf.data -> Keras fit, with a checkpoint every epoch (`cadenza train`).

A run folder holds config.json, log.csv (one row per epoch), last.keras (resume point),
best.keras (lowest validation loss) and state.json (epoch, best loss, patience, clock).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.config import FIELD_ORDER, PRESETS, ModelConfig
from models.errors import CadenzaError
from training.distributed import configure_strategy, train_across_workers, worker_index
from training.prepare import load_split
from training.windows import WindowSampler, add_chord_tops


@dataclass
class TrainSettings:
    """How long and how to train; the network's shape lives in ModelConfig."""

    data: Path
    out: Path
    epochs: int = 60
    steps_per_epoch: int = 400
    validation_windows: int = 1024
    patience: int = 6
    max_minutes: float | None = None
    seed: int = 0
    strategy: str = "none"
    resume: bool = False
    init_from: Path | None = None  # an exported model to start from (training/warm_start.py)
    restart_rate: float | None = None  # a resume anneals from this rate instead of the one reached (warm restart)
    own_notes: float = 0.0  # share of the history replaced by the network's own draws (see mix_in_own_notes)


def _dataset(sampler: WindowSampler, batch_size: int, seed: int):
    import tensorflow as tf

    # Across machines (--strategy multiworker) every worker draws windows of its own: a seed per
    # worker. Windows come from a generator, not files, so tf.data must not shard them.
    index, workers = worker_index()
    seed = seed + 7919 * index

    example = sampler.batch(2, np.random.default_rng(0))

    def spec(value):
        if isinstance(value, dict):
            return {k: spec(v) for k, v in value.items()}
        return tf.TensorSpec((None,) + value.shape[1:], tf.as_dtype(value.dtype))

    passes = itertools.count()

    def generate():
        # A fresh generator per pass over the dataset, each with its own seed: fresh windows every
        # epoch, and the same ones again for the same --seed (a resume passes seed + epoch).
        rng = np.random.default_rng([seed, next(passes)])
        batch = sampler.batch(batch_size, rng)
        if workers > 1:  # a worker says what it draws, so a cluster's logs show the workers differ
            digest = hashlib.sha256(batch[0]["pitch"].tobytes()).hexdigest()[:12]
            print(f"worker {index} of {workers}: first windows {digest}", flush=True)
        while True:
            yield batch
            batch = sampler.batch(batch_size, rng)

    signature = (spec(example[0]), spec(example[1]))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(4)
    if workers > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset


def _validation_arrays(sampler: WindowSampler, count: int, batch_size: int):
    """Fixed windows (same every epoch and every resume) so validation losses compare.

    No controls are given: the validation loss is then the joint NLL of free play, the headline figure.
    """
    rng = np.random.default_rng(12345)
    batches = [sampler.batch(batch_size, rng, augment=False, dropout=1.0) for _ in range(max(1, count // batch_size))]
    inputs = _concat([b[0] for b in batches])
    targets = _concat([b[1] for b in batches])
    return inputs, targets


def _concat(items):
    if isinstance(items[0], dict):
        return {k: np.concatenate([i[k] for i in items]) for k in items[0]}
    return np.concatenate(items)


@functools.cache
def _schedule_class():
    import keras

    @keras.saving.register_keras_serializable(package="cadenza")
    class ResumedCosine(keras.optimizers.schedules.LearningRateSchedule):
        """Cosine from the rate a resumed run had reached down to its floor, over the steps now left.

        Used when a resume changes --epochs: the original CosineDecay would jump (or stop short),
        while this one anneals smoothly to the same floor at the new end.
        """

        def __init__(self, start_rate, start_step, end_step, floor_rate):
            self.start_rate, self.start_step = float(start_rate), int(start_step)
            self.end_step, self.floor_rate = int(end_step), float(floor_rate)

        def __call__(self, step):
            import keras.ops as ops

            span = max(self.end_step - self.start_step, 1)
            done = ops.clip((ops.cast(step, "float32") - self.start_step) / span, 0.0, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(np.pi * done))
            return self.floor_rate + (self.start_rate - self.floor_rate) * cosine

        def get_config(self):
            return {"start_rate": self.start_rate, "start_step": self.start_step,
                    "end_step": self.end_step, "floor_rate": self.floor_rate}

    return ResumedCosine


def _reschedule(model, config: ModelConfig, total_steps: int, restart_rate: float | None = None) -> None:
    """A resume that moves the run's end gets a schedule that ends there (from the current rate).

    With restart_rate the cosine starts again from that rate (a warm restart: a run that had
    annealed to its floor learns again, without losing its weights or optimizer moments).
    """
    import keras

    optimizer = model.optimizer
    schedule = optimizer._learning_rate
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return
    end_step = getattr(schedule, "end_step", None) or getattr(schedule, "decay_steps", None)
    if end_step == total_steps and restart_rate is None:
        return
    step = int(optimizer.iterations.numpy())
    rate = restart_rate or float(keras.ops.convert_to_numpy(schedule(step)))
    floor = (restart_rate or config.learning_rate) * 0.05
    optimizer._learning_rate = _schedule_class()(rate, step, total_steps, min(floor, rate))
    print(f"learning rate: {rate:.5f} at step {step}, annealing to {min(floor, rate):.5f} at step {total_steps}",
          flush=True)


def _build(config: ModelConfig, total_steps: int):
    import keras

    from models.network import build_model, build_seed_model, compile_model

    if config.preset == "seed":
        return build_seed_model(config)
    model = build_model(config)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps, alpha=0.05)
    compile_model(model, replace(config, learning_rate=schedule))
    return model


def _save_atomically(model, path: Path) -> None:
    temporary = path.with_name(path.stem + ".partial.keras")
    model.save(temporary)
    os.replace(temporary, path)


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


def make_epoch_callback(run: Path, state: dict, settings: TrainSettings, predictions_per_epoch: int):
    """Checkpoint, log, early stopping and the time budget, at the end of every epoch."""
    import keras

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.started
            state["epoch"] = epoch + 1
            state["train_seconds"] += seconds
            state["predictions_seen"] += predictions_per_epoch
            _save_atomically(self.model, run / "last.keras")
            val_loss = float(logs["val_loss"])
            if val_loss < state["best_val_loss"]:
                state["best_val_loss"], state["best_epoch"], state["wait"] = val_loss, epoch + 1, 0
                _save_atomically(self.model, run / "best.keras")
            else:
                state["wait"] += 1
            row = {"epoch": epoch + 1, "predictions_seen": state["predictions_seen"],
                   "seconds": round(state["train_seconds"], 1),
                   "predictions_per_second": round(predictions_per_epoch / seconds, 1),
                   **{k: round(float(v), 5) for k, v in logs.items() if k != "learning_rate"}}
            _append_log(run / "log.csv", row)
            _write_json(run / "state.json", state)
            out_of_time = settings.max_minutes and state["train_seconds"] > settings.max_minutes * 60
            if state["wait"] >= settings.patience or out_of_time:
                state["stopped_because"] = "early stopping" if not out_of_time else "time budget"
                _write_json(run / "state.json", state)
                self.model.stop_training = True

    return EpochEnd()


def _append_log(path: Path, row: dict) -> None:
    exists = path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if not exists:
            writer.writeheader()
        writer.writerow(row)


def _start_or_resume(settings: TrainSettings, config: ModelConfig) -> tuple[ModelConfig, dict]:
    run = settings.out
    state_path = run / "state.json"
    if settings.resume:
        if not state_path.exists() or not (run / "last.keras").exists():
            raise CadenzaError(f"nothing to resume in {run} (no state.json / last.keras)")
        saved = json.loads((run / "config.json").read_text())
        return ModelConfig.from_dict(saved["model"]), json.loads(state_path.read_text())
    if state_path.exists():
        raise CadenzaError(f"{run} already holds a run; add --resume to continue it or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    _write_json(run / "config.json", {"model": config.to_dict(), "settings": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()}})
    state = {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0,
             "train_seconds": 0.0, "predictions_seen": 0}
    return config, state


def train(settings: TrainSettings, config: ModelConfig) -> dict:
    """Train (or resume) a run; returns the final state."""
    import keras

    config, state = _start_or_resume(settings, config)
    if state.get("stopped_because") and not _may_continue(state, settings):
        return state
    state.pop("stopped_because", None)
    keras.utils.set_random_seed(settings.seed + state["epoch"])
    train_sampler = WindowSampler(load_split(settings.data, "train"), config)
    validation_sampler = WindowSampler(load_split(settings.data, "validation"), config)
    strategy = configure_strategy(settings.strategy)
    state["replicas"] = strategy.num_replicas_in_sync
    with strategy.scope():
        if settings.resume:
            model = keras.models.load_model(settings.out / "last.keras", compile=True, safe_mode=False,
                                            custom_objects=_custom_objects())
            _reschedule(model, config, settings.epochs * settings.steps_per_epoch, settings.restart_rate)
        else:
            model = _build(config, settings.epochs * settings.steps_per_epoch)
            if settings.init_from:
                from training.warm_start import load_exported_weights

                load_exported_weights(model, config, settings.init_from)
    validation = _validation_arrays(validation_sampler, settings.validation_windows, config.batch_size)
    predictions_per_epoch = settings.steps_per_epoch * train_sampler.predictions_per_batch(config.batch_size)
    callback = make_epoch_callback(settings.out, state, settings, predictions_per_epoch)
    if settings.strategy == "none":
        _train_on_batches(model, train_sampler, settings, config, state, validation, callback)
        return state
    if settings.strategy == "multiworker":
        dataset = _dataset(train_sampler, config.batch_size, settings.seed + state["epoch"])
        train_across_workers(model, strategy, dataset, settings, config, validation, callback, state["epoch"])
        return state
    dataset = _dataset(train_sampler, config.batch_size, settings.seed + state["epoch"])
    model.fit(
        dataset,
        epochs=settings.epochs,
        initial_epoch=state["epoch"],
        steps_per_epoch=settings.steps_per_epoch,
        validation_data=validation,
        validation_batch_size=config.batch_size * 4,
        callbacks=[callback],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return state


def _train_on_batches(model, sampler: WindowSampler, settings: TrainSettings, config: ModelConfig, state: dict,
                      validation, callback) -> None:
    """The epochs one step at a time (train_on_batch), with windows drawn on a thread ahead of the model.

    Measured on this project's 2-core machine, model.fit over tf.data.from_generator sustained
    5,000-6,000 predicted notes/s on the default network where this loop reaches 11,000-12,700:
    fit's per-step machinery costs more than the step. (Distributed strategies still use fit.)
    """
    batches: queue.Queue = queue.Queue(maxsize=4)
    done = threading.Event()

    def produce():
        rng = np.random.default_rng([settings.seed, state["epoch"]])  # a resume draws fresh windows
        while not done.is_set():
            batch = sampler.batch(config.batch_size, rng)
            while not done.is_set():
                try:
                    batches.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue

    threading.Thread(target=produce, name="windows", daemon=True).start()
    mixing_rng = np.random.default_rng([settings.seed, state["epoch"], 1])
    callback.set_model(model)
    inputs, targets = validation
    try:
        for epoch in range(state["epoch"], settings.epochs):
            callback.on_epoch_begin(epoch)
            model.reset_metrics()  # train_on_batch's metrics then average over the epoch
            for _ in range(settings.steps_per_epoch):
                batch_inputs, batch_targets = batches.get()
                if settings.own_notes > 0:
                    batch_inputs = mix_in_own_notes(model, batch_inputs, settings.own_notes, mixing_rng, sampler)
                logs = model.train_on_batch(batch_inputs, batch_targets, return_dict=True)
            logs = {name: float(value) for name, value in logs.items()}
            validated = model.evaluate(inputs, targets, batch_size=config.batch_size * 4, verbose=0, return_dict=True)
            logs |= {f"val_{name}": float(value) for name, value in validated.items()}
            logs = dict(sorted(logs.items()))  # the column order model.fit writes
            print(f"epoch {epoch + 1}/{settings.epochs}: " + " - ".join(f"{k} {v:.4f}" for k, v in logs.items()),
                  flush=True)
            callback.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:
        done.set()


def mix_in_own_notes(model, inputs: dict, rate: float, rng: np.random.Generator, sampler: WindowSampler) -> dict:
    """The history with a share `rate` of its notes replaced by the network's own (parallel
    scheduled sampling): free-running, the network hears its own notes, never MAESTRO's, and
    teacher forcing alone never showed it one. Each replaced note is what the network drew for that
    position, one forward pass over the true history (each field from its head, given the true
    earlier fields). The targets and the true earlier fields of the note predicted stay.
    Costs a forward pass: about a third of a step."""
    logits = model.predict_on_batch(inputs)
    mixed = dict(inputs)
    batch, length = inputs["pitch"].shape
    own = rng.random((batch, length)) < rate
    own[:, 0] = False  # position t holds the note predicted at t - 1
    for name in FIELD_ORDER:
        field_logits = np.asarray(logits[name], np.float64)[:, :-1]
        gumbel = -np.log(-np.log(rng.random(field_logits.shape)))
        drawn = np.argmax(field_logits + gumbel, axis=-1).astype(inputs[name].dtype)
        mixed[name] = inputs[name].copy()
        mixed[name][:, 1:] = np.where(own[:, 1:], drawn, inputs[name][:, 1:])
    return add_chord_tops(mixed, sampler.config, sampler.bins)  # where the line is, in the history as mixed


def _may_continue(state: dict, settings: TrainSettings) -> bool:
    """A stopped run goes on when the resume lifts what stopped it (more minutes, more patience)."""
    if state["epoch"] >= settings.epochs:
        return False
    if state["stopped_because"] == "time budget":
        return not settings.max_minutes or state["train_seconds"] < settings.max_minutes * 60
    return state["wait"] < settings.patience


def _custom_objects() -> dict:
    from models.network import positive_pressure_mse

    return {"positive_pressure_mse": positive_pressure_mse, "ResumedCosine": _schedule_class()}


def preset_config(preset: str, **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise CadenzaError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
