"""Training of the PINN and the baseline from a grouped view, in memory or streamed.

:func:`train` splits the groups into a training set and a held-out validation set (by seed, at
group level), builds and compiles the model from its config, and fits it on ``tf.data``
pipelines from :mod:`ptychozarr.tfdata`. Both sets go through the same reader in both paths.
Streaming reads the store chunk by chunk every epoch. The in-memory path reads it once and then
slices the arrays along the same spans in the same order, so the two paths give the model
identical batches for the same seed.

With an output path, a checkpoint (weights, optimizer state, epoch, history and the state of
the learning-rate and early-stopping callbacks) is written after every epoch into
``<out>.partial/``, an interrupted run resumes from it with ``resume=True``, and the finished
model is saved as a bundle at ``out``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.container import LazyContainer
from ptychozarr.errors import InvalidInputError, MissingKeyError, OutputExistsError
from ptychozarr.tfdata import check_readable, examples_per_group, make_dataset

if TYPE_CHECKING:
    from ptychozarr.models.factory import BuiltModel

__all__ = ["TrainingResult", "should_stream", "split_groups", "train", "uniform_outputs"]

logger = logging.getLogger(__name__)

CHECKPOINT_POINTER = "latest.json"
_STREAMED_ARRAYS = {"pinn": ("X", "relative"), "baseline": ("X", "Y_I", "Y_phi")}


@dataclass(frozen=True)
class TrainingResult:
    """Outcome of :func:`train`: the trained model, its history and where it was saved.

    Attributes
    ----------
    model
        The trained network (training and inference Keras models).
    model_config
        The config the model was built with (``max_offset_px`` may have been raised to fit the
        data).
    history
        Per-epoch metrics over the whole run, resumed epochs included (name -> list of floats).
    streaming
        Whether the data were streamed from the store.
    initial_epoch
        Epochs already done when this call started (0 unless resumed).
    bundle_path
        The saved bundle, or ``None`` without an output path.
    """

    model: BuiltModel
    model_config: ModelConfig
    history: dict[str, list[float]]
    streaming: bool
    initial_epoch: int
    bundle_path: Path | None


def split_groups(n_groups: int, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split group positions ``0 .. n_groups - 1`` into training and validation sets.

    The validation set has ``round(fraction * n_groups)`` groups drawn at random with ``seed``,
    at least one when ``fraction > 0`` and there are two groups or more. Both sets are sorted.

    Returns
    -------
    tuple of numpy.ndarray
        ``(training, validation)`` int64 positions.
    """
    n_validation = round(fraction * n_groups)
    if fraction > 0 and n_groups > 1:
        n_validation = min(max(n_validation, 1), n_groups - 1)
    order = np.random.default_rng(seed).permutation(n_groups)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def should_stream(container: LazyContainer, kind: str, config: TrainingConfig) -> bool:
    """Whether ``container`` is large enough that training should stream it from the store.

    True when the number of groups exceeds ``config.streaming_threshold_groups`` or the arrays
    the model reads exceed ``config.streaming_threshold_bytes``.
    """
    nbytes = container.row_nbytes(_STREAMED_ARRAYS[kind]) * len(container)
    return (len(container) > config.streaming_threshold_groups
            or nbytes > config.streaming_threshold_bytes)


def _check_data(container: LazyContainer, config: ModelConfig) -> ModelConfig:
    """Check that the model fits the data and size the PINN's merge canvas from it."""
    where = container.attrs.get("source_store", "the container")
    if container.n != config.n:
        raise InvalidInputError(
            f"{where}: the data have N={container.n} patterns but the model config has "
            f"n={config.n}; build the model with n={container.n}."
        )
    if container.channels != config.channels:
        raise InvalidInputError(
            f"{where}: the data are grouped with {container.channels} member(s) per group but "
            f"the model config has gridsize {config.gridsize}; use a grouped view of gridsize "
            f"{config.gridsize} or set gridsize={round(math.sqrt(container.channels))}."
        )
    if config.kind == "baseline" and not container.has_ground_truth:
        raise MissingKeyError(
            f"{where}: the baseline is supervised and needs ground-truth patches (Y_I, Y_phi), "
            "which this grouped view lacks. Train a PINN, or group a store that has an object."
        )
    data_offset = float(container.attrs.get("max_offset_px", 0.0))
    if config.kind == "pinn" and config.gridsize > 1 and config.max_offset_px < data_offset:
        logger.info("Sizing the merge canvas for members up to %.2f px from their centroid",
                    data_offset)
        return dataclasses.replace(config, max_offset_px=data_offset)
    return config


