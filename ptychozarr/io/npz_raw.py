"""Importer of raw (one row per scan position) NPZ files: PtychoPINN's layout and other tools'.

:meth:`NpzImporter.check` reads only headers and the small arrays (positions, probe, object) and
rejects bad input before anything is written. :meth:`NpzImporter.write` then streams the
patterns into the store, converting counts to amplitudes, moving the zero frequency to the centre
and applying the detector plan, and writes positions as patch centres (x = column, y = row).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ptychozarr.errors import InvalidInputError
from ptychozarr.io.detector import DetectorPlan, parse_center
from ptychozarr.io.frames import (
    FrameReader,
    FrameTransform,
    NpzFrames,
    ProgressCallback,
    ScanLastNpzFrames,
    mean_intensity,
    stream_frames,
)
from ptychozarr.io.geometry import (
    HC_EV_M,
    Positions,
    far_field_pixel_size_m,
    shift_into_frame,
)
from ptychozarr.io.npz import NpzArchive
from ptychozarr.io.npz_layout import (
    DiffractionLayout,
    find_diffraction_key,
    metadata_nphotons,
    read_optional,
    read_positions,
    resolve_layout,
    squeeze_singletons,
)
from ptychozarr.io.options import ConvertOptions
from ptychozarr.io.raw_arrays import (
    DIFFRACTION_UNITS,
    coordinate_names,
    create_per_scan,
    write_positions,
    write_small,
)
from ptychozarr.store.create import StoreWriter, default_chunk_frames

__all__ = ["NpzImporter"]

logger = logging.getLogger(__name__)

SCRATCH_FOLDER = ".scratch"


class NpzImporter:
    """Convert a raw NPZ file, described by ``options``, into a dataset store."""

    converter = "npz"

    def __init__(self, archive: NpzArchive, options: ConvertOptions) -> None:
        self.archive = archive
        self.options = options
        self.path = archive.path
        self.metadata: Any = None
        self.probe: np.ndarray | None = None
        self.object: np.ndarray | None = None
        self.scan_index: np.ndarray | None = None
        self.patches_key: str | None = None
        self.scale = "amplitude"

    # Checks before writing --------------------------------------------------------------------

    def check(self) -> None:
        """Validate keys, shapes and dtypes; raise before anything is written."""
        self.archive.reject_pickled()
        self.metadata = self.archive.read_metadata()
        self.key = find_diffraction_key(self.archive, self.options)
        self.positions = read_positions(self.archive, self.options)
        if self.positions.x.size == 0:
            raise InvalidInputError(f"{self.path}: the positions are empty (no patterns).")
        self.positions.check_finite(self.path)
        self.layout = resolve_layout(self.archive, self.key, self.positions.x.size, self.options)
        if self.layout.frame_shape[0] != self.layout.frame_shape[1] and self.options.crop is None:
            DetectorPlan.build(self.layout.frame_shape, where=self._where)
        self.scale = self._scale()
        self.probe = self._read_probe()
        self.object = self._read_object()
        self.scan_index = self._read_scan_index()
        self.patches_key = self._patches_key()
        parse_center(self.options.center)

    @property
    def _where(self) -> str:
        return f"{self.path}: {self.key!r}"

    @property
    def n_frames(self) -> int:
        return int(self.positions.x.size)

    def _scale(self) -> str:
        dtype = self.layout.header.dtype
        if self.options.scale != "auto":
            return self.options.scale
        if dtype.kind == "f":
            return "amplitude"
        raise InvalidInputError(
            f"{self._where}: diffraction has integer dtype {str(dtype)!r}, which may hold photon "
            "counts or amplitudes. Pass --intensity for counts (the store gets their square "
            "root) or --amplitude for amplitudes."
        )

    def _read_probe(self) -> np.ndarray | None:
        key = self.options.probe_key or "probeGuess"
        probe = read_optional(self.archive, key, what="probe", ndim=2)
        if probe is None:
            if self.options.probe_key is not None:
                raise InvalidInputError(
                    f"{self.path}: probe key {key!r} not found; the file has "
                    f"{self.archive.keys!r}."
                )
            return None
        if probe.shape != self.layout.frame_shape:
            raise InvalidInputError(
                f"{self.path}: probe {key!r} has shape {probe.shape!r} but the patterns are "
                f"{self.layout.frame_shape!r}; the probe must be sampled on the N x N object "
                "grid of the patterns. Resample the probe, or leave it out."
            )
        return probe

    def _read_object(self) -> np.ndarray | None:
        key = self.options.object_key or "objectGuess"
        return read_optional(self.archive, key, what="object", ndim=2)

    def _read_scan_index(self) -> np.ndarray | None:
        values = read_optional(self.archive, "scan_index", what="scan index", ndim=1)
        if values is not None and values.size != self.n_frames:
            raise InvalidInputError(
                f"{self.path}: 'scan_index' has {values.size} values but there are "
                f"{self.n_frames} positions; remove it or fix its length."
            )
        return values

    def _patches_key(self) -> str | None:
        if "Y" not in self.archive:
            return None
        header = self.archive.header("Y")
        shape = squeeze_singletons(header.shape, 3)
        if header.fortran_order or shape != (self.n_frames, *self.layout.frame_shape):
            raise InvalidInputError(
                f"{self.path}: object patches 'Y' have shape {header.shape!r}; one patch per "
                f"pattern, ({self.n_frames}, {self.layout.frame_shape[0]}, "
                f"{self.layout.frame_shape[1]}) in C order, is expected. Remove 'Y' or fix it."
            )
        return "Y"

    # Writing ----------------------------------------------------------------------------------

    def write(self, writer: StoreWriter, *,
              progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Write every array into ``writer`` and return the root attributes to set."""
        scratch = writer.partial / SCRATCH_FOLDER
        reader = self._reader(scratch)
        transform = FrameTransform(self.scale, self.options.dc == "corner",
                                   DetectorPlan(self.layout.frame_shape))
        plan = self._plan(reader, transform)
        transform = FrameTransform(transform.scale, transform.dc_corner, plan)
        side = plan.output_side
        chunk_frames = self.options.chunk_frames or default_chunk_frames((side, side), "float32")
        if isinstance(reader, ScanLastNpzFrames):
            reader.prepare()

        positions, conventions = self._positions(plan)
        amplitude_scale = "counts" if self.scale == "intensity" else "arbitrary"
        coordinates = coordinate_names(positions, has_scan_index=self.scan_index is not None)
        create_per_scan(writer, "diffraction", (self.n_frames, side, side),
                        chunk_frames=chunk_frames, coordinates=coordinates,
                        attrs={"amplitude_scale": amplitude_scale},
                        units=DIFFRACTION_UNITS[amplitude_scale])
        total = stream_frames(writer, "diffraction", reader, transform, values=self.scale,
                              progress=progress)
        write_positions(writer, positions, chunk_frames=chunk_frames)
        self._write_extras(writer, plan, chunk_frames, coordinates)
        shutil.rmtree(scratch, ignore_errors=True)

        conventions = {**self._source_conventions(), **conventions, "detector": plan.describe()}
        return self._root_attrs(amplitude_scale, total, plan, conventions)

    def _reader(self, scratch: Path) -> FrameReader:
        layout: DiffractionLayout = self.layout
        if layout.frames_along_stream_start:
            return NpzFrames(self._where, self.archive, layout.header, layout.transpose)
        scratch.mkdir(parents=True, exist_ok=True)
        return ScanLastNpzFrames(self._where, self.archive, layout.header, scratch,
                                 layout.transpose)

    def _plan(self, reader: FrameReader, transform: FrameTransform) -> DetectorPlan:
        options = self.options
        center = parse_center(options.center)
        mean = None
        if options.crop is not None and center is None:
            if isinstance(reader, ScanLastNpzFrames):
                reader.prepare()
            mean = mean_intensity(reader, transform, frames_per_slab=256)
        return DetectorPlan.build(self.layout.frame_shape, crop=options.crop, center=center,
                                  bin=options.bin, pad=options.pad, mean_intensity=mean,
                                  where=self._where)

    def _write_extras(self, writer: StoreWriter, plan: DetectorPlan, chunk_frames: int,
                      coordinates: str) -> None:
        if self.scan_index is not None:
            write_small(writer, "scan_index", self.scan_index, chunk_frames=chunk_frames)
        if self.probe is not None:
            write_small(writer, "probe", plan.transform_probe(self.probe))
        if plan.needs_mask:
            write_small(writer, "mask", plan.apply_mask(np.ones(plan.input_shape, dtype=bool)))
        if not plan.is_identity and (self.object is not None or self.patches_key is not None):
            logger.warning("%s: the detector plan changes the object pixel size, so the object "
                           "and object patches of the file are not stored", self.path)
            return
        if self.object is not None:
            write_small(writer, "object", self.object)
        if self.patches_key is not None:
            self._write_patches(writer, chunk_frames, coordinates)

    def _write_patches(self, writer: StoreWriter, chunk_frames: int, coordinates: str) -> None:
        header = self.archive.header(self.patches_key or "Y")
        shape = squeeze_singletons(header.shape, 3)
        create_per_scan(writer, "object_patches", shape, chunk_frames=chunk_frames,
                        coordinates=coordinates)
        reader = NpzFrames(f"{self.path}: 'Y'", self.archive,
                           dataclasses.replace(header, shape=shape))
        stream_frames(writer, "object_patches", reader,
                      lambda slab: (slab.astype(np.complex64), 0.0), values="signed")

    # Positions and attributes -----------------------------------------------------------------

    def _positions(self, plan: DetectorPlan) -> tuple[Positions, dict[str, Any]]:
        options = self.options
        positions = self.positions
        ny, nx = self.layout.frame_shape
        pixel_size = self._object_pixel_size(plan)
        conventions: dict[str, Any] = {}
        if positions.units == "m" and pixel_size is not None:
            # Metres to input object pixels: an input pixel is the output pixel size times the
            # plan's position scale.
            sx, sy = plan.position_scale
            positions = dataclasses.replace(
                positions.scaled(1 / (pixel_size * sx), 1 / (pixel_size * sy)), units="pixel")
            conventions["positions_converted_from"] = "m"
        if options.position_origin == "corner":
            if positions.units == "m":
                raise InvalidInputError(
                    f"{self.path}: positions in metres mark patch corners, but the object pixel "
                    "size is unknown, so they cannot be moved to patch centres. Pass "
                    "--object-pixel-size-m, or --energy-ev, --detector-distance-m and "
                    "--detector-pixel-size-m."
                )
            positions = positions.shifted(nx / 2, ny / 2)
        if positions.units == "pixel" and not plan.is_identity:
            positions = positions.scaled(*plan.position_scale)
        has_object = self.object is not None or self.patches_key is not None
        positions, shift = shift_into_frame(positions, side=plan.output_side,
                                            mode=options.shift_positions, has_object=has_object)
        if shift is not None:
            conventions["position_shift_px"] = [shift[0], shift[1]]
        return positions, conventions

    def _object_pixel_size(self, plan: DetectorPlan) -> float | None:
        options = self.options
        if options.object_pixel_size_m is not None:
            return options.object_pixel_size_m
        known = (options.energy_ev, options.detector_distance_m, options.detector_pixel_size_m)
        if options.near_field or any(value is None for value in known):
            return None
        wavelength_m = _wavelength_m(options.energy_ev)
        return far_field_pixel_size_m(wavelength_m, float(options.detector_distance_m or 0),
                                      plan.output_side,
                                      float(options.detector_pixel_size_m or 0) * plan.bin)

    def _source_conventions(self) -> dict[str, Any]:
        options = self.options
        return {
            "importer": "npz",
            "diffraction_key": self.key,
            "layout": "scan-first" if self.layout.scan_first else "scan-last",
            "source_scale": self.scale,
            "source_dtype": str(self.layout.header.dtype),
            "dc_position": options.dc,
            "position_order": "rowcol" if (options.positions_key and
                                           options.position_order == "rowcol") else "xy",
            "position_origin": options.position_origin,
            "position_units": options.position_units,
        }

    def _root_attrs(self, amplitude_scale: str, total: float, plan: DetectorPlan,
                    conventions: dict[str, Any]) -> dict[str, Any]:
        options = self.options
        nphotons = total / self.n_frames if amplitude_scale == "counts" else (
            options.nphotons or metadata_nphotons(self.metadata))
        attrs: dict[str, Any] = {"amplitude_scale": amplitude_scale, "conventions": conventions,
                                 "propagation": "near_field" if options.near_field
                                 else "far_field"}
        if nphotons is not None:
            attrs["nphotons"] = float(nphotons)
        if self.metadata is not None:
            attrs["source_metadata"] = self.metadata
        pixel_size = self._object_pixel_size(plan)
        physical = {
            "energy_ev": options.energy_ev,
            "wavelength_m": _wavelength_m(options.energy_ev) if options.energy_ev else None,
            "detector_distance_m": options.detector_distance_m,
            "detector_pixel_size_m": (options.detector_pixel_size_m * plan.bin
                                      if options.detector_pixel_size_m else None),
            "object_pixel_size_m": pixel_size,
        }
        attrs.update({key: float(value) for key, value in physical.items() if value is not None})
        return attrs


def _wavelength_m(energy_ev: float | None) -> float:
    return HC_EV_M / float(energy_ev or np.nan)
