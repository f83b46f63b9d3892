"""Checking a store: schema, and every stored chunk read back through its codecs.

Each chunk carries a CRC32C checksum of its compressed bytes, so a flipped byte fails the read.
:func:`verify_store` reads every chunk of every array, one at a time, and collects each failure
by array path and chunk index instead of stopping at the first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import zarr

from ptychozarr.store.open import StorePath, open_store
from ptychozarr.store.schema import GROUP_ARRAYS, PREDICTION_ARRAYS, RAW_ARRAYS, ArraySpec

__all__ = ["ChunkFailure", "VerifyReport", "verify_store"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkFailure:
    """One problem found: a chunk that cannot be read, or an array that breaks the schema."""

    array: str
    chunk: tuple[int, ...] | None
    """Chunk index along each dimension, or ``None`` for a schema problem."""
    error: str

    def __str__(self) -> str:
        where = f"chunk {self.chunk!r}" if self.chunk is not None else "schema"
        return f"{self.array}: {where}: {self.error}"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_store`."""

    store: str
    arrays_checked: int = 0
    chunks_checked: int = 0
    failures: list[ChunkFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every chunk was read and every array follows the schema."""
        return not self.failures


def _spec_for(path: str) -> ArraySpec | None:
    parts = path.split("/")
    if len(parts) == 1:
        return RAW_ARRAYS.get(parts[0])
    if parts[0] == "groups" and len(parts) == 3:
        return GROUP_ARRAYS.get(parts[2])
    if parts[0] == "predictions":
        return PREDICTION_ARRAYS.get(parts[-1])
    return None


def _schema_failures(path: str, array: zarr.Array) -> Iterator[ChunkFailure]:
    spec = _spec_for(path)
    if spec is None:
        return
    dims = tuple(getattr(array.metadata, "dimension_names", None) or ())
    if dims != spec.dims:
        yield ChunkFailure(path, None, f"dimension names {dims!r}, expected {spec.dims!r}")
    if np.dtype(array.dtype) != np.dtype(spec.dtype):
        yield ChunkFailure(path, None, f"dtype {str(array.dtype)!r}, expected {spec.dtype!r}")
    for key in ("units", "long_name"):
        if key not in array.attrs:
            yield ChunkFailure(path, None, f"attribute {key!r} is missing")


def _chunk_selection(array: zarr.Array, index: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(i * c, min((i + 1) * c, n))
                 for i, c, n in zip(index, array.chunks, array.shape, strict=True))


def _describe(error: Exception) -> str:
    if "checksum" in str(error):
        return "CRC32C checksum mismatch: the stored chunk is corrupted"
    return f"{type(error).__name__}: {error}"


def _check_chunks(path: str, array: zarr.Array, report: VerifyReport) -> None:
    # Zarr reads a missing chunk as the fill value without an error. Every ptychozarr writer
    # stores every chunk, so a missing one is lost data.
    missing = array.nchunks - array.nchunks_initialized
    if missing:
        report.failures.append(ChunkFailure(
            path, None, f"{missing} of {array.nchunks} chunks are missing, so their data read "
            "as the fill value; the chunk files were deleted or lost"))
    for index in np.ndindex(*array.cdata_shape):
        chunk = tuple(int(i) for i in index)
        try:
            array[_chunk_selection(array, chunk)]
        except Exception as error:  # any decode failure is a finding to report, not a crash
            report.failures.append(ChunkFailure(path, chunk, _describe(error)))
            logger.debug("Chunk %s of %s failed: %s", chunk, path, error)
        report.chunks_checked += 1


def verify_store(path: StorePath, *,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Read every chunk of every array in the store and check the schema.

    Parameters
    ----------
    path
        Store directory, ``.zip`` of a finished store, or fsspec URL.
    progress
        Called as ``progress(arrays_done, n_arrays)`` after each array.

    Returns
    -------
    VerifyReport
        Counts of arrays and chunks read, and every failure found.

    Raises
    ------
    StoreSchemaError, InputFileNotFoundError, MissingKeyError
        The path is not a readable ptychozarr store at all.
    """
    root = open_store(path)
    report = VerifyReport(str(path))
    arrays = sorted(((member_path, node) for member_path, node in root.members(max_depth=None)
                     if isinstance(node, zarr.Array)), key=lambda item: item[0])
    for done, (member_path, array) in enumerate(arrays, start=1):
        report.failures.extend(_schema_failures(member_path, array))
        _check_chunks(member_path, array, report)
        report.arrays_checked += 1
        if progress is not None:
            progress(done, len(arrays))
    return report
