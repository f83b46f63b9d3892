"""``ptychozarr group STORE``: group scan positions into model inputs under ``groups/<name>``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ptychozarr.cli import command

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr group",
        description="Group neighbouring scan positions (KD-tree) into model inputs: writes "
        "indices, centroids, relative offsets, the normalised diffraction X = alpha * amplitude "
        "and, when the store has an object, ground-truth patches Y_I/Y_phi at each member's "
        "position, into STORE/groups/NAME.",
    )
    parser.add_argument("store", help="dataset store (a directory)")
    parser.add_argument("--gridsize", type=int, choices=[1, 2], default=1,
                        help="group side: each group has gridsize**2 members (default: 1)")
    parser.add_argument("--neighbors", type=int, default=7, metavar="K",
                        help="members are drawn among each seed's K nearest positions "
                        "(default: 7)")

    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the member draw and of subsampling (default: 0)")
    parser.add_argument("--n-groups", type=int, metavar="B",
                        help="number of groups (default: one per selected position)")
    parser.add_argument("--oversample", action="store_true",
                        help="allow more groups than positions (gridsize 2): several distinct "
                        "member sets per position")

    parser.add_argument("--region",
                        help="part of the scan: top, bottom, left, right (halves split at the "
                        "median position; the median goes to bottom/right) or box:x0,x1,y0,y1 "
                        "in object pixels, half-open (default: whole scan)")
    parser.add_argument("--name", help="name of the grouped view (default: from the options, "
                        "e.g. g2-k7-seed0-nall-full)")
    parser.add_argument("--nphotons", type=float,
                        help="mean photon count per pattern for the intensity scale (default: "
                        "the store's nphotons attribute, else 1e9)")

    parser.add_argument("--chunk-groups", type=int,
                        help="groups per stored chunk (default: about 8 MiB of X per chunk)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing grouped view of the same name")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr group``."""
    options = _parser().parse_args(argv)

    from dask.diagnostics import ProgressBar

    from ptychozarr.config import GroupingConfig
    from ptychozarr.grouping import group_dataset

    config = GroupingConfig(gridsize=options.gridsize, neighbors=options.neighbors,
                            seed=options.seed, n_groups=options.n_groups, region=options.region,
                            oversample=options.oversample)
    with ProgressBar(minimum=1.0):
        name = group_dataset(options.store, config, name=options.name,
                             chunk_groups=options.chunk_groups, overwrite=options.overwrite,
                             nphotons=options.nphotons)
    logger.info("Grouped view written: %s/groups/%s", options.store, name)
    return 0
