"""The conversion entry point: any supported input file to a dataset store.

>>> import ptychozarr
>>> ptychozarr.convert("scan.npz", "scan.zarr")  # doctest: +SKIP
>>> ptychozarr.convert("star.npz.bz2", "star.zarr", preset="tike")  # doctest: +SKIP

The input's headers and small arrays are checked first, so invalid input fails before anything is
written. The store is then built in ``<output>.partial`` and renamed to ``output`` once complete.
Invalid values found while streaming (NaN, negative counts, a corrupted member) remove the partial
store, because a resumed run would fail the same way. An interruption (a crash, a kill, Ctrl-C)
leaves it for ``resume=True``.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import h5py

from ptychozarr.errors import InputFileError, InvalidInputError, PtychozarrError
from ptychozarr.io.frames import ProgressCallback
from ptychozarr.io.npz import NpzArchive
from ptychozarr.io.npz_grouped import REQUIRED_GROUPED_KEYS, GroupedNpzImporter
from ptychozarr.io.npz_layout import DIFFRACTION_KEYS
from ptychozarr.io.npz_raw import NpzImporter
from ptychozarr.io.options import ConvertOptions
from ptychozarr.io.source import SourceFile, describe_source, open_source
from ptychozarr.store.create import StoreWriter

__all__ = ["convert"]

logger = logging.getLogger(__name__)


class _Importer(Protocol):
    converter: str

    def check(self) -> None: ...

    def write(self, writer: StoreWriter, *,
              progress: ProgressCallback | None = None) -> dict[str, Any]: ...


def convert(input: str | os.PathLike[str], output: str | os.PathLike[str], *,
            options: ConvertOptions | None = None, preset: str | None = None,
            overwrite: bool = False, resume: bool = False,
            progress: ProgressCallback | None = None, **settings: Any) -> Path:
    """Convert an NPZ or CXI/HDF5 file into a dataset store.

    Parameters
    ----------
    input
        PtychoPINN raw or grouped NPZ, an NPZ of another tool, or a CXI 1.6 file. Any of them
        may be compressed as a whole with bz2, gzip or xz.
    output
        Path of the new store (a directory, conventionally ending in ``.zarr``).
    options
        Conversion options; see :class:`~ptychozarr.io.options.ConvertOptions`.
    preset
        Named convention set (``"tike"``) used as defaults for ``settings``.
    overwrite
        Replace an existing store (only once the new one is complete).
    resume
        Finish an interrupted conversion of the same input with the same options.
    progress
        Called as ``progress(frames_done, n_frames)`` after every written chunk.
    **settings
        Fields of :class:`~ptychozarr.io.options.ConvertOptions`, overriding ``options``.

    Returns
    -------
    Path
        The published store.

    Raises
    ------
    PtychozarrError
        Invalid input (missing keys, mismatched shapes, NaN, negative counts, pickled objects,
        corrupted or unsupported files) or output (exists, folder not writable, locked).
    """
    options = _resolve_options(options, preset, settings)
    output = Path(output)
    identity = {**describe_source(input), "options": options.to_dict()}
    spool_dir = output.parent if os.access(output.parent or Path("."), os.W_OK) else None
    with open_source(input, spool_dir=spool_dir) as source:
        if source.container == "hdf5":
            file = _open_hdf5(source)
            with file:
                return _run(_select_hdf5(source, file, options), output, identity, options,
                            source, overwrite=overwrite, resume=resume, progress=progress)
        archive = NpzArchive(source.path, source.handle, allow_pickle=options.allow_pickle)
        try:
            return _run(_select_npz(archive, options), output, identity, options, source,
                        overwrite=overwrite, resume=resume, progress=progress)
        finally:
            archive.close()


def _resolve_options(options: ConvertOptions | None, preset: str | None,
                     settings: dict[str, Any]) -> ConvertOptions:
    if options is not None and preset is not None:
        raise InvalidInputError("convert: give either options or preset, not both.")
    if preset is not None:
        return ConvertOptions.from_preset(preset, **settings)
    base = options.to_dict() if options is not None else {}
    return ConvertOptions.from_dict({**base, **settings})


def _open_hdf5(source: SourceFile) -> h5py.File:
    target: Any = source.path if source.wrapper is None else source.handle
    try:
        return h5py.File(target, "r")
    except OSError as error:
        raise InputFileError(
            f"{source.path}: HDF5 file cannot be opened ({error}). The file is truncated or "
            "corrupted; copy or download it again."
        ) from error


def _select_hdf5(source: SourceFile, file: h5py.File, options: ConvertOptions) -> _Importer:
    from ptychozarr.io.cxi import CxiImporter

    if options.format not in ("auto", "cxi"):
        raise InvalidInputError(
            f"{source.path}: --format {options.format} was requested, but the file is HDF5. "
            "Use --format cxi (or auto)."
        )
    return CxiImporter(str(source.path), file, options)


def _select_npz(archive: NpzArchive, options: ConvertOptions) -> _Importer:
    if options.format == "cxi":
        raise InvalidInputError(
            f"{archive.path}: --format cxi was requested, but the file is an NPZ (zip). Use "
            "--format npz, grouped or auto."
        )
    keys = set(archive.keys)
    grouped = (options.format == "grouped" or (
        options.format == "auto" and options.diffraction_key is None
        and set(REQUIRED_GROUPED_KEYS) <= keys and not keys & set(DIFFRACTION_KEYS)))
    if grouped:
        return GroupedNpzImporter(archive, options)
    return NpzImporter(archive, options)


def _run(importer: _Importer, output: Path, identity: dict[str, Any], options: ConvertOptions,
         source: SourceFile, *, overwrite: bool, resume: bool,
         progress: ProgressCallback | None) -> Path:
    importer.check()
    with StoreWriter(output, overwrite=overwrite, resume=resume, identity=identity) as writer:
        try:
            attrs = importer.write(writer, progress=progress)
        except PtychozarrError:
            # The input itself is invalid, so a resumed run would fail the same way.
            writer.discard()
            raise
        writer.set_attrs({**attrs, "provenance": _provenance(identity, importer, options,
                                                             source)})
        return writer.commit()


def _provenance(identity: dict[str, Any], importer: _Importer, options: ConvertOptions,
                source: SourceFile) -> dict[str, Any]:
    from ptychozarr import __version__

    return {
        "source_name": identity["source_name"],
        "source_size_bytes": identity["source_size_bytes"],
        "source_sha256": identity["source_sha256"],
        "source_compression": source.wrapper,
        "converter": importer.converter,
        "converter_options": options.changed(),
        "ptychozarr_version": __version__,
        "converted_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
