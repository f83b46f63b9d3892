"""A generator-backed ``tf.data`` pipeline that streams a grouped view chunk by chunk.

Each pass (epoch) reads the storage chunks of ``X`` whole, in an order drawn from
``(seed, epoch)``, converts their groups into model examples and mixes them through a bounded
shuffle buffer. Memory is therefore bounded by the buffer plus one chunk, whatever the number of
groups.

Stores keep groups in scan order, so the groups of one chunk come from one region of the object.
When a chunk is large compared with the buffer, a batch would mix only two or three regions. Each
chunk is then read several times per pass, each read keeping a different random part of its
groups, so that the buffer always holds groups from about :data:`MIXED_READS` reads. Decoding a
chunk several times costs far less than the training steps on its groups.

The same generator serves the in-memory path (``preload=True``): the arrays are read once,
chunk by chunk, and every pass slices them along the same spans in the same order, so both paths
produce identical batches for the same seed.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ptychozarr.errors import InvalidInputError

if TYPE_CHECKING:
    import tensorflow as tf

    from ptychozarr.container import LazyContainer

__all__ = [
    "MIXED_READS",
    "MODEL_KINDS",
    "ModelKind",
    "check_readable",
    "examples_per_group",
    "make_dataset",
    "n_batches",
    "reads_per_chunk",
]

logger = logging.getLogger(__name__)

MIXED_READS = 16
"""Number of chunk reads whose groups the shuffle buffer should hold at any time."""

ModelKind = Literal["pinn", "baseline"]
MODEL_KINDS: tuple[ModelKind, ...] = ("pinn", "baseline")

Fields = tuple[np.ndarray, ...]
"""Arrays whose first axis runs over examples, in the order of ``_ModelIO.field_shapes``."""


@dataclass(frozen=True)
class _ModelIO:
    """What one model kind reads from the grouped view and how groups become examples.

    The generator yields the raw fields of each example, and :attr:`to_model` turns a batch of
    fields into the model's (inputs, targets) inside the TensorFlow graph. The shuffle buffer
    therefore stores each array once.
    """

    arrays: tuple[str, ...]
    to_fields: Callable[[dict[str, np.ndarray]], Fields]
    field_shapes: Callable[[int, int], tuple[tuple[int, ...], ...]]
    to_model: Callable[[tuple[Any, ...], float], tuple[Any, tuple[Any, ...]]]
    per_group: Callable[[int], int]


def _pinn_fields(block: dict[str, np.ndarray]) -> Fields:
    return block["X"].astype(np.float32, copy=False), block["relative"].astype(np.float32)


def _pinn_to_model(fields: tuple[Any, ...],
                   intensity_scale: float) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    import tensorflow as tf

    x, relative = fields
    scaled = x * intensity_scale
    # The object output has no loss; its target only fills the position in the outputs.
    unused = tf.zeros_like(scaled[..., :1])
    return (scaled, relative), (unused, scaled, tf.square(scaled))


def _baseline_fields(block: dict[str, np.ndarray]) -> Fields:
    # The baseline takes one pattern at a time, so members become examples, group-major.
    def members(array: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(array, -1, 1)
        return moved.reshape(-1, *moved.shape[2:], 1).astype(np.float32, copy=False)

    return members(block["X"]), members(block["Y_I"]), members(block["Y_phi"])


def _baseline_to_model(fields: tuple[Any, ...],
                       intensity_scale: float) -> tuple[Any, tuple[Any, ...]]:
    # The baseline has a single input, so the input is a tensor, not a one-element tuple.
    x, amplitude, phase = fields
    return x, (amplitude, phase)


_MODEL_IO: dict[str, _ModelIO] = {
    "pinn": _ModelIO(("X", "relative"), _pinn_fields,
                     lambda n, c: ((n, n, c), (c, 2)), _pinn_to_model, lambda c: 1),
    "baseline": _ModelIO(("X", "Y_I", "Y_phi"), _baseline_fields,
                         lambda n, c: ((n, n, 1), (n, n, 1), (n, n, 1)), _baseline_to_model,
                         lambda c: c),
}


def _model_io(model: str) -> _ModelIO:
    if model not in _MODEL_IO:
        raise InvalidInputError(f"model: invalid kind {model!r}; use one of {MODEL_KINDS!r}.")
    return _MODEL_IO[model]


def examples_per_group(model: ModelKind, channels: int) -> int:
    """Number of examples one group gives ``model``: 1 for the PINN, C for the baseline."""
    return _model_io(model).per_group(channels)


def n_batches(n_examples: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    """Batches in one pass over ``n_examples`` (the last one partial unless ``drop_remainder``)."""
    if drop_remainder:
        return n_examples // batch_size
    return -(-n_examples // batch_size)


def reads_per_chunk(chunk_groups: int, buffer_groups: int) -> int:
    """Return how often each chunk is read per pass so the buffer spans ``MIXED_READS`` reads.

    Each read keeps about ``chunk_groups / reads`` groups, so the buffer of ``buffer_groups``
    holds groups from ``buffer_groups * reads / chunk_groups`` reads. The result lies between 1
    and ``chunk_groups``.
    """
    wanted = math.ceil(MIXED_READS * chunk_groups / max(1, buffer_groups))
    return max(1, min(chunk_groups, wanted))


class _ShuffleBuffer:
    """A bounded pool of examples from which random ones leave as new chunks arrive."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.pool: list[np.ndarray] = []
        self.size = 0

    def add(self, arrays: list[np.ndarray]) -> Iterator[tuple[np.ndarray, ...]]:
        """Add a chunk's examples, then yield random examples until the pool fits its capacity."""
        if not self.pool:
            self.pool = [np.array(array) for array in arrays]
        else:
            self.pool = [np.concatenate([kept[:self.size], new])
                         for kept, new in zip(self.pool, arrays, strict=True)]
        self.size = len(self.pool[0])
        while self.size > self.capacity:
            yield self._pop()

    def drain(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield the remaining examples in random order."""
        while self.size:
            yield self._pop()

    def _pop(self) -> tuple[np.ndarray, ...]:
        index = int(self.rng.integers(self.size))
        last = self.size - 1
        example = tuple(array[index].copy() for array in self.pool)
        for array in self.pool:
            array[index] = array[last]
        self.size = last
        return example


class _ExampleStream:
    """The generator callable behind ``tf.data.Dataset.from_generator``.

    Each call is one pass over the data; passes are numbered from ``first_epoch`` and seed the
    order of the reads, the part of its chunk each read keeps, and the shuffle buffer.
    """

    def __init__(self, read_span: Callable[[int], dict[str, np.ndarray]],
                 span_lengths: list[int], io: _ModelIO, *, shuffle: bool, seed: int,
                 buffer_examples: int, reads: int, first_epoch: int) -> None:
        self.read_span = read_span
        self.span_lengths = span_lengths
        self.io = io
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_examples = buffer_examples
        self.reads = reads
        self._epochs = itertools.count(first_epoch)

    def _visits(self, rng: np.random.Generator) -> list[tuple[int, np.ndarray | None]]:
        """Return (span, kept positions within it) per read, in reading order."""
        if not self.shuffle:
            return [(span, None) for span in range(len(self.span_lengths))]
        visits: list[tuple[int, np.ndarray | None]] = []
        for span, length in enumerate(self.span_lengths):
            parts = np.array_split(rng.permutation(length), min(self.reads, length))
            visits.extend((span, np.sort(part)) for part in parts)
        order = rng.permutation(len(visits))
        return [visits[index] for index in order]

    def __call__(self) -> Iterator[Fields]:
        epoch = next(self._epochs)
        rng = np.random.default_rng([self.seed, epoch])
        buffer = _ShuffleBuffer(self.buffer_examples, rng)
        for span, kept in self._visits(rng):
            block = self.read_span(span)
            if kept is not None and len(kept) < self.span_lengths[span]:
                block = {name: values[kept] for name, values in block.items()}
            fields = self.io.to_fields(block)
            if self.shuffle:
                yield from buffer.add(list(fields))
            else:
                for row in range(len(fields[0])):
                    yield tuple(field[row] for field in fields)
        yield from buffer.drain()


def _check_finite(block: dict[str, np.ndarray], container: LazyContainer, start: int) -> None:
    """Raise :class:`InvalidInputError` when ``block`` (positions from ``start``) has NaN or inf."""
    for name, values in block.items():
        finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if not finite.all():
            row = int(container.group_rows()[start + int(np.argmin(finite))])
            raise InvalidInputError(
                f"{container.where}: {name!r} of group {row} contains NaN or infinite values, "
                "so no model can be trained on it. Repair the store's arrays and group it "
                "again (`ptychozarr group --overwrite`)."
            )


def _span_reader(container: LazyContainer, names: tuple[str, ...], *,
                 preload: bool) -> tuple[Callable[[int], dict[str, np.ndarray]], list[int]]:
    spans = container.chunk_spans()
    if not preload:

        def read_checked(k: int) -> dict[str, np.ndarray]:
            block = container.read_span(names, *spans[k])
            _check_finite(block, container, spans[k][0])
            return block

        return read_checked, [stop - start for start, stop in spans]

    arrays = container.read_all(names)
    _check_finite(arrays, container, 0)

    def read_preloaded(k: int) -> dict[str, np.ndarray]:
        start, stop = spans[k]
        return {name: array[start:stop] for name, array in arrays.items()}

    return read_preloaded, [stop - start for start, stop in spans]


def check_readable(container: LazyContainer, *, model: ModelKind = "pinn") -> None:
    """Read every span of the arrays that ``model`` trains on, outside TensorFlow.

    Raises the error that reading the store or checking its values gives (for example
    :class:`~ptychozarr.errors.CorruptedChunkError`), which inside a ``tf.data`` pipeline
    arrives wrapped in a TensorFlow error.
    """
    read_span, span_lengths = _span_reader(container, _model_io(model).arrays, preload=False)
    for span in range(len(span_lengths)):
        read_span(span)


def make_dataset(container: LazyContainer, batch_size: int, *, model: ModelKind = "pinn",
                 shuffle: bool = True, seed: int | None = None, repeat: bool = False,
                 drop_remainder: bool = False, shuffle_buffer_groups: int = 1024,
                 first_epoch: int = 0, preload: bool = False) -> tf.data.Dataset:
    """Build a ``tf.data.Dataset`` of (inputs, targets) batches for ``model``.

    Parameters
    ----------
    container
        The grouped data (a store's view or in-memory arrays); only its chunks are read.
    batch_size
        Examples per batch.
    model
        ``"pinn"``: one example per group. Inputs ``(s * X, relative)``: X (N, N, C) float32
        normalised amplitude, s the view's intensity scale, relative (C, 2) float32 centroid
        minus member (x, y) in pixels. Targets ``(zeros (N, N, 1), s * X, (s * X)**2)`` for the
        outputs (object, amplitude, intensity); the object output has no loss.
        ``"baseline"``: one example per member, group-major; input X (N, N, 1) (a
        tensor, not a tuple), targets ``(Y_I, Y_phi)`` (N, N, 1) float32.
    shuffle
        Read chunks in a random order each pass and mix examples through a buffer. Chunks
        larger than ``shuffle_buffer_groups / MIXED_READS`` are read several times per pass
        (see :func:`reads_per_chunk`), each read keeping a random part of their groups.
    seed
        Seed of the chunk order and the buffer; pass ``k`` uses ``(seed, first_epoch + k)``.
        ``None`` draws a seed once.
    repeat
        Repeat indefinitely (each repetition is a new, differently shuffled pass).
    drop_remainder
        Drop the last partial batch of each pass.
    shuffle_buffer_groups
        Capacity of the shuffle buffer in groups; memory stays below this plus one chunk.
    first_epoch
        Number of the first pass (used when resuming training, so shuffling continues).
    preload
        Read the arrays once into memory and slice them each pass instead of reading the store.

    Returns
    -------
    tf.data.Dataset
        Elements ``(inputs, targets)`` of float32 tensors with a leading batch axis, batched
        and then prefetched.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise InvalidInputError(f"batch_size: invalid value {batch_size!r}; use at least 1.")
    io = _model_io(model)
    read_span, span_lengths = _span_reader(container, io.arrays, preload=preload)
    run_seed = int(np.random.default_rng().integers(2**63)) if seed is None else int(seed)
    per_group = io.per_group(container.channels)
    reads = reads_per_chunk(max(span_lengths, default=1), shuffle_buffer_groups)
    stream = _ExampleStream(read_span, span_lengths, io, shuffle=shuffle, seed=run_seed,
                            buffer_examples=max(1, shuffle_buffer_groups * per_group),
                            reads=reads, first_epoch=first_epoch)

    signature = tuple(tf.TensorSpec(shape, tf.float32)
                      for shape in io.field_shapes(container.n, container.channels))
    dataset = tf.data.Dataset.from_generator(stream, output_signature=signature)

    batches = n_batches(len(container) * per_group, batch_size, drop_remainder=drop_remainder)
    scale = float(container.norm_Y_I)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(lambda *fields: io.to_model(fields, scale))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    if repeat:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)

