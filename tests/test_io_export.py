"""Tests of the export back to PtychoPINN's raw NPZ layout (NPZ -> store -> NPZ)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from io_samples import write_raw_npz

import ptychozarr
from ptychozarr.cli import EXIT_INVALID_INPUT
from ptychozarr.errors import InvalidInputError, OutputExistsError
from ptychozarr.io.export import export_npz
from ptychozarr.workflows import export as export_workflow


def _round_trip(tmp_path: Path, **export_options: object) -> tuple[dict[str, object], Path]:
    arrays = write_raw_npz(tmp_path / "in.npz")
    store = ptychozarr.convert(tmp_path / "in.npz", tmp_path / "s.zarr", chunk_frames=16)
    return arrays, export_npz(store, tmp_path / "out.npz", **export_options)  # type: ignore[arg-type]


def test_round_trip_values_and_dtypes(tmp_path: Path) -> None:
    arrays, exported = _round_trip(tmp_path)
    with np.load(exported) as result:
        assert sorted(result.files) == sorted(arrays)
        for key, original in arrays.items():
            if key == "_metadata":
                continue
            assert result[key].dtype == np.asarray(original).dtype, key
            assert np.array_equal(result[key], original), key


def test_round_trip_metadata(tmp_path: Path) -> None:
    arrays, exported = _round_trip(tmp_path)
    with np.load(exported, allow_pickle=True) as result:
        assert json.loads(result["_metadata"].item()) == json.loads(arrays["_metadata"].item())


def test_diff3d_key_and_store_round_trip(tmp_path: Path) -> None:
    _, exported = _round_trip(tmp_path, diffraction_key="diff3d", compress=False)
    again = ptychozarr.convert(exported, tmp_path / "again.zarr")
    first = ptychozarr.open_dataset(tmp_path / "s.zarr")
    second = ptychozarr.open_dataset(again)
    for name in first.variables:
        assert np.array_equal(first[name].values, second[name].values), name
        assert first[name].attrs == second[name].attrs, name
    assert second.attrs["source_metadata"] == first.attrs["source_metadata"]
    assert second.attrs["conventions"]["diffraction_key"] == "diff3d"


def test_export_refuses_metres(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "in.npz", drop=("xcoords_start", "ycoords_start", "objectGuess",
                                             "Y"))
    store = ptychozarr.convert(tmp_path / "in.npz", tmp_path / "m.zarr",
                               position_units="m", near_field=True)
    with pytest.raises(InvalidInputError, match="positions are in 'm'"):
        export_npz(store, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_export_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, exported = _round_trip(tmp_path)
    with pytest.raises(OutputExistsError, match="Pass --overwrite"):
        export_npz(tmp_path / "s.zarr", exported)
    status = export_workflow.main([str(tmp_path / "s.zarr"), str(exported)])
    assert status == EXIT_INVALID_INPUT
    assert "output already exists" in capsys.readouterr().err
    assert export_workflow.main([str(tmp_path / "s.zarr"), str(exported), "--overwrite"]) == 0
    assert not (tmp_path / "out.npz.partial").exists()
