"""``ptychozarr compare-models STORE OUT``: score PINN, baseline and iterative reconstructions."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from distributed import Client, Future, progress

from ptychozarr.cli import command
from ptychozarr.cluster import add_cluster_arguments, client_from_arguments, close_client
from ptychozarr.compare import CompareConfig, ComparisonResult, check_inputs, compare_models
from ptychozarr.inference import ProgressCallback
from ptychozarr.stitching import DEFAULT_CROP_SIZE

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr compare-models",
        description="Run each given model over a store as one Dask job, stitch the objects, "
        "align them to the ground truth (the store's object) and score amplitude and phase; "
        "without ground truth, report the data residual. Writes comparison_metrics.csv/.json, "
        "frc_curves.csv/.png and comparison_plot.png into OUT, and the objects into the store "
        "as prediction runs.",
    )
    parser.add_argument("store", help="dataset store (a directory)")
    parser.add_argument("out", help="output folder (created when missing)")
    parser.add_argument("--pinn", metavar="BUNDLE", help="PINN model bundle directory")
    parser.add_argument("--baseline", metavar="BUNDLE", help="baseline model bundle directory")
    parser.add_argument("--recon-npz", metavar="NPZ",
                        help="iterative reconstruction: NPZ with a complex reconstructed_object "
                        "(optional algorithm label and origin_xy_px)")
    parser.add_argument("--group", metavar="NAME",
                        help="grouped view to use; it must match the bundles' N and gridsize "
                        "(default: group the store as each bundle needs, or reuse such a view)")

    sampling = parser.add_argument_group("grouping when no --group is given")
    sampling.add_argument("--n-test-subsample", type=int, metavar="GROUPS",
                          help="number of groups drawn from the store (default: one per "
                          "position)")
    sampling.add_argument("--test-subsample-seed", type=int, default=0,
                          help="seed of that draw and of the member choice (default: 0)")
    sampling.add_argument("--neighbors", type=int, default=7, metavar="K",
                          help="nearest neighbours among which gridsize-2 members are drawn "
                          "(default: 7)")
    sampling.add_argument("--region",
                          help="part of the scan to group: top, bottom, left, right or "
                          "box:x0,x1,y0,y1 in object pixels (default: the whole scan)")

    scoring = parser.add_argument_group("stitching and scoring")
    scoring.add_argument("--stitch-crop-size", type=int, default=DEFAULT_CROP_SIZE, metavar="M",
                         help="side of the central crop of each patch that is stitched, in "
                         f"pixels, 0 < M <= N (default: {DEFAULT_CROP_SIZE})")
    scoring.add_argument("--skip-registration", action="store_true",
                         help="score without the sub-pixel registration to the ground truth")
    scoring.add_argument("--max-shift", type=float, default=8.0, metavar="PX",
                         help="largest registration shift searched along each axis, in pixels "
                         "(default: 8)")
    scoring.add_argument("--border-crop", type=int, default=2, metavar="PX",
                         help="pixels removed from every edge after registration, beyond the "
                         "shift (default: 2)")
    scoring.add_argument("--phase-align-method", choices=["plane", "mean"], default="plane",
                         help="remove a phase ramp and offset (plane) or only the offset (mean) "
                         "before scoring (default: plane)")
    scoring.add_argument("--frc-sigma", type=float, default=0.0,
                         help="Gaussian smoothing of the FRC curves, in rings (default: 0)")
    scoring.add_argument("--ms-ssim-sigma", type=float, default=1.0,
                         help="Gaussian smoothing of the amplitudes before MS-SSIM, in pixels "
                         "(default: 1)")
    residual = scoring.add_mutually_exclusive_group()
    residual.add_argument("--data-residual", dest="data_residual", action="store_true",
                          default=None,
                          help="also compute the data residual when there is a ground truth")
    residual.add_argument("--no-data-residual", dest="data_residual", action="store_false",
                          help="skip the data residual even without a ground truth")

    running = parser.add_argument_group("inference and output")
    running.add_argument("--pinn-predict-batch-size", type=int, default=32,
                         help="groups per PINN model call (default: 32)")
    running.add_argument("--baseline-predict-batch-size", type=int, default=32,
                         help="patterns per baseline model call (default: 32)")
    running.add_argument("--save-npz", action="store_true",
                         help="also write reconstructions.npz and reconstructions_aligned.npz")
    running.add_argument("--p-min", type=float, default=1.0,
                         help="lower percentile of each figure row's colour scale (default: 1)")
    running.add_argument("--p-max", type=float, default=99.0,
                         help="upper percentile of each figure row's colour scale (default: 99)")
    running.add_argument("--no-progress", action="store_true",
                         help="hide the progress bar of the Dask job (default: shown on standard "
                         "output)")
    add_cluster_arguments(parser)
    return parser


def _config(options: argparse.Namespace) -> CompareConfig:
    return CompareConfig(
        stitch_crop_size=options.stitch_crop_size, skip_registration=options.skip_registration,
        max_shift_px=options.max_shift, border_crop_px=options.border_crop,
        phase_align_method=options.phase_align_method,
        n_test_subsample=options.n_test_subsample,
        test_subsample_seed=options.test_subsample_seed, neighbors=options.neighbors,
        region=options.region, pinn_predict_batch_size=options.pinn_predict_batch_size,
        baseline_predict_batch_size=options.baseline_predict_batch_size,
        frc_sigma=options.frc_sigma, ms_ssim_sigma=options.ms_ssim_sigma,
        data_residual=options.data_residual, save_npz=options.save_npz,
        plot_percentiles=(options.p_min, options.p_max),
    )


def _summary(result: ComparisonResult) -> str:
    lines = []
    for arm in result.arms:
        parts = [arm.label]
        if arm.evaluation is not None:
            ssim_amplitude, ssim_phase = arm.evaluation.values["ssim"]
            frc_amplitude, frc_phase = arm.evaluation.values["frc50"]
            parts.append(f"SSIM amplitude {ssim_amplitude:.3f} phase {ssim_phase:.3f}")
            parts.append(f"FRC50 amplitude {frc_amplitude:.3f} phase {frc_phase:.3f} cycles/px")
        if arm.residual is not None:
            parts.append(f"data residual {arm.residual['data_residual']:.3f} "
                         f"(scale-fitted {arm.residual['data_residual_fit']:.3f})")
        if arm.run_path is not None:
            parts.append(f"stored as {arm.run_path}")
        lines.append("  " + ", ".join(parts))
    return "\n".join(lines)


def progress_bar(client: Client) -> ProgressCallback:
    """Return a callback that draws a text progress bar of the job on this client."""

    def draw(futures: Sequence[Future]) -> None:
        progress(futures, scheduler=client.scheduler_info()["address"])

    return draw


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr compare-models``."""
    options = _parser().parse_args(argv)
    config = _config(options)
    check_inputs(options.store, pinn=options.pinn, baseline=options.baseline,
                 recon_npz=options.recon_npz)
    client = client_from_arguments(options)
    progress = None if options.no_progress else progress_bar(client)
    try:
        result = compare_models(options.store, options.out, client=client, pinn=options.pinn,
                                baseline=options.baseline, recon_npz=options.recon_npz,
                                group=options.group, config=config, progress=progress)
    finally:
        close_client(client)

    print()
    print(_summary(result))
    print(f"Metrics: {result.files['metrics_csv']}")
    print(f"Figure:  {result.files['plot']}")
    for name, path in result.files.items():
        if name not in ("metrics_csv", "plot"):
            print(f"         {Path(path)}")
    return 0
