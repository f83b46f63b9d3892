"""Model bundles: a trained network with everything needed to run it on new data.

A bundle is a directory::

    model.keras     the Keras model without optimizer state: for a PINN the training model,
                    from which the inference model is derived, for a baseline the two-head model
    probe.npy       (N, N) complex64 probe, saved without pickle; absent for a baseline trained
                    without a probe
    manifest.json   kind, N, gridsize, K, the training alpha and photon scale, the model and
                    training configs, the per-epoch history, the source store, the grouping,
                    library versions, and sha256 digests of the two files

The manifest also carries ``content_sha256``, a digest of its own other entries, so that an
edited manifest is detected. These digests catch accidental damage and hand edits. They are not
signatures: whoever can write the directory can recompute them.

Loading never unpickles: ``model.keras`` is opened with ``safe_mode=True`` (every custom layer is
a registered serialisable, none is a Lambda) and ``probe.npy`` with ``allow_pickle=False``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.errors import (
    BundleError,
    InputFileNotFoundError,
    InvalidInputError,
    OutputExistsError,
    PtychozarrError,
)

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

BUNDLE_FORMAT = "ptychozarr-model-bundle"
BUNDLE_VERSION = 1
"""Version of the bundle layout; readers reject bundles with a newer version."""

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
PROBE_FILE = "probe.npy"
_CHECKSUM_KEY = "content_sha256"
_REQUIRED_KEYS = ("format", "format_version", "kind", "n", "gridsize", "model_config",
                  "training_config", "alpha", "intensity_scale", "files", _CHECKSUM_KEY)

_REFERENCE_ARCHIVE_MESSAGE = (
    "{where}: this is a PtychoPINN reference model archive (wts.h5.zip). It holds pickled (dill) "
    "objects (manifest.dill, params.dill, custom_objects.dill), and unpickling them can run "
    "arbitrary code, so ptychozarr does not load them. Retrain the model with `ptychozarr "
    "train`, or convert the weights manually in a trusted environment: copy them layer by layer "
    "into a model from `ptychozarr.models.build_model` (the architectures differ, so this needs "
    "a mapping of layers) and save it with `ptychozarr.models.save_bundle`."
)


# Digests and JSON ----------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_sha256(manifest: Mapping[str, Any]) -> str:
    """Digest of the manifest's entries other than the digest itself, in canonical JSON."""
    content = {key: value for key, value in manifest.items() if key != _CHECKSUM_KEY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    """Convert NumPy scalars and arrays to JSON types; non-finite floats become ``None``."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from ptychozarr import __version__

    return {"ptychozarr": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


# Saving --------------------------------------------------------------------------------------


def _training_model(model: Any) -> Any:
    """Return the Keras model to save from a ``BuiltModel`` or a Keras model."""
    from ptychozarr.models.factory import BuiltModel

    return model.training if isinstance(model, BuiltModel) else model


def _check_model_matches(model: Any, config: ModelConfig) -> None:
    channels = 1 if config.kind == "baseline" else config.channels
    expected = (config.n, config.n, channels)
    actual = tuple(model.inputs[0].shape[1:])
    if actual != expected:
        raise InvalidInputError(
            f"save_bundle: the model's input shape {actual!r} does not match the model config "
            f"(kind={config.kind!r}, n={config.n}, gridsize={config.gridsize}), which needs "
            f"{expected!r}. Pass the config the model was built from."
        )


def _model_probe_and_scale(model: Any, config: ModelConfig, probe: np.ndarray | None,
                           intensity_scale: float) -> tuple[np.ndarray | None, float]:
    """Return the probe and photon scale stored in a PINN's weights, or the given ones."""
    if config.kind == "baseline":
        return probe, float(intensity_scale)
    trained_probe = model.get_layer("illumination").probe()
    log_scale = float(np.asarray(model.get_layer("photon_scale").log_scale))
    return trained_probe, math.exp(log_scale)


def _build_manifest(config: ModelConfig, training_config: TrainingConfig, *,
                    history: Mapping[str, Any], alpha: float, intensity_scale: float,
                    model_intensity_scale: float, grouping: Mapping[str, Any],
                    source_store: str, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "kind": config.kind,
        "n": config.n,
        "gridsize": config.gridsize,
        "K": grouping.get("K"),
        "alpha": float(alpha),
        "intensity_scale": model_intensity_scale,
        "data_intensity_scale": float(intensity_scale),
        "model_config": config.to_dict(),
        "training_config": training_config.to_dict(),
        "history": _jsonable(dict(history)),
        "source_store": str(source_store),
        "grouping": _jsonable(dict(grouping)),
        "versions": _versions(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    manifest[_CHECKSUM_KEY] = _content_sha256(manifest)
    return manifest


def _write_contents(folder: Path, model: Any, probe: np.ndarray | None) -> dict[str, Any]:
    """Write ``model.keras`` and ``probe.npy`` into ``folder``; return their digests."""
    import keras

    # A fresh functional wrapper shares the layers but not the compiled state, so the file
    # holds no optimizer variables and no reference to the training losses.
    keras.Model(model.inputs, model.outputs, name=model.name).save(folder / MODEL_FILE)
    names = [MODEL_FILE]
    if probe is not None:
        np.save(folder / PROBE_FILE, np.asarray(probe, np.complex64), allow_pickle=False)
        names.append(PROBE_FILE)
    return {name: {"sha256": _file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
            for name in names}


def _exists_error(target: Path) -> OutputExistsError:
    return OutputExistsError(
        f"{target}: a bundle already exists there. Pass overwrite=True to replace it, or choose "
        "another path."
    )


def _publish(staging: Path, target: Path, *, overwrite: bool) -> None:
    """Rename the finished staging directory to ``target``, replacing it if allowed."""
    if not target.exists():
        staging.rename(target)
        return
    if not overwrite:
        raise _exists_error(target)
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    target.rename(retired / target.name)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def save_bundle(path: str | os.PathLike[str], model: Any, *, model_config: ModelConfig,
                training_config: TrainingConfig, history: Mapping[str, Any], alpha: float,
                intensity_scale: float, probe: np.ndarray | None, grouping: Mapping[str, Any],
                source_store: str, overwrite: bool = False) -> Path:
    """Write a model bundle directory atomically.

    The files are written into a temporary sibling directory, which is renamed to ``path``
    once complete, so ``path`` contains either a whole bundle or nothing.

    Parameters
    ----------
    path
        Bundle directory to create.
    model
        A :class:`~ptychozarr.models.factory.BuiltModel`, or its ``training`` Keras model.
    model_config, training_config
        The settings the model was built and trained with.
    history
        Per-epoch metrics, e.g. ``keras.callbacks.History.history`` (name -> list of floats).
    alpha
        Input normalisation of the training set (X = alpha * amplitude).
    intensity_scale
        Photon scale s of the training set. For a PINN the manifest's ``intensity_scale`` is the
        model's own (possibly trained) s; the given value is kept as ``data_intensity_scale``.
    probe
        (N, N) complex probe. A PINN bundle stores the model's own (possibly trained) probe
        instead; a baseline stores this one, or none when ``None``.
    grouping
        Attributes of the grouped view trained on (gridsize, K, seed, n_groups, region, name...).
    source_store
        Path or URL of the training store.
    overwrite
        Replace an existing bundle at ``path``.

    Returns
    -------
    pathlib.Path
        The bundle directory.
    """
    keras_model = _training_model(model)
    _check_model_matches(keras_model, model_config)
    target = Path(path)
    if target.exists() and not overwrite:
        raise _exists_error(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    saved_probe, model_scale = _model_probe_and_scale(keras_model, model_config, probe,
                                                      intensity_scale)

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        files = _write_contents(staging, keras_model, saved_probe)
        manifest = _build_manifest(model_config, training_config, history=history, alpha=alpha,
                                   intensity_scale=intensity_scale,
                                   model_intensity_scale=model_scale, grouping=grouping,
                                   source_store=source_store, files=files)
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        (staging / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
        _publish(staging, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved %s bundle (N=%d, gridsize=%d) to %s", model_config.kind, model_config.n,
                model_config.gridsize, target)
    return target


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


def _is_reference_archive(path: Path) -> bool:
    """Return whether ``path`` is a PtychoPINN ``wts.h5.zip``: a zip with ``.dill`` pickles."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith(".dill") for name in archive.namelist())


def _check_bundle_directory(folder: Path) -> None:
    """Reject what is not a ptychozarr bundle directory, naming what it is instead."""
    where = str(folder)
    if not folder.exists():
        raise InputFileNotFoundError(
            f"{where}: model bundle not found. Check the path, or train one with "
            "`ptychozarr train`."
        )
    reference = folder if folder.is_file() else folder / "wts.h5.zip"
    is_reference = reference.name == "wts.h5.zip" or _is_reference_archive(reference)
    if is_reference and reference.is_file() and not (folder / MANIFEST_FILE).exists():
        raise BundleError(_REFERENCE_ARCHIVE_MESSAGE.format(where=reference))
    if folder.is_file():
        raise BundleError(
            f"{where}: a model bundle is a directory with {MANIFEST_FILE}, {MODEL_FILE} and "
            f"{PROBE_FILE}, not a file. Pass the directory that `ptychozarr train` wrote."
        )
    if not (folder / MANIFEST_FILE).is_file():
        raise BundleError(
            f"{where}: {MANIFEST_FILE} is missing, so this is not a complete ptychozarr model "
            "bundle. Pass the directory that `ptychozarr train` wrote, or train again."
        )


def _read_manifest(folder: Path) -> dict[str, Any]:
    where = folder / MANIFEST_FILE
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{where}: not valid JSON ({error}); the manifest is damaged. "
                          "Train the model again.") from error
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: expected a JSON object, found {type(manifest).__name__}.")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{where}: missing entries {missing!r}; the manifest was edited or "
                          "is damaged. Train the model again.")
    if manifest["format"] != BUNDLE_FORMAT or not isinstance(manifest["format_version"], int):
        raise BundleError(f"{where}: format {manifest['format']!r} version "
                          f"{manifest['format_version']!r} is not a {BUNDLE_FORMAT!r}.")
    if manifest["format_version"] > BUNDLE_VERSION:
        raise BundleError(
            f"{where}: bundle format version {manifest['format_version']!r} is newer than "
            f"this ptychozarr reads ({BUNDLE_VERSION}). Upgrade ptychozarr."
        )
    if manifest[_CHECKSUM_KEY] != _content_sha256(manifest):
        raise BundleError(
            f"{where}: the manifest's content does not match its {_CHECKSUM_KEY!r}, so it was "
            "modified after the bundle was written. Restore the original or train again."
        )
    return manifest


def _check_files(folder: Path, manifest: Mapping[str, Any]) -> None:
    files = manifest["files"]
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise BundleError(f"{folder / MANIFEST_FILE}: 'files' must list {MODEL_FILE!r}.")
    for name, entry in files.items():
        if name not in (MODEL_FILE, PROBE_FILE):
            raise BundleError(f"{folder / MANIFEST_FILE}: unexpected file entry {name!r}.")
        path = folder / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle; train the model again.")
        if _file_sha256(path) != entry.get("sha256"):
            raise BundleError(
                f"{path}: sha256 does not match the manifest, so the file was modified or "
                "damaged after the bundle was written. Restore the original or train again."
            )


def _configs(folder: Path, manifest: Mapping[str, Any]) -> tuple[ModelConfig, TrainingConfig]:
    where = folder / MANIFEST_FILE
    try:
        model_config = ModelConfig.from_dict(manifest["model_config"])
        training_config = TrainingConfig.from_dict(manifest["training_config"])
    except (PtychozarrError, TypeError) as error:
        raise BundleError(f"{where}: invalid model or training config: {error}") from error
    recorded = (manifest["kind"], manifest["n"], manifest["gridsize"])
    configured = (model_config.kind, model_config.n, model_config.gridsize)
    if recorded != configured:
        raise BundleError(
            f"{where}: (kind, n, gridsize) = {recorded!r} disagrees with the model config "
            f"{configured!r}; the manifest was edited. Train the model again."
        )
    return model_config, training_config


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


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a bundle's manifest and check it and the files' digests, without loading the model.

    Imports neither TensorFlow nor Keras, so a client can reject a damaged bundle before it
    sends work to a cluster.

    Raises
    ------
    InputFileNotFoundError
        ``path`` does not exist.
    BundleError
        ``path`` is a PtychoPINN ``wts.h5.zip``, has no manifest, or its manifest or files were
        modified.
    """
    folder = Path(path)
    _check_bundle_directory(folder)
    manifest = _read_manifest(folder)
    _check_files(folder, manifest)
    return manifest


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
    model_config, training_config = _configs(folder, manifest)
    model = _load_keras_model(folder, model_config)
    probe = _load_probe(folder, model_config)
    return ModelBundle(folder, model, manifest=manifest, model_config=model_config,
                       training_config=training_config, probe=probe)


def save_untrained_bundle(store_path: str | os.PathLike[str], group: str,
                          path: str | os.PathLike[str], *,
                          kind: Literal["pinn", "baseline"] = "pinn",
                          n_filters_scale: int = 1, seed: int = 0,
                          overwrite: bool = False) -> Path:
    """Build a model for a grouped view and save it, untrained, as a bundle.

    N, gridsize, K, alpha, the photon scale and the largest member offset come from the
    attributes of ``groups/<group>``; a PINN takes the store's ``probe``. Meant for tests and
    smoke runs of inference, where the predictions only need the right shapes and placement.

    Returns
    -------
    pathlib.Path
        The bundle directory.
    """
    from ptychozarr.models.factory import build_model
    from ptychozarr.store import open_store

    root = open_store(store_path)
    attributes: dict[str, Any] = dict(root[f"groups/{group}"].attrs)
    config = ModelConfig(kind=kind, n=int(attributes["n"]), gridsize=int(attributes["gridsize"]),
                         n_filters_scale=n_filters_scale,
                         max_offset_px=float(attributes.get("max_offset_px", 0.0)))
    stored_probe: Any = root.get("probe")
    probe = None if stored_probe is None else np.asarray(stored_probe[...])
    built = build_model(config, probe=probe, intensity_scale=float(attributes["intensity_scale"]),
                        seed=seed)
    return save_bundle(path, built, model_config=config, training_config=TrainingConfig(epochs=1),
                       history={}, alpha=float(attributes["alpha"]),
                       intensity_scale=float(attributes["intensity_scale"]), probe=probe,
                       grouping={**attributes, "name": group}, source_store=str(store_path),
                       overwrite=overwrite)
