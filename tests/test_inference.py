"""Tests of Dask inference: same patches as in one process, placement, publication, caching."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from ptychozarr import inference
from ptychozarr.errors import BundleError, MissingKeyError
from ptychozarr.inference import current_run, predict, read_bundle_info, read_run_object
from ptychozarr.models.bundle import load_bundle, save_untrained_bundle

N = 64
GROUPED_VIEW = "synthetic"
"""Name of the grouped view that the ``grouped_store_factory`` fixture writes."""


@pytest.fixture(scope="module")
def gridsize1(tmp_path_factory: pytest.TempPathFactory, simulated_store: dict[str, Any],
              trained_pair: dict[str, Any]) -> dict[str, Any]:
    """A copy of the session's simulated store (192 groups, chunks of 32) and its PINN."""
    store = tmp_path_factory.mktemp("inference-g1") / "data.zarr"
    shutil.copytree(simulated_store["store"], store)
    return {"store": store, "group": simulated_store["group"], "pinn": trained_pair["pinn"]}


@pytest.fixture(scope="module")
def gridsize2(tmp_path_factory: pytest.TempPathFactory,
              grouped_store_factory: Any) -> dict[str, Any]:
    """A store of 12 groups of 4 (chunks of 5) with an untrained baseline bundle."""
    folder = tmp_path_factory.mktemp("inference-g2")
    store = grouped_store_factory(folder / "data.zarr", n_groups=12, n=N, gridsize=2,
                                  chunk_groups=5, seed=3)
    baseline = save_untrained_bundle(store, GROUPED_VIEW, folder / "baseline", kind="baseline")
    return {"store": store, "baseline": baseline}


def _group_arrays(store: Path, name: str) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store / "groups" / name), mode="r")
    return {name: np.asarray(group[name][...]) for name in ("X", "relative", "offsets")}


def _predict(case: dict[str, Any], client: Any, **options: Any) -> str:
    bundle = options.pop("bundle", case.get("pinn"))
    return predict(case["store"], options.pop("group", case["group"]), bundle, client=client,
                   **options)


def _run_arrays(store: Path, run_path: str) -> dict[str, Any]:
    run = zarr.open_group(str(store / run_path), mode="r")
    return {"patches": np.asarray(run["patches"][...]),
            "positions": np.asarray(run["positions"][...]),
            "patch_chunks": run["patches"].chunks, "attrs": dict(run.attrs)}


def test_pinn_patches_match_in_process(gridsize1: dict[str, Any], dask_client: Any) -> None:
    run_path = _predict(gridsize1, dask_client, batch_size=8, run="equal")
    stored = _run_arrays(gridsize1["store"], run_path)
    arrays = _group_arrays(gridsize1["store"], gridsize1["group"])

    expected = load_bundle(gridsize1["pinn"]).predict(arrays["X"], arrays["relative"],
                                                       batch_size=8)

    assert stored["patches"].dtype == np.complex64
    np.testing.assert_allclose(stored["patches"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stored["positions"], arrays["offsets"])


def test_baseline_patches_at_member_positions(gridsize2: dict[str, Any],
                                              dask_client: Any) -> None:
    run_path = predict(gridsize2["store"], GROUPED_VIEW, gridsize2["baseline"],
                       client=dask_client, batch_size=4, run="members")
    stored = _run_arrays(gridsize2["store"], run_path)
    arrays = _group_arrays(gridsize2["store"], GROUPED_VIEW)

    expected = load_bundle(gridsize2["baseline"]).predict(arrays["X"], arrays["relative"],
                                                           batch_size=4)
    members = (arrays["offsets"][:, None, :] - arrays["relative"]).reshape(-1, 2)

    assert stored["patches"].shape == (48, N, N)
    np.testing.assert_allclose(stored["patches"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stored["positions"], members)
    assert stored["patch_chunks"] == (20, N, N)


def test_run_published_as_current(gridsize1: dict[str, Any], dask_client: Any) -> None:
    run_path = _predict(gridsize1, dask_client, run="published")
    assert current_run(gridsize1["store"], "pinn") == run_path
    store = gridsize1["store"]
    assert not list(store.parent.glob(f"{store.name}.staging-*"))


def test_stitched_object_on_object_frame(gridsize1: dict[str, Any], dask_client: Any) -> None:
    run_path = _predict(gridsize1, dask_client, run="frame", stitch_crop_size=16)
    obj, origin, attrs = read_run_object(gridsize1["store"], run_path)
    truth = zarr.open_array(str(gridsize1["store"] / "object"), mode="r")

    assert obj.shape == truth.shape
    assert origin == (0, 0)
    assert attrs["stitch_crop_size_px"] == 16
    assert np.count_nonzero(obj) > 0


def test_model_loaded_once_per_worker(gridsize1: dict[str, Any], dask_client: Any) -> None:
    _predict(gridsize1, dask_client, run="cached")

    def cached_paths() -> list[str]:
        return [path for path, _ in inference._MODEL_CACHE]

    for paths in dask_client.run(cached_paths).values():
        assert paths.count(str(gridsize1["pinn"].resolve())) == 1


def test_gridsize_mismatch_rejected(gridsize1: dict[str, Any], gridsize2: dict[str, Any],
                                    dask_client: Any) -> None:
    with pytest.raises(BundleError, match="trained with gridsize 2"):
        _predict(gridsize1, dask_client, bundle=gridsize2["baseline"])


def test_failed_run_leaves_nothing(gridsize1: dict[str, Any], gridsize2: dict[str, Any],
                                   dask_client: Any) -> None:
    with pytest.raises(BundleError):
        _predict(gridsize1, dask_client, bundle=gridsize2["baseline"], run="mismatch")
    assert not (gridsize1["store"] / "predictions" / "baseline" / "mismatch").exists()


def test_unknown_group_rejected(gridsize1: dict[str, Any], dask_client: Any) -> None:
    with pytest.raises(MissingKeyError, match="grouped view 'absent' not found"):
        _predict(gridsize1, dask_client, group="absent")


def test_reference_archive_rejected(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "wts.h5.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("manifest.dill", b"")
    with pytest.raises(BundleError, match="reference model archive"):
        read_bundle_info(archive)


def test_no_current_run_raises(gridsize2: dict[str, Any]) -> None:
    with pytest.raises(MissingKeyError, match="no published 'pinn' predictions"):
        current_run(gridsize2["store"], "pinn")
