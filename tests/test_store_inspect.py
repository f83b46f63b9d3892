"""Tests of the store summary printed by ``ptychozarr inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from io_samples import write_grouped_npz, write_raw_npz

import ptychozarr
from ptychozarr.store.inspect import format_summary, summarize_store
from ptychozarr.workflows import inspect as inspect_workflow


def test_summary_lists_arrays(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "in.npz")
    store = ptychozarr.convert(tmp_path / "in.npz", tmp_path / "s.zarr", chunk_frames=8)
    summary = summarize_store(store)
    arrays = {array["path"]: array for array in summary["arrays"]}
    diffraction = arrays["diffraction"]
    assert diffraction["dims"] == {"scan": 40, "ky": 16, "kx": 16}
    assert diffraction["chunks"] == [8, 16, 16]
    assert diffraction["n_chunks"] == 5
    assert diffraction["uncompressed_bytes"] == 40 * 16 * 16 * 4
    assert 0 < diffraction["stored_bytes"] < 2 * diffraction["uncompressed_bytes"]
    assert diffraction["codecs"] == ["Bytes", "Zstd", "Crc32c"]
    assert summary["format"]["format_version"] == 1


def test_text_shows_metadata_and_conventions(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "in.npz")
    store = ptychozarr.convert(tmp_path / "in.npz", tmp_path / "s.zarr", chunk_frames=8)
    text = format_summary(summarize_store(store))
    assert "diffraction            (scan=40, ky=16, kx=16) float32  chunks 8x16x16 (5)" in text
    assert "compression ratio" in text
    assert '  nphotons: 1000000000.0' in text
    assert '  position_origin: "center"' in text
    assert '  source_name: "in.npz"' in text


def test_groups_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_grouped_npz(tmp_path / "g.npz")
    store = ptychozarr.convert(tmp_path / "g.npz", tmp_path / "g.zarr")
    assert inspect_workflow.main([str(store)]) == 0
    text = capsys.readouterr().out
    assert "Group groups/imported-g2-n20" in text
    assert "  intensity_scale: 123.0" in text
    assert inspect_workflow.main([str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["attrs"]["amplitude_scale"] == "arbitrary"


def test_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_workflow.main([str(tmp_path / "absent.zarr")]) == 2
    assert "store not found" in capsys.readouterr().err
