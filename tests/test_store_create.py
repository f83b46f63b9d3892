"""Tests of store creation: codecs, chunking, atomic publication, locks and subgroups."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from ptychozarr.errors import OutputExistsError, StoreLockedError
from ptychozarr.store import RAW_ARRAYS, StoreWriter, open_store, stage_subgroup
from ptychozarr.store.schema import GROUP_ARRAYS


def _write_minimal(
    path: Path, n_scan: int = 10, *, chunk_frames: int = 4, **kwargs: object
) -> Path:
    rng = np.random.default_rng(0)
    with StoreWriter(path, **kwargs) as writer:  # type: ignore[arg-type]
        writer.create_array(RAW_ARRAYS["diffraction"], (n_scan, 8, 8), chunk_frames=chunk_frames)
        writer.create_array(RAW_ARRAYS["xcoords"], (n_scan,), chunk_frames=chunk_frames)
        writer.create_array(RAW_ARRAYS["ycoords"], (n_scan,), chunk_frames=chunk_frames)
        data = rng.random((n_scan, 8, 8), dtype=np.float32)
        for start in range(0, n_scan, chunk_frames):
            writer.write_frames("diffraction", start, data[start:start + chunk_frames])
        writer.write_whole("xcoords", np.arange(n_scan, dtype=np.float64))
        writer.write_whole("ycoords", np.arange(n_scan, dtype=np.float64))
        writer.commit()
    return path


def test_writer_publishes_complete_store(tmp_path: Path) -> None:
    store = _write_minimal(tmp_path / "a.zarr")
    group = open_store(store)
    diffraction = group["diffraction"]
    assert isinstance(diffraction, zarr.Array)
    assert diffraction.chunks == (4, 8, 8)
    assert diffraction.metadata.dimension_names == ("scan", "ky", "kx")
    assert diffraction.attrs["units"] == "sqrt(photons)"
    codec_names = [type(codec).__name__ for codec in diffraction.metadata.codecs]
    assert "ZstdCodec" in codec_names
    assert "Crc32cCodec" in codec_names
    assert not (tmp_path / "a.zarr.partial").exists()
    assert not (tmp_path / "a.zarr.lock").exists()


def test_writer_rejects_existing_output(tmp_path: Path) -> None:
    store = _write_minimal(tmp_path / "a.zarr")
    with pytest.raises(OutputExistsError, match="Pass --overwrite"):
        _write_minimal(store)
    _write_minimal(store, overwrite=True)
    assert open_store(store)["diffraction"].shape == (10, 8, 8)


def test_failed_write_leaves_no_final_store(tmp_path: Path) -> None:
    store = tmp_path / "b.zarr"
    with pytest.raises(RuntimeError), StoreWriter(store) as writer:
        writer.create_array(RAW_ARRAYS["diffraction"], (4, 8, 8))
        raise RuntimeError("interrupted")
    assert not store.exists()
    assert (tmp_path / "b.zarr.partial").exists()
    with pytest.raises(OutputExistsError, match="--resume"):
        _write_minimal(store)
    _write_minimal(store, resume=True)
    assert store.exists()


def test_live_lock_rejects_second_writer(tmp_path: Path) -> None:
    store = tmp_path / "c.zarr"
    lock = tmp_path / "c.zarr.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(StoreLockedError, match="another process"):
        _write_minimal(store)
    assert not store.exists()


def test_stale_lock_needs_resume(tmp_path: Path) -> None:
    store = tmp_path / "d.zarr"
    lock = tmp_path / "d.zarr.lock"
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    with pytest.raises(StoreLockedError, match="no longer runs"):
        _write_minimal(store)
    _write_minimal(store, resume=True)
    assert store.exists()
    assert not lock.exists()


def test_stage_subgroup_is_atomic(tmp_path: Path) -> None:
    store = _write_minimal(tmp_path / "e.zarr")
    with pytest.raises(ValueError), stage_subgroup(store, "groups/broken") as group:
        group.create_array("indices", shape=(2, 1), dtype="int32")
        raise ValueError("stop")
    assert not (store / "groups" / "broken").exists()

    with stage_subgroup(store, "groups/ok", attrs={"gridsize": 1}) as group:
        from ptychozarr.store import create_array

        create_array(group, GROUP_ARRAYS["indices"], (3, 1))[:] = np.arange(3).reshape(3, 1)
    reopened = open_store(store)
    assert reopened["groups/ok"].attrs["gridsize"] == 1
    assert reopened["groups/ok/indices"][:].ravel().tolist() == [0, 1, 2]
    with pytest.raises(OutputExistsError), stage_subgroup(store, "groups/ok"):
        pass