def _build(config: ModelConfig, training: TrainingConfig, *, probe: np.ndarray | None,
           intensity_scale: float) -> BuiltModel:
    from ptychozarr.models.factory import build_model, compile_model

    built = build_model(config, probe=probe if config.kind == "pinn" else None,
                        intensity_scale=intensity_scale, seed=training.seed)
    compile_model(built, learning_rate=training.learning_rate)
    return built


# Checkpoints ----------------------------------------------------------------------------------


class _Checkpoints:
    """Per-epoch checkpoints in a folder: one subfolder per epoch and a pointer to the latest."""

    def __init__(self, folder: Path, identity: Mapping[str, Any]) -> None:
        self.folder = folder
        self.identity = dict(identity)

    def latest(self) -> dict[str, Any] | None:
        """Return the state of the latest checkpoint, or ``None`` when there is none."""
        pointer = self.folder / CHECKPOINT_POINTER
        if not pointer.exists():
            return None
        state = dict(json.loads(pointer.read_text()))
        state["path"] = str(self.folder / state["folder"])
        return state

    def save(self, model: Any, state: Mapping[str, Any]) -> None:
        """Write weights, optimizer variables and ``state``, then move the pointer to them."""
        name = f"epoch-{int(state['epoch']):05d}-{uuid.uuid4().hex[:8]}"
        target = self.folder / name
        target.mkdir(parents=True)
        # The weights file of a compiled model also contains the optimizer's variables.
        model.save_weights(target / "model.weights.h5")

        pointer = self.folder / CHECKPOINT_POINTER
        previous = self.latest()
        temporary = pointer.with_suffix(".tmp")
        temporary.write_text(json.dumps({**state, "folder": name, "identity": self.identity}))
        os.replace(temporary, pointer)
        if previous is not None:
            shutil.rmtree(previous["path"], ignore_errors=True)

    def restore(self, model: Any, state: Mapping[str, Any]) -> None:
        """Load the weights and optimizer variables of checkpoint ``state`` into ``model``."""
        # The optimizer must exist before loading, or Keras skips its saved variables.
        model.optimizer.build(model.trainable_variables)
        model.load_weights(Path(state["path"]) / "model.weights.h5")
        if int(np.asarray(model.optimizer.iterations)) == 0:
            raise InvalidInputError(
                f"{state['path']}: the checkpoint has no optimizer state, so it cannot be "
                "resumed exactly. Start again with overwrite=True (CLI: --overwrite)."
            )


def _callbacks_module() -> Any:
    import keras

    return keras.callbacks


def _make_callbacks(config: TrainingConfig, *, has_validation: bool) -> tuple[Any, Any]:
    """Return the reference's learning-rate schedule and early stopping."""
    callbacks = _callbacks_module()
    schedule = callbacks.ReduceLROnPlateau(
        monitor="val_loss" if has_validation else "loss", factor=config.lr_factor,
        patience=config.lr_patience, min_lr=config.lr_min)
    stopping = callbacks.EarlyStopping(monitor="loss", patience=config.early_stopping_patience)
    return schedule, stopping


_SCHEDULE_STATE = ("wait", "best", "cooldown_counter")
_STOPPING_STATE = ("wait", "best", "stopped_epoch")


def _callback_state(callback: Any, names: Sequence[str]) -> dict[str, Any]:
    """Return the counters (int) and best monitored value (float or None) of a callback."""
    state: dict[str, Any] = {}
    for name in names:
        value = getattr(callback, name)
        if value is None:
            state[name] = None
        elif name == "best":
            state[name] = float(value)
        else:
            state[name] = int(value)
    return state


