"""Tests of the grouped (model-ready) NPZ converter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from io_samples import write_grouped_npz

import ptychozarr
from ptychozarr.errors import InvalidInputError

GROUP = "groups/imported-g2-n20"


@pytest.fixture()
def grouped(tmp_path: Path) -> tuple[dict[str, Any], zarr.Group]:
    arrays = write_grouped_npz(tmp_path / "g.npz")
    store = ptychozarr.convert(tmp_path / "g.npz", tmp_path / "g.zarr", chunk_frames=8)
    return arrays, zarr.open_group(store, mode="r")


def test_raw_rows_from_first_occurrence(grouped: tuple[dict[str, Any], zarr.Group]) -> None:
    arrays, store = grouped
    rows = np.unique(arrays["nn_indices"])
    assert np.array_equal(store["scan_index"][:], rows)
    expected = arrays["_alpha"] * arrays["_amplitude"][rows]
    assert np.allclose(store["diffraction"][:], expected, rtol=1e-6)
    assert store["diffraction"].attrs["amplitude_scale"] == "arbitrary"


def test_positions_from_offsets(grouped: tuple[dict[str, Any], zarr.Group]) -> None:
    arrays, store = grouped
    rows = np.unique(arrays["nn_indices"])
    assert np.allclose(store["xcoords"][:], arrays["_positions"][rows, 0])
    assert np.allclose(store["ycoords"][:], arrays["_positions"][rows, 1])


def test_group_view_keeps_grouping(grouped: tuple[dict[str, Any], zarr.Group]) -> None:
    arrays, store = grouped
    rows = np.unique(arrays["nn_indices"])
    indices = store[f"{GROUP}/indices"][:]
    assert np.array_equal(rows[indices], arrays["nn_indices"])
    assert np.array_equal(store[f"{GROUP}/X"][:], arrays["X"])
    assert np.array_equal(store[f"{GROUP}/Y_phi"][:], arrays["Y_phi"])
    assert store[f"{GROUP}/X"].chunks == (8, 16, 16, 4)
    member = store[f"{GROUP}/offsets"][:][:, np.newaxis, :] - store[f"{GROUP}/relative"][:]
    assert np.allclose(member, arrays["_positions"][arrays["nn_indices"]])


def test_group_attributes(grouped: tuple[dict[str, Any], zarr.Group]) -> None:
    arrays, store = grouped
    attrs = store[GROUP].attrs
    mean_energy = np.mean(np.sum(np.square(arrays["X"].astype(np.float64)), axis=(1, 2)))
    assert attrs["gridsize"] == 2
    assert attrs["n_groups"] == 20
    assert attrs["n"] == 16
    assert attrs["alpha"] == 1.0
    assert attrs["intensity_scale"] == 123.0
    assert attrs["nphotons"] == pytest.approx(123.0**2 * mean_energy)
    assert attrs["has_ground_truth"] is True
    assert attrs["ptychozarr"]["kind"] == "group"
    assert store.attrs["nphotons"] == pytest.approx(attrs["nphotons"])


def test_placeholder_truth_not_stored(tmp_path: Path) -> None:
    shape = (20, 16, 16, 4)
    write_grouped_npz(tmp_path / "g.npz", Y_I=np.ones(shape, np.float32),
                      Y_phi=np.zeros(shape, np.float32))
    store = zarr.open_group(ptychozarr.convert(tmp_path / "g.npz", tmp_path / "g.zarr"),
                            mode="r")
    assert store[GROUP].attrs["has_ground_truth"] is False
    assert "Y_I" not in store[GROUP]


def test_inconsistent_offsets_rejected(tmp_path: Path) -> None:
    arrays = write_grouped_npz(tmp_path / "ok.npz")
    local = arrays["local_offsets"].copy()
    local[0, 0, 0, 0] += 5.0
    write_grouped_npz(tmp_path / "g.npz", local_offsets=local)
    with pytest.raises(InvalidInputError, match="place the same pattern 5 pixels apart"):
        ptychozarr.convert(tmp_path / "g.npz", tmp_path / "g.zarr")
    assert not (tmp_path / "g.zarr.partial").exists()


def test_probe_shape_checked(tmp_path: Path) -> None:
    write_grouped_npz(tmp_path / "g.npz", probe=np.ones((8, 8), np.complex64))
    with pytest.raises(InvalidInputError, match=r"probe has shape \(8, 8\)"):
        ptychozarr.convert(tmp_path / "g.npz", tmp_path / "g.zarr")
