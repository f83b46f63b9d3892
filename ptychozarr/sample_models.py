"""Generators of simulated objects, probes and scan positions.

Objects are complex transmission functions (oy, ox) complex64. Probes are (N, N) complex64 on the
object pixel grid. Positions are (scan, 2) float64 patch centres ``(x, y)`` in object pixels.
Every random draw takes a :class:`numpy.random.Generator`, so one seed fixes the whole dataset.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.signal import windows

from ptychozarr.errors import (
    InputFileError,
    InputFileNotFoundError,
    InvalidInputError,
    MissingKeyError,
)

__all__ = [
    "LINES_COUNT",
    "complex_object",
    "default_probe",
    "fermat_spiral_positions",
    "gaussian_probe",
    "gaussian_random_field",
    "image_pattern",
    "load_npz_arrays",
    "load_positions",
    "load_probe",
    "random_lines",
    "random_positions",
    "raster_positions",
    "scan_box",
]

LINES_COUNT = 400
"""Number of random straight lines drawn by :func:`random_lines`."""

GRF_POWER_EXPONENT = 0.4
"""The Gaussian random field has power spectrum ``k**-GRF_POWER_EXPONENT``."""

PathLike = str | os.PathLike[str]


# Patterns: real fields in [0, 1] that become amplitude and phase --------------------------------


def _normalise(field: np.ndarray) -> np.ndarray:
    """Scale ``field`` linearly to [0, 1] (a constant field becomes all ones)."""
    low, high = float(field.min()), float(field.max())
    if high <= low:
        return np.ones_like(field, dtype=np.float64)
    return (field - low) / (high - low)


def random_lines(size_px: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a pattern of blurred random lines, scaled to [0, 1].

    :data:`LINES_COUNT` straight one-pixel lines with uniform random end points are drawn on a
    canvas of twice the requested side. The canvas is blurred as
    ``g(1) + 2 g(5) + 5 g(10)`` (``g(s)``: Gaussian filter of standard deviation ``s`` pixels) and
    its central ``size_px`` square is kept, so lines cross the border without ending there.

    Returns
    -------
    np.ndarray
        (size_px, size_px) float64 in [0, 1].
    """
    side = 2 * size_px
    canvas = np.zeros((side, side), np.float64)
    ends = rng.uniform(0, side - 1, size=(LINES_COUNT, 4))
    for x0, y0, x1, y1 in ends:
        steps = math.ceil(max(abs(x1 - x0), abs(y1 - y0))) + 1
        rows = np.rint(np.linspace(y0, y1, steps)).astype(np.intp)
        columns = np.rint(np.linspace(x0, x1, steps)).astype(np.intp)
        canvas[rows, columns] = 1.0

    blurred = (ndimage.gaussian_filter(canvas, 1) + 2 * ndimage.gaussian_filter(canvas, 5)
               + 5 * ndimage.gaussian_filter(canvas, 10))
    start = size_px // 2
    return _normalise(blurred[start:start + size_px, start:start + size_px])


