"""Keras layers of the PINN's differentiable forward model, and the convolution blocks of both
networks.

Every layer here is registered as a Keras serialisable under the package name ``ptychozarr`` and
returns its full constructor arguments from ``get_config``, so a saved model loads with
``keras.saving.load_model(path, safe_mode=True)`` and needs neither Lambda layers nor pickles.
Arrays a layer starts from (the probe, the merge window) are weights, not config entries: they
are restored from the saved weights on load.

Layouts: ``(batch, N, N, channel)`` for patches and diffraction, ``(batch, channel, 2)`` for the
members' relative offsets ``(x, y)`` in object pixels (centroid minus member), as in the store's
``relative`` array. Group members are flattened group-major, channel-minor wherever a
per-member operation needs a flat batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptychozarr import physics

__all__ = [
    "MERGE_EPS",
    "CentreCrop",
    "ComplexFromPolar",
    "FarFieldDiffraction",
    "GroupExtract",
    "GroupMerge",
    "PhaseActivation",
    "PhotonScale",
    "ProbeIllumination",
    "decoder_blocks",
    "encoder_blocks",
    "flatten_members",
    "kernel_initializer",
]

MERGE_EPS = 1e-6
"""Added to the summed merge weights, so canvas pixels that no member reaches come out zero."""

_register = keras.saving.register_keras_serializable(package="ptychozarr")


def flatten_members(grouped: Any) -> tf.Tensor:
    """Turn each group member into its own sample.

    Parameters
    ----------
    grouped
        (group, H, W, channel) array or tensor.

    Returns
    -------
    tf.Tensor
        (group * channel, H, W, 1), group-major and channel-minor: sample ``g * C + c`` is member
        ``c`` of group ``g``.
    """
    tensor = tf.convert_to_tensor(grouped)
    height, width = tensor.shape[1], tensor.shape[2]
    channels_first = tf.transpose(tensor, [0, 3, 1, 2])
    return tf.reshape(channels_first, [-1, height, width, 1])


def _members_grouped(flat: tf.Tensor, channels: int) -> tf.Tensor:
    """Reshape (batch * channel, H, W, 1) back to (batch, H, W, channel)."""
    height, width = flat.shape[1], flat.shape[2]
    channels_first = tf.reshape(flat, [-1, channels, height, width])
    return tf.transpose(channels_first, [0, 2, 3, 1])


def _offsets_flat(relative: tf.Tensor) -> tf.Tensor:
    """Reshape (batch, channel, 2) offsets to (batch * channel, 2), group-major."""
    return tf.reshape(tf.cast(relative, tf.float32), [-1, 2])


def _centre_crop(images: tf.Tensor, size: int) -> tf.Tensor:
    start_y = (int(images.shape[1]) - size) // 2
    start_x = (int(images.shape[2]) - size) // 2
    return images[:, start_y:start_y + size, start_x:start_x + size, :]


def kernel_initializer(seeds: Iterator[int] | None) -> keras.initializers.Initializer:
    """Return a Glorot-uniform initializer seeded from ``seeds`` (unseeded when ``None``).

    Each layer draws its own seed, so a model is reproducible without touching the global
    random state.
    """
    seed = None if seeds is None else next(seeds)
    return keras.initializers.GlorotUniform(seed=seed)


def _conv(filters: int, name: str, seeds: Iterator[int] | None,
          activation: str) -> keras.layers.Layer:
    return keras.layers.Conv2D(filters, 3, padding="same", activation=activation, name=name,
                               kernel_initializer=kernel_initializer(seeds))


def _conv_blocks(x: Any, filters: tuple[int, ...], *, prefix: str, seeds: Iterator[int] | None,
                 resample: type[keras.layers.Layer], suffix: str, activation: str) -> Any:
    for index, count in enumerate(filters):
        x = _conv(count, f"{prefix}_{index}_conv_a", seeds, activation)(x)
        x = _conv(count, f"{prefix}_{index}_conv_b", seeds, activation)(x)
        x = resample(2, name=f"{prefix}_{index}_{suffix}")(x)
    return x


def encoder_blocks(x: Any, filters: tuple[int, ...], *, prefix: str,
                   seeds: Iterator[int] | None, activation: str = "relu") -> Any:
    """Apply one [Conv 3x3, Conv 3x3, MaxPool 2] block per entry of ``filters``.

    ``activation`` is the Keras activation of every convolution (ReLU by default).
    """
    return _conv_blocks(x, filters, prefix=prefix, seeds=seeds,
                        resample=keras.layers.MaxPooling2D, suffix="pool", activation=activation)


def decoder_blocks(x: Any, filters: tuple[int, ...], *, prefix: str,
                   seeds: Iterator[int] | None, activation: str = "relu") -> Any:
    """Apply one [Conv 3x3, Conv 3x3, UpSample 2] block per entry of ``filters``.

    ``activation`` is the Keras activation of every convolution (ReLU by default).
    """
    return _conv_blocks(x, filters, prefix=prefix, seeds=seeds,
                        resample=keras.layers.UpSampling2D, suffix="upsample",
                        activation=activation)


@_register
class PhotonScale(keras.layers.Layer):
    """Multiply by a power of the photon scale s, held as the weight ``log_scale``.

    One instance is shared by the three places the PINN uses s (``power=-1`` on the input
    ``s * X``, ``power=1`` on the predicted amplitude, ``power=2`` on the predicted intensity), so
    a trainable s stays one number.

    Parameters
    ----------
    intensity_scale
        Initial s (> 0).
    scale_trainable
        Let training refine log s.
    """

    def __init__(self, intensity_scale: float = 1.0, *, scale_trainable: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not intensity_scale > 0:
            raise ValueError(f"PhotonScale: intensity_scale must be > 0, got {intensity_scale!r}")
        self.intensity_scale = float(intensity_scale)
        self.scale_trainable = bool(scale_trainable)

    def build(self, input_shape: Any) -> None:
        self.log_scale = self.add_weight(
            shape=(), name="log_scale", trainable=self.scale_trainable,
            initializer=keras.initializers.Constant(math.log(self.intensity_scale)),
        )

    def call(self, inputs: Any, power: float = 1.0) -> Any:
        return inputs * tf.exp(power * self.log_scale)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(intensity_scale=self.intensity_scale, scale_trainable=self.scale_trainable)
        return config


@_register
class PhaseActivation(keras.layers.Layer):
    """Map features to a phase in (-pi, pi) rad with ``pi * tanh``."""

    def call(self, inputs: Any) -> Any:
        return math.pi * tf.tanh(inputs)


@_register
class ComplexFromPolar(keras.layers.Layer):
    """Combine amplitude and phase (rad) tensors of one shape into ``amplitude * exp(i phase)``.

    Inputs ``[amplitude, phase]`` float32; output complex64 of the same shape.
    """

    def call(self, inputs: Any) -> Any:
        amplitude, phase = inputs
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))


@_register
class CentreCrop(keras.layers.Layer):
    """Keep the central ``size x size`` pixels of (batch, H, W, channel) images.

    The crop starts at ``(H - size) // 2``, so the centre pixel ``(H/2, W/2)`` of an even canvas
    becomes the centre pixel ``(size/2, size/2)`` of the crop.
    """

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, inputs: Any) -> Any:
        return _centre_crop(inputs, self.size)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(size=self.size)
        return config


@_register
class GroupMerge(keras.layers.Layer):
    """Average the member patches of each group on a canvas centred on the group centroid.

    Member ``c`` is zero-padded to the canvas and moved by ``-relative_c`` (member minus
    centroid). Each pixel of the canvas is the weighted mean of the members covering it, with
    each member weighted by the merge window (the normalised probe amplitude, so a member counts
    where it is illuminated). The sum runs over the channels of one group only: groups of a batch
    never share a canvas.

    Inputs ``[patches, relative]``: (batch, N, N, channel) complex64 and (batch, channel, 2)
    float32 pixels. Output: (batch, canvas_px, canvas_px, 1) complex64.

    Parameters
    ----------
    canvas_px
        Side of the canvas in pixels; ``canvas_px - N`` must be even and >= 0.
    window
        (N, N) float initial merge weights; ``None`` starts from ones. The window is a
        non-trainable weight, so a loaded model restores the saved one.
    """

    def __init__(self, canvas_px: int, *, window: np.ndarray | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.canvas_px = int(canvas_px)
        self._initial_window = None if window is None else np.asarray(window, np.float32)

    def build(self, input_shape: Any) -> None:
        patches_shape = input_shape[0]
        n = int(patches_shape[1])
        margin = self.canvas_px - n
        if margin < 0 or margin % 2:
            raise ValueError(
                f"GroupMerge: canvas_px={self.canvas_px!r} must exceed the patch side {n} by an "
                "even number of pixels"
            )
        self.window = self.add_weight(shape=(n, n), name="window", trainable=False,
                                      initializer="ones")
        if self._initial_window is not None:
            self.window.assign(self._initial_window)

    def call(self, inputs: Any) -> Any:
        patches, relative = inputs
        channels = int(patches.shape[-1])
        pad = (self.canvas_px - int(patches.shape[1])) // 2

        # Carry the weighted patch and its weight as two channels, so one translation moves both.
        members = flatten_members(patches)
        weight = tf.cast(self.window, tf.complex64)[None, :, :, None] * tf.ones_like(members)
        stacked = tf.concat([members * weight, weight], axis=-1)
        stacked = tf.pad(stacked, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        moved = physics.translate(stacked, -_offsets_flat(relative))

        # Sum over the members of each group separately: (batch, channel, P, P, 2) -> (batch, ...).
        per_group = tf.reshape(moved, [-1, channels, self.canvas_px, self.canvas_px, 2])
        summed = tf.reduce_sum(per_group, axis=1)
        total_weight = tf.math.real(summed[..., 1])
        denominator = tf.complex(total_weight + MERGE_EPS, tf.zeros_like(total_weight))
        return (summed[..., 0] / denominator)[..., None]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(canvas_px=self.canvas_px)
        return config


@_register
class GroupExtract(keras.layers.Layer):
    """Cut each member's N x N patch back out of its group's canvas.

    Channel ``c`` is the canvas moved by ``+relative_c`` and centre-cropped, which undoes the
    placement of :class:`GroupMerge`. Inputs ``[canvas, relative]``: (batch, P, P, 1) complex64
    and (batch, channel, 2) float32 pixels. Output: (batch, size, size, channel) complex64.
    """

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, inputs: Any) -> Any:
        canvas, relative = inputs
        channels = int(relative.shape[1])
        repeated = tf.repeat(canvas, channels, axis=0)
        moved = physics.translate(repeated, _offsets_flat(relative))
        return _members_grouped(_centre_crop(moved, self.size), channels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(size=self.size)
        return config


@_register
class ProbeIllumination(keras.layers.Layer):
    """Multiply every member patch by the probe to form exit waves.

    The probe is held as two (N, N) float32 weights, ``probe_real`` and ``probe_imag``.
    Input and output: (batch, N, N, channel) complex64.

    Parameters
    ----------
    probe_trainable
        Let training refine the probe.
    probe
        (N, N) complex initial probe; ``None`` starts from ones (used when loading, where the
        saved weights replace it).
    """

    def __init__(self, *, probe_trainable: bool = False, probe: np.ndarray | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probe_trainable = bool(probe_trainable)
        self._initial_probe = None if probe is None else np.asarray(probe, np.complex64)

    def build(self, input_shape: Any) -> None:
        shape = (int(input_shape[1]), int(input_shape[2]))
        self.probe_real = self.add_weight(shape=shape, name="probe_real", initializer="ones",
                                          trainable=self.probe_trainable)
        self.probe_imag = self.add_weight(shape=shape, name="probe_imag", initializer="zeros",
                                          trainable=self.probe_trainable)
        if self._initial_probe is not None:
            self.probe_real.assign(self._initial_probe.real)
            self.probe_imag.assign(self._initial_probe.imag)

    def probe(self) -> np.ndarray:
        """Return the current probe, (N, N) complex64."""
        real = keras.ops.convert_to_numpy(self.probe_real)
        imag = keras.ops.convert_to_numpy(self.probe_imag)
        return (real + 1j * imag).astype(np.complex64)

    def call(self, inputs: Any) -> Any:
        probe = tf.complex(self.probe_real, self.probe_imag)
        return physics.illuminate(inputs, probe[:, :, None])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(probe_trainable=self.probe_trainable)
        return config


@_register
class FarFieldDiffraction(keras.layers.Layer):
    """Propagate exit waves to the detector: unitary FFT, zero frequency centred.

    Input (batch, N, N, channel) complex64 exit waves; outputs ``[amplitude, intensity]``, both
    (batch, ky, kx, channel) float32. The intensity is computed from the real and imaginary
    parts, not by squaring the amplitude, so its gradient is defined everywhere.
    """

    def call(self, inputs: Any) -> Any:
        field = physics.far_field(tf.transpose(inputs, [0, 3, 1, 2]))
        field = tf.transpose(field, [0, 2, 3, 1])
        amplitude = tf.abs(field)
        intensity = tf.math.square(tf.math.real(field)) + tf.math.square(tf.math.imag(field))
        return [amplitude, intensity]
