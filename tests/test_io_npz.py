"""Tests of the streaming NPZ reader and writer."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptychozarr.errors import InputFileError, MissingKeyError
from ptychozarr.io.npz import NpzArchive, write_npy_member


def _archive(path: Path, **kwargs: bool) -> NpzArchive:
    return NpzArchive(path, path.open("rb"), **kwargs)


def test_slabs_match_np_load(tmp_path: Path) -> None:
    data = np.arange(7 * 3 * 2, dtype=np.float32).reshape(7, 3, 2)
    np.savez_compressed(tmp_path / "a.npz", data=data)
    archive = _archive(tmp_path / "a.npz")
    slabs = list(archive.iter_slabs("data", 3))
    assert [slab.shape[0] for slab in slabs] == [3, 3, 1]
    assert np.array_equal(np.concatenate(slabs), data)
    assert np.array_equal(np.concatenate(list(archive.iter_slabs("data", 2, start=4))), data[4:])


def test_fortran_member_streams_transposed(tmp_path: Path) -> None:
    data = np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    np.savez(tmp_path / "f.npz", data=data)
    archive = _archive(tmp_path / "f.npz")
    header = archive.header("data")
    assert header.fortran_order
    assert header.stream_shape == (4, 3, 2)
    assert np.array_equal(np.concatenate(list(archive.iter_slabs("data", 3))), data.T)
    assert np.array_equal(archive.read("data"), data)


def test_lines_of_two_leading_axes(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)
    np.savez(tmp_path / "l.npz", data=data)
    archive = _archive(tmp_path / "l.npz")
    lines = np.concatenate(list(archive.iter_slabs("data", 4, leading_axes=2)))
    assert np.array_equal(lines, data.reshape(6, 5))


def test_metadata_json_is_parsed(tmp_path: Path) -> None:
    metadata = np.array('{"nphotons": 1e6, "tags": ["a", null]}', dtype=object)
    np.savez(tmp_path / "m.npz", _metadata=metadata, placeholder=None)
    archive = _archive(tmp_path / "m.npz")
    assert archive.read_metadata() == {"nphotons": 1e6, "tags": ["a", None]}
    archive.reject_pickled()
    assert archive.read("placeholder").item() is None


class _Payload:
    """A class instance: unpickling it needs this module's global."""


def test_pickled_object_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", _metadata=np.array([_Payload()], dtype=object))
    archive = _archive(tmp_path / "p.npz")
    with pytest.raises(InputFileError, match=r"'_metadata' contains pickled Python objects"):
        archive.read_metadata()
    with pytest.raises(InputFileError, match="--allow-pickle"):
        archive.reject_pickled()
    trusted = _archive(tmp_path / "p.npz", allow_pickle=True)
    assert isinstance(trusted.read("_metadata")[0], _Payload)


def test_code_running_pickle_rejected(tmp_path: Path) -> None:
    # A pickle that would call os.getcwd when loaded, stored as an .npy object member.
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[()]]:
            return (os.getcwd, ())

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    buffer.write(pickle.dumps(Exploit(), protocol=3))
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as handle:
        handle.writestr("_metadata.npy", buffer.getvalue())
    archive = _archive(tmp_path / "x.npz")
    with pytest.raises(InputFileError, match="other than plain data"):
        archive.read_metadata()


def test_missing_key_lists_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "k.npz", a=np.zeros(2))
    with pytest.raises(MissingKeyError, match=r"key 'b' not found; the file has \['a'\]"):
        _archive(tmp_path / "k.npz").header("b")


def test_truncated_zip_rejected(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "t.npz", data=np.random.default_rng(0).random((50, 20)))
    content = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(content[: len(content) // 2])
    with pytest.raises(InputFileError, match="truncated or corrupted"):
        _archive(tmp_path / "t.npz")


def test_flipped_byte_fails_crc(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((64, 32)).astype(np.float32)
    np.savez(tmp_path / "c.npz", data=data)
    content = bytearray((tmp_path / "c.npz").read_bytes())
    content[len(content) // 2] ^= 0x55
    (tmp_path / "c.npz").write_bytes(bytes(content))
    archive = _archive(tmp_path / "c.npz")
    with pytest.raises(InputFileError, match=r"member 'data' cannot be read \(BadZipFile"):
        list(archive.iter_slabs("data", 16))


def test_write_member_round_trip(tmp_path: Path) -> None:
    data = np.arange(5 * 4, dtype=np.complex64).reshape(5, 4)
    with zipfile.ZipFile(tmp_path / "w.npz", "w", zipfile.ZIP_DEFLATED) as handle:
        write_npy_member(handle, "z", data.shape, data.dtype, [data[:2], data[2:]])
    assert np.array_equal(np.load(tmp_path / "w.npz")["z"], data)


def test_write_member_checks_size(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as handle, pytest.raises(ValueError):
        write_npy_member(handle, "z", (3, 2), "float32", [np.zeros((2, 2))])
