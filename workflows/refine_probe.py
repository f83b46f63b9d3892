"""``ptychozarr refine-probe STORE OUT.npy``: refine the store's probe with ePIE."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptychozarr.cli import command

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr refine-probe",
        description="Refine the store's probe with ePIE (object and probe updated position by "
        "position) and save it as an (N, N) complex64 .npy file for `ptychozarr train "
        "--probe-file`. Use it when the stored probe is only an initial guess.",
    )
    parser.add_argument("store", help="dataset store (a directory)")
    parser.add_argument("out", help=".npy file to write")
    parser.add_argument("--region",
                        help="scan positions to use, as for `ptychozarr group` (top, bottom, "
                        "left, right or box:x0,x1,y0,y1); use the training region so the test "
                        "region stays unseen (default: whole scan)")
    parser.add_argument("--iterations", type=int, default=20,
                        help="passes over the positions (default: 20)")
    parser.add_argument("--probe-start", type=int, default=2, metavar="PASS",
                        help="first pass, from 0, that updates the probe (default: 2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the position order (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr refine-probe``."""
    options = _parser().parse_args(argv)

    import numpy as np
    from tqdm import tqdm

    from ptychozarr.errors import OutputExistsError
    from ptychozarr.probe_refinement import ProbeRefinementConfig, refine_probe

    out = Path(options.out)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    if out.exists() and not options.overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it.")
    config = ProbeRefinementConfig(iterations=options.iterations,
                                   probe_start_iteration=options.probe_start,
                                   region=options.region, seed=options.seed)

    with tqdm(total=config.iterations, unit="pass", disable=options.no_progress) as bar:
        result = refine_probe(options.store, config,
                              on_iteration=lambda _, residual: _advance(bar, residual))

    temporary = out.with_name(f".{out.name}.tmp.npy")
    try:
        np.save(temporary, result.probe)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("Saved the probe refined on %d positions to %s (residual %.4f -> %.4f)",
                result.positions_used, out, result.residuals[0], result.residuals[-1])
    return 0


def _advance(bar: Any, residual: float) -> None:
    bar.set_postfix(residual=f"{residual:.4f}")
    bar.update(1)
