"""The physics-informed network (PINN): diffraction to a complex object patch, trained through
the far-field forward model with a Poisson likelihood.

Network. An encoder of [Conv 3x3 ReLU, Conv 3x3 ReLU, MaxPool 2] blocks brings the N x N
patterns down to 8 x 8. Two decoders (amplitude, phase) of [Conv 3x3 ReLU, Conv 3x3 ReLU,
UpSample 2] blocks bring them back to N x N, and a 3x3 convolution per head then gives one
channel per group member. Filter counts (times ``n_filters_scale``):

====  =========================  ==============================
N     encoder                    each decoder
====  =========================  ==============================
64    32, 64, 128                64, 32, 16
128   16, 32, 64, 128            128, 64, 32, 16
256   8, 16, 32, 64, 128         256, 128, 64, 32, 16
====  =========================  ==============================

With ``hidden_activation="leaky_relu"`` every hidden convolution uses a leaky ReLU instead.
The amplitude head ends in ``amp_activation`` (sigmoid by default), the phase head in
``pi * tanh`` or, with ``phase_activation="linear"``, in no activation. There are no skip
connections.

Forward model, per group of C = gridsize**2 members:

1. ``PhotonScale(power=-1)`` turns the input ``s * X`` back into X.
2. The decoders give C complex patches ``amplitude * exp(i phase)``.
3. gridsize 2: the patches are averaged on a canvas centred on the group centroid
   (:class:`~ptychozarr.models.layers.GroupMerge`, weighted by the normalised probe amplitude),
   the central N x N of the canvas is the object output, and each member's patch is cut back
   out of the canvas (:class:`~ptychozarr.models.layers.GroupExtract`), which ties overlapping
   members together. gridsize 1: the single patch is the object output.
4. Each member patch is multiplied by the probe (optionally trainable) and propagated with a
   unitary FFT (zero frequency centred); the amplitude is multiplied by s and the intensity by s².

Differences from the reference implementation, on purpose:

- The decoders have one more up-sampling block and predict the whole N x N patch. The reference
  predicts only the central N/2 x N/2 and adds the border from a separate small branch, and its
  merge divides by a central-square mask plus 0.001, which scales border content by about 1000
  where no member's centre reaches.
- The merge weights each member by the probe amplitude instead of a central-square mask, and the
  weighted sum is divided by the summed weights plus ``MERGE_EPS``, so it is a true weighted mean
  and is zero where no member is illuminated.
- The merge canvas has side ``N + 2 * (ceil(max_offset_px) + 1)``, sized from the data's largest
  member offset; the reference uses a fixed margin that silently cuts members further than 7 px
  from the centroid.
- The merge is strictly per group at every batch size (the reference sums all groups of a batch
  into one canvas once batch x channels reaches 64).
- gridsize 1 skips the merge: with one member at zero offset it would only rescale the patch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from ptychozarr import physics
from ptychozarr.config import ModelConfig
from ptychozarr.models import layers

__all__ = [
    "DECODER_FILTERS",
    "ENCODER_FILTERS",
    "build_pinn",
    "canvas_px",
    "inference_model",
    "merge_window",
    "poisson_nll_loss",
]

ENCODER_FILTERS = {64: (32, 64, 128), 128: (16, 32, 64, 128), 256: (8, 16, 32, 64, 128)}
"""Encoder filters per pattern side N, before ``n_filters_scale``."""

DECODER_FILTERS = {64: (64, 32, 16), 128: (128, 64, 32, 16), 256: (256, 128, 64, 32, 16)}
"""Filters of each decoder per pattern side N, before ``n_filters_scale``."""


@keras.saving.register_keras_serializable(package="ptychozarr")
def poisson_nll_loss(y_true: Any, y_pred: Any) -> Any:
    """Poisson negative log-likelihood of observed intensities (photon counts).

    ``y_true`` is ``(s * X)**2`` and ``y_pred`` the predicted intensity, both
    (batch, ky, kx, channel) float32; see :func:`ptychozarr.physics.poisson_nll`.
    """
    return physics.poisson_nll(y_true, y_pred)


def canvas_px(n: int, max_offset_px: float) -> int:
    """Return the side of the merge canvas for patches of side ``n``.

    The margin on each side is ``ceil(max_offset_px) + 1`` pixels: a member moved by up to
    ``max_offset_px`` along each axis stays on the canvas, with one pixel for the bilinear
    interpolation.
    """
    return n + 2 * (math.ceil(max_offset_px) + 1)


def merge_window(probe: np.ndarray) -> np.ndarray:
    """Return the merge weights of a probe: its amplitude divided by its maximum.

    Parameters
    ----------
    probe
        (N, N) complex probe.

    Returns
    -------
    numpy.ndarray
        (N, N) float32 weights in [0, 1].
    """
    amplitude = np.abs(np.asarray(probe)).astype(np.float32)
    peak = float(amplitude.max())
    if not peak > 0:
        raise ValueError("merge_window: the probe is zero everywhere")
    return amplitude / peak


def _complex_patches(features: Any, config: ModelConfig, seeds: Iterator[int] | None) -> Any:
    """Decode bottleneck features into (batch, N, N, channel) complex patches."""
    filters = tuple(count * config.n_filters_scale for count in DECODER_FILTERS[config.n])

    activation = config.hidden_activation
    amplitude = layers.decoder_blocks(features, filters, prefix="amplitude_decoder", seeds=seeds,
                                      activation=activation)
    amplitude = keras.layers.Conv2D(config.channels, 3, padding="same", name="amplitude_head",
                                    kernel_initializer=layers.kernel_initializer(seeds))(amplitude)
    amplitude = keras.layers.Activation(config.amp_activation, name="amplitude_activation")(
        amplitude)

    phase = layers.decoder_blocks(features, filters, prefix="phase_decoder", seeds=seeds,
                                  activation=activation)
    phase = keras.layers.Conv2D(config.channels, 3, padding="same", name="phase_head",
                                kernel_initializer=layers.kernel_initializer(seeds))(phase)
    if config.phase_activation == "linear":
        phase = keras.layers.Identity(name="phase_activation")(phase)
    else:
        phase = layers.PhaseActivation(name="phase_activation")(phase)

    name = "object" if config.gridsize == 1 else "patches"
    return layers.ComplexFromPolar(name=name)([amplitude, phase])


def build_pinn(config: ModelConfig, *, probe: np.ndarray, intensity_scale: float,
               seed: int | None = None) -> tuple[keras.Model, keras.Model]:
    """Build the PINN's training and inference models.

    Parameters
    ----------
    config
        Model settings; ``config.kind`` is ignored here.
    probe
        (N, N) complex64 probe, already normalised (see
        :func:`ptychozarr.models.factory.normalise_probe`).
    intensity_scale
        Photon scale s of the training data.
    seed
        Seed of the weight initialisation; ``None`` draws from Keras's global generator.

    Returns
    -------
    tuple of keras.Model
        ``(training, inference)``. Both take ``[diffraction, relative]``: ``s * X``
        (batch, N, N, C) float32 and the members' offsets (batch, C, 2) float32 pixels
        ``(x, y)``, centroid minus member as in the store's ``relative`` (unused for
        gridsize 1). ``training`` returns
        ``[object, amplitude, intensity]``: the complex object patch at the group centroid
        (batch, N, N, 1) complex64, the predicted amplitude ``s * A`` and intensity
        ``(s * A)**2``, both (batch, ky, kx, C) float32. ``inference`` shares the layers and
        returns the object patch only.
    """
    n, channels = config.n, config.channels
    diffraction = keras.Input((n, n, channels), name="diffraction", dtype="float32")
    relative = keras.Input((channels, 2), name="relative", dtype="float32")
    photon_scale = layers.PhotonScale(intensity_scale,
                                      scale_trainable=config.intensity_scale_trainable,
                                      name="photon_scale")

    seeds = None if seed is None else itertools.count(seed * 1000)
    encoder_filters = tuple(count * config.n_filters_scale for count in ENCODER_FILTERS[n])
    x = photon_scale(diffraction, power=-1.0)
    features = layers.encoder_blocks(x, encoder_filters, prefix="encoder", seeds=seeds,
                                     activation=config.hidden_activation)
    patches = _complex_patches(features, config, seeds)

    if config.gridsize == 1:
        obj = patches
        members = patches
    else:
        canvas = layers.GroupMerge(canvas_px(n, config.max_offset_px),
                                   window=merge_window(probe), name="merge")([patches, relative])
        obj = layers.CentreCrop(n, name="object")(canvas)
        members = layers.GroupExtract(n, name="extract")([canvas, relative])

    exit_waves = layers.ProbeIllumination(probe_trainable=config.probe_trainable, probe=probe,
                                          name="illumination")(members)
    amplitude, intensity = layers.FarFieldDiffraction(name="far_field")(exit_waves)
    amplitude = photon_scale(amplitude, power=1.0)
    intensity = photon_scale(intensity, power=2.0)

    # Name the outputs so that losses and targets can be given by name as well as by position.
    amplitude = keras.layers.Identity(name="amplitude")(amplitude)
    intensity = keras.layers.Identity(name="intensity")(intensity)
    training = keras.Model([diffraction, relative], [obj, amplitude, intensity], name="pinn")
    return training, inference_model(training)


def inference_model(training: keras.Model) -> keras.Model:
    """Return the inference model (object output only) sharing the layers of a training PINN."""
    return keras.Model(training.inputs, training.get_layer("object").output,
                       name="pinn_inference")
