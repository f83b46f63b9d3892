"""Bad input: each case exits with status 2, one message naming the problem, and no store."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from io_samples import raw_arrays, write_npz, write_raw_npz

from ptychozarr.cli import EXIT_INVALID_INPUT
from ptychozarr.workflows import convert as convert_workflow


class _Payload:
    """Unpickling an instance needs this module's global, so it is rejected."""


def _bad_arrays(case: str) -> dict[str, Any]:
    arrays = raw_arrays()
    if case == "missing-diffraction":
        arrays.pop("diffraction")
    elif case == "missing-coordinates":
        arrays.pop("ycoords")
    elif case == "count-mismatch":
        for key in ("xcoords", "ycoords", "xcoords_start", "ycoords_start"):
            arrays[key] = arrays[key][:-3]
    elif case == "non-square":
        arrays["diffraction"] = arrays["diffraction"][:, :, :12]
        arrays.pop("probeGuess")
    elif case == "probe-shape":
        arrays["probeGuess"] = arrays["probeGuess"][:8, :8]
    elif case in ("nan", "inf"):
        arrays["diffraction"][33, 2, 5] = np.nan if case == "nan" else np.inf
    elif case == "negative-counts":
        counts = np.ones((40, 16, 16), np.int32)
        counts[21, 0, 0] = -4
        arrays["diffraction"] = counts
    elif case == "complex":
        arrays["diffraction"] = arrays["diffraction"].astype(np.complex64)
    elif case == "empty":
        arrays["diffraction"] = np.zeros((0, 16, 16), np.float32)
        arrays["xcoords"] = arrays["ycoords"] = np.zeros(0)
        for key in ("xcoords_start", "ycoords_start", "scan_index", "Y"):
            arrays.pop(key)
    elif case == "pickled":
        arrays["extra"] = np.array([_Payload()], dtype=object)
    return arrays


BAD_NPZ_CASES = {
    "missing-diffraction": r"no diffraction array; expected key 'diffraction' or 'diff3d'",
    "missing-coordinates": r"position key 'ycoords' not found.*--y-key",
    "count-mismatch": r"has shape \(40, 16, 16\), but there are 37 positions",
    "non-square": r"not square \(16 x 12 pixels\).*--crop N",
    "probe-shape": r"probe 'probeGuess' has shape \(8, 8\) but the patterns are \(16, 16\)",
    "nan": r"'diffraction': frame 33 contains NaN or infinite values",
    "inf": r"'diffraction': frame 33 contains NaN or infinite values",
    "negative-counts": r"frame 21 has negative values \(minimum np.int32\(-4\)\).*photon counts",
    "complex": r"'diffraction' is complex \(complex64\).*np.abs",
    "empty": r"positions 'xcoords' is empty \(shape \(0,\)\)",
    "pickled": r"key 'extra' contains pickled Python objects.*--allow-pickle",
}


