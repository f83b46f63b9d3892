"""Options of a conversion, validated once and recorded in the store's provenance."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ptychozarr.errors import InvalidInputError

__all__ = ["FORMATS", "PRESETS", "ConvertOptions"]

FORMATS = ("auto", "npz", "grouped", "cxi")
SCALES = ("auto", "amplitude", "intensity")
LAYOUTS = ("auto", "scan-first", "scan-last")
DC_POSITIONS = ("center", "corner")
POSITION_ORDERS = ("xy", "rowcol")
POSITION_ORIGINS = ("center", "corner")
POSITION_UNITS = ("pixel", "m")
SHIFT_CHOICES = ("auto", "yes", "no")

PRESETS: Mapping[str, Mapping[str, Any]] = {
    # tike's ptychography files: photon counts in unshifted FFT order, scan positions as
    # [row, col] of each patch's top-left corner, in object pixels.
    "tike": {
        "diffraction_key": "data", "positions_key": "scan", "probe_key": "probe",
        "scale": "intensity", "dc": "corner", "position_order": "rowcol",
        "position_origin": "corner", "position_units": "pixel",
    },
}
"""Convention sets of other tools, applied by :meth:`ConvertOptions.from_preset`."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInputError(message)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{name}: invalid value {value!r}; use one of {choices!r}.")


def _positive(name: str, value: float | None) -> None:
    _require(value is None or value > 0,
             f"{name}: invalid value {value!r}; use a positive number or leave it unset.")


@dataclass(frozen=True)
class ConvertOptions:
    """How an input file maps into a dataset store.

    Attributes
    ----------
    format
        ``"auto"`` (detect from the file), ``"npz"`` (raw layout, any key names and
        conventions), ``"grouped"`` (PtychoPINN model-ready NPZ) or ``"cxi"`` (CXI 1.6 / HDF5).
    scale
        What the diffraction array contains: ``"amplitude"``, ``"intensity"`` (photon counts; the
        store gets their square root, computed in float64) or ``"auto"`` (float NPZ data are
        amplitudes, CXI data are intensities; integer NPZ data need an explicit choice).
    layout
        Axis order of NPZ diffraction: ``"scan-first"`` (M, N, N), ``"scan-last"`` (N, N, M, the
        legacy layout) or ``"auto"`` (the axis whose length matches the number of positions).
    diffraction_key, x_key, y_key, positions_key, probe_key, object_key
        NPZ key names; ``None`` means the PtychoPINN names (``diffraction`` or ``diff3d``,
        ``xcoords``, ``ycoords``, ``probeGuess``, ``objectGuess``). ``positions_key`` names one
        (M, 2) array instead of separate x and y keys.
    dc
        Where the zero frequency of each NPZ pattern lies: ``"center"`` or ``"corner"``
        (unshifted FFT order; ``fftshift`` is applied).
    position_order
        Column order of ``positions_key``: ``"xy"`` (x = column first) or ``"rowcol"``.
    position_origin
        Whether NPZ positions mark each patch's ``"center"`` or its top-left ``"corner"``.
    position_units
        Units of NPZ positions: ``"pixel"`` (object pixels) or ``"m"``.
    shift_positions
        Translate positions in object pixels so that every patch lies in the non-negative object
        frame: ``"auto"`` (when a patch would start below 0 and the file has no object),
        ``"yes"`` or ``"no"``.
    crop, center, bin, pad
        Detector preparation, in this order: crop to ``crop`` x ``crop`` pixels around
        ``center`` (``"auto"`` = intensity centroid of the mean pattern, or ``"ROW,COL"``), sum
        ``bin`` x ``bin`` blocks, zero-pad to ``pad`` x ``pad`` pixels.
    near_field
        The data are near-field (Fresnel): positions stay in metres.
    flip_x, flip_y, swap_xy
        Changes to the default mapping of CXI sample translations to object axes.
    energy_ev, detector_distance_m, detector_pixel_size_m, object_pixel_size_m
        Physical metadata given by the user; they take precedence over the file's values.
    nphotons
        Mean total photon count per pattern, when the data are not counts.
    group_name
        Name of the grouped view made from a grouped NPZ (default ``imported-g<G>-n<B>``).
    allow_pickle
        Unpickle object arrays without restriction (trusted files only).
    chunk_frames
        Frames per stored chunk along ``scan`` (default: about 8 MiB per chunk).
    """

    format: str = "auto"
    scale: str = "auto"
    layout: str = "auto"
    diffraction_key: str | None = None
    x_key: str | None = None
    y_key: str | None = None
    positions_key: str | None = None
    probe_key: str | None = None
    object_key: str | None = None
    dc: str = "center"
    position_order: str = "xy"
    position_origin: str = "center"
    position_units: str = "pixel"
    shift_positions: str = "auto"
    crop: int | None = None
    center: str = "auto"
    bin: int = 1
    pad: int | None = None
    near_field: bool = False
    flip_x: bool = False
    flip_y: bool = False
    swap_xy: bool = False
    energy_ev: float | None = None
    detector_distance_m: float | None = None
    detector_pixel_size_m: float | None = None
    object_pixel_size_m: float | None = None
    nphotons: float | None = None
    group_name: str | None = None
    allow_pickle: bool = False
    chunk_frames: int | None = None

    def __post_init__(self) -> None:
        _choice("format", self.format, FORMATS)
        _choice("scale", self.scale, SCALES)
        _choice("layout", self.layout, LAYOUTS)
        _choice("dc", self.dc, DC_POSITIONS)
        _choice("position_order", self.position_order, POSITION_ORDERS)
        _choice("position_origin", self.position_origin, POSITION_ORIGINS)
        _choice("position_units", self.position_units, POSITION_UNITS)
        _choice("shift_positions", self.shift_positions, SHIFT_CHOICES)
        _require(self.positions_key is None or (self.x_key is None and self.y_key is None),
                 "positions_key: give either positions_key or x_key/y_key, not both.")
        for name in ("crop", "pad", "chunk_frames"):
            value = getattr(self, name)
            _require(value is None or value >= 1,
                     f"{name}: invalid value {value!r}; use a positive integer.")
        _require(self.bin >= 1, f"bin: invalid value {self.bin!r}; use an integer >= 1.")
        for name in ("energy_ev", "detector_distance_m", "detector_pixel_size_m",
                     "object_pixel_size_m", "nphotons"):
            _positive(name, getattr(self, name))

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> ConvertOptions:
        """Build options from a named convention set of :data:`PRESETS` plus ``overrides``."""
        _require(preset in PRESETS,
                 f"preset: unknown preset {preset!r}; known presets: {sorted(PRESETS)!r}.")
        return cls.from_dict({**PRESETS[preset], **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ConvertOptions:
        """Build options from a dictionary, rejecting unknown names."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        _require(not unknown,
                 f"convert: unknown option(s) {unknown!r}. Valid options: {sorted(known)!r}.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON dictionary."""
        return dataclasses.asdict(self)

    def changed(self) -> dict[str, Any]:
        """Return only the options that differ from their defaults (for provenance)."""
        default = ConvertOptions()
        return {key: value for key, value in self.to_dict().items()
                if getattr(default, key) != value}
