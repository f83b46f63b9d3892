"""Tests of grouping: member draw, regions, normalisation, ground truth and the stored view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy.spatial import cKDTree

import ptychozarr
from ptychozarr.config import GroupingConfig
from ptychozarr.errors import InvalidInputError, OutputExistsError
from ptychozarr.grouping import build_groups, group_dataset, select_region
from ptychozarr.simulate import SimulationConfig, simulate_dataset
from ptychozarr.store import RAW_ARRAYS, StoreWriter, open_store
from ptychozarr.workflows import group as group_workflow

N = 32


def _array(store: Path, name: str) -> np.ndarray:
    array = open_store(store)[name]
    assert isinstance(array, zarr.Array)
    return np.asarray(array[...])


def _positions(store: Path) -> np.ndarray:
    return np.stack([_array(store, "xcoords"), _array(store, "ycoords")], axis=1)


@pytest.fixture(scope="module")
def integer_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with 80 positions at integer pixels on a jittered raster, with an object."""
    folder = tmp_path_factory.mktemp("grouping")
    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(8), indexing="xy"), -1).reshape(-1, 2)
    table = 20 + 6 * grid + rng.integers(-2, 3, size=grid.shape)
    np.savetxt(folder / "scan.csv", table, delimiter=",", fmt="%d")
    config = SimulationConfig(n=N, object_size_px=112, positions_kind="file",
                              positions_path=str(folder / "scan.csv"), nphotons=1e6, seed=2)
    return simulate_dataset(folder / "int.zarr", config, chunk_frames=16)


