"""Physical constants, far-field sampling and the placement of scan positions in the object frame.

Stored positions are patch centres, x = column and y = row. In object pixels they are shifted, when
needed, into the non-negative object frame, where the patch of side N at (x, y) covers
``obj[y - N/2 : y + N/2, x - N/2 : x + N/2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ptychozarr.errors import InvalidInputError

__all__ = [
    "ELECTRONVOLT_J",
    "HC_EV_M",
    "Positions",
    "far_field_pixel_size_m",
    "physical_metadata",
    "shift_into_frame",
]

ELECTRONVOLT_J = 1.602176634e-19
"""One electronvolt in joules (exact, SI 2019)."""

HC_EV_M = 1.239841984e-6
"""Planck constant times the speed of light, in eV m: wavelength_m = HC_EV_M / energy_ev."""


def far_field_pixel_size_m(wavelength_m: float, distance_m: float, side: int,
                           detector_pixel_size_m: float) -> float:
    """Return the object pixel size lambda * z / (N * p) of far-field data, in metres."""
    return wavelength_m * distance_m / (side * detector_pixel_size_m)


def physical_metadata(**values: Any) -> dict[str, Any]:
    """Return the known physical metadata (``energy_ev=...``), dropping unknown (None) values."""
    return {key: (float(value) if isinstance(value, (int, float, np.floating)) else value)
            for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Positions:
    """Scan positions of all patterns: measured and, when known, nominal.

    Arrays have shape (scan,), dtype float64, in ``units`` (``"pixel"`` or ``"m"``).
    """

    x: np.ndarray
    y: np.ndarray
    units: str
    x_start: np.ndarray | None = None
    y_start: np.ndarray | None = None

    def map(self, function: Any) -> Positions:
        """Apply ``function(x, y) -> (x, y)`` to measured and nominal positions alike."""
        x, y = function(self.x, self.y)
        if self.x_start is None or self.y_start is None:
            return replace(self, x=x, y=y)
        x_start, y_start = function(self.x_start, self.y_start)
        return replace(self, x=x, y=y, x_start=x_start, y_start=y_start)

    def scaled(self, sx: float, sy: float) -> Positions:
        """Multiply x by ``sx`` and y by ``sy``."""
        return self.map(lambda x, y: (x * sx, y * sy))

    def shifted(self, dx: float, dy: float) -> Positions:
        """Add ``(dx, dy)`` to every position."""
        return self.map(lambda x, y: (x + dx, y + dy))

    def all_x(self) -> np.ndarray:
        """Measured and nominal x together."""
        return self.x if self.x_start is None else np.concatenate([self.x, self.x_start])

    def all_y(self) -> np.ndarray:
        """Measured and nominal y together."""
        return self.y if self.y_start is None else np.concatenate([self.y, self.y_start])

    def check_finite(self, where: str) -> None:
        """Raise :class:`InvalidInputError` when a position is NaN or infinite."""
        for name, values in (("x", self.all_x()), ("y", self.all_y())):
            if not np.isfinite(values).all():
                index = int(np.argmin(np.isfinite(values)))
                raise InvalidInputError(
                    f"{where}: position {name} at index {index} is {values[index]!r}; every "
                    "position must be finite. Remove those patterns or repair the positions."
                )


def shift_into_frame(positions: Positions, *, side: int, mode: str,
                     has_object: bool) -> tuple[Positions, tuple[float, float] | None]:
    """Shift positions in object pixels so that every patch starts at or after pixel 0.

    Parameters
    ----------
    positions
        Patch centres in object pixels.
    side
        Patch side N in object pixels.
    mode
        ``"yes"`` always shifts the smallest patch start to 0, ``"no"`` never shifts, ``"auto"``
        shifts when some patch starts below 0 and there is no object the positions refer to.
    has_object
        The input has an object (or object patches) aligned with the positions as given.

    Returns
    -------
    tuple
        The positions and the applied shift ``(dx, dy)`` in pixels, or ``None`` when unshifted.
    """
    if positions.units != "pixel" or mode == "no":
        return positions, None
    start_x = float(positions.all_x().min()) - side / 2
    start_y = float(positions.all_y().min()) - side / 2
    if mode == "auto" and (has_object or min(start_x, start_y) >= 0):
        return positions, None
    shift = (-start_x, -start_y)
    return positions.shifted(*shift), shift
