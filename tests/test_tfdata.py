"""The streaming tf.data pipeline: order, coverage, chunk reads, model inputs and targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptychozarr.container import LazyContainer
from ptychozarr.errors import InvalidInputError
from ptychozarr.tfdata import _ShuffleBuffer, make_dataset, reads_per_chunk

VIEW = "synthetic"


@pytest.fixture(scope="module")
def store_g1(tmp_path_factory: pytest.TempPathFactory, grouped_store_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("tfdata") / "g1.zarr"
    return Path(grouped_store_factory(path, n_groups=45, n=64, gridsize=1, chunk_groups=8))


@pytest.fixture(scope="module")
def store_g2(tmp_path_factory: pytest.TempPathFactory, grouped_store_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("tfdata") / "g2.zarr"
    return Path(grouped_store_factory(path, n_groups=20, n=64, gridsize=2, chunk_groups=6))


def _passes(dataset: Any, count: int) -> list[list[np.ndarray]]:
    """Return ``count`` passes, each a list of every leaf array of every batch, in order."""
    passes = []
    for _ in range(count):
        leaves = []
        for inputs, targets in dataset:
            leaves.extend(np.asarray(leaf) for leaf in (*inputs, *targets))
        passes.append(leaves)
    return passes


def _group_ids(x_batches: list[np.ndarray], stored_x: np.ndarray) -> list[int]:
    """Identify each example by its pattern's total, which is unique per group here."""
    fingerprints = stored_x.reshape(len(stored_x), -1).sum(axis=1)
    ids = []
    for batch in x_batches:
        for example in batch.reshape(len(batch), -1).sum(axis=1):
            ids.append(int(np.argmin(np.abs(fingerprints - example))))
    return ids