def gaussian_random_field(size_px: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a Gaussian random field with a power-law spectrum, scaled to [0, 1].

    White noise is filtered in Fourier space to the power spectrum ``k**-GRF_POWER_EXPONENT``
    and then smoothed with a Gaussian of standard deviation one pixel.

    Returns
    -------
    np.ndarray
        (size_px, size_px) float64 in [0, 1].
    """
    noise = rng.standard_normal((size_px, size_px))
    frequencies = np.fft.fftfreq(size_px)
    radius = np.hypot(frequencies[:, None], frequencies[None, :])
    radius[0, 0] = np.inf
    amplitude_filter = radius ** (-GRF_POWER_EXPONENT / 2)
    field = np.fft.ifft2(np.fft.fft2(noise) * amplitude_filter).real
    return _normalise(ndimage.gaussian_filter(field, 1))


def image_pattern(path: PathLike) -> np.ndarray:
    """Read an image file as a grey-level pattern scaled to [0, 1].

    Parameters
    ----------
    path
        PNG, JPEG or TIFF file (colour images are converted to grey), or a ``.npy`` file
        holding a real 2-D array.

    Returns
    -------
    np.ndarray
        (oy, ox) float64 in [0, 1].
    """
    source = _existing(path, "object image")
    try:
        if source.suffix == ".npy":
            image = np.load(source, allow_pickle=False)
        else:
            from skimage import color, io

            image = io.imread(source)
            if image.ndim == 3:
                image = color.rgb2gray(image[..., :3]) if image.shape[-1] >= 3 else image[..., 0]
    except (OSError, ValueError) as error:
        raise InputFileError(f"{source}: cannot read the object image ({error}). Use a PNG, "
                             "JPEG, TIFF or .npy file.") from error
    if image.ndim != 2 or np.iscomplexobj(image):
        raise InvalidInputError(
            f"{source}: object image has shape {image.shape!r} and dtype {str(image.dtype)!r}; "
            "expected a real 2-D array. Use a grey-level image, or --object npz for a complex "
            "object."
        )
    return _normalise(np.asarray(image, dtype=np.float64))


def complex_object(amplitude_pattern: np.ndarray, phase_pattern: np.ndarray, *,
                   amplitude_range: tuple[float, float],
                   phase_range_rad: tuple[float, float]) -> np.ndarray:
    """Map two [0, 1] patterns to a complex object.

    Returns
    -------
    np.ndarray
        (oy, ox) complex64: ``a * exp(i * phi)`` with ``a`` spanning ``amplitude_range`` and
        ``phi`` spanning ``phase_range_rad`` (radians).
    """
    amplitude = amplitude_range[0] + (amplitude_range[1] - amplitude_range[0]) * amplitude_pattern
    phase = phase_range_rad[0] + (phase_range_rad[1] - phase_range_rad[0]) * phase_pattern
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


# Probes ---------------------------------------------------------------------------------------


def default_probe(n: int) -> np.ndarray:
    """Build the default probe: a smoothed disk, real-valued.

    The outer product of two Gaussian windows of length N and standard deviation
    ``N / (0.7 pi**2)`` is thresholded at 0.5, which gives a disk of radius about ``1.18 * std``
    (about 11 pixels at N = 64). The disk is smoothed with a Gaussian of standard deviation one
    pixel, and 1e-9 is added so that no pixel is exactly zero.

    Returns
    -------
    np.ndarray
        (n, n) complex64 with zero imaginary part.
    """
    window = windows.gaussian(n, n / (0.7 * math.pi**2))
    disk = (np.outer(window, window) > 0.5).astype(np.float64)
    return (ndimage.gaussian_filter(disk, 1) + 1e-9).astype(np.complex64)


def gaussian_probe(n: int, sigma_px: float) -> np.ndarray:
    """Build a real Gaussian probe ``exp(-r**2 / (2 sigma**2))`` centred at ``(n/2, n/2)``.

    Returns
    -------
    np.ndarray
        (n, n) complex64 with zero imaginary part.
    """
    rows, columns = np.mgrid[:n, :n] - n / 2
    return np.exp(-(rows**2 + columns**2) / (2 * sigma_px**2)).astype(np.complex64)


def load_probe(path: PathLike) -> np.ndarray:
    """Read a probe from ``.npy`` (a square 2-D array) or ``.npz`` (key ``probeGuess``).

    Returns
    -------
    np.ndarray
        (N, N) complex64.
    """
    source = _existing(path, "probe file")
    if source.suffix == ".npz":
        probe = load_npz_arrays(source, ("probeGuess",))["probeGuess"]
    else:
        probe = _load_npy(source)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or probe.shape[0] % 2:
        raise InvalidInputError(
            f"{source}: probe has shape {probe.shape!r}; expected a square (N, N) array with N "
            "even. Crop or pad the probe to N x N."
        )
    if not np.all(np.isfinite(probe)):
        raise InvalidInputError(f"{source}: the probe contains NaN or infinite values. Repair "
                                "it, or simulate with a generated probe (--probe disk).")
    return probe.astype(np.complex64)


# Positions ------------------------------------------------------------------------------------


def scan_box(object_shape: tuple[int, int], border_px: float) -> tuple[float, float, float, float]:
    """Return ``(x0, x1, y0, y1)``, the area of patch centres ``border_px`` inside the object."""
    height, width = object_shape
    x0, x1, y0, y1 = border_px, width - border_px, border_px, height - border_px
    if x1 <= x0 or y1 <= y0:
        raise InvalidInputError(
            f"object of shape {object_shape!r} leaves no room for scan positions with a border "
            f"of {border_px!r} pixels. Use a larger object (--object-size) or a smaller "
            "--border."
        )
    return x0, x1, y0, y1


def random_positions(count: int, box: tuple[float, float, float, float],
                     rng: np.random.Generator) -> np.ndarray:
    """Draw ``count`` positions uniformly in ``box`` = (x0, x1, y0, y1): (count, 2) float64.

    The positions are returned in scan order: bands of rows about one mean spacing high, from
    top to bottom, each from left to right. Neighbouring positions then sit close together in
    the stored arrays too, which keeps the reads of grouping local.
    """
    x0, x1, y0, y1 = box
    x = rng.uniform(x0, x1, count)
    y = rng.uniform(y0, y1, count)
    spacing = math.sqrt((x1 - x0) * (y1 - y0) / count)
    order = np.lexsort((x, np.floor((y - y0) / spacing)))
    return np.stack([x[order], y[order]], axis=1)


def raster_positions(count: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """Lay ``count`` positions on a row-major raster filling ``box``: (count, 2) float64.

    The raster has about the same step along x and y. Its last row is partial when ``count``
    does not fill whole rows.
    """
    x0, x1, y0, y1 = box
    width, height = x1 - x0, y1 - y0
    columns = max(1, round(math.sqrt(count * width / height)))
    rows = math.ceil(count / columns)
    x = np.linspace(x0, x1, columns) if columns > 1 else np.array([(x0 + x1) / 2])
    y = np.linspace(y0, y1, rows) if rows > 1 else np.array([(y0 + y1) / 2])
    grid_y, grid_x = np.meshgrid(y, x, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)[:count]


def fermat_spiral_positions(count: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """Lay ``count`` positions on a Fermat spiral filling the disk inscribed in ``box``.

    Point k sits at radius ``R sqrt((k + 0.5) / count)`` and angle ``k`` times the golden angle,
    which spreads points at nearly uniform density.

    Returns
    -------
    np.ndarray
        (count, 2) float64.
    """
    x0, x1, y0, y1 = box
    radius = min(x1 - x0, y1 - y0) / 2
    index = np.arange(count, dtype=np.float64)
    distance = radius * np.sqrt((index + 0.5) / count)
    angle = index * math.pi * (3 - math.sqrt(5))
    x = (x0 + x1) / 2 + distance * np.cos(angle)
    y = (y0 + y1) / 2 + distance * np.sin(angle)
    return np.stack([x, y], axis=1)


def load_positions(path: PathLike, *, with_nominal: bool = False
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read scan positions from a file.

    Parameters
    ----------
    path
        ``.npz`` with ``xcoords``/``ycoords`` (and ``xcoords_start``/``ycoords_start`` when
        ``with_nominal``), ``.npy`` holding (scan, 2) columns x, y, or a text file (``.csv``,
        ``.txt``) with two columns x, y (comma or white space separated).
    with_nominal
        Also return the nominal positions (NPZ only).

    Returns
    -------
    tuple
        (scan, 2) float64 measured positions ``(x, y)`` in object pixels, and the nominal ones
        (same shape) or ``None``.
    """
    source = _existing(path, "positions file")
    if source.suffix == ".npz":
        keys = ("xcoords", "ycoords") + (("xcoords_start", "ycoords_start") if with_nominal
                                         else ())
        arrays = load_npz_arrays(source, keys)
        measured = np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1)
        nominal = (np.stack([arrays["xcoords_start"], arrays["ycoords_start"]], axis=1)
                   if with_nominal else None)
        return _check_positions(measured, source), nominal
    if with_nominal:
        raise InvalidInputError(
            f"{source}: nominal positions can only be read from an NPZ file with keys "
            "'xcoords_start' and 'ycoords_start'. Drop --with-nominal or use such a file."
        )
    if source.suffix == ".npy":
        return _check_positions(_load_npy(source), source), None
    try:
        table = np.loadtxt(source, delimiter="," if source.suffix == ".csv" else None, ndmin=2)
    except ValueError as error:
        raise InputFileError(f"{source}: cannot read positions as two numeric columns x, y "
                             f"({error}).") from error
    return _check_positions(table, source), None


