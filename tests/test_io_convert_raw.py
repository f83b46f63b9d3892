"""Tests of the raw NPZ converter: layouts, key names, counts, attributes and xarray views."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from io_samples import write_npz, write_raw_npz

import ptychozarr
from ptychozarr.errors import InvalidInputError
from ptychozarr.io.frames import ScanLastNpzFrames
from ptychozarr.io.npz import NpzArchive
from ptychozarr.workflows import convert as convert_workflow


def test_raw_npz_values_round_trip(tmp_path: Path) -> None:
    arrays = write_raw_npz(tmp_path / "raw.npz")
    store = ptychozarr.convert(tmp_path / "raw.npz", tmp_path / "raw.zarr", chunk_frames=16)
    dataset = ptychozarr.open_dataset(store)
    assert np.array_equal(dataset["diffraction"].values, arrays["diffraction"])
    assert np.array_equal(dataset["xcoords"].values, arrays["xcoords"])
    assert np.array_equal(dataset["ycoords_start"].values, arrays["ycoords_start"])
    assert np.array_equal(dataset["scan_index"].values, arrays["scan_index"])
    assert np.array_equal(dataset["probe"].values, arrays["probeGuess"])
    assert np.array_equal(dataset["object"].values, arrays["objectGuess"])
    assert np.array_equal(dataset["object_patches"].values, arrays["Y"])


def test_raw_npz_dtypes_and_chunks(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "raw.npz")
    store = ptychozarr.convert(tmp_path / "raw.npz", tmp_path / "raw.zarr", chunk_frames=16)
    group = zarr.open_group(store, mode="r")
    expected = {"diffraction": "float32", "xcoords": "float64", "scan_index": "int32",
                "probe": "complex64", "object": "complex64", "object_patches": "complex64"}
    for name, dtype in expected.items():
        assert group[name].dtype == np.dtype(dtype), name
    assert group["diffraction"].chunks == (16, 16, 16)
    assert group["object_patches"].chunks == (16, 16, 16)


def test_raw_npz_attributes(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "raw.npz")
    store = ptychozarr.convert(tmp_path / "raw.npz", tmp_path / "raw.zarr")
    attrs = ptychozarr.open_dataset(store).attrs
    sha256 = hashlib.sha256((tmp_path / "raw.npz").read_bytes()).hexdigest()
    assert attrs["provenance"]["source_sha256"] == sha256
    assert attrs["provenance"]["source_name"] == "raw.npz"
    assert attrs["provenance"]["ptychozarr_version"] == ptychozarr.__version__
    assert attrs["amplitude_scale"] == "arbitrary"
    assert attrs["nphotons"] == 1e9
    assert attrs["source_metadata"] == {"nphotons": 1e9, "physics_parameters": {"N": 16}}
    assert attrs["conventions"]["diffraction_key"] == "diffraction"
    assert "energy_ev" not in attrs


def test_diff3d_key_name(tmp_path: Path) -> None:
    arrays = write_raw_npz(tmp_path / "d.npz", drop=("diffraction",),
                           diff3d=np.ones((40, 16, 16), np.float32))
    store = ptychozarr.convert(tmp_path / "d.npz", tmp_path / "d.zarr")
    dataset = ptychozarr.open_dataset(store)
    assert np.array_equal(dataset["diffraction"].values, arrays["diff3d"])
    assert dataset.attrs["conventions"]["diffraction_key"] == "diff3d"


@pytest.mark.parametrize("fortran", [False, True], ids=["c-order", "fortran-order"])
def test_legacy_layout(tmp_path: Path, fortran: bool) -> None:
    arrays = write_raw_npz(tmp_path / "raw.npz")
    legacy = arrays["diffraction"].transpose(1, 2, 0)
    legacy = np.asfortranarray(legacy) if fortran else np.ascontiguousarray(legacy)
    write_raw_npz(tmp_path / "legacy.npz", diffraction=legacy)
    store = ptychozarr.convert(tmp_path / "legacy.npz", tmp_path / "l.zarr", chunk_frames=7)
    dataset = ptychozarr.open_dataset(store)
    assert np.array_equal(dataset["diffraction"].values, arrays["diffraction"])
    assert dataset.attrs["conventions"]["layout"] == "scan-last"
    assert not (tmp_path / "l.zarr" / ".scratch").exists()


def test_fortran_scan_first_layout(tmp_path: Path) -> None:
    arrays = write_raw_npz(tmp_path / "raw.npz")
    write_raw_npz(tmp_path / "f.npz", diffraction=np.asfortranarray(arrays["diffraction"]))
    store = ptychozarr.convert(tmp_path / "f.npz", tmp_path / "f.zarr", chunk_frames=9)
    assert np.array_equal(ptychozarr.open_dataset(store)["diffraction"].values,
                          arrays["diffraction"])


def test_rechunk_in_partial_lines(tmp_path: Path) -> None:
    # A budget below one row of frames makes the rechunk copy a few lines (kx) at a time.
    frames = np.random.default_rng(3).random((12, 10, 30)).astype(np.float32)
    np.savez(tmp_path / "legacy.npz", diffraction=frames)
    archive = NpzArchive(tmp_path / "legacy.npz", (tmp_path / "legacy.npz").open("rb"))
    reader = ScanLastNpzFrames("legacy", archive, archive.header("diffraction"),
                               tmp_path / "scratch", budget_bytes=30 * 4 * 4)
    reader.prepare()
    slabs = list(reader.slabs(0, 8))
    assert [slab.shape for slab in slabs] == [(8, 12, 10), (8, 12, 10), (8, 12, 10),
                                              (6, 12, 10)]
    assert np.array_equal(np.concatenate(slabs), frames.transpose(2, 0, 1))


def test_uint16_counts_above_255(tmp_path: Path) -> None:
    counts = np.random.default_rng(4).integers(0, 60000, (40, 16, 16)).astype(np.uint16)
    counts[0, 0, 0] = 65535
    write_raw_npz(tmp_path / "c.npz", diffraction=counts)
    status = convert_workflow.main([str(tmp_path / "c.npz"), str(tmp_path / "c.zarr"),
                                    "--intensity", "--no-progress"])
    assert status == 0
    dataset = ptychozarr.open_dataset(tmp_path / "c.zarr")
    expected = np.sqrt(counts.astype(np.float64)).astype(np.float32)
    assert np.array_equal(dataset["diffraction"].values, expected)
    assert dataset.attrs["amplitude_scale"] == "counts"
    assert dataset["diffraction"].attrs["units"] == "sqrt(photons)"
    assert dataset.attrs["nphotons"] == pytest.approx(counts.astype(np.float64).sum() / 40)


def test_integer_data_need_scale(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "c.npz", diffraction=np.ones((40, 16, 16), np.uint16))
    with pytest.raises(InvalidInputError, match="Pass --intensity for counts"):
        ptychozarr.convert(tmp_path / "c.npz", tmp_path / "c.zarr")
    assert not (tmp_path / "c.zarr.partial").exists()


def test_open_dataset_positions_are_coordinates(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "raw.npz")
    store = ptychozarr.convert(tmp_path / "raw.npz", tmp_path / "raw.zarr")
    dataset = ptychozarr.open_dataset(store)
    assert {"xcoords", "ycoords", "xcoords_start", "ycoords_start"} <= set(dataset.coords)
    assert dataset["diffraction"].dims == ("scan", "ky", "kx")
    assert dataset["xcoords"].attrs["units"] == "pixel"
    tree = ptychozarr.open_datatree(store)
    assert "xcoords" in tree.to_dataset().coords


def test_plain_xarray_opens_store(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "raw.npz")
    store = ptychozarr.convert(tmp_path / "raw.npz", tmp_path / "raw.zarr")
    script = (
        "import sys, xarray\n"
        f"ds = xarray.open_zarr({str(store)!r})\n"
        "assert 'xcoords' in ds.coords and 'ycoords' in ds.coords, ds\n"
        "assert ds['diffraction'].dims == ('scan', 'ky', 'kx')\n"
        "assert not [m for m in sys.modules if m.startswith('ptychozarr')]\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", script],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_uncompressed_npz_accepted(tmp_path: Path) -> None:
    arrays = write_raw_npz(tmp_path / "u.npz", compressed=False)
    store = ptychozarr.convert(tmp_path / "u.npz", tmp_path / "u.zarr")
    assert np.array_equal(ptychozarr.open_dataset(store)["diffraction"].values,
                          arrays["diffraction"])


def test_trailing_singleton_axis_squeezed(tmp_path: Path) -> None:
    arrays = write_raw_npz(tmp_path / "raw.npz")
    write_npz(tmp_path / "s.npz", {**arrays, "diffraction": arrays["diffraction"][..., None],
                                   "Y": arrays["Y"][..., None]})
    store = ptychozarr.convert(tmp_path / "s.npz", tmp_path / "s.zarr")
    dataset = ptychozarr.open_dataset(store)
    assert dataset["diffraction"].shape == (40, 16, 16)
    assert np.array_equal(dataset["object_patches"].values, arrays["Y"])
