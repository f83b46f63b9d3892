"""Tests of the far-field forward model and its conventions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ptychozarr import physics


def _random_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def _disk_probe(n: int) -> np.ndarray:
    rows, columns = np.mgrid[:n, :n] - n / 2
    return (np.hypot(rows, columns) < n / 5).astype(np.complex64)


def test_far_field_parseval() -> None:
    wave = _random_complex(np.random.default_rng(0), (3, 32, 32))
    intensity = physics.far_field_intensity_np(wave)
    np.testing.assert_allclose(intensity.sum(axis=(1, 2)),
                               (np.abs(wave) ** 2).sum(axis=(1, 2)), rtol=1e-5)


def test_amplitude_squared_is_intensity() -> None:
    wave = _random_complex(np.random.default_rng(1), (2, 16, 16))
    amplitude = physics.far_field_amplitude_np(wave)
    intensity = physics.far_field_intensity_np(wave)
    assert amplitude.dtype == np.float32
    np.testing.assert_allclose(amplitude**2, intensity, rtol=1e-4, atol=1e-6)


def test_zero_frequency_at_centre() -> None:
    n = 16
    flat = np.ones((n, n), np.complex64)
    amplitude = physics.far_field_amplitude_np(flat)
    assert np.unravel_index(np.argmax(amplitude), amplitude.shape) == (n // 2, n // 2)
    assert amplitude[n // 2, n // 2] == pytest.approx(n, rel=1e-6)
    assert amplitude.sum() == pytest.approx(n, rel=1e-5)


def test_far_field_matches_numpy_definition() -> None:
    wave = _random_complex(np.random.default_rng(2), (8, 8))
    expected = np.abs(np.fft.fftshift(np.fft.fft2(wave))) / 8
    np.testing.assert_allclose(physics.far_field_amplitude_np(wave), expected, rtol=1e-5,
                               atol=1e-6)


def test_flat_object_gives_probe_diffraction() -> None:
    n = 32
    probe = _disk_probe(n) * np.exp(0.3j).astype(np.complex64)
    obj = np.full((80, 90), 0.7 * np.exp(-0.4j), np.complex64)
    positions = np.array([[40.0, 40.0], [45.25, 38.5], [33.0, 47.75]])
    amplitude = physics.diffraction_amplitude_np(obj, probe, positions)
    expected = 0.7 * physics.far_field_amplitude_np(probe)
    for pattern in amplitude:
        np.testing.assert_allclose(pattern, expected, rtol=1e-5, atol=1e-5)


def test_extraction_integer_equals_slicing() -> None:
    rng = np.random.default_rng(3)
    obj = _random_complex(rng, (50, 60))
    n = 16
    positions = np.array([[8.0, 8.0], [30.0, 21.0], [52.0, 42.0]])
    patches = physics.extract_patches_np(obj, positions, n)
    for patch, (x, y) in zip(patches, positions.astype(int), strict=True):
        np.testing.assert_array_equal(patch, obj[y - n // 2:y + n // 2, x - n // 2:x + n // 2])


def test_extraction_zero_outside_object() -> None:
    obj = np.ones((20, 20), np.complex64)
    patch = physics.extract_patches_np(obj, np.array([[0.0, 0.0]]), 8)[0]
    assert np.all(patch[:4, :] == 0)
    assert np.all(patch[:, :4] == 0)
    assert np.all(patch[4:, 4:] == 1)


def test_extraction_far_outside_is_zero() -> None:
    obj = np.ones((20, 20), np.complex64)
    patch = physics.extract_patches_np(obj, np.array([[-500.0, 900.0]]), 8)[0]
    assert np.all(patch == 0)


def test_extraction_subpixel_is_bilinear() -> None:
    rows, columns = np.mgrid[:40, :40].astype(np.float32)
    obj = (2 * columns + 3 * rows).astype(np.complex64)
    patch = physics.extract_patches_np(obj, np.array([[20.25, 19.5]]), 8)[0]
    # A linear object sampled bilinearly stays linear: pixel (i, j) reads column x - 4 + j, row
    # y - 4 + i.
    expected = 2 * (20.25 - 4 + columns[:8, :8]) + 3 * (19.5 - 4 + rows[:8, :8])
    np.testing.assert_allclose(patch.real, expected, rtol=1e-6)


def test_translate_moves_content_by_offset() -> None:
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, 5, 7, 0] = 1.0
    moved = physics.translate_np(image, np.array([[3.0, -2.0]]))
    assert np.unravel_index(np.argmax(moved[0, :, :, 0]), (16, 16)) == (3, 10)
    assert moved.sum() == pytest.approx(1.0)


def test_translate_subpixel_splits_weight() -> None:
    image = np.zeros((1, 8, 8, 1), np.complex64)
    image[0, 4, 4, 0] = 1.0
    moved = physics.translate_np(image, np.array([[0.25, 0.0]]))[0, :, :, 0]
    assert moved[4, 4] == pytest.approx(0.75)
    assert moved[4, 5] == pytest.approx(0.25)


def test_translate_zero_fill_and_channels() -> None:
    image = np.ones((2, 6, 6, 3), np.float32)
    moved = physics.translate_np(image, np.array([[2.0, 0.0], [0.0, -1.0]]))
    assert np.all(moved[0, :, :2, :] == 0)
    assert np.all(moved[0, :, 2:, :] == 1)
    assert np.all(moved[1, 5, :, :] == 0)
    assert np.all(moved[1, :5, :, :] == 1)


def test_translate_matches_extraction_sign() -> None:
    # Extracting at position p equals translating the object by -(p - N/2) and cropping.
    rng = np.random.default_rng(4)
    obj = _random_complex(rng, (24, 24))
    position = np.array([[13.5, 10.25]])
    patch = physics.extract_patches_np(obj, position, 8)[0]
    shift = -(position - 4.0)
    moved = physics.translate_np(obj[None, :, :, None], shift)[0, :8, :8, 0]
    np.testing.assert_allclose(patch, moved, rtol=1e-5, atol=1e-5)


def test_translate_runs_in_tf_function() -> None:
    translate = tf.function(physics.translate)
    images = tf.ones((2, 8, 8, 1), tf.complex64)
    moved = translate(images, tf.constant([[1.0, 0.0], [0.0, 1.0]], tf.float64))
    assert moved.dtype == tf.complex64
    assert tuple(moved.shape) == (2, 8, 8, 1)


def test_poisson_nll_value() -> None:
    observed = np.array([[0.0, 2.0], [4.0, 1.0]], np.float32)
    predicted = np.array([[1.0, 2.0], [3.0, 0.5]], np.float32)
    expected = np.mean(predicted - observed * np.log(predicted + physics.NLL_EPS))
    assert physics.poisson_nll_np(observed, predicted) == pytest.approx(expected, rel=1e-6)


def test_poisson_nll_minimum_at_observation() -> None:
    observed = np.full((4, 4), 5.0, np.float32)
    at_observation = physics.poisson_nll_np(observed, observed)
    assert at_observation < physics.poisson_nll_np(observed, observed * 1.1)
    assert at_observation < physics.poisson_nll_np(observed, observed * 0.9)


def test_poisson_nll_finite_at_zero_prediction() -> None:
    loss = physics.poisson_nll_np(np.ones(3, np.float32), np.zeros(3, np.float32))
    assert np.isfinite(loss)


def test_functions_return_tensors() -> None:
    wave = np.ones((4, 4), np.complex128)
    assert isinstance(physics.far_field_amplitude(wave), tf.Tensor)
    assert physics.far_field(wave).dtype == tf.complex64
