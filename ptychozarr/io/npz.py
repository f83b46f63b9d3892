"""Streaming access to the arrays of an NPZ file, member by member and slab by slab.

``np.load`` cannot memory-map a member of an ``.npz`` archive: it inflates the whole member into
memory. :class:`NpzArchive` instead parses the ``.npy`` header inside each zip member and reads
the data in slabs of whole rows of the member's storage order, so peak memory is set by the slab
size and not by the number of frames.

Object arrays (pickled Python objects) are never unpickled freely. They go through a restricted
unpickler that resolves only the NumPy array reconstructors, and their content must be plain data
(str, int, float, bool, None, list, dict). That admits the ``_metadata`` entry PtychoPINN writes
(a JSON string in a 0-d object array) and the ``None`` placeholders of its grouped files. Any
other object array is rejected unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ptychozarr.errors import InputFileError, InvalidInputError, MissingKeyError

__all__ = [
    "METADATA_KEY",
    "NpyHeader",
    "NpzArchive",
    "write_npy_member",
]

logger = logging.getLogger(__name__)

METADATA_KEY = "_metadata"
"""Key of the JSON provenance entry in PtychoPINN NPZ files."""

_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)

# Globals that ``np.save`` pickles for an object array: the ndarray reconstructor, ndarray, dtype.
_RECONSTRUCT = np.empty(0, dtype=object).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_PLAIN_TYPES = (str, int, float, bool, type(None))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild an object ndarray."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return found


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN_TYPES):
        return True
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False


@dataclass(frozen=True)
class NpyHeader:
    """Header of one ``.npy`` member: logical shape, dtype and storage order."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool
    data_offset: int
    """Bytes between the start of the member and its first data byte."""

    @property
    def stream_shape(self) -> tuple[int, ...]:
        """Shape of the member read as a C-ordered stream (reversed for Fortran order)."""
        return self.shape[::-1] if self.fortran_order else self.shape

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Uncompressed data size in bytes."""
        return self.size * self.dtype.itemsize


class NpzArchive:
    """Read-only view of an NPZ file that streams its members.

    Parameters
    ----------
    path
        Path shown in messages (the file the user named).
    handle
        Seekable binary file with the zip data; the archive does not close it.
    allow_pickle
        Unpickle object arrays without restriction. Only for files from a trusted source.
    """

    def __init__(self, path: str | Path, handle: IO[bytes], *, allow_pickle: bool = False) -> None:
        self.path = str(path)
        self.allow_pickle = allow_pickle
        try:
            self._zip = zipfile.ZipFile(handle)
        except _ZIP_ERRORS as error:
            raise InputFileError(
                f"{self.path}: not a readable NPZ (zip) file ({error}). The file may be "
                "truncated or corrupted; copy or download it again."
            ) from error
        self._members = {
            name[: -len(".npy")]: name
            for name in self._zip.namelist() if name.endswith(".npy")
        }
        self._headers: dict[str, NpyHeader] = {}

    @property
    def keys(self) -> list[str]:
        """Array names, as ``np.load(...).files`` lists them."""
        return list(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def close(self) -> None:
        """Close the zip directory (not the underlying handle)."""
        self._zip.close()

    # Headers ----------------------------------------------------------------------------------

    def header(self, key: str) -> NpyHeader:
        """Parse and return the ``.npy`` header of member ``key``."""
        if key not in self._headers:
            with self._open_member(key) as member:
                self._headers[key] = self._read_header(key, member)
        return self._headers[key]

    def _open_member(self, key: str) -> IO[bytes]:
        if key not in self._members:
            raise MissingKeyError(
                f"{self.path}: key {key!r} not found; the file has {sorted(self._members)!r}."
            )
        try:
            return self._zip.open(self._members[key])
        except _ZIP_ERRORS as error:
            raise self._corrupted(key, error) from error

    def _read_header(self, key: str, member: IO[bytes]) -> NpyHeader:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy format version {version!r}")
            offset = member.tell()
        except (ValueError, *_ZIP_ERRORS) as error:
            raise self._corrupted(key, error) from error
        return NpyHeader(key, tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran), offset)

    def _corrupted(self, key: str, error: BaseException) -> InputFileError:
        return InputFileError(
            f"{self.path}: member {key!r} cannot be read ({type(error).__name__}: {error}). The "
            "file is truncated or corrupted; copy or download it again."
        )

    def reject_pickled(self) -> None:
        """Raise :class:`InputFileError` when a member contains pickled objects other than plain
        data, unless ``allow_pickle`` is set."""
        if self.allow_pickle:
            return
        for key in self.keys:
            if self.header(key).dtype.hasobject:
                self.read(key)

    # Whole arrays -----------------------------------------------------------------------------

    def read(self, key: str) -> np.ndarray:
        """Read member ``key`` whole. Meant for small arrays (positions, probe, object).

        Raises
        ------
        InputFileError
            The member is corrupted, or it contains pickled objects and ``allow_pickle`` is off.
        """
        header = self.header(key)
        if header.dtype.hasobject:
            return self._read_objects(header)
        with self._open_member(key) as member:
            data = self._read_exact(member, header, header.data_offset, header.nbytes)
            self._check_end(member, key)
        array = np.frombuffer(data, dtype=header.dtype).reshape(header.stream_shape)
        return array.T if header.fortran_order else array

    def read_metadata(self) -> Any:
        """Return the ``_metadata`` entry as plain data (parsed JSON when it is a JSON string).

        Returns ``None`` when the file has no ``_metadata``.
        """
        if METADATA_KEY not in self:
            return None
        value = self.read(METADATA_KEY)
        content = value.item() if value.shape == () else value.tolist()
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        if isinstance(content, str):
            try:
                return json.loads(content)
            except ValueError:
                return content
        return content

    def _read_objects(self, header: NpyHeader) -> np.ndarray:
        with self._open_member(header.key) as member:
            member.seek(header.data_offset)
            payload = member.read()
        if self.allow_pickle:
            logger.warning("Unpickling %r of %s without restriction (--allow-pickle)",
                           header.key, self.path)
            return np.asarray(pickle.loads(payload), dtype=object)
        rejection = InputFileError(
            f"{self.path}: key {header.key!r} contains pickled Python objects (dtype object, shape "
            f"{header.shape!r}) other than plain data, and unpickling them can run code. Remove "
            "that key, or pass --allow-pickle (library: allow_pickle=True) if you trust the file."
        )
        try:
            value = _RestrictedUnpickler(io.BytesIO(payload)).load()
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError,
                AttributeError, IndexError) as error:
            raise rejection from error
        if not isinstance(value, np.ndarray) or not all(_is_plain(v) for v in value.flat):
            raise rejection
        return value

    # Streaming --------------------------------------------------------------------------------

    def iter_slabs(self, key: str | NpyHeader, rows_per_slab: int, *, start: int = 0,
                   leading_axes: int = 1) -> Iterator[np.ndarray]:
        """Yield member ``key`` in slabs along the first axis of its storage order.

        Each slab has shape ``(rows, *stream_shape[leading_axes:])`` with at most
        ``rows_per_slab`` rows, starting at row ``start``; the first ``leading_axes`` storage
        axes are flattened into rows. For a Fortran-ordered member the slabs are of the
        reversed (transposed) array, see :attr:`NpyHeader.stream_shape`. The member's CRC-32
        is checked when the last slab has been read. ``key`` may be a header whose shape
        differs from the stored one only by dropped size-1 axes.
        """
        header = key if isinstance(key, NpyHeader) else self.header(key)
        key = header.key
        if header.dtype.hasobject:
            raise InputFileError(
                f"{self.path}: key {key!r} contains pickled objects (dtype object) where numbers "
                "are expected. Save the array with a numeric dtype."
            )
        n_rows = int(np.prod(header.stream_shape[:leading_axes], dtype=np.int64))
        row_shape = header.stream_shape[leading_axes:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * header.dtype.itemsize
        with self._open_member(key) as member:
            self._seek(member, header, header.data_offset + start * row_bytes)
            for first in range(start, n_rows, rows_per_slab):
                rows = min(rows_per_slab, n_rows - first)
                data = self._read_exact(member, header, None, rows * row_bytes)
                yield np.frombuffer(data, dtype=header.dtype).reshape((rows, *row_shape))
            self._check_end(member, key)

    def _seek(self, member: IO[bytes], header: NpyHeader, offset: int) -> None:
        try:
            member.seek(offset)
        except _ZIP_ERRORS as error:
            raise self._corrupted(header.key, error) from error

    def _read_exact(self, member: IO[bytes], header: NpyHeader, offset: int | None,
                    nbytes: int) -> bytes:
        if offset is not None:
            self._seek(member, header, offset)
        try:
            data = member.read(nbytes)
        except _ZIP_ERRORS as error:
            raise self._corrupted(header.key, error) from error
        if len(data) != nbytes:
            raise InputFileError(
                f"{self.path}: member {header.key!r} ends early: shape {header.shape!r} needs "
                f"{header.nbytes} data bytes, but the member is shorter. The file is truncated; "
                "copy or download it again."
            )
        return data

    def _check_end(self, member: IO[bytes], key: str) -> None:
        # Reading past the end makes zipfile compare the member's CRC-32 with its data.
        try:
            member.read(1)
        except _ZIP_ERRORS as error:
            raise self._corrupted(key, error) from error


def require_numeric(header: NpyHeader, *, path: str, what: str) -> None:
    """Raise :class:`InvalidInputError` unless ``header`` describes a real numeric array."""
    if header.dtype.kind == "c":
        raise InvalidInputError(
            f"{path}: {what} {header.key!r} is complex ({header.dtype}); a real array is "
            "required. Store its modulus (np.abs) if these are complex amplitudes."
        )
    if header.dtype.kind not in "uif" and header.dtype.kind != "b":
        raise InvalidInputError(
            f"{path}: {what} {header.key!r} has dtype {str(header.dtype)!r}; a numeric "
            "array is required."
        )
    if header.size == 0:
        raise InvalidInputError(
            f"{path}: {what} {header.key!r} is empty (shape {header.shape!r}). Check that the "
            "file was written completely."
        )


def write_npy_member(archive: zipfile.ZipFile, key: str, shape: tuple[int, ...],
                     dtype: np.dtype[Any] | str, slabs: Iterable[np.ndarray]) -> None:
    """Write one ``.npy`` member into an open zip, slab by slab, in C order.

    ``slabs`` must together hold exactly ``prod(shape)`` elements, split along the first axis.
    Members are written with ZIP64 extensions, so they may exceed 4 GiB.
    """
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(int(n) for n in shape)}
    expected = int(np.prod(shape, dtype=np.int64))
    written = 0
    with archive.open(f"{key}.npy", mode="w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for slab in slabs:
            block = np.ascontiguousarray(slab, dtype=dtype)
            member.write(block.tobytes())
            written += block.size
    if written != expected:
        raise ValueError(f"{key!r}: wrote {written} elements, shape {shape!r} needs {expected}")
