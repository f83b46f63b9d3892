"""``ptychozarr inspect STORE``: print a store's dimensions, chunking, metadata and conventions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ptychozarr.cli import command
from ptychozarr.store.inspect import format_summary, summarize_store

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr inspect",
        description="Print the arrays of a dataset store (dimensions, dtype, chunk shape, "
                    "uncompressed and stored size, compression ratio, units), its physical "
                    "metadata, the conventions its importer converted from, its provenance and "
                    "the attributes of its groups. Reads metadata only, no chunk data.",
    )
    parser.add_argument("store", metavar="STORE", help="store directory, .zip or URL")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON (default: text)")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr inspect``."""
    arguments = _parser().parse_args(argv)
    summary = summarize_store(arguments.store)
    print(json.dumps(summary, indent=2) if arguments.json else format_summary(summary))
    return 0
