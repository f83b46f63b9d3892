"""Conversion time and peak memory of ``ptychozarr convert`` on generated compressed NPZ files.

For each size the script writes a compressed PtychoPINN raw NPZ of N = 64 float32 amplitudes
(the square root of Poisson counts around a ring-shaped mean pattern) slab by slab into the zip,
so the generator itself stays small. Then, each in a fresh Python process that reports its own
wall time and peak resident set size (``VmHWM`` of ``/proc/self/status``, which, unlike
``ru_maxrss``, does not carry over the parent's peak across fork and exec):

- ``np.load``: read every array of the NPZ into memory (the baseline "merely read");
- ``stream``: inflate every member in slabs without keeping them (the floor for any converter);
- ``convert``: ``ptychozarr.convert`` into a new store.

Each step also reports its CPU time (user + system, all threads): on a machine shared with other
work, wall times include waiting for a core, and the conversion's reading and compressing threads
overlap only when two cores are free.

Targets: conversion time at most 1.5 times the ``np.load`` time, and the conversion's peak RSS at
8x the frames at most 1.2 times its peak at 1x.

Usage::

    .venv/bin/python benchmarks/bench_convert.py --workdir /tmp/bench-convert

The defaults are 16,384 and 131,072 frames (256 MiB and 2 GiB of float32). The 8x NPZ and store
need about 0.5 GiB of disk each. Files are removed at the end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from ptychozarr.io.npz import write_npy_member

SIDE = 64
SLAB_FRAMES = 1024

LOAD = """
import json, time
import numpy as np
start, cpu = time.perf_counter(), time.process_time()
with np.load({path!r}) as archive:
    sizes = [archive[key].nbytes for key in archive.files]
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                  "peak_rss_kib": int(peak.split()[1])}}))
"""

STREAM = """
import json, time
from ptychozarr.io.npz import NpzArchive
start, cpu = time.perf_counter(), time.process_time()
with open({path!r}, "rb") as handle:
    archive = NpzArchive({path!r}, handle)
    for key in archive.keys:
        for _ in archive.iter_slabs(key, 512):
            pass
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                  "peak_rss_kib": int(peak.split()[1])}}))
"""

CONVERT = """
import json, time
from ptychozarr.io.convert import convert
start, cpu = time.perf_counter(), time.process_time()
convert({path!r}, {store!r})
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                  "peak_rss_kib": int(peak.split()[1])}}))
"""


def _mean_pattern() -> np.ndarray:
    rows, cols = np.indices((SIDE, SIDE)) - SIDE // 2
    radius = np.hypot(rows, cols)
    return 40.0 * np.exp(-((radius - 12.0) / 5.0) ** 2) + 0.5


def _slabs(n_frames: int, seed: int) -> object:
    rng = np.random.default_rng(seed)
    mean = _mean_pattern()
    for start in range(0, n_frames, SLAB_FRAMES):
        count = min(SLAB_FRAMES, n_frames - start)
        counts = rng.poisson(mean, size=(count, SIDE, SIDE))
        yield np.sqrt(counts, dtype=np.float32)


def generate(path: Path, n_frames: int, *, seed: int = 0) -> None:
    """Write a compressed raw NPZ of ``n_frames`` patterns without holding them in memory."""
    rng = np.random.default_rng(seed + 1)
    side = int(np.ceil(np.sqrt(n_frames)))
    x = (np.arange(n_frames) % side) * 2.0 + SIDE / 2 + rng.uniform(-0.5, 0.5, n_frames)
    y = (np.arange(n_frames) // side) * 2.0 + SIDE / 2 + rng.uniform(-0.5, 0.5, n_frames)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        write_npy_member(archive, "diffraction", (n_frames, SIDE, SIDE), "float32",
                         _slabs(n_frames, seed))  # type: ignore[arg-type]
        write_npy_member(archive, "xcoords", (n_frames,), "float64", [x])
        write_npy_member(archive, "ycoords", (n_frames,), "float64", [y])


def _run(code: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{result.stderr[-4000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def measure(workdir: Path, n_frames: int, *, keep: bool) -> dict[str, object]:
    """Generate one NPZ, then time reading it and converting it in fresh processes."""
    source = workdir / f"raw-{n_frames}.npz"
    store = workdir / f"raw-{n_frames}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    generate(source, n_frames)
    generated = time.perf_counter() - start
    row: dict[str, object] = {
        "frames": n_frames,
        "float32_mib": n_frames * SIDE * SIDE * 4 / 2**20,
        "npz_mib": source.stat().st_size / 2**20,
        "generate_s": generated,
        "np_load": _run(LOAD.format(path=str(source))),
        "stream": _run(STREAM.format(path=str(source))),
        "convert": _run(CONVERT.format(path=str(source), store=str(store))),
        "store_mib": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20,
    }
    if not keep:
        source.unlink()
        shutil.rmtree(store)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True,
                        help="folder for the generated NPZ files and stores")
    parser.add_argument("--frames", type=int, default=16384,
                        help="frames of the 1x size (default: 16384, 256 MiB of float32)")
    parser.add_argument("--factor", type=int, default=8,
                        help="the large size is this many times the 1x size (default: 8)")
    parser.add_argument("--keep", action="store_true", help="keep the NPZ files and stores")
    arguments = parser.parse_args()
    arguments.workdir.mkdir(parents=True, exist_ok=True)

    rows = [measure(arguments.workdir, count, keep=arguments.keep)
            for count in (arguments.frames, arguments.frames * arguments.factor)]
    for row in rows:
        print(json.dumps(row))
    small, large = rows
    for row in rows:
        load, convert = row["np_load"], row["convert"]
        assert isinstance(load, dict) and isinstance(convert, dict)
        print(f"{row['frames']} frames: convert {convert['seconds']:.1f} s / np.load "
              f"{load['seconds']:.1f} s = {convert['seconds'] / load['seconds']:.2f} (CPU time "
              f"{convert['cpu_seconds']:.1f} s / {load['cpu_seconds']:.1f} s)")
    small_rss = small["convert"]["peak_rss_kib"]  # type: ignore[index]
    large_rss = large["convert"]["peak_rss_kib"]  # type: ignore[index]
    print(f"peak RSS of convert: {large_rss / 1024:.0f} MiB / {small_rss / 1024:.0f} MiB = "
          f"{large_rss / small_rss:.2f}")


if __name__ == "__main__":
    main()
