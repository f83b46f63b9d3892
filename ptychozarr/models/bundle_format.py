"""The model bundle format: directory layout, manifest, digests and the checks on reading.

A bundle is a directory::

    model.keras     the Keras model without optimizer state. For a PINN it is the training
                    model, from which the inference model is derived; for a baseline, the
                    two-head model.
    probe.npy       (N, N) complex64 probe, saved without pickle; absent for a baseline trained
                    without a probe
    manifest.json   kind, N, gridsize, K, the training alpha and photon scale, the model and
                    training configs, the per-epoch history, the source store, the grouping,
                    library versions, and sha256 digests of the two files

The manifest also carries ``content_sha256``, a digest of its own other entries, so that an
edited manifest is detected. These digests catch accidental damage and hand edits. They are not
signatures: whoever can write the directory can recompute them.

Nothing here imports TensorFlow or Keras except :func:`build_manifest`, which records their
versions. :mod:`ptychozarr.models.bundle_save` writes bundles and :mod:`ptychozarr.models.bundle`
loads them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.errors import BundleError, InputFileNotFoundError, PtychozarrError

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PROBE_FILE",
    "build_manifest",
    "file_sha256",
    "read_configs",
    "read_manifest",
]

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


def file_sha256(path: Path) -> str:
    """Return the hex sha256 digest of a file, read in blocks of 1 MiB."""
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


def build_manifest(config: ModelConfig, training_config: TrainingConfig, *,
                   history: Mapping[str, Any], alpha: float, intensity_scale: float,
                   model_intensity_scale: float, grouping: Mapping[str, Any],
                   source_store: str, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the manifest of a new bundle, ending with the digest of its other entries.

    ``files`` maps each file name to its ``sha256`` and ``bytes``. The other arguments are
    described in :func:`ptychozarr.models.bundle_save.save_bundle`. Imports TensorFlow and Keras
    to record their versions.
    """
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


# Reading and checking ------------------------------------------------------------------------


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
        if file_sha256(path) != entry.get("sha256"):
            raise BundleError(
                f"{path}: sha256 does not match the manifest, so the file was modified or "
                "damaged after the bundle was written. Restore the original or train again."
            )


def read_configs(folder: Path,
                 manifest: Mapping[str, Any]) -> tuple[ModelConfig, TrainingConfig]:
    """Return the model and training configs of a checked manifest read from ``folder``.

    Raises :class:`BundleError` when a config is invalid or disagrees with the manifest's kind,
    N or gridsize.
    """
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

