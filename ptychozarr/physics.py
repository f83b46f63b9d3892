"""The far-field forward model: patch extraction, translation, illumination, diffraction, loss.

This module is the single definition of the physics that the simulator, the grouping step's
ground truth, the PINN and the scoring share. Every function takes NumPy arrays or TensorFlow
tensors and returns a tensor, so it runs inside a Keras model and under ``tf.function``. Each has
a ``*_np`` twin with the same arguments that returns a NumPy array, for NumPy callers.

Conventions, written down once:

- Positions are patch centres in object pixels, float64, ordered ``(x, y)`` with x the column and
  y the row. The patch of side N at an integer position ``(x, y)`` is
  ``obj[y - N/2 : y + N/2, x - N/2 : x + N/2]``. At sub-pixel positions the object is
  interpolated bilinearly, and samples outside the object are zero.
- ``translate(image, t)`` moves image content by +t: ``output(r) = input(r - t)`` with
  ``t = (dx, dy)``, bilinear, zero fill.
- Diffraction is the unitary 2-D DFT of the exit wave (divided by N, so the summed intensity
  equals the summed ``|exit wave|**2``), shifted so that the zero frequency sits at
  ``(N/2, N/2)``. The amplitude is its modulus, the intensity its squared modulus.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ptychozarr.errors import InvalidInputError

__all__ = [
    "NLL_EPS",
    "diffraction_amplitude",
    "diffraction_amplitude_np",
    "extract_patches",
    "extract_patches_np",
    "far_field",
    "far_field_amplitude",
    "far_field_amplitude_np",
    "far_field_intensity",
    "far_field_intensity_np",
    "illuminate",
    "poisson_nll",
    "poisson_nll_np",
    "translate",
    "translate_np",
]

NLL_EPS = 1e-9
"""Added to the predicted intensity inside the logarithm of :func:`poisson_nll`, so that a zero
prediction gives a large finite loss instead of infinity."""

ArrayLike = Any
"""A NumPy array, a TensorFlow tensor or anything ``tf.convert_to_tensor`` accepts."""


def _complex(values: ArrayLike) -> tf.Tensor:
    tensor = tf.convert_to_tensor(values)
    if tensor.dtype != tf.complex64:
        tensor = tf.cast(tensor, tf.complex64)
    return tensor


def _to_numpy(tensor: tf.Tensor) -> np.ndarray:
    return np.asarray(tensor.numpy())


# Diffraction ----------------------------------------------------------------------------------


def far_field(exit_wave: ArrayLike) -> tf.Tensor:
    """Propagate exit waves to the far field (complex, unitary, zero frequency centred).

    Parameters
    ----------
    exit_wave
        (..., N, N) complex exit waves; cast to complex64.

    Returns
    -------
    tf.Tensor
        (..., N, N) complex64 far-field waves with the zero frequency at ``(N/2, N/2)``.
    """
    wave = _complex(exit_wave)
    side = tf.cast(tf.shape(wave)[-1], tf.float32)
    spectrum = tf.signal.fft2d(wave) / tf.complex(side, tf.zeros_like(side))
    return tf.signal.fftshift(spectrum, axes=(-2, -1))


def far_field_amplitude(exit_wave: ArrayLike) -> tf.Tensor:
    """Return the far-field diffraction amplitude of exit waves.

    Parameters
    ----------
    exit_wave
        (..., N, N) complex exit waves; cast to complex64.

    Returns
    -------
    tf.Tensor
        (..., ky, kx) float32 amplitude, zero frequency at ``(N/2, N/2)``; its square sums to
        ``sum |exit_wave|**2`` over the last two axes.
    """
    return tf.abs(far_field(exit_wave))


def far_field_intensity(exit_wave: ArrayLike) -> tf.Tensor:
    """Return the far-field diffraction intensity (squared amplitude) of exit waves.

    Parameters
    ----------
    exit_wave
        (..., N, N) complex exit waves; cast to complex64.

    Returns
    -------
    tf.Tensor
        (..., ky, kx) float32 intensity, zero frequency at ``(N/2, N/2)``.
    """
    wave = far_field(exit_wave)
    return tf.math.square(tf.math.real(wave)) + tf.math.square(tf.math.imag(wave))


def illuminate(patches: ArrayLike, probe: ArrayLike) -> tf.Tensor:
    """Multiply object patches by the probe to form exit waves.

    Parameters
    ----------
    patches
        (..., N, N) complex object patches.
    probe
        (N, N) complex probe, broadcast over the leading axes of ``patches``.

    Returns
    -------
    tf.Tensor
        (..., N, N) complex64 exit waves.
    """
    return _complex(patches) * _complex(probe)


def diffraction_amplitude(obj: ArrayLike, probe: ArrayLike, positions_xy: ArrayLike, *,
                          scale: float = 1.0) -> tf.Tensor:
    """Simulate noise-free diffraction amplitudes of a probe scanned over an object.

    Parameters
    ----------
    obj
        (oy, ox) complex object.
    probe
        (N, N) complex probe.
    positions_xy
        (scan, 2) float64 patch centres ``(x, y)`` in object pixels.
    scale
        Factor applied to the exit waves (the square root of a photon-count scale).

    Returns
    -------
    tf.Tensor
        (scan, ky, kx) float32 amplitude ``|F(scale * probe * patch)|``.
    """
    probe_tensor = _complex(probe)
    n = int(probe_tensor.shape[-1])
    patches = extract_patches(obj, positions_xy, n)
    return far_field_amplitude(illuminate(patches, probe_tensor) * complex(scale, 0.0))


# Sampling -------------------------------------------------------------------------------------


def _sample_indices(start: tf.Tensor, length: int, limit: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Return clipped indices ``start + arange(length)`` (batch, length) and their validity."""
    indices = start[:, None] + tf.range(length, dtype=tf.int64)[None, :]
    valid = (indices >= 0) & (indices < limit)
    return tf.clip_by_value(indices, 0, tf.maximum(limit - 1, 0)), valid


