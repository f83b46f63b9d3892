"""``ptychozarr verify STORE``: read every chunk and report corrupted ones."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tqdm import tqdm

from ptychozarr.cli import command
from ptychozarr.store.verify import verify_store

__all__ = ["EXIT_CORRUPTED", "main"]

EXIT_CORRUPTED = 1
"""Exit status when a chunk cannot be read or an array breaks the schema."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr verify",
        description="Read every chunk of every array of a dataset store through its codecs "
                    "(each chunk carries a CRC32C checksum) and check the schema. Prints each "
                    f"failure by array and chunk index; exit status {EXIT_CORRUPTED} when there "
                    "is any, 0 when the store is intact.",
    )
    parser.add_argument("store", metavar="STORE", help="store directory, .zip or URL")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (default: shown on standard error)")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr verify``."""
    arguments = _parser().parse_args(argv)
    with tqdm(unit="array", desc="verify", disable=arguments.no_progress) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = verify_store(arguments.store, progress=progress)
    for failure in report.failures:
        print(f"CORRUPTED {failure}")
    status = "OK" if report.ok else f"FAILED ({len(report.failures)} problems)"
    print(f"{status}: {report.store}: {report.arrays_checked} arrays, "
          f"{report.chunks_checked} chunks read")
    return 0 if report.ok else EXIT_CORRUPTED
