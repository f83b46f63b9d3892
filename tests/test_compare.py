"""Tests of compare-models and reconstruct: outputs, arms, errors, and a worker lost mid-job."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from ptychozarr.cluster import close_client, make_client
from ptychozarr.compare import CompareConfig, compare_models
from ptychozarr.metrics import SCALAR_METRICS
from ptychozarr.store import consolidate
from ptychozarr.workflows import compare_models as compare_workflow
from ptychozarr.workflows import reconstruct as reconstruct_workflow

GROUPED_VIEW = "synthetic"
"""Name of the grouped view that the ``grouped_store_factory`` fixture writes."""


@pytest.fixture(scope="module")
def scored(simulated_store: dict[str, Any], trained_pair: dict[str, Path]) -> dict[str, Path]:
    """The session's simulated store (with ground truth) and its trained PINN and baseline."""
    return {"store": simulated_store["store"], **trained_pair}


def _copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_compare_command_writes_outputs(scored: dict[str, Path], dask_client: Any,
                                        tmp_path: Path) -> None:
    store = _copy_store(scored["store"], tmp_path / "data.zarr")
    status = compare_workflow.main([
        str(store), str(tmp_path / "out"), "--pinn", str(scored["pinn"]), "--baseline",
        str(scored["baseline"]), "--save-npz", "--scheduler", dask_client.scheduler.address,
        "--pinn-predict-batch-size", "8", "--stitch-crop-size", "16",
    ])
    assert status == 0

    rows = _read_csv(tmp_path / "out" / "comparison_metrics.csv")
    assert list(rows[0]) == ["model", "metric", "amplitude", "phase", "value"]
    for label in ("PtychoPINN", "Baseline"):
        metrics = {row["metric"] for row in rows if row["model"] == label}
        assert set(SCALAR_METRICS) <= metrics, label
        assert {"registration_offset_dy", "registration_offset_dx",
                "computation_time_s"} <= metrics, label
        seconds = [float(row["value"]) for row in rows
                   if row["model"] == label and row["metric"] == "computation_time_s"]
        assert seconds[0] > 0, label

    document = json.loads((tmp_path / "out" / "comparison_metrics.json").read_text())
    assert len(document["rows"]) == len(rows)
    for name in ("comparison_plot.png", "frc_curves.png", "frc_curves.csv",
                 "reconstructions.npz", "reconstructions_aligned.npz"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name

    with np.load(tmp_path / "out" / "reconstructions_aligned.npz") as aligned:
        assert aligned["ptychopinn_complex"].shape == aligned["ground_truth_complex"].shape
        assert aligned["baseline_complex"].shape == aligned["ground_truth_complex"].shape

    predictions = zarr.open_group(str(store / "predictions"), mode="r")
    assert "current" in predictions["pinn"].attrs
    assert "current" in predictions["baseline"].attrs


def test_frc_curves_csv_columns(scored: dict[str, Path], dask_client: Any,
                                tmp_path: Path) -> None:
    store = _copy_store(scored["store"], tmp_path / "data.zarr")
    compare_models(store, tmp_path / "out", client=dask_client, pinn=scored["pinn"])
    rows = _read_csv(tmp_path / "out" / "frc_curves.csv")
    assert list(rows[0]) == ["model", "frequency_bin", "frequency_cycles_per_px",
                             "frequency_per_m", "amplitude_frc", "phase_frc",
                             "halfbit_threshold"]
    assert {row["model"] for row in rows} == {"PtychoPINN"}


def test_identical_npz_scores_perfectly(scored: dict[str, Path], dask_client: Any,
                                        tmp_path: Path) -> None:
    truth = np.asarray(zarr.open_array(str(scored["store"] / "object"), mode="r")[...])
    np.savez(tmp_path / "recon.npz", reconstructed_object=truth, algorithm="tike")

    result = compare_models(scored["store"], tmp_path / "out", client=dask_client,
                            recon_npz=tmp_path / "recon.npz")

    (arm,) = result.arms
    assert arm.label == "Tike"
    assert arm.evaluation is not None
    assert arm.evaluation.values["ssim"][0] == pytest.approx(1.0)
    assert arm.evaluation.values["ssim"][1] == pytest.approx(1.0)
    assert arm.alignment is not None
    assert arm.alignment.shift_dy_px == pytest.approx(0.0, abs=0.05)


def test_without_ground_truth_reports_residual(scored: dict[str, Path], dask_client: Any,
                                               tmp_path: Path) -> None:
    store = _copy_store(scored["store"], tmp_path / "data.zarr")
    shutil.rmtree(store / "object")
    consolidate(store)

    result = compare_models(store, tmp_path / "out", client=dask_client, pinn=scored["pinn"])

    (arm,) = result.arms
    assert arm.evaluation is None
    assert arm.residual is not None
    assert 0 < arm.residual["data_residual_fit"] <= arm.residual["data_residual"]
    metrics = {row["metric"] for row in _read_csv(tmp_path / "out" / "comparison_metrics.csv")}
    assert {"data_residual", "data_residual_fit", "data_residual_scale"} <= metrics
    assert (tmp_path / "out" / "comparison_plot.png").stat().st_size > 0


def test_named_group_with_other_gridsize_rejected(scored: dict[str, Path],
                                                  grouped_store_factory: Any,
                                                  tmp_path: Path, capsys: Any) -> None:
    store = grouped_store_factory(tmp_path / "g2.zarr", n_groups=6, gridsize=2)
    status = compare_workflow.main([str(store), str(tmp_path / "out"), "--baseline",
                                    str(scored["baseline"]), "--group", GROUPED_VIEW])
    assert status == 2
    assert "grouped with gridsize 2" in capsys.readouterr().err


def test_no_arm_rejected(scored: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    status = compare_workflow.main([str(scored["store"]), str(tmp_path / "out")])
    assert status == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_missing_store_reported_first(tmp_path: Path, capsys: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="ptychozarr.cluster")
    status = compare_workflow.main([str(tmp_path / "missing.zarr"), str(tmp_path / "out")])
    assert status == 2
    assert "missing.zarr: store not found" in capsys.readouterr().err
    assert "Starting a local Dask cluster" not in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flags", "bar_drawn"), [([], True), (["--no-progress"], False)],
                         ids=["default", "no-progress"])
def test_compare_progress_bar_option(simulated_store: dict[str, Any], dask_client: Any,
                                     tmp_path: Path, capsys: Any, flags: list[str],
                                     bar_drawn: bool) -> None:
    # A reconstruction-only comparison still submits one (empty) Dask job, so the bar is drawn
    # without the cost of running a model.
    truth = np.asarray(zarr.open_array(str(simulated_store["store"] / "object"), mode="r")[...])
    np.savez(tmp_path / "recon.npz", reconstructed_object=truth)
    status = compare_workflow.main([
        str(simulated_store["store"]), str(tmp_path / "out"), "--recon-npz",
        str(tmp_path / "recon.npz"), "--scheduler", dask_client.scheduler.address, *flags,
    ])
    assert status == 0
    assert ("% Completed" in capsys.readouterr().out) is bar_drawn


def test_invalid_crop_size_rejected() -> None:
    with pytest.raises(ValueError, match="stitch_crop_size: invalid value 0"):
        CompareConfig(stitch_crop_size=0)


@pytest.mark.parametrize("suffix", [".npz", ".tiff", ".h5"])
def test_reconstruct_exports_object(scored: dict[str, Path], dask_client: Any, tmp_path: Path,
                                    suffix: str) -> None:
    store = _copy_store(scored["store"], tmp_path / "data.zarr")
    zarr.open_group(str(store), mode="r+").attrs["object_pixel_size_m"] = 2e-8
    out = tmp_path / f"object{suffix}"
    status = reconstruct_workflow.main([str(store), "--model", str(scored["pinn"]), str(out),
                                        "--scheduler", dask_client.scheduler.address])
    assert status == 0

    shape = zarr.open_array(str(store / "object"), mode="r").shape
    if suffix == ".npz":
        with np.load(out) as data:
            assert data["object"].shape == shape
            assert float(data["pixel_size_m"]) == pytest.approx(2e-8)
    elif suffix == ".tiff":
        with tifffile.TiffFile(out) as tiff:
            assert tiff.asarray().shape == (2, *shape)
            assert json.loads(tiff.pages[0].description)["pixel_size_m"] == pytest.approx(2e-8)
    else:
        with h5py.File(out, "r") as handle:
            assert handle["object"].shape == shape
            assert handle["object"].attrs["pixel_size_m"] == pytest.approx(2e-8)


@pytest.mark.parametrize(("flags", "bar_drawn"), [([], True), (["--no-progress"], False)],
                         ids=["default", "no-progress"])
def test_reconstruct_progress_bar_option(scored: dict[str, Path], dask_client: Any,
                                         tmp_path: Path, capsys: Any, flags: list[str],
                                         bar_drawn: bool) -> None:
    store = _copy_store(scored["store"], tmp_path / "data.zarr")
    status = reconstruct_workflow.main([str(store), "--model", str(scored["pinn"]),
                                        str(tmp_path / "object.npz"), "--scheduler",
                                        dask_client.scheduler.address, *flags])
    assert status == 0
    assert ("% Completed" in capsys.readouterr().out) is bar_drawn


def _kill_one_worker_when_busy(client: Any, stop: threading.Event, killed: list[int]) -> None:
    """Kill the first worker process that runs a prediction task (SIGKILL, as a crash)."""
    while not stop.is_set():
        for address, keys in client.processing().items():
            if any("predict_" in str(key) for key in keys):
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_lost_worker_gives_same_metrics(scored: dict[str, Path], dask_client: Any,
                                        tmp_path: Path) -> None:
    config = CompareConfig(pinn_predict_batch_size=4)
    reference = compare_models(_copy_store(scored["store"], tmp_path / "a.zarr"),
                               tmp_path / "a", client=dask_client, pinn=scored["pinn"],
                               config=config)

    # One worker: its nanny restarts it after the kill and the lost tasks run again.
    client = make_client(n_workers=1, threads_per_worker=1, memory_limit="2GiB")
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(target=_kill_one_worker_when_busy, args=(client, stop, killed))
    try:
        killer.start()
        disturbed = compare_models(_copy_store(scored["store"], tmp_path / "b.zarr"),
                                   tmp_path / "b", client=client, pinn=scored["pinn"],
                                   config=config)
    finally:
        stop.set()
        killer.join()
        close_client(client)
    assert len(killed) == 1

    expected = {(row["model"], row["metric"]): row for row in reference.rows}
    for row in disturbed.rows:
        if row["metric"] == "computation_time_s":
            continue
        for column in ("amplitude", "phase", "value"):
            if row[column] is not None:
                assert row[column] == pytest.approx(expected[row["model"], row["metric"]][column],
                                                    rel=1e-5, abs=1e-7), (row, column)