class _EpochRecorder:
    """Callback factory: history, checkpoints, per-epoch log lines and resumed callback state."""

    def __init__(self, *, epochs: int, history: dict[str, list[float]],
                 checkpoints: _Checkpoints | None, schedule: Any, stopping: Any,
                 restored: Mapping[str, Any] | None) -> None:
        self.epochs = epochs
        self.history = history
        self.checkpoints = checkpoints
        self.schedule = schedule
        self.stopping = stopping
        self.restored = restored
        self.stopped = False
        self.epoch_started = 0.0

    def callback(self) -> Any:
        """Return the Keras callback; it must run after the schedule and early stopping."""
        recorder = self
        callbacks = _callbacks_module()

        class Recorder(callbacks.Callback):  # type: ignore[name-defined]
            def on_train_begin(self, logs: Any = None) -> None:
                recorder.restore_callback_state()

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                recorder.epoch_started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                recorder.record(self.model, epoch, dict(logs or {}))

        return Recorder()

    def restore_callback_state(self) -> None:
        # Keras resets both callbacks when training begins, so their state is put back here.
        if self.restored is None:
            return
        for callback, key in ((self.schedule, "schedule"), (self.stopping, "stopping")):
            for name, value in self.restored.get(key, {}).items():
                setattr(callback, name, value)

    def record(self, model: Any, epoch: int, logs: dict[str, Any]) -> None:
        logs.setdefault("learning_rate", float(np.asarray(model.optimizer.learning_rate)))
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))
        self.stopped = bool(model.stop_training)
        elapsed = time.perf_counter() - self.epoch_started
        metrics = " ".join(f"{name}={float(value):.5g}" for name, value in sorted(logs.items()))
        logger.info("Epoch %d/%d: %s (%.1f s)", epoch + 1, self.epochs, metrics, elapsed)
        if self.checkpoints is None:
            return
        state = {"epoch": epoch + 1, "history": self.history, "stopped": self.stopped,
                 "schedule": _callback_state(self.schedule, _SCHEDULE_STATE),
                 "stopping": _callback_state(self.stopping, _STOPPING_STATE)}
        self.checkpoints.save(model, state)


# Training -------------------------------------------------------------------------------------


def _partial_folder(out: Path, *, resume: bool, overwrite: bool) -> Path:
    """Prepare ``<out>.partial`` for checkpoints, keeping it only when resuming."""
    partial = out.with_name(out.name + ".partial")
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: output already exists. Pass overwrite=True (CLI: --overwrite) to replace "
            "it, or choose another path."
        )
    if partial.exists() and not resume:
        if not overwrite:
            raise OutputExistsError(
                f"{partial}: an interrupted training run is present. Pass resume=True "
                "(CLI: --resume) to continue it, or overwrite=True (CLI: --overwrite) to start "
                "again."
            )
        shutil.rmtree(partial)
    # The folder appears with the first checkpoint, so a run that fails before it leaves none.
    return partial


