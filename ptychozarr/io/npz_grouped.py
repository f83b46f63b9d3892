"""Importer of PtychoPINN's grouped ("model-ready") NPZ files.

Such a file contains groups, not patterns: ``X`` (B, N, N, C) normalised amplitudes, ``nn_indices``
(B, C) the raw row of each member, ``global_offsets`` (B, 1, 2, 1) the group centroids and
``local_offsets`` (B, 1, 2, C) = centroid - member, with the intensity scale ``norm_Y_I``. The
importer rebuilds a complete store from it:

- raw rows are the distinct values of ``nn_indices`` in increasing order (``scan_index`` keeps
  the original row numbers); each row's amplitude is ``X`` at its first occurrence, so the raw
  ``diffraction`` has the scale of ``X`` and the grouping's ``alpha`` is exactly 1;
- each row's position is centroid - local offset (every occurrence must agree);
- the grouping itself becomes ``groups/<name>`` with ``indices`` renumbered to raw rows,
  ``offsets``, ``relative``, ``X`` and, when the file has real ground truth, ``Y_I``/``Y_phi``.

``coords_nominal``/``coords_true`` hold positions relative to group centroids only, so nominal
absolute positions cannot be recovered and are not stored.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ptychozarr.errors import InvalidInputError, MissingKeyError
from ptychozarr.io.frames import NpzFrames, ProgressCallback, stream_frames
from ptychozarr.io.geometry import Positions
from ptychozarr.io.npz import NpyHeader, NpzArchive, require_numeric
from ptychozarr.io.npz_layout import metadata_nphotons, read_optional
from ptychozarr.io.options import ConvertOptions
from ptychozarr.io.raw_arrays import (
    DIFFRACTION_UNITS,
    coordinate_names,
    create_per_scan,
    write_positions,
    write_small,
)
from ptychozarr.store.create import StoreWriter, default_chunk_frames
from ptychozarr.store.schema import GROUP_ARRAYS, format_block

__all__ = ["REQUIRED_GROUPED_KEYS", "GroupedNpzImporter"]

logger = logging.getLogger(__name__)

REQUIRED_GROUPED_KEYS = ("X", "nn_indices", "global_offsets", "local_offsets")

POSITION_TOLERANCE_PX = 1e-3
"""Largest disagreement between two groups about one pattern's position."""