def _run(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = convert_workflow.main([*arguments, "--no-progress"])
    return status, capsys.readouterr().err


def _error_lines(message: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("ptychozarr: error:")]


def _assert_nothing_written(output: Path) -> None:
    leftovers = sorted(path.name for path in output.parent.iterdir()
                       if path.name.startswith(output.name))
    assert leftovers == []


@pytest.mark.parametrize("case", sorted(BAD_NPZ_CASES))
def test_bad_npz_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    source = write_npz(tmp_path / "bad.npz", _bad_arrays(case))
    output = tmp_path / "out" / "bad.zarr"
    output.parent.mkdir()
    scale = ["--intensity"] if case == "negative-counts" else []
    status, message = _run([str(source), str(output), "--chunk-frames", "8", *scale], capsys)
    assert status == EXIT_INVALID_INPUT
    assert re.search(BAD_NPZ_CASES[case], message), message
    assert _error_lines(message) == [message.splitlines()[-1]]
    assert message.splitlines()[-1].startswith(f"ptychozarr: error: {source}")
    _assert_nothing_written(output)


def test_truncated_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw_npz(tmp_path / "t.npz")
    content = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(content[: len(content) * 2 // 3])
    status, message = _run([str(tmp_path / "t.npz"), str(tmp_path / "t.zarr")], capsys)
    assert status == EXIT_INVALID_INPUT
    assert "not a readable NPZ (zip) file" in message
    _assert_nothing_written(tmp_path / "t.zarr")


def test_corrupted_zip_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = raw_arrays()
    arrays["diffraction"] = np.random.default_rng(5).random((40, 16, 16)).astype(np.float32)
    write_npz(tmp_path / "c.npz", {"diffraction": arrays["diffraction"],
                                   "xcoords": arrays["xcoords"], "ycoords": arrays["ycoords"]})
    content = bytearray((tmp_path / "c.npz").read_bytes())
    content[len(content) // 2] ^= 0xFF
    (tmp_path / "c.npz").write_bytes(bytes(content))
    status, message = _run([str(tmp_path / "c.npz"), str(tmp_path / "c.zarr"),
                            "--chunk-frames", "8"], capsys)
    assert status == EXIT_INVALID_INPUT
    assert "member 'diffraction' cannot be read" in message
    assert "truncated or corrupted" in message
    _assert_nothing_written(tmp_path / "c.zarr")


def test_neither_npz_nor_hdf5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("x, y\n1, 2\n")
    status, message = _run([str(tmp_path / "notes.txt"), str(tmp_path / "n.zarr")], capsys)
    assert status == EXIT_INVALID_INPUT
    assert "neither an NPZ (zip) nor an HDF5/CXI file (first bytes b'x, y\\n1, '" in message
    _assert_nothing_written(tmp_path / "n.zarr")


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, message = _run([str(tmp_path / "absent.npz"), str(tmp_path / "a.zarr")], capsys)
    assert status == EXIT_INVALID_INPUT
    assert "input file not found" in message


def test_existing_output_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw_npz(tmp_path / "a.npz")
    output = tmp_path / "a.zarr"
    output.mkdir()
    (output / "keep.txt").write_text("old")
    status, message = _run([str(tmp_path / "a.npz"), str(output)], capsys)
    assert status == EXIT_INVALID_INPUT
    assert "output already exists. Pass --overwrite" in message
    assert (output / "keep.txt").read_text() == "old"
    assert not (tmp_path / "a.zarr.partial").exists()


def test_overwrite_replaces_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw_npz(tmp_path / "a.npz")
    output = tmp_path / "a.zarr"
    output.mkdir()
    (output / "keep.txt").write_text("old")
    status, _ = _run([str(tmp_path / "a.npz"), str(output), "--overwrite"], capsys)
    assert status == 0
    assert not (output / "keep.txt").exists()
    assert (output / "diffraction").is_dir()


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw_npz(tmp_path / "a.npz")
    # Root ignores permission bits, but not a file system that refuses new files.
    locked = Path("/sys") if os.geteuid() == 0 else tmp_path / "locked"
    if locked != Path("/sys"):
        locked.mkdir()
        locked.chmod(0o500)
    try:
        status, message = _run([str(tmp_path / "a.npz"), str(locked / "a.zarr")], capsys)
    finally:
        if locked != Path("/sys"):
            locked.chmod(0o700)
    assert status == EXIT_INVALID_INPUT
    assert f"output folder {str(locked)!r} is not writable" in message
    assert not (locked / "a.zarr").exists()
    assert not (locked / "a.zarr.partial").exists()


def test_missing_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw_npz(tmp_path / "a.npz")
    status, message = _run([str(tmp_path / "a.npz"), str(tmp_path / "no" / "a.zarr")], capsys)
    assert status == EXIT_INVALID_INPUT
    assert "does not exist. Create it first" in message


def test_allow_pickle_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_npz(tmp_path / "p.npz", _bad_arrays("pickled"))
    status, _ = _run([str(tmp_path / "p.npz"), str(tmp_path / "p.zarr"), "--allow-pickle"],
                     capsys)
    assert status == 0
