"""Concurrency: readers during publication, and two writers of the same store.

A reader in another process reads the current prediction run over and over while new runs of
two different models are published. Every read must give one whole run: the object and the
patches of the run that ``current`` names, equal to what that run's model produces. A second
conversion to an output that a running conversion writes is rejected by the lock, whatever
its options, and leaves the running conversion to finish undisturbed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from io_samples import raw_arrays, write_npz

from ptychozarr.cli import EXIT_INVALID_INPUT
from ptychozarr.inference import predict, read_run_object
from ptychozarr.models.bundle import save_untrained_bundle
from ptychozarr.store import open_store
from ptychozarr.workflows import convert as convert_workflow

# Reads the current PINN run until the file named by argv[3] exists and writes one JSON line
# per read: the run, its bundle and digests of its object and patches, or the error raised.
READER = """
import hashlib, json, sys, time, traceback
from pathlib import Path
import numpy as np
from ptychozarr.inference import current_run, read_run_object
from ptychozarr.store import open_store

store, log, stop = Path(sys.argv[1]), open(sys.argv[2], "w"), Path(sys.argv[3])
log.write(json.dumps({"ready": True}) + "\\n")
log.flush()
while not stop.exists():
    try:
        run_path = current_run(store, "pinn")
        obj, _, attributes = read_run_object(store, run_path)
        patches = np.asarray(open_store(store)[run_path]["patches"][...])
        record = {"run": run_path, "bundle": attributes["bundle"],
                  "object": hashlib.sha256(obj.tobytes()).hexdigest(),
                  "patches": hashlib.sha256(patches.tobytes()).hexdigest()}
    except Exception:
        record = {"error": traceback.format_exc()}
    log.write(json.dumps(record) + "\\n")
    log.flush()
    time.sleep(0.01)
"""


def _digests(store: Path, run_path: str) -> dict[str, str]:
    obj, _, _ = read_run_object(store, run_path)
    run: Any = open_store(store)[run_path]
    patches = np.asarray(run["patches"][...])
    return {"object": hashlib.sha256(obj.tobytes()).hexdigest(),
            "patches": hashlib.sha256(patches.tobytes()).hexdigest()}


def _records(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def _wait_until_ready(log: Path, reader: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not _records(log):
        if reader.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the reader did not start (status {reader.poll()})")
        time.sleep(0.05)


def test_readers_see_whole_runs(simulated_store: dict[str, Any], trained_pair: dict[str, Path],
                                dask_client: Any, tmp_path: Path) -> None:
    store = Path(shutil.copytree(simulated_store["store"], tmp_path / "data.zarr"))
    group = simulated_store["group"]
    bundles = [trained_pair["pinn"].resolve(),
               save_untrained_bundle(store, group, tmp_path / "untrained", seed=5).resolve()]
    first = predict(store, group, bundles[0], client=dask_client, run="first")

    log, stop = tmp_path / "reads.jsonl", tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(store), str(log), str(stop)])
    published = {first: bundles[0]}
    try:
        _wait_until_ready(log, reader)
        for round_index, bundle in enumerate([bundles[1], bundles[0]]):
            run_path = predict(store, group, bundle, client=dask_client,
                               run=f"round{round_index}")
            published[run_path] = bundle
        time.sleep(0.5)
    finally:
        stop.touch()
        reader.wait(timeout=60)

    # Runs of one model have the same content, so each read must match its model's digests.
    expected = {str(bundle): _digests(store, run_path) for run_path, bundle in published.items()}
    reads = _records(log)[1:]
    errors = [read["error"] for read in reads if "error" in read]
    runs_seen = {read["run"] for read in reads if "run" in read}
    assert errors == []
    assert len(runs_seen) >= 2
    assert runs_seen <= set(published)
    for run_path, bundle in published.items():
        assert _digests(store, run_path) == expected[str(bundle)], run_path
    for read in reads:
        digests = expected[read["bundle"]]
        assert read["object"] == digests["object"], read["run"]
        assert read["patches"] == digests["patches"], read["run"]


# Converts with a pause after every chunk of diffraction, so that it runs for a while.
SLOW_CONVERT = """
import sys, time
from ptychozarr.io.convert import convert
convert(sys.argv[1], sys.argv[2], chunk_frames=4, progress=lambda done, total: time.sleep(0.03))
"""


def _wait_for_progress(partial: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not (partial / ".ptychozarr-progress.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the first conversion did not start (status {process.poll()})")
        time.sleep(0.01)


def _chunk_files(store: Path) -> dict[str, bytes]:
    return {str(path.relative_to(store)): path.read_bytes()
            for path in sorted(store.rglob("*")) if path.is_file() and "/c/" in str(path)}


def test_second_conversion_rejected(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    arrays = raw_arrays(n_frames=120)
    arrays.pop("Y")
    source = write_npz(tmp_path / "scan.npz", arrays)
    reference = tmp_path / "reference.zarr"
    output = tmp_path / "scan.zarr"
    common = ["--chunk-frames", "4", "--no-progress"]
    assert convert_workflow.main([str(source), str(reference), *common]) == 0

    first = subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, str(source), str(output)])
    messages = {}
    try:
        _wait_for_progress(tmp_path / "scan.zarr.partial", first)
        for extra in ([], ["--overwrite"], ["--resume"]):
            capsys.readouterr()
            status = convert_workflow.main([str(source), str(output), *common, *extra])
            messages[" ".join(extra) or "plain"] = (status, capsys.readouterr().err)
    finally:
        first.wait(timeout=120)

    assert first.returncode == 0
    for name, (status, message) in messages.items():
        assert status == EXIT_INVALID_INPUT, name
        assert f"'pid': {first.pid}" in message, name
        assert "is writing this output. Wait for it to finish" in message, name
    assert not (tmp_path / "scan.zarr.lock").exists()
    assert not (tmp_path / "scan.zarr.partial").exists()
    assert _chunk_files(output) == _chunk_files(reference)