def _check_positions(positions: np.ndarray, source: Path) -> np.ndarray:
    if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) == 0:
        raise InvalidInputError(
            f"{source}: positions have shape {positions.shape!r}; expected (scan, 2) with "
            "columns x (column), y (row) in object pixels."
        )
    if not np.all(np.isfinite(positions)):
        raise InvalidInputError(f"{source}: positions contain NaN or infinite values.")
    return np.ascontiguousarray(positions, dtype=np.float64)


# Files ----------------------------------------------------------------------------------------


def _existing(path: PathLike, what: str) -> Path:
    source = Path(path)
    if not source.is_file():
        raise InputFileNotFoundError(f"{source}: {what} not found. Check the path.")
    return source


def _load_npy(source: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(source, allow_pickle=False))
    except (OSError, ValueError) as error:
        raise InputFileError(f"{source}: cannot read as a .npy array ({error}).") from error


def load_npz_arrays(path: PathLike, keys: tuple[str, ...]) -> dict[str, Any]:
    """Read ``keys`` from an NPZ file without unpickling anything.

    Raises
    ------
    MissingKeyError
        One of ``keys`` is absent; the message lists the keys present.
    InputFileError
        The file is not a readable NPZ archive.
    InvalidInputError
        A float or complex array contains NaN or infinite values.
    """
    source = _existing(path, "NPZ file")
    try:
        with np.load(source, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise MissingKeyError(
                    f"{source}: key(s) {missing!r} missing; the file has {sorted(archive.files)!r}."
                    " Use a PtychoPINN raw NPZ with probeGuess, objectGuess, xcoords and ycoords."
                )
            arrays = {key: np.asarray(archive[key]) for key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputFileError(f"{source}: cannot read as an NPZ archive ({error}). The file is "
                             "truncated or corrupted; copy or write it again.") from error
    for key, values in arrays.items():
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            raise InvalidInputError(f"{source}: {key!r} contains NaN or infinite values. "
                                    "Repair it, or use another file.")
    return arrays
