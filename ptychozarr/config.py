"""Frozen, validated configuration objects passed explicitly to each step.

There is no global parameter dictionary: every function that needs a setting takes the config
object that holds it. Each config checks its fields on construction and converts to and from
plain JSON dictionaries (``to_dict``/``from_dict``) so bundles and runs can record them.
Configs defined in other modules build on the same base class, :class:`ConfigBase`, and check
their fields with :func:`require`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ptychozarr.errors import InvalidInputError

__all__ = [
    "SUPPORTED_N",
    "ConfigBase",
    "GroupingConfig",
    "ModelConfig",
    "TrainingConfig",
    "require",
]

SUPPORTED_N = (64, 128, 256)
"""Pattern sides (pixels) for which the networks are defined."""

_ConfigT = TypeVar("_ConfigT", bound="ConfigBase")


class ConfigBase:
    """JSON round trip shared by the config dataclasses.

    A subclass is a frozen dataclass whose ``__post_init__`` checks its fields with
    :func:`require`. Besides the configs here, :class:`ptychozarr.simulate.SimulationConfig`
    derives from it.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dictionary."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_ConfigT], values: Mapping[str, Any]) -> _ConfigT:
        """Build the config from a dictionary, rejecting unknown keys."""
        known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"{cls.__name__}: unknown option(s) {unknown!r}. Valid options: {sorted(known)!r}."
            )
        return cls(**values)


def require(condition: bool, message: str) -> None:
    """Raise :class:`InvalidInputError` with ``message`` unless ``condition`` is true."""
    if not condition:
        raise InvalidInputError(message)


_BOX_PATTERN = re.compile(r"^box:(-?[\d.]+),(-?[\d.]+),(-?[\d.]+),(-?[\d.]+)$")
REGIONS = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class GroupingConfig(ConfigBase):
    """How scan positions are grouped into model inputs.

    Attributes
    ----------
    gridsize
        Side of the group: each group has ``gridsize**2`` members (channels). 1 or 2.
    neighbors
        K, the number of nearest neighbours among which group members are drawn.
    seed
        Seed of the random draw of members and of any subsampling.
    n_groups
        Number of groups; ``None`` makes one group per selected position. More groups than
        positions require ``oversample=True`` (gridsize 2 only).
    region
        Spatial part of the scan: ``"top"``, ``"bottom"``, ``"left"``, ``"right"`` (halves split
        at the median position, top = smaller row), ``"box:x0,x1,y0,y1"`` in object pixels
        (half-open), or ``None`` for the whole scan.
    oversample
        Allow more groups than positions by drawing several member sets per seed position.
    """

    gridsize: int = 1
    neighbors: int = 7
    seed: int = 0
    n_groups: int | None = None
    region: str | None = None
    oversample: bool = False

    def __post_init__(self) -> None:
        require(self.gridsize in (1, 2),
                f"gridsize: invalid value {self.gridsize!r}; use 1 or 2.")
        channels = self.gridsize**2
        require(self.neighbors >= channels,
                f"neighbors: K={self.neighbors!r} is smaller than the group size {channels}; "
                f"use K >= {channels}.")
        require(self.n_groups is None or self.n_groups > 0,
                f"n_groups: invalid value {self.n_groups!r}; use a positive count or None.")
        require(not self.oversample or self.gridsize > 1,
                "oversample: only gridsize 2 can draw several groups per position; "
                "with gridsize 1 each position is one group.")
        require(self.region is None or self.region in REGIONS
                or bool(_BOX_PATTERN.match(self.region)),
                f"region: invalid value {self.region!r}; use one of {REGIONS!r} or "
                "'box:x0,x1,y0,y1' in object pixels.")

    @property
    def channels(self) -> int:
        """Members per group, C = gridsize**2."""
        return self.gridsize**2

    def region_box(self) -> tuple[float, float, float, float] | None:
        """Return ``(x0, x1, y0, y1)`` for a box region, else ``None``."""
        match = _BOX_PATTERN.match(self.region or "")
        if match is None:
            return None
        x0, x1, y0, y1 = (float(value) for value in match.groups())
        return x0, x1, y0, y1

    def default_name(self) -> str:
        """Name of the grouped view, encoding every parameter that changes the result."""
        count = "all" if self.n_groups is None else str(self.n_groups)
        region = (self.region or "full").replace(":", "-").replace(",", "_")
        suffix = "-oversampled" if self.oversample else ""
        return f"g{self.gridsize}-k{self.neighbors}-seed{self.seed}-n{count}-{region}{suffix}"


@dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """Architecture and physics settings of one network.

    Attributes
    ----------
    kind
        ``"pinn"`` (physics-informed, unsupervised) or ``"baseline"`` (supervised two-head CNN).
    n
        Pattern and patch side N in pixels: 64, 128 or 256.
    gridsize
        Group side; the PINN sees ``gridsize**2`` channels, the baseline one pattern at a time.
    n_filters_scale
        Multiplier of the filter counts of every convolution.
    amp_activation
        Output activation of the PINN amplitude head.
    phase_activation
        Output activation of the PINN phase head: ``"pi_tanh"`` (``pi * tanh``, the reference's,
        bounded to (-pi, pi)) or ``"linear"`` (unbounded; the phase enters only through
        ``exp(i phase)``, so it cannot saturate when the object's mean phase drifts towards
        ±pi, as it can on measured data).
    hidden_activation
        Activation of every hidden convolution of either network: ``"relu"`` (the reference's) or
        ``"leaky_relu"`` (slope 0.2 below zero). A ReLU unit whose output is zero for every input
        gets no gradient, so it never recovers. A leaky unit always passes some gradient.
    probe_trainable
        Let the PINN refine the probe.
    intensity_scale_trainable
        Let the PINN refine the photon scale s (held as log s).
    probe_scale
        The probe is normalised to ``P / (probe_scale * mean|P * disk(N/4)|)`` before training.
    max_offset_px
        Largest distance (pixels) of a group member from its centroid in the training data; sets
        the PINN's merge canvas. 0 for gridsize 1.
    nll_weight, mae_weight
        Weights of the Poisson NLL on intensities and of the amplitude MAE (PINN only).
    """

    kind: Literal["pinn", "baseline"] = "pinn"
    n: int = 64
    gridsize: int = 1
    n_filters_scale: int = 2
    amp_activation: Literal["sigmoid", "swish", "softplus", "relu"] = "sigmoid"
    phase_activation: Literal["pi_tanh", "linear"] = "pi_tanh"
    hidden_activation: Literal["relu", "leaky_relu"] = "relu"
    probe_trainable: bool = False
    intensity_scale_trainable: bool = False
    probe_scale: float = 4.0
    max_offset_px: float = 0.0
    nll_weight: float = 1.0
    mae_weight: float = 0.0

    def __post_init__(self) -> None:
        require(self.kind in ("pinn", "baseline"),
                f"kind: invalid value {self.kind!r}; use 'pinn' or 'baseline'.")
        require(self.n in SUPPORTED_N,
                f"n: invalid pattern side {self.n!r}; the networks support N in {SUPPORTED_N!r}. "
                "Crop, bin or pad the detector data when converting (--crop, --bin, --pad).")
        require(self.gridsize in (1, 2),
                f"gridsize: invalid value {self.gridsize!r}; use 1 or 2.")
        require(self.phase_activation in ("pi_tanh", "linear"),
                f"phase_activation: invalid value {self.phase_activation!r}; use 'pi_tanh' or "
                "'linear'.")
        require(self.hidden_activation in ("relu", "leaky_relu"),
                f"hidden_activation: invalid value {self.hidden_activation!r}; use 'relu' or "
                "'leaky_relu'.")
        require(self.n_filters_scale >= 1,
                f"n_filters_scale: invalid value {self.n_filters_scale!r}; use an integer >= 1.")
        require(self.probe_scale > 0,
                f"probe_scale: invalid value {self.probe_scale!r}; use a positive number.")
        require(self.max_offset_px >= 0,
                f"max_offset_px: invalid value {self.max_offset_px!r}; use a distance >= 0.")

    @property
    def channels(self) -> int:
        """Members per group, C = gridsize**2."""
        return self.gridsize**2


@dataclass(frozen=True)
class TrainingConfig(ConfigBase):
    """Optimisation settings.

    Attributes
    ----------
    epochs, batch_size, learning_rate
        Adam optimiser settings (the reference uses 50, 16 and 1e-3).
    validation_fraction
        Fraction of groups held out for validation, in both the in-memory and streaming paths.
    seed
        Seed of weight initialisation, shuffling and the validation split.
    shuffle_buffer_groups
        Size of the streaming shuffle buffer in groups; bounds the memory of the streaming path.
    streaming_threshold_groups, streaming_threshold_bytes
        ``train`` streams from the store when the training set exceeds either threshold.
    lr_factor, lr_patience, lr_min
        Reduce-on-plateau schedule on the validation loss.
    early_stopping_patience
        Epochs without improvement of the training loss before stopping.
    """

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    validation_fraction: float = 0.05
    seed: int = 0
    shuffle_buffer_groups: int = 1024
    streaming_threshold_groups: int = 10_000
    streaming_threshold_bytes: int = 2 * 2**30
    lr_factor: float = 0.5
    lr_patience: int = 2
    lr_min: float = 1e-4
    early_stopping_patience: int = 3

    def __post_init__(self) -> None:
        require(self.epochs >= 1, f"epochs: invalid value {self.epochs!r}; use at least 1.")
        require(self.batch_size >= 1,
                f"batch_size: invalid value {self.batch_size!r}; use at least 1.")
        require(self.learning_rate > 0,
                f"learning_rate: invalid value {self.learning_rate!r}; use a positive number.")
        require(0 <= self.validation_fraction < 1,
                f"validation_fraction: invalid value {self.validation_fraction!r}; "
                "use a fraction in [0, 1).")
        require(self.shuffle_buffer_groups >= 1,
                f"shuffle_buffer_groups: invalid value {self.shuffle_buffer_groups!r}; "
                "use at least 1.")
