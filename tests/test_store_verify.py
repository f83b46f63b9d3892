"""Tests of store verification: every chunk read, corruption reported by array and chunk."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr
from io_samples import write_raw_npz

import ptychozarr
from ptychozarr.errors import StoreSchemaError
from ptychozarr.store.verify import verify_store
from ptychozarr.workflows import verify as verify_workflow


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    write_raw_npz(tmp_path / "in.npz")
    return ptychozarr.convert(tmp_path / "in.npz", tmp_path / "s.zarr", chunk_frames=8)


def _flip_byte(path: Path, offset: int) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))


def test_intact_store_passes(store: Path) -> None:
    report = verify_store(store)
    assert report.ok
    assert report.arrays_checked == 9
    # diffraction, object_patches, scan_index and four position arrays: 5 chunks each of 8 of
    # the 40 frames; probe and object: one chunk each.
    assert report.chunks_checked == 7 * 5 + 2
    assert verify_workflow.main([str(store), "--no-progress"]) == 0


def test_flipped_byte_reported(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _flip_byte(store / "diffraction" / "c" / "2" / "0" / "0", 40)
    report = verify_store(store)
    assert [(failure.array, failure.chunk) for failure in report.failures] == [
        ("diffraction", (2, 0, 0))]
    assert "CRC32C checksum mismatch" in report.failures[0].error
    assert verify_workflow.main([str(store), "--no-progress"]) == verify_workflow.EXIT_CORRUPTED
    output = capsys.readouterr().out
    assert "CORRUPTED diffraction: chunk (2, 0, 0)" in output
    assert "FAILED (1 problems)" in output


def test_truncated_chunk_reported(store: Path) -> None:
    chunk = store / "xcoords" / "c" / "1"
    chunk.write_bytes(chunk.read_bytes()[:3])
    report = verify_store(store)
    assert [(failure.array, failure.chunk) for failure in report.failures] == [("xcoords", (1,))]


def test_schema_problem_reported(store: Path) -> None:
    group = zarr.open_group(store, mode="r+")
    del group["probe"].attrs["units"]
    report = verify_store(store)
    assert [str(failure) for failure in report.failures] == [
        "probe: schema: attribute 'units' is missing"]


def test_not_a_store_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreSchemaError, match="not a ptychozarr store"):
        verify_store(tmp_path / "plain.zarr")
    assert verify_workflow.main([str(tmp_path / "plain.zarr"), "--no-progress"]) == 2
