"""Frame stacks read slab by slab from any source, and their streamed write into a store.

A frame reader yields a (frame, ky, kx) stack in slabs of whole frames. Three readers exist: an
NPZ member whose frames lie along its first storage axis (streamed straight from the zip), an
NPZ member whose frames lie along its last storage axis (the legacy (N, N, M) layout, rechunked
on disk first, so the whole array is never in memory) and any sliceable array such as an HDF5
dataset. :func:`stream_frames` validates, converts and writes the slabs chunk by chunk while a
background thread reads the next slab.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from ptychozarr.errors import InvalidInputError
from ptychozarr.io.detector import DetectorPlan
from ptychozarr.io.npz import NpyHeader, NpzArchive
from ptychozarr.store.create import StoreWriter

__all__ = [
    "ArrayFrames",
    "FrameReader",
    "FrameTransform",
    "NpzFrames",
    "ScanLastNpzFrames",
    "mean_intensity",
    "prefetch",
    "stream_frames",
]

logger = logging.getLogger(__name__)

RECHUNK_BUDGET_BYTES = 32 * 2**20
"""Bytes of the legacy layout read per step of the on-disk rechunk (at least one line)."""

SCRATCH_CHUNK_BYTES = 4 * 2**20
"""Uncompressed size aimed at for one chunk of the rechunk's scratch array."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(frames_done, n_frames)`` after every written slab."""


