"""A store wrapper whose reads name the array and chunk that fail their checksum.

Every array that ptychozarr writes ends its codec chain with a CRC32C checksum of the stored
bytes. Zarr checks it while decoding, but its error names neither the array nor the chunk,
because the codecs never see the key. :class:`ChecksumStore` checks the same CRC32C when it
reads a chunk's bytes, where the key is still known, and raises
:class:`~ptychozarr.errors.CorruptedChunkError` with the array path and chunk index. Zarr's own
check then runs on intact bytes only, so each chunk read computes the checksum twice, over its
compressed bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable

import google_crc32c
import numpy as np
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.storage import WrapperStore

from ptychozarr.errors import CorruptedChunkError

__all__ = ["ChecksumStore", "chunk_address"]

_CHECKSUM_BYTES = 4
_CHUNK_PREFIX = "/c/"


def chunk_address(key: str) -> tuple[str, tuple[int, ...]] | None:
    """Split a chunk key such as ``"groups/g1/X/c/3/0/0/0"`` into array path and chunk index.

    Keys use Zarr v3's default chunk key encoding with the ``/`` separator, the one every
    ptychozarr writer uses. Returns ``None`` for metadata documents and other keys.
    """
    array_path, prefix, index = key.rpartition(_CHUNK_PREFIX)
    parts = index.split("/")
    if not prefix or not array_path or not all(part.isdigit() for part in parts):
        return None
    return array_path, tuple(int(part) for part in parts)


class ChecksumStore(WrapperStore[Store]):
    """Wrap a store so that a corrupted chunk raises :class:`CorruptedChunkError` on read.

    Only whole-chunk reads of arrays whose last codec is ``crc32c`` (with the default ``/``
    chunk key encoding) are checked; other keys pass through unchanged. Writes pass through.

    Parameters
    ----------
    store
        The store to read, for example a :class:`zarr.storage.LocalStore`.
    where
        How error messages name the store (its path or URL).
    """

    def __init__(self, store: Store, *, where: str) -> None:
        super().__init__(store)
        self.where = where
        # Array path -> whether its chunks end with a CRC32C checksum, read from its zarr.json.
        self._checked_arrays: dict[str, bool] = {}

    def _with_store(self, store: Store) -> ChecksumStore:
        return type(self)(store, where=self.where)

    def __str__(self) -> str:
        return str(self._store)

    def __repr__(self) -> str:
        return f"ChecksumStore({self._store!r}, where={self.where!r})"

    async def get(self, key: str, prototype: BufferPrototype,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        buffer = await self._store.get(key, prototype, byte_range)
        if buffer is not None and byte_range is None:
            await self._check_chunk(key, buffer)
        return buffer

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def _check_chunk(self, key: str, buffer: Buffer) -> None:
        address = chunk_address(key)
        if address is None or not await self._has_checksum(address[0]):
            return
        data = buffer.as_numpy_array()
        if data.size >= _CHECKSUM_BYTES:
            computed = np.uint32(google_crc32c.value(data[:-_CHECKSUM_BYTES])).tobytes()
            if computed == bytes(data[-_CHECKSUM_BYTES:]):
                return
        array_path, index = address
        raise CorruptedChunkError(
            f"{self.where}: array {array_path!r}, chunk {index!r}: the stored bytes "
            f"({data.size} bytes at key {key!r}) fail their CRC32C checksum, so the chunk is "
            "corrupted. Restore the store from a copy or re-create it; `ptychozarr verify "
            f"{self.where}` lists every corrupted chunk."
        )

    async def _has_checksum(self, array_path: str) -> bool:
        known = self._checked_arrays.get(array_path)
        if known is not None:
            return known
        document = await self._store.get(f"{array_path}/zarr.json", default_buffer_prototype())
        checked = False
        if document is not None:
            metadata = json.loads(document.to_bytes())
            encoding = metadata.get("chunk_key_encoding", {})
            codecs = metadata.get("codecs") or [{}]
            checked = (metadata.get("node_type") == "array"
                       and encoding.get("name") == "default"
                       and encoding.get("configuration", {}).get("separator", "/") == "/"
                       and codecs[-1].get("name") == "crc32c")
        self._checked_arrays[array_path] = checked
        return checked