@pytest.fixture(scope="module")
def random_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with 120 random positions, simulated in chunks of 16."""
    folder = tmp_path_factory.mktemp("grouping")
    config = SimulationConfig(n=N, n_patterns=120, object_size_px=128, nphotons=1e6, seed=8)
    return simulate_dataset(folder / "rand.zarr", config, chunk_frames=16)


# Member draw and regions ----------------------------------------------------------------------


def test_members_among_k_nearest() -> None:
    positions = np.random.default_rng(0).uniform(0, 100, size=(150, 2))
    index = build_groups(positions, GroupingConfig(gridsize=2, neighbors=7))
    _, nearest = cKDTree(positions).query(positions, k=8)
    assert index.indices.shape == (150, 4)
    np.testing.assert_array_equal(index.seeds, np.arange(150))
    for seed, members in enumerate(index.indices):
        assert set(members) <= set(nearest[seed])
        assert len(set(members)) == 4


def test_relative_offsets_sum_to_zero() -> None:
    positions = np.random.default_rng(1).uniform(0, 100, size=(60, 2))
    index = build_groups(positions, GroupingConfig(gridsize=2))
    np.testing.assert_allclose(index.relative.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(index.offsets[:, None, :] - index.relative,
                               positions[index.indices], atol=1e-12)


def test_gridsize_one_every_position() -> None:
    positions = np.random.default_rng(2).uniform(0, 100, size=(30, 2))
    index = build_groups(positions, GroupingConfig(gridsize=1))
    np.testing.assert_array_equal(index.indices[:, 0], np.arange(30))
    assert np.all(index.relative == 0)


def test_top_bottom_share_no_position() -> None:
    positions = np.random.default_rng(3).uniform(0, 100, size=(101, 2))
    positions[:5, 1] = np.median(positions[:, 1])
    top = build_groups(positions, GroupingConfig(gridsize=2, region="top")).indices
    bottom = build_groups(positions, GroupingConfig(gridsize=2, region="bottom")).indices
    assert not set(top.ravel()) & set(bottom.ravel())
    halves = np.concatenate([select_region(positions, "top"), select_region(positions, "bottom")])
    assert sorted(halves) == list(range(101))


def test_left_right_split_at_median() -> None:
    positions = np.random.default_rng(4).uniform(0, 100, size=(41, 2))
    left, right = select_region(positions, "left"), select_region(positions, "right")
    assert len(left) == 20
    assert len(right) == 21
    assert positions[left, 0].max() < positions[right, 0].min()


def test_box_region_members_inside() -> None:
    positions = np.random.default_rng(5).uniform(0, 100, size=(200, 2))
    index = build_groups(positions, GroupingConfig(gridsize=2, region="box:10,60,20,70"))
    members = positions[index.indices]
    assert np.all((members[..., 0] >= 10) & (members[..., 0] < 60))
    assert np.all((members[..., 1] >= 20) & (members[..., 1] < 70))


def test_n_groups_subsamples_seeds() -> None:
    positions = np.random.default_rng(6).uniform(0, 100, size=(50, 2))
    config = GroupingConfig(gridsize=1, n_groups=12, seed=3)
    first = build_groups(positions, config).indices
    again = build_groups(positions, config).indices
    assert first.shape == (12, 1)
    assert len(np.unique(first)) == 12
    np.testing.assert_array_equal(first, again)


def test_too_many_groups_rejected() -> None:
    positions = np.random.default_rng(7).uniform(0, 100, size=(20, 2))
    with pytest.raises(InvalidInputError, match="pass oversample=True"):
        build_groups(positions, GroupingConfig(gridsize=2, n_groups=50))


def test_oversample_distinct_sets() -> None:
    positions = np.random.default_rng(8).uniform(0, 100, size=(20, 2))
    index = build_groups(positions, GroupingConfig(gridsize=2, n_groups=50, oversample=True))
    assert index.indices.shape == (50, 4)
    for seed in np.unique(index.seeds):
        groups = index.indices[index.seeds == seed]
        sets = {tuple(sorted(members)) for members in groups}
        assert len(sets) == len(groups)


def test_small_selection_includes_seed() -> None:
    positions = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    index = build_groups(positions, GroupingConfig(gridsize=2, neighbors=7))
    assert all(sorted(members) == [0, 1, 2, 3] for members in index.indices)


# Stored view ----------------------------------------------------------------------------------


def test_truth_patch_at_member_position(integer_store: Path) -> None:
    name = group_dataset(integer_store, GroupingConfig(gridsize=2), name="truth")
    view = f"groups/{name}"
    indices = _array(integer_store, f"{view}/indices")
    amplitude = _array(integer_store, f"{view}/Y_I")
    phase = _array(integer_store, f"{view}/Y_phi")
    obj = _array(integer_store, "object")
    positions = _positions(integer_store).astype(int)
    offsets = _array(integer_store, f"{view}/offsets")
    half = N // 2
    for group in range(0, len(indices), 7):
        for channel in range(4):
            x, y = positions[indices[group, channel]]
            patch = obj[y - half:y + half, x - half:x + half]
            np.testing.assert_allclose(amplitude[group, :, :, channel], np.abs(patch), rtol=1e-6)
            np.testing.assert_allclose(phase[group, :, :, channel], np.angle(patch), atol=1e-6)

    # The reference cut each patch at the member reflected through the centroid; that differs.
    x, y = positions[indices[0, 0]]
    rx, ry = np.rint(2 * offsets[0] - (x, y)).astype(int)
    assert (rx, ry) != (x, y)
    reflected = obj[ry - half:ry + half, rx - half:rx + half]
    assert not np.allclose(amplitude[0, :, :, 0], np.abs(reflected))


def test_x_is_alpha_times_amplitude(random_store: Path) -> None:
    name = group_dataset(random_store, GroupingConfig(gridsize=2), name="x", chunk_groups=16)
    view = open_store(random_store)[f"groups/{name}"]
    alpha = view.attrs["alpha"]
    x = _array(random_store, f"groups/{name}/X")
    indices = _array(random_store, f"groups/{name}/indices")
    diffraction = _array(random_store, "diffraction")
    assert x.dtype == np.float32
    assert x.shape == (120, N, N, 4)
    np.testing.assert_allclose(x, np.moveaxis(diffraction[indices], 1, -1) * alpha, rtol=1e-6)
    assert (x.astype(np.float64) ** 2).sum(axis=(1, 2)).mean() == pytest.approx((N / 2) ** 2,
                                                                                  rel=1e-6)
    assert view.attrs["intensity_scale"] == pytest.approx(np.sqrt(1e6) / (N / 2))


def test_attributes_of_view(random_store: Path) -> None:
    name = group_dataset(random_store, GroupingConfig(gridsize=2, region="top"))
    attrs = open_store(random_store)[f"groups/{name}"].attrs
    relative = _array(random_store, f"groups/{name}/relative")
    assert name == "g2-k7-seed0-nall-top"
    assert attrs["ptychozarr"]["kind"] == "group"
    assert attrs["gridsize"] == 2
    assert attrs["K"] == 7
    assert attrs["region"] == "top"
    assert attrs["n"] == N
    assert attrs["n_groups"] == 60
    assert attrs["nphotons"] == 1e6
    assert attrs["has_ground_truth"] is True
    assert attrs["max_offset_px"] == pytest.approx(np.abs(relative).max())


def test_alpha_same_for_any_chunking(random_store: Path, tmp_path: Path) -> None:
    config = GroupingConfig(gridsize=2, seed=1)
    one = group_dataset(random_store, config, name="one-chunk", chunk_groups=120)
    many = group_dataset(random_store, config, name="many-chunks", chunk_groups=7)
    rechunked = simulate_dataset(
        tmp_path / "r.zarr",
        SimulationConfig(n=N, n_patterns=120, object_size_px=128, nphotons=1e6, seed=8),
        chunk_frames=120)
    whole = group_dataset(rechunked, config, name="one-chunk")

    attrs = [open_store(store)[f"groups/{name}"].attrs
             for store, name in ((random_store, one), (random_store, many), (rechunked, whole))]
    assert attrs[0]["alpha"] == attrs[1]["alpha"]
    assert attrs[0]["alpha"] == attrs[2]["alpha"]
    assert attrs[0]["intensity_scale"] == attrs[1]["intensity_scale"]
    assert attrs[0]["intensity_scale"] == attrs[2]["intensity_scale"]
    np.testing.assert_array_equal(_array(random_store, f"groups/{one}/X"),
                                  _array(random_store, f"groups/{many}/X"))


def test_existing_view_needs_overwrite(random_store: Path) -> None:
    group_dataset(random_store, GroupingConfig(), name="twice")
    with pytest.raises(OutputExistsError, match="already exists"):
        group_dataset(random_store, GroupingConfig(), name="twice")
    group_dataset(random_store, GroupingConfig(gridsize=2), name="twice", overwrite=True)
    assert _array(random_store, "groups/twice/indices").shape == (120, 4)


def test_datatree_shows_groups(random_store: Path) -> None:
    name = group_dataset(random_store, GroupingConfig(gridsize=1), name="tree")
    tree = ptychozarr.open_datatree(random_store)
    node = tree["groups"][name]
    assert node["X"].dims == ("group", "ky", "kx", "channel")
    assert node["relative"].dims == ("group", "channel", "xy")
    assert node.attrs["gridsize"] == 1


def _store_without_object(path: Path, *, units: str = "pixel") -> Path:
    rng = np.random.default_rng(0)
    with StoreWriter(path) as writer:
        writer.create_array(RAW_ARRAYS["diffraction"], (24, 8, 8), chunk_frames=8)
        writer.create_array(RAW_ARRAYS["xcoords"], (24,), units=units)
        writer.create_array(RAW_ARRAYS["ycoords"], (24,), units=units)
        for start in range(0, 24, 8):
            writer.write_frames("diffraction", start, rng.random((8, 8, 8), dtype=np.float32))
        writer.write_whole("xcoords", rng.uniform(0, 50, 24))
        writer.write_whole("ycoords", rng.uniform(0, 50, 24))
        writer.commit()
    return path


def test_store_without_object(tmp_path: Path) -> None:
    store = _store_without_object(tmp_path / "plain.zarr")
    name = group_dataset(store, GroupingConfig(gridsize=2))
    view = open_store(store)[f"groups/{name}"]
    assert isinstance(view, zarr.Group)
    assert view.attrs["has_ground_truth"] is False
    assert view.attrs["nphotons"] == 1e9
    assert "Y_I" not in view
    assert "X" in view


def test_positions_in_metres_rejected(tmp_path: Path) -> None:
    store = _store_without_object(tmp_path / "metres.zarr", units="m")
    with pytest.raises(InvalidInputError, match="'xcoords' is in 'm'"):
        group_dataset(store, GroupingConfig())


# Command line ---------------------------------------------------------------------------------


def test_cli_groups_region(random_store: Path) -> None:
    status = group_workflow.main([str(random_store), "--gridsize", "2", "--region", "bottom",
                                  "--name", "cli-bottom", "--chunk-groups", "32"])
    assert status == 0
    assert _array(random_store, "groups/cli-bottom/X").shape == (60, N, N, 4)


def test_cli_invalid_region(random_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = group_workflow.main([str(random_store), "--region", "middle"])
    assert status == 2
    assert "region: invalid value 'middle'" in capsys.readouterr().err
