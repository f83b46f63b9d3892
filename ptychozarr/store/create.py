"""Creation of stores and subgroups: codecs, chunking, atomic publication and resume.

A new dataset store is written into a temporary sibling ``<out>.partial`` and renamed to its final
name only when complete, so the final name never shows a half-written store. Progress is
recorded after every chunk-aligned slab, which lets an interrupted writer resume where it stopped.
A sibling lock file ``<out>.lock`` keeps two writers apart and is recognised as stale once its
process is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from ptychozarr.errors import InvalidInputError, OutputExistsError, StoreLockedError
from ptychozarr.store.schema import ArraySpec, format_block

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "StoreWriter",
    "consolidate",
    "create_array",
    "default_chunk_frames",
    "stage_subgroup",
]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 8 * 2**20
"""Uncompressed size aimed at for one chunk along the scan axis (8 MiB)."""

PROGRESS_FILE = ".ptychozarr-progress.json"
STAGING_SUFFIX = ".staging-"


def _compressors() -> tuple[Any, ...]:
    # Zstd first, then a CRC32C over the compressed bytes, so corruption is caught before decoding.
    return (ZstdCodec(level=3), Crc32cCodec())


def default_chunk_frames(frame_shape: tuple[int, ...], dtype: Any, *,
                         target_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Return how many whole frames of ``frame_shape`` fit in about ``target_bytes``."""
    frame_bytes = int(np.prod(frame_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, target_bytes // max(frame_bytes, 1))


def create_array(group: zarr.Group, spec: ArraySpec, shape: tuple[int, ...], *,
                 chunk_frames: int | None = None, attrs: Mapping[str, Any] | None = None,
                 units: str | None = None, overwrite: bool = False) -> zarr.Array:
    """Create one schema array in ``group`` with the project's codecs and chunking.

    Parameters
    ----------
    group
        Open, writable Zarr v3 group.
    spec
        Schema entry giving name, dimension names, dtype, units and long name.
    shape
        Full array shape.
    chunk_frames
        Frames per chunk along ``spec.chunked_axis``; default: about :data:`DEFAULT_CHUNK_BYTES`.
    attrs
        Extra attributes stored beside ``units`` and ``long_name``.
    units
        Overrides ``spec.units`` (for example ``"m"`` for positions in metres).
    overwrite
        Replace an array of the same name.
    """
    spec.check(shape, np.dtype(spec.dtype), where=str(group.store))
    chunks = list(shape)
    if spec.chunked_axis is not None and shape:
        axis = spec.chunked_axis
        frame_shape = tuple(s for i, s in enumerate(shape) if i != axis)
        frames = chunk_frames or default_chunk_frames(frame_shape, spec.dtype)
        chunks[axis] = max(1, min(frames, shape[axis]))
    chunks = [max(1, c) for c in chunks]

    attributes: dict[str, Any] = {"units": units or spec.units, "long_name": spec.long_name}
    attributes.update(attrs or {})
    fill_value: Any = False if spec.dtype == "bool" else 0
    # Writes through the returned array store every chunk, even one equal to the fill value, which
    # skips zarr's pass comparing each chunk with it. The setting is not saved in the metadata.
    return group.create_array(
        spec.name, shape=shape, chunks=tuple(chunks), dtype=spec.dtype,
        compressors=_compressors(), dimension_names=spec.dims, attributes=attributes,
        fill_value=fill_value, overwrite=overwrite, config={"write_empty_chunks": True},
    )


def consolidate(path: str | os.PathLike[str]) -> None:
    """Rewrite the consolidated metadata of the store at ``path``.

    Every writer calls this after it adds or publishes arrays, so ``xarray.open_zarr`` sees
    the current layout without falling back to slower listing.
    """
    with warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not part of the v3 specification yet.
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(str(path))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lock:
    """Exclusive lock file ``<out>.lock`` naming the writing process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False

    def owner(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def is_stale(self) -> bool:
        owner = self.owner()
        if owner is None:
            return True
        if owner.get("host") != socket.gethostname():
            return False
        return not _pid_alive(int(owner.get("pid", -1)))

    def acquire(self, *, take_over_stale: bool) -> None:
        body = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        )
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing(take_over_stale=take_over_stale)
                continue
            except OSError as error:
                # Permission bits may allow it (root) while the file system does not.
                raise InvalidInputError(
                    f"{self.path}: output folder {str(self.path.parent)!r} is not writable "
                    f"({error.strerror}). Choose a folder you can write to."
                ) from error
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
            self.held = True
            return
        raise StoreLockedError(f"{self.path}: could not acquire the lock; retry the command.")

    def _handle_existing(self, *, take_over_stale: bool) -> None:
        owner = self.owner()
        if not self.is_stale():
            raise StoreLockedError(
                f"{self.path}: another process ({owner!r}) is writing this output. Wait for it "
                "to finish, or choose another output path."
            )
        if not take_over_stale:
            raise StoreLockedError(
                f"{self.path}: a lock left by a process that no longer runs ({owner!r}) guards "
                "an unfinished write. Pass --resume to finish it, or --overwrite to start again."
            )
        logger.warning("Taking over stale lock %s left by %r", self.path, owner)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class StoreWriter:
    """Write a new dataset store atomically, with resume after an interruption.

    Use as a context manager. Arrays are written into ``<out>.partial``; :meth:`commit` renames it
    to ``out``. If the block raises or the process dies, nothing appears under ``out`` and the
    partial store stays for ``resume=True``.

    Parameters
    ----------
    path
        Final path of the store (a directory).
    overwrite
        Replace an existing store at ``path`` (only once the new one is complete).
    resume
        Continue an interrupted write recorded in ``<out>.partial``. ``identity`` must match.
    identity
        JSON-serialisable description of the inputs and options (source checksum, options). A
        resumed write whose identity differs starts again from scratch.
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False,
                 resume: bool = False, identity: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.overwrite = overwrite
        self.resume = resume
        self.identity = dict(identity or {})
        self._lock = _Lock(self.path.with_name(self.path.name + ".lock"))
        self._progress: dict[str, Any] = {"identity": self.identity, "frames_done": {}}
        self._group: zarr.Group | None = None
        # Opening an array reads its metadata from disk, so arrays are looked up once.
        self._arrays: dict[str, zarr.Array] = {}
        self.resumed = False

    # Set-up -----------------------------------------------------------------------------------

    def __enter__(self) -> StoreWriter:
        self._check_output_folder()
        if self.path.exists() and not self.overwrite:
            raise OutputExistsError(
                f"{self.path}: output already exists. Pass --overwrite to replace it (the old "
                "store is removed only after the new one is complete), or choose another path."
            )
        self._lock.acquire(take_over_stale=self.resume or self.overwrite)
        try:
            self._prepare_partial()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _check_output_folder(self) -> None:
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise InvalidInputError(
                f"{self.path}: output folder {str(parent)!r} does not exist. Create it first."
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InvalidInputError(
                f"{self.path}: output folder {str(parent)!r} is not writable. Choose a folder "
                "you can write to."
            )

    def _prepare_partial(self) -> None:
        progress_path = self.partial / PROGRESS_FILE
        if self.partial.exists():
            previous = self._read_progress(progress_path)
            if self.resume and previous is not None and previous.get("identity") == self.identity:
                self._progress = previous
                self._group = zarr.open_group(str(self.partial), mode="r+", zarr_format=3)
                self.resumed = True
                logger.info("Resuming %s from %s", self.path, self.partial)
                return
            if not (self.resume or self.overwrite):
                raise OutputExistsError(
                    f"{self.partial}: an interrupted write of {self.path.name!r} is present. "
                    "Pass --resume to finish it, or --overwrite to start again."
                )
            logger.info("Discarding %s (its inputs or options differ)", self.partial)
            shutil.rmtree(self.partial)
        self._group = zarr.open_group(str(self.partial), mode="w-", zarr_format=3)
        self._save_progress()

    @staticmethod
    def _read_progress(path: Path) -> dict[str, Any] | None:
        try:
            return dict(json.loads(path.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def _save_progress(self) -> None:
        target = self.partial / PROGRESS_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._progress))
        os.replace(temporary, target)

    # Writing ----------------------------------------------------------------------------------

    @property
    def group(self) -> zarr.Group:
        """The root group of the partial store."""
        if self._group is None:
            raise RuntimeError("StoreWriter is not open; use it as a context manager.")
        return self._group

    def create_array(self, spec: ArraySpec, shape: tuple[int, ...], *, parent: str = "",
                     **kwargs: Any) -> zarr.Array:
        """Create ``spec`` in the partial store, or reopen it when resuming.

        ``parent`` places the array in a subgroup (for example ``"groups/<name>"``), created as
        needed; the array is then addressed as ``"<parent>/<spec.name>"`` by the other methods.
        Extra keyword arguments go to :func:`create_array`.
        """
        name = f"{parent}/{spec.name}" if parent else spec.name
        if self.resumed and name in self._progress["frames_done"] and name in self.group:
            array = self.group[name]
            if isinstance(array, zarr.Array) and tuple(array.shape) == tuple(shape):
                self._arrays[name] = array
                return array
        group = self.group.require_group(parent) if parent else self.group
        exists = spec.name in group
        array = create_array(group, spec, shape, overwrite=exists, **kwargs)
        self._arrays[name] = array
        self._progress["frames_done"][name] = 0
        self._save_progress()
        return array

    def _array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            array = self.group[name]
            if not isinstance(array, zarr.Array):
                raise TypeError(f"{name!r} in {self.partial} is a group, not an array")
            self._arrays[name] = array
        return self._arrays[name]

    def frames_done(self, name: str) -> int:
        """Number of leading frames of array ``name`` already written (0 for a fresh write)."""
        return int(self._progress["frames_done"].get(name, 0))

    def write_frames(self, name: str, start: int, data: np.ndarray, *,
                     state: Mapping[str, Any] | None = None) -> None:
        """Write ``data`` at ``[start:start + len(data)]`` of array ``name`` and record progress.

        ``start`` must fall on a chunk boundary, and the slab must end on one or at the end of
        the array, so no chunk is written twice by different slabs. ``state`` (JSON) is saved
        in the same progress record, so a resumed writer gets back running totals that match
        the frames written (see :meth:`state`).
        """
        array = self._array(name)
        chunk = array.chunks[0]
        stop = start + data.shape[0]
        if start % chunk or (stop % chunk and stop != array.shape[0]):
            raise ValueError(
                f"slab [{start}:{stop}] of {name!r} is not aligned with its chunks of "
                f"{chunk} frames"
            )
        array[start:stop] = data
        self._progress["frames_done"][name] = stop
        if state is not None:
            self._progress.setdefault("state", {})[name] = dict(state)
        self._save_progress()

    def state(self, name: str) -> dict[str, Any]:
        """Return the ``state`` saved with the last slab of array ``name`` (empty when fresh)."""
        return dict(self._progress.get("state", {}).get(name, {}))

    def write_whole(self, name: str, data: np.ndarray) -> None:
        """Write a small array in one call and mark it complete."""
        array = self._array(name)
        array[...] = data
        self._progress["frames_done"][name] = int(data.shape[0]) if data.ndim else 1
        self._save_progress()

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge JSON attributes into the root of the store."""
        self.group.attrs.update(dict(attrs))

    # Publication ------------------------------------------------------------------------------

    def commit(self) -> Path:
        """Publish the partial store under its final name and return that path."""
        self.group.attrs.update({"ptychozarr": format_block("dataset")})
        (self.partial / PROGRESS_FILE).unlink(missing_ok=True)
        consolidate(self.partial)
        if self.path.exists():
            trash = self.path.with_name(f"{self.path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, trash)
            os.replace(self.partial, self.path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.partial, self.path)
        logger.info("Wrote store %s", self.path)
        return self.path

    def discard(self) -> None:
        """Remove the partial store, for input that cannot succeed on a resumed run either."""
        shutil.rmtree(self.partial, ignore_errors=True)
        self._group = None
        self._arrays.clear()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


@contextlib.contextmanager
def stage_subgroup(store_path: str | os.PathLike[str], relative_path: str, *,
                   overwrite: bool = False,
                   attrs: Mapping[str, Any] | None = None) -> Iterator[zarr.Group]:
    """Write a subgroup (``groups/<name>``, ``predictions/<model>/<run>``) atomically.

    The subgroup is built in a sibling folder ``<store>.staging-<id>`` (outside the store, so
    readers of the store never list it) and moved to ``relative_path`` when the block ends
    without an exception. On an exception the staging folder is removed. Parent groups are
    created as needed and the store's consolidated metadata is refreshed.
    """
    root = Path(store_path)
    target = root / relative_path
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{root}: {relative_path!r} already exists. Pass overwrite=True (CLI: --overwrite) "
            "to replace it, or choose another name."
        )
    staging = _staging_path(root)
    group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
    group.attrs.update(dict(attrs or {}))
    try:
        yield group
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    _ensure_parent_groups(root, relative_path)
    if target.exists():
        trash = _staging_path(root)
        os.replace(target, trash)
        os.replace(staging, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, target)
    consolidate(root)


def _staging_path(root: Path) -> Path:
    # A sibling of the store on the same file system, so os.replace is an atomic rename.
    return root.with_name(f"{root.name}{STAGING_SUFFIX}{uuid.uuid4().hex[:12]}")


def _ensure_parent_groups(root: Path, relative_path: str) -> None:
    parts = Path(relative_path).parts[:-1]
    current = root
    for part in parts:
        current = current / part
        if not (current / "zarr.json").exists():
            zarr.open_group(str(current), mode="a", zarr_format=3)
