"""Output files of a comparison: metric table, FRC curves, figures and NPZ reconstructions.

Every file is written to a temporary name and renamed, so a reader never finds half a file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptychozarr.alignment import align_phase, match_amplitude
from ptychozarr.metrics import SCALAR_METRICS

if TYPE_CHECKING:
    from ptychozarr.compare import ArmResult, CompareConfig

__all__ = ["metric_rows", "write_report", "write_rows"]

METRIC_COLUMNS = ("model", "metric", "amplitude", "phase", "value")
FRC_COLUMNS = ("model", "frequency_bin", "frequency_cycles_per_px", "frequency_per_m",
               "amplitude_frc", "phase_frc", "halfbit_threshold")


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write, renamed to ``path`` on success."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def metric_rows(arms: Sequence[ArmResult]) -> list[dict[str, Any]]:
    """Return the table rows: model, metric, amplitude, phase, value (missing entries ``None``).

    Metrics with an amplitude and a phase value fill those two columns. Single numbers fill
    ``value``: registration offsets in pixels, data residuals, computation time in seconds.
    """
    rows: list[dict[str, Any]] = []

    def add(label: str, metric: str, *, amplitude: float | None = None,
            phase: float | None = None, value: float | None = None) -> None:
        rows.append({"model": label, "metric": metric, "amplitude": amplitude, "phase": phase,
                     "value": value})

    for arm in arms:
        if arm.evaluation is not None:
            for name in SCALAR_METRICS:
                amplitude, phase = arm.evaluation.values[name]
                add(arm.label, name, amplitude=amplitude, phase=phase)
        if arm.alignment is not None:
            add(arm.label, "registration_offset_dy", value=arm.alignment.shift_dy_px)
            add(arm.label, "registration_offset_dx", value=arm.alignment.shift_dx_px)
        for name, value in (arm.residual or {}).items():
            add(arm.label, name, value=value)
        if arm.computation_time_s is not None:
            add(arm.label, "computation_time_s", value=arm.computation_time_s)
    return rows


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_rows(csv_path: Path, json_path: Path, rows: Sequence[Mapping[str, Any]],
               meta: Mapping[str, Any]) -> None:
    """Write the metric rows as CSV and as JSON (where non-finite values become ``null``)."""
    with _replacing(csv_path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})

    document = {**meta, "rows": [{key: _json_value(value) for key, value in row.items()}
                                 for row in rows]}
    with _replacing(json_path) as temporary:
        temporary.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _write_frc(path: Path, arms: Sequence[ArmResult]) -> None:
    with _replacing(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FRC_COLUMNS)
        for arm in arms:
            if arm.evaluation is None:
                continue
            amplitude, phase = arm.evaluation.frc_amplitude, arm.evaluation.frc_phase
            per_m = amplitude.frequency_per_m
            for ring, frequency in enumerate(amplitude.frequency_cycles_per_px):
                writer.writerow([arm.label, ring, frequency,
                                 "" if per_m is None else per_m[ring],
                                 amplitude.correlation[ring], phase.correlation[ring],
                                 amplitude.halfbit_threshold[ring]])


def _save_figure(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with _replacing(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def _frc_figure(path: Path, arms: Sequence[ArmResult]) -> None:
    import matplotlib.pyplot as plt

    from ptychozarr.plotting import plot_frc

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    scored = [arm for arm in arms if arm.evaluation is not None]
    plot_frc({arm.label: arm.evaluation.frc_amplitude for arm in scored  # type: ignore[union-attr]
              }, ax=axes[0], title="FRC, amplitude")
    plot_frc({arm.label: arm.evaluation.frc_phase for arm in scored  # type: ignore[union-attr]
              }, ax=axes[1], title="FRC, phase")
    _save_figure(figure, path)


def _panels(arms: Sequence[ArmResult], truth: np.ndarray | None,
            method: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return label to (amplitude, phase) images as drawn: aligned and adjusted when scored."""
    panels = {}
    for arm in arms:
        image = arm.aligned if arm.aligned is not None and truth is not None else arm.reconstruction
        amplitude, phase = np.abs(image), np.angle(image)
        if truth is not None:
            amplitude = match_amplitude(amplitude, np.abs(truth))
            phase = align_phase(phase, method=method)  # type: ignore[arg-type]
        panels[arm.label] = (amplitude, phase)
    if truth is not None:
        panels["ground truth"] = (np.abs(truth), align_phase(np.angle(truth),
                                                             method=method))  # type: ignore[arg-type]
    return panels