class GroupedNpzImporter:
    """Convert a grouped NPZ into a store with raw arrays and one grouped view."""

    converter = "npz-grouped"

    def __init__(self, archive: NpzArchive, options: ConvertOptions) -> None:
        self.archive = archive
        self.options = options
        self.path = archive.path
        self.metadata: Any = None

    # Checks before writing --------------------------------------------------------------------

    def check(self) -> None:
        """Validate keys, shapes and dtypes; raise before anything is written."""
        self.archive.reject_pickled()
        self.metadata = self.archive.read_metadata()
        missing = [key for key in REQUIRED_GROUPED_KEYS if key not in self.archive]
        if missing:
            raise MissingKeyError(
                f"{self.path}: grouped NPZ keys {missing!r} are missing; the file has "
                f"{self.archive.keys!r}. A grouped NPZ needs {list(REQUIRED_GROUPED_KEYS)!r}."
            )
        self.x_header = self._x_header()
        groups, side, _, channels = self.x_header.shape
        self.n_groups, self.side, self.channels = groups, side, channels
        self.gridsize = math.isqrt(channels)
        self.indices = self._read_indices()
        self.members = self._read_members()
        self.rows, self.group_rows = np.unique(self.indices, return_inverse=True)
        self.group_rows = self.group_rows.reshape(self.indices.shape).astype(np.int32)
        self.positions = self._row_positions()
        self.probe = self._read_probe()
        self.norm = self._read_norm()
        self.truth = self._truth_headers()

    def _x_header(self) -> NpyHeader:
        header = self.archive.header("X")
        require_numeric(header, path=self.path, what="grouped diffraction")
        shape = header.shape if len(header.shape) == 4 else (*header.shape, 1)
        if len(shape) != 4 or header.fortran_order:
            raise InvalidInputError(
                f"{self.path}: 'X' has shape {header.shape!r}; (groups, N, N, channels) in C "
                "order is expected."
            )
        if shape[1] != shape[2]:
            raise InvalidInputError(
                f"{self.path}: 'X' contains non-square patterns {shape[1]} x {shape[2]}; grouped "
                "patterns must be N x N."
            )
        if math.isqrt(shape[3]) ** 2 != shape[3]:
            raise InvalidInputError(
                f"{self.path}: 'X' has {shape[3]} channels; a group has gridsize**2 members "
                "(1 or 4)."
            )
        return NpyHeader(header.key, shape, header.dtype, False, header.data_offset)

    def _read_indices(self) -> np.ndarray:
        header = self.archive.header("nn_indices")
        require_numeric(header, path=self.path, what="group indices")
        indices = self.archive.read("nn_indices")
        if header.dtype.kind not in "iu" or indices.shape != (self.n_groups, self.channels):
            raise InvalidInputError(
                f"{self.path}: 'nn_indices' has shape {indices.shape!r} and dtype "
                f"{str(indices.dtype)!r}; integers of shape ({self.n_groups}, {self.channels}) "
                "matching 'X' are expected."
            )
        if indices.min() < 0:
            raise InvalidInputError(
                f"{self.path}: 'nn_indices' contains the negative row {int(indices.min())}; rows "
                "must be >= 0."
            )
        return indices.astype(np.int64)

    def _read_offsets(self, key: str, channels: int) -> np.ndarray:
        require_numeric(self.archive.header(key), path=self.path, what="offsets")
        values = self.archive.read(key).astype(np.float64)
        if values.size != self.n_groups * 2 * channels:
            raise InvalidInputError(
                f"{self.path}: {key!r} has shape {values.shape!r}; ({self.n_groups}, 1, 2, "
                f"{channels}) is expected."
            )
        values = values.reshape(self.n_groups, 2, channels)
        if not np.isfinite(values).all():
            raise InvalidInputError(f"{self.path}: {key!r} contains NaN or infinite values.")
        return values

    def _read_members(self) -> np.ndarray:
        """Return member positions (group, xy, channel) = centroid - local offset."""
        self.centroids = self._read_offsets("global_offsets", 1)[:, :, 0]
        self.relative = self._read_offsets("local_offsets", self.channels)
        return np.asarray(self.centroids[:, :, np.newaxis] - self.relative)

    def _row_positions(self) -> Positions:
        flat_rows = self.group_rows.ravel()
        flat_x = self.members[:, 0, :].ravel()
        flat_y = self.members[:, 1, :].ravel()
        _, first = np.unique(flat_rows, return_index=True)
        x, y = flat_x[first], flat_y[first]
        deviation = max(np.abs(flat_x - x[flat_rows]).max(), np.abs(flat_y - y[flat_rows]).max())
        if deviation > POSITION_TOLERANCE_PX:
            raise InvalidInputError(
                f"{self.path}: two groups place the same pattern {deviation:.3g} pixels apart "
                "(centroid - local offset); 'global_offsets', 'local_offsets' and 'nn_indices' "
                "do not belong together."
            )
        return Positions(x, y, "pixel")

    def _read_probe(self) -> np.ndarray | None:
        probe = read_optional(self.archive, "probe", what="probe", ndim=2)
        if probe is not None and probe.shape != (self.side, self.side):
            raise InvalidInputError(
                f"{self.path}: probe has shape {probe.shape!r} but the patterns are "
                f"({self.side}, {self.side}); the probe must be N x N."
            )
        return probe

    def _read_norm(self) -> float | None:
        value = read_optional(self.archive, "norm_Y_I", what="intensity scale", ndim=0)
        if value is None or np.asarray(value).dtype.kind not in "iuf":
            return None
        scale = float(value)
        if not (math.isfinite(scale) and scale > 0):
            raise InvalidInputError(
                f"{self.path}: 'norm_Y_I' is {scale!r}; the intensity scale must be a positive "
                "number."
            )
        return scale

    def _truth_headers(self) -> bool:
        if not {"Y_I", "Y_phi"} <= set(self.archive.keys):
            return False
        for key in ("Y_I", "Y_phi"):
            header = self.archive.header(key)
            require_numeric(header, path=self.path, what="ground truth")
            shape = header.shape if len(header.shape) == 4 else (*header.shape, 1)
            if shape != self.x_header.shape or header.fortran_order:
                raise InvalidInputError(
                    f"{self.path}: {key!r} has shape {header.shape!r} but 'X' has "
                    f"{self.x_header.shape!r}; ground-truth patches must match 'X'."
                )
        # Files without ground truth carry Y_I = 1 and Y_phi = 0 everywhere.
        return not (self._constant("Y_I", 1.0) and self._constant("Y_phi", 0.0))

    def _constant(self, key: str, value: float) -> bool:
        return all(bool(np.all(slab == value)) for slab in self.archive.iter_slabs(key, 256))

    # Writing ----------------------------------------------------------------------------------

    @property
    def group_name(self) -> str:
        return self.options.group_name or f"imported-g{self.gridsize}-n{self.n_groups}"

    def write(self, writer: StoreWriter, *,
              progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Write the raw arrays and ``groups/<name>``; return the root attributes to set."""
        parent = f"groups/{self.group_name}"
        group_chunk = self.options.chunk_frames or default_chunk_frames(
            (self.side, self.side, self.channels), "float32")
        writer.create_array(GROUP_ARRAYS["X"], self.x_header.shape, parent=parent,
                            chunk_frames=group_chunk)
        x_reader = NpzFrames(f"{self.path}: 'X'", self.archive, self.x_header)
        energy = stream_frames(
            writer, f"{parent}/X", x_reader,
            lambda slab: (slab.astype(np.float32), float(np.square(slab, dtype=np.float64).sum())),
            values="amplitude", progress=progress)
        mean_energy = energy / (self.n_groups * self.channels)
        if self.truth:
            self._copy_truth(writer, parent, group_chunk)
        self._write_group_geometry(writer, parent, group_chunk)

        chunk_frames = self.options.chunk_frames or default_chunk_frames(
            (self.side, self.side), "float32")
        self._write_raw(writer, parent, chunk_frames)
        scale, nphotons = self._photon_scale(mean_energy)
        writer.group.require_group(parent).attrs.update(
            self._group_attrs(writer.path, scale, nphotons))
        return self._root_attrs(nphotons)

    def _copy_truth(self, writer: StoreWriter, parent: str, group_chunk: int) -> None:
        for key in ("Y_I", "Y_phi"):
            writer.create_array(GROUP_ARRAYS[key], self.x_header.shape, parent=parent,
                                chunk_frames=group_chunk)
            header = self.archive.header(key)
            reader = NpzFrames(f"{self.path}: {key!r}", self.archive,
                               NpyHeader(key, self.x_header.shape, header.dtype, False,
                                         header.data_offset))
            stream_frames(writer, f"{parent}/{key}", reader,
                          lambda slab: (slab.astype(np.float32), 0.0), values="signed")

    def _write_group_geometry(self, writer: StoreWriter, parent: str, group_chunk: int) -> None:
        arrays = {
            "indices": self.group_rows,
            "offsets": self.centroids,
            "relative": self.relative.transpose(0, 2, 1),
        }
        for name, values in arrays.items():
            key = f"{parent}/{name}"
            if writer.frames_done(key) == self.n_groups:
                continue
            writer.create_array(GROUP_ARRAYS[name], values.shape, parent=parent,
                                chunk_frames=group_chunk)
            writer.write_whole(key, values.astype(GROUP_ARRAYS[name].dtype))

    def _write_raw(self, writer: StoreWriter, parent: str, chunk_frames: int) -> None:
        """Write each raw row's amplitude from its first occurrence in the stored ``X``."""
        n_rows = self.rows.size
        coordinates = coordinate_names(self.positions, has_scan_index=True)
        diffraction = create_per_scan(
            writer, "diffraction", (n_rows, self.side, self.side), chunk_frames=chunk_frames,
            coordinates=coordinates, attrs={"amplitude_scale": "arbitrary"},
            units=DIFFRACTION_UNITS["arbitrary"])
        group_x = writer.group[f"{parent}/X"]
        if not isinstance(group_x, zarr.Array):
            raise TypeError(f"{parent}/X is not an array")
        flat = self.group_rows.ravel()
        _, first = np.unique(flat, return_index=True)
        first_group, first_channel = np.divmod(first, self.channels)
        chunk = int(diffraction.chunks[0])
        for start in range(writer.frames_done("diffraction"), n_rows, chunk):
            stop = min(start + chunk, n_rows)
            needed, where = np.unique(first_group[start:stop], return_inverse=True)
            block = np.asarray(group_x.get_orthogonal_selection((needed,)))
            frames = block[where, :, :, first_channel[start:stop]]
            writer.write_frames("diffraction", start, frames.astype(np.float32))
        write_positions(writer, self.positions, chunk_frames=chunk_frames)
        write_small(writer, "scan_index", self.rows, chunk_frames=chunk_frames)
        if self.probe is not None:
            write_small(writer, "probe", self.probe)

    def _photon_scale(self, mean_energy: float) -> tuple[float, float]:
        """Return the intensity scale s and nphotons = s**2 * mean sum X**2."""
        if self.norm is not None:
            return self.norm, self.norm**2 * mean_energy
        nphotons = self.options.nphotons or metadata_nphotons(self.metadata)
        if nphotons is None:
            raise InvalidInputError(
                f"{self.path}: the grouped NPZ has no 'norm_Y_I' (intensity scale) and no "
                "nphotons in '_metadata'. Pass --nphotons, the mean photon count per pattern."
            )
        return math.sqrt(nphotons / mean_energy), nphotons

    def _group_attrs(self, store: Path, scale: float, nphotons: float) -> dict[str, Any]:
        distances = np.hypot(self.relative[:, 0, :], self.relative[:, 1, :])
        return {
            "ptychozarr": format_block("group"),
            "gridsize": self.gridsize, "K": None, "seed": None, "n_groups": self.n_groups,
            "region": None, "oversample": False, "n": self.side, "alpha": 1.0,
            "intensity_scale": scale, "nphotons": nphotons, "has_ground_truth": self.truth,
            "max_offset_px": float(distances.max()), "source_store": str(store),
            "imported_from": Path(self.path).name,
        }

    def _root_attrs(self, nphotons: float) -> dict[str, Any]:
        conventions = {
            "importer": "npz-grouped",
            "group": self.group_name,
            "source_scale": "normalised amplitude X of the grouped file (alpha = 1)",
            "rows": "distinct nn_indices in increasing order; scan_index keeps them",
            "positions": "global_offsets - local_offsets, patch centres in object pixels",
            "dc_position": "center",
        }
        attrs: dict[str, Any] = {"amplitude_scale": "arbitrary", "nphotons": nphotons,
                                 "conventions": conventions, "propagation": "far_field"}
        if self.metadata is not None:
            attrs["source_metadata"] = self.metadata
        return attrs
