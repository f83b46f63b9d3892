"""Training throughput (streaming vs in memory) and peak memory of streaming training.

The script writes grouped stores of N = 64, gridsize 1 groups slab by slab (amplitudes are the
square root of Poisson counts around a ring-shaped mean pattern, positions uniform, a Gaussian
probe), so the generator itself stays small. Then, each in a fresh Python process that reports
its peak resident set size (``VmHWM`` of ``/proc/self/status``):

- ``throughput``: the PINN (``n_filters_scale`` 2) trained on 4,096 groups at batch 16, timed
  over a fixed number of steps after a warm-up (which absorbs graph tracing), once reading the
  store every epoch (``use_streaming=True``) and once from memory (``use_streaming=False``). The
  two modes alternate for ``--repeats`` rounds and the median steps per second is reported.
- ``memory``: one full epoch of streaming training of a tiny PINN (``n_filters_scale`` 1) on
  4,096 and on 32,768 groups, plus the in-memory path on both for contrast.

Targets: streaming throughput at least 0.95 times the in-memory throughput, and the streaming
peak RSS at 32,768 groups at most 1.2 times the peak at 4,096.

Usage::

    .venv/bin/python benchmarks/bench_training.py --workdir /tmp/bench-training

The 32,768-group store needs about 1 GiB of disk. Files are removed at the end unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ptychozarr.store import GROUP_ARRAYS, RAW_ARRAYS, StoreWriter, create_array, stage_subgroup
from ptychozarr.store.schema import format_block

SIDE = 64
SLAB = 1024
VIEW = "bench"

RUN = """
import json, time
import keras
from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.container import LazyContainer
from ptychozarr.training import train

settings = json.loads({settings!r})
warmup, steps = settings["warmup"], settings["steps"]
times = []

class Timer(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        times.append(time.perf_counter())
        if steps and len(times) >= warmup + steps:
            self.model.stop_training = True

container = LazyContainer.open(settings["store"], group={view!r})
model = ModelConfig(n=64, n_filters_scale=settings["scale"])
training = TrainingConfig(epochs=1, batch_size=16, validation_fraction=0.0, seed=0)
start = time.perf_counter()
train(container, model, training, use_streaming=settings["streaming"], callbacks=[Timer()])
seconds = time.perf_counter() - start
measured = times[warmup:]
rate = (len(measured) - 1) / (measured[-1] - measured[0]) if len(measured) > 1 else 0.0
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": seconds, "steps": len(times), "steps_per_second": rate,
                  "peak_rss_kib": int(peak.split()[1])}}))
