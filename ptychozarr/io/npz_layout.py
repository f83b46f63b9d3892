"""Key names, array layouts and position conventions of NPZ inputs.

PtychoPINN's raw layout is the default: ``diffraction`` or ``diff3d`` as (M, N, N) or the legacy
(N, N, M), patch-centre positions ``xcoords``/``ycoords`` in object pixels, zero frequency
centred. Files of other tools differ in key names, in whether they hold counts, in where the zero
frequency lies, in the order, origin and units of their positions, and sometimes in leading
singleton axes (tike stores (1, M, N, N)); :class:`~ptychozarr.io.options.ConvertOptions` names
each difference, and this module reads the arrays accordingly.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychozarr.errors import InvalidInputError, MissingKeyError
from ptychozarr.io.geometry import Positions
from ptychozarr.io.npz import NpyHeader, NpzArchive, require_numeric
from ptychozarr.io.options import ConvertOptions

__all__ = [
    "DIFFRACTION_KEYS",
    "DiffractionLayout",
    "find_diffraction_key",
    "read_optional",
    "read_positions",
    "resolve_layout",
    "squeeze_singletons",
]

logger = logging.getLogger(__name__)

DIFFRACTION_KEYS = ("diffraction", "diff3d")
"""PtychoPINN's two names of the diffraction array, in order of preference."""


