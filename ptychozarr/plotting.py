"""Matplotlib figures of what people inspect in a store: patterns, scans, probes, objects, scores.

Every function accepts NumPy arrays or ``xarray.DataArray`` objects (a lazy, Dask-backed one is
computed for the part that is drawn), draws into the axes given with ``ax``/``axes`` or into a new
figure, and returns what it drew into. None of them calls ``plt.show``: in a notebook the figure
appears when the cell ends, in a script call ``fig.savefig``. Matplotlib is imported on the first
call, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ptychozarr.errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_complex",
    "plot_diffraction",
    "plot_frc",
    "plot_history",
    "plot_reconstructions",
    "plot_scan_positions",
]

logger = logging.getLogger(__name__)

FRC_THRESHOLDS = {"0.5": 0.5, "1/7": 1.0 / 7.0}
"""Fixed FRC thresholds drawn as horizontal lines by :func:`plot_frc`."""


def _pyplot() -> Any:
    import matplotlib.pyplot as plt

    return plt


def _values(array: Any, *, ndim: int, name: str) -> np.ndarray:
    """Return ``array`` (NumPy, DataArray or Dask) as a NumPy array with ``ndim`` dimensions."""
    values = np.asarray(getattr(array, "values", array))
    values = np.squeeze(values) if values.ndim > ndim else values
    if values.ndim != ndim:
        raise InvalidInputError(
            f"{name}: expected a {ndim}-D array, got shape {values.shape!r}. Select one item "
            "first, for example dataset.diffraction.isel(scan=0)."
        )
    return values


def _attribute(array: Any, key: str, default: str) -> str:
    attrs = getattr(array, "attrs", None) or {}
    return str(attrs.get(key, default))


def _new_axes(ax: Axes | None, *, figsize: tuple[float, float] = (4.5, 4.0)) -> Axes:
    if ax is not None:
        return ax
    _, new_ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return new_ax


def _new_axes_row(axes: Sequence[Axes] | None, count: int, *,
                  panel_size: float = 3.6) -> tuple[Figure, list[Axes]]:
    if axes is not None:
        if len(axes) != count:
            raise InvalidInputError(f"axes: expected {count} axes, got {len(axes)}.")
        return axes[0].get_figure(root=True), list(axes)  # type: ignore[return-value]
    figure, new_axes = _pyplot().subplots(1, count, figsize=(panel_size * count, panel_size),
                                          layout="constrained", squeeze=False)
    return figure, list(new_axes[0])


def _colorbar(ax: Axes, image: Any, *, label: str) -> None:
    figure: Any = ax.get_figure(root=True)
    figure.colorbar(image, ax=ax, label=label, shrink=0.85)


def _finish_image(ax: Axes, image: Any, *, title: str, label: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("x (column, px)")
    ax.set_ylabel("y (row, px)")
    _colorbar(ax, image, label=label)


def plot_diffraction(pattern: Any, *, ax: Axes | None = None, floor: float | None = None,
                     title: str | None = None, cmap: str = "magma") -> Axes:
    """Draw one diffraction pattern as intensity on a logarithmic colour scale.

    Parameters
    ----------
    pattern
        (ky, kx) far-field amplitude, zero frequency centred, as stored in ``diffraction``
        (sqrt(photons) when the store's ``amplitude_scale`` is ``counts``). A DataArray keeps
        its ``units`` for the colour-bar label.
    ax
        Axes to draw into; default: a new figure.
    floor
        Smallest intensity shown; zeros and smaller values take its colour. Default: the smallest
        positive intensity of the pattern.
    title
        Axes title; default ``"diffraction"``.
    cmap
        Matplotlib colour map.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.
    """
    from matplotlib.colors import LogNorm

    amplitude = _values(pattern, ndim=2, name="pattern").astype(np.float64)
    intensity = amplitude**2
    positive = intensity[intensity > 0]
    if floor is None:
        floor = float(positive.min()) if positive.size else 1.0
    top = max(float(intensity.max()), floor * 10)

    ax = _new_axes(ax)
    image = ax.imshow(np.maximum(intensity, floor), norm=LogNorm(vmin=floor, vmax=top),
                      cmap=cmap, interpolation="nearest")
    unit = "photons" if _attribute(pattern, "units", "") == "sqrt(photons)" else "arbitrary units"
    ax.set_title(title or "diffraction")
    ax.set_xlabel("kx (detector column, px)")
    ax.set_ylabel("ky (detector row, px)")
    _colorbar(ax, image, label=f"intensity ({unit})")
    return ax


def plot_scan_positions(x: Any, y: Any, *, obj: Any | None = None, ax: Axes | None = None,
                        title: str | None = None, marker_size: float = 4.0) -> Axes:
    """Draw the scan positions, over the object amplitude when an object is given.

    Parameters
    ----------
    x, y
        (scan,) patch centres: x = column, y = row, float, in object pixels (or metres without
        ``obj``). DataArrays keep their ``units``.
    obj
        (oy, ox) complex object on the same pixel grid as the positions; its amplitude is drawn
        underneath.
    ax
        Axes to draw into; default: a new figure.
    title
        Axes title; default ``"scan positions"``.
    marker_size
        Marker size in points squared.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Raises
    ------
    InvalidInputError
        ``x`` and ``y`` differ in length, or positions in metres are to be drawn over an object.
    """
    xs = _values(x, ndim=1, name="x")
    ys = _values(y, ndim=1, name="y")
    if xs.shape != ys.shape:
        raise InvalidInputError(f"x and y: lengths differ ({xs.size} != {ys.size}).")
    units = _attribute(x, "units", "pixel")
    if obj is not None and units != "pixel":
        raise InvalidInputError(
            f"x: positions are in {units!r}, but drawing over the object needs object pixels. "
            "Draw without obj, or convert the positions with the object's pixel size."
        )

    ax = _new_axes(ax, figsize=(5.0, 4.5))
    if obj is not None:
        amplitude = np.abs(_values(obj, ndim=2, name="obj"))
        image = ax.imshow(amplitude, cmap="gray", interpolation="nearest")
        _colorbar(ax, image, label="object amplitude")
    ax.scatter(xs, ys, s=marker_size, c=np.arange(xs.size), cmap="viridis", label="scan")
    if obj is None:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    unit_label = "px" if units == "pixel" else units
    ax.set_xlabel(f"x (column, {unit_label})")
    ax.set_ylabel(f"y (row, {unit_label})")
    ax.set_title(title or f"scan positions ({xs.size})")
    return ax


def plot_complex(image: Any, *, axes: Sequence[Axes] | None = None, title: str = "",
                 phase_range: tuple[float, float] | None = (-np.pi, np.pi),
                 phase_mask: float = 0.0) -> Figure:
    """Draw the amplitude and the phase of a complex image side by side (a probe, an object).

    Parameters
    ----------
    image
        (rows, columns) complex array.
    axes
        Two axes to draw amplitude and phase into; default: a new figure.
    title
        Prefix of both panel titles.
    phase_range
        Colour limits of the phase in radians; ``None`` scales to the data. The default shows
        wrapped phase on a cyclic colour map.
    phase_mask
        Leave the phase blank where the amplitude is below this fraction of its maximum, for
        example 0.05 for a probe, whose phase outside the beam is meaningless.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into.
    """
    values = _values(image, ndim=2, name="image")
    figure, (amplitude_ax, phase_ax) = _new_axes_row(axes, 2)
    prefix = f"{title} " if title else ""

    amplitude = amplitude_ax.imshow(np.abs(values), cmap="gray", interpolation="nearest")
    _finish_image(amplitude_ax, amplitude, title=f"{prefix}amplitude", label="amplitude")

    phase_values = np.angle(values)
    if phase_mask > 0:
        phase_values = np.where(np.abs(values) >= phase_mask * np.abs(values).max(),
                                phase_values, np.nan)
    limits = phase_range or (None, None)
    phase = phase_ax.imshow(phase_values, cmap="twilight" if phase_range else "viridis",
                            vmin=limits[0], vmax=limits[1], interpolation="nearest")
    _finish_image(phase_ax, phase, title=f"{prefix}phase", label="phase (rad)")
    return figure


def _percentile_limits(images: Sequence[np.ndarray],
                       percentiles: tuple[float, float]) -> tuple[float, float]:
    finite = np.concatenate([image[np.isfinite(image)].ravel() for image in images])
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, percentiles)
    return float(low), float(max(high, low + 1e-12))


def plot_reconstructions(reconstructions: Mapping[str, Any], *, ground_truth: Any | None = None,
                         percentiles: tuple[float, float] = (1.0, 99.0)) -> Figure:
    """Draw reconstructions beside the ground truth: amplitude on the top row, phase below.

    Parameters
    ----------
    reconstructions
        Label (``"PtychoPINN"``, ``"Baseline"``, ...) to a (oy, ox) complex object. Arrays of
        different sizes are allowed; align them to the ground truth first to compare pixels.
    ground_truth
        (oy, ox) complex object drawn in the last column, titled ``"ground truth"``.
    percentiles
        Lower and upper percentiles of all drawn values that set the shared colour limits of each
        row, so one outlier pixel does not wash out the others.

    Returns
    -------
    matplotlib.figure.Figure
        A new figure with 2 rows and one column per reconstruction (plus the ground truth).

    Raises
    ------
    InvalidInputError
        Nothing to draw.
    """
    panels = {label: _values(image, ndim=2, name=label) for label, image in reconstructions.items()}
    if ground_truth is not None:
        panels["ground truth"] = _values(ground_truth, ndim=2, name="ground_truth")
    if not panels:
        raise InvalidInputError("reconstructions: nothing to draw; pass at least one image.")

    amplitudes = [np.abs(image) for image in panels.values()]
    phases = [np.angle(image) for image in panels.values()]
    rows = (("amplitude", amplitudes, "gray", ""), ("phase", phases, "viridis", " (rad)"))
    figure, axes = _pyplot().subplots(2, len(panels), figsize=(3.4 * len(panels), 6.4),
                                      layout="constrained", squeeze=False)
    for row, (quantity, images, cmap, unit) in enumerate(rows):
        low, high = _percentile_limits(images, percentiles)
        for column, (label, image) in enumerate(zip(panels, images, strict=True)):
            ax = axes[row][column]
            drawn = ax.imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            ax.set_title(f"{label} {quantity}")
            ax.set_axis_off()
        figure.colorbar(drawn, ax=list(axes[row]), label=f"{quantity}{unit}", shrink=0.85)
    return figure


def plot_frc(curves: Mapping[str, Any], *, frequency: Any | None = None,
             frequency_label: str | None = None, ax: Axes | None = None,
             thresholds: Mapping[str, float] | None = None, halfbit: bool = True,
             title: str | None = None) -> Axes:
    """Draw Fourier ring correlation curves with the fixed 0.5 and 1/7 thresholds.

    Parameters
    ----------
    curves
        Label (for example ``"PtychoPINN amplitude"``) to one curve, either a
        :class:`ptychozarr.metrics.FRCCurve` (drawn against spatial frequency: in 1/µm when its
        pixel size is known, else in cycles per pixel, with its half-bit threshold), a DataArray
        with a ``frequency`` coordinate, or a (ring,) array of FRC values.
    frequency
        (ring,) x positions for the curves given as plain arrays; default: the ring index.
    frequency_label
        Label of the x axis, with units; default: taken from the first curve.
    ax
        Axes to draw into; default: a new figure.
    thresholds
        Label to constant threshold drawn as a dashed line; default: 0.5 and 1/7.
    halfbit
        Draw the half-bit threshold of each :class:`~ptychozarr.metrics.FRCCurve` as a dotted
        line in the curve's colour.
    title
        Axes title; default ``"Fourier ring correlation"``.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Raises
    ------
    InvalidInputError
        ``frequency`` does not have one value per ring of a curve.
    """
    ax = _new_axes(ax, figsize=(5.5, 4.0))
    labels = []
    for label, curve in curves.items():
        x_values, values, axis_label = _frc_points(curve, frequency, label=label)
        labels.append(axis_label)
        (line,) = ax.plot(x_values, values, label=label)
        if halfbit and hasattr(curve, "halfbit_threshold"):
            ax.plot(x_values, np.asarray(curve.halfbit_threshold), linestyle=":",
                    color=line.get_color(), label=f"{label} half-bit threshold")
    for label, level in (thresholds if thresholds is not None else FRC_THRESHOLDS).items():
        ax.axhline(level, linestyle="--", linewidth=0.8, color="gray")
        ax.annotate(label, (1.0, level), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize="small", color="gray")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
    ax.set_xlabel(frequency_label or (labels[0] if labels else "ring index"))
    ax.set_ylabel("FRC")
    ax.set_title(title or "Fourier ring correlation")
    if curves:
        ax.legend(fontsize="small")
    return ax


def _frc_points(curve: Any, frequency: Any | None, *,
                label: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Return the x values, FRC values and x-axis label of one curve."""
    if hasattr(curve, "correlation"):
        values = np.asarray(curve.correlation, dtype=np.float64)
        per_m = curve.frequency_per_m
        if per_m is not None:
            return np.asarray(per_m) * 1e-6, values, "spatial frequency (1/µm)"
        per_px = np.asarray(curve.frequency_cycles_per_px)
        return per_px, values, "spatial frequency (cycles/pixel)"

    values = np.asarray(getattr(curve, "values", curve), dtype=np.float64)
    coordinates = getattr(curve, "coords", {})
    if frequency is None and "frequency" in coordinates:
        frequency = coordinates["frequency"]
    if frequency is None:
        return np.arange(values.size), values, "ring index"
    x_values = np.asarray(getattr(frequency, "values", frequency), dtype=np.float64)
    if x_values.shape != values.shape:
        raise InvalidInputError(
            f"frequency: shape {x_values.shape!r} does not match curve {label!r} of "
            f"{values.size} rings."
        )
    return x_values, values, "frequency"


def plot_history(history: Mapping[str, Sequence[float]], *, keys: Sequence[str] | None = None,
                 ax: Axes | None = None, log_scale: bool = True,
                 title: str | None = None) -> Axes:
    """Draw training curves from a bundle's ``history`` (Keras ``History.history`` layout).

    Parameters
    ----------
    history
        Metric name to one value per epoch, for example ``{"loss": [...], "val_loss": [...]}``.
    keys
        Names to draw; default: every name that ends with ``loss``.
    ax
        Axes to draw into; default: a new figure.
    log_scale
        Logarithmic y axis when every drawn value is positive.
    title
        Axes title; default ``"training history"``.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Raises
    ------
    InvalidInputError
        A requested key is missing, or nothing is left to draw.
    """
    names = list(keys) if keys is not None else [name for name in history if name.endswith("loss")]
    missing = [name for name in names if name not in history]
    if missing:
        raise InvalidInputError(
            f"keys: {missing!r} not in the history; available: {sorted(history)!r}."
        )
    if not names:
        raise InvalidInputError(
            f"history: no loss curve to draw among {sorted(history)!r}; pass keys=[...]."
        )

    ax = _new_axes(ax, figsize=(5.5, 4.0))
    all_positive = True
    for name in names:
        values = np.asarray(history[name], dtype=np.float64)
        epochs = np.arange(1, values.size + 1)
        ax.plot(epochs, values, marker="o", markersize=3, label=name)
        all_positive = all_positive and bool(np.all(values > 0))
    if log_scale and all_positive:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    ax.set_title(title or "training history")
    ax.legend(fontsize="small")
    return ax
