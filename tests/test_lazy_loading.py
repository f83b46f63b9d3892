"""LazyContainer: nothing read at construction, reference layout, caching, batch counts."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from ptychozarr.container import LargeArrayWarning, LazyContainer
from ptychozarr.errors import MissingKeyError

VIEW = "synthetic"


@pytest.fixture(scope="module")
def store_g2(tmp_path_factory: pytest.TempPathFactory, grouped_store_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("lazy") / "g2.zarr"
    return Path(grouped_store_factory(path, n_groups=100, n=64, gridsize=2, chunk_groups=16))


def test_lazy_loading_avoids_oom(store_g2: Path, counting_store: Any) -> None:
    store = counting_store(store_g2)

    container = LazyContainer.open(store, group=VIEW)

    assert store.chunk_reads == []
    assert container.cached_arrays == ()
    assert len(container) == 100
    assert store.chunk_reads == []


def test_lazy_loading_reads_on_first_access(store_g2: Path, counting_store: Any) -> None:
    store = counting_store(store_g2)
    container = LazyContainer.open(store, group=VIEW)

    x = container.X

    assert tuple(x.shape) == (100, 64, 64, 4)
    assert any(key.startswith("groups/synthetic/X/") for key in store.chunk_reads)
    assert not any("Y_I" in key for key in store.chunk_reads)


def test_lazy_container_backward_compatible(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)

    expected = {
        "X": ((100, 64, 64, 4), tf.float32),
        "Y_I": ((100, 64, 64, 4), tf.float32),
        "Y_phi": ((100, 64, 64, 4), tf.float32),
        "Y": ((100, 64, 64, 4), tf.complex64),
        "coords_nominal": ((100, 1, 2, 4), tf.float32),
        "coords_true": ((100, 1, 2, 4), tf.float32),
        "coords": ((100, 1, 2, 4), tf.float32),
        "probe": ((64, 64), tf.complex64),
    }
    for name, (shape, dtype) in expected.items():
        value = getattr(container, name)
        assert isinstance(value, tf.Tensor), name
        assert tuple(value.shape) == shape, name
        assert value.dtype == dtype, name
    assert len(container) == 100
    assert container.nn_indices.shape == (100, 4)
    assert container.global_offsets.shape == (100, 1, 2, 1)
    assert container.local_offsets.shape == (100, 1, 2, 4)
    assert container.norm_Y_I == pytest.approx(container.attrs["intensity_scale"])


def test_lazy_container_offsets_convention(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)
    root = LazyContainer.open(store_g2, group=VIEW).read_all(["indices"])["indices"]
    import zarr

    raw = zarr.open_group(str(store_g2), mode="r")
    positions = np.stack([raw["xcoords"][...], raw["ycoords"][...]], axis=-1)[root]

    members = container.global_offsets - container.local_offsets

    np.testing.assert_allclose(members[:, 0].transpose(0, 2, 1), positions)
    np.testing.assert_allclose(container.coords_true.numpy(), container.local_offsets, rtol=1e-6)


def test_lazy_container_nominal_coords(store_g2: Path) -> None:
    import zarr

    container = LazyContainer.open(store_g2, group=VIEW)
    raw = zarr.open_group(str(store_g2), mode="r")
    nominal = np.stack([raw["xcoords_start"][...], raw["ycoords_start"][...]], axis=-1)
    members = nominal[container.nn_indices]
    expected = members.mean(axis=1, keepdims=True) - members

    coords = container.coords_nominal.numpy()

    np.testing.assert_allclose(coords[:, 0].transpose(0, 2, 1), expected, atol=1e-5)
    assert not np.allclose(coords, container.coords_true.numpy())


def test_lazy_caching(store_g2: Path, counting_store: Any) -> None:
    store = counting_store(store_g2)
    container = LazyContainer.open(store, group=VIEW)

    first = container.X
    reads_after_first = len(store.chunk_reads)
    second = container.X

    assert first is second
    assert len(store.chunk_reads) == reads_after_first
    assert container.cached_arrays == ("X",)


def test_lazy_budget_warns(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW, memory_budget_bytes=1024)

    with pytest.warns(LargeArrayWarning, match=r"LazyContainer\.X: materialising 6\.2 MiB"):
        _ = container.X


def test_lazy_budget_warning_points_at_caller(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW, memory_budget_bytes=1024)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ = container.Y_I

    assert caught[0].filename == __file__


def test_lazy_no_warning_within_budget(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)

    with warnings.catch_warnings():
        warnings.simplefilter("error", LargeArrayWarning)
        _ = container.X


def test_tensor_input_handled() -> None:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((10, 32, 32, 4), dtype=np.float32))
    y_i = tf.constant(rng.random((10, 32, 32, 4), dtype=np.float32))
    y_phi = tf.zeros((10, 32, 32, 4))
    coords = tf.constant(rng.random((10, 1, 2, 4)))
    probe = tf.ones((32, 32), tf.complex64)

    container = LazyContainer.from_arrays(x, Y_I=y_i, Y_phi=y_phi, coords_nominal=coords,
                                          probe=probe, norm_Y_I=3.0)

    np.testing.assert_array_equal(container.X.numpy(), x.numpy())
    assert container.Y.dtype == tf.complex64
    np.testing.assert_allclose(container.coords_true.numpy(), coords.numpy(), rtol=1e-6)
    assert container.probe.shape == (32, 32)
    assert container.norm_Y_I == 3.0


def test_len_method() -> None:
    container = LazyContainer.from_arrays(np.zeros((50, 64, 64, 1), np.float32))

    assert len(container) == 50


def test_from_arrays_rejects_bad_coords() -> None:
    with pytest.raises(ValueError, match=r"coords_nominal: invalid shape \(5, 2, 4\)"):
        LazyContainer.from_arrays(np.zeros((5, 32, 32, 4), np.float32),
                                  coords_nominal=np.zeros((5, 2, 4)))


def test_missing_ground_truth_message(tmp_path: Path, grouped_store_factory: Any) -> None:
    path = grouped_store_factory(tmp_path / "nogt.zarr", n_groups=8, ground_truth=False)
    container = LazyContainer.open(path, group=VIEW)

    with pytest.raises(MissingKeyError, match="no ground truth"):
        _ = container.Y_I


def test_missing_view_message(store_g2: Path) -> None:
    with pytest.raises(MissingKeyError, match=r"grouped view 'absent' not found"):
        LazyContainer.open(store_g2, group="absent")


def test_select_reads_subset(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)
    full = container.read_all(["X"])["X"]

    subset = container.select([3, 40, 41, 99])

    assert len(subset) == 4
    np.testing.assert_array_equal(subset.X.numpy(), full[[3, 40, 41, 99]])


def test_dataset_batch_count(tmp_path: Path, grouped_store_factory: Any) -> None:
    path = grouped_store_factory(tmp_path / "g2n32.zarr", n_groups=100, n=64, gridsize=2,
                                 chunk_groups=16)
    container = LazyContainer.open(path, group=VIEW)

    batches = list(container.as_tf_dataset(16, seed=0))

    assert len(batches) == 7
    assert sum(int(inputs[0].shape[0]) for inputs, _ in batches) == 100
    assert int(batches[-1][0][0].shape[0]) == 4


def test_dataset_batch_count_drop_remainder(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)

    batches = list(container.as_tf_dataset(16, seed=0, drop_remainder=True))

    assert len(batches) == 6


def test_as_tf_dataset_yields_correct_structure(store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)

    inputs, targets = next(iter(container.as_tf_dataset(16, seed=0, model="pinn")))

    assert len(inputs) == 2
    assert tuple(inputs[0].shape) == (16, 64, 64, 4)
    assert tuple(inputs[1].shape) == (16, 4, 2)
    assert len(targets) == 3
    assert tuple(targets[0].shape) == (16, 64, 64, 1)
    assert tuple(targets[1].shape) == (16, 64, 64, 4)
    assert tuple(targets[2].shape) == (16, 64, 64, 4)
