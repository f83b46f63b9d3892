"""Image quality metrics of a reconstruction against the ground truth, and the data residual.

With a ground truth, :func:`evaluate` scores amplitude and phase of an aligned reconstruction
(see :mod:`ptychozarr.alignment`): the amplitude is mean-matched and the phase loses its offset or
linear ramp, then MAE, MSE, PSNR and SSIM use the ground truth's data range (max − min), MS-SSIM
uses five levels with the weights of Wang, Simoncelli and Bovik (2003), and the Fourier ring
correlation (FRC) curve gives the frequencies where it falls below 0.5, 1/7 and the half-bit
threshold of van Heel and Schatz (2005).

Without a ground truth, :func:`data_residual` compares the diffraction that a reconstructed object
predicts at the scan positions with the measured diffraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal
from skimage.metrics import structural_similarity

from ptychozarr.alignment import PhaseAlignMethod, align_phase, match_amplitude
from ptychozarr.errors import InvalidInputError

__all__ = [
    "FRC_TAPER",
    "MS_SSIM_WEIGHTS",
    "SCALAR_METRICS",
    "Evaluation",
    "FRCCurve",
    "data_residual",
    "evaluate",
    "fourier_ring_correlation",
    "mean_absolute_error",
    "mean_squared_error",
    "multiscale_ssim",
    "peak_signal_to_noise_ratio",
    "residual_sums",
    "ssim",
    "threshold_crossing",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Level weights of MS-SSIM, finest level first (Wang, Simoncelli and Bovik, 2003)."""

SCALAR_METRICS = ("mae", "mse", "psnr", "ssim", "ssim_2pi", "ms_ssim", "frc50", "frc1over7",
                  "frc_halfbit")
"""Metric names reported for amplitude and phase, in table order.

``ssim_2pi`` is the SSIM as the reference compare_models computes it: the phase mapped to
(phase + pi) / (2 pi) with a data range of 1, the amplitude as in ``ssim``. Over a full 2 pi range
a phase of a few tenths of a radian scores high even when its structure is poor. ``ssim`` (the
ground truth's own range) is therefore the stricter of the two, and ``ssim_2pi`` serves to
compare with numbers published by the reference.
"""

FRC_TAPER = 0.25
"""Tapered fraction of the Tukey window applied before the FRC."""

_MIN_SSIM_SIDE = 7  # the SSIM window is 7x7


def mean_absolute_error(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Return mean |prediction − reference|."""
    return float(np.mean(np.abs(prediction - reference)))


def mean_squared_error(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Return mean (prediction − reference)²."""
    return float(np.mean(np.abs(prediction - reference) ** 2))


def _data_range(reference: np.ndarray) -> float:
    value = float(np.max(reference) - np.min(reference))
    return value if value > 0 else 1.0


def peak_signal_to_noise_ratio(prediction: np.ndarray, reference: np.ndarray, *,
                               data_range: float | None = None) -> float:
    """Return 10·log10(range² / MSE) in dB, ``range`` defaulting to the reference's max − min.

    Identical images give ``inf``.
    """
    value_range = _data_range(reference) if data_range is None else data_range
    error = mean_squared_error(prediction, reference)
    if error == 0.0:
        return math.inf
    return float(10.0 * np.log10(value_range**2 / error))


def ssim(prediction: np.ndarray, reference: np.ndarray, *,
         data_range: float | None = None) -> float:
    """Return the mean structural similarity (7×7 window), range from the reference by default."""
    value_range = _data_range(reference) if data_range is None else data_range
    return float(structural_similarity(reference.astype(np.float64),
                                       prediction.astype(np.float64), data_range=value_range))


def multiscale_ssim(prediction: np.ndarray, reference: np.ndarray, *,
                    data_range: float | None = None,
                    weights: Sequence[float] = MS_SSIM_WEIGHTS) -> float:
    """Return the multi-scale SSIM: the weighted geometric mean of SSIM over scales.

    The images are halved (2×2 means) between levels; levels stop early once a side falls below
    the 7-pixel window, and the weights of the levels used are renormalised. Negative SSIM
    values are clamped to 1e-4 so the geometric mean stays defined.
    """
    value_range = _data_range(reference) if data_range is None else data_range
    first = reference.astype(np.float64)
    second = prediction.astype(np.float64)
    values, used = [], []
    for weight in weights:
        if min(first.shape) < _MIN_SSIM_SIDE:
            break
        values.append(max(ssim(second, first, data_range=value_range), 1e-4))
        used.append(weight)
        first, second = _halve(first), _halve(second)
    if not values:
        raise InvalidInputError(
            f"MS-SSIM: images of shape {reference.shape!r} are smaller than the 7x7 SSIM window."
        )
    exponents = np.asarray(used) / np.sum(used)
    return float(np.prod(np.asarray(values) ** exponents))


def _halve(image: np.ndarray) -> np.ndarray:
    rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    trimmed = image[:rows, :cols]
    return trimmed.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))