def _limits(images: Sequence[np.ndarray], percentiles: tuple[float, float],
            symmetric: bool = False) -> tuple[float, float]:
    values = np.concatenate([image[np.isfinite(image)].ravel() for image in images])
    if symmetric:
        bound = float(np.percentile(np.abs(values), percentiles[1])) or 1.0
        return -bound, bound
    low, high = (float(value) for value in np.percentile(values, percentiles))
    return low, max(high, low + 1e-12)


def _comparison_figure(path: Path, arms: Sequence[ArmResult], truth: np.ndarray | None,
                       config: CompareConfig) -> None:
    import matplotlib.pyplot as plt

    panels = _panels(arms, truth, config.phase_align_method)
    rows: list[tuple[str, Callable[[str], np.ndarray | None], str, bool]] = [
        ("phase (rad)", lambda label: panels[label][1], "viridis", False),
        ("amplitude", lambda label: panels[label][0], "gray", False),
    ]
    if truth is not None:
        reference = panels["ground truth"]
        rows += [
            ("phase error (rad)", lambda label: None if label == "ground truth"
             else np.angle(np.exp(1j * (panels[label][1] - reference[1]))), "RdBu_r", True),
            ("amplitude error", lambda label: None if label == "ground truth"
             else panels[label][0] - reference[0], "RdBu_r", True),
        ]
    figure, axes = plt.subplots(len(rows), len(panels), squeeze=False, layout="constrained",
                                figsize=(3.2 * len(panels) + 1, 3.0 * len(rows)))
    for row, (quantity, select, cmap, symmetric) in enumerate(rows):
        images = {label: select(label) for label in panels}
        drawn = [image for image in images.values() if image is not None]
        low, high = _limits(drawn, config.plot_percentiles, symmetric)
        for column, (label, image) in enumerate(images.items()):
            ax = axes[row][column]
            ax.set_axis_off()
            if image is None:
                continue
            mappable = ax.imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            ax.set_title(f"{label}: {quantity.split(' (')[0]}", fontsize="medium")
        figure.colorbar(mappable, ax=list(axes[row]), label=quantity, shrink=0.85)
    _save_figure(figure, path)


def _npz_prefix(label: str) -> str:
    return label.lower().replace(" ", "_")


def _write_npz(path: Path, images: Mapping[str, np.ndarray], extra: Mapping[str, Any]) -> None:
    arrays: dict[str, Any] = {}
    for label, image in images.items():
        prefix = _npz_prefix(label)
        arrays[f"{prefix}_complex"] = image.astype(np.complex64)
        arrays[f"{prefix}_amplitude"] = np.abs(image).astype(np.float32)
        arrays[f"{prefix}_phase"] = np.angle(image).astype(np.float32)
    arrays.update(extra)
    with _replacing(path) as temporary, temporary.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def write_report(out: Path, arms: Sequence[ArmResult], rows: Sequence[Mapping[str, Any]], *,
                 ground_truth: np.ndarray | None, aligned_truth: np.ndarray | None,
                 config: CompareConfig, meta: Mapping[str, Any]) -> dict[str, Path]:
    """Write every output file of a comparison into ``out`` and return them by name."""
    files = {"metrics_csv": out / "comparison_metrics.csv",
             "metrics_json": out / "comparison_metrics.json",
             "plot": out / "comparison_plot.png"}
    write_rows(files["metrics_csv"], files["metrics_json"], rows,
               {**meta, "config": config.to_dict()})
    _comparison_figure(files["plot"], arms, aligned_truth, config)
    if any(arm.evaluation is not None for arm in arms):
        files["frc_csv"] = out / "frc_curves.csv"
        files["frc_plot"] = out / "frc_curves.png"
        _write_frc(files["frc_csv"], arms)
        _frc_figure(files["frc_plot"], arms)

    if config.save_npz:
        files["npz"] = out / "reconstructions.npz"
        images = {arm.label: arm.reconstruction for arm in arms}
        origins = {f"{_npz_prefix(arm.label)}_origin_xy_px": np.asarray(arm.origin_xy_px)
                   for arm in arms}
        if ground_truth is not None:
            images["ground truth"] = ground_truth
        _write_npz(files["npz"], images, origins)
        if aligned_truth is not None:
            files["npz_aligned"] = out / "reconstructions_aligned.npz"
            aligned = {arm.label: arm.aligned for arm in arms if arm.aligned is not None}
            offsets = {f"{_npz_prefix(arm.label)}_offset_{axis}": getattr(arm.alignment,
                                                                         f"shift_{axis}_px")
                       for arm in arms if arm.alignment is not None for axis in ("dy", "dx")}
            _write_npz(files["npz_aligned"], {**aligned, "ground truth": aligned_truth}, offsets)
    return files
