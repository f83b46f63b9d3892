"""``ptychozarr demo``: the whole chain on a generated dataset, in a few minutes on a laptop.

Simulates a small far-field dataset with ground truth, groups its top half for training,
trains a PINN and a baseline briefly, and compares both on the bottom half as one Dask job on a
local cluster. Every output goes into one folder (default ``demo-output/``); a second run
replaces the outputs of the first.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptychozarr.cli import command
from ptychozarr.cluster import add_cluster_arguments

logger = logging.getLogger(__name__)

LABELS = {"pinn": "PINN (PtychoPINN)", "baseline": "baseline"}
"""Model names in the step lines."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr demo",
        description="Run simulate -> group -> train (PINN and baseline) -> compare-models on a "
        "generated dataset: random-lines object, N=64 patterns, 1e9 photons per pattern, "
        "training on the top half of the scan and scoring on the bottom half. Outputs in OUT "
        "replace those of an earlier demo.",
    )
    parser.add_argument("--out", default="demo-output",
                        help="output folder (default: demo-output)")
    parser.add_argument("--n-patterns", type=int, default=2400,
                        help="number of simulated diffraction patterns (default: 2400)")
    parser.add_argument("--object-size", type=int, default=224, metavar="PX",
                        help="side of the simulated object in pixels (default: 224)")
    parser.add_argument("--epochs", type=int, default=4,
                        help="training epochs of each model (default: 4)")
    parser.add_argument("--n-filters-scale", type=int, default=1,
                        help="multiplier of the networks' filter counts (default: 1; the "
                        "reference uses 2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the simulation, grouping and training (default: 0)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar of the comparison (for logs of batch jobs)")
    add_cluster_arguments(parser)
    return parser


def _step(number: int, text: str) -> float:
    print(f"[{number}/5] {text}", flush=True)
    return time.perf_counter()


def _train(store: Path, group: str, configs: tuple[Any, Any], out: Path) -> Path:
    from ptychozarr.container import LazyContainer
    from ptychozarr.training import train

    container = LazyContainer.open(store, group=group)
    model_config, training_config = configs
    result = train(container, model_config, training_config, out=out, overwrite=True)
    return result.bundle_path or out


def _configs(options: argparse.Namespace) -> dict[str, Any]:
    """Build and validate every step's configuration before anything is written."""
    from ptychozarr.compare import CompareConfig
    from ptychozarr.config import GroupingConfig, ModelConfig, TrainingConfig
    from ptychozarr.simulate import SimulationConfig

    training = TrainingConfig(epochs=options.epochs, batch_size=16, seed=options.seed)
    return {
        "simulation": SimulationConfig(n=64, n_patterns=options.n_patterns,
                                       object_size_px=options.object_size, seed=options.seed),
        "grouping": GroupingConfig(gridsize=1, seed=options.seed, region="top"),
        "pinn": (ModelConfig(kind="pinn", n=64, n_filters_scale=options.n_filters_scale),
                 training),
        "baseline": (ModelConfig(kind="baseline", n=64,
                                 n_filters_scale=options.n_filters_scale), training),
        "compare": CompareConfig(region="bottom", test_subsample_seed=options.seed),
    }


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr demo``."""
    options = _parser().parse_args(argv)
    from ptychozarr.cluster import client_from_arguments, close_client
    from ptychozarr.compare import compare_models
    from ptychozarr.grouping import group_dataset
    from ptychozarr.simulate import simulate_dataset
    from ptychozarr.workflows.compare_models import progress_bar

    configs = _configs(options)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    _step(1, f"Simulating {options.n_patterns} patterns into {out / 'demo.zarr'}")
    store = simulate_dataset(out / "demo.zarr", configs["simulation"], overwrite=True)

    _step(2, "Grouping the top half of the scan for training")
    train_group = group_dataset(store, configs["grouping"], overwrite=True)

    bundles = {}
    for number, kind in ((3, "pinn"), (4, "baseline")):
        _step(number, f"Training the {LABELS[kind]} for {options.epochs} epochs")
        bundles[kind] = _train(store, train_group, configs[kind], out / kind)

    _step(5, "Comparing both models on the bottom half as one Dask job")
    client = client_from_arguments(options)
    try:
        result = compare_models(store, out / "comparison", client=client, pinn=bundles["pinn"],
                                baseline=bundles["baseline"], config=configs["compare"],
                                progress=None if options.no_progress else progress_bar(client))
    finally:
        close_client(client)

    print()
    for arm in result.arms:
        if arm.evaluation is not None:
            ssim_amplitude, ssim_phase = arm.evaluation.values["ssim"]
            print(f"  {arm.label:<11} SSIM amplitude {ssim_amplitude:.3f}, phase "
                  f"{ssim_phase:.3f}")
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    print(f"Report:  {result.files['metrics_csv']}")
    print(f"Figure:  {result.files['plot']}")
    print(f"Store:   {store} (predictions under predictions/)")
    return 0
