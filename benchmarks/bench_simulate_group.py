"""Peak memory of ``simulate`` and ``group`` as the number of patterns grows.

Each step runs in a fresh Python process, which reports its own peak resident set size
(``ru_maxrss``) and wall time. The object is the same for every size (blurred random lines,
512 x 512 pixels), so a larger dataset is a denser scan of it. Memory should not grow with the
number of patterns: the target is a peak for the largest size at most 1.2 times the peak for the
smallest.

Usage::

    .venv/bin/python benchmarks/bench_simulate_group.py --workdir /tmp/bench \\
        --sizes 16384 131072 --gridsize 2

The stores are removed after each size unless ``--keep`` is given. For 131,072 patterns the
store takes about 1 GiB on disk (2 GiB uncompressed), and the grouped view at gridsize 2 holds
24 GiB uncompressed (X, Y_I and Y_phi), so leave room for it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

SIMULATE = """
import json, resource, sys, time
from ptychozarr.simulate import SimulationConfig, simulate_dataset
start = time.perf_counter()
config = SimulationConfig(n=64, n_patterns={count}, object_size_px=512, seed=0)
simulate_dataset({store!r}, config)
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""

GROUP = """
import json, resource, sys, time
from ptychozarr.config import GroupingConfig
from ptychozarr.grouping import group_dataset
start = time.perf_counter()
group_dataset({store!r}, GroupingConfig(gridsize={gridsize}))
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def _run(code: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{result.stderr[-4000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True,
                        help="folder for the temporary stores")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 131072],
                        help="numbers of patterns (default: 16384 131072)")
    parser.add_argument("--gridsize", type=int, default=2, choices=[1, 2],
                        help="gridsize of the grouping step (default: 2)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    options = parser.parse_args()
    options.workdir.mkdir(parents=True, exist_ok=True)

    rows = []
    for count in options.sizes:
        store = str(options.workdir / f"sim-{count}.zarr")
        shutil.rmtree(store, ignore_errors=True)
        simulated = _run(SIMULATE.format(count=count, store=store))
        grouped = _run(GROUP.format(store=store, gridsize=options.gridsize))
        rows.append((count, simulated, grouped))
        print(f"{count} patterns: simulate {simulated}, group {grouped}", flush=True)
        if not options.keep:
            shutil.rmtree(store, ignore_errors=True)

    print("\n| patterns | simulate peak RSS (MiB) | simulate time (s) | group peak RSS (MiB) "
          "| group time (s) |")
    print("|---:|---:|---:|---:|---:|")
    for count, simulated, grouped in rows:
        print(f"| {count} | {simulated['peak_rss_kib'] / 1024:.0f} | {simulated['seconds']:.0f} "
              f"| {grouped['peak_rss_kib'] / 1024:.0f} | {grouped['seconds']:.0f} |")
    first, last = rows[0], rows[-1]
    for step, position in (("simulate", 1), ("group", 2)):
        ratio = last[position]["peak_rss_kib"] / first[position]["peak_rss_kib"]  # type: ignore[index]
        print(f"{step}: peak RSS ratio {last[0]} / {first[0]} patterns = {ratio:.3f}")


if __name__ == "__main__":
    main()
