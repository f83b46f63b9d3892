"""Grouping of scan positions into model inputs, written to ``groups/<name>/`` of a store.

A group is C = gridsize**2 scan positions that lie close together. With gridsize 1 every selected
position is its own group. With gridsize 2 each seed position draws C members at random among
its K nearest neighbours, found with a KD-tree on the positions. The seed itself is not one of
its K neighbours, and it joins its own group only when fewer than C neighbours exist.

Everything that depends on the number of patterns is streamed. The per-position bookkeeping
(indices, centroids, offsets) is held in memory as a few numbers per group. The diffraction is
read twice through Dask, once for the input normalisation and once to write ``X``, one output
chunk at a time, so memory stays bounded whatever the number of patterns.

Quantities written once for the whole grouped set:

- ``alpha = sqrt((N/2)**2 / mean over groups and channels of sum(D**2))``, so that the mean
  summed ``X**2`` per pattern is ``(N/2)**2``. Each pattern's ``sum(D**2)`` is accumulated in
  float64 and the mean is taken over all members at once, so alpha does not depend on chunking.
- ``intensity_scale = sqrt(nphotons) / (N/2)``, which links ``X`` to photon counts:
  ``(intensity_scale * X)**2`` sums to ``nphotons`` per pattern on average.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from scipy.spatial import cKDTree

from ptychozarr.config import GroupingConfig
from ptychozarr.errors import InvalidInputError, StoreSchemaError
from ptychozarr.store import GROUP_ARRAYS, create_array, open_store, stage_subgroup
from ptychozarr.store.create import default_chunk_frames
from ptychozarr.store.schema import format_block

__all__ = [
    "DEFAULT_NPHOTONS",
    "GroupIndex",
    "build_groups",
    "group_dataset",
    "read_positions",
    "select_region",
]

logger = logging.getLogger(__name__)

DEFAULT_NPHOTONS = 1e9
"""Photon count per pattern assumed when the store records none."""

# Independent random streams derived from the grouping seed.
_SEED_STREAM, _MEMBER_STREAM = range(2)


@dataclass(frozen=True)
class GroupIndex:
    """Members and geometry of every group.

    Attributes
    ----------
    indices
        (group, channel) int64 rows of the members in the store's raw arrays.
    offsets
        (group, xy) float64 centroids ``(x, y)`` in object pixels.
    relative
        (group, channel, xy) float64 ``centroid - member``; a member sits at
        ``offsets - relative``.
    seeds
        (group,) int64 row of the position whose neighbourhood each group was drawn from.
    """

    indices: np.ndarray
    offsets: np.ndarray
    relative: np.ndarray
    seeds: np.ndarray


# Selection and member draw --------------------------------------------------------------------


def select_region(positions: np.ndarray, region: str | None) -> np.ndarray:
    """Return the sorted rows of ``positions`` (scan, 2) that lie in ``region``.

    ``"top"``/``"bottom"`` split at the median row y, ``"left"``/``"right"`` at the median
    column x. Positions exactly at the median belong to ``"bottom"`` (or ``"right"``), so the two
    halves never share a position. ``"box:x0,x1,y0,y1"`` keeps ``x0 <= x < x1`` and
    ``y0 <= y < y1``. ``None`` keeps every position.
    """
    rows = np.arange(len(positions))
    if region is None:
        return rows
    x, y = positions[:, 0], positions[:, 1]
    if region in ("top", "bottom"):
        keep = y < np.median(y) if region == "top" else y >= np.median(y)
    elif region in ("left", "right"):
        keep = x < np.median(x) if region == "left" else x >= np.median(x)
    else:
        box = GroupingConfig(region=region).region_box()
        if box is None:
            raise InvalidInputError(f"region: invalid value {region!r}.")
        x0, x1, y0, y1 = box
        keep = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return rows[keep]


def _choose_seeds(count: int, config: GroupingConfig) -> np.ndarray:
    """Return seed positions (indices into the selection), one per group, in ascending order."""
    if config.n_groups is None:
        return np.arange(count)
    if config.n_groups <= count:
        rng = np.random.default_rng([config.seed, _SEED_STREAM])
        return np.sort(rng.choice(count, size=config.n_groups, replace=False))
    if not config.oversample:
        raise InvalidInputError(
            f"n_groups: {config.n_groups!r} groups requested from {count} positions. With "
            "gridsize 1 there is one group per position at most; with gridsize 2 pass "
            "oversample=True (CLI: --oversample) to draw several member sets per position, "
            f"or request at most {count} groups."
        )
    repeats = math.ceil(config.n_groups / count)
    return np.sort(np.tile(np.arange(count), repeats))


def _neighbours(points: np.ndarray, seeds: np.ndarray, k: int) -> np.ndarray:
    """Return the (seed, k) nearest other points of each seed (indices into ``points``)."""
    available = min(k, len(points) - 1)
    tree = cKDTree(points)
    _, hits = tree.query(points[seeds], k=available + 1)
    hits = np.asarray(hits).reshape(len(seeds), available + 1)

    # Drop the seed itself. Duplicate positions can push it out of the first column, and then
    # the farthest hit is dropped instead.
    is_seed = hits == seeds[:, None]
    missing = ~is_seed.any(axis=1)
    is_seed[missing, -1] = True
    first_only = np.cumsum(is_seed, axis=1) == 1
    drop = is_seed & first_only
    return hits[~drop].reshape(len(seeds), available)


def _draw_members(points: np.ndarray, seeds: np.ndarray, config: GroupingConfig) -> np.ndarray:
    """Return (group, channel) member indices into ``points`` for every seed."""
    channels = config.channels
    if channels == 1:
        return seeds[:, None]
    if len(points) < channels:
        raise InvalidInputError(
            f"gridsize {config.gridsize}: the selection has {len(points)} positions, fewer than "
            f"the {channels} members of one group. Select a larger region."
        )
    neighbours = _neighbours(points, seeds, config.neighbors)
    if neighbours.shape[1] < channels:
        # Too few positions for C neighbours: the seed joins its own group.
        neighbours = np.concatenate([seeds[:, None], neighbours], axis=1)

    rng = np.random.default_rng([config.seed, _MEMBER_STREAM])
    if config.oversample:
        return _draw_distinct_sets(neighbours, seeds, channels, rng)
    order = np.argsort(rng.random(neighbours.shape), axis=1)[:, :channels]
    return np.take_along_axis(neighbours, order, axis=1)


def _draw_distinct_sets(neighbours: np.ndarray, seeds: np.ndarray, channels: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Draw member sets so that the groups of one seed are distinct combinations."""
    combinations = np.array(list(itertools.combinations(range(neighbours.shape[1]), channels)))
    members = np.empty((len(seeds), channels), np.int64)
    starts = np.flatnonzero(np.r_[True, seeds[1:] != seeds[:-1]])
    stops = np.r_[starts[1:], len(seeds)]
    for start, stop in zip(starts, stops, strict=True):
        if stop - start > len(combinations):
            raise InvalidInputError(
                f"oversample: {stop - start} groups per position requested but only "
                f"{len(combinations)} distinct sets of {channels} among K={neighbours.shape[1]} "
                "neighbours exist. Request fewer groups or raise K (--neighbors)."
            )
        chosen = combinations[rng.permutation(len(combinations))[:stop - start]]
        chosen = chosen[:, rng.permutation(channels)]
        members[start:stop] = neighbours[start][chosen]
    return members


