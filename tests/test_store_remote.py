"""Tests of opening stores through fsspec URLs and from a zip of a finished store."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ptychozarr
from ptychozarr.errors import InputFileError, StoreSchemaError
from ptychozarr.store import GROUP_ARRAYS, RAW_ARRAYS, StoreWriter, create_array, stage_subgroup

N_SCAN = 10
CHUNK_FRAMES = 4


def _write_store(path: Path) -> Path:
    """Write a small store with raw arrays, one grouped view and one prediction run."""
    rng = np.random.default_rng(1)
    diffraction = rng.random((N_SCAN, 8, 8), dtype=np.float32)
    with StoreWriter(path) as writer:
        writer.create_array(RAW_ARRAYS["diffraction"], diffraction.shape,
                            chunk_frames=CHUNK_FRAMES)
        for start in range(0, N_SCAN, CHUNK_FRAMES):
            writer.write_frames("diffraction", start, diffraction[start:start + CHUNK_FRAMES])
        for name in ("xcoords", "ycoords"):
            writer.create_array(RAW_ARRAYS[name], (N_SCAN,), chunk_frames=CHUNK_FRAMES)
            writer.write_whole(name, np.arange(N_SCAN, dtype=np.float64) + 8)
        writer.set_attrs({"nphotons": 1e6, "amplitude_scale": "counts"})
        writer.commit()

    with stage_subgroup(path, "groups/g1", attrs={"gridsize": 1}) as group:
        offsets = create_array(group, GROUP_ARRAYS["offsets"], (N_SCAN, 2))
        offsets[...] = np.full((N_SCAN, 2), 8.0)
    with stage_subgroup(path, "predictions/pinn/run-1", attrs={"bundle": "b"}) as run:
        placements = create_array(run, GROUP_ARRAYS["offsets"], (N_SCAN, 2))
        placements[...] = np.ones((N_SCAN, 2))
    return path


def _node_paths(tree: object) -> set[str]:
    return {node.path for node in tree.subtree}  # type: ignore[attr-defined]


def _zip_contents(store: Path, archive: Path, *, top_folder: str = "") -> Path:
    """Zip the files of ``store`` with ``zarr.json`` at the archive root (or under a folder)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as handle:
        for file in sorted(store.rglob("*")):
            if file.is_file():
                handle.write(file, top_folder + file.relative_to(store).as_posix())
    return archive


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _write_store(tmp_path / "sim.zarr")


def test_file_url_dataset_matches_local(store: Path) -> None:
    local = ptychozarr.open_dataset(store)
    remote = ptychozarr.open_dataset(store.as_uri())
    np.testing.assert_array_equal(remote.diffraction.values, local.diffraction.values)
    assert remote.diffraction.dims == ("scan", "ky", "kx")
    assert remote.diffraction.attrs["units"] == "sqrt(photons)"
    assert "xcoords" in remote.coords
    assert remote.attrs["nphotons"] == 1e6


def test_file_url_datatree_lists_groups_and_runs(store: Path) -> None:
    tree = ptychozarr.open_datatree(store.as_uri())
    assert "/groups/g1" in _node_paths(tree)
    assert "/predictions/pinn/run-1" in _node_paths(tree)
    offsets = tree["groups/g1"].ds["offsets"]
    assert offsets.dims == ("group", "xy")
    assert offsets.attrs["units"] == "pixel"


def test_file_url_opening_reads_no_chunk(store: Path) -> None:
    dataset = ptychozarr.open_dataset(store.as_uri())
    shutil.rmtree(store / "diffraction" / "c")
    # Chunks removed after opening read back as the fill value: nothing was loaded at open time.
    assert float(dataset.diffraction.sum()) == 0.0


def test_file_url_store_group(store: Path) -> None:
    group = ptychozarr.open_store(store.as_uri())
    assert group["diffraction"].shape == (N_SCAN, 8, 8)


def test_file_url_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreSchemaError, match="not a Zarr v3 group"):
        ptychozarr.open_store((tmp_path / "absent.zarr").as_uri())


def test_zip_dataset_matches_directory(store: Path, tmp_path: Path) -> None:
    archive = _zip_contents(store, tmp_path / "sim.zip")
    from_zip = ptychozarr.open_dataset(archive)
    np.testing.assert_array_equal(from_zip.diffraction.values,
                                  ptychozarr.open_dataset(store).diffraction.values)
    assert from_zip.xcoords.attrs["units"] == "pixel"


def test_zip_datatree_lists_groups_and_runs(store: Path, tmp_path: Path) -> None:
    tree = ptychozarr.open_datatree(_zip_contents(store, tmp_path / "sim.zip"))
    assert "/groups/g1" in _node_paths(tree)
    assert "/predictions/pinn/run-1" in _node_paths(tree)
    np.testing.assert_array_equal(tree["groups/g1"].ds["offsets"].values,
                                  np.full((N_SCAN, 2), 8.0))


def test_zip_is_read_only(store: Path, tmp_path: Path) -> None:
    archive = _zip_contents(store, tmp_path / "sim.zip")
    with pytest.raises(StoreSchemaError, match="a zipped store is read-only"):
        ptychozarr.open_store(archive, mode="r+")


def test_zip_through_fsspec_url(store: Path, tmp_path: Path) -> None:
    archive = _zip_contents(store, tmp_path / "sim.zip")
    dataset = ptychozarr.open_dataset(f"zip::{archive.as_uri()}")
    assert dataset.diffraction.shape == (N_SCAN, 8, 8)


def test_zip_with_top_folder_explains_layout(store: Path, tmp_path: Path) -> None:
    archive = _zip_contents(store, tmp_path / "nested.zip", top_folder="sim.zarr/")
    with pytest.raises(StoreSchemaError, match=r"contains the store under 'sim\.zarr/'"):
        ptychozarr.open_dataset(archive)


def test_zip_unreadable_archive(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="not a readable zip file"):
        ptychozarr.open_dataset(archive)