def squeeze_singletons(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """Drop leading, then trailing, size-1 axes of ``shape`` until it has ``ndim`` axes.

    Dropping size-1 axes leaves the storage order of the data unchanged.
    """
    axes = list(shape)
    while len(axes) > ndim and axes[0] == 1:
        axes.pop(0)
    while len(axes) > ndim and axes[-1] == 1:
        axes.pop()
    return tuple(axes)


def find_diffraction_key(archive: NpzArchive, options: ConvertOptions) -> str:
    """Return the diffraction key: the one requested, else ``diffraction`` or ``diff3d``."""
    if options.diffraction_key is not None:
        if options.diffraction_key not in archive:
            raise MissingKeyError(
                f"{archive.path}: diffraction key {options.diffraction_key!r} not found; the file "
                f"has {archive.keys!r}. Pass the right name with --diffraction-key."
            )
        return options.diffraction_key
    for key in DIFFRACTION_KEYS:
        if key in archive:
            return key
    hint = ""
    if "X" in archive and "nn_indices" in archive:
        hint = " It looks like a grouped (model-ready) NPZ: pass --format grouped."
    raise MissingKeyError(
        f"{archive.path}: no diffraction array; expected key 'diffraction' or 'diff3d', the file "
        f"has {archive.keys!r}. Name the key holding the patterns with --diffraction-key.{hint}"
    )


def _read_vector(archive: NpzArchive, key: str, what: str) -> np.ndarray:
    header = archive.header(key)
    require_numeric(header, path=archive.path, what=what)
    values = archive.read(key)
    shape = squeeze_singletons(values.shape, 1)
    if len(shape) != 1:
        raise InvalidInputError(
            f"{archive.path}: {what} {key!r} has shape {values.shape!r}; one value per pattern, "
            "shape (M,), is expected."
        )
    return values.reshape(shape).astype(np.float64)


def _required_key(archive: NpzArchive, key: str, option: str) -> str:
    if key not in archive:
        raise MissingKeyError(
            f"{archive.path}: position key {key!r} not found; the file has {archive.keys!r}. "
            f"Name the key with {option}."
        )
    return key


def read_positions(archive: NpzArchive, options: ConvertOptions) -> Positions:
    """Read scan positions as given in the file (order resolved to x, y; origin and units not
    yet converted), with nominal positions when ``xcoords_start``/``ycoords_start`` exist."""
    if options.positions_key is not None:
        key = _required_key(archive, options.positions_key, "--positions-key")
        require_numeric(archive.header(key), path=archive.path, what="positions")
        table = archive.read(key)
        shape = squeeze_singletons(table.shape, 2)
        if len(shape) != 2 or shape[1] != 2:
            raise InvalidInputError(
                f"{archive.path}: positions {key!r} have shape {table.shape!r}; (M, 2) is "
                "expected, one (x, y) or (row, col) pair per pattern (see --position-order)."
            )
        table = table.reshape(shape).astype(np.float64)
        first, second = table[:, 0].copy(), table[:, 1].copy()
        x, y = (second, first) if options.position_order == "rowcol" else (first, second)
        return Positions(x, y, options.position_units)

    x_key = _required_key(archive, options.x_key or "xcoords", "--x-key")
    y_key = _required_key(archive, options.y_key or "ycoords", "--y-key")
    x = _read_vector(archive, x_key, "positions")
    y = _read_vector(archive, y_key, "positions")
    if x.shape != y.shape:
        raise InvalidInputError(
            f"{archive.path}: {x_key!r} has {x.size} positions but {y_key!r} has {y.size}; "
            "both need one value per pattern."
        )
    x_start = y_start = None
    if options.x_key is None and {"xcoords_start", "ycoords_start"} <= set(archive.keys):
        x_start = _read_vector(archive, "xcoords_start", "nominal positions")
        y_start = _read_vector(archive, "ycoords_start", "nominal positions")
        if x_start.shape != x.shape or y_start.shape != x.shape:
            raise InvalidInputError(
                f"{archive.path}: 'xcoords_start'/'ycoords_start' have {x_start.size}/"
                f"{y_start.size} values but there are {x.size} positions; remove them or fix "
                "their length."
            )
    return Positions(x, y, options.position_units, x_start, y_start)


@dataclass(frozen=True)
class DiffractionLayout:
    """Where the frames lie in an NPZ diffraction member.

    Attributes
    ----------
    header
        The member's header with singleton axes squeezed to three.
    scan_first
        Logical layout (M, ky, kx); otherwise the legacy (ky, kx, M).
    frames_along_stream_start
        The frames follow each other in the member's bytes (streamed directly); otherwise
        they are interleaved and need the on-disk rechunk.
    transpose
        Each frame comes out of storage order as (kx, ky) and must be transposed.
    frame_shape
        (ky, kx) of one frame.
    """

    header: NpyHeader
    scan_first: bool
    frames_along_stream_start: bool
    transpose: bool
    frame_shape: tuple[int, int]


def resolve_layout(archive: NpzArchive, key: str, n_positions: int,
                   options: ConvertOptions) -> DiffractionLayout:
    """Find the scan axis of diffraction ``key`` by matching the number of positions."""
    header = archive.header(key)
    require_numeric(header, path=archive.path, what="diffraction")
    shape = squeeze_singletons(header.shape, 3)
    if len(shape) != 3:
        raise InvalidInputError(
            f"{archive.path}: diffraction {key!r} has shape {header.shape!r}; a stack of "
            "patterns (M, N, N), or the legacy (N, N, M), is expected."
        )
    header = dataclasses.replace(header, shape=shape)
    scan_first = _scan_axis_first(archive.path, key, shape, n_positions, options.layout)
    fortran = header.fortran_order
    frame_shape = (shape[1], shape[2]) if scan_first else (shape[0], shape[1])
    # Storage order is (M, ky, kx) for scan-first C order and (M, kx, ky) for scan-last
    # Fortran order; the other two cases interleave the frames.
    return DiffractionLayout(header, scan_first, scan_first != fortran, fortran, frame_shape)


def _scan_axis_first(path: str, key: str, shape: tuple[int, ...], n_positions: int,
                     layout: str) -> bool:
    first_matches, last_matches = shape[0] == n_positions, shape[2] == n_positions
    if layout == "scan-first" and first_matches:
        return True
    if layout == "scan-last" and last_matches:
        return False
    if layout == "auto" and (first_matches or last_matches):
        if first_matches and last_matches:
            logger.warning("%s: %r has shape %s, so its scan axis is ambiguous; reading it as "
                           "(M, N, N) (pass --layout scan-last for (N, N, M))", path, key, shape)
        return first_matches
    expected = {"auto": "the first or last axis", "scan-first": "the first axis",
                "scan-last": "the last axis"}[layout]
    raise InvalidInputError(
        f"{path}: diffraction {key!r} has shape {shape!r}, but there are {n_positions} "
        f"positions and {expected} should have that length. Check that positions and patterns "
        "belong together (or pass --layout)."
    )


def read_optional(archive: NpzArchive, key: str, *, what: str, ndim: int) -> np.ndarray | None:
    """Read small optional array ``key`` squeezed to ``ndim`` axes, or ``None`` when absent."""
    if key not in archive:
        return None
    header = archive.header(key)
    if header.size == 0:
        raise InvalidInputError(
            f"{archive.path}: {what} {key!r} is empty (shape {header.shape!r}). Remove it or "
            "write it completely."
        )
    values = archive.read(key)
    shape = squeeze_singletons(values.shape, ndim)
    if len(shape) != ndim:
        raise InvalidInputError(
            f"{archive.path}: {what} {key!r} has shape {values.shape!r}; {ndim} axes are expected."
        )
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        raise InvalidInputError(
            f"{archive.path}: {what} {key!r} contains NaN or infinite values. Repair it, or "
            "remove it from the file."
        )
    return values.reshape(shape)


def metadata_nphotons(metadata: Any) -> float | None:
    """Find ``nphotons`` in a PtychoPINN ``_metadata`` dictionary (top level or one level down)."""
    if not isinstance(metadata, dict):
        return None
    candidates = [metadata] + [value for value in metadata.values() if isinstance(value, dict)]
    for candidate in candidates:
        value = candidate.get("nphotons")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None
