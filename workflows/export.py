"""``ptychozarr export STORE OUT.npz``: write a store back as a PtychoPINN raw NPZ."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ptychozarr.cli import command
from ptychozarr.io.export import export_npz

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr export",
        description="Write the raw arrays of a dataset store as a PtychoPINN raw NPZ: "
                    "diffraction (amplitude), xcoords/ycoords (object pixels, patch centres), "
                    "xcoords_start/ycoords_start, scan_index, probeGuess, objectGuess, Y and "
                    "_metadata, as far as the store has them. Streams chunk by chunk.",
    )
    parser.add_argument("store", metavar="STORE", help="store directory, .zip or URL")
    parser.add_argument("output", metavar="OUT.npz", help="NPZ file to write")
    parser.add_argument("--key", choices=["diffraction", "diff3d"], default="diffraction",
                        help="name of the diffraction array in the NPZ (default: diffraction)")
    parser.add_argument("--no-compress", action="store_true",
                        help="store members uncompressed, like np.savez (default: deflate)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr export``."""
    arguments = _parser().parse_args(argv)
    path = export_npz(arguments.store, arguments.output, diffraction_key=arguments.key,
                      compress=not arguments.no_compress, overwrite=arguments.overwrite)
    print(f"Wrote {path}")
    return 0
