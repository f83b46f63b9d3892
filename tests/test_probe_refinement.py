"""Tests of the ePIE probe refinement, its command and training with a refined probe."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from scipy import ndimage

from ptychozarr.errors import InvalidInputError
from ptychozarr.models import load_bundle, normalise_probe
from ptychozarr.probe_refinement import ProbeRefinementConfig, refine_probe
from ptychozarr.simulate import SimulationConfig, simulate_dataset
from ptychozarr.workflows import refine_probe as refine_workflow
from ptychozarr.workflows import train as train_workflow


def _overlap(probe: np.ndarray, truth: np.ndarray) -> float:
    """Return |<probe, truth>| / (||probe|| ||truth||): 1 for the same probe up to a phase."""
    inner = np.vdot(probe.ravel(), truth.ravel())
    return float(abs(inner) / (np.linalg.norm(probe) * np.linalg.norm(truth)))


@pytest.fixture(scope="module")
def wrong_probe_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A noise-free store whose probe was replaced by a blurred guess."""
    path = tmp_path_factory.mktemp("refine") / "store.zarr"
    config = SimulationConfig(n=32, n_patterns=300, object_size_px=96, noise=False, seed=4)
    simulate_dataset(path, config)
    group = zarr.open_group(path, mode="r+")
    truth = np.asarray(group["probe"][...])
    guess = ndimage.gaussian_filter(np.abs(truth), 2.0).astype(np.complex64)
    group["probe"][...] = guess
    return {"path": path, "truth": truth, "guess": guess}


def test_refinement_recovers_probe(wrong_probe_store: dict[str, Any]) -> None:
    config = ProbeRefinementConfig(iterations=20)
    result = refine_probe(wrong_probe_store["path"], config)
    truth = wrong_probe_store["truth"]

    assert result.positions_used == 300
    assert len(result.residuals) == 20
    assert result.residuals[-1] < 0.1 * result.residuals[0]
    assert _overlap(wrong_probe_store["guess"], truth) < 0.98
    assert _overlap(result.probe, truth) > 0.985
    assert result.probe.dtype == np.complex64


def test_refinement_region_subset(wrong_probe_store: dict[str, Any]) -> None:
    result = refine_probe(wrong_probe_store["path"],
                          ProbeRefinementConfig(iterations=1, region="top"))
    assert result.positions_used == 150


def test_refinement_rejects_empty_region(wrong_probe_store: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="contains no scan position"):
        refine_probe(wrong_probe_store["path"],
                     ProbeRefinementConfig(region="box:0,1,0,1"))


def test_config_rejects_iterations() -> None:
    with pytest.raises(InvalidInputError, match="iterations: invalid value 0; use at least 1"):
        ProbeRefinementConfig(iterations=0)


def test_cli_writes_probe(wrong_probe_store: dict[str, Any], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "refined.npy"
    arguments = [str(wrong_probe_store["path"]), str(out), "--iterations", "3", "--no-progress"]

    assert refine_workflow.main(arguments) == 0
    probe = np.load(out, allow_pickle=False)
    assert probe.shape == (32, 32)
    assert probe.dtype == np.complex64
    assert [path.name for path in tmp_path.iterdir()] == ["refined.npy"]

    assert refine_workflow.main(arguments) == 2
    assert "refined.npy already exists; pass --overwrite" in capsys.readouterr().err


def test_train_with_probe_file(tmp_path: Path, grouped_store_factory: Any) -> None:
    store = Path(grouped_store_factory(tmp_path / "g1.zarr", n_groups=16, gridsize=1))
    stored = np.asarray(zarr.open_group(store, mode="r")["probe"][...])
    probe_file = tmp_path / "probe.npy"
    np.save(probe_file, (stored * np.exp(0.3j)).astype(np.complex64))
    out = tmp_path / "pinn"

    status = train_workflow.main(["--model", "pinn", str(store), "--group", "synthetic",
                                  str(out), "--epochs", "1", "--n-filters-scale", "1",
                                  "--probe-file", str(probe_file), "--no-progress"])

    assert status == 0
    expected = normalise_probe(np.load(probe_file), probe_scale=4.0)
    np.testing.assert_allclose(load_bundle(out).probe, expected, rtol=1e-6)


@pytest.mark.parametrize(("content", "message"), [
    (None, r"probe\.npy: probe file not found\. Check the path"),
    (np.ones((4, 5), np.complex64), r"probe has shape \(4, 5\); expected a square \(N, N\)"),
])
def test_train_rejects_probe_file(tmp_path: Path, grouped_store_factory: Any,
                                  capsys: pytest.CaptureFixture[str],
                                  content: np.ndarray | None, message: str) -> None:
    store = Path(grouped_store_factory(tmp_path / "g1.zarr", n_groups=4, gridsize=1))
    probe_file = tmp_path / "probe.npy"
    if content is not None:
        np.save(probe_file, content)

    status = train_workflow.main(["--model", "pinn", str(store), "--group", "synthetic",
                                  str(tmp_path / "pinn"), "--probe-file", str(probe_file)])

    assert status == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "pinn").exists()