def build_groups(positions: np.ndarray, config: GroupingConfig) -> GroupIndex:
    """Select the region, draw the groups and compute their centroids and offsets.

    Parameters
    ----------
    positions
        (scan, 2) float64 positions ``(x, y)`` in object pixels.
    config
        Grouping settings.

    Returns
    -------
    GroupIndex
        Groups in ascending seed order. Oversampled groups are subsampled to ``n_groups``.
    """
    selected = select_region(positions, config.region)
    if len(selected) == 0:
        raise InvalidInputError(f"region {config.region!r} contains no scan position. Choose "
                                "a region that overlaps the scan.")
    points = positions[selected]
    seeds = _choose_seeds(len(points), config)
    members = _draw_members(points, seeds, config)
    if config.oversample and config.n_groups is not None and len(members) > config.n_groups:
        rng = np.random.default_rng([config.seed, _SEED_STREAM])
        kept = np.sort(rng.choice(len(members), config.n_groups, replace=False))
        members, seeds = members[kept], seeds[kept]

    indices = selected[members]
    member_positions = positions[indices]
    offsets = member_positions.mean(axis=1)
    relative = offsets[:, None, :] - member_positions
    return GroupIndex(indices.astype(np.int64), offsets, relative, selected[seeds])


# Normalisation --------------------------------------------------------------------------------


