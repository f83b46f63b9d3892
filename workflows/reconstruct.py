"""``ptychozarr reconstruct STORE --model BUNDLE OUT``: run one model and export the object."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ptychozarr.cli import command
from ptychozarr.cluster import add_cluster_arguments, client_from_arguments, close_client
from ptychozarr.config import GroupingConfig
from ptychozarr.errors import InvalidInputError
from ptychozarr.inference import (
    predict,
    read_bundle_info,
    read_run_object,
    resolve_group,
)
from ptychozarr.stitching import DEFAULT_CROP_SIZE
from ptychozarr.store import open_store
from ptychozarr.workflows.compare_models import progress_bar

logger = logging.getLogger(__name__)

FORMATS = {".npz": "npz", ".tif": "tiff", ".tiff": "tiff", ".h5": "hdf5", ".hdf5": "hdf5"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr reconstruct",
        description="Run one model bundle over a store as a Dask job, stitch the object, store "
        "it as a prediction run and export it. The format follows OUT's extension: .npz "
        "(complex object, amplitude, phase), .tif/.tiff (amplitude and phase pages, float32) or "
        ".h5/.hdf5 (complex object); each records the pixel size and the object-frame origin.",
    )
    parser.add_argument("store", help="dataset store (a directory)")
    parser.add_argument("--model", required=True, metavar="BUNDLE", help="model bundle directory")
    parser.add_argument("out", help="output file: .npz, .tif/.tiff or .h5/.hdf5")
    parser.add_argument("--group", metavar="NAME",
                        help="grouped view to use (default: group the whole scan as the bundle "
                        "needs, or reuse such a view)")
    parser.add_argument("--neighbors", type=int, default=7, metavar="K",
                        help="nearest neighbours among which gridsize-2 members are drawn "
                        "(default: 7)")
    parser.add_argument("--region",
                        help="part of the scan to reconstruct: top, bottom, left, right or "
                        "box:x0,x1,y0,y1 in object pixels (default: the whole scan)")
    parser.add_argument("--stitch-crop-size", type=int, default=DEFAULT_CROP_SIZE, metavar="M",
                        help="side of the central crop of each patch that is stitched, in "
                        f"pixels (default: {DEFAULT_CROP_SIZE})")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="groups (PINN) or patterns (baseline) per model call (default: 32)")
    parser.add_argument("--run", help="name of the prediction run (default: a UTC time stamp)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar of the Dask job (default: shown on standard "
                        "output)")
    add_cluster_arguments(parser)
    return parser


def _export(path: Path, obj: np.ndarray, *, origin_xy_px: tuple[int, int],
            pixel_size_m: float | None, source: dict[str, object]) -> None:
    """Write the object in the format of ``path``'s extension, atomically."""
    kind = FORMATS[path.suffix.lower()]
    temporary = path.with_name(f".{path.name}.tmp")
    metadata = {"origin_xy_px": list(origin_xy_px), "pixel_size_m": pixel_size_m, **source}
    if kind == "npz":
        with temporary.open("wb") as handle:
            np.savez_compressed(handle, object=obj, amplitude=np.abs(obj), phase=np.angle(obj),
                                origin_xy_px=np.asarray(origin_xy_px),
                                pixel_size_m=np.float64(pixel_size_m or np.nan),
                                metadata=json.dumps(metadata))
    elif kind == "tiff":
        import tifffile

        pages = np.stack([np.abs(obj), np.angle(obj)]).astype(np.float32)
        resolution = None
        if pixel_size_m:
            pixels_per_cm = 0.01 / pixel_size_m
            resolution = (pixels_per_cm, pixels_per_cm)
        tifffile.imwrite(temporary, pages, photometric="minisblack", resolution=resolution,
                         resolutionunit="CENTIMETER" if resolution else None,
                         description=json.dumps({**metadata, "pages": ["amplitude", "phase"]}),
                         metadata=None)
    else:
        import h5py

        with h5py.File(temporary, "w") as handle:
            dataset = handle.create_dataset("object", data=obj, compression="gzip")
            dataset.attrs["origin_xy_px"] = np.asarray(origin_xy_px)
            dataset.attrs["pixel_size_m"] = np.float64(pixel_size_m or np.nan)
            dataset.attrs["dimension_names"] = ["y", "x"]
            handle.attrs["metadata"] = json.dumps(metadata)
    os.replace(temporary, path)


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr reconstruct``."""
    options = _parser().parse_args(argv)
    out = Path(options.out)
    if out.suffix.lower() not in FORMATS:
        raise InvalidInputError(
            f"{out}: unknown output extension {out.suffix!r}; use one of {sorted(FORMATS)!r}."
        )
    if out.exists() and not options.overwrite:
        raise InvalidInputError(f"{out}: already exists. Pass --overwrite to replace it.")
    info = read_bundle_info(options.model)
    grouping = GroupingConfig(gridsize=info.gridsize, neighbors=options.neighbors,
                              region=options.region)
    group = resolve_group(options.store, info, group=options.group, grouping=grouping)

    client = client_from_arguments(options)
    try:
        run_path = predict(options.store, group, options.model, client=client,
                           batch_size=options.batch_size, run=options.run,
                           stitch_crop_size=options.stitch_crop_size,
                           progress=None if options.no_progress else progress_bar(client))
    finally:
        close_client(client)

    obj, origin, _ = read_run_object(options.store, run_path)
    pixel_size = open_store(options.store).attrs.get("object_pixel_size_m")
    pixel_size_m = float(pixel_size) if isinstance(pixel_size, int | float) else None
    _export(out, obj, origin_xy_px=origin, pixel_size_m=pixel_size_m,
            source={"store": str(Path(options.store).resolve()), "run": run_path,
                    "bundle": str(info.path)})
    if not options.no_progress:
        print()  # the progress bar leaves the cursor at the end of its line
    print(f"Stored {run_path} in {options.store}")
    print(f"Object ({obj.shape[0]} x {obj.shape[1]} px, origin {origin}) written to {out}")
    return 0