class FrameReader(Protocol):
    """A (frame, ky, kx) stack readable in slabs of whole frames."""

    where: str
    """File and key, for messages."""

    @property
    def n_frames(self) -> int:
        """Number of frames M."""
        ...

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(ky, kx) of one frame."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """Dtype of the source values."""
        ...

    def slabs(self, start: int, frames_per_slab: int) -> Iterator[np.ndarray]:
        """Yield (frames, ky, kx) slabs from frame ``start`` to the end."""
        ...


@dataclass
class ArrayFrames:
    """Frames of a sliceable (frame, ky, kx) array, for example an ``h5py.Dataset``."""

    where: str
    array: Any

    @property
    def n_frames(self) -> int:
        return int(self.array.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.array.shape[1]), int(self.array.shape[2])

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.array.dtype)

    def slabs(self, start: int, frames_per_slab: int) -> Iterator[np.ndarray]:
        for first in range(start, self.n_frames, frames_per_slab):
            yield np.asarray(self.array[first:first + frames_per_slab])


@dataclass
class NpzFrames:
    """Frames along the first storage axis of an NPZ member, streamed from the zip.

    ``transpose`` swaps ky and kx of every frame. It is set for a Fortran-ordered member in the
    legacy layout, whose storage order is (M, kx, ky).
    """

    where: str
    archive: NpzArchive
    header: NpyHeader
    transpose: bool = False

    @property
    def n_frames(self) -> int:
        return self.header.stream_shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        _, first, second = self.header.stream_shape
        return (second, first) if self.transpose else (first, second)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.header.dtype

    def slabs(self, start: int, frames_per_slab: int) -> Iterator[np.ndarray]:
        for slab in self.archive.iter_slabs(self.header, frames_per_slab, start=start):
            yield slab.transpose(0, 2, 1) if self.transpose else slab

    def check_integrity(self) -> None:
        """Read the whole member so that a CRC-32 mismatch raises :class:`InputFileError`."""
        for _ in self.archive.iter_slabs(self.header, 1024):
            pass


@dataclass
class ScanLastNpzFrames:
    """Frames along the last storage axis of an NPZ member, via an on-disk rechunk.

    The member is stored (a, b, M) in its storage order: the legacy (N, N, M) layout, or a
    Fortran-ordered (M, N, N) array whose storage order is (kx, ky, M), in which case
    ``transpose`` is set. :meth:`prepare` copies it, a few lines of M values at a time, into a
    scratch Zarr array chunked along M, from which :meth:`slabs` reads whole frames.
    """

    where: str
    archive: NpzArchive
    header: NpyHeader
    scratch: Path
    transpose: bool = False
    budget_bytes: int = RECHUNK_BUDGET_BYTES

    @property
    def n_frames(self) -> int:
        return self.header.stream_shape[2]

    @property
    def frame_shape(self) -> tuple[int, int]:
        first, second, _ = self.header.stream_shape
        return (second, first) if self.transpose else (first, second)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.header.dtype

    def prepare(self) -> None:
        """Write the scratch copy chunked along M, unless a complete one exists."""
        done_marker = self.scratch / "complete"
        if done_marker.exists():
            return
        rows, columns, n_frames = self.header.stream_shape
        lines = max(1, self.budget_bytes // max(1, n_frames * self.dtype.itemsize))
        rows_per_step = max(1, min(rows, lines // columns)) if lines >= columns else 1
        columns_per_step = columns if lines >= columns else _largest_divisor(columns, lines)
        line_bytes = rows_per_step * columns_per_step * self.dtype.itemsize
        frames_per_chunk = max(1, min(n_frames, SCRATCH_CHUNK_BYTES // line_bytes))
        target = zarr.create_array(
            store=str(self.scratch / "frames"), shape=(rows, columns, n_frames),
            chunks=(rows_per_step, columns_per_step, frames_per_chunk),
            dtype=self.dtype, compressors=ZstdCodec(level=1), zarr_format=3, overwrite=True,
        )
        logger.info("Rechunking %s (%d x %d x %d) on disk", self.where, rows, columns, n_frames)
        if columns_per_step == columns:
            slabs = self.archive.iter_slabs(self.header, rows_per_step)
            for index, slab in enumerate(prefetch(slabs)):
                target[index * rows_per_step:index * rows_per_step + slab.shape[0]] = slab
        else:
            slabs = self.archive.iter_slabs(self.header, columns_per_step, leading_axes=2)
            for index, slab in enumerate(prefetch(slabs)):
                row, column = divmod(index * columns_per_step, columns)
                target[row, column:column + columns_per_step] = slab
        done_marker.write_text("done\n")

    def slabs(self, start: int, frames_per_slab: int) -> Iterator[np.ndarray]:
        source = zarr.open_array(str(self.scratch / "frames"), mode="r", zarr_format=3)
        for first in range(start, self.n_frames, frames_per_slab):
            block = np.asarray(source[:, :, first:first + frames_per_slab])
            frames = np.moveaxis(block, -1, 0)
            yield np.ascontiguousarray(frames.transpose(0, 2, 1) if self.transpose else frames)


def _largest_divisor(value: int, limit: int) -> int:
    return max(d for d in range(1, min(value, limit) + 1) if value % d == 0)


# Conversion ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameTransform:
    """Turn source frames into stored amplitudes: zero-frequency shift, detector plan, sqrt.

    Attributes
    ----------
    scale
        ``"intensity"`` (photon counts; the square root is taken in float64) or
        ``"amplitude"``.
    dc_corner
        The source has its zero frequency at the corners; ``fftshift`` moves it to the centre.
    plan
        Crop, bin and pad, applied to intensities.
    """

    scale: str
    dc_corner: bool
    plan: DetectorPlan

    def intensity(self, slab: np.ndarray) -> np.ndarray:
        """Return float64 intensities of a source slab, centred but not cropped."""
        values = slab.astype(np.float64)
        if self.scale == "amplitude":
            values *= values
        if self.dc_corner:
            values = np.fft.fftshift(values, axes=(-2, -1))
        return values

    def __call__(self, slab: np.ndarray) -> tuple[np.ndarray, float]:
        """Return (frames, N, N) float32 amplitudes and the slab's total intensity.

        The total is 0 for unbinned amplitudes, whose scale is arbitrary.
        """
        if self.scale == "amplitude" and self.plan.bin == 1:
            # Crop and pad commute with the square root: skip the float64 round trip.
            values = np.asarray(slab, dtype=np.float32)
            if self.dc_corner:
                values = np.fft.fftshift(values, axes=(-2, -1))
            # The total intensity only measures nphotons, which amplitudes of arbitrary scale
            # cannot give, so it is not computed here.
            return self.plan.apply(values), 0.0
        intensity = self.plan.apply(self.intensity(slab))
        return np.sqrt(intensity).astype(np.float32), float(intensity.sum())


def check_frame_values(slab: np.ndarray, *, where: str, first_frame: int, values: str) -> None:
    """Raise :class:`InvalidInputError` on NaN or infinity in a slab, and on negative values
    unless ``values`` is ``"signed"`` (``"intensity"`` and ``"amplitude"`` must be >= 0)."""
    if slab.size == 0 or slab.dtype.kind not in "fci":
        return
    low = slab.min() if slab.dtype.kind != "c" else None
    # min propagates NaN and max reaches +inf, so two fast reductions screen a real slab before
    # the slower per-frame search that names the frame.
    if low is None or not (np.isfinite(low) and np.isfinite(slab.max())):
        finite = np.isfinite(slab).reshape(slab.shape[0], -1).all(axis=1)
        if not finite.all():
            frame = first_frame + int(np.argmin(finite))
            raise InvalidInputError(
                f"{where}: frame {frame} contains NaN or infinite values. Remove or repair "
                "those frames (for example np.nan_to_num) before converting."
            )
    if values != "signed" and low is not None and low < 0:
        negative = (slab < 0).reshape(slab.shape[0], -1).any(axis=1)
        frame = first_frame + int(np.argmax(negative))
        what = "photon counts" if values == "intensity" else "amplitudes"
        raise InvalidInputError(
            f"{where}: frame {frame} has negative values (minimum {low!r}), which are "
            f"invalid {what}. Clip them to 0 (np.clip) or subtract a smaller background."
        )


def mean_intensity(reader: FrameReader, transform: FrameTransform, *,
                   frames_per_slab: int) -> np.ndarray:
    """Return the mean (ky, kx) intensity of all frames, centred but not cropped (float64)."""
    total = np.zeros(reader.frame_shape, dtype=np.float64)
    first = 0
    slabs = prefetch(reader.slabs(0, frames_per_slab))
    with _corruption_first(reader, slabs):
        for slab in slabs:
            check_frame_values(slab, where=reader.where, first_frame=first,
                               values=transform.scale)
            total += transform.intensity(slab).sum(axis=0)
            first += slab.shape[0]
    return total / max(reader.n_frames, 1)


@contextlib.contextmanager
def _corruption_first(reader: FrameReader, slabs: Generator[Any, None, None]) -> Iterator[None]:
    """Report a corrupted source instead of the invalid values its corruption produced.

    A zip member's CRC-32 is checked only after its last byte, so flipped bytes can first show
    up as NaN or negative values. On such a value error the rest of the source is read, and a
    failing checksum replaces the value error.
    """
    try:
        yield
    except InvalidInputError:
        slabs.close()
        check_integrity = getattr(reader, "check_integrity", None)
        if check_integrity is not None:
            check_integrity()
        raise


def stream_frames(writer: StoreWriter, name: str, reader: FrameReader,
                  convert: Callable[[np.ndarray], tuple[np.ndarray, float]], *,
                  values: str, progress: ProgressCallback | None = None) -> float:
    """Validate, convert and write every frame of ``reader`` into array ``name``.

    The array must already exist in ``writer``. Writing starts at the frames already written
    (after a resume) and proceeds chunk by chunk. ``convert`` maps a source slab to the stored
    slab and a number to add up, such as the total intensity. The running sum is saved with the
    progress, so a resumed write returns the same sum as an uninterrupted one. ``values``
    selects the checks of :func:`check_frame_values`.

    Returns
    -------
    float
        Sum of the numbers returned by ``convert`` over all frames.
    """
    array = writer.group[name]
    if not isinstance(array, zarr.Array):
        raise TypeError(f"{name!r} is not an array")
    chunk = int(array.chunks[0])
    start = writer.frames_done(name)
    total = float(writer.state(name).get("sum", 0.0))
    slabs = prefetch(reader.slabs(start, chunk))
    with _corruption_first(reader, slabs):
        for slab in slabs:
            check_frame_values(slab, where=reader.where, first_frame=start, values=values)
            stored, amount = convert(slab)
            total += amount
            writer.write_frames(name, start, stored, state={"sum": total})
            start += slab.shape[0]
            if progress is not None:
                progress(start, reader.n_frames)
    return total


# Read-ahead ---------------------------------------------------------------------------------


def prefetch(items: Iterator[Any], depth: int = 1) -> Generator[Any, None, None]:
    """Yield ``items`` while a background thread reads up to ``depth`` items ahead.

    Reading (zip inflation, HDF5 decompression) and writing (Zstd compression) both release the
    GIL, so they overlap on two cores. An exception in the reader is raised in the caller;
    closing the generator stops the thread.
    """
    channel: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                channel.put(message, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(("error", error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="ptychozarr-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = channel.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
