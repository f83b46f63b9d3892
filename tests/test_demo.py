"""Small runs of the whole chain: the demo, and the real Run1084 and Siemens-star inputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal

import pytest

from ptychozarr.compare import CompareConfig, compare_models
from ptychozarr.config import GroupingConfig, ModelConfig, TrainingConfig
from ptychozarr.container import LazyContainer
from ptychozarr.grouping import group_dataset
from ptychozarr.training import train
from ptychozarr.workflows import demo


def _train_briefly(store: Path, group: str, out: Path, *, n: int,
                   kind: Literal["pinn", "baseline"] = "pinn") -> Path:
    container = LazyContainer.open(store, group=group)
    result = train(container, ModelConfig(kind=kind, n=n, n_filters_scale=1),
                   TrainingConfig(epochs=1, batch_size=16, validation_fraction=0.1), out=out)
    assert result.bundle_path is not None
    return result.bundle_path


def _metrics(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(row["model"], row["metric"]): row for row in csv.DictReader(handle)}


def test_demo_small_run(dask_client: Any, tmp_path: Path, capsys: Any) -> None:
    status = demo.main(["--out", str(tmp_path / "demo"), "--n-patterns", "96",
                        "--object-size", "128", "--epochs", "1", "--no-progress",
                        "--scheduler", dask_client.scheduler.address])
    assert status == 0

    printed = capsys.readouterr().out
    assert "% Completed" not in printed
    report = tmp_path / "demo" / "comparison" / "comparison_metrics.csv"
    assert f"Report:  {report}" in printed
    rows = _metrics(report)
    for label in ("PtychoPINN", "Baseline"):
        assert math.isfinite(float(rows[label, "ssim"]["amplitude"])), label
    assert (tmp_path / "demo" / "comparison" / "comparison_plot.png").stat().st_size > 0


def test_demo_invalid_option_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    status = demo.main(["--out", str(tmp_path / "demo"), "--epochs", "0"])
    assert status == 2
    assert "epochs: invalid value 0" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


@pytest.mark.realdata
def test_run1084_chain(run1084_path: Path, dask_client: Any, tmp_path: Path) -> None:
    from ptychozarr.simulate import SimulationConfig, simulate_dataset

    store = simulate_dataset(tmp_path / "run1084.zarr",
                             SimulationConfig(from_npz=str(run1084_path), n_patterns=400, seed=0))
    group = group_dataset(store, GroupingConfig(region="top", n_groups=96))
    pinn = _train_briefly(store, group, tmp_path / "pinn", n=64)

    result = compare_models(store, tmp_path / "out", client=dask_client, pinn=pinn,
                            config=CompareConfig(region="bottom", n_test_subsample=96))

    (arm,) = result.arms
    assert arm.evaluation is not None
    assert math.isfinite(arm.evaluation.values["ssim"][0])
    assert math.isfinite(arm.evaluation.values["frc50"][1])
    assert arm.alignment is not None
    assert abs(arm.alignment.shift_dy_px) <= 9


@pytest.mark.realdata
def test_siemens_star_chain(siemens_star_path: Path, dask_client: Any, tmp_path: Path) -> None:
    from ptychozarr.io.convert import convert

    store = convert(siemens_star_path, tmp_path / "star.zarr", preset="tike", crop=128,
                    center="auto")
    group = group_dataset(store, GroupingConfig(region="top", n_groups=48))
    pinn = _train_briefly(store, group, tmp_path / "pinn", n=128)

    result = compare_models(store, tmp_path / "out", client=dask_client, pinn=pinn,
                            config=CompareConfig(region="bottom", n_test_subsample=48))

    (arm,) = result.arms
    assert arm.evaluation is None
    assert arm.residual is not None
    assert 0 < arm.residual["data_residual_fit"] <= arm.residual["data_residual"]
    rows = _metrics(tmp_path / "out" / "comparison_metrics.csv")
    assert ("PtychoPINN", "data_residual") in rows
