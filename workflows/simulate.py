"""``ptychozarr simulate OUT``: simulate a far-field ptychography dataset into a new store."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from tqdm import tqdm

from ptychozarr.cli import command

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr simulate",
        description="Scan a probe over a complex object, compute far-field diffraction with "
        "Poisson noise and write a store (diffraction = sqrt(counts), with the object as "
        "ground truth). One --seed fixes every random draw.",
    )
    parser.add_argument("out", help="path of the new store (a directory, e.g. sim.zarr)")
    parser.add_argument("--from-npz", metavar="PATH",
                        help="PtychoPINN raw NPZ whose objectGuess, probeGuess and "
                        "xcoords/ycoords are used unless other options override them")
    parser.add_argument("--with-nominal", action="store_true",
                        help="also store the NPZ's nominal positions xcoords_start/ycoords_start")
    parser.add_argument("--n", type=int, help="pattern and probe side N in pixels (default: "
                        "the side of a probe file, else 64)")
    parser.add_argument("--n-patterns", type=int,
                        help="number of scan positions (default 1000; with a positions file, "
                        "the first N positions, default all)")

    objects = parser.add_argument_group("object")
    objects.add_argument("--object", dest="object_kind", choices=["lines", "grf", "image", "npz"],
                         help="blurred random lines (default), Gaussian random field, a grey "
                         "image file, or objectGuess of an NPZ")
    objects.add_argument("--object-file", metavar="PATH",
                         help="image (PNG, TIFF, JPEG, .npy) or NPZ file of the object")
    objects.add_argument("--object-size", type=int, default=256, metavar="PX",
                         help="side of generated objects in pixels (default: 256)")
    objects.add_argument("--amplitude-range", type=float, nargs=2, default=(0.3, 1.0),
                         metavar=("LOW", "HIGH"),
                         help="amplitude range of generated and image objects (default: 0.3 1)")
    objects.add_argument("--phase-range", type=float, nargs=2, default=(-0.5, 0.5),
                         metavar=("LOW", "HIGH"),
                         help="phase range of generated and image objects in radians "
                         "(default: -0.5 0.5)")
    objects.add_argument("--phase-pattern", choices=["independent", "amplitude"],
                         default="independent",
                         help="phase of generated objects from a second random pattern "
                         "(default) or from the amplitude pattern itself, as in PtychoPINN's "
                         "random-lines studies")

    probes = parser.add_argument_group("probe")
    probes.add_argument("--probe", dest="probe_kind", choices=["disk", "gaussian", "file"],
                        help="smoothed disk (default), Gaussian, or read from --probe-file")
    probes.add_argument("--probe-file", metavar="PATH",
                        help=".npy (N, N) complex array or NPZ with probeGuess")
    probes.add_argument("--probe-sigma", type=float, metavar="PX",
                        help="standard deviation of the Gaussian probe in pixels (default: N/8)")

    scan = parser.add_argument_group("scan")
    scan.add_argument("--positions", dest="positions_kind",
                      choices=["random", "raster", "spiral", "file"],
                      help="uniform random (default), raster, Fermat spiral, or read from "
                      "--positions-file")
    scan.add_argument("--positions-file", metavar="PATH",
                      help="NPZ (xcoords, ycoords), .npy (M, 2) or CSV/text with columns x y in "
                      "object pixels (patch centres)")
    scan.add_argument("--border", type=float, metavar="PX",
                      help="distance of generated positions from the object edge in pixels "
                      "(default: N/2)")

    dose = parser.add_argument_group("dose and noise")
    dose.add_argument("--nphotons", type=float, default=1e9,
                      help="mean total photon count per pattern (default: 1e9)")
    dose.add_argument("--no-noise", action="store_true",
                      help="store the noise-free amplitude instead of sqrt(Poisson counts)")
    dose.add_argument("--seed", type=int, default=0,
                      help="seed of object, positions and noise (default: 0)")

    output = parser.add_argument_group("output")
    output.add_argument("--npz", metavar="OUT.npz",
                        help="also write a PtychoPINN raw NPZ (diff3d, positions, probeGuess, "
                        "objectGuess)")
    output.add_argument("--chunk-frames", type=int,
                        help="patterns per stored chunk (default: about 8 MiB per chunk)")
    output.add_argument("--overwrite", action="store_true",
                        help="replace an existing store (after the new one is complete)")
    output.add_argument("--resume", action="store_true",
                        help="finish an interrupted simulation with the same options")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr simulate``."""
    options = _parser().parse_args(argv)

    from ptychozarr.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(
        n=options.n, n_patterns=options.n_patterns, object_kind=options.object_kind,
        object_path=options.object_file, object_size_px=options.object_size,
        amplitude_range=tuple(options.amplitude_range),
        phase_range_rad=tuple(options.phase_range), phase_pattern=options.phase_pattern,
        probe_kind=options.probe_kind,
        probe_path=options.probe_file, probe_sigma_px=options.probe_sigma,
        positions_kind=options.positions_kind, positions_path=options.positions_file,
        border_px=options.border, nphotons=options.nphotons, noise=not options.no_noise,
        seed=options.seed, from_npz=options.from_npz, with_nominal=options.with_nominal,
    )
    with tqdm(unit="pattern", desc="simulate") as bar:

        def show(written: int, total: int) -> None:
            bar.total = total
            bar.update(written - bar.n)

        path = simulate_dataset(options.out, config, overwrite=options.overwrite,
                                resume=options.resume, chunk_frames=options.chunk_frames,
                                npz=options.npz, progress=show)
    logger.info("Simulated %d patterns into %s", bar.n, path)
    return 0
