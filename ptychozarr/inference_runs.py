"""Published prediction runs: marking a run current, and reading runs back from a store.

A run ``predictions/<model>/<run>`` is written by :mod:`ptychozarr.inference`. Once it is
complete, the ``current`` attribute of ``predictions/<model>`` names it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ptychozarr.errors import MissingKeyError
from ptychozarr.store import consolidate, open_store

__all__ = ["current_run", "publish_current_run", "read_run_object"]

logger = logging.getLogger(__name__)


def publish_current_run(store: Path, model: str, run: str) -> None:
    """Name ``run`` in the ``current`` attribute of ``predictions/<model>``.

    Call it only after every array of the run is in place, because readers trust that name.
    """
    parent = zarr.open_group(str(store / "predictions" / model), mode="a", zarr_format=3)
    parent.attrs["current"] = run
    consolidate(store)
    logger.info("Published predictions/%s/%s in %s", model, run, store)


def current_run(store: str | os.PathLike[str], model: str) -> str:
    """Return ``predictions/<model>/<run>`` of the model's current (last published) run."""
    root = open_store(store)
    path = f"predictions/{model}"
    run = root[path].attrs.get("current") if path in root else None
    if run is None:
        raise MissingKeyError(
            f"{os.fspath(store)}: no published {model!r} predictions. Run `ptychozarr "
            "reconstruct` or `ptychozarr compare-models` first."
        )
    return f"{path}/{run}"


def read_run_object(store: str | os.PathLike[str],
                    run_path: str) -> tuple[np.ndarray, tuple[int, int], dict[str, Any]]:
    """Read a run's stitched object.

    Returns
    -------
    tuple
        (row, col) complex64 object, its origin (x, y) in the object frame, and the run's
        attributes.
    """
    root = open_store(store)
    array = root.get(f"{run_path}/object")
    if not isinstance(array, zarr.Array):
        raise MissingKeyError(f"{os.fspath(store)}: {run_path!r} has no stitched object.")
    origin: Any = array.attrs["origin_xy_px"]
    origin_x, origin_y = (int(value) for value in origin)
    return np.asarray(array[...]), (origin_x, origin_y), dict(root[run_path].attrs)
