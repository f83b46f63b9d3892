"""Tests of alignment and metrics on cases with known results."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from ptychozarr.alignment import (
    align_phase,
    align_to_ground_truth,
    crop_to_scan,
    match_amplitude,
    register_shift,
)
from ptychozarr.errors import InvalidInputError
from ptychozarr.metrics import (
    SCALAR_METRICS,
    FRCCurve,
    data_residual,
    evaluate,
    fourier_ring_correlation,
    mean_squared_error,
    multiscale_ssim,
    peak_signal_to_noise_ratio,
    residual_sums,
    ssim,
    threshold_crossing,
)
from ptychozarr.physics import diffraction_amplitude_np


def _smooth_image(seed: int, size: int = 96) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=(size, size))
    return ndimage.gaussian_filter(noise, 3.0) * 10 + 1.0


def _complex_object(seed: int, size: int = 96) -> np.ndarray:
    amplitude = 0.5 + 0.1 * _smooth_image(seed, size)
    phase = 0.3 * _smooth_image(seed + 1, size)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def test_identical_images_score_perfect() -> None:
    obj = _complex_object(0)
    result = evaluate(obj, obj)
    for index, quantity in enumerate(("amplitude", "phase")):
        values = {name: pair[index] for name, pair in result.values.items()}
        assert values["mae"] == pytest.approx(0.0, abs=1e-9), quantity
        assert values["psnr"] == math.inf, quantity
        assert values["ssim"] == pytest.approx(1.0), quantity
        assert values["ms_ssim"] == pytest.approx(1.0), quantity
        assert values["frc50"] == pytest.approx(result.frc_amplitude.frequency_cycles_per_px[-1])


def test_evaluate_reports_every_metric() -> None:
    obj = _complex_object(1)
    result = evaluate(obj * 1.1, obj)
    assert list(result.values) == list(SCALAR_METRICS)


def test_ssim_2pi_reference_scale() -> None:
    truth = _complex_object(4)
    noisy_phase = np.angle(truth) + np.random.default_rng(5).normal(scale=0.2, size=truth.shape)
    reconstruction = (np.abs(truth) * np.exp(1j * noisy_phase)).astype(np.complex64)
    result = evaluate(reconstruction, truth, phase_align_method="mean")

    phase = noisy_phase - noisy_phase.mean()
    reference_phase = np.angle(truth) - np.angle(truth).mean()
    expected = structural_similarity((reference_phase + np.pi) / (2 * np.pi),
                                     (phase + np.pi) / (2 * np.pi), data_range=1.0, win_size=7)
    amplitude_2pi, phase_2pi = result.values["ssim_2pi"]
    assert phase_2pi == pytest.approx(expected, rel=1e-6)
    assert amplitude_2pi == result.values["ssim"][0]
    assert phase_2pi > result.values["ssim"][1] + 0.1


def test_noise_of_known_power() -> None:
    reference = _smooth_image(2, 128)
    sigma = 0.05
    noisy = reference + np.random.default_rng(3).normal(scale=sigma, size=reference.shape)

    value_range = reference.max() - reference.min()
    assert mean_squared_error(noisy, reference) == pytest.approx(sigma**2, rel=0.05)
    expected_psnr = 10 * np.log10(value_range**2 / sigma**2)
    assert peak_signal_to_noise_ratio(noisy, reference) == pytest.approx(expected_psnr, abs=0.25)


def test_psnr_uses_reference_range() -> None:
    reference = np.linspace(0, 0.1, 100).reshape(10, 10)
    prediction = reference + 0.01
    assert peak_signal_to_noise_ratio(prediction, reference) == pytest.approx(20.0)


def test_ssim_drops_with_noise() -> None:
    reference = _smooth_image(4)
    noisy = reference + np.random.default_rng(5).normal(scale=0.5, size=reference.shape)
    assert ssim(noisy, reference) < 0.9
    assert multiscale_ssim(noisy, reference) < 1.0


def test_multiscale_ssim_tiny_image_rejected() -> None:
    with pytest.raises(InvalidInputError, match="smaller than the 7x7 SSIM window"):
        multiscale_ssim(np.ones((5, 5)), np.ones((5, 5)))


def test_frc_of_identical_images_is_one() -> None:
    image = _smooth_image(6)
    curve = fourier_ring_correlation(image, image)
    np.testing.assert_allclose(curve.correlation[1:], 1.0, rtol=1e-9)


def test_frc_of_independent_noise_is_low() -> None:
    rng = np.random.default_rng(7)
    curve = fourier_ring_correlation(rng.normal(size=(128, 128)), rng.normal(size=(128, 128)))
    assert np.mean(curve.correlation[5:]) < 0.15
    assert threshold_crossing(curve, 0.5) < 0.05


def test_frc_frequencies_in_cycles_per_pixel() -> None:
    image = _smooth_image(8, 64)
    curve = fourier_ring_correlation(image, image, pixel_size_m=1e-8)
    assert curve.frequency_cycles_per_px[-1] == pytest.approx(31 / 64)
    assert curve.frequency_per_m is not None
    assert curve.frequency_per_m[1] == pytest.approx(1 / 64 / 1e-8)


def test_halfbit_threshold_is_one_for_single_pixel() -> None:
    curve = fourier_ring_correlation(_smooth_image(9, 32), _smooth_image(10, 32))
    assert curve.halfbit_threshold[0] == pytest.approx(1.0, abs=1e-4)


def test_threshold_crossing_at_first_ring_is_zero() -> None:
    frequency = np.arange(10) / 20
    curve = FRCCurve(frequency, np.array([1.0, *np.full(9, 0.1)]), np.zeros(10))
    assert threshold_crossing(curve, 0.5) == 0.0


def test_frc_ignores_edge_jumps() -> None:
    ramp = np.tile(np.linspace(0, 1, 96), (96, 1))
    rng = np.random.default_rng(18)
    first = ramp + rng.normal(scale=0.05, size=ramp.shape)
    second = ramp + rng.normal(scale=0.05, size=ramp.shape)
    # A ramp jumps from 1 back to 0 across the periodic edge; without a window that jump would
    # correlate the two noisy images at every frequency along the x axis.
    assert np.mean(fourier_ring_correlation(first, second).correlation[24:]) < 0.2


def test_threshold_crossing_interpolates() -> None:
    frequency = np.arange(10) / 20
    curve = FRCCurve(frequency, np.linspace(1.0, 0.1, 10), np.zeros(10))
    # The curve falls 0.1 per ring, so it passes 0.5 between rings 5 (0.5) and 6 (0.4).
    assert threshold_crossing(curve, 0.45) == pytest.approx(5.5 / 20)


def test_registration_finds_known_shift() -> None:
    reference = _smooth_image(11, 128)
    moving = ndimage.shift(reference, (-3.4, 2.2), order=3, mode="nearest")
    dy, dx = register_shift(reference, moving)
    assert dy == pytest.approx(3.4, abs=0.1)
    assert dx == pytest.approx(-2.2, abs=0.1)


def test_registration_stays_within_bound() -> None:
    reference = _smooth_image(12, 128)
    moving = np.roll(reference, (20, -25), axis=(0, 1))
    dy, dx = register_shift(reference, moving, max_shift_px=6)
    assert abs(dy) <= 7
    assert abs(dx) <= 7


def test_align_undoes_known_shift() -> None:
    truth = _complex_object(13, 128)
    shifted = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(truth), (1.5, -2.0)))
    aligned, cropped_truth, alignment = align_to_ground_truth(shifted, truth)
    assert alignment.shift_dy_px == pytest.approx(-1.5, abs=0.05)
    assert alignment.shift_dx_px == pytest.approx(2.0, abs=0.05)
    assert np.max(np.abs(aligned - cropped_truth)) < 0.02


def test_skip_registration_keeps_shift_zero() -> None:
    truth = _complex_object(14)
    _, _, alignment = align_to_ground_truth(truth, truth, register=False, border_px=2)
    assert (alignment.shift_dy_px, alignment.shift_dx_px, alignment.border_px) == (0.0, 0.0, 2)


def test_plane_removal_removes_ramp() -> None:
    rows, columns = np.mgrid[:40, :50]
    phase = 0.02 * columns - 0.03 * rows + 0.7
    np.testing.assert_allclose(align_phase(phase, method="plane"), 0.0, atol=1e-10)


def test_mean_removal_keeps_ramp() -> None:
    _, columns = np.mgrid[:40, :50]
    phase = 0.02 * columns + 0.7
    aligned = align_phase(phase, method="mean")
    assert aligned.mean() == pytest.approx(0.0, abs=1e-12)
    assert np.ptp(aligned) == pytest.approx(0.98)


def test_unknown_phase_method_rejected() -> None:
    with pytest.raises(InvalidInputError, match="use 'plane' or 'mean'"):
        align_phase(np.zeros((4, 4)), method="median")  # type: ignore[arg-type]


def test_amplitude_mean_matching() -> None:
    reference = _smooth_image(15)
    assert np.mean(match_amplitude(3 * reference, reference)) == pytest.approx(np.mean(reference))


def test_crop_to_scan_uses_object_frame() -> None:
    truth = np.arange(100 * 120).reshape(100, 120).astype(np.complex64)
    reconstruction = truth[10:90, 20:110]
    cropped, cropped_truth, region = crop_to_scan(
        reconstruction, (20, 10), truth, min_xy=(40.0, 30.0), max_xy=(80.0, 70.0), crop_size=20)
    assert region == (30, 90, 20, 80)
    np.testing.assert_array_equal(cropped, cropped_truth)


def test_crop_to_scan_rejects_disjoint_frames() -> None:
    truth = np.zeros((50, 50), np.complex64)
    with pytest.raises(InvalidInputError, match="pixel frame"):
        crop_to_scan(np.zeros((20, 20)), (200, 200), truth, min_xy=(210, 210),
                     max_xy=(215, 215), crop_size=10)


def test_data_residual_zero_for_exact_data() -> None:
    obj = _complex_object(16, 80)
    probe = np.zeros((32, 32), np.complex64)
    probe[8:24, 8:24] = 1.0
    positions = np.array([[30.0, 30.0], [40.5, 35.25], [50.0, 45.0]])
    measured = diffraction_amplitude_np(obj, probe, positions)

    result = data_residual(residual_sums(obj, probe, positions, measured))
    assert result["data_residual"] == pytest.approx(0.0, abs=1e-5)


def test_data_residual_fit_absorbs_scale() -> None:
    obj = _complex_object(17, 80)
    probe = np.ones((32, 32), np.complex64)
    positions = np.array([[30.0, 30.0], [45.0, 40.0]])
    measured = 2 * diffraction_amplitude_np(obj, probe, positions)

    result = data_residual(residual_sums(obj, probe, positions, measured))
    assert result["data_residual"] == pytest.approx(0.5, rel=1e-4)
    assert result["data_residual_fit"] == pytest.approx(0.0, abs=1e-3)
    assert result["data_residual_scale"] == pytest.approx(2.0, rel=1e-4)
