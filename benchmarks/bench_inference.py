"""Dask inference throughput and the wall time and memory of ``compare-models``.

Three measurements, each chosen with a subcommand:

``throughput``
    Steady-state inference speed at N = 64 of a PINN (filter scale 2, as the reference) over
    one grouped view: a single in-process ``ModelBundle.predict`` over in-memory arrays against
    the Dask graph of ``ptychozarr.inference`` on a one-worker LocalCluster that uses the same
    cores. Both are warmed up first; cluster start-up and the first (model-loading) job are
    reported separately. The Dask job reads ``X`` from the store and reduces each block of
    patches to one number, so it measures inference, not the transfer of results. Target: Dask
    throughput at least 0.9 times the in-process throughput.

``compare``
    ``ptychozarr compare-models`` (PINN and baseline, filter scale 2, gridsize 1, N = 64, no
    registration) run as a command on stores of several sizes simulated from the same object, so
    a larger store is a denser scan. A sampler adds up the proportional set size (PSS, so shared
    libraries count once) of the command and all its child processes (scheduler, nanny,
    workers) every 0.2 s and reports the peak, with the wall time, start-up included. Targets:
    peak at most 2.5 GB at every size, and at most 1.2 times the smallest size's peak.

``dense``
    The same for a dense N = 128, gridsize 2 dataset of 5,216 groups (one per position), where
    the reference compare_models ran out of memory.

The models are untrained bundles (``save_untrained_bundle``): the cost of inference and the
memory do not depend on the weights. ``--filters-scale 1`` makes the networks about four times
cheaper to run, for the largest sizes on a small machine; their weights take less memory, so
state the scale with every number.

Usage::

    .venv/bin/python benchmarks/bench_inference.py throughput --workdir /tmp/bench-inference
    .venv/bin/python benchmarks/bench_inference.py compare --sizes 4096 32768
    .venv/bin/python benchmarks/bench_inference.py compare --sizes 1000 8000 32000
    .venv/bin/python benchmarks/bench_inference.py dense

Stores are kept in the work folder and reused by later runs of the same size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

OBJECT_SIZE_PX = {64: 384, 128: 640}


def _store(workdir: Path, *, n: int, patterns: int, gridsize: int,
           filters_scale: int = 2) -> dict[str, Any]:
    """Simulate (or reuse) a store and group it; return its path, group and bundles."""
    from ptychozarr.config import GroupingConfig
    from ptychozarr.grouping import group_dataset
    from ptychozarr.models.bundle import save_untrained_bundle
    from ptychozarr.simulate import SimulationConfig, simulate_dataset

    store = workdir / f"n{n}-p{patterns}.zarr"
    if not store.exists():
        config = SimulationConfig(n=n, n_patterns=patterns, object_kind="lines",
                                  object_size_px=OBJECT_SIZE_PX[n], seed=0)
        simulate_dataset(store, config)
    grouping = GroupingConfig(gridsize=gridsize)
    group = grouping.default_name()
    if not (store / "groups" / group).exists():
        group_dataset(store, grouping, name=group)

    bundles = {}
    for kind in ("pinn", "baseline"):
        path = workdir / f"{kind}-n{n}-g{gridsize}-s{filters_scale}"
        if not path.exists():
            save_untrained_bundle(store, group, path, kind=kind, n_filters_scale=filters_scale)
        bundles[kind] = path
    return {"store": store, "group": group, **bundles}


# Throughput ---------------------------------------------------------------------------------

def _in_process_throughput(case: dict[str, Any], batch_size: int) -> dict[str, float]:
    import numpy as np
    import zarr

    from ptychozarr.models.bundle import load_bundle

    group = zarr.open_group(str(case["store"] / "groups" / case["group"]), mode="r")
    x, relative = np.asarray(group["X"][...]), np.asarray(group["relative"][...])
    bundle = load_bundle(case["pinn"])
    bundle.predict(x[:batch_size], relative[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    bundle.predict(x, relative, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return {"groups": len(x), "seconds": seconds, "groups_per_s": len(x) / seconds}


def _dask_throughput(case: dict[str, Any], batch_size: int) -> dict[str, float]:
    import numpy as np
    import zarr

    from ptychozarr.cluster import close_client, make_client
    from ptychozarr.inference import build_prediction_graph, predict_block

    start = time.perf_counter()
    client = make_client(n_workers=1)
    startup = time.perf_counter() - start
    try:
        graph = build_prediction_graph(case["store"], case["group"], case["pinn"], client=client,
                                       batch_size=batch_size)
        reduced = abs(graph.patches).sum()
        group = zarr.open_group(str(case["store"] / "groups" / case["group"]), mode="r")
        first = (np.asarray(group["X"][:batch_size]), np.asarray(group["relative"][:batch_size]))
        start = time.perf_counter()
        # One batch through the worker's model cache: TensorFlow start-up, model loading and
        # tracing, outside the measured job.
        client.submit(predict_block, *first, bundle_path=str(case["pinn"].resolve()),
                      batch_size=batch_size).result()
        first_job = time.perf_counter() - start

        start = time.perf_counter()
        client.compute(reduced, sync=True)
        seconds = time.perf_counter() - start
    finally:
        close_client(client)
    groups = int(graph.patches.shape[0])
    return {"groups": groups, "seconds": seconds, "groups_per_s": groups / seconds,
            "cluster_startup_s": startup, "first_job_with_model_loading_s": first_job}


def throughput(options: argparse.Namespace) -> dict[str, Any]:
    case = _store(options.workdir, n=64, patterns=options.groups, gridsize=1)
    single = _in_process_throughput(case, options.batch_size)
    dask_run = _dask_throughput(case, options.batch_size)
    return {"in_process": single, "dask": dask_run,
            "ratio": dask_run["groups_per_s"] / single["groups_per_s"]}


# compare-models memory ----------------------------------------------------------------------

def _tree_pss(process: psutil.Process) -> dict[int, int]:
    """Return the PSS in bytes of ``process`` and each of its descendants, by process id."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    sizes = {}
    for member in members:
        try:
            sizes[member.pid] = member.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sizes


