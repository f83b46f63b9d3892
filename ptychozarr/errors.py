"""Exception hierarchy of ptychozarr.

Every error raised on purpose by the library derives from :class:`PtychozarrError` and from the
builtin exception a caller would naturally catch (``ValueError``, ``KeyError``,
``FileNotFoundError``, ...). Messages follow one formula: what failed, on which file, key, shape
or value (shown with ``!r``), the rule that was broken, and what to do next. The command-line
interface turns any of them into one message on standard error and exit status 2.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ClusterConnectionError",
    "CorruptedChunkError",
    "InputFileError",
    "InputFileNotFoundError",
    "InvalidInputError",
    "MissingKeyError",
    "OutputExistsError",
    "PtychozarrError",
    "StoreLockedError",
    "StoreSchemaError",
]


class PtychozarrError(Exception):
    """Base class of every error that ptychozarr raises on purpose."""


class InvalidInputError(PtychozarrError, ValueError):
    """An argument, option or input array has an invalid value, shape or dtype."""


class MissingKeyError(PtychozarrError, KeyError):
    """A required key, array or attribute is missing from an input file or store."""

    def __str__(self) -> str:
        # KeyError.__str__ shows the repr of its argument, which would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class InputFileNotFoundError(PtychozarrError, FileNotFoundError):
    """An input file or store does not exist."""


class InputFileError(PtychozarrError, ValueError):
    """An input file exists but cannot be read: truncated, corrupted or of another format."""


class StoreSchemaError(PtychozarrError, ValueError):
    """A store does not follow the ptychozarr schema or has an unsupported format version."""


class CorruptedChunkError(PtychozarrError, ValueError):
    """A stored chunk fails its checksum or cannot be decoded."""


class OutputExistsError(PtychozarrError, FileExistsError):
    """An output already exists and overwriting was not requested."""


class StoreLockedError(PtychozarrError, RuntimeError):
    """Another live process is writing the same output."""


class BundleError(PtychozarrError, ValueError):
    """A model bundle is missing, tampered with, or does not match the data."""


class ClusterConnectionError(PtychozarrError, ConnectionError):
    """A Dask scheduler cannot be reached or a cluster cannot be started."""