"""


def _mean_pattern() -> np.ndarray:
    rows, cols = np.indices((SIDE, SIDE)) - SIDE // 2
    radius = np.hypot(rows, cols)
    return 40.0 * np.exp(-((radius - 12.0) / 5.0) ** 2) + 0.5


def _probe() -> np.ndarray:
    rows, cols = np.indices((SIDE, SIDE)) - SIDE // 2
    return np.exp(-(rows**2 + cols**2) / (2 * 8.0**2)).astype(np.complex64)


def write_store(path: Path, n_groups: int, *, seed: int = 0) -> Path:
    """Write a store of ``n_groups`` patterns and a gridsize-1 grouped view, slab by slab."""
    rng = np.random.default_rng(seed)
    mean = _mean_pattern()
    alpha = float(np.sqrt((SIDE / 2) ** 2 / mean.sum()))
    x = rng.uniform(32, 480, n_groups)
    y = rng.uniform(32, 480, n_groups)

    with StoreWriter(path) as writer:
        writer.create_array(RAW_ARRAYS["diffraction"], (n_groups, SIDE, SIDE), chunk_frames=SLAB)
        for start in range(0, n_groups, SLAB):
            stop = min(start + SLAB, n_groups)
            counts = rng.poisson(mean, (stop - start, SIDE, SIDE))
            writer.write_frames("diffraction", start, np.sqrt(counts).astype(np.float32))
        for name, values in (("xcoords", x), ("ycoords", y), ("probe", _probe())):
            writer.create_array(RAW_ARRAYS[name], values.shape)
            writer.write_whole(name, values)
        writer.set_attrs({"nphotons": float(mean.sum()), "amplitude_scale": "counts"})
        writer.commit()

    attrs = {"ptychozarr": format_block("group"), "gridsize": 1, "K": 7, "seed": seed,
             "n_groups": n_groups, "region": None, "oversample": False, "n": SIDE,
             "alpha": alpha, "intensity_scale": float(np.sqrt(mean.sum()) / (SIDE / 2)),
             "nphotons": float(mean.sum()), "has_ground_truth": False, "max_offset_px": 0.0,
             "source_store": str(path)}
    with stage_subgroup(path, f"groups/{VIEW}", attrs=attrs) as group:
        small = {"indices": np.arange(n_groups, dtype=np.int32)[:, None],
                 "offsets": np.stack([x, y], axis=-1), "relative": np.zeros((n_groups, 1, 2))}
        for name, values in small.items():
            create_array(group, GROUP_ARRAYS[name], values.shape)[...] = values
        x_array = create_array(group, GROUP_ARRAYS["X"], (n_groups, SIDE, SIDE, 1))
        diffraction = _open_diffraction(path)
        for start in range(0, n_groups, x_array.chunks[0]):
            stop = min(start + x_array.chunks[0], n_groups)
            x_array[start:stop] = (diffraction[start:stop] * alpha)[..., None]
    return path


def _open_diffraction(path: Path) -> Any:
    return zarr.open_group(str(path), mode="r")["diffraction"]


def run(store: Path, *, streaming: bool, scale: int, warmup: int, steps: int) -> dict[str, Any]:
    """Train in a fresh process and return its measurements."""
    settings = json.dumps({"store": str(store), "streaming": streaming, "scale": scale,
                           "warmup": warmup, "steps": steps})
    result = subprocess.run([sys.executable, "-c", RUN.format(settings=settings, view=VIEW)],
                            check=True, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def throughput(store: Path, *, repeats: int, warmup: int, steps: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"streaming": [], "in_memory": []}
    for _ in range(repeats):
        for mode in ("in_memory", "streaming"):
            measured = run(store, streaming=mode == "streaming", scale=2, warmup=warmup,
                           steps=steps)
            rates[mode].append(measured["steps_per_second"])
            print(f"throughput {mode}: {measured['steps_per_second']:.3f} steps/s", flush=True)
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    return {"rates": rates, "medians": medians,
            "ratio": medians["streaming"] / medians["in_memory"]}


def memory(stores: dict[int, Path]) -> dict[str, Any]:
    peaks: dict[str, dict[int, float]] = {"streaming": {}, "in_memory": {}}
    for n_groups, store in stores.items():
        for mode in ("streaming", "in_memory"):
            measured = run(store, streaming=mode == "streaming", scale=1, warmup=0, steps=0)
            peaks[mode][n_groups] = measured["peak_rss_kib"] / 2**10
            print(f"memory {mode} {n_groups} groups: {peaks[mode][n_groups]:.0f} MiB peak, "
                  f"{measured['steps']} steps in {measured['seconds']:.0f} s", flush=True)
    small, large = sorted(stores)
    return {"peak_mib": peaks,
            "streaming_ratio": peaks["streaming"][large] / peaks["streaming"][small]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the stores")
    parser.add_argument("--repeats", type=int, default=3, help="throughput rounds (default: 3)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps (default: 20)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: 200)")
    parser.add_argument("--sizes", type=int, nargs=2, default=(4096, 32768),
                        help="group counts of the memory comparison (default: 4096 32768)")
    parser.add_argument("--skip", choices=["throughput", "memory"], help="skip one part")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    options = parser.parse_args()

    options.workdir.mkdir(parents=True, exist_ok=True)
    stores = {}
    for n_groups in options.sizes:
        path = options.workdir / f"groups-{n_groups}.zarr"
        stores[n_groups] = path if path.exists() else write_store(path, n_groups)

    report: dict[str, Any] = {}
    if options.skip != "throughput":
        report["throughput"] = throughput(stores[min(stores)], repeats=options.repeats,
                                          warmup=options.warmup, steps=options.steps)
    if options.skip != "memory":
        report["memory"] = memory(stores)
    print(json.dumps(report, indent=2))
    if not options.keep:
        for path in stores.values():
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
