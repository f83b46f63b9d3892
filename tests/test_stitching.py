"""Tests of stitching patches into an object with partial canvases and a tree sum."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from ptychozarr.errors import InvalidInputError
from ptychozarr.physics import extract_patches_np
from ptychozarr.stitching import CanvasGeometry, canvas_geometry, partial_canvas, stitch

N = 32
CROP = 20


def _ramp_object(size: int = 128) -> np.ndarray:
    rows, columns = np.mgrid[:size, :size].astype(np.float64)
    return ((0.5 + 0.004 * columns + 0.002 * rows) + 1j * (0.01 * columns - 0.003 * rows))


def _positions(rng: np.random.Generator, count: int, *, integer: bool) -> np.ndarray:
    positions = rng.uniform(34, 94, size=(count, 2))
    return np.round(positions) if integer else positions


def _stitch_numpy(patches: np.ndarray, positions: np.ndarray, geometry: CanvasGeometry, *,
                  chunk: int) -> np.ndarray:
    lazy = stitch(da.from_array(patches, chunks=(chunk, N, N)),
                  da.from_array(positions, chunks=(chunk, 2)), geometry=geometry, crop_size=CROP)
    return np.asarray(lazy.compute(scheduler="sync"))


def test_integer_positions_reproduce_object() -> None:
    obj = _ramp_object()
    positions = _positions(np.random.default_rng(0), 200, integer=True)
    patches = extract_patches_np(obj, positions, N)
    geometry = canvas_geometry((0, 0), (0, 0), object_shape=obj.shape)

    stitched = _stitch_numpy(patches, positions, geometry, chunk=64)

    covered = partial_canvas(patches, positions, crop_size=CROP, geometry=geometry)[2] > 0.5
    np.testing.assert_allclose(stitched[covered], obj[covered], atol=1e-5)


def test_subpixel_positions_keep_flat_object() -> None:
    obj = np.full((128, 128), 0.8 * np.exp(0.3j), dtype=np.complex64)
    positions = _positions(np.random.default_rng(1), 150, integer=False)
    patches = extract_patches_np(obj, positions, N)
    geometry = canvas_geometry(positions.min(axis=0), positions.max(axis=0), crop_size=CROP)

    stitched = _stitch_numpy(patches, positions, geometry, chunk=40)

    covered = partial_canvas(patches, positions, crop_size=CROP, geometry=geometry)[2] > 1e-3
    np.testing.assert_allclose(stitched[covered], obj[0, 0], rtol=1e-5)


def test_subpixel_shift_moves_content() -> None:
    obj = _ramp_object()
    position = np.array([[60.25, 70.5]])
    patch = extract_patches_np(obj, position, N)
    geometry = canvas_geometry((0, 0), (0, 0), object_shape=obj.shape)

    canvas = partial_canvas(patch, position, crop_size=CROP, geometry=geometry)

    full_weight = canvas[2] > 1 - 1e-9
    stitched = (canvas[0] + 1j * canvas[1])[full_weight] / canvas[2][full_weight]
    np.testing.assert_allclose(stitched, obj[full_weight], atol=1e-5)


def test_result_independent_of_chunking() -> None:
    rng = np.random.default_rng(2)
    positions = rng.uniform(20, 200, size=(500, 2))
    patches = (rng.normal(size=(500, N, N)) + 1j * rng.normal(size=(500, N, N)))
    patches = patches.astype(np.complex64)
    geometry = canvas_geometry(positions.min(axis=0), positions.max(axis=0), crop_size=CROP)

    results = [_stitch_numpy(patches, positions, geometry, chunk=chunk) for chunk in (7, 64, 500)]

    scale = np.max(np.abs(results[-1]))
    for result in results[:-1]:
        assert np.max(np.abs(result - results[-1])) / scale <= 1e-6


def test_canvas_holds_every_crop() -> None:
    positions = np.array([[10.3, 5.7], [40.9, 33.1]])
    geometry = canvas_geometry(positions.min(axis=0), positions.max(axis=0), crop_size=CROP)
    patches = np.ones((2, N, N), np.complex64)

    weight = partial_canvas(patches, positions, crop_size=CROP, geometry=geometry)[2]

    assert weight.sum() == pytest.approx(2 * CROP * CROP)


def test_object_frame_clips_outside_crops() -> None:
    positions = np.array([[2.0, 3.0], [30.0, 30.0]])
    geometry = canvas_geometry((0, 0), (0, 0), object_shape=(64, 64))
    patches = np.ones((2, N, N), np.complex64)

    weight = partial_canvas(patches, positions, crop_size=CROP, geometry=geometry)[2]

    assert weight.sum() == pytest.approx(CROP * CROP + 12 * 13)


def test_uncovered_pixels_are_zero() -> None:
    positions = np.array([[50.0, 50.0]])
    patches = np.full((1, N, N), 2 + 1j, np.complex64)
    geometry = canvas_geometry((0, 0), (0, 0), object_shape=(100, 100))

    stitched = _stitch_numpy(patches, positions, geometry, chunk=1)

    assert stitched[0, 0] == 0


def test_crop_size_above_patch_rejected() -> None:
    patches = np.zeros((1, N, N), np.complex64)
    positions = np.zeros((1, 2))
    geometry = CanvasGeometry((0, 0), (8, 8))
    with pytest.raises(InvalidInputError, match=r"stitch crop size 40 is outside \(0, N\]"):
        stitch(patches, positions, geometry=geometry, crop_size=40)


def test_mismatched_positions_rejected() -> None:
    patches = np.zeros((3, N, N), np.complex64)
    positions = np.zeros((2, 2))
    geometry = CanvasGeometry((0, 0), (8, 8))
    with pytest.raises(InvalidInputError, match="do not match"):
        stitch(patches, positions, geometry=geometry)
