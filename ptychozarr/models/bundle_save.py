"""Saving model bundles: atomically, and untrained ones for tests and smoke runs.

The directory layout and the manifest are described in :mod:`ptychozarr.models.bundle_format`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.errors import InvalidInputError, OutputExistsError
from ptychozarr.models.bundle_format import (
    MANIFEST_FILE,
    MODEL_FILE,
    PROBE_FILE,
    build_manifest,
    file_sha256,
)

__all__ = ["save_bundle", "save_untrained_bundle"]

logger = logging.getLogger(__name__)


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
    return {name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
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
        manifest = build_manifest(model_config, training_config, history=history, alpha=alpha,
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


def save_untrained_bundle(store_path: str | os.PathLike[str], group: str,
                          path: str | os.PathLike[str], *,
                          kind: Literal["pinn", "baseline"] = "pinn",
                          n_filters_scale: int = 1, seed: int = 0,
                          overwrite: bool = False, probe: np.ndarray | None = None,
                          **model_options: Any) -> Path:
    """Build a model for a grouped view and save it, untrained, as a bundle.

    N, gridsize, K, alpha, the photon scale and the largest member offset come from the
    attributes of ``groups/<group>``; a PINN takes ``probe`` or else the store's ``probe``
    array. ``model_options`` are further :class:`~ptychozarr.config.ModelConfig` fields
    (``probe_scale``, ``phase_activation``, ...). Meant for tests, smoke runs of inference, and
    the untrained reference that a trained model's data residual is compared with.

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
                         max_offset_px=float(attributes.get("max_offset_px", 0.0)),
                         **model_options)
    stored_probe: Any = root.get("probe")
    if probe is None and stored_probe is not None:
        probe = np.asarray(stored_probe[...])
    built = build_model(config, probe=probe, intensity_scale=float(attributes["intensity_scale"]),
                        seed=seed)
    return save_bundle(path, built, model_config=config, training_config=TrainingConfig(epochs=1),
                       history={}, alpha=float(attributes["alpha"]),
                       intensity_scale=float(attributes["intensity_scale"]), probe=probe,
                       grouping={**attributes, "name": group}, source_store=str(store_path),
                       overwrite=overwrite)
