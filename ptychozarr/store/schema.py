"""The dataset store schema, format version 1.

A dataset store is one Zarr v3 group. Its root holds the per-pattern raw arrays listed in
:data:`RAW_ARRAYS`; ``groups/<name>/`` holds grouped views (:data:`GROUP_ARRAYS`) and
``predictions/<model>/<run>/`` holds inference results (:data:`PREDICTION_ARRAYS`). Every array
carries ``dimension_names`` plus ``units`` and ``long_name`` attributes so that any Zarr v3 reader,
``xarray.open_zarr`` among them, understands it without ptychozarr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychozarr.errors import StoreSchemaError

__all__ = [
    "FORMAT_VERSION",
    "GROUP_ARRAYS",
    "PREDICTION_ARRAYS",
    "RAW_ARRAYS",
    "REQUIRED_RAW_ARRAYS",
    "ArraySpec",
    "check_format_version",
    "format_block",
]

FORMAT_VERSION = 1
"""Version of the on-disk layout. Readers reject stores with a newer major version."""


@dataclass(frozen=True)
class ArraySpec:
    """Name, dimensions, dtype and descriptive attributes of one stored array."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    units: str
    long_name: str
    chunked_axis: int | None = 0
    """Axis along which the array is chunked (``None``: a single chunk)."""

    def check(self, shape: tuple[int, ...], dtype: np.dtype[Any], *, where: str) -> None:
        """Raise :class:`StoreSchemaError` when ``shape`` or ``dtype`` breaks this spec."""
        if len(shape) != len(self.dims):
            raise StoreSchemaError(
                f"{where}: array {self.name!r} has shape {shape!r}, expected {len(self.dims)} "
                f"dimensions {self.dims!r}. Re-create the store with `ptychozarr convert`."
            )
        if np.dtype(dtype) != np.dtype(self.dtype):
            raise StoreSchemaError(
                f"{where}: array {self.name!r} has dtype {str(dtype)!r}, expected {self.dtype!r}. "
                "Re-create the store with `ptychozarr convert`."
            )


def _spec(name: str, dims: tuple[str, ...], dtype: str, units: str, long_name: str,
          chunked_axis: int | None = 0) -> ArraySpec:
    return ArraySpec(name, dims, dtype, units, long_name, chunked_axis)


# Units of `diffraction` depend on the source: "sqrt(photons)" when the source gave counts,
# "1" when its scale is arbitrary. Writers set the attribute `amplitude_scale` to match.
RAW_ARRAYS: Mapping[str, ArraySpec] = {
    spec.name: spec
    for spec in (
        _spec("diffraction", ("scan", "ky", "kx"), "float32", "sqrt(photons)",
              "far-field diffraction amplitude, zero frequency centred"),
        _spec("xcoords", ("scan",), "float64", "pixel", "measured scan position x (column)"),
        _spec("ycoords", ("scan",), "float64", "pixel", "measured scan position y (row)"),
        _spec("xcoords_start", ("scan",), "float64", "pixel", "nominal scan position x (column)"),
        _spec("ycoords_start", ("scan",), "float64", "pixel", "nominal scan position y (row)"),
        _spec("scan_index", ("scan",), "int32", "1", "scan index"),
        _spec("probe", ("py", "px"), "complex64", "1", "illumination on the object pixel grid",
              None),
        _spec("object", ("oy", "ox"), "complex64", "1", "ground-truth or reference object", None),
        _spec("object_patches", ("scan", "py", "px"), "complex64", "1",
              "ground-truth object patch centred on each scan position"),
        _spec("mask", ("ky", "kx"), "bool", "1", "valid detector pixels (true = valid)", None),
    )
}

REQUIRED_RAW_ARRAYS = ("diffraction", "xcoords", "ycoords")

GROUP_ARRAYS: Mapping[str, ArraySpec] = {
    spec.name: spec
    for spec in (
        _spec("indices", ("group", "channel"), "int32", "1",
              "row of each group member in the raw arrays"),
        _spec("offsets", ("group", "xy"), "float64", "pixel", "group centroid (x, y)"),
        _spec("relative", ("group", "channel", "xy"), "float64", "pixel",
              "centroid minus member position (x, y)"),
        _spec("X", ("group", "ky", "kx", "channel"), "float32", "1",
              "normalised diffraction amplitude alpha * amplitude"),
        _spec("Y_I", ("group", "py", "px", "channel"), "float32", "1",
              "ground-truth patch amplitude at each member's position"),
        _spec("Y_phi", ("group", "py", "px", "channel"), "float32", "rad",
              "ground-truth patch phase at each member's position"),
    )
}

PREDICTION_ARRAYS: Mapping[str, ArraySpec] = {
    spec.name: spec
    for spec in (
        _spec("patches", ("patch", "py", "px"), "complex64", "1", "predicted object patch"),
        _spec("positions", ("patch", "xy"), "float64", "pixel",
              "placement of each patch centre (x, y)"),
        _spec("object", ("oy", "ox"), "complex64", "1", "stitched object", None),
    )
}


def format_block(kind: str) -> dict[str, Any]:
    """Build the versioned ``ptychozarr`` attribute block for a group of the given ``kind``."""
    from ptychozarr import __version__

    return {"format_version": FORMAT_VERSION, "writer_version": __version__, "kind": kind}


def check_format_version(attrs: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`StoreSchemaError` unless ``attrs`` carry a readable format block."""
    block = attrs.get("ptychozarr")
    if not isinstance(block, Mapping) or "format_version" not in block:
        raise StoreSchemaError(
            f"{where}: not a ptychozarr store (root attribute 'ptychozarr' with a "
            "'format_version' is missing). Create one with `ptychozarr convert` or "
            "`ptychozarr simulate`."
        )
    version = block["format_version"]
    if version != FORMAT_VERSION:
        raise StoreSchemaError(
            f"{where}: store format version {version!r} is not supported; this ptychozarr reads "
            f"version {FORMAT_VERSION}. Re-convert the source with this version, or install the "
            "ptychozarr release that wrote it."
        )
