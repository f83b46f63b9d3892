"""Build and compile the PINN or the baseline from a frozen :class:`~ptychozarr.config.ModelConfig`.

Everything a model depends on comes in as arguments: the config, the probe, the photon scale s
and a seed. Nothing is cached between calls and no global Keras or TensorFlow state is changed,
so models of different N or gridsize can be built one after the other in one process.

What the training data must look like (``model.fit(inputs, targets)``):

=========  ==================================================  ===================================
kind       inputs                                              targets, in output order
=========  ==================================================  ===================================
pinn       ``(s * X, relative)``: (B, N, N, C) float32 and     ``(ignored, s * X, (s * X)**2)``:
           (B, C, 2) float32 pixels, centroid minus member     any (B, N, N, 1) float32 (the object
                                                               output has no loss), then two
                                                               (B, N, N, C) float32
baseline   X: (B * C, N, N, 1) float32, groups flattened with  ``(Y_I, Y_phi)``, each
           :func:`~ptychozarr.models.baseline.flatten_members`  (B * C, N, N, 1) float32, flattened
                                                               the same way
=========  ==================================================  ===================================
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ptychozarr.config import ModelConfig
from ptychozarr.errors import InvalidInputError
from ptychozarr.models.baseline import build_baseline
from ptychozarr.models.pinn import build_pinn, poisson_nll_loss

__all__ = [
    "BuiltModel",
    "build_model",
    "compile_model",
    "matching_object_amplitude",
    "normalise_probe",
    "probe_scale_for",
]

logger = logging.getLogger(__name__)

SATURATING_AMPLITUDE = 0.75
"""Matching object amplitude above which building a PINN with a sigmoid head logs a warning."""


@dataclass(frozen=True)
class BuiltModel:
    """The Keras models of one network and what they were built from.

    Attributes
    ----------
    config
        The model settings.
    training
        The model to fit. PINN: ``[s * X, relative] -> [object, amplitude, intensity]``;
        baseline: ``X -> [amplitude, phase]``.
    inference
        The model to predict with, sharing the weights of ``training``. PINN:
        ``[s * X, relative] -> object`` (batch, N, N, 1) complex64; baseline: the same model as
        ``training``.
    probe
        (N, N) complex64 normalised probe the PINN was built with; ``None`` for the baseline.
    intensity_scale
        Photon scale s the PINN was built with (initial value of its log s weight).
    """

    config: ModelConfig
    training: Any
    inference: Any
    probe: np.ndarray | None
    intensity_scale: float


def _disk(n: int, radius: float) -> np.ndarray:
    """Return an (n, n) bool disk of ``radius`` pixels centred on pixel (n/2, n/2)."""
    coordinates = np.arange(n) - n // 2
    return (coordinates[None, :] ** 2 + coordinates[:, None] ** 2) < radius**2


def normalise_probe(probe: np.ndarray, *, probe_scale: float) -> np.ndarray:
    """Rescale a probe so the predicted object amplitude stays of order one.

    The result is ``P / (probe_scale * mean(|P * disk|))``, where the mean runs over all N x N
    pixels and ``disk`` is 1 within N/4 pixels of the centre, 0 elsewhere.

    Parameters
    ----------
    probe
        (N, N) complex illumination on the object pixel grid.
    probe_scale
        Divisor of the normalised probe (> 0).

    Returns
    -------
    numpy.ndarray
        (N, N) complex64 normalised probe.
    """
    values = np.asarray(probe).astype(np.complex64)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise InvalidInputError(
            f"probe: invalid shape {values.shape!r}; expected a square (N, N) complex array."
        )
    n = values.shape[0]
    central_mean = float(np.mean(np.abs(values * _disk(n, n / 4))))
    if not central_mean > 0 or not math.isfinite(central_mean):
        raise InvalidInputError(
            f"probe: the mean amplitude within N/4 = {n // 4} px of the centre is "
            f"{central_mean!r}; the probe must be finite and centred on the patch."
        )
    return (values / (probe_scale * central_mean)).astype(np.complex64)


def matching_object_amplitude(probe: np.ndarray, *, probe_scale: float) -> float:
    """Return the object amplitude that the normalised data need with this probe.

    Grouping scales every pattern set so that the mean summed squared amplitude is ``(N/2)**2``.
    By Parseval's theorem, a uniform object of amplitude ``a`` under the normalised probe
    ``P_n`` diffracts ``a**2 * sum|P_n|**2``, so the data are matched by
    ``a = (N/2) / sqrt(sum|P_n|**2)``. With the default probe and ``probe_scale`` 4 this is
    about 0.64. Near 1 a sigmoid amplitude head works at its ceiling, where it saturates.

    Parameters
    ----------
    probe
        (N, N) complex probe as stored.
    probe_scale
        Divisor of the normalised probe (see :func:`normalise_probe`).

    Returns
    -------
    float
        The matching amplitude (dimensionless).
    """
    normalised = normalise_probe(probe, probe_scale=probe_scale)
    energy = float(np.sum(np.abs(normalised) ** 2))
    return normalised.shape[0] / 2 / math.sqrt(energy)


def probe_scale_for(probe: np.ndarray, *, object_amplitude: float = 0.5) -> float:
    """Return the ``probe_scale`` whose matching object amplitude is ``object_amplitude``.

    The matching amplitude is proportional to ``probe_scale``
    (see :func:`matching_object_amplitude`), so one evaluation fixes the ratio. The default 0.5
    puts the data in the middle of a sigmoid amplitude head.

    Returns
    -------
    float
        The probe scale (> 0), rounded to three significant digits.
    """
    if not 0 < object_amplitude < 1:
        raise InvalidInputError(
            f"object_amplitude: invalid value {object_amplitude!r}; use a value in (0, 1)."
        )
    per_unit_scale = matching_object_amplitude(probe, probe_scale=1.0)
    return float(f"{object_amplitude / per_unit_scale:.3g}")


def _check_scale(intensity_scale: float) -> None:
    if not (math.isfinite(intensity_scale) and intensity_scale > 0):
        raise InvalidInputError(
            f"intensity_scale: invalid value {intensity_scale!r}; use the group's positive "
            "`intensity_scale` attribute (s = sqrt(nphotons) / (N/2))."
        )


def _pinn_probe(config: ModelConfig, probe: np.ndarray | None) -> np.ndarray:
    """Check the probe given for a PINN and return it normalised."""
    if probe is None:
        raise InvalidInputError(
            "probe: the PINN needs the (N, N) probe of the data; pass the store's `probe` array."
        )
    if np.shape(probe) != (config.n, config.n):
        raise InvalidInputError(
            f"probe: shape {np.shape(probe)!r} does not match N={config.n}; the probe must be "
            f"({config.n}, {config.n}). Crop or pad it when converting the data."
        )
    if config.gridsize > 1 and config.max_offset_px == 0:
        logger.warning(
            "max_offset_px is 0 for gridsize %d: the merge canvas has a 1 px margin, so group "
            "members further from their centroid are cut off. Pass the group's `max_offset_px`.",
            config.gridsize,
        )
    _warn_if_saturating(config, probe)
    return normalise_probe(probe, probe_scale=config.probe_scale)


def _warn_if_saturating(config: ModelConfig, probe: np.ndarray) -> None:
    if config.amp_activation != "sigmoid":
        return
    amplitude = matching_object_amplitude(probe, probe_scale=config.probe_scale)
    if amplitude > SATURATING_AMPLITUDE:
        logger.warning(
            "With probe_scale %.3g the data need an object amplitude of about %.2f, close to the "
            "sigmoid head's ceiling of 1, so the amplitude output can saturate and training "
            "stall. Use probe_scale %.3g (--probe-scale auto), which puts it at 0.5.",
            config.probe_scale, amplitude, probe_scale_for(probe),
        )


def build_model(config: ModelConfig, *, probe: np.ndarray | None, intensity_scale: float,
                seed: int | None = None) -> BuiltModel:
    """Build the network that ``config.kind`` names.

    Parameters
    ----------
    config
        Frozen model settings (kind, N, gridsize, filters, physics options, ``max_offset_px``).
    probe
        (N, N) complex probe as stored (normalised here with ``config.probe_scale``); required
        for the PINN, ignored by the baseline.
    intensity_scale
        Photon scale s of the training data (> 0).
    seed
        Seed of the weight initialisation; ``None`` draws from Keras's global generator.

    Returns
    -------
    BuiltModel
        The training and inference models, uncompiled; see :func:`compile_model`.
    """
    _check_scale(intensity_scale)
    if config.kind == "baseline":
        model = build_baseline(config, seed=seed)
        return BuiltModel(config, model, model, None, float(intensity_scale))

    normalised = _pinn_probe(config, probe)
    training, inference = build_pinn(config, probe=normalised, intensity_scale=intensity_scale,
                                     seed=seed)
    return BuiltModel(config, training, inference, normalised, float(intensity_scale))


def compile_model(built: BuiltModel, *, learning_rate: float = 1e-3) -> None:
    """Compile the training model with Adam and the losses of its kind.

    PINN: Poisson NLL on the intensity times ``config.nll_weight`` plus MAE on the amplitude
    times ``config.mae_weight``. A loss with weight 0 is left out, and the object output has no
    loss. Baseline: MAE on amplitude and on phase, weight 1 each.
    """
    config = built.config
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if config.kind == "baseline":
        built.training.compile(optimizer=optimizer, loss=["mae", "mae"])
        return

    if config.nll_weight == 0 and config.mae_weight == 0:
        raise InvalidInputError(
            "nll_weight and mae_weight are both 0, so the PINN has no loss; set at least one "
            "of them > 0 (the reference uses nll_weight=1)."
        )
    losses = [
        None,
        "mae" if config.mae_weight > 0 else None,
        poisson_nll_loss if config.nll_weight > 0 else None,
    ]
    weights = [0.0, config.mae_weight, config.nll_weight]
    built.training.compile(optimizer=optimizer, loss=losses, loss_weights=weights)