def _pattern_energy(block: np.ndarray) -> np.ndarray:
    flat = block.reshape(len(block), -1).astype(np.float64)
    return np.einsum("ij,ij->i", flat, flat)


def input_normalisation(diffraction: zarr.Array, indices: np.ndarray) -> float:
    """Return alpha for the members ``indices`` (group, channel) of ``diffraction`` (scan, ky, kx).

    Each member pattern's summed squared amplitude is computed in float64 in one Dask pass over
    the storage chunks that hold members, and the mean is taken over all (group, channel)
    entries at once.
    """
    import dask.array as da

    rows, inverse = np.unique(indices, return_inverse=True)
    stack = da.from_zarr(diffraction)[rows]
    energies = stack.map_blocks(_pattern_energy, drop_axis=[1, 2], dtype=np.float64)
    per_row = np.asarray(energies.compute(scheduler="threads"))
    finite = np.isfinite(per_row)
    if not finite.all():
        raise InvalidInputError(
            f"diffraction: pattern {int(rows[int(np.argmin(finite))])} contains NaN or infinite "
            "values, so the patterns cannot be normalised. Repair the store's diffraction "
            "array, or convert the source again."
        )
    mean_energy = float(np.mean(per_row[inverse.reshape(-1)]))
    half = diffraction.shape[-1] / 2
    if not mean_energy > 0:
        raise InvalidInputError(
            f"diffraction: the grouped patterns have zero total intensity (mean summed "
            f"amplitude**2 is {mean_energy!r}), so they cannot be normalised. Check the store's "
            "diffraction array."
        )
    return math.sqrt(half**2 / mean_energy)


# Materialisation ------------------------------------------------------------------------------


def _read_rows(diffraction: zarr.Array, rows: np.ndarray) -> np.ndarray:
    """Read sorted unique ``rows`` of (scan, ky, kx) ``diffraction``, one storage chunk at a time.

    Whole chunks are read and the rows picked in memory, which is much faster than a row-wise
    selection when many rows of a chunk are needed.

    NOTE: when the stored order of the patterns does not follow the scan path, the members of
    one block of groups are spread over many chunks. Memory stays at one chunk at a time, but
    each block then reads many chunks and grouping slows down accordingly.
    """
    chunk = int(diffraction.chunks[0])
    out = np.empty((len(rows), *diffraction.shape[1:]), dtype=diffraction.dtype)
    chunk_ids = rows // chunk
    for chunk_id in np.unique(chunk_ids):
        wanted = np.flatnonzero(chunk_ids == chunk_id)
        start = int(chunk_id) * chunk
        block = np.asarray(diffraction[start:start + chunk])
        out[wanted] = block[rows[wanted] - start]
    return out


def _gather_block(indices: np.ndarray, *, diffraction: zarr.Array, alpha: float) -> np.ndarray:
    """Read the member patterns of a block of groups: (group, ky, kx, channel) float32."""
    rows, inverse = np.unique(indices, return_inverse=True)
    grouped = _read_rows(diffraction, rows)[inverse.reshape(indices.shape)]
    return (np.moveaxis(grouped, 1, -1) * alpha).astype(np.float32)


