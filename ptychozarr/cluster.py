"""Dask clients for inference and comparison, from one place.

:func:`make_client` returns a :class:`distributed.Client` connected to one of three kinds of
cluster:

- a :class:`distributed.LocalCluster` (the default): worker processes started with the ``spawn``
  method (TensorFlow is not fork-safe), TensorFlow's thread pools sized to each worker's threads
  through environment variables read when TensorFlow starts in the worker, and a memory limit per
  worker. On a machine with NVIDIA GPUs it starts one worker per GPU, each seeing only its own
  device, with TensorFlow's GPU memory growth on;
- an existing scheduler, given by its address;
- a SLURM or PBS cluster through dask-jobqueue, described in a YAML or JSON file
  (:func:`load_jobqueue_config`); :func:`make_jobqueue_cluster` builds it without submitting jobs,
  so its job script can be checked first.

Close what :func:`make_client` started with :func:`close_client`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import yaml
from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster
from distributed.comm import connect

from ptychozarr.errors import ClusterConnectionError, InputFileNotFoundError, InvalidInputError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "add_cluster_arguments",
    "client_from_arguments",
    "close_client",
    "detect_gpus",
    "load_jobqueue_config",
    "make_client",
    "make_jobqueue_cluster",
    "worker_environment",
]

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 30.0
"""Seconds to wait for a scheduler given by address before giving up."""

JOBQUEUE_KINDS = ("slurm", "pbs")


def worker_environment(threads: int, *, gpu: str | None = None) -> dict[str, str]:
    """Return the environment variables that size a worker's numerical thread pools.

    TensorFlow reads ``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS`` when it starts in
    the worker process, so one worker's TensorFlow uses ``threads`` cores however many tasks run
    on it at once. With ``gpu`` (a CUDA device index), the worker has access to that device
    only, and TensorFlow allocates GPU memory as it needs it instead of reserving all of it.
    """
    if threads < 1:
        raise InvalidInputError(f"threads: invalid value {threads!r}; use at least 1.")
    environment = {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
    }
    if gpu is None:
        environment["CUDA_VISIBLE_DEVICES"] = ""
    else:
        environment["CUDA_VISIBLE_DEVICES"] = gpu
        environment["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    return environment


def detect_gpus() -> list[str]:
    """Return the CUDA device indices visible to this process, without importing TensorFlow.

    ``CUDA_VISIBLE_DEVICES`` wins when it is set; otherwise ``nvidia-smi`` lists the devices. An
    empty list means no NVIDIA GPU (or no driver).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip() not in ("", "-1")]
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        result = subprocess.run(
            [executable, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("nvidia-smi failed (%s); starting CPU workers", error)
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def make_client(*, scheduler: str | None = None, n_workers: int | None = None,
                threads_per_worker: int | None = None, memory_limit: str | float = "auto",
                jobqueue_config: str | os.PathLike[str] | None = None,
                connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                use_gpus: bool = True, dashboard_address: str = ":0") -> Client:
    """Return a Dask client for inference and comparison.

    Parameters
    ----------
    scheduler
        Address of a running scheduler (``tcp://host:port``). Excludes ``jobqueue_config``.
    n_workers
        Local worker processes; default one (one per GPU when GPUs are found). For a jobqueue
        cluster: the number of jobs, overriding the file's ``jobs``.
    threads_per_worker
        Threads of each local worker; default: the usable cores divided among the workers.
    memory_limit
        Memory limit of each local worker (bytes, or text such as ``"4GiB"``; ``"auto"`` shares
        the machine's memory among the workers).
    jobqueue_config
        YAML or JSON file describing a SLURM or PBS cluster (see :func:`load_jobqueue_config`).
    connect_timeout_s
        Seconds to wait for the scheduler (given or started) before raising.
    use_gpus
        Start one local worker per visible NVIDIA GPU when there is any.
    dashboard_address
        Where the scheduler of a started local cluster serves its dashboard (``":0"``: a free
        port). The dashboard needs the ``bokeh`` package; without it the scheduler still serves
        its HTTP health and metrics pages there.

    Raises
    ------
    ClusterConnectionError
        The scheduler cannot be reached within ``connect_timeout_s``, or the cluster fails to
        start.
    InvalidInputError
        Conflicting or invalid options.
    """
    if scheduler is not None and jobqueue_config is not None:
        raise InvalidInputError(
            "scheduler and jobqueue_config both given; connect to a running scheduler or start "
            "a jobqueue cluster, not both."
        )
    if scheduler is not None:
        client = _connect(scheduler, connect_timeout_s)
    elif jobqueue_config is not None:
        cluster = make_jobqueue_cluster(jobqueue_config)
        jobs = n_workers or int(load_jobqueue_config(jobqueue_config).get("jobs", 1))
        cluster.scale(jobs=jobs)
        client = _connect(cluster, connect_timeout_s)
    else:
        cluster = _start_local_cluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                       memory_limit=memory_limit, use_gpus=use_gpus,
                                       dashboard_address=dashboard_address)
        client = _connect(cluster, connect_timeout_s)

    # Client.dashboard_link is built from a template even when no dashboard runs.
    if "dashboard" in client.scheduler_info().get("services", {}):
        logger.info("Dask dashboard at %s", client.dashboard_link)
    return client


def close_client(client: Client) -> None:
    """Close ``client`` and the cluster that :func:`make_client` started for it, if any.

    A scheduler given by address is left running: other clients may use it.
    """
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _handshake(address: str, timeout_s: float) -> None:
    """Connect to the scheduler at ``address`` and wait for its handshake, within ``timeout_s``.

    distributed's Client (2026.8) waits for the scheduler's handshake without a time limit, so
    a port that accepts connections but never replies would block it for ever. The exchange
    runs on its own event loop in a thread, which also works where a loop is already running
    (Jupyter).
    """

    async def exchange() -> None:
        try:
            comm = await asyncio.wait_for(connect(address, timeout=timeout_s), timeout_s)
        except TimeoutError as error:
            raise TimeoutError("the connection or the scheduler's handshake did not complete; "
                               "a port that accepts connections may belong to another "
                               "program") from error
        await comm.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, exchange()).result()


