"""Alignment of a stitched reconstruction to the ground truth before scoring.

Three steps, each reported. First both images are cropped to the scanned region, the area the
stitched crops can reach. Then the reconstruction is registered to the ground truth by a sub-pixel
shift searched only within a bounded range. Last, what the physics cannot determine is removed: a
global amplitude scale (mean matching) and a phase offset or linear phase ramp.

The search range matters: on weakly trained models an unbounded registration picks the highest
peak of a noisy correlation, which can sit tens of pixels away and wreck every metric. Here the
integer peak is searched within ``max_shift_px`` and the sub-pixel refinement
(:func:`skimage.registration.phase_cross_correlation`, upsampled) is kept only within one pixel
of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from ptychozarr.errors import InvalidInputError

__all__ = [
    "DEFAULT_BORDER_PX",
    "DEFAULT_MAX_SHIFT_PX",
    "Alignment",
    "Box",
    "PhaseAlignMethod",
    "align_phase",
    "align_to_ground_truth",
    "crop_region",
    "crop_to_scan",
    "match_amplitude",
    "register_shift",
    "scan_region",
]

logger = logging.getLogger(__name__)

PhaseAlignMethod = Literal["plane", "mean"]

DEFAULT_MAX_SHIFT_PX = 8.0
"""Largest registration shift (pixels) searched along each axis."""

DEFAULT_BORDER_PX = 2
"""Pixels removed from every edge after registration, beyond the shift itself."""

UPSAMPLE_FACTOR = 50
"""Sub-pixel precision of the registration: 1/50 pixel."""


@dataclass(frozen=True)
class Alignment:
    """Placement of the compared region and the shift applied to the reconstruction.

    Attributes
    ----------
    region_xy_px
        Object-frame box ``(x0, x1, y0, y1)`` (half-open, pixels) of the compared images before
        the post-registration border crop.
    shift_dy_px, shift_dx_px
        Shift applied to the reconstruction (rows, columns) to register it to the ground truth;
        0 when registration is skipped.
    border_px
        Pixels removed from every edge after the shift.
    """

    region_xy_px: tuple[int, int, int, int]
    shift_dy_px: float
    shift_dx_px: float
    border_px: int


Box = tuple[int, int, int, int]
"""Object-frame box ``(x0, x1, y0, y1)``, half-open, in pixels."""


def scan_region(min_xy: tuple[float, float], max_xy: tuple[float, float], *, crop_size: int,
                frames: Sequence[tuple[tuple[int, int], tuple[int, ...]]]) -> Box:
    """Return the scanned region shared by several images placed in the object frame.

    Parameters
    ----------
    min_xy, max_xy
        Smallest and largest patch position (x, y), object pixels.
    crop_size
        Side M of the stitched crops: the region reaches M/2 beyond the outermost positions.
    frames
        ``(origin_xy_px, shape)`` of each image: its pixel (0, 0) is object-frame pixel
        ``origin_xy_px`` = (x, y), and ``shape`` is (rows, columns). The ground truth is
        ``((0, 0), ground_truth.shape)``.

    Raises
    ------
    InvalidInputError
        The region shared by all images is smaller than 8×8 pixels.
    """
    half = crop_size / 2
    x0, y0 = math.ceil(min_xy[0] - half), math.ceil(min_xy[1] - half)
    x1, y1 = math.floor(max_xy[0] + half), math.floor(max_xy[1] + half)
    for (origin_x, origin_y), shape in frames:
        x0, y0 = max(x0, origin_x), max(y0, origin_y)
        x1, y1 = min(x1, origin_x + shape[1]), min(y1, origin_y + shape[0])
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise InvalidInputError(
            f"scanned region x [{x0}, {x1}), y [{y0}, {y1}) leaves less than 8x8 pixels shared by "
            f"the images (origin, shape) {list(frames)!r}; check that the positions are in the "
            "ground truth's pixel frame."
        )
    return x0, x1, y0, y1


def crop_region(image: np.ndarray, origin_xy_px: tuple[int, int], box: Box) -> np.ndarray:
    """Return the part of ``image`` (pixel (0, 0) at object-frame ``origin_xy_px``) in ``box``."""
    x0, x1, y0, y1 = box
    origin_x, origin_y = origin_xy_px
    return image[y0 - origin_y:y1 - origin_y, x0 - origin_x:x1 - origin_x]


def crop_to_scan(reconstruction: np.ndarray, reconstruction_origin_xy_px: tuple[int, int],
                 ground_truth: np.ndarray, *, min_xy: tuple[float, float],
                 max_xy: tuple[float, float], crop_size: int) -> tuple[np.ndarray, np.ndarray, Box]:
    """Cut the reconstruction and the ground truth to the scanned region, in one frame.

    Parameters
    ----------
    reconstruction
        (row, col) complex stitched object; its pixel (0, 0) is object-frame pixel
        ``reconstruction_origin_xy_px`` = (x, y).
    ground_truth
        (oy, ox) complex ground-truth object in the object frame (origin (0, 0)).
    min_xy, max_xy
        Smallest and largest patch position (x, y), object pixels.
    crop_size
        Side M of the stitched crops: the region reaches M/2 beyond the outermost positions.

    Returns
    -------
    tuple
        The cropped reconstruction and ground truth, same shape, and the object-frame box
        ``(x0, x1, y0, y1)`` (half-open) they cover.

    Raises
    ------
    InvalidInputError
        The scanned region does not overlap both images.
    """
    box = scan_region(min_xy, max_xy, crop_size=crop_size,
                      frames=[(reconstruction_origin_xy_px, reconstruction.shape),
                              ((0, 0), ground_truth.shape)])
    return (crop_region(reconstruction, reconstruction_origin_xy_px, box),
            crop_region(ground_truth, (0, 0), box), box)


def _bounded_integer_shift(reference: np.ndarray, moving: np.ndarray,
                           max_shift_px: float) -> tuple[int, int]:
    """Return the integer (dy, dx) that best registers ``moving`` to ``reference``, bounded."""
    correlation = np.real(np.fft.ifft2(np.fft.fft2(reference) * np.conj(np.fft.fft2(moving))))

    rows, cols = correlation.shape
    shift_y = np.fft.fftfreq(rows, 1.0 / rows)
    shift_x = np.fft.fftfreq(cols, 1.0 / cols)
    allowed = np.abs(shift_y)[:, None] <= max_shift_px
    allowed = allowed & (np.abs(shift_x)[None, :] <= max_shift_px)
    correlation[~allowed] = -np.inf
    peak_row, peak_col = np.unravel_index(np.argmax(correlation), correlation.shape)
    return int(shift_y[peak_row]), int(shift_x[peak_col])


def register_shift(reference: np.ndarray, moving: np.ndarray, *,
                   max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
                   upsample_factor: int = UPSAMPLE_FACTOR) -> tuple[float, float]:
    """Find the sub-pixel shift (dy, dx) that registers ``moving`` to ``reference``.

    Both images lose their mean and are tapered by a Hann window, so their edges (the images
    are not periodic) do not dominate the correlation. The integer peak of the cross-correlation
    is searched within ``max_shift_px``; the upsampled refinement of
    :func:`skimage.registration.phase_cross_correlation` is kept only when it lies within one
    pixel of that peak.

    Parameters
    ----------
    reference, moving
        (row, col) real images of the same shape, for example amplitudes.
    max_shift_px
        Largest shift searched along each axis.
    upsample_factor
        Sub-pixel precision 1/``upsample_factor`` of the refinement.

    Returns
    -------
    tuple of float
        (dy, dx) in pixels: ``scipy.ndimage.shift(moving, (dy, dx))`` matches ``reference``.
    """
    if reference.shape != moving.shape:
        raise InvalidInputError(
            f"registration: reference {reference.shape!r} and moving {moving.shape!r} differ in "
            "shape; crop both to the same region first."
        )
    taper = np.outer(np.hanning(reference.shape[0]), np.hanning(reference.shape[1]))
    reference = (reference - reference.mean()) * taper
    moving = (moving - moving.mean()) * taper
    dy, dx = _bounded_integer_shift(reference, moving, max_shift_px)

    refined, _, _ = phase_cross_correlation(reference, moving, upsample_factor=upsample_factor,
                                            normalization=None)
    if max(abs(refined[0] - dy), abs(refined[1] - dx)) > 1.0:
        logger.debug("Sub-pixel refinement %s is far from the bounded peak (%d, %d); keeping "
                     "the integer shift", refined, dy, dx)
        return float(dy), float(dx)
    return float(refined[0]), float(refined[1])


def match_amplitude(amplitude: np.ndarray, reference_amplitude: np.ndarray) -> np.ndarray:
    """Scale ``amplitude`` so its mean equals the mean of ``reference_amplitude``."""
    mean = float(np.mean(amplitude))
    if mean == 0.0:
        return amplitude
    return amplitude * (float(np.mean(reference_amplitude)) / mean)


def align_phase(phase: np.ndarray, *, method: PhaseAlignMethod = "plane") -> np.ndarray:
    """Remove a phase offset (``"mean"``) or a least-squares plane a·x + b·y + c (``"plane"``).

    Parameters
    ----------
    phase
        (row, col) phase in radians; not unwrapped.
    method
        ``"plane"`` removes a linear ramp and an offset, ``"mean"`` the offset only.
    """
    if method == "mean":
        return phase - phase.mean()
    if method != "plane":
        raise InvalidInputError(
            f"phase align method {method!r} is invalid; use 'plane' or 'mean'."
        )
    rows, cols = np.indices(phase.shape)
    design = np.column_stack([cols.ravel(), rows.ravel(), np.ones(phase.size)])
    coefficients, *_ = np.linalg.lstsq(design, phase.ravel(), rcond=None)
    return phase - (design @ coefficients).reshape(phase.shape)


def align_to_ground_truth(reconstruction: np.ndarray, ground_truth: np.ndarray, *,
                          register: bool = True, max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
                          border_px: int = DEFAULT_BORDER_PX,
                          shift: tuple[float, float] | None = None, trim_px: int | None = None,
                          region_xy_px: Box = (0, 0, 0, 0),
                          ) -> tuple[np.ndarray, np.ndarray, Alignment]:
    """Register a cropped reconstruction to the cropped ground truth and trim the borders.

    Parameters
    ----------
    reconstruction, ground_truth
        (row, col) complex images of the same shape (see :func:`crop_to_scan`).
    register
        Find and apply the sub-pixel shift of the amplitudes; ``False`` keeps the images as
        they are (only the border is trimmed).
    max_shift_px
        Largest shift searched along each axis.
    border_px
        Pixels removed from every edge, beyond the shift's own extent (the Fourier shift wraps
        content around the edges).
    shift
        (dy, dx) to apply instead of registering, for example one found earlier with
        :func:`register_shift`.
    trim_px
        Pixels removed from every edge instead of ``border_px`` plus the shift's extent; several
        reconstructions scored against one ground truth use the same trim to share a region.
    region_xy_px
        Object-frame box of the inputs, recorded in the returned :class:`Alignment`.

    Returns
    -------
    tuple
        The aligned reconstruction and ground truth (complex64, same shape) and the
        :class:`Alignment`.
    """
    if shift is None and register:
        shift = register_shift(np.abs(ground_truth), np.abs(reconstruction),
                               max_shift_px=max_shift_px)
    dy, dx = shift if shift is not None else (0.0, 0.0)
    aligned = reconstruction
    if (dy, dx) != (0.0, 0.0):
        aligned = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(reconstruction), (dy, dx)))
        logger.info("Registration shift (dy, dx) = (%.2f, %.2f) px", dy, dx)

    trim = border_px + math.ceil(max(abs(dy), abs(dx))) if trim_px is None else trim_px
    if 2 * trim >= min(reconstruction.shape) - 7:
        raise InvalidInputError(
            f"images of shape {reconstruction.shape!r} are too small for a border crop of {trim} "
            "px; lower --border-crop or the shift bound, or score a larger region."
        )
    window = (slice(trim, -trim or None), slice(trim, -trim or None))
    alignment = Alignment(region_xy_px=region_xy_px, shift_dy_px=float(dy), shift_dx_px=float(dx),
                          border_px=trim)
    return (aligned[window].astype(np.complex64), ground_truth[window].astype(np.complex64),
            alignment)
