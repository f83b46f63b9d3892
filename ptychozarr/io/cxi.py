"""Importer of CXI 1.6 (HDF5) ptychography files.

Read from the first ``entry_*`` group:

- ``instrument_1/detector_1/data`` (or ``data_1/data``), (M, ky, kx) photon counts, streamed in
  slabs; ``instrument_1/detector_1/mask`` (nonzero = bad pixel) becomes ``mask`` (true = valid);
- ``sample_1/geometry_1/translation`` (or ``data_1/translation``), (M, 3) sample translations in
  metres in the CXI laboratory frame (z along the beam, y up);
- ``instrument_1/source_1/energy`` in joules (stored as ``energy_ev``), ``wavelength`` in metres
  (computed from the energy when absent), ``detector_1/distance`` and ``x_pixel_size``/
  ``y_pixel_size`` in metres.

Axis mapping: the beam position on the sample is minus the sample translation, so by default
x (column) = -translation_x and y (row) = -translation_y. ``flip_x``/``flip_y`` negate an axis
and ``swap_xy`` exchanges them (applied after the flips), for instruments whose stages or
detector read differently. In far field the positions become object pixels of size
lambda * z / (N * p), shifted so that the scan starts at the object frame's corner
(``shift_positions="no"`` keeps the stage origin). With ``near_field`` they stay in metres.
"""

from __future__ import annotations

import logging
from typing import Any

import h5py
import numpy as np

