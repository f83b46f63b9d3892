"""Comparison of reconstructions (PINN, baseline, an iterative result) on one store.

:func:`compare_models` runs every model arm as one Dask job: inference and stitching of each
bundle (see :mod:`ptychozarr.inference`), and, without a ground truth, the data residual of each
stitched object. The store is grouped as each bundle needs unless a matching grouped view is
named. With a ground truth (the store's ``object``), each reconstruction is cropped to the scanned
region, registered within a bounded shift and scored (see :mod:`ptychozarr.alignment` and
:mod:`ptychozarr.metrics`). The results go to an output folder:

- ``comparison_metrics.csv``: one row per model and metric, columns ``model, metric, amplitude,
  phase, value`` (pairs in ``amplitude``/``phase``, single numbers in ``value``), and the same
  rows in ``comparison_metrics.json``;
- ``frc_curves.csv`` and ``frc_curves.png``: the Fourier ring correlation curves;
- ``comparison_plot.png``: phase and amplitude of each arm and of the ground truth, with error
  maps;
- on request, ``reconstructions.npz`` (as stitched) and ``reconstructions_aligned.npz``.

The stitched objects are also published in the store as prediction runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import zarr
from dask.utils import key_split
from distributed import Client, get_task_stream

from ptychozarr.alignment import (
    DEFAULT_BORDER_PX,
    DEFAULT_MAX_SHIFT_PX,
    Alignment,
    align_to_ground_truth,
    crop_region,
    register_shift,
    scan_region,
)
from ptychozarr.compare_report import metric_rows, write_report
from ptychozarr.config import GroupingConfig
from ptychozarr.errors import (
    BundleError,
    InputFileError,
    InputFileNotFoundError,
    InvalidInputError,
    StoreSchemaError,
)
from ptychozarr.inference import (
    BundleInfo,
    PredictionGraph,
    ProgressCallback,
    build_prediction_graph,
    read_bundle_info,
    resolve_group,
    run_predictions,
)
from ptychozarr.metrics import Evaluation, data_residual, evaluate, residual_sums
from ptychozarr.stitching import DEFAULT_CROP_SIZE
from ptychozarr.store import open_store

__all__ = ["ARM_LABELS", "ArmResult", "CompareConfig", "ComparisonResult", "check_inputs",
           "compare_models"]

logger = logging.getLogger(__name__)

ARM_LABELS = {"pinn": "PtychoPINN", "baseline": "Baseline"}
"""Model labels in tables and figures, as the reference compare_models writes them."""

_NPZ_LABELS = {"ptychi": "PtyChi", "pty-chi": "PtyChi", "tike": "Tike"}


@dataclass(frozen=True)
class CompareConfig:
    """Settings of :func:`compare_models`.

    Attributes
    ----------
    stitch_crop_size
        Side M (pixels) of the central crop of each patch that is stitched.
    skip_registration
        Score without the sub-pixel registration to the ground truth.
    max_shift_px
        Largest registration shift (pixels) searched along each axis.
    border_crop_px
        Pixels removed from every edge after registration, beyond the shift itself.
    phase_align_method
        ``"plane"`` removes a phase ramp and offset before scoring, ``"mean"`` the offset only.
    n_test_subsample
        Number of groups drawn when the store is grouped here (``None``: one per position).
    test_subsample_seed
        Seed of that draw and of the member choice.
    neighbors
        K nearest neighbours among which gridsize-2 members are drawn.
    region
        Spatial part of the scan grouped here (``top``, ``bottom``, ... or ``box:x0,x1,y0,y1``).
    pinn_predict_batch_size, baseline_predict_batch_size
        Groups (PINN) or patterns (baseline) per model call.
    frc_sigma
        Gaussian smoothing (rings) of the FRC curves.
    ms_ssim_sigma
        Gaussian smoothing (pixels) of the amplitudes before MS-SSIM.
    data_residual
        Compute the data residual: ``None`` does so only without a ground truth.
    save_npz
        Also write the reconstructions as NPZ files.
    plot_percentiles
        Lower and upper percentiles setting the colour limits of each figure row.
    """

    stitch_crop_size: int = DEFAULT_CROP_SIZE
    skip_registration: bool = False
    max_shift_px: float = DEFAULT_MAX_SHIFT_PX
    border_crop_px: int = DEFAULT_BORDER_PX
    phase_align_method: Literal["plane", "mean"] = "plane"
    n_test_subsample: int | None = None
    test_subsample_seed: int = 0
    neighbors: int = 7
    region: str | None = None
    pinn_predict_batch_size: int = 32
    baseline_predict_batch_size: int = 32
    frc_sigma: float = 0.0
    ms_ssim_sigma: float = 1.0
    data_residual: bool | None = None
    save_npz: bool = False
    plot_percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self) -> None:
        checks = [
            (self.stitch_crop_size >= 1, f"stitch_crop_size: invalid value "
             f"{self.stitch_crop_size!r}; use a crop side between 1 and N pixels."),
            (self.max_shift_px >= 0, f"max_shift_px: invalid value {self.max_shift_px!r}; use a "
             "distance >= 0."),
            (self.border_crop_px >= 0, f"border_crop_px: invalid value {self.border_crop_px!r}; "
             "use a pixel count >= 0."),
            (self.phase_align_method in ("plane", "mean"), "phase_align_method: invalid value "
             f"{self.phase_align_method!r}; use 'plane' or 'mean'."),
            (min(self.pinn_predict_batch_size, self.baseline_predict_batch_size) >= 1,
             "predict batch sizes must be at least 1."),
            (0 <= self.plot_percentiles[0] < self.plot_percentiles[1] <= 100,
             f"plot_percentiles: invalid value {self.plot_percentiles!r}; use (low, high) with "
             "0 <= low < high <= 100."),
        ]
        for valid, message in checks:
            if not valid:
                raise InvalidInputError(message)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON dictionary."""
        return dataclasses.asdict(self)


