"""Stitching of predicted patches into one object, as a Dask map and tree reduction.

Each block of patches becomes a partial canvas: the weighted sum of the patches' central M×M
crops placed at their positions, and the sum of the weights, both in float64. Sub-pixel positions
are placed bilinearly: translating a crop by t = i + f with bilinear interpolation puts
``(1 - f)`` of each pixel on canvas pixel ``i + a`` and ``f`` on ``i + a + 1``, in x and in y.
Partial canvases are summed pairwise in a tree (``split_every`` at a time), so memory depends on
the canvas size, not on the number of patches, and the sum is the same whatever the chunking up
to float64 rounding. The object is ``sum / (weight + eps)``: the plain average over overlaps.

Canvas pixel ``(row, col)`` is object-frame pixel ``(row + y0, col + x0)``, where
``origin_xy_px = (x0, y0)``; a patch at position (x, y) with side N covers object pixels
``[y - N/2, y + N/2) x [x - N/2, x + N/2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from ptychozarr.errors import InvalidInputError

__all__ = [
    "CANVAS_PLANES",
    "DEFAULT_CROP_SIZE",
    "STITCH_EPSILON",
    "CanvasGeometry",
    "canvas_geometry",
    "partial_canvas",
    "stitch",
    "sum_canvases",
]

DEFAULT_CROP_SIZE = 20
"""Side M (pixels) of the central crop of each patch that is stitched, as the reference uses."""

STITCH_EPSILON = 1e-9
"""Added to the weight before dividing, so pixels no patch reaches come out as zero."""

CANVAS_PLANES = 3
"""Planes of a partial canvas: real part and imaginary part of the weighted sum, and weight."""


@dataclass(frozen=True)
class CanvasGeometry:
    """Placement of a stitching canvas in the object frame.

    Attributes
    ----------
    origin_xy_px
        Object-frame (x, y) of canvas pixel (row 0, column 0), in whole pixels.
    shape
        Canvas size (rows, columns).
    """

    origin_xy_px: tuple[int, int]
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        if min(self.shape) < 1:
            raise InvalidInputError(
                f"canvas shape {self.shape!r} is empty; the positions and crop size give no area."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the geometry as JSON attributes."""
        return {"origin_xy_px": list(self.origin_xy_px), "shape": list(self.shape)}


def canvas_geometry(min_xy: tuple[float, float], max_xy: tuple[float, float], *,
                    crop_size: int = DEFAULT_CROP_SIZE,
                    object_shape: tuple[int, int] | None = None) -> CanvasGeometry:
    """Return the canvas that contains every crop placed between ``min_xy`` and ``max_xy``.

    Parameters
    ----------
    min_xy, max_xy
        Smallest and largest patch position (x, y) in object pixels.
    crop_size
        Side M of the stitched crops.
    object_shape
        Shape (rows, columns) of the store's object. When given, the canvas is the object frame
        itself (origin (0, 0)), so a stitched object and the ground truth share pixel indices;
        crops falling outside it are clipped.
    """
    if object_shape is not None:
        return CanvasGeometry((0, 0), (int(object_shape[0]), int(object_shape[1])))

    half = crop_size / 2
    # One extra pixel beyond the last crop pixel receives the bilinear share of a sub-pixel shift.
    x0 = math.floor(min_xy[0] - half)
    y0 = math.floor(min_xy[1] - half)
    x1 = math.floor(max_xy[0] + half) + 1
    y1 = math.floor(max_xy[1] + half) + 1
    return CanvasGeometry((x0, y0), (y1 - y0 + 1, x1 - x0 + 1))


def partial_canvas(patches: np.ndarray, positions: np.ndarray, *, crop_size: int,
                   geometry: CanvasGeometry) -> np.ndarray:
    """Place one block of patches on a canvas and return the weighted sum and the weight.

    Parameters
    ----------
    patches
        (patch, py, px) complex object patches.
    positions
        (patch, xy) float64 patch centres (x, y) in object pixels.
    crop_size
        Side M of the central crop of each patch that is placed (M <= N).
    geometry
        Canvas placement in the object frame.

    Returns
    -------
    numpy.ndarray
        (3, row, col) float64: real and imaginary parts of the weighted sum, and the weight.
    """
    count, side = patches.shape[0], patches.shape[-1]
    rows, cols = geometry.shape
    canvas = np.zeros((CANVAS_PLANES, rows * cols), dtype=np.float64)
    if count == 0:
        return canvas.reshape(CANVAS_PLANES, rows, cols)

    start = (side - crop_size) // 2
    crops = np.asarray(patches[:, start:start + crop_size, start:start + crop_size],
                       dtype=np.complex128)
    # Object-frame coordinate of each crop's first pixel, then canvas coordinate.
    corner_x = positions[:, 0] - side / 2 + start - geometry.origin_xy_px[0]
    corner_y = positions[:, 1] - side / 2 + start - geometry.origin_xy_px[1]
    whole_x, whole_y = np.floor(corner_x), np.floor(corner_y)
    fraction_x, fraction_y = corner_x - whole_x, corner_y - whole_y
    offsets = np.arange(crop_size)

    for step_y, share_y in ((0, 1 - fraction_y), (1, fraction_y)):
        for step_x, share_x in ((0, 1 - fraction_x), (1, fraction_x)):
            row = whole_y.astype(np.int64)[:, None, None] + step_y + offsets[None, :, None]
            col = whole_x.astype(np.int64)[:, None, None] + step_x + offsets[None, None, :]
            share = np.broadcast_to((share_y * share_x)[:, None, None], crops.shape)
            inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
            flat = (row * cols + col)[inside]
            weight = share[inside]
            values = crops[inside] * weight
            canvas[0] += np.bincount(flat, weights=values.real, minlength=rows * cols)
            canvas[1] += np.bincount(flat, weights=values.imag, minlength=rows * cols)
            canvas[2] += np.bincount(flat, weights=weight, minlength=rows * cols)
    return canvas.reshape(CANVAS_PLANES, rows, cols)