def _run_measured(command: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    process = psutil.Process(child.pid)
    peak = 0
    peak_by_process: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            sizes = _tree_pss(process)
            peak = max(peak, sum(sizes.values()))
            for pid, size in sizes.items():
                peak_by_process[pid] = max(peak_by_process.get(pid, 0), size)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, errors = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{command!r} failed:\n{errors[-3000:]}")
    command_peak = peak_by_process.pop(child.pid, 0)
    return {"wall_s": time.perf_counter() - start, "peak_pss_gb": peak / 1e9,
            "command_process_peak_pss_gb": command_peak / 1e9,
            "other_processes_peak_pss_gb": sorted(size / 1e9 for size in
                                                  peak_by_process.values())}


def _compare_command(case: dict[str, Any], out: Path, batch_size: int) -> list[str]:
    return [sys.executable, "-m", "ptychozarr.cli", "compare-models", str(case["store"]),
            str(out), "--pinn", str(case["pinn"]), "--baseline", str(case["baseline"]),
            "--group", case["group"], "--skip-registration",
            "--pinn-predict-batch-size", str(batch_size),
            "--baseline-predict-batch-size", str(batch_size)]


def compare(options: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for size in options.sizes:
        case = _store(options.workdir, n=64, patterns=size, gridsize=1,
                      filters_scale=options.filters_scale)
        command = _compare_command(case, options.workdir / f"compare-{size}", options.batch_size)
        results[str(size)] = _run_measured(command)
        print(json.dumps({size: results[str(size)]}), flush=True)
    peaks = [result["peak_pss_gb"] for result in results.values()]
    return {"filters_scale": options.filters_scale, "sizes": results,
            "peak_ratio_largest_to_smallest": peaks[-1] / peaks[0]}


def dense(options: argparse.Namespace) -> dict[str, Any]:
    case = _store(options.workdir, n=128, patterns=5216, gridsize=2,
                  filters_scale=options.filters_scale)
    command = _compare_command(case, options.workdir / "compare-dense", options.batch_size)
    return {"n": 128, "gridsize": 2, "groups": 5216, "filters_scale": options.filters_scale,
            **_run_measured(command)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("measurement", choices=["throughput", "compare", "dense"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-inference"))
    parser.add_argument("--groups", type=int, default=4096,
                        help="groups of the throughput store (default: 4096)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 32768],
                        help="patterns of the compare stores (default: 4096 32768)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--filters-scale", type=int, default=2,
                        help="filter multiplier of the compare and dense models (default: 2, "
                        "the reference's; 1 runs about 4 times faster)")
    options = parser.parse_args()
    options.workdir.mkdir(parents=True, exist_ok=True)
    measure = {"throughput": throughput, "compare": compare, "dense": dense}[options.measurement]
    print(json.dumps(measure(options), indent=2))


if __name__ == "__main__":
    main()