def extract_patches(obj: ArrayLike, positions_xy: ArrayLike, n: int) -> tf.Tensor:
    """Cut N x N patches centred on scan positions out of an object.

    Parameters
    ----------
    obj
        (oy, ox) complex object; cast to complex64.
    positions_xy
        (scan, 2) float64 patch centres ``(x, y)`` in object pixels (x = column, y = row).
    n
        Patch side N in pixels (even).

    Returns
    -------
    tf.Tensor
        (scan, n, n) complex64 patches. At integer positions patch ``j`` equals
        ``obj[y - n/2 : y + n/2, x - n/2 : x + n/2]``; at sub-pixel positions it is interpolated
        bilinearly; samples outside the object are zero.
    """
    image = _complex(obj)
    positions = tf.convert_to_tensor(positions_xy, dtype=tf.float64)
    height = tf.shape(image, out_type=tf.int64)[0]
    width = tf.shape(image, out_type=tf.int64)[1]

    # Each patch reads an (n + 1) x (n + 1) window. The fractional part of the position is the
    # same for every pixel of the patch, so the bilinear weights are four scalars per patch.
    corner = positions - n / 2
    base = tf.floor(corner)
    fraction = tf.cast(corner - base, tf.float32)
    base = tf.cast(base, tf.int64)
    columns, column_valid = _sample_indices(base[:, 0], n + 1, width)
    rows, row_valid = _sample_indices(base[:, 1], n + 1, height)

    flat_index = rows[:, :, None] * width + columns[:, None, :]
    window = tf.gather(tf.reshape(image, [-1]), flat_index)
    valid = row_valid[:, :, None] & column_valid[:, None, :]
    window = tf.where(valid, window, tf.zeros_like(window))

    fx = tf.cast(fraction[:, 0, None, None], tf.complex64)
    fy = tf.cast(fraction[:, 1, None, None], tf.complex64)
    top = (1 - fx) * window[:, :-1, :-1] + fx * window[:, :-1, 1:]
    bottom = (1 - fx) * window[:, 1:, :-1] + fx * window[:, 1:, 1:]
    return (1 - fy) * top + fy * bottom


