"""Export of a store's raw arrays as a PtychoPINN raw NPZ file.

Written keys, each when the store has the array:

- ``diffraction`` (or ``diff3d``) (M, N, N) float32 amplitude;
- ``xcoords``, ``ycoords``, ``xcoords_start``, ``ycoords_start`` (M,) float64 in object pixels;
- ``scan_index`` (M,) int32, ``probeGuess`` (N, N) complex64, ``objectGuess`` (H, W) complex64;
- ``Y`` (M, N, N) complex64 from ``object_patches``;
- ``_metadata``, the JSON text of the store's ``source_metadata``.

Large arrays are written chunk by chunk into the zip, so memory does not grow with the number of
patterns. The file appears under its final name only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import zarr

from ptychozarr.errors import InvalidInputError, OutputExistsError
from ptychozarr.io.npz import METADATA_KEY, write_npy_member
from ptychozarr.store.open import StorePath, open_store

__all__ = ["export_npz"]

logger = logging.getLogger(__name__)

# Store array -> NPZ key, for everything but the diffraction array.
_KEYS = {
    "xcoords": "xcoords", "ycoords": "ycoords", "xcoords_start": "xcoords_start",
    "ycoords_start": "ycoords_start", "scan_index": "scan_index", "probe": "probeGuess",
    "object": "objectGuess", "object_patches": "Y",
}
_STREAMED = ("diffraction", "object_patches")


def _chunks(array: zarr.Array) -> Iterator[np.ndarray]:
    step = int(array.chunks[0])
    for start in range(0, array.shape[0], step):
        yield np.asarray(array[start:start + step])


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: output already exists. Pass --overwrite to replace it, or choose another "
            "path."
        )
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(
            f"{path}: output folder {str(parent)!r} does not exist or is not writable. Choose a "
            "folder you can write to."
        )


def export_npz(store: StorePath, output: str | os.PathLike[str], *,
               diffraction_key: str = "diffraction", compress: bool = True,
               overwrite: bool = False,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the raw arrays of ``store`` as a PtychoPINN raw NPZ file.

    Parameters
    ----------
    store
        Dataset store to export.
    output
        NPZ file to write.
    diffraction_key
        ``"diffraction"`` (current PtychoPINN name) or ``"diff3d"`` (the simulator's name).
    compress
        Deflate members (zlib level 1), like ``np.savez_compressed`` but faster; ``False``
        stores them uncompressed, like ``np.savez``.
    overwrite
        Replace an existing file.
    progress
        Called as ``progress(arrays_done, n_arrays)`` after each array.

    Raises
    ------
    InvalidInputError
        Positions are in metres (PtychoPINN needs object pixels), or a bad option value.
    """
    if diffraction_key not in ("diffraction", "diff3d"):
        raise InvalidInputError(
            f"diffraction_key: invalid value {diffraction_key!r}; use 'diffraction' or 'diff3d'."
        )
    root = open_store(store)
    units = root["xcoords"].attrs.get("units")
    if units != "pixel":
        raise InvalidInputError(
            f"{store}: positions are in {units!r}, but PtychoPINN NPZ files need object pixels. "
            "Convert far-field data with its energy, distance and pixel size so positions are "
            "stored in pixels."
        )
    path = Path(output)
    _check_output(path, overwrite)
    partial = path.with_name(path.name + ".partial")
    names = [name for name in ("diffraction", *_KEYS) if name in root]
    try:
        _write_archive(root, partial, names, diffraction_key, compress, progress)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("Wrote %s", path)
    return path


def _write_archive(root: zarr.Group, partial: Path, names: list[str], diffraction_key: str,
                   compress: bool, progress: Callable[[int, int], None] | None) -> None:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(partial, "w", compression=method, compresslevel=1 if compress else None,
                         allowZip64=True) as archive:
        for done, name in enumerate(names, start=1):
            array = root[name]
            if not isinstance(array, zarr.Array):
                continue
            key = diffraction_key if name == "diffraction" else _KEYS[name]
            slabs = _chunks(array) if name in _STREAMED else iter([np.asarray(array[...])])
            write_npy_member(archive, key, tuple(array.shape), array.dtype, slabs)
            if progress is not None:
                progress(done, len(names))
        metadata = root.attrs.get("source_metadata")
        if metadata is not None:
            text = metadata if isinstance(metadata, str) else json.dumps(metadata)
            with archive.open(f"{METADATA_KEY}.npy", "w") as member:
                np.lib.format.write_array(member, np.array(text, dtype=object),
                                          allow_pickle=True)
