"""Opening stores: as Zarr groups, as an ``xarray.Dataset`` and as an ``xarray.DataTree``.

All three are lazy: opening reads metadata (``zarr.json`` documents) and no chunk.
Paths may be local directories, ``.zip`` files of a finished store (read-only) or fsspec URLs.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
import zarr
from zarr.storage import FsspecStore, LocalStore, ZipStore

from ptychozarr.errors import (
    InputFileError,
    InputFileNotFoundError,
    MissingKeyError,
    StoreSchemaError,
)
from ptychozarr.store.checked import ChecksumStore
from ptychozarr.store.schema import REQUIRED_RAW_ARRAYS, check_format_version

__all__ = [
    "StorePath",
    "open_dataset",
    "open_datatree",
    "open_store",
    "required_array",
    "store_location",
]

StorePath = str | os.PathLike[str]


def _is_url(path: str) -> bool:
    return "://" in path


def store_location(path: StorePath, *, mode: str = "r") -> Any:
    """Return the store that ``zarr.open_group`` and xarray open for ``path``.

    A local directory becomes a :class:`zarr.storage.LocalStore`, a ``.zip`` file a read-only
    :class:`zarr.storage.ZipStore` and a URL an :class:`zarr.storage.FsspecStore`, each wrapped
    in a :class:`~ptychozarr.store.checked.ChecksumStore`, so that reading a corrupted chunk
    raises :class:`~ptychozarr.errors.CorruptedChunkError` naming the array and the chunk.
    Raises :class:`InputFileNotFoundError` for a missing local path.
    """
    text = os.fspath(path)
    if _is_url(text):
        return ChecksumStore(FsspecStore.from_url(text, read_only=mode == "r"), where=text)
    local = Path(text)
    if not local.exists():
        raise InputFileNotFoundError(
            f"{text}: store not found. Check the path, or create the store with "
            "`ptychozarr convert` or `ptychozarr simulate`."
        )
    if local.is_file() and local.suffix == ".zip":
        if mode != "r":
            raise StoreSchemaError(
                f"{text}: a zipped store is read-only. Unzip it to a directory to write to it."
            )
        _check_zip_layout(local)
        return ChecksumStore(ZipStore(local, mode="r", read_only=True), where=text)
    return ChecksumStore(LocalStore(local, read_only=mode == "r"), where=text)


def _check_zip_layout(archive: Path) -> None:
    """Reject a zip whose store sits in a folder: zarr reads ``zarr.json`` at the zip root only."""
    try:
        with zipfile.ZipFile(archive) as handle:
            names = handle.namelist()
    except zipfile.BadZipFile as error:
        raise InputFileError(
            f"{archive}: not a readable zip file ({error}). Zip the store again."
        ) from error
    if "zarr.json" in names:
        return
    folders = sorted(name[: -len("zarr.json")] for name in names
                     if name.endswith("/zarr.json") and name.count("/") == 1)
    if folders:
        raise StoreSchemaError(
            f"{archive}: the zip contains the store under {folders[0]!r}, but zarr needs "
            "zarr.json at the zip root. Zip the store's contents instead: "
            f"cd {folders[0]} && zip -r -0 ../{archive.name} ."
        )


def open_store(path: StorePath, *, mode: Literal["r", "r+"] = "r") -> zarr.Group:
    """Open the root group of a dataset store and check its format version.

    Parameters
    ----------
    path
        Store directory, ``.zip`` of a finished store, or fsspec URL.
    mode
        ``"r"`` (default) or ``"r+"`` to add groups and predictions.

    Raises
    ------
    InputFileNotFoundError
        The path does not exist.
    StoreSchemaError
        The path is not a ptychozarr store, or its format version is unsupported.
    """
    location = store_location(path, mode=mode)
    try:
        group = zarr.open_group(location, mode=mode, zarr_format=3, use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
        raise StoreSchemaError(
            f"{os.fspath(path)}: not a Zarr v3 group ({error}). Create a store with "
            "`ptychozarr convert` or `ptychozarr simulate`."
        ) from error
    check_format_version(group.attrs.asdict(), where=os.fspath(path))
    for name in REQUIRED_RAW_ARRAYS:
        if name not in group:
            raise MissingKeyError(
                f"{os.fspath(path)}: required array {name!r} is missing. The store is incomplete; "
                "re-create it with `ptychozarr convert`."
            )
    return group


def required_array(root: zarr.Group, path: str, *, where: str) -> zarr.Array:
    """Return the array at ``path``, or raise :class:`MissingKeyError` naming ``where``."""
    array = root.get(path)
    if not isinstance(array, zarr.Array):
        raise MissingKeyError(f"{where}: array {path!r} is missing; the store is incomplete.")
    return array


def read_probe(root: zarr.Group, *, where: str) -> np.ndarray:
    """Read the store's (N, N) probe as complex64.

    Raises :class:`MissingKeyError` when the store has no probe; its message names the fixes.
    """
    array = root.get("probe")
    if not isinstance(array, zarr.Array):
        raise MissingKeyError(
            f"{where}: the store has no 'probe' array. A PINN and probe refinement need the "
            "illumination; convert the data with a probe (an NPZ key named by `ptychozarr "
            "convert --probe-key`, 'probeGuess' by default), or give one to `ptychozarr train "
            "--probe-file`."
        )
    return np.asarray(array[...], dtype=np.complex64)


def open_dataset(path: StorePath, **kwargs: Any) -> xr.Dataset:
    """Open the raw arrays of a store as a lazy :class:`xarray.Dataset`.

    Dimensions are named (``scan``, ``ky``, ``kx``, ``py``, ``px``, ``oy``, ``ox``); positions
    ``xcoords``/``ycoords`` (and the nominal ones when stored) are coordinates on ``scan``; each
    variable keeps its ``units`` and ``long_name``; root attributes become ``Dataset.attrs``.
    Extra keyword arguments go to :func:`xarray.open_zarr`.
    """
    open_store(path)
    location = store_location(path)
    dataset = xr.open_zarr(location, consolidated=False, zarr_format=3, **kwargs)
    coordinate_names = [
        name for name in ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "scan_index")
        if name in dataset.data_vars
    ]
    return dataset.set_coords(coordinate_names)


def open_datatree(path: StorePath, **kwargs: Any) -> xr.DataTree:
    """Open the whole store (raw arrays, ``groups/*`` and ``predictions/*``) as a lazy DataTree.

    Extra keyword arguments go to :func:`xarray.open_datatree`.
    """
    open_store(path)
    location = store_location(path)
    tree = xr.open_datatree(location, engine="zarr", consolidated=False, zarr_format=3, **kwargs)
    coordinate_names = [
        name for name in ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "scan_index")
        if name in tree.ds.data_vars
    ]
    if coordinate_names:
        tree.dataset = tree.to_dataset().set_coords(coordinate_names)
    return tree
