"""Corruption: a flipped byte in any stored chunk is found by verify and named on read.

The store contains every kind of array: raw per-pattern arrays, a grouped view and a published
prediction run. For each array in turn, one byte of a randomly chosen chunk is flipped. Then
``verify`` must report exactly that array and chunk, and reading the array through the reader
that serves it must raise :class:`CorruptedChunkError` naming the same array and chunk:
``open_dataset(...)`` for raw arrays, the training container for the grouped view, and the
prediction-run readers for results. A corrupted input chunk also stops an inference job
without publishing a run. A deleted chunk file, which Zarr reads as zeros, is reported by
verify.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from ptychozarr.container import LazyContainer
from ptychozarr.errors import CorruptedChunkError
from ptychozarr.inference import current_run, predict, read_run_object
from ptychozarr.store import open_dataset, open_datatree, open_store
from ptychozarr.store.verify import verify_store

GROUPED_VIEW = "synthetic"
"""Name of the grouped view that the ``grouped_store_factory`` fixture writes."""


@pytest.fixture(scope="module")
def full_store(tmp_path_factory: pytest.TempPathFactory, grouped_store_factory: Any,
               trained_pair: dict[str, Path], dask_client: Any) -> dict[str, Any]:
    """A 12-group store (chunks of 4) with a grouped view and a published PINN run."""
    store = grouped_store_factory(tmp_path_factory.mktemp("corruption") / "data.zarr",
                                  n_groups=12, chunk_groups=4)
    run_path = predict(store, GROUPED_VIEW, trained_pair["pinn"], client=dask_client,
                       batch_size=4, run="run")
    return {"store": store, "run_path": run_path}


def _arrays(store: Path) -> list[str]:
    root = open_store(store)
    return sorted(path for path, node in root.members(max_depth=None)
                  if isinstance(node, zarr.Array))


def _read_raw(store: Path, name: str) -> None:
    open_dataset(store)[name].compute()


def _read_grouped(store: Path, name: str) -> None:
    LazyContainer.open(store, group=GROUPED_VIEW).read_all([name.rsplit("/", 1)[-1]])


def _read_prediction(store: Path, name: str) -> None:
    run_path, array = name.rsplit("/", 1)
    if array == "object":
        read_run_object(store, run_path)
    else:
        open_datatree(store)[run_path][array].compute()


def _reader(name: str) -> Callable[[Path, str], None]:
    if name.startswith("groups/"):
        return _read_grouped
    if name.startswith("predictions/"):
        return _read_prediction
    return _read_raw


def _chunk_file(store: Path, name: str, chunk: tuple[int, ...]) -> Path:
    return store.joinpath(name, "c", *(str(index) for index in chunk))


def test_every_array_kind_present(full_store: dict[str, Any]) -> None:
    arrays = _arrays(full_store["store"])
    assert "diffraction" in arrays
    assert f"groups/{GROUPED_VIEW}/X" in arrays
    assert f"{full_store['run_path']}/patches" in arrays
    assert f"{full_store['run_path']}/object" in arrays
    assert len(arrays) == 16


def test_flipped_byte_found_and_named(full_store: dict[str, Any], tmp_path: Path) -> None:
    store = Path(shutil.copytree(full_store["store"], tmp_path / "data.zarr"))
    rng = np.random.default_rng(11)

    for name in _arrays(store):
        array = zarr.open_array(str(store / name), mode="r")
        chunk = tuple(int(rng.integers(count)) for count in array.cdata_shape)
        path = _chunk_file(store, name, chunk)
        intact = path.read_bytes()
        corrupted = bytearray(intact)
        corrupted[int(rng.integers(len(intact)))] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(corrupted))

        report = verify_store(store)
        named = re.escape(f"array {name!r}, chunk {chunk!r}")
        with pytest.raises(CorruptedChunkError, match=named):
            _reader(name)(store, name)
        path.write_bytes(intact)

        assert [(failure.array, failure.chunk) for failure in report.failures] == [
            (name, chunk)], name
        assert "CRC32C checksum mismatch" in report.failures[0].error, name


def test_truncated_chunk_named(full_store: dict[str, Any], tmp_path: Path) -> None:
    store = Path(shutil.copytree(full_store["store"], tmp_path / "data.zarr"))
    path = _chunk_file(store, "diffraction", (1, 0, 0))
    path.write_bytes(path.read_bytes()[:3])

    with pytest.raises(CorruptedChunkError, match=r"array 'diffraction', chunk \(1, 0, 0\)"):
        open_dataset(store).compute()


def test_deleted_chunk_reported(full_store: dict[str, Any], tmp_path: Path) -> None:
    store = Path(shutil.copytree(full_store["store"], tmp_path / "data.zarr"))
    _chunk_file(store, f"groups/{GROUPED_VIEW}/Y_I", (2, 0, 0, 0)).unlink()

    report = verify_store(store)

    assert [(failure.array, failure.chunk) for failure in report.failures] == [
        (f"groups/{GROUPED_VIEW}/Y_I", None)]
    assert "1 of 3 chunks are missing" in report.failures[0].error


def test_corrupted_input_stops_inference(full_store: dict[str, Any],
                                         trained_pair: dict[str, Path], dask_client: Any,
                                         tmp_path: Path) -> None:
    store = Path(shutil.copytree(full_store["store"], tmp_path / "data.zarr"))
    path = _chunk_file(store, f"groups/{GROUPED_VIEW}/X", (1, 0, 0, 0))
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))

    with pytest.raises(CorruptedChunkError,
                       match=rf"array 'groups/{GROUPED_VIEW}/X', chunk \(1, 0, 0, 0\)"):
        predict(store, GROUPED_VIEW, trained_pair["pinn"], client=dask_client, batch_size=4,
                run="broken")

    assert current_run(store, "pinn") == full_store["run_path"]
    assert not (store / "predictions" / "pinn" / "broken").exists()
    assert not list(tmp_path.glob("data.zarr.staging-*"))