def _block_canvas(patches: np.ndarray, positions: np.ndarray, *, crop_size: int,
                  geometry: CanvasGeometry) -> np.ndarray:
    return partial_canvas(patches, positions, crop_size=crop_size, geometry=geometry)[None]


def _finish_object(total: np.ndarray, eps: float) -> np.ndarray:
    weighted = total[0] + 1j * total[1]
    return (weighted / (total[2] + eps)).astype(np.complex64)


def stitch(patches: da.Array | np.ndarray, positions: da.Array | np.ndarray, *,
           geometry: CanvasGeometry, crop_size: int = DEFAULT_CROP_SIZE, split_every: int = 2,
           eps: float = STITCH_EPSILON) -> da.Array:
    """Build the lazy stitched object of a set of patches.

    Parameters
    ----------
    patches
        (patch, py, px) complex64 patches, a Dask array chunked along ``patch`` only (NumPy
        arrays are taken as one chunk).
    positions
        (patch, xy) float64 placement (x, y) of each patch centre in object pixels, chunked like
        ``patches`` along ``patch``.
    geometry
        Canvas placement (see :func:`canvas_geometry`).
    crop_size
        Side M of the central crop of each patch that is stitched; 0 < M <= N.
    split_every
        Partial canvases summed together at each level of the reduction tree.
    eps
        Added to the weight before dividing.

    Returns
    -------
    dask.array.Array
        (row, col) complex64 object on the canvas, one chunk.
    """
    patch_array = da.asarray(patches)
    position_array = da.asarray(positions)
    side = patch_array.shape[-1]
    if not 0 < crop_size <= side:
        raise InvalidInputError(
            f"stitch crop size {crop_size!r} is outside (0, N] for patches of side N={side}; "
            f"use a crop size between 1 and {side} (--stitch-crop-size)."
        )
    if (patch_array.shape[0] != position_array.shape[0]
            or position_array.shape[1:] != (2,)):
        raise InvalidInputError(
            f"patches {patch_array.shape!r} and positions {position_array.shape!r} do not match; "
            "expected (patch, py, px) and (patch, 2)."
        )

    patch_array = patch_array.rechunk({1: -1, 2: -1})
    position_array = position_array.rechunk({0: patch_array.chunks[0], 1: -1})
    rows, cols = geometry.shape
    partials = da.blockwise(
        _block_canvas, "bkyx", patch_array, "bij", position_array, "bd",
        new_axes={"k": CANVAS_PLANES, "y": rows, "x": cols}, adjust_chunks={"b": 1},
        concatenate=True, dtype=np.float64, meta=np.empty((0, 0, 0, 0), dtype=np.float64),
        crop_size=crop_size, geometry=geometry,
    )
    return sum_canvases(partials, split_every=split_every, eps=eps)


def sum_canvases(partials: da.Array, *, split_every: int = 2, eps: float = STITCH_EPSILON,
                 name: str | None = None) -> da.Array:
    """Tree-sum partial canvases and divide the weighted sum by the weight.

    Parameters
    ----------
    partials
        (block, 3, row, col) float64 Dask array, one partial canvas per block (see
        :func:`partial_canvas`), one block per chunk along ``block``.
    split_every
        Partial canvases summed together at each level of the reduction tree.
    eps
        Added to the weight before dividing.
    name
        Prefix of the reduction's task keys. Dask fuses the tasks that make the partial
        canvases into the first level of the sum, and the fused tasks take this name, so a
        caller that times its tasks by key must name the sum.

    Returns
    -------
    dask.array.Array
        (row, col) complex64 object, one chunk.
    """
    total = da.reduction(partials, np.sum, np.sum, axis=0, split_every=split_every,
                         dtype=np.float64, name=name)
    return total.map_blocks(_finish_object, eps, drop_axis=0, dtype=np.complex64,
                            meta=np.empty((0, 0), dtype=np.complex64))