def _connect(target: Any, timeout_s: float) -> Client:
    try:
        if isinstance(target, str):
            _handshake(target, timeout_s)
        return Client(target, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as error:
        if not isinstance(target, str):
            target.close()
        where = target if isinstance(target, str) else getattr(target, "scheduler_address", target)
        raise ClusterConnectionError(
            f"Dask scheduler {where!r}: could not connect within {timeout_s:g} s ({error}). Check "
            "that the scheduler runs and the address (tcp://host:port) is right, or raise "
            "--connect-timeout."
        ) from error


def _start_local_cluster(*, n_workers: int | None, threads_per_worker: int | None,
                         memory_limit: str | float, use_gpus: bool,
                         dashboard_address: str) -> SpecCluster:
    gpus = detect_gpus() if use_gpus else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if n_workers is not None and n_workers < 1:
        raise InvalidInputError(f"n_workers: invalid value {n_workers!r}; use at least 1.")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise InvalidInputError(
            f"threads_per_worker: invalid value {threads_per_worker!r}; use at least 1."
        )

    # TensorFlow is not fork-safe: workers must start as fresh interpreters.
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        try:
            if gpus:
                return _start_gpu_cluster(gpus, threads_per_worker=threads_per_worker,
                                          cores=cores, memory_limit=memory_limit,
                                          dashboard_address=dashboard_address)
            workers = n_workers or 1
            threads = threads_per_worker or max(1, cores // workers)
            logger.info("Starting a local Dask cluster: %d worker(s) x %d thread(s), "
                        "memory limit %s each", workers, threads, memory_limit)
            return LocalCluster(
                n_workers=workers, threads_per_worker=threads, processes=True,
                memory_limit=memory_limit, dashboard_address=dashboard_address,
                env=worker_environment(threads),
            )
        except (OSError, TimeoutError, RuntimeError) as error:
            # A worker that fails to start surfaces as RuntimeError("Nanny failed to start").
            raise ClusterConnectionError(
                f"local Dask cluster: failed to start ({error}). Check free memory and ports, or "
                "pass --scheduler to use a running one."
            ) from error


def _start_gpu_cluster(gpus: list[str], *, threads_per_worker: int | None, cores: int,
                       memory_limit: str | float,
                       dashboard_address: str) -> SpecCluster:
    threads = threads_per_worker or max(1, cores // len(gpus))
    logger.info("Starting a local Dask cluster with one worker per GPU (%s), %d thread(s) each",
                ", ".join(gpus), threads)
    workers = {
        f"gpu-{gpu}": {
            "cls": Nanny,
            "options": {"nthreads": threads, "memory_limit": memory_limit,
                        "env": worker_environment(threads, gpu=gpu),
                        "resources": {"GPU": 1}},
        }
        for gpu in gpus
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": dashboard_address}}
    return SpecCluster(workers=workers, scheduler=scheduler, name="ptychozarr-gpu")


# Jobqueue clusters ------------------------------------------------------------------------------

def load_jobqueue_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a SLURM or PBS cluster description from a YAML or JSON file.

    The file is a mapping with ``kind`` (``slurm`` or ``pbs``), optional ``jobs`` (number of jobs
    to submit, default 1), and the keyword arguments of the matching dask-jobqueue class
    (``cores``, ``memory``, ``processes``, ``queue``, ``account``, ``walltime``,
    ``job_extra_directives``, ``job_script_prologue``, ...). For example::

        kind: slurm
        jobs: 4
        cores: 8
        memory: 32GB
        walltime: "01:00:00"
        job_extra_directives: ["--gres=gpu:1"]

    Raises
    ------
    InputFileNotFoundError
        The file does not exist.
    InvalidInputError
        The file is not a mapping, ``kind`` is missing or unknown, or an option is unknown.
    """
    file = Path(path)
    if not file.is_file():
        raise InputFileNotFoundError(f"{file}: jobqueue config file not found. Check the path.")
    text = file.read_text()
    try:
        values = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise InvalidInputError(
            f"{file}: not valid {'JSON' if file.suffix == '.json' else 'YAML'} ({error})."
        ) from error
    if not isinstance(values, Mapping):
        raise InvalidInputError(
            f"{file}: expected a mapping of options at the top level, got {type(values).__name__}."
        )
    kind = values.get("kind")
    if kind not in JOBQUEUE_KINDS:
        raise InvalidInputError(
            f"{file}: 'kind' is {kind!r}; use one of {JOBQUEUE_KINDS!r}."
        )
    options = {key: value for key, value in values.items() if key not in ("kind", "jobs")}
    valid = _jobqueue_options(kind)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise InvalidInputError(
            f"{file}: unknown {kind} option(s) {unknown!r}. Valid options: {sorted(valid)!r}."
        )
    return dict(values)


def _jobqueue_classes(kind: str) -> tuple[type[Any], type[Any]]:
    from dask_jobqueue import PBSCluster, SLURMCluster
    from dask_jobqueue.pbs import PBSJob
    from dask_jobqueue.slurm import SLURMJob

    if kind == "slurm":
        return SLURMCluster, SLURMJob
    return PBSCluster, PBSJob


def _jobqueue_options(kind: str) -> set[str]:
    import inspect

    from dask_jobqueue.core import Job

    cluster_class, job_class = _jobqueue_classes(kind)
    names: set[str] = set()
    for function in (cluster_class.__init__, job_class.__init__, Job.__init__):
        names.update(inspect.signature(function).parameters)
    return names - {"self", "scheduler", "loop", "asynchronous", "job_cls", "base_class_kwargs",
                    "job_kwargs", "n_workers"}


def make_jobqueue_cluster(path: str | os.PathLike[str]) -> Any:
    """Build the SLURM or PBS cluster described in ``path`` without submitting any job.

    The workers' TensorFlow thread pools are sized to the cores of each worker process (``cores``
    divided by ``processes``) through the job script's prologue. Inspect the script with
    ``cluster.job_script()`` and submit jobs with ``cluster.scale(jobs=n)``.
    """
    values = load_jobqueue_config(path)
    cluster_class, _ = _jobqueue_classes(values["kind"])
    options = {key: value for key, value in values.items() if key not in ("kind", "jobs")}

    cores = int(options.get("cores", 1))
    processes = int(options.get("processes") or 1)
    exports = [f"export {name}={value}"
               for name, value in worker_environment(max(1, cores // processes)).items()
               if name != "CUDA_VISIBLE_DEVICES"]
    # The batch system sets CUDA_VISIBLE_DEVICES on GPU jobs; only memory growth is added.
    exports.append("export TF_FORCE_GPU_ALLOW_GROWTH=true")
    options["job_script_prologue"] = [*exports, *options.get("job_script_prologue", [])]
    options.setdefault("silence_logs", "error")

    try:
        return cluster_class(**options)
    except (OSError, ValueError) as error:
        raise ClusterConnectionError(
            f"{path}: failed to set up the {values['kind']} cluster ({error}). Check the options "
            "in the file."
        ) from error


# Command-line options -------------------------------------------------------------------------

def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose the Dask cluster of a command (see :func:`make_client`)."""
    group = parser.add_argument_group("Dask cluster")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler (tcp://host:port); default: "
                       "start a local cluster")
    group.add_argument("--jobqueue-config", metavar="FILE",
                       help="YAML or JSON file describing a SLURM or PBS cluster to start")
    group.add_argument("--n-workers", type=int,
                       help="local worker processes, or jobqueue jobs (default: 1, or one per "
                       "GPU)")
    group.add_argument("--threads-per-worker", type=int,
                       help="threads of each local worker (default: the cores divided among the "
                       "workers)")
    group.add_argument("--memory-limit", default="auto",
                       help="memory limit of each local worker, e.g. 4GiB (default: auto, the "
                       "machine's memory shared among the workers)")
    group.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S,
                       metavar="SECONDS",
                       help="seconds to wait for the scheduler (default: "
                       f"{DEFAULT_CONNECT_TIMEOUT_S:g})")


def client_from_arguments(options: argparse.Namespace) -> Client:
    """Return the client chosen by the options of :func:`add_cluster_arguments`."""
    return make_client(scheduler=options.scheduler, n_workers=options.n_workers,
                       threads_per_worker=options.threads_per_worker,
                       memory_limit=options.memory_limit,
                       jobqueue_config=options.jobqueue_config,
                       connect_timeout_s=options.connect_timeout)
