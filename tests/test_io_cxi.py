"""Tests of the CXI (HDF5) converter, and the PETRA III near-field acceptance case."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from io_samples import write_cxi

import ptychozarr
from ptychozarr.errors import InvalidInputError, MissingKeyError
from ptychozarr.io.geometry import HC_EV_M


def _convert(tmp_path: Path, source: Path, **settings: object) -> xr.Dataset:
    store = ptychozarr.convert(source, tmp_path / "cxi.zarr", overwrite=True, **settings)
    return ptychozarr.open_dataset(store)


def test_far_field_positions_in_object_pixels(tmp_path: Path) -> None:
    sample = write_cxi(tmp_path / "a.cxi")
    dataset = _convert(tmp_path, tmp_path / "a.cxi")
    pixel_size = (HC_EV_M / 8000) * 2.0 / (32 * 75e-6)
    assert dataset.attrs["object_pixel_size_m"] == pytest.approx(pixel_size)
    x = -sample["translation"][:, 0] / pixel_size
    assert np.allclose(dataset["xcoords"].values, x - x.min() + 16)
    assert dataset["ycoords"].values.min() == pytest.approx(16.0)
    assert dataset["xcoords"].attrs["units"] == "pixel"


def test_counts_become_amplitudes(tmp_path: Path) -> None:
    sample = write_cxi(tmp_path / "a.cxi")
    dataset = _convert(tmp_path, tmp_path / "a.cxi")
    expected = np.sqrt(sample["counts"].astype(np.float64)).astype(np.float32)
    assert np.array_equal(dataset["diffraction"].values, expected)
    assert dataset.attrs["amplitude_scale"] == "counts"
    assert dataset.attrs["nphotons"] == pytest.approx(sample["counts"].sum() / 12)


def test_metadata_units(tmp_path: Path) -> None:
    write_cxi(tmp_path / "a.cxi")
    attrs = _convert(tmp_path, tmp_path / "a.cxi").attrs
    assert attrs["energy_ev"] == pytest.approx(8000.0)
    assert attrs["wavelength_m"] == pytest.approx(HC_EV_M / 8000)
    assert attrs["detector_distance_m"] == 2.0
    assert attrs["detector_pixel_size_m"] == 75e-6
    assert attrs["propagation"] == "far_field"


def test_mask_marks_bad_pixels_invalid(tmp_path: Path) -> None:
    write_cxi(tmp_path / "a.cxi")
    mask = _convert(tmp_path, tmp_path / "a.cxi")["mask"].values
    assert mask.dtype == bool
    assert not mask[3, 5]
    assert mask.sum() == 32 * 32 - 1


def test_axis_flips_and_swap(tmp_path: Path) -> None:
    sample = write_cxi(tmp_path / "a.cxi")
    dataset = _convert(tmp_path, tmp_path / "a.cxi", flip_x=True, swap_xy=True,
                       shift_positions="no")
    pixel_size = dataset.attrs["object_pixel_size_m"]
    assert np.allclose(dataset["ycoords"].values, sample["translation"][:, 0] / pixel_size)
    assert np.allclose(dataset["xcoords"].values, -sample["translation"][:, 1] / pixel_size)
    assert dataset.attrs["conventions"]["swap_xy"] is True


def test_near_field_keeps_metres(tmp_path: Path) -> None:
    sample = write_cxi(tmp_path / "a.cxi")
    dataset = _convert(tmp_path, tmp_path / "a.cxi", near_field=True)
    assert np.array_equal(dataset["xcoords"].values, -sample["translation"][:, 0])
    assert dataset["xcoords"].attrs["units"] == "m"
    assert "object_pixel_size_m" not in dataset.attrs


def test_crop_and_bin_pixel_size(tmp_path: Path) -> None:
    write_cxi(tmp_path / "a.cxi")
    dataset = _convert(tmp_path, tmp_path / "a.cxi", crop=16, center="16,16", bin=2)
    assert dataset["diffraction"].shape == (12, 8, 8)
    assert dataset.attrs["detector_pixel_size_m"] == pytest.approx(150e-6)
    assert dataset.attrs["object_pixel_size_m"] == pytest.approx(
        (HC_EV_M / 8000) * 2.0 / (8 * 150e-6))


def test_far_field_needs_geometry(tmp_path: Path) -> None:
    write_cxi(tmp_path / "a.cxi")
    with h5py.File(tmp_path / "a.cxi", "a") as file:
        del file["entry_1/instrument_1/detector_1/distance"]
    with pytest.raises(InvalidInputError, match=r"\['detector_distance_m'\] are missing"):
        _convert(tmp_path, tmp_path / "a.cxi")
    assert not (tmp_path / "cxi.zarr").exists()


def test_translation_count_mismatch(tmp_path: Path) -> None:
    write_cxi(tmp_path / "a.cxi")
    with h5py.File(tmp_path / "a.cxi", "a") as file:
        del file["entry_1/sample_1/geometry_1/translation"]
        file["entry_1/sample_1/geometry_1/translation"] = np.zeros((5, 3))
    with pytest.raises(InvalidInputError, match="has 5 translations but the detector data"):
        _convert(tmp_path, tmp_path / "a.cxi")


def test_hdf5_without_entry(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "plain.h5", "w") as file:
        file["images"] = np.zeros((2, 4, 4))
    with pytest.raises(MissingKeyError, match="not a CXI file"):
        _convert(tmp_path, tmp_path / "plain.h5")


@pytest.mark.realdata
def test_petra_near_field_acceptance(tmp_path: Path, petra_cxi_path: Path) -> None:
    dataset = _convert(tmp_path, petra_cxi_path, near_field=True)
    with h5py.File(petra_cxi_path, "r") as file:
        counts = file["entry_1/instrument_1/detector_1/data"][:3]
        translation = file["entry_1/sample_1/geometry_1/translation"][()]
        bad = file["entry_1/instrument_1/detector_1/mask"][()]
    assert dataset["diffraction"].shape == (200, 100, 100)
    assert np.array_equal(dataset["diffraction"].values[:3],
                          np.sqrt(counts.astype(np.float64)).astype(np.float32))
    assert np.array_equal(dataset["xcoords"].values, -translation[:, 0].astype(np.float64))
    assert dataset["xcoords"].attrs["units"] == "m"
    assert int((~dataset["mask"].values).sum()) == int(np.count_nonzero(bad))
    assert dataset.attrs["energy_ev"] == pytest.approx(12658, rel=1e-3)
    assert dataset.attrs["detector_distance_m"] == 1.12
    assert dataset.attrs["detector_pixel_size_m"] == 55e-6
    assert dataset.attrs["propagation"] == "near_field"
    assert dataset.attrs["provenance"]["source_sha256"].startswith("561a0373")