def _shift_axis(images: tf.Tensor, shift: tf.Tensor, axis: int) -> tf.Tensor:
    """Move content of (batch, ...) ``images`` by ``shift`` (batch,) pixels along ``axis``."""
    length = int(images.shape[axis]) if images.shape[axis] is not None else None
    if length is None:
        raise InvalidInputError(
            f"translate: axis {axis} of images with shape {images.shape!r} has no static length. "
            "Give the image height and width in the tensor's shape (only the batch may be None)."
        )

    # output(r) = input(r - shift): source coordinate s = r - shift, split into floor and weight.
    source = tf.cast(tf.range(length), shift.dtype)[None, :] - shift[:, None]
    lower = tf.floor(source)
    weight = source[:, :1] - lower[:, :1]
    lower_index = tf.cast(lower, tf.int64)
    limit = tf.constant(length, tf.int64)

    samples = []
    for step in (0, 1):
        indices = lower_index + step
        valid = (indices >= 0) & (indices < limit)
        clipped = tf.clip_by_value(indices, 0, limit - 1)
        gathered = tf.gather(images, clipped, axis=axis, batch_dims=1)
        mask_shape = [-1] + [1] * (images.shape.rank - 1)
        mask_shape[axis] = length
        mask = tf.reshape(tf.cast(valid, images.dtype), mask_shape)
        samples.append(gathered * mask)

    weight_shape = [-1] + [1] * (images.shape.rank - 1)
    upper_weight = tf.reshape(tf.cast(weight, images.dtype), weight_shape)
    return (1 - upper_weight) * samples[0] + upper_weight * samples[1]


def translate(images: ArrayLike, offsets_xy: ArrayLike) -> tf.Tensor:
    """Move the content of images by sub-pixel offsets (bilinear, zero fill).

    Parameters
    ----------
    images
        (batch, H, W, channel) complex64 or float32 images; other dtypes are kept.
    offsets_xy
        (batch, 2) offsets ``(dx, dy)`` in pixels. A positive ``dx`` moves content towards
        larger column indices: ``output[y, x] = input[y - dy, x - dx]``.

    Returns
    -------
    tf.Tensor
        (batch, H, W, channel) translated images of the input dtype.
    """
    tensor = tf.convert_to_tensor(images)
    offsets = tf.convert_to_tensor(offsets_xy)
    if not offsets.dtype.is_floating:
        offsets = tf.cast(offsets, tf.float32)
    moved = _shift_axis(tensor, offsets[:, 1], axis=1)
    return _shift_axis(moved, offsets[:, 0], axis=2)


# Loss -----------------------------------------------------------------------------------------


def poisson_nll(observed_intensity: ArrayLike, predicted_intensity: ArrayLike, *,
                eps: float = NLL_EPS) -> tf.Tensor:
    """Return the Poisson negative log-likelihood of observed counts, without the constant term.

    Parameters
    ----------
    observed_intensity
        (...) float observed intensity in photon counts.
    predicted_intensity
        (...) float predicted intensity, same shape.
    eps
        Added to the prediction inside the logarithm (default :data:`NLL_EPS`).

    Returns
    -------
    tf.Tensor
        Scalar float32: ``mean(predicted - observed * log(predicted + eps))`` over all elements.
    """
    observed = tf.cast(tf.convert_to_tensor(observed_intensity), tf.float32)
    predicted = tf.cast(tf.convert_to_tensor(predicted_intensity), tf.float32)
    return tf.reduce_mean(predicted - observed * tf.math.log(predicted + eps))


# NumPy twins ----------------------------------------------------------------------------------


def far_field_amplitude_np(exit_wave: ArrayLike) -> np.ndarray:
    """NumPy twin of :func:`far_field_amplitude`: (..., ky, kx) float32."""
    return _to_numpy(far_field_amplitude(exit_wave))


def far_field_intensity_np(exit_wave: ArrayLike) -> np.ndarray:
    """NumPy twin of :func:`far_field_intensity`: (..., ky, kx) float32."""
    return _to_numpy(far_field_intensity(exit_wave))


def diffraction_amplitude_np(obj: ArrayLike, probe: ArrayLike, positions_xy: ArrayLike, *,
                             scale: float = 1.0) -> np.ndarray:
    """NumPy twin of :func:`diffraction_amplitude`: (scan, ky, kx) float32."""
    return _to_numpy(diffraction_amplitude(obj, probe, positions_xy, scale=scale))


def extract_patches_np(obj: ArrayLike, positions_xy: ArrayLike, n: int) -> np.ndarray:
    """NumPy twin of :func:`extract_patches`: (scan, n, n) complex64."""
    return _to_numpy(extract_patches(obj, positions_xy, n))


def translate_np(images: ArrayLike, offsets_xy: ArrayLike) -> np.ndarray:
    """NumPy twin of :func:`translate`: (batch, H, W, channel), input dtype."""
    return _to_numpy(translate(images, offsets_xy))


def poisson_nll_np(observed_intensity: ArrayLike, predicted_intensity: ArrayLike, *,
                   eps: float = NLL_EPS) -> float:
    """NumPy twin of :func:`poisson_nll`: a Python float."""
    return float(poisson_nll(observed_intensity, predicted_intensity, eps=eps))