@dataclass
class ArmResult:
    """One compared reconstruction and its scores.

    Attributes
    ----------
    label
        ``PtychoPINN``, ``Baseline`` or the iterative algorithm's name.
    reconstruction
        (row, col) complex64 stitched object; pixel (0, 0) is object-frame pixel ``origin_xy_px``.
    run_path
        ``predictions/<model>/<run>`` in the store, ``None`` for an NPZ arm.
    aligned
        (row, col) complex64 reconstruction after alignment, with a ground truth.
    alignment, evaluation
        How it was aligned and its metrics, with a ground truth.
    residual
        Data residual values (see :func:`ptychozarr.metrics.data_residual`), when computed.
    computation_time_s
        Summed run time of the arm's inference tasks on the workers.
    """

    label: str
    reconstruction: np.ndarray
    origin_xy_px: tuple[int, int]
    run_path: str | None = None
    aligned: np.ndarray | None = None
    alignment: Alignment | None = None
    evaluation: Evaluation | None = None
    residual: dict[str, float] | None = None
    computation_time_s: float | None = None


@dataclass
class ComparisonResult:
    """Everything :func:`compare_models` computed and where it wrote it."""

    arms: list[ArmResult]
    ground_truth: np.ndarray | None
    aligned_ground_truth: np.ndarray | None
    rows: list[dict[str, Any]]
    files: dict[str, Path]


def _read_array(root: zarr.Group, name: str) -> np.ndarray:
    array = root[name]
    if not isinstance(array, zarr.Array):
        raise StoreSchemaError(f"{name!r} is a group in the store, expected an array.")
    return np.asarray(array[...])


# Data residual --------------------------------------------------------------------------------

def _block_residual(x: np.ndarray, relative: np.ndarray, offsets: np.ndarray, obj: np.ndarray,
                    *, probe: np.ndarray, origin_xy_px: tuple[int, int]) -> np.ndarray:
    members = (offsets[:, None, :] - relative).reshape(-1, 2) - np.asarray(origin_xy_px)
    measured = np.moveaxis(x, -1, 1).reshape(-1, x.shape[1], x.shape[2])
    return residual_sums(obj, probe, members, measured)[None]


def _residual_graph(graph: PredictionGraph, probe: np.ndarray) -> da.Array:
    """Return the lazy (4,) residual sums of the stitched object over every group member."""
    if graph.obj is None:
        raise RuntimeError("the stitched object is built by run_predictions; call it first")
    inputs = graph.inputs
    partial = da.blockwise(
        _block_residual, "gk", inputs["X"], "gyxc", inputs["relative"], "gcd",
        inputs["offsets"], "gd", graph.obj, "uv", new_axes={"k": 4}, adjust_chunks={"g": 1},
        concatenate=True, dtype=np.float64, meta=np.empty((0, 0), np.float64),
        token=f"residual_{graph.model}", probe=probe, origin_xy_px=graph.geometry.origin_xy_px,
    )
    return partial.sum(axis=0)


def _residual_probe(store: Path, info: BundleInfo) -> np.ndarray:
    probe = info.probe()
    if probe is None:
        root = open_store(store)
        if "probe" not in root:
            raise InvalidInputError(f"{store}: no probe in the store or in {info.path}; the data "
                                    "residual needs one. Pass --no-data-residual.")
        probe = _read_array(root, "probe")
    return probe.astype(np.complex64)


# NPZ arm --------------------------------------------------------------------------------------

