"""Input files: format detection, transparent decompression and provenance.

A converter input is an NPZ (zip) archive or an HDF5 file, optionally wrapped in bz2, gzip or xz
compression as a whole (the Siemens-star test file of tike is ``.npz.bz2``). A wrapped file is
decompressed once, in blocks, into an anonymous temporary file, because both zip and HDF5 readers
need random access.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import logging
import lzma
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ptychozarr.errors import InputFileError, InputFileNotFoundError

__all__ = ["SourceFile", "describe_source", "open_source"]

logger = logging.getLogger(__name__)

_BLOCK_BYTES = 4 * 2**20

_WRAPPERS = {b"BZh": "bz2", b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz"}
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class SourceFile:
    """An opened input: its container format and a seekable handle on the (decompressed) data."""

    path: Path
    container: str
    """``"npz"`` or ``"hdf5"``."""
    wrapper: str | None
    """Whole-file compression that was removed (``"bz2"``, ``"gzip"``, ``"xz"``) or ``None``."""
    handle: IO[bytes]


def _wrapper_of(head: bytes) -> str | None:
    for magic, wrapper in _WRAPPERS.items():
        if head.startswith(magic):
            return wrapper
    return None


def _container_of(head: bytes) -> str | None:
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    return None


@contextlib.contextmanager
def open_source(path: str | os.PathLike[str], *,
                spool_dir: str | os.PathLike[str] | None = None) -> Iterator[SourceFile]:
    """Open an input file and detect its format.

    Parameters
    ----------
    path
        NPZ or HDF5 file, possibly compressed as a whole with bz2, gzip or xz.
    spool_dir
        Folder for the temporary decompressed copy of a wrapped file (default: the system's
        temporary folder). The copy has no name and disappears when the context ends.

    Raises
    ------
    InputFileNotFoundError
        The file does not exist.
    InputFileError
        The file is neither NPZ (zip) nor HDF5, or its compression wrapper is damaged.
    """
    source = Path(path)
    if not source.is_file():
        raise InputFileNotFoundError(f"{source}: input file not found. Check the path.")
    with source.open("rb") as raw:
        head = raw.read(8)
    wrapper = _wrapper_of(head)
    with contextlib.ExitStack() as stack:
        if wrapper is None:
            handle: IO[bytes] = stack.enter_context(source.open("rb"))
        else:
            handle = stack.enter_context(tempfile.TemporaryFile(dir=spool_dir))
            _decompress(source, wrapper, handle)
            head = handle.read(8)
            handle.seek(0)
        container = _container_of(head)
        if container is None:
            raise InputFileError(
                f"{source}: neither an NPZ (zip) nor an HDF5/CXI file (first bytes {head!r}). "
                "Convert it to NPZ with numpy.savez, or to CXI/HDF5, and try again."
            )
        yield SourceFile(source, container, wrapper, handle)


def _open_wrapped(source: Path, name: str) -> io.BufferedIOBase:
    if name == "bz2":
        return bz2.BZ2File(source, "rb")
    if name == "gzip":
        return gzip.open(source, "rb")
    return lzma.LZMAFile(source, "rb")


def _decompress(source: Path, name: str, target: IO[bytes]) -> None:
    logger.info("Decompressing %s (%s) into a temporary file", source, name)
    try:
        with _open_wrapped(source, name) as stream:
            shutil.copyfileobj(stream, target, _BLOCK_BYTES)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as error:
        raise InputFileError(
            f"{source}: the {name} compression of this file is damaged ({error}). The file is "
            "truncated or corrupted; copy or download it again."
        ) from error
    target.seek(0)


def describe_source(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the provenance of an input file: name, size in bytes and SHA-256 of its bytes.

    Raises :class:`InputFileNotFoundError` when the file does not exist.
    """
    source = Path(path)
    if not source.is_file():
        raise InputFileNotFoundError(f"{source}: input file not found. Check the path.")
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK_BYTES), b""):
            digest.update(block)
    return {"source_name": source.name, "source_size_bytes": source.stat().st_size,
            "source_sha256": digest.hexdigest()}