def test_stream_matches_preloaded(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    streaming = make_dataset(container, 8, seed=3, shuffle_buffer_groups=10)
    preloaded = make_dataset(container, 8, seed=3, shuffle_buffer_groups=10, preload=True)

    for left, right in zip(_passes(streaming, 2), _passes(preloaded, 2), strict=True):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            np.testing.assert_array_equal(a, b)


def test_stream_covers_each_group_once(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]
    dataset = make_dataset(container, 8, seed=0, shuffle_buffer_groups=4)

    x_batches = [np.asarray(inputs[0]) / container.norm_Y_I for inputs, _ in dataset]

    assert sorted(_group_ids(x_batches, stored)) == list(range(45))


def test_stream_order_changes_per_epoch(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]
    dataset = make_dataset(container, 8, seed=0)

    first, second = ([np.asarray(inputs[0]) / container.norm_Y_I for inputs, _ in dataset]
                     for _ in range(2))

    assert _group_ids(first, stored) != _group_ids(second, stored)


def test_stream_seed_reproducible(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]

    orders = [
        _group_ids([np.asarray(inputs[0]) / container.norm_Y_I
                    for inputs, _ in make_dataset(container, 8, seed=5)], stored)
        for _ in range(2)
    ]

    assert orders[0] == orders[1]


def test_stream_first_epoch_continues_order(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]
    fresh = make_dataset(container, 8, seed=2)
    resumed = make_dataset(container, 8, seed=2, first_epoch=1)

    _, second_pass = ([np.asarray(inputs[0]) for inputs, _ in fresh] for _ in range(2))
    resumed_pass = [np.asarray(inputs[0]) for inputs, _ in resumed]

    assert _group_ids(second_pass, stored) == _group_ids(resumed_pass, stored)


def test_stream_unshuffled_keeps_store_order(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]
    dataset = make_dataset(container, 8, shuffle=False)

    x = np.concatenate([np.asarray(inputs[0]) for inputs, _ in dataset])

    np.testing.assert_allclose(x, stored * np.float32(container.norm_Y_I), rtol=1e-6)


def test_stream_reads_each_chunk_once(store_g1: Path, counting_store: Any) -> None:
    store = counting_store(store_g1)
    container = LazyContainer.open(store, group=VIEW)
    dataset = make_dataset(container, 8, seed=0)

    for _ in dataset:
        pass
    x_reads = [key for key in store.chunk_reads if key.startswith("groups/synthetic/X/")]

    assert len(x_reads) == 6
    assert len(set(x_reads)) == 6


def test_stream_rereads_large_chunks(store_g1: Path, counting_store: Any) -> None:
    store = counting_store(store_g1)
    container = LazyContainer.open(store, group=VIEW)
    stored = container.read_all(["X"])["X"]
    store.chunk_reads.clear()
    dataset = make_dataset(container, 8, seed=0, shuffle_buffer_groups=2)

    x_batches = [np.asarray(inputs[0]) / container.norm_Y_I for inputs, _ in dataset]
    x_reads = [key for key in store.chunk_reads if key.startswith("groups/synthetic/X/")]

    # Five chunks of 8 groups read 8 times each, and the last chunk of 5 groups 5 times.
    assert len(x_reads) == 5 * 8 + 5
    assert sorted(_group_ids(x_batches, stored)) == list(range(45))


def test_reads_per_chunk_spans_mixed_reads() -> None:
    assert reads_per_chunk(512, 1024) == 8
    assert reads_per_chunk(32, 1024) == 1
    assert reads_per_chunk(8, 2) == 8


def test_stream_subset_reads_only_its_rows(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]
    subset = container.select([1, 2, 30, 44])

    x = np.concatenate([np.asarray(inputs[0])
                        for inputs, _ in make_dataset(subset, 3, shuffle=False)])

    np.testing.assert_allclose(x, stored[[1, 2, 30, 44]] * np.float32(container.norm_Y_I),
                               rtol=1e-6)


def test_pinn_inputs_and_targets(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)
    stored = container.read_all(["X", "relative"])
    s = np.float32(container.norm_Y_I)

    inputs, targets = next(iter(make_dataset(container, 20, shuffle=False)))

    np.testing.assert_allclose(inputs[0], stored["X"] * s, rtol=1e-6)
    np.testing.assert_allclose(inputs[1], stored["relative"], rtol=1e-6)
    assert tuple(targets[0].shape) == (20, 64, 64, 1)
    np.testing.assert_allclose(targets[1], stored["X"] * s, rtol=1e-6)
    np.testing.assert_allclose(targets[2], (stored["X"] * s) ** 2, rtol=1e-5)


def test_baseline_members_group_major(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)
    stored = container.read_all(["X", "Y_I", "Y_phi"])

    batches = list(make_dataset(container, 16, model="baseline", shuffle=False))
    x = np.concatenate([np.asarray(inputs) for inputs, _ in batches])
    phase = np.concatenate([np.asarray(targets[1]) for _, targets in batches])

    assert len(batches) == 5
    np.testing.assert_array_equal(x[4 * 3 + 2, ..., 0], stored["X"][3, ..., 2])
    np.testing.assert_array_equal(phase[4 * 7 + 1, ..., 0], stored["Y_phi"][7, ..., 1])


def test_dataset_rejects_unknown_model(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)

    with pytest.raises(InvalidInputError, match=r"model: invalid kind 'ptychonn'"):
        make_dataset(container, 8, model="ptychonn")  # type: ignore[arg-type]


def test_dataset_cardinality(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)

    dataset = make_dataset(container, 8)

    assert int(dataset.cardinality()) == 6


def test_shuffle_buffer_bounded() -> None:
    rng = np.random.default_rng(0)
    buffer = _ShuffleBuffer(5, rng)
    emitted: list[int] = []
    largest = 0

    for start in range(0, 40, 8):
        for (value,) in buffer.add([np.arange(start, start + 8)]):
            largest = max(largest, buffer.size + 1)
            emitted.append(int(value))
    emitted.extend(int(value) for (value,) in buffer.drain())

    assert largest <= 5 + 8
    assert sorted(emitted) == list(range(40))
    assert emitted != list(range(40))


def test_preloaded_passes_cover_each_group(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    stored = container.read_all(["X"])["X"]
    dataset = make_dataset(container, 8, seed=0, preload=True, shuffle_buffer_groups=3)

    for _ in range(2):
        x_batches = [np.asarray(inputs[0]) / container.norm_Y_I for inputs, _ in dataset]
        assert sorted(_group_ids(x_batches, stored)) == list(range(45))
