"""The ``ptychozarr`` command: dispatches ``ptychozarr COMMAND ...`` to ``ptychozarr.workflows``.

Each workflow module defines ``main(argv) -> int`` decorated with :func:`command`, which turns any
:class:`~ptychozarr.errors.PtychozarrError` into one message on standard error and exit status 2.
Workflow modules are imported only when their command runs, so data-only commands never import
TensorFlow.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from ptychozarr.errors import PtychozarrError

__all__ = ["COMMANDS", "EXIT_INVALID_INPUT", "command", "main"]

EXIT_INVALID_INPUT = 2
"""Exit status for invalid input, as argparse uses for invalid arguments."""

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("convert", "convert NPZ or CXI/HDF5 files into a dataset store"),
    "inspect": ("inspect", "print a store's dimensions, chunking, metadata and conventions"),
    "verify": ("verify", "read every chunk of a store and report corrupted ones"),
    "export": ("export", "write a store back as a PtychoPINN raw NPZ"),
    "simulate": ("simulate", "simulate a far-field dataset into a store"),
    "group": ("group", "group scan positions into model inputs (groups/<name>)"),
    "refine-probe": ("refine_probe", "refine the store's probe with ePIE before training a PINN"),
    "train": ("train", "train a PINN or baseline model into a bundle"),
    "compare-models": ("compare_models", "compare PINN, baseline and reconstructions on a store"),
    "reconstruct": ("reconstruct", "run one model over a store and export the stitched object"),
    "demo": ("demo", "run the whole chain on a generated dataset"),
}

MainFunction = Callable[[Sequence[str] | None], int]


def configure_logging(level: str = "INFO") -> None:
    """Send log records of ptychozarr to standard error, once per process."""
    package_logger = logging.getLogger("ptychozarr")
    package_logger.setLevel(level.upper())
    for existing in package_logger.handlers:
        if getattr(existing, "_ptychozarr", False) and isinstance(existing, logging.StreamHandler):
            # Follow a replaced sys.stderr (pytest's capture, notebooks) instead of a closed one.
            existing.stream = sys.stderr
            return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    handler._ptychozarr = True  # type: ignore[attr-defined]
    package_logger.addHandler(handler)


def command(function: Callable[[Sequence[str] | None], int | None]) -> MainFunction:
    """Wrap a workflow ``main`` so that library errors end with exit status 2 and one message."""

    @functools.wraps(function)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        configure_logging()
        try:
            status = function(argv)
        except PtychozarrError as error:
            print(f"ptychozarr: error: {error}", file=sys.stderr)
            return EXIT_INVALID_INPUT
        return int(status or 0)

    return wrapper


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr",
        description="Out-of-core X-ray ptychography with neural networks on Zarr v3 stores.",
        epilog="Run 'ptychozarr COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="level of log messages on standard error (default: INFO)")
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND",
                        help="one of: " + ", ".join(
                            f"{name} ({summary})" for name, (_, summary) in COMMANDS.items()))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr COMMAND [options]`` and return its exit status."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.version:
        from ptychozarr import __version__

        print(f"ptychozarr {__version__}")
        return 0
    if options.command is None:
        parser.print_help()
        return EXIT_INVALID_INPUT
    configure_logging(options.log_level)
    module_name, _ = COMMANDS[options.command]
    module = importlib.import_module(f"ptychozarr.workflows.{module_name}")
    workflow_main: MainFunction = module.main
    return workflow_main(options.arguments)


if __name__ == "__main__":
    sys.exit(main())
