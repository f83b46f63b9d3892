"""Tests of NPZ files with other tools' conventions, and the Siemens-star acceptance case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from io_samples import write_npz

import ptychozarr
from ptychozarr.errors import InvalidInputError
from ptychozarr.io.options import ConvertOptions

SIDE = 16


def _spot_frames(n_frames: int, row: int, col: int) -> np.ndarray:
    frames = np.zeros((n_frames, SIDE, SIDE), np.float32)
    frames[:, row, col] = 100.0
    return frames


def _other_tool_file(path: Path, **changes: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    arrays = {
        "data": _spot_frames(10, 0, 0)[np.newaxis],
        "scan": rng.uniform(-20, 20, (1, 10, 2)).astype(np.float32),
        "probe": np.ones((1, 1, SIDE, SIDE), np.complex64),
    }
    arrays.update(changes)
    write_npz(path, arrays)
    return arrays


def _convert(tmp_path: Path, **settings: object) -> xr.Dataset:
    store = ptychozarr.convert(tmp_path / "other.npz", tmp_path / "other.zarr",
                               overwrite=True, **settings)
    return ptychozarr.open_dataset(store)


def test_dc_at_corner_is_centred(tmp_path: Path) -> None:
    _other_tool_file(tmp_path / "other.npz")
    dataset = _convert(tmp_path, preset="tike")
    peak = np.argwhere(dataset["diffraction"].values[0]).tolist()
    assert peak == [[SIDE // 2, SIDE // 2]]
    assert dataset["diffraction"].values[0, 8, 8] == pytest.approx(10.0)
    assert dataset.attrs["conventions"]["dc_position"] == "corner"


def test_rowcol_corners_become_centres(tmp_path: Path) -> None:
    arrays = _other_tool_file(tmp_path / "other.npz")
    dataset = _convert(tmp_path, preset="tike")
    rows, cols = arrays["scan"][0, :, 0], arrays["scan"][0, :, 1]
    shift = dataset.attrs["conventions"]["position_shift_px"]
    assert np.allclose(dataset["xcoords"].values, cols + SIDE / 2 + shift[0])
    assert np.allclose(dataset["ycoords"].values, rows + SIDE / 2 + shift[1])
    assert dataset["xcoords"].values.min() - SIDE / 2 == pytest.approx(0.0)
    assert dataset["ycoords"].values.min() - SIDE / 2 == pytest.approx(0.0)


def test_shift_can_be_disabled(tmp_path: Path) -> None:
    arrays = _other_tool_file(tmp_path / "other.npz")
    dataset = _convert(tmp_path, preset="tike", shift_positions="no")
    assert np.allclose(dataset["xcoords"].values, arrays["scan"][0, :, 1] + SIDE / 2)
    assert "position_shift_px" not in dataset.attrs["conventions"]


def test_xy_centres_in_metres(tmp_path: Path) -> None:
    positions = np.array([[1e-6, 2e-6], [3e-6, 5e-6]])
    _other_tool_file(tmp_path / "other.npz", data=_spot_frames(2, 8, 8), scan=positions)
    dataset = _convert(tmp_path, diffraction_key="data", positions_key="scan",
                       position_units="m", object_pixel_size_m=1e-7, shift_positions="no")
    assert np.allclose(dataset["xcoords"].values, [10.0, 30.0])
    assert np.allclose(dataset["ycoords"].values, [20.0, 50.0])
    assert dataset["xcoords"].attrs["units"] == "pixel"
    assert dataset.attrs["object_pixel_size_m"] == 1e-7


def test_metres_kept_without_pixel_size(tmp_path: Path) -> None:
    positions = np.array([[1e-6, 2e-6], [3e-6, 5e-6]])
    _other_tool_file(tmp_path / "other.npz", data=_spot_frames(2, 8, 8), scan=positions)
    dataset = _convert(tmp_path, diffraction_key="data", positions_key="scan",
                       position_units="m", near_field=True)
    assert np.array_equal(dataset["xcoords"].values, positions[:, 0])
    assert dataset["xcoords"].attrs["units"] == "m"
    assert dataset.attrs["propagation"] == "near_field"


def test_metre_corners_need_pixel_size(tmp_path: Path) -> None:
    _other_tool_file(tmp_path / "other.npz", data=_spot_frames(2, 8, 8),
                     scan=np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="object pixel size is unknown"):
        _convert(tmp_path, diffraction_key="data", positions_key="scan", position_units="m",
                 position_origin="corner")
    assert not (tmp_path / "other.zarr.partial").exists()


def test_far_field_metadata_gives_pixel_size(tmp_path: Path) -> None:
    positions = np.array([[0.0, 0.0], [1e-6, 0.0]])
    _other_tool_file(tmp_path / "other.npz", data=_spot_frames(2, 8, 8), scan=positions)
    dataset = _convert(tmp_path, diffraction_key="data", positions_key="scan",
                       position_units="m", energy_ev=1239.841984, detector_distance_m=1.0,
                       detector_pixel_size_m=1e-4, shift_positions="no")
    # lambda = 1 nm, so the object pixel is 1e-9 * 1 / (16 * 1e-4) = 625 nm.
    assert dataset.attrs["object_pixel_size_m"] == pytest.approx(6.25e-7)
    assert dataset.attrs["wavelength_m"] == pytest.approx(1e-9)
    assert np.allclose(dataset["xcoords"].values, [0.0, 1.6])


def test_crop_scales_pixel_positions(tmp_path: Path) -> None:
    arrays = _other_tool_file(tmp_path / "other.npz")
    dataset = _convert(tmp_path, preset="tike", crop=8, center="8,8", shift_positions="no")
    cols = arrays["scan"][0, :, 1]
    assert dataset["diffraction"].shape == (10, 8, 8)
    assert np.allclose(dataset["xcoords"].values, (cols + SIDE / 2) * 8 / SIDE)
    assert dataset["probe"].shape == (8, 8)
    assert dataset.attrs["conventions"]["detector"]["crop"] == 8


def test_preset_overrides_validated() -> None:
    with pytest.raises(InvalidInputError, match="unknown preset 'ptypy'"):
        ConvertOptions.from_preset("ptypy")
    with pytest.raises(InvalidInputError, match=r"unknown option\(s\) \['colour'\]"):
        ConvertOptions.from_dict({"colour": "red"})


@pytest.mark.realdata
def test_siemens_star_acceptance(tmp_path: Path, siemens_star_path: Path) -> None:
    store = ptychozarr.convert(siemens_star_path, tmp_path / "star.zarr", preset="tike",
                               crop=128, center="auto")
    dataset = ptychozarr.open_dataset(store)
    intensity = np.square(dataset["diffraction"].values.astype(np.float64)).mean(axis=0)
    rows, cols = np.indices(intensity.shape)
    centroid = (np.sum(rows * intensity) / intensity.sum(),
                np.sum(cols * intensity) / intensity.sum())
    assert dataset["diffraction"].shape == (516, 128, 128)
    assert np.hypot(centroid[0] - 64, centroid[1] - 64) < 2.0
    # The unshifted data have their brightest pixels at the corners; centred data do not.
    assert intensity[:8, :8].mean() < 0.01 * intensity.max()
    x, y = dataset["xcoords"].values, dataset["ycoords"].values
    assert min(x.min(), y.min()) - 64 == pytest.approx(0.0, abs=1e-9)
    assert dataset["xcoords"].attrs["units"] == "pixel"
    assert dataset.attrs["amplitude_scale"] == "counts"
    assert dataset.attrs["nphotons"] > 1e5
    assert dataset["probe"].shape == (128, 128)
    assert dataset["mask"].values.sum() < 128 * 128