def _identity(container: LazyContainer, config: ModelConfig,
              training: TrainingConfig) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (the number of epochs may change)."""
    return {"source_store": str(container.attrs.get("source_store")),
            "group": container.attrs.get("group_name"), "n_groups": len(container),
            "model_config": config.to_dict(),
            "training_config": {**training.to_dict(), "epochs": None}}


def _resume_state(checkpoints: _Checkpoints, *, resume: bool) -> dict[str, Any] | None:
    state = checkpoints.latest() if resume else None
    if state is None:
        if resume:
            logger.info("No checkpoint in %s; starting from epoch 0", checkpoints.folder)
        return None
    if state.get("identity") != checkpoints.identity:
        raise InvalidInputError(
            f"{checkpoints.folder}: the checkpoint was written for other data or settings "
            f"({state.get('identity')!r}), so it cannot be resumed with "
            f"{checkpoints.identity!r}. Pass overwrite=True (CLI: --overwrite) to start again."
        )
    return state


def _datasets(train_set: LazyContainer, validation_set: LazyContainer, kind: Any,
              config: TrainingConfig, *, streaming: bool, first_epoch: int) -> tuple[Any, Any]:
    training = make_dataset(train_set, config.batch_size, model=kind, shuffle=True,
                            seed=config.seed, shuffle_buffer_groups=config.shuffle_buffer_groups,
                            first_epoch=first_epoch, preload=not streaming)
    if len(validation_set) == 0:
        return training, None
    validation = make_dataset(validation_set, config.batch_size, model=kind, shuffle=False,
                              preload=not streaming)
    return training, validation


def _grouping(container: LazyContainer) -> dict[str, Any]:
    return {key: value for key, value in container.attrs.items() if key != "ptychozarr"}


def train(container: LazyContainer, model_config: ModelConfig,
          training_config: TrainingConfig, *, out: str | os.PathLike[str] | None = None,
          use_streaming: bool | None = None, resume: bool = False, overwrite: bool = False,
          callbacks: Sequence[Any] = (), probe: np.ndarray | None = None) -> TrainingResult:
    """Train ``model_config``'s network on the groups of ``container``.

    Parameters
    ----------
    container
        Grouped data (:meth:`LazyContainer.open` or :meth:`LazyContainer.from_arrays`). The
        PINN needs the probe; the baseline needs ground truth (``Y_I``, ``Y_phi``).
    model_config
        Network settings; ``n`` and ``gridsize`` must match the data. For a PINN of gridsize 2,
        ``max_offset_px`` is raised to the data's ``max_offset_px`` attribute when smaller.
    training_config
        Epochs, batch size, learning rate, validation fraction, seed, shuffle buffer, streaming
        thresholds, schedule and early stopping.
    out
        Bundle directory to write. Checkpoints go to ``<out>.partial/`` after every epoch and
        are removed once the bundle is saved. ``None`` trains without checkpoints or bundle.
    use_streaming
        ``True`` streams from the store every epoch, ``False`` reads the data into memory once,
        ``None`` streams when :func:`should_stream` returns true.
    resume
        Continue from the latest checkpoint in ``<out>.partial/``; start from epoch 0 when
        there is none.
    overwrite
        Replace an existing bundle at ``out`` and discard an interrupted run.
    callbacks
        Extra Keras callbacks (for example a progress bar).
    probe
        (N, N) complex probe that replaces the store's for a PINN, for example one refined by
        :func:`ptychozarr.probe_refinement.refine_probe`. The bundle records the probe used.

    Returns
    -------
    TrainingResult

    Raises
    ------
    InvalidInputError
        The model does not fit the data, or a checkpoint to resume belongs to other settings.
    MissingKeyError
        A baseline is trained on a view without ground truth, or a PINN on a store without probe.
    OutputExistsError
        ``out`` or an interrupted run exists and neither ``overwrite`` nor ``resume`` is set.
    """
    config = _check_data(container, model_config)
    kind = config.kind
    train_rows, validation_rows = split_groups(len(container), training_config.validation_fraction,
                                               seed=training_config.seed)
    train_set, validation_set = container.select(train_rows), container.select(validation_rows)
    streaming = (should_stream(train_set, kind, training_config) if use_streaming is None
                 else bool(use_streaming))

    checkpoints = None
    restored = None
    if out is not None:
        partial = _partial_folder(Path(out), resume=resume, overwrite=overwrite)
        checkpoints = _Checkpoints(partial, _identity(container, config, training_config))
        restored = _resume_state(checkpoints, resume=resume)

    if probe is None and kind == "pinn":
        probe = container.probe_numpy()
    built = _build(config, training_config, probe=probe, intensity_scale=container.norm_Y_I)
    initial_epoch = 0 if restored is None else int(restored["epoch"])
    history: dict[str, list[float]] = {} if restored is None else {
        name: list(values) for name, values in restored["history"].items()}
    if restored is not None and checkpoints is not None:
        checkpoints.restore(built.training, restored)
        logger.info("Resuming from the checkpoint of epoch %d", initial_epoch)

    logger.info("Training a %s on %d groups (%d examples), validating on %d; %s", kind,
                len(train_set), len(train_set) * examples_per_group(kind, container.channels),
                len(validation_set), "streaming from the store" if streaming else "in memory")
    finished = restored is not None and (bool(restored.get("stopped"))
                                         or initial_epoch >= training_config.epochs)
    if not finished:
        history = _fit(built, train_set, validation_set, training_config, streaming=streaming,
                       initial_epoch=initial_epoch, history=history, checkpoints=checkpoints,
                       restored=restored, callbacks=callbacks)
    _warn_if_uniform(built, train_set, training_config)

    bundle_path = None
    if out is not None:
        bundle_path = _save(Path(out), built, container, config, training_config, history,
                            probe=probe if probe is not None else _optional_probe(container),
                            overwrite=overwrite)
    return TrainingResult(built, config, history, streaming, initial_epoch, bundle_path)


def _fit(built: BuiltModel, train_set: LazyContainer, validation_set: LazyContainer,
         config: TrainingConfig, *, streaming: bool, initial_epoch: int,
         history: dict[str, list[float]], checkpoints: _Checkpoints | None,
         restored: Mapping[str, Any] | None, callbacks: Sequence[Any]) -> dict[str, list[float]]:
    kind = built.config.kind
    training_data, validation_data = _datasets(train_set, validation_set, kind, config,
                                               streaming=streaming, first_epoch=initial_epoch)
    schedule, stopping = _make_callbacks(config, has_validation=validation_data is not None)
    recorder = _EpochRecorder(epochs=config.epochs, history=history, checkpoints=checkpoints,
                              schedule=schedule, stopping=stopping, restored=restored)
    import tensorflow as tf

    try:
        built.training.fit(training_data, validation_data=validation_data,
                           epochs=config.epochs, initial_epoch=initial_epoch, shuffle=False,
                           verbose=0, callbacks=[schedule, stopping, recorder.callback(),
                                                 *callbacks])
    except tf.errors.OpError:
        # An error raised while tf.data reads the store (a corrupted chunk, NaN values) arrives
        # wrapped in a TensorFlow error. Reading the data again outside TensorFlow raises it
        # as itself, and any other error is re-raised unchanged.
        for data in (train_set, validation_set):
            check_readable(data, model=kind)
        raise
    return recorder.history


def _save(out: Path, built: BuiltModel, container: LazyContainer, config: ModelConfig,
          training: TrainingConfig, history: dict[str, list[float]], *,
          probe: np.ndarray | None, overwrite: bool) -> Path:
    from ptychozarr.models.bundle import save_bundle

    path = save_bundle(out, built, model_config=config, training_config=training,
                       history=history, alpha=float(container.attrs.get("alpha", 1.0)),
                       intensity_scale=container.norm_Y_I, probe=probe,
                       grouping=_grouping(container),
                       source_store=str(container.attrs.get("source_store", "")),
                       overwrite=overwrite)
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    return path


_UNIFORM_CHECK_GROUPS = 64
"""Training groups predicted after training to check that the outputs still vary."""

UNIFORM_RANGE = 1e-4
"""Largest range, relative to the magnitude, of an output that counts as one value."""


def _output_images(built: BuiltModel, block: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the amplitude and phase images the trained model predicts for ``block``."""
    from ptychozarr.models import flatten_members

    if built.config.kind == "baseline":
        amplitude, phase = built.inference.predict_on_batch(flatten_members(block["X"]))
        return {"amplitude": np.asarray(amplitude), "phase": np.asarray(phase)}
    obj = np.asarray(built.inference.predict_on_batch(
        [block["X"] * np.float32(built.intensity_scale), block["relative"].astype(np.float32)]))
    return {"amplitude": np.abs(obj), "phase": np.angle(obj)}


