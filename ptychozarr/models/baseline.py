"""The supervised baseline: one diffraction pattern to an amplitude and a phase patch.

A PtychoNN-style network. The encoder has three [Conv 3x3 ReLU, Conv 3x3 ReLU, MaxPool 2] blocks
with 32, 64 and 128 filters (times ``n_filters_scale``). Two decoders (amplitude, phase) follow,
each of three [Conv 3x3 ReLU, Conv 3x3 ReLU, UpSample 2] blocks with 128, 64 and 32 filters and
a final 3x3 convolution to one channel with a linear output. It needs ground truth (MAE on ``Y_I``
and ``Y_phi``), knows no physics and sees one pattern at a time: groups of gridsize 2 are
flattened into independent samples with :func:`flatten_members`. Its input is the normalised
amplitude X, not ``s * X``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import keras

from ptychozarr.config import ModelConfig
from ptychozarr.models import layers
from ptychozarr.models.layers import flatten_members

__all__ = ["DECODER_FILTERS", "ENCODER_FILTERS", "build_baseline", "flatten_members"]

ENCODER_FILTERS = (32, 64, 128)
"""Encoder filters for every N, before ``n_filters_scale``."""

DECODER_FILTERS = (128, 64, 32)
"""Filters of each decoder for every N, before ``n_filters_scale``."""


def _head(features: Any, filters: tuple[int, ...], name: str, seeds: Iterator[int] | None,
          activation: str) -> Any:
    x = layers.decoder_blocks(features, filters, prefix=f"{name}_decoder", seeds=seeds,
                              activation=activation)
    return keras.layers.Conv2D(1, 3, padding="same", name=name,
                               kernel_initializer=layers.kernel_initializer(seeds))(x)


def build_baseline(config: ModelConfig, *, seed: int | None = None) -> keras.Model:
    """Build the supervised baseline.

    Parameters
    ----------
    config
        Model settings: ``n``, ``n_filters_scale`` and ``hidden_activation`` are used;
        ``gridsize`` only matters to the data, which is flattened to single patterns.
    seed
        Seed of the weight initialisation; ``None`` draws from Keras's global generator.

    Returns
    -------
    keras.Model
        Input ``diffraction``: X (batch, N, N, 1) float32. Outputs ``[amplitude, phase]``: two
        (batch, N, N, 1) float32 patches (phase in rad), trained against ``Y_I`` and ``Y_phi``.
    """
    n, scale = config.n, config.n_filters_scale
    seeds = None if seed is None else itertools.count(seed * 1000)
    diffraction = keras.Input((n, n, 1), name="diffraction", dtype="float32")

    encoder_filters = tuple(count * scale for count in ENCODER_FILTERS)
    activation = config.hidden_activation
    features = layers.encoder_blocks(diffraction, encoder_filters, prefix="encoder", seeds=seeds,
                                     activation=activation)
    decoder_filters = tuple(count * scale for count in DECODER_FILTERS)
    amplitude = _head(features, decoder_filters, "amplitude", seeds, activation)
    phase = _head(features, decoder_filters, "phase", seeds, activation)
    return keras.Model(diffraction, [amplitude, phase], name="baseline")
