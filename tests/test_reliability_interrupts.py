"""Interruptions: conversions and comparisons killed with SIGKILL lose nothing.

A conversion killed at a random point leaves its store under ``<out>.partial`` and a lock
naming the dead process. A plain rerun is rejected, ``--resume`` takes the stale lock over,
and the finished store is byte-identical to one converted without interruption. A comparison
killed while its Dask job runs leaves the store's published prediction run as it was.
Training killed mid-epoch and resumed from its checkpoint is tested with the training code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from io_samples import raw_arrays, write_npz

from ptychozarr.cli import EXIT_INVALID_INPUT
from ptychozarr.inference import current_run, predict, read_run_object
from ptychozarr.store import open_datatree
from ptychozarr.store.verify import verify_store
from ptychozarr.workflows import convert as convert_workflow

N_FRAMES = 160
CHUNK_FRAMES = 4
KILLED_RUNS = 10

# Converts with a pause after every chunk of diffraction, so that a kill can land mid-write.
# It starts when a line arrives on standard input, so the next run can import while one runs.
SLOW_CONVERT = """
import sys, time
from ptychozarr.io.convert import convert
sys.stdin.readline()
convert(sys.argv[1], sys.argv[2], chunk_frames=int(sys.argv[3]),
        progress=lambda done, total: time.sleep(0.02))
"""


def _start_conversion(source: Path, output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, str(source), str(output),
                             str(CHUNK_FRAMES)], stdin=subprocess.PIPE)


def _progress(partial: Path) -> str | None:
    try:
        return (partial / ".ptychozarr-progress.json").read_text()
    except FileNotFoundError:
        return None


def _store_files(store: Path) -> dict[str, bytes]:
    """Every file of a store except the root metadata, which records the conversion time."""
    return {str(path.relative_to(store)): path.read_bytes() for path in sorted(store.rglob("*"))
            if path.is_file() and path.relative_to(store) != Path("zarr.json")}


def _root_attributes(store: Path) -> dict[str, Any]:
    attributes: dict[str, Any] = dict(zarr.open_group(str(store), mode="r").attrs)
    provenance: dict[str, Any] = attributes["provenance"]
    attributes["provenance"] = {key: value for key, value in provenance.items()
                                if key != "converted_utc"}
    return attributes


def _kill_after_changes(process: subprocess.Popen[bytes], partial: Path, changes: int,
                        delay_s: float) -> None:
    """SIGKILL ``process`` ``delay_s`` after its progress record changed ``changes`` times.

    The process is killed as well when it ends or a minute passes before that.
    """
    seen, last = 0, None
    deadline = time.monotonic() + 60
    while seen < changes and process.poll() is None and time.monotonic() < deadline:
        current = _progress(partial)
        if current is not None and current != last:
            seen, last = seen + 1, current
        time.sleep(0.002)
    time.sleep(delay_s)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A raw NPZ of 160 patterns and its store converted in one go, for reference."""
    folder = tmp_path_factory.mktemp("interrupts")
    arrays = raw_arrays(n_frames=N_FRAMES)
    arrays["Y"] = (np.random.default_rng(3).random((N_FRAMES, 16, 16)) + 1j).astype(np.complex64)
    arrays["diffraction"] = np.sqrt(np.random.default_rng(7).poisson(
        20, (N_FRAMES, 16, 16))).astype(np.float32)
    npz = write_npz(folder / "scan.npz", arrays)
    reference = folder / "reference.zarr"
    assert convert_workflow.main([str(npz), str(reference), "--chunk-frames", str(CHUNK_FRAMES),
                                  "--no-progress"]) == 0
    return {"npz": npz, "reference": reference}


