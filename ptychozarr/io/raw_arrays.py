"""Writing the raw per-scan arrays that every importer shares: diffraction, positions, extras.

Every per-scan array carries the CF attribute ``coordinates`` naming the position arrays, so a
plain ``xarray.open_zarr(store)`` shows positions as coordinates on ``scan`` without ptychozarr.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from ptychozarr.io.geometry import Positions
from ptychozarr.store.create import StoreWriter
from ptychozarr.store.schema import RAW_ARRAYS

__all__ = [
    "DIFFRACTION_UNITS",
    "coordinate_names",
    "create_per_scan",
    "write_positions",
    "write_small",
]

DIFFRACTION_UNITS = {"counts": "sqrt(photons)", "arbitrary": "1"}
"""Units of ``diffraction`` for each ``amplitude_scale``."""


def coordinate_names(positions: Positions, *, has_scan_index: bool) -> str:
    """Return the CF ``coordinates`` attribute for per-scan arrays."""
    names = ["xcoords", "ycoords"]
    if positions.x_start is not None:
        names += ["xcoords_start", "ycoords_start"]
    if has_scan_index:
        names.append("scan_index")
    return " ".join(names)


def create_per_scan(writer: StoreWriter, name: str, shape: tuple[int, ...], *,
                    chunk_frames: int, coordinates: str,
                    attrs: dict[str, Any] | None = None, units: str | None = None) -> zarr.Array:
    """Create the per-scan array ``name`` (``diffraction`` or ``object_patches``)."""
    attributes = {"coordinates": coordinates, **(attrs or {})}
    return writer.create_array(RAW_ARRAYS[name], shape, chunk_frames=chunk_frames,
                               attrs=attributes, units=units)


def write_small(writer: StoreWriter, name: str, data: np.ndarray, *,
                chunk_frames: int | None = None, units: str | None = None,
                attrs: dict[str, Any] | None = None) -> None:
    """Create raw array ``name`` and write ``data`` (cast to the schema dtype) in one call."""
    spec = RAW_ARRAYS[name]
    values = np.asarray(data).astype(spec.dtype)
    if writer.resumed and writer.frames_done(name) == (values.shape[0] if values.ndim else 1):
        return
    writer.create_array(spec, values.shape, chunk_frames=chunk_frames, units=units, attrs=attrs)
    writer.write_whole(name, values)


def write_positions(writer: StoreWriter, positions: Positions, *, chunk_frames: int) -> None:
    """Write ``xcoords``/``ycoords`` and, when known, ``xcoords_start``/``ycoords_start``."""
    arrays = {"xcoords": positions.x, "ycoords": positions.y}
    if positions.x_start is not None and positions.y_start is not None:
        arrays.update(xcoords_start=positions.x_start, ycoords_start=positions.y_start)
    for name, values in arrays.items():
        write_small(writer, name, values, chunk_frames=chunk_frames, units=positions.units)