def _truth_block(members: np.ndarray, *, obj: np.ndarray, n: int) -> np.ndarray:
    """Cut patches at member positions (group, channel, xy).

    Returns (group, py, px, channel, part) float32 with part 0 the amplitude, 1 the phase.
    """
    from ptychozarr import physics

    groups, channels = members.shape[:2]
    patches = physics.extract_patches_np(obj, members.reshape(-1, 2), n)
    values = np.stack([np.abs(patches), np.angle(patches)], axis=-1)
    return np.moveaxis(values.reshape(groups, channels, n, n, 2), 1, 3).astype(np.float32)


def _write_blocks(group: zarr.Group, index: GroupIndex, diffraction: zarr.Array, alpha: float,
                  obj: np.ndarray | None, chunk_groups: int) -> None:
    """Write X (and Y_I, Y_phi) chunk by chunk through Dask, one task per storage chunk."""
    import dask.array as da

    n = int(diffraction.shape[-1])
    count, channels = index.indices.shape
    shape = (count, n, n, channels)
    block_chunks = ((chunk_groups,) * (count // chunk_groups)
                    + ((count % chunk_groups,) if count % chunk_groups else ()))

    lazy_indices = da.from_array(index.indices, chunks=(chunk_groups, channels))
    x = lazy_indices.map_blocks(_gather_block, diffraction=diffraction, alpha=alpha,
                                new_axis=[2, 3], chunks=(block_chunks, (n,), (n,), (channels,)),
                                dtype=np.float32)
    targets = [(x, create_array(group, GROUP_ARRAYS["X"], shape, chunk_frames=chunk_groups))]

    if obj is not None:
        members = index.offsets[:, None, :] - index.relative
        # One task per block cuts the patches once; Y_I and Y_phi are slices of its result.
        lazy_members = da.from_array(members, chunks=(chunk_groups, channels, 2))
        truth = lazy_members.map_blocks(_truth_block, obj=obj, n=n, new_axis=[3, 4],
                                        chunks=(block_chunks, (n,), (n,), (channels,), (2,)),
                                        dtype=np.float32)
        for part, name in enumerate(("Y_I", "Y_phi")):
            targets.append((truth[..., part], create_array(group, GROUP_ARRAYS[name], shape,
                                                           chunk_frames=chunk_groups)))

    # Dask chunks equal the storage chunks, so each task writes whole chunks of its own and no
    # lock is needed. da.store is used rather than da.to_zarr, which would merge the chunks of
    # small blocks into larger ones and so hold more groups in memory at once.
    sources = [source for source, _ in targets]
    arrays: list[Any] = [target for _, target in targets]
    da.store(sources, arrays, lock=False, scheduler="threads")


# Entry point ----------------------------------------------------------------------------------


def _array(root: zarr.Group, name: str, where: str) -> zarr.Array:
    array = root[name]
    if not isinstance(array, zarr.Array):
        raise StoreSchemaError(f"{where}: {name!r} is a group, expected an array. Re-create the "
                               "store with `ptychozarr convert` or `ptychozarr simulate`.")
    return array


def read_positions(root: zarr.Group, where: str) -> np.ndarray:
    """Read a store's positions as (scan, 2) float64 ``(x, y)`` object pixels.

    Raises
    ------
    InvalidInputError
        The positions are not in pixels.
    """
    columns = []
    for name in ("xcoords", "ycoords"):
        array = _array(root, name, where)
        units = array.attrs.get("units", "pixel")
        if units != "pixel":
            raise InvalidInputError(
                f"{where}: {name!r} is in {units!r}; grouping needs positions in object pixels. "
                "Convert the store with the object pixel size so positions are in pixels."
            )
        columns.append(np.asarray(array[...], dtype=np.float64))
    return np.stack(columns, axis=1)


def _group_attributes(config: GroupingConfig, index: GroupIndex, *, n: int, alpha: float,
                      nphotons: float, has_truth: bool, source: str) -> dict[str, Any]:
    return {
        "ptychozarr": format_block("group"),
        "gridsize": config.gridsize,
        "K": config.neighbors,
        "seed": config.seed,
        "n_groups": len(index.indices),
        "region": config.region,
        "oversample": config.oversample,
        "n": n,
        "alpha": alpha,
        "intensity_scale": math.sqrt(nphotons) / (n / 2),
        "nphotons": nphotons,
        "has_ground_truth": has_truth,
        "max_offset_px": float(np.abs(index.relative).max(initial=0.0)),
        "source_store": source,
        "config": config.to_dict(),
    }


def group_dataset(store_path: str | os.PathLike[str], config: GroupingConfig, *,
                  name: str | None = None, chunk_groups: int | None = None,
                  overwrite: bool = False, nphotons: float | None = None) -> str:
    """Group a store's scan positions and write the grouped view ``groups/<name>/``.

    Parameters
    ----------
    store_path
        Dataset store (a local directory).
    config
        Grouping settings.
    name
        Name of the grouped view; default ``config.default_name()``.
    chunk_groups
        Groups per stored chunk of ``X``, ``Y_I`` and ``Y_phi``; default about 8 MiB of ``X``.
    overwrite
        Replace an existing view of the same name.
    nphotons
        Mean photon count per pattern behind ``intensity_scale``; default the store's
        ``nphotons`` attribute, else :data:`DEFAULT_NPHOTONS`.

    Returns
    -------
    str
        The name of the grouped view. The view contains ``indices`` (group, channel) int32,
        ``offsets`` (group, xy) and ``relative`` (group, channel, xy) float64 pixels, ``X``
        (group, ky, kx, channel) float32 ``alpha * amplitude``, and, when the store has an
        ``object``, ``Y_I``
        and ``Y_phi`` (group, py, px, channel) float32 cut at each member's own position.
    """
    where = os.fspath(store_path)
    root = open_store(store_path)
    diffraction = _array(root, "diffraction", where)
    n = int(diffraction.shape[-1])
    view_name = name or config.default_name()

    index = build_groups(read_positions(root, where), config)
    logger.info("Grouping %s: %d groups of %d from %d positions", where, len(index.indices),
                config.channels, diffraction.shape[0])
    alpha = input_normalisation(diffraction, index.indices)
    photons = _store_nphotons(root, where) if nphotons is None else float(nphotons)
    obj = np.asarray(_array(root, "object", where)[...]) if "object" in root else None
    chunk = chunk_groups or default_chunk_frames((n, n, config.channels), np.float32)
    attrs = _group_attributes(config, index, n=n, alpha=alpha, nphotons=photons,
                              has_truth=obj is not None, source=os.path.abspath(where))

    with stage_subgroup(store_path, f"groups/{view_name}", overwrite=overwrite,
                        attrs=attrs) as group:
        count, channels = index.indices.shape
        create_array(group, GROUP_ARRAYS["indices"], (count, channels))[...] = (
            index.indices.astype(np.int32))
        create_array(group, GROUP_ARRAYS["offsets"], (count, 2))[...] = index.offsets
        create_array(group, GROUP_ARRAYS["relative"], (count, channels, 2))[...] = index.relative
        _write_blocks(group, index, diffraction, alpha, obj, chunk)
    logger.info("Wrote groups/%s (alpha %.6g, intensity scale %.6g)", view_name, alpha,
                attrs["intensity_scale"])
    return view_name


def _store_nphotons(root: zarr.Group, where: str) -> float:
    value = root.attrs.get("nphotons")
    if value is None:
        logger.warning("%s records no nphotons; assuming %.3g photons per pattern for the "
                       "intensity scale", where, DEFAULT_NPHOTONS)
        return DEFAULT_NPHOTONS
    if not isinstance(value, int | float) or not value > 0:
        raise StoreSchemaError(f"{where}: root attribute nphotons={value!r} is not a positive "
                               "number. Pass nphotons explicitly (CLI: --nphotons).")
    return float(value)