def _read_npz_arm(path: Path, ground_truth: np.ndarray | None) -> ArmResult:
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: reconstruction NPZ not found. Check the path.")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "reconstructed_object" not in data:
                raise InvalidInputError(f"{path}: key 'reconstructed_object' is missing; found "
                                        f"{sorted(data.files)!r}. Save the complex 2-D object "
                                        "under that key.")
            obj = np.asarray(data["reconstructed_object"]).squeeze().astype(np.complex64)
            algorithm = str(data["algorithm"]) if "algorithm" in data else "ptychi"
            origin = (tuple(int(v) for v in data["origin_xy_px"]) if "origin_xy_px" in data
                      else None)
    except InvalidInputError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        # ValueError: pickled objects, which are never loaded, or an unreadable array.
        raise InputFileError(f"{path}: cannot be read as an NPZ file without pickle ({error}). "
                             "Write it again with numpy.savez and plain arrays.") from error
    if obj.ndim != 2:
        raise InvalidInputError(f"{path}: 'reconstructed_object' has shape {obj.shape!r}; "
                                "expected a 2-D complex object.")
    if not np.isfinite(obj).all():
        raise InvalidInputError(f"{path}: 'reconstructed_object' contains NaN or infinite "
                                "values, which cannot be aligned or scored. Replace them (for "
                                "example with zeros outside the reconstructed area).")
    if origin is None and ground_truth is not None and obj.shape != ground_truth.shape:
        # Assume the object is centred on the ground truth; registration corrects small offsets.
        origin = ((ground_truth.shape[1] - obj.shape[1]) // 2,
                  (ground_truth.shape[0] - obj.shape[0]) // 2)
    label = _NPZ_LABELS.get(algorithm.lower(), algorithm)
    return ArmResult(label, obj, (origin[0], origin[1]) if origin else (0, 0))


# Scoring --------------------------------------------------------------------------------------

def _score_arms(arms: Sequence[ArmResult], ground_truth: np.ndarray, *,
                extent: tuple[Any, Any], config: CompareConfig,
                pixel_size_m: float | None) -> np.ndarray:
    """Align every arm to the ground truth on one shared region and score it.

    All arms are cut to the scanned region they share, registered, and trimmed by the same
    border (the configured border plus the largest shift), so their metrics cover the same
    pixels. Returns the ground truth on that region.
    """
    frames = [(arm.origin_xy_px, arm.reconstruction.shape) for arm in arms]
    box = scan_region(extent[0], extent[1], crop_size=config.stitch_crop_size,
                      frames=[*frames, ((0, 0), ground_truth.shape)])
    truth = crop_region(ground_truth, (0, 0), box)
    cropped = [crop_region(arm.reconstruction, arm.origin_xy_px, box) for arm in arms]
    shifts = [(0.0, 0.0) if config.skip_registration else
              register_shift(np.abs(truth), np.abs(image), max_shift_px=config.max_shift_px)
              for image in cropped]
    trim = config.border_crop_px + math.ceil(max(max(abs(dy), abs(dx)) for dy, dx in shifts))

    aligned_truth = truth
    for arm, image, shift in zip(arms, cropped, shifts, strict=True):
        arm.aligned, aligned_truth, arm.alignment = align_to_ground_truth(
            image, truth, shift=shift, trim_px=trim, region_xy_px=box)
        arm.evaluation = evaluate(arm.aligned, aligned_truth,
                                  phase_align_method=config.phase_align_method,
                                  ms_ssim_sigma=config.ms_ssim_sigma, frc_sigma=config.frc_sigma,
                                  pixel_size_m=pixel_size_m)
    return aligned_truth


def _store_extent(store: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    root = open_store(store)
    x = _read_array(root, "xcoords")
    y = _read_array(root, "ycoords")
    return (float(x.min()), float(y.min())), (float(x.max()), float(y.max()))


def _task_seconds(events: Sequence[Mapping[str, Any]], prefix: str) -> float:
    """Return the compute seconds of the tasks whose key is ``prefix`` or ``prefix-...``."""
    total = 0.0
    for event in events:
        name = key_split(event["key"])
        if name != prefix and not name.startswith(f"{prefix}-"):
            continue
        total += sum(part["stop"] - part["start"] for part in event["startstops"]
                     if part["action"] == "compute")
    return total


# Entry point ----------------------------------------------------------------------------------

def check_inputs(store: str | os.PathLike[str], *, pinn: str | os.PathLike[str] | None = None,
                 baseline: str | os.PathLike[str] | None = None,
                 recon_npz: str | os.PathLike[str] | None = None) -> None:
    """Check that the store opens and every model given is a bundle, without running anything.

    Raises
    ------
    InvalidInputError
        No model and no NPZ reconstruction was given.
    InputFileNotFoundError
        The store or a bundle does not exist.
    BundleError
        A bundle is damaged or is not a ptychozarr bundle.
    """
    open_store(Path(store))
    _require_an_arm(pinn, baseline, recon_npz)
    for bundle in (pinn, baseline):
        if bundle is not None:
            read_bundle_info(bundle)


def _require_an_arm(*arms: str | os.PathLike[str] | None) -> None:
    if all(arm is None for arm in arms):
        raise InvalidInputError("nothing to compare: give at least one of --pinn, --baseline "
                                "and --recon-npz.")


def compare_models(store: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   client: Client, pinn: str | os.PathLike[str] | None = None,
                   baseline: str | os.PathLike[str] | None = None,
                   recon_npz: str | os.PathLike[str] | None = None, group: str | None = None,
                   config: CompareConfig | None = None,
                   progress: ProgressCallback | None = None) -> ComparisonResult:
    """Compare reconstructions of a store and write the metrics, curves and figures.

    Parameters
    ----------
    store
        Store directory (writable: grouped views and prediction runs are added).
    out
        Output folder, created when missing; files of the same name are replaced.
    client
        Dask client that runs the job.
    pinn, baseline
        Model bundle directories.
    recon_npz
        NPZ with a complex 2-D ``reconstructed_object``, an optional ``algorithm`` label and an
        optional ``origin_xy_px``. Without an origin, an object of the ground truth's shape is
        taken to share its frame and a smaller one to be centred on it.
    group
        Grouped view to use for the bundles (its N and gridsize must match them); default: a
        view made for each bundle's gridsize.
    config
        Comparison settings.
    progress
        Called with the job's futures, for a progress bar.

    Returns
    -------
    ComparisonResult

    Raises
    ------
    InvalidInputError
        No arm given, or invalid settings.
    BundleError
        A bundle does not fit the data or is damaged.
    """
    config = config or CompareConfig()
    store_path, out_path = Path(store), Path(out)
    root = open_store(store_path)
    _require_an_arm(pinn, baseline, recon_npz)
    ground_truth = _read_array(root, "object") if "object" in root else None
    # The NPZ arm is read before the Dask job, so a bad file fails before any run is published.
    npz_arm = _read_npz_arm(Path(recon_npz), ground_truth) if recon_npz is not None else None
    pixel_size = root.attrs.get("object_pixel_size_m")
    pixel_size_m = float(pixel_size) if isinstance(pixel_size, int | float) else None

    bundles = [(kind, path) for kind, path in (("pinn", pinn), ("baseline", baseline)) if path]
    graphs = []
    for kind, path in bundles:
        info = read_bundle_info(path)
        if info.kind != kind:
            raise BundleError(f"{path}: a {info.kind} bundle given as --{kind}; pass it with "
                              f"--{info.kind}.")
        batch = (config.pinn_predict_batch_size if kind == "pinn"
                 else config.baseline_predict_batch_size)
        grouping = GroupingConfig(gridsize=info.gridsize, neighbors=config.neighbors,
                                  seed=config.test_subsample_seed,
                                  n_groups=config.n_test_subsample, region=config.region)
        view = resolve_group(store_path, info, group=group, grouping=grouping)
        graphs.append(build_prediction_graph(store_path, view, path, client=client,
                                             batch_size=batch, crop_size=config.stitch_crop_size))

    want_residual = config.data_residual if config.data_residual is not None else (
        ground_truth is None)
    extra = {graph.model: functools.partial(_residual_graph, graph,
                                            _residual_probe(store_path, graph.bundle))
             for graph in graphs if want_residual}
    out_path.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with get_task_stream(client) as stream:
        objects, sums = run_predictions(graphs, client=client, extra=extra, progress=progress)
    logger.info("Dask job finished in %.1f s", time.perf_counter() - started)

    arms = []
    for graph, obj in zip(graphs, objects, strict=True):
        arm = ArmResult(ARM_LABELS[graph.model], obj, graph.geometry.origin_xy_px,
                        run_path=graph.run_path,
                        computation_time_s=_task_seconds(stream.data, f"predict_{graph.model}"))
        if graph.model in sums:
            arm.residual = data_residual(np.asarray(sums[graph.model]))
        arms.append(arm)
    if npz_arm is not None:
        arms.append(npz_arm)

    aligned_truth = None
    if ground_truth is not None:
        extent = ((graphs[0].attrs["positions_min_xy_px"], graphs[0].attrs["positions_max_xy_px"])
                  if graphs else _store_extent(store_path))
        aligned_truth = _score_arms(arms, ground_truth, extent=extent, config=config,
                                    pixel_size_m=pixel_size_m)

    rows = metric_rows(arms)
    files = write_report(out_path, arms, rows, ground_truth=ground_truth,
                         aligned_truth=aligned_truth, config=config,
                         meta={"store": str(store_path.resolve()),
                               "runs": {arm.label: arm.run_path for arm in arms}})
    return ComparisonResult(arms, ground_truth, aligned_truth, rows, files)