def test_killed_conversions_resume_identically(source: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2024)
    command = [str(source["npz"]), "--chunk-frames", str(CHUNK_FRAMES), "--no-progress"]
    reference_files = _store_files(source["reference"])
    interrupted = 0

    outputs = [tmp_path / f"run{run}.zarr" for run in range(KILLED_RUNS)]
    upcoming = _start_conversion(source["npz"], outputs[0])
    for run, output in enumerate(outputs):
        partial = tmp_path / f"run{run}.zarr.partial"
        lock = tmp_path / f"run{run}.zarr.lock"
        process = upcoming
        if run + 1 < KILLED_RUNS:
            upcoming = _start_conversion(source["npz"], outputs[run + 1])
        assert process.stdin is not None
        process.stdin.write(b"start\n")
        process.stdin.close()
        # A progress record is saved as the write starts, as each array is created and after
        # each of the 40 diffraction chunks.
        changes = int(rng.integers(1, N_FRAMES // CHUNK_FRAMES))
        _kill_after_changes(process, partial, changes, float(rng.uniform(0, 0.025)))

        assert process.returncode == -signal.SIGKILL, run
        if output.exists():
            # Killed after the rename that publishes the store: nothing to resume.
            assert _store_files(output) == reference_files, run
            continue
        interrupted += 1
        assert json.loads(lock.read_text())["pid"] == process.pid, run

        capsys.readouterr()
        status = convert_workflow.main([command[0], str(output), *command[1:]])
        assert status == EXIT_INVALID_INPUT, run
        assert "a lock left by a process that no longer runs" in capsys.readouterr().err, run
        assert lock.exists(), run

        assert convert_workflow.main([command[0], str(output), *command[1:], "--resume"]) == 0
        assert not partial.exists(), run
        assert not lock.exists(), run
        assert _store_files(output) == reference_files, run
        assert _root_attributes(output) == _root_attributes(source["reference"]), run

    assert interrupted >= KILLED_RUNS // 2


@pytest.fixture()
def published(simulated_store: dict[str, Any], trained_pair: dict[str, Path],
              dask_client: Any, tmp_path: Path) -> dict[str, Any]:
    """A copy of the simulated store with one published PINN run named ``first``."""
    store = Path(shutil.copytree(simulated_store["store"], tmp_path / "data.zarr"))
    run_path = predict(store, simulated_store["group"], trained_pair["pinn"], client=dask_client,
                       run="first")
    return {"store": store, "group": simulated_store["group"], "run_path": run_path,
            "pinn": trained_pair["pinn"]}


def _run_files(store: Path, run_path: str) -> dict[str, bytes]:
    folder = store / run_path
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _wait_for_staging(store: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if list(store.parent.glob(f"{store.name}.staging-*")):
            return
        if process.poll() is not None:
            raise AssertionError(f"compare-models ended with status {process.returncode} "
                                 "before its job started")
        time.sleep(0.01)
    raise AssertionError("compare-models started no job within 120 s")


def test_killed_comparison_keeps_published_run(published: dict[str, Any], dask_client: Any,
                                               tmp_path: Path) -> None:
    store, first = published["store"], published["run_path"]
    files_before = _run_files(store, first)
    object_before, origin_before, _ = read_run_object(store, first)

    # One group per model call makes the job last long enough to be killed while it runs.
    process = subprocess.Popen(
        [sys.executable, "-m", "ptychozarr.cli", "compare-models", str(store),
         str(tmp_path / "out"), "--pinn", str(published["pinn"]), "--scheduler",
         dask_client.scheduler.address, "--pinn-predict-batch-size", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        _wait_for_staging(store, process)
        time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    object_after, origin_after, attributes = read_run_object(store, first)
    assert process.returncode == -signal.SIGKILL
    assert current_run(store, "pinn") == first
    assert sorted(path.name for path in (store / "predictions" / "pinn").iterdir()
                  if path.is_dir()) == ["first"]
    assert _run_files(store, first) == files_before
    np.testing.assert_array_equal(object_after, object_before)
    assert origin_after == origin_before
    assert attributes["run"] == "first"
    assert f"/{first}" in open_datatree(store).groups
    assert verify_store(store).ok
    assert not (tmp_path / "out" / "comparison_metrics.csv").exists()

    second = predict(store, published["group"], published["pinn"], client=dask_client,
                     run="second")
    assert current_run(store, "pinn") == second
