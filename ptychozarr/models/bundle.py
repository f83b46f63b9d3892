"""Loaded model bundles: :class:`ModelBundle`, which predicts object patches, and its loader.

Loading never unpickles: ``model.keras`` is opened with ``safe_mode=True`` (every custom layer is
a registered serialisable, none is a Lambda) and ``probe.npy`` with ``allow_pickle=False``.

The directory format (:mod:`ptychozarr.models.bundle_format`) and saving
(:mod:`ptychozarr.models.bundle_save`) live in their own modules. Their public names are
re-exported here, so ``ptychozarr.models.bundle`` offers the whole bundle API.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.errors import BundleError, InvalidInputError
from ptychozarr.models.bundle_format import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    PROBE_FILE,
    read_configs,
    read_manifest,
)
from ptychozarr.models.bundle_save import save_bundle, save_untrained_bundle

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PROBE_FILE",
    "ModelBundle",
    "load_bundle",
    "read_manifest",
    "save_bundle",
    "save_untrained_bundle",
]

logger = logging.getLogger(__name__)


# The loaded bundle ---------------------------------------------------------------------------


class ModelBundle:
    """A loaded model bundle, ready to predict.

    Attributes
    ----------
    path
        The bundle directory.
    model_config, training_config
        The settings the model was built and trained with.
    manifest
        The parsed ``manifest.json``.
    alpha
        Input normalisation of the training set (X = alpha * amplitude).
    intensity_scale
        Photon scale s the model applies (for a PINN, its own possibly trained value).
    probe
        (N, N) complex64 probe, or ``None`` for a baseline saved without one.
    history
        Per-epoch training metrics (name -> list of floats; ``None`` where a value was not
        finite).
    model
        The saved Keras model (PINN: the training model with all three outputs).
    inference
        The Keras model that :meth:`predict` runs.
    """

    def __init__(self, path: Path, model: Any, *, manifest: dict[str, Any],
                 model_config: ModelConfig, training_config: TrainingConfig,
                 probe: np.ndarray | None) -> None:
        from ptychozarr.models.pinn import inference_model

        self.path = path
        self.model = model
        self.manifest = manifest
        self.model_config = model_config
        self.training_config = training_config
        self.probe = probe
        self.alpha = float(manifest["alpha"])
        self.intensity_scale = float(manifest["intensity_scale"])
        self.history: dict[str, Any] = dict(manifest.get("history") or {})
        self.inference = inference_model(model) if self.kind == "pinn" else model

    @property
    def kind(self) -> str:
        """``"pinn"`` or ``"baseline"``."""
        return self.model_config.kind

    @property
    def n(self) -> int:
        """Pattern and patch side N in pixels."""
        return self.model_config.n

    @property
    def gridsize(self) -> int:
        """Group side the model was trained with."""
        return self.model_config.gridsize

    def __repr__(self) -> str:
        return (f"ModelBundle(path={str(self.path)!r}, kind={self.kind!r}, n={self.n}, "
                f"gridsize={self.gridsize})")

    def check_compatible(self, n: int, gridsize: int) -> None:
        """Raise :class:`BundleError` unless data of pattern side ``n`` and ``gridsize`` fit."""
        if n != self.n:
            raise BundleError(
                f"{self.path}: the {self.kind} model was trained on N={self.n} patterns, but the "
                f"data have N={n}. Use a bundle trained at N={n}, or convert the data to "
                f"N={self.n}."
            )
        if gridsize != self.gridsize:
            raise BundleError(
                f"{self.path}: the {self.kind} model was trained with gridsize {self.gridsize}, "
                f"but the data are grouped with gridsize {gridsize}. Group the store with "
                f"`ptychozarr group --gridsize {self.gridsize}`, or use a matching bundle."
            )

    def predict(self, x: np.ndarray, relative: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """Predict complex object patches, in batches of a fixed size.

        Parameters
        ----------
        x
            (group, N, N, C) float32 normalised diffraction amplitude (the store's ``X``).
        relative
            (group, C, 2) float64 pixels, centroid minus member ``(x, y)`` (the store's
            ``relative``).
        batch_size
            Groups (PINN) or patterns (baseline) per model call. The last batch is padded to
            this size, so the model runs on a single input shape.

        Returns
        -------
        numpy.ndarray
            PINN: (group, N, N) complex64, one patch per group, centred on the group centroid.
            Baseline: (group * C, N, N) complex64, one patch per member (group-major,
            channel-minor), centred on the member's position.
        """
        x, relative = self._checked_inputs(x, relative)
        if batch_size < 1:
            raise InvalidInputError(f"batch_size: invalid value {batch_size!r}; use at least 1.")
        if self.kind == "baseline":
            flat = np.moveaxis(x, -1, 1).reshape(-1, self.n, self.n, 1)
            amplitude, phase = self._run_batches((flat,), batch_size, outputs=2)
            return (amplitude * np.exp(1j * phase)).astype(np.complex64)

        self._warn_beyond_canvas(relative)
        scaled = x * np.float32(self._model_scale())
        (patches,) = self._run_batches((scaled, relative.astype(np.float32)), batch_size,
                                       outputs=1)
        return patches.astype(np.complex64)

    def _checked_inputs(self, x: Any, relative: Any) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        relative = np.asarray(relative, dtype=np.float64)
        channels = self.model_config.channels
        expected_x = (self.n, self.n, channels)
        if x.ndim != 4 or x.shape[1:] != expected_x:
            raise InvalidInputError(
                f"x: shape {x.shape!r} does not fit the bundle {self.path}, which expects "
                f"(group, {self.n}, {self.n}, {channels}). Check N and gridsize with "
                "check_compatible."
            )
        if relative.shape != (x.shape[0], channels, 2):
            raise InvalidInputError(
                f"relative: shape {relative.shape!r} does not match x {x.shape!r}; expected "
                f"({x.shape[0]}, {channels}, 2)."
            )
        return x, relative

    def _model_scale(self) -> float:
        log_scale = self.model.get_layer("photon_scale").log_scale
        return math.exp(float(np.asarray(log_scale)))

    def _warn_beyond_canvas(self, relative: np.ndarray) -> None:
        if self.gridsize == 1 or relative.size == 0:
            return
        largest = float(np.abs(relative).max())
        if largest > self.model_config.max_offset_px + 1:
            logger.warning(
                "%s: group members lie up to %.1f px (along x or y) from their centroid, beyond "
                "the %.1f px the model's merge canvas was sized for; their far parts are cut off.",
                self.path, largest, self.model_config.max_offset_px,
            )

    def _run_batches(self, inputs: tuple[np.ndarray, ...], batch_size: int, *,
                     outputs: int) -> list[np.ndarray]:
        """Run the inference model over ``inputs`` and return its outputs without channel axis."""
        total = inputs[0].shape[0]
        dtype = np.float32 if self.kind == "baseline" else np.complex64
        results = [np.empty((total, self.n, self.n), dtype) for _ in range(outputs)]
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            batch = [_padded(array[start:stop], batch_size) for array in inputs]
            predicted = self.inference.predict_on_batch(batch if len(batch) > 1 else batch[0])
            predicted = predicted if isinstance(predicted, list | tuple) else [predicted]
            for result, values in zip(results, predicted, strict=True):
                result[start:stop] = np.asarray(values)[: stop - start, ..., 0]
        return results


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    """Pad ``array`` with zeros along its first axis to ``size`` rows."""
    missing = size - array.shape[0]
    if missing == 0:
        return array
    padding = np.zeros((missing, *array.shape[1:]), array.dtype)
    return np.concatenate([array, padding])


# Loading -------------------------------------------------------------------------------------


def _load_keras_model(folder: Path, config: ModelConfig) -> Any:
    import keras

    # Importing the layer modules registers the custom layers that the file refers to.
    from ptychozarr.models import layers, pinn  # noqa: F401

    path = folder / MODEL_FILE
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as error:
        raise BundleError(f"{path}: cannot be loaded safely as a Keras model: {error}") from error
    channels = 1 if config.kind == "baseline" else config.channels
    expected = (config.n, config.n, channels)
    actual = tuple(model.inputs[0].shape[1:])
    if actual != expected:
        raise BundleError(f"{path}: model input shape {actual!r} disagrees with the manifest "
                          f"(expected {expected!r}); the bundle is inconsistent.")
    return model


def _load_probe(folder: Path, config: ModelConfig) -> np.ndarray | None:
    path = folder / PROBE_FILE
    if not path.exists():
        if config.kind == "pinn":
            raise BundleError(f"{path}: missing; a PINN bundle needs its probe.")
        return None
    try:
        probe = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise BundleError(f"{path}: cannot be read without pickle: {error}") from error
    if probe.shape != (config.n, config.n) or probe.dtype != np.complex64:
        raise BundleError(f"{path}: expected ({config.n}, {config.n}) complex64, found "
                          f"{probe.shape!r} {probe.dtype}.")
    return probe


def load_bundle(path: str | os.PathLike[str]) -> ModelBundle:
    """Load a model bundle, checking its manifest and file digests.

    Parameters
    ----------
    path
        Bundle directory written by :func:`save_bundle`.

    Returns
    -------
    ModelBundle

    Raises
    ------
    InputFileNotFoundError
        ``path`` does not exist.
    BundleError
        ``path`` is a PtychoPINN ``wts.h5.zip`` (pickled objects, never loaded), has no
        manifest, or its manifest or files were modified or are inconsistent.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    model_config, training_config = read_configs(folder, manifest)
    model = _load_keras_model(folder, model_config)
    probe = _load_probe(folder, model_config)
    return ModelBundle(folder, model, manifest=manifest, model_config=model_config,
                       training_config=training_config, probe=probe)