from ptychozarr.errors import InvalidInputError, MissingKeyError
from ptychozarr.io.detector import DetectorPlan, parse_center
from ptychozarr.io.frames import (
    ArrayFrames,
    FrameTransform,
    ProgressCallback,
    mean_intensity,
    stream_frames,
)
from ptychozarr.io.geometry import (
    ELECTRONVOLT_J,
    HC_EV_M,
    Positions,
    far_field_pixel_size_m,
    physical_metadata,
    shift_into_frame,
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

__all__ = ["CxiImporter"]

logger = logging.getLogger(__name__)

PIXEL_SIZE_TOLERANCE = 1e-6
"""Relative difference below which x and y detector pixel sizes count as equal."""


class CxiImporter:
    """Convert a CXI file into a dataset store."""

    converter = "cxi"

    def __init__(self, path: str, file: h5py.File, options: ConvertOptions) -> None:
        self.path = path
        self.file = file
        self.options = options

    # Checks before writing --------------------------------------------------------------------

    def check(self) -> None:
        """Validate paths, shapes and metadata; raise before anything is written."""
        self.entry = self._entry()
        self.data_path = self._first_present("detector data", [
            f"{self.entry}/instrument_1/detector_1/data", f"{self.entry}/data_1/data"])
        data = self._dataset(self.data_path)
        if data.ndim != 3 or data.size == 0:
            raise InvalidInputError(
                f"{self._where}: detector data have shape {data.shape!r}; a non-empty stack "
                "(M, ky, kx) is expected."
            )
        if data.dtype.kind not in "uif":
            raise InvalidInputError(
                f"{self._where}: detector data have dtype {str(data.dtype)!r}; real photon "
                "counts are expected (store the modulus of complex data)."
            )
        self.data = data
        self.scale = "amplitude" if self.options.scale == "amplitude" else "intensity"
        self.translation = self._translation(data.shape[0])
        self.mask = self._mask(data.shape[1:])
        self.metadata = self._physical()
        parse_center(self.options.center)
        if data.shape[1] != data.shape[2] and self.options.crop is None:
            DetectorPlan.build((data.shape[1], data.shape[2]), where=self._where)
        if not self.options.near_field:
            self._far_field_inputs()

    @property
    def _where(self) -> str:
        return f"{self.path}: {self.data_path!r}"

    def _entry(self) -> str:
        entries = sorted(name for name in self.file if name.startswith("entry"))
        if not entries:
            raise MissingKeyError(
                f"{self.path}: no 'entry_1' group; this HDF5 file is not a CXI file (top-level "
                f"names: {sorted(self.file)!r}). Write the data in the CXI 1.6 layout."
            )
        return entries[0]

    def _first_present(self, what: str, candidates: list[str]) -> str:
        for candidate in candidates:
            if candidate in self.file:
                return candidate
        raise MissingKeyError(
            f"{self.path}: {what} not found; looked for {candidates!r}. Write the data in the "
            "CXI 1.6 layout."
        )

    def _dataset(self, path: str) -> h5py.Dataset:
        node = self.file[path]
        if not isinstance(node, h5py.Dataset):
            raise InvalidInputError(f"{self.path}: {path!r} is a group, not a dataset.")
        return node

    def _scalar(self, path: str) -> float | None:
        full = f"{self.entry}/{path}"
        if full not in self.file:
            return None
        value = np.asarray(self._dataset(full)[()]).ravel()
        if not value.size or value.dtype.kind not in "iuf":
            return None
        # The shortest decimal of a float32 value, so 1.12 stays 1.12 and not 1.1200000047683716.
        return float(str(value[0])) if value.dtype == np.float32 else float(value[0])

    def _translation(self, n_frames: int) -> np.ndarray:
        path = self._first_present("sample translations", [
            f"{self.entry}/sample_1/geometry_1/translation", f"{self.entry}/data_1/translation"])
        values = np.asarray(self._dataset(path)[()], dtype=np.float64)
        if values.ndim != 2 or values.shape[1] not in (2, 3):
            raise InvalidInputError(
                f"{self.path}: {path!r} has shape {values.shape!r}; (M, 3) translations in "
                "metres are expected."
            )
        if values.shape[0] != n_frames:
            raise InvalidInputError(
                f"{self.path}: {path!r} has {values.shape[0]} translations but the detector data "
                f"have {n_frames} frames; both need one entry per pattern."
            )
        if not np.isfinite(values).all():
            raise InvalidInputError(f"{self.path}: {path!r} contains NaN or infinite values; "
                                    "every translation must be finite. Repair the translations, "
                                    "or remove those frames.")
        return values

    def _mask(self, frame_shape: tuple[int, ...]) -> np.ndarray | None:
        path = f"{self.entry}/instrument_1/detector_1/mask"
        if path not in self.file:
            return None
        bad = np.asarray(self._dataset(path)[()])
        if bad.shape != tuple(frame_shape):
            raise InvalidInputError(
                f"{self.path}: {path!r} has shape {bad.shape!r} but frames are "
                f"{tuple(frame_shape)!r}; the mask must match one frame."
            )
        return np.asarray(bad == 0)

    def _physical(self) -> dict[str, float | None]:
        options = self.options
        energy_j = self._scalar("instrument_1/source_1/energy")
        energy_ev = options.energy_ev or (energy_j / ELECTRONVOLT_J if energy_j else None)
        wavelength_m = self._scalar("instrument_1/source_1/wavelength")
        if options.energy_ev or wavelength_m is None:
            wavelength_m = HC_EV_M / energy_ev if energy_ev else None
        pixel_x = self._scalar("instrument_1/detector_1/x_pixel_size")
        pixel_y = self._scalar("instrument_1/detector_1/y_pixel_size")
        return {
            "energy_ev": energy_ev,
            "wavelength_m": wavelength_m,
            "detector_distance_m": (options.detector_distance_m
                                    or self._scalar("instrument_1/detector_1/distance")),
            "pixel_x_m": options.detector_pixel_size_m or pixel_x,
            "pixel_y_m": options.detector_pixel_size_m or pixel_y or pixel_x,
        }

    def _far_field_inputs(self) -> None:
        if self.options.object_pixel_size_m is not None:
            return
        needed = ("wavelength_m", "detector_distance_m", "pixel_x_m")
        missing = [name for name in needed if not self.metadata.get(name)]
        if missing:
            raise InvalidInputError(
                f"{self.path}: far-field positions need the wavelength, detector distance and "
                f"pixel size, but {missing!r} are missing from the file. Pass --energy-ev, "
                "--detector-distance-m and --detector-pixel-size-m (or --object-pixel-size-m), "
                "or --near-field for near-field data."
            )
        pixel_x, pixel_y = self.metadata["pixel_x_m"] or 0.0, self.metadata["pixel_y_m"] or 0.0
        if abs(pixel_x - pixel_y) > PIXEL_SIZE_TOLERANCE * pixel_x:
            raise InvalidInputError(
                f"{self.path}: detector pixels are {pixel_x!r} x {pixel_y!r} m; far-field "
                "conversion needs square pixels. Pass --detector-pixel-size-m to override."
            )

    # Writing ----------------------------------------------------------------------------------

    def write(self, writer: StoreWriter, *,
              progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Write every array into ``writer`` and return the root attributes to set."""
        reader = ArrayFrames(self._where, self.data)
        transform = FrameTransform(self.scale, False, DetectorPlan(reader.frame_shape))
        plan = self._plan(reader, transform)
        transform = FrameTransform(self.scale, False, plan)
        side = plan.output_side
        chunk_frames = self.options.chunk_frames or default_chunk_frames((side, side), "float32")

        pixel_size = self._object_pixel_size(plan)
        positions, shift = self._positions(pixel_size, side)
        amplitude_scale = "counts" if self.scale == "intensity" else "arbitrary"
        create_per_scan(writer, "diffraction", (reader.n_frames, side, side),
                        chunk_frames=chunk_frames,
                        coordinates=coordinate_names(positions, has_scan_index=False),
                        attrs={"amplitude_scale": amplitude_scale},
                        units=DIFFRACTION_UNITS[amplitude_scale])
        total = stream_frames(writer, "diffraction", reader, transform, values=self.scale,
                              progress=progress)
        write_positions(writer, positions, chunk_frames=chunk_frames)
        if self.mask is not None or plan.needs_mask:
            valid = self.mask if self.mask is not None else np.ones(plan.input_shape, bool)
            write_small(writer, "mask", plan.apply_mask(valid))

        conventions = self._conventions(plan, shift)
        return self._root_attrs(amplitude_scale, total / reader.n_frames, plan, pixel_size,
                                conventions)

    def _plan(self, reader: ArrayFrames, transform: FrameTransform) -> DetectorPlan:
        options = self.options
        center = parse_center(options.center)
        mean = None
        if options.crop is not None and center is None:
            mean = mean_intensity(reader, transform, frames_per_slab=256)
        return DetectorPlan.build(reader.frame_shape, crop=options.crop, center=center,
                                  bin=options.bin, pad=options.pad, mean_intensity=mean,
                                  where=self._where)

    def _object_pixel_size(self, plan: DetectorPlan) -> float | None:
        if self.options.near_field:
            return None
        if self.options.object_pixel_size_m is not None:
            return self.options.object_pixel_size_m
        return far_field_pixel_size_m(float(self.metadata["wavelength_m"] or 0),
                                      float(self.metadata["detector_distance_m"] or 0),
                                      plan.output_side,
                                      float(self.metadata["pixel_x_m"] or 0) * plan.bin)

    def _positions(self, pixel_size: float | None,
                   side: int) -> tuple[Positions, tuple[float, float] | None]:
        x = -self.translation[:, 0]
        y = -self.translation[:, 1]
        if self.options.flip_x:
            x = -x
        if self.options.flip_y:
            y = -y
        if self.options.swap_xy:
            x, y = y, x
        if pixel_size is None:
            return Positions(x, y, "m"), None
        positions = Positions(x / pixel_size, y / pixel_size, "pixel")
        # Stage coordinates have an arbitrary origin, so "auto" always moves the scan to the
        # object frame's corner.
        mode = "yes" if self.options.shift_positions == "auto" else self.options.shift_positions
        return shift_into_frame(positions, side=side, mode=mode, has_object=False)

    def _conventions(self, plan: DetectorPlan,
                     shift: tuple[float, float] | None) -> dict[str, Any]:
        options = self.options
        mapping = "x = -translation_x, y = -translation_y"
        conventions: dict[str, Any] = {
            "importer": "cxi",
            "data_path": self.data_path,
            "source_scale": self.scale,
            "source_dtype": str(self.data.dtype),
            "dc_position": "center",
            "axis_mapping": mapping,
            "flip_x": options.flip_x, "flip_y": options.flip_y, "swap_xy": options.swap_xy,
            "position_units": "m" if options.near_field else "pixel",
            "mask": "nonzero CXI mask values are invalid pixels",
            "detector": plan.describe(),
        }
        if shift is not None:
            conventions["position_shift_px"] = [shift[0], shift[1]]
        return conventions

    def _root_attrs(self, amplitude_scale: str, mean_total: float, plan: DetectorPlan,
                    pixel_size: float | None, conventions: dict[str, Any]) -> dict[str, Any]:
        options = self.options
        nphotons = mean_total if amplitude_scale == "counts" else options.nphotons
        pixel = self.metadata["pixel_x_m"]
        attrs: dict[str, Any] = {
            "amplitude_scale": amplitude_scale,
            "conventions": conventions,
            **physical_metadata(
                energy_ev=self.metadata["energy_ev"],
                wavelength_m=self.metadata["wavelength_m"],
                detector_distance_m=self.metadata["detector_distance_m"],
                detector_pixel_size_m=pixel * plan.bin if pixel else None,
                object_pixel_size_m=pixel_size,
                propagation="near_field" if options.near_field else "far_field",
                nphotons=nphotons,
            ),
        }
        return attrs
