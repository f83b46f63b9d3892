"""``ptychozarr convert IN OUT``: convert an NPZ or CXI/HDF5 file into a dataset store."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from ptychozarr.cli import command
from ptychozarr.io.options import FORMATS, PRESETS, ConvertOptions

__all__ = ["main"]

# Options that map one to one onto ConvertOptions fields, with their CLI help.
_KEY_OPTIONS = {
    "diffraction_key": "NPZ key of the patterns (default: 'diffraction', else 'diff3d')",
    "x_key": "NPZ key of x (column) positions (default: 'xcoords')",
    "y_key": "NPZ key of y (row) positions (default: 'ycoords')",
    "positions_key": "NPZ key of one (M, 2) position array, instead of --x-key/--y-key",
    "probe_key": "NPZ key of the probe (default: 'probeGuess')",
    "object_key": "NPZ key of the object (default: 'objectGuess')",
}
_PHYSICS_OPTIONS = {
    "energy_ev": "photon energy in eV (overrides the file)",
    "detector_distance_m": "sample-detector distance in metres (overrides the file)",
    "detector_pixel_size_m": "detector pixel pitch in metres (overrides the file)",
    "object_pixel_size_m": "object pixel size in metres of the stored grid (overrides "
                           "lambda*z/(N*p))",
    "nphotons": "mean total photon count per pattern, when the data are not counts",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr convert",
        description="Convert a PtychoPINN NPZ (raw or grouped), an NPZ of another tool or a CXI "
                    "1.6 file into a chunked Zarr v3 dataset store. Inputs may be bz2, gzip or xz "
                    "compressed as a whole. The store appears under OUT only when complete.",
    )
    parser.add_argument("input", metavar="IN", help="input file (.npz, .npz.bz2, .cxi, .h5)")
    parser.add_argument("output", metavar="OUT", help="store to create (a directory, e.g. x.zarr)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="input kind (default: auto, detected from the file)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="convention set of another tool; 'tike': keys data/scan/probe, "
                             "counts, zero frequency at the corners, [row, col] top-left corners")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--intensity", dest="scale", action="store_const", const="intensity",
                       help="the patterns are photon counts; the store gets sqrt(counts)")
    scale.add_argument("--amplitude", dest="scale", action="store_const", const="amplitude",
                       help="the patterns are amplitudes (default for float NPZ data)")
    parser.add_argument("--layout", choices=["auto", "scan-first", "scan-last"], default=None,
                        help="NPZ pattern axes: (M,N,N) or legacy (N,N,M) (default: auto, the "
                             "axis matching the number of positions)")
    for name, text in _KEY_OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), metavar="KEY", help=text)
    _add_convention_options(parser)
    _add_detector_options(parser)
    for name, text in _PHYSICS_OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=float, metavar="VALUE", help=text)
    _add_output_options(parser)
    return parser


def _add_convention_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("conventions of NPZ files from other tools")
    group.add_argument("--dc", choices=["center", "corner"], default=None,
                       help="zero frequency of each pattern: centred, or at the corners "
                            "(unshifted FFT order; fftshift is applied) (default: center)")
    group.add_argument("--position-order", choices=["xy", "rowcol"], default=None,
                       help="column order of --positions-key (default: xy)")
    group.add_argument("--position-origin", choices=["center", "corner"], default=None,
                       help="positions mark patch centres or top-left corners (default: center)")
    group.add_argument("--position-units", choices=["pixel", "m"], default=None,
                       help="units of NPZ positions: object pixels or metres (default: pixel)")
    group.add_argument("--shift-positions", choices=["auto", "yes", "no"], default=None,
                       help="shift pixel positions so every patch starts at >= 0 (default: "
                            "auto, when needed and the file has no object)")
    group.add_argument("--near-field", action="store_true", default=None,
                       help="near-field (Fresnel) data: positions stay in metres "
                            "(default: far field)")
    group.add_argument("--flip-x", action="store_true", default=None,
                       help="CXI: negate x (default x = -translation_x)")
    group.add_argument("--flip-y", action="store_true", default=None,
                       help="CXI: negate y (default y = -translation_y)")
    group.add_argument("--swap-xy", action="store_true", default=None,
                       help="CXI: exchange x and y after any flips")


def _add_detector_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detector preparation (crop, then bin, then pad)")
    group.add_argument("--crop", type=int, metavar="N",
                       help="crop patterns to N x N pixels around --center")
    group.add_argument("--center", metavar="auto|ROW,COL", default=None,
                       help="crop centre in detector pixels (default: auto, the intensity "
                            "centroid of the mean pattern)")
    group.add_argument("--bin", type=int, metavar="F", default=None,
                       help="sum F x F pixel blocks (default: 1)")
    group.add_argument("--pad", type=int, metavar="N",
                       help="zero-pad patterns to N x N pixels")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an existing store once the new one is complete")
    group.add_argument("--resume", action="store_true",
                       help="finish an interrupted conversion of the same input and options")
    group.add_argument("--chunk-frames", type=int, metavar="K",
                       help="patterns per stored chunk (default: about 8 MiB per chunk)")
    group.add_argument("--group-name", metavar="NAME",
                       help="grouped NPZ: name of the grouped view (default: imported-g<G>-n<B>)")
    group.add_argument("--allow-pickle", action="store_true", default=None,
                       help="unpickle object arrays without restriction (trusted files only)")
    group.add_argument("--no-progress", action="store_true",
                       help="hide the progress bar (default: shown on standard error)")


def _settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """Return the ConvertOptions fields that the user set on the command line."""
    skip = {"input", "output", "preset", "overwrite", "resume", "no_progress"}
    return {name: value for name, value in vars(arguments).items()
            if name not in skip and value is not None}


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr convert``."""
    from ptychozarr.io.convert import convert

    arguments = _parser().parse_args(argv)
    settings = _settings(arguments)
    options = (ConvertOptions.from_preset(arguments.preset, **settings) if arguments.preset
               else ConvertOptions.from_dict(settings))
    bars: list[tqdm[Any]] = []

    def progress(done: int, total: int) -> None:
        # The bar starts with the first written chunk, after the checks and any centring pass.
        if not bars:
            bars.append(tqdm(total=total, unit="frame", desc="convert",
                             disable=arguments.no_progress))
        bars[0].update(done - bars[0].n)

    try:
        store = convert(arguments.input, arguments.output, options=options,
                        overwrite=arguments.overwrite, resume=arguments.resume, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    print(f"Wrote {store}. Inspect it with: ptychozarr inspect {store}")
    return 0
