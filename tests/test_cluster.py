"""Tests of Dask client creation: local clusters, scheduler addresses and jobqueue configs."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from ptychozarr.cluster import (
    close_client,
    detect_gpus,
    load_jobqueue_config,
    make_client,
    make_jobqueue_cluster,
    worker_environment,
)
from ptychozarr.errors import ClusterConnectionError, InvalidInputError

# Changed at run time by a test: a forked worker would inherit the change, a spawned one
# imports this module afresh and reads the import-time value.
_START_PROBE = "import"


def _read_start_probe() -> str:
    return _START_PROBE


def _thread_settings() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_local_workers_are_spawned() -> None:
    global _START_PROBE
    _START_PROBE = "changed in the parent"
    client = make_client(n_workers=1, threads_per_worker=1, memory_limit="1GiB")
    try:
        values = list(client.run(_read_start_probe).values())
    finally:
        _START_PROBE = "import"
        close_client(client)
    assert values == ["import"]


def test_close_client_stops_started_cluster() -> None:
    client = make_client(n_workers=1, threads_per_worker=1, memory_limit="1GiB")
    cluster = client.cluster
    close_client(client)
    assert cluster.status.name == "closed"


def _visible_devices() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_one_worker_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two GPU indices on a machine without GPU: the workers start anyway (TensorFlow would fall
    # back to the CPU), which checks the per-GPU worker specs without a device.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    client = make_client(threads_per_worker=1, memory_limit="1GiB")
    try:
        devices = sorted(client.run(_visible_devices).values())
        names = sorted(info["name"] for info in client.scheduler_info()["workers"].values())
    finally:
        close_client(client)
    assert devices == ["0", "1"]
    assert names == ["gpu-0", "gpu-1"]


def test_worker_threads_sized(dask_client: Any) -> None:
    threads = dask_client.nthreads()
    settings = dask_client.run(_thread_settings)
    for address, values in settings.items():
        assert values["TF_NUM_INTRAOP_THREADS"] == str(threads[address])
        assert values["OMP_NUM_THREADS"] == str(threads[address])


def test_scheduler_address_connects(dask_client: Any) -> None:
    client = make_client(scheduler=dask_client.scheduler.address, connect_timeout_s=10)
    try:
        assert client.submit(sum, [1, 2, 3]).result() == 6
    finally:
        close_client(client)
    assert dask_client.submit(sum, [1, 2]).result() == 3


def test_unreachable_scheduler_raises() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ClusterConnectionError, match="could not connect within 1 s"):
        make_client(scheduler=address, connect_timeout_s=1)


def test_scheduler_and_jobqueue_conflict(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        make_client(scheduler="tcp://127.0.0.1:1", jobqueue_config=tmp_path / "x.yaml")


def test_invalid_worker_count_rejected() -> None:
    with pytest.raises(InvalidInputError, match="n_workers: invalid value 0"):
        make_client(n_workers=0)


def test_gpu_worker_environment() -> None:
    environment = worker_environment(4, gpu="1")
    assert environment["CUDA_VISIBLE_DEVICES"] == "1"
    assert environment["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert environment["TF_NUM_INTRAOP_THREADS"] == "4"


def test_cpu_worker_hides_gpus() -> None:
    assert worker_environment(2)["CUDA_VISIBLE_DEVICES"] == ""


def test_detect_gpus_honours_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert detect_gpus() == ["0", "2"]


def test_detect_gpus_empty_when_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []


def _write_yaml(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


SLURM_LINES = [
    "kind: slurm",
    "jobs: 2",
    "cores: 8",
    "processes: 2",
    "memory: 32GB",
    "queue: gpu",
    "walltime: '01:00:00'",
    "job_extra_directives: ['--gres=gpu:1']",
    "scheduler_options: {host: 127.0.0.1, dashboard_address: ':0'}",
]


def _job_script(config_path: Path) -> str:
    cluster = make_jobqueue_cluster(config_path)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def test_slurm_job_script(tmp_path: Path) -> None:
    script = _job_script(_write_yaml(tmp_path / "slurm.yaml", SLURM_LINES))
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH -t 01:00:00" in script
    assert "export TF_NUM_INTRAOP_THREADS=4" in script
    assert "export TF_FORCE_GPU_ALLOW_GROWTH=true" in script
    assert "--nworkers 2" in script


def test_pbs_job_script_from_json(tmp_path: Path) -> None:
    config = {"kind": "pbs", "cores": 4, "memory": "16GB", "queue": "regular",
              "walltime": "00:30:00",
              "scheduler_options": {"host": "127.0.0.1", "dashboard_address": ":0"}}
    path = tmp_path / "pbs.json"
    path.write_text(json.dumps(config))
    script = _job_script(path)
    assert "#PBS -q regular" in script
    assert "#PBS -l walltime=00:30:00" in script
    assert "export TF_NUM_INTRAOP_THREADS=4" in script


def test_jobqueue_unknown_option_rejected(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path / "bad.yaml", ["kind: slurm", "cores: 4", "gpus: 2"])
    with pytest.raises(InvalidInputError, match=r"unknown slurm option\(s\) \['gpus'\]"):
        load_jobqueue_config(path)


def test_jobqueue_kind_required(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path / "nokind.yaml", ["cores: 4"])
    with pytest.raises(InvalidInputError, match="'kind' is None; use one of"):
        load_jobqueue_config(path)


def test_jobqueue_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="jobqueue config file not found"):
        load_jobqueue_config(tmp_path / "absent.yaml")