@dataclass(frozen=True)
class FRCCurve:
    """A Fourier ring correlation curve.

    Attributes
    ----------
    frequency_cycles_per_px
        (ring,) spatial frequency of each ring, cycles per pixel (0 to 0.5).
    correlation
        (ring,) FRC value of each ring.
    halfbit_threshold
        (ring,) half-bit information threshold of each ring.
    pixel_size_m
        Object pixel size when known, to express frequencies in cycles per metre.
    """

    frequency_cycles_per_px: np.ndarray
    correlation: np.ndarray
    halfbit_threshold: np.ndarray
    pixel_size_m: float | None = None

    @property
    def frequency_per_m(self) -> np.ndarray | None:
        """(ring,) spatial frequency in cycles per metre, or ``None`` without a pixel size."""
        if self.pixel_size_m is None:
            return None
        return self.frequency_cycles_per_px / self.pixel_size_m


def fourier_ring_correlation(first: np.ndarray, second: np.ndarray, *,
                             pixel_size_m: float | None = None, smoothing_sigma: float = 0.0,
                             taper: float = FRC_TAPER) -> FRCCurve:
    """Compute the FRC curve of two real images over their central square.

    Each image loses its mean and is multiplied by a Tukey window first. Without the window, the
    jump between opposite edges of a cropped image puts power at every frequency along the two
    axes of the spectrum, and that power is correlated between two images of the same region, so
    it would raise the high-frequency FRC of even a poor reconstruction.

    Parameters
    ----------
    first, second
        (row, col) real images of the same shape (for example two amplitudes or two phases).
    pixel_size_m
        Object pixel size, recorded to express frequencies per metre.
    smoothing_sigma
        Standard deviation (rings) of a Gaussian smoothing of the curve; 0 keeps it raw.
    taper
        Fraction of the Tukey window that is tapered (0: no window, 1: a Hann window).

    Returns
    -------
    FRCCurve
        One value per ring of integer radius 0 .. side/2 − 1, ring r at r/side cycles per pixel.
    """
    if first.shape != second.shape:
        raise InvalidInputError(
            f"FRC: images of shapes {first.shape!r} and {second.shape!r} differ; crop both to "
            "the same region first."
        )
    side = min(first.shape)
    top, left = (first.shape[0] - side) // 2, (first.shape[1] - side) // 2
    window = (slice(top, top + side), slice(left, left + side))
    edge = signal.windows.tukey(side, taper)
    weights = np.outer(edge, edge)
    spectrum_first = np.fft.fftshift(np.fft.fft2((first[window] - first[window].mean()) * weights))
    spectrum_second = np.fft.fftshift(np.fft.fft2((second[window] - second[window].mean())
                                                  * weights))

    frequencies = np.fft.fftshift(np.fft.fftfreq(side)) * side
    radius = np.hypot(frequencies[:, None], frequencies[None, :])
    rings = np.rint(radius).astype(np.int64).ravel()
    n_rings = side // 2
    inside = rings < n_rings
    rings = rings[inside]

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(rings, weights=values.ravel()[inside], minlength=n_rings)

    cross = spectrum_first * np.conj(spectrum_second)
    numerator = np.hypot(ring_sum(cross.real), ring_sum(cross.imag))
    power = ring_sum(np.abs(spectrum_first) ** 2) * ring_sum(np.abs(spectrum_second) ** 2)
    correlation = numerator / np.sqrt(np.maximum(power, np.finfo(np.float64).tiny))
    if smoothing_sigma > 0:
        correlation = ndimage.gaussian_filter1d(correlation, smoothing_sigma, mode="nearest")

    pixels = np.maximum(np.bincount(rings, minlength=n_rings), 1)
    root = np.sqrt(pixels)
    halfbit = (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)
    return FRCCurve(np.arange(n_rings) / side, correlation, halfbit, pixel_size_m)