def uniform_outputs(built: BuiltModel, container: LazyContainer) -> dict[str, float]:
    """Return the model's outputs that have one value on the first groups of ``container``.

    Such an output carries no image. It arises when every unit feeding it has stopped
    responding (ReLU units switched off by large early optimizer steps), when its activation has
    saturated, or when a baseline has not yet trained long enough.

    Returns
    -------
    dict
        Output name (``"amplitude"``, ``"phase"``) -> its single value, for each output whose
        range over the first 64 groups is at most 1e-4 of its magnitude (or 1e-4 absolute).
        A network that responds to its input varies far more than that.
    """
    rows = np.arange(min(len(container), _UNIFORM_CHECK_GROUPS))
    block = container.select(rows).read_all(["X", "relative"])
    uniform = {}
    for name, values in _output_images(built, block).items():
        if np.ptp(values) <= UNIFORM_RANGE * max(1.0, float(np.abs(values).max())):
            uniform[name] = float(values.flat[0])
    return uniform


def _uniform_advice(name: str, value: float, config: ModelConfig,
                    training: TrainingConfig) -> str:
    """Return the settings to change when output ``name`` came out as the single ``value``."""
    if config.kind == "baseline":
        return "Train for more epochs."
    steps = []
    if name == "phase" and config.phase_activation == "pi_tanh" and abs(value) > 3.0:
        steps.append("--phase-activation linear, which cannot saturate at ±π")
    if config.hidden_activation == "relu":
        steps.append("--hidden-activation leaky_relu, whose units cannot switch off for good")
    steps.append(f"a learning rate below {training.learning_rate:g} (--learning-rate; 3e-4 "
                 "worked on the documented random-lines run)")
    return "Train again with " + "; ".join(steps) + "."


def _warn_if_uniform(built: BuiltModel, container: LazyContainer,
                     training: TrainingConfig) -> None:
    label = "PINN" if built.config.kind == "pinn" else "baseline"
    for name, value in uniform_outputs(built, container).items():
        logger.warning(
            "The trained %s predicts the same %s (%.4g) for every pixel of the first %d "
            "training groups, so that output carries no image: the units that feed it no longer "
            "respond, or its activation has saturated. %s",
            label, name, value, min(len(container), _UNIFORM_CHECK_GROUPS),
            _uniform_advice(name, value, built.config, training))


def _optional_probe(container: LazyContainer) -> np.ndarray | None:
    try:
        return container.probe_numpy()
    except MissingKeyError:
        return None
