"""Inputs of inference, read in the client: the bundle's summary and a grouped view that fits it.

The bundle is read from its manifest without TensorFlow, so a damaged or unfitting bundle is
rejected before anything is grouped or computed. The grouped view is either named by the caller
or grouped here with the bundle's gridsize, and its arrays are opened as Dask arrays for
:mod:`ptychozarr.inference`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ptychozarr.config import GroupingConfig
from ptychozarr.errors import BundleError, MissingKeyError
from ptychozarr.models.bundle_format import MANIFEST_FILE, PROBE_FILE, read_manifest
from ptychozarr.store import open_store, required_array

__all__ = [
    "BundleInfo",
    "check_bundle_fits",
    "open_grouped_arrays",
    "read_bundle_info",
    "required_array",
    "resolve_group",
]

logger = logging.getLogger(__name__)


# Bundles, read without TensorFlow in the client ------------------------------------------------

@dataclass(frozen=True)
class BundleInfo:
    """Summary of a model bundle for the client, read from its manifest.

    Attributes
    ----------
    path
        Absolute bundle directory (the key of the workers' model cache).
    kind
        ``"pinn"`` or ``"baseline"``.
    n, gridsize
        Pattern side and group side the model was trained with.
    manifest
        The whole parsed ``manifest.json``.
    """

    path: Path
    kind: str
    n: int
    gridsize: int
    manifest: Mapping[str, Any] = field(repr=False)

    def probe(self) -> np.ndarray | None:
        """Return the bundle's (N, N) complex64 probe, or ``None`` when it has none."""
        file = self.path / PROBE_FILE
        return np.load(file, allow_pickle=False) if file.is_file() else None


def read_bundle_info(path: str | os.PathLike[str]) -> BundleInfo:
    """Read and check a bundle's manifest and file digests without loading the model.

    TensorFlow is not imported. Checking the digests here rejects a modified bundle before
    anything is grouped or computed; the workers check them again when they load the model.

    Raises
    ------
    InputFileNotFoundError, BundleError
        The path is missing, is a PtychoPINN ``wts.h5.zip``, is not a complete bundle, or its
        manifest or files were modified.
    """
    folder = Path(path).resolve()
    manifest_path = folder / MANIFEST_FILE
    manifest = read_manifest(folder)
    try:
        return BundleInfo(folder, str(manifest["kind"]), int(manifest["n"]),
                          int(manifest["gridsize"]), manifest)
    except (ValueError, KeyError, TypeError) as error:
        raise BundleError(
            f"{manifest_path}: unreadable manifest ({error!r}); the bundle is damaged. Train the "
            "model again."
        ) from error


def check_bundle_fits(info: BundleInfo, attrs: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`BundleError` unless ``attrs`` (``n``, ``gridsize``) match the bundle's."""
    n, gridsize = int(attrs["n"]), int(attrs["gridsize"])
    if info.n != n:
        raise BundleError(
            f"{info.path}: the {info.kind} model was trained on N={info.n} patterns, but "
            f"{where} has N={n}. Use a bundle trained at N={n}, or convert the data to "
            f"N={info.n}."
        )
    if info.gridsize != gridsize:
        raise BundleError(
            f"{info.path}: the {info.kind} model was trained with gridsize {info.gridsize}, but "
            f"{where} is grouped with gridsize {gridsize}. Group the store with "
            f"`ptychozarr group --gridsize {info.gridsize}`, or use a matching bundle."
        )


def resolve_group(store: str | os.PathLike[str], info: BundleInfo, *, group: str | None = None,
                  grouping: GroupingConfig | None = None) -> str:
    """Return a grouped view that fits the bundle: the named one, or one grouped here.

    Parameters
    ----------
    store
        Store directory.
    info
        The bundle (see :func:`read_bundle_info`).
    group
        Name of an existing grouped view; its N and gridsize must match the bundle.
    grouping
        How to group the store when ``group`` is not given; its gridsize is replaced by the
        bundle's. A view of the same settings already in the store is reused.

    Raises
    ------
    BundleError
        The store's patterns or the named view do not match the bundle's N or gridsize.
    MissingKeyError
        The named view does not exist.
    """
    from ptychozarr.grouping import group_dataset

    where = os.fspath(store)
    root = open_store(store)
    n = int(required_array(root, "diffraction", where=where).shape[-1])
    check_bundle_fits(info, {"n": n, "gridsize": info.gridsize}, where=f"{where}: diffraction")
    if group is not None:
        open_grouped_arrays(root, group, where=where)
        check_bundle_fits(info, dict(root[f"groups/{group}"].attrs),
                           where=f"{where}: groups/{group}")
        return group

    config = dataclasses.replace(grouping or GroupingConfig(), gridsize=info.gridsize)
    name = config.default_name()
    if f"groups/{name}" in root:
        logger.info("Using the existing grouped view %s for %s", name, info.path)
        return name
    return group_dataset(store, config, name=name)


# Arrays of a grouped view ---------------------------------------------------------------------

def open_grouped_arrays(root: zarr.Group, group: str, *, where: str) -> dict[str, da.Array]:
    """Open X, relative and offsets of ``groups/<group>`` as Dask arrays chunked like X."""
    path = f"groups/{group}"
    if path not in root:
        groups = root.get("groups")
        available = sorted(groups.group_keys()) if isinstance(groups, zarr.Group) else []
        raise MissingKeyError(
            f"{where}: grouped view {group!r} not found; available: {available!r}. Create it "
            "with `ptychozarr group`."
        )
    # Keys unique to this call: a client killed mid-job can leave tasks with the same
    # deterministic keys on a shared scheduler, and a new job reusing them waits for ever.
    nonce = uuid.uuid4().hex
    x_array = da.from_zarr(required_array(root, f"{path}/X", where=where), name=f"X-{nonce}")
    chunks = x_array.chunks[0]
    x_array = x_array.rechunk({0: chunks, 1: -1, 2: -1, 3: -1})
    relative = da.from_zarr(required_array(root, f"{path}/relative", where=where),
                            name=f"relative-{nonce}")
    offsets = da.from_zarr(required_array(root, f"{path}/offsets", where=where),
                           name=f"offsets-{nonce}")
    return {"X": x_array, "relative": relative.rechunk({0: chunks, 1: -1, 2: -1}),
            "offsets": offsets.rechunk({0: chunks, 1: -1})}