def threshold_crossing(curve: FRCCurve, threshold: float | np.ndarray) -> float:
    """Return the frequency (cycles per pixel) where the FRC first falls below ``threshold``.

    The crossing is interpolated linearly between the last ring at or above the threshold and
    the first ring below it. Ring 0 (the mean) is not used: a curve already below the threshold
    at ring 1 returns 0. A curve that never falls below returns the highest frequency, 0.5 at
    most, because the resolution is then limited by sampling.
    """
    levels = np.broadcast_to(np.asarray(threshold, dtype=np.float64), curve.correlation.shape)
    margin = curve.correlation - levels
    below = np.nonzero(margin[1:] < 0)[0]
    frequency = curve.frequency_cycles_per_px
    if below.size == 0:
        return float(frequency[-1])
    ring = int(below[0]) + 1
    if ring == 1:
        return 0.0
    above_margin, below_margin = margin[ring - 1], margin[ring]
    fraction = above_margin / (above_margin - below_margin)
    return float(frequency[ring - 1] + fraction * (frequency[ring] - frequency[ring - 1]))


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one reconstruction, each an (amplitude, phase) pair.

    Attributes
    ----------
    values
        Metric name (see :data:`SCALAR_METRICS`) to (amplitude, phase). FRC crossings are in
        cycles per pixel.
    frc_amplitude, frc_phase
        The FRC curves behind the crossings.
    """

    values: Mapping[str, tuple[float, float]]
    frc_amplitude: FRCCurve
    frc_phase: FRCCurve


def _score(prediction: np.ndarray, reference: np.ndarray, *, ms_ssim_sigma: float,
           frc_sigma: float, pixel_size_m: float | None) -> tuple[dict[str, float], FRCCurve]:
    value_range = _data_range(reference)
    if ms_ssim_sigma > 0:
        smooth_prediction = ndimage.gaussian_filter(prediction, ms_ssim_sigma)
        smooth_reference = ndimage.gaussian_filter(reference, ms_ssim_sigma)
    else:
        smooth_prediction, smooth_reference = prediction, reference
    curve = fourier_ring_correlation(prediction, reference, pixel_size_m=pixel_size_m,
                                     smoothing_sigma=frc_sigma)
    values = {
        "mae": mean_absolute_error(prediction, reference),
        "mse": mean_squared_error(prediction, reference),
        "psnr": peak_signal_to_noise_ratio(prediction, reference, data_range=value_range),
        "ssim": ssim(prediction, reference, data_range=value_range),
        "ms_ssim": multiscale_ssim(smooth_prediction, smooth_reference, data_range=value_range),
        "frc50": threshold_crossing(curve, 0.5),
        "frc1over7": threshold_crossing(curve, 1.0 / 7.0),
        "frc_halfbit": threshold_crossing(curve, curve.halfbit_threshold),
    }
    return values, curve


def evaluate(reconstruction: np.ndarray, ground_truth: np.ndarray, *,
             phase_align_method: PhaseAlignMethod = "plane", ms_ssim_sigma: float = 1.0,
             frc_sigma: float = 0.0, pixel_size_m: float | None = None) -> Evaluation:
    """Score an aligned complex reconstruction against the ground truth.

    Parameters
    ----------
    reconstruction, ground_truth
        (row, col) complex images of the same shape and frame (see
        :func:`ptychozarr.alignment.align_to_ground_truth`).
    phase_align_method
        ``"plane"`` removes a least-squares phase ramp and offset from each image, ``"mean"``
        only the offset.
    ms_ssim_sigma
        Gaussian smoothing (pixels) of the amplitudes before MS-SSIM; the phase is not smoothed.
    frc_sigma
        Gaussian smoothing (rings) of the FRC curves.
    pixel_size_m
        Object pixel size, to express FRC frequencies per metre.

    Returns
    -------
    Evaluation
        Every metric of :data:`SCALAR_METRICS` for amplitude and phase, and the FRC curves.
    """
    if reconstruction.shape != ground_truth.shape:
        raise InvalidInputError(
            f"reconstruction {reconstruction.shape!r} and ground truth {ground_truth.shape!r} "
            "differ in shape; align them first."
        )
    reference_amplitude = np.abs(ground_truth).astype(np.float64)
    amplitude = match_amplitude(np.abs(reconstruction).astype(np.float64), reference_amplitude)
    reference_phase = align_phase(np.angle(ground_truth).astype(np.float64),
                                  method=phase_align_method)
    phase = align_phase(np.angle(reconstruction).astype(np.float64), method=phase_align_method)

    amplitude_values, amplitude_curve = _score(amplitude, reference_amplitude,
                                               ms_ssim_sigma=ms_ssim_sigma, frc_sigma=frc_sigma,
                                               pixel_size_m=pixel_size_m)
    phase_values, phase_curve = _score(phase, reference_phase, ms_ssim_sigma=0.0,
                                       frc_sigma=frc_sigma, pixel_size_m=pixel_size_m)

    amplitude_values["ssim_2pi"] = amplitude_values["ssim"]
    phase_values["ssim_2pi"] = ssim((phase + math.pi) / (2 * math.pi),
                                    (reference_phase + math.pi) / (2 * math.pi), data_range=1.0)
    values = {name: (amplitude_values[name], phase_values[name]) for name in SCALAR_METRICS}
    return Evaluation(values=values, frc_amplitude=amplitude_curve, frc_phase=phase_curve)


# Data residual without ground truth ------------------------------------------------------------

def residual_sums(obj: np.ndarray, probe: np.ndarray, positions: np.ndarray,
                  measured: np.ndarray) -> np.ndarray:
    """Return the sums behind :func:`data_residual` for one block of patterns.

    Parameters
    ----------
    obj
        (oy, ox) complex object in the frame of ``positions``.
    probe
        (N, N) complex probe the object's amplitude scale goes with.
    positions
        (scan, xy) float64 patch centres (x, y), pixels of ``obj``.
    measured
        (scan, ky, kx) float32 measured amplitude on the scale the model was given (the grouped
        view's ``X``, alpha times the stored amplitude).

    Returns
    -------
    numpy.ndarray
        (4,) float64: Σ(Â − A)², ΣA², ΣÂ·A, ΣÂ², with Â the predicted amplitude.
    """
    from ptychozarr.physics import diffraction_amplitude_np

    if positions.shape[0] == 0:
        return np.zeros(4)
    predicted = diffraction_amplitude_np(obj, probe, positions).astype(np.float64)
    observed = np.asarray(measured, dtype=np.float64)
    return np.array([np.sum((predicted - observed) ** 2), np.sum(observed**2),
                     np.sum(predicted * observed), np.sum(predicted**2)])


def data_residual(sums: np.ndarray) -> dict[str, float]:
    """Turn :func:`residual_sums` (summed over all blocks) into relative residuals.

    Returns
    -------
    dict
        ``data_residual``: ‖Â − A‖ / ‖A‖; ``data_residual_fit``: the same after scaling Â by the
        least-squares factor c = ΣÂA / ΣÂ² (insensitive to a global amplitude scale);
        ``data_residual_scale``: c.
    """
    squared_error, observed_power, cross, predicted_power = (float(value) for value in sums)
    if observed_power <= 0:
        raise InvalidInputError("data residual: the measured amplitudes are all zero.")
    scale = cross / predicted_power if predicted_power > 0 else 0.0
    fitted_error = observed_power - 2 * scale * cross + scale**2 * predicted_power
    return {
        "data_residual": math.sqrt(squared_error / observed_power),
        "data_residual_fit": math.sqrt(max(fitted_error, 0.0) / observed_power),
        "data_residual_scale": scale,
    }
