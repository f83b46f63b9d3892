"""Model inference over a grouped view as a Dask graph, written to a prediction run.

Each storage chunk of ``groups/<name>/X`` becomes one task that predicts its groups in fixed-size
batches. The model is loaded once per worker process and kept in a cache keyed by the bundle
path and the manifest's modification time, so a replaced bundle is reloaded. Tasks carry only
the path, never the model. ``X`` keeps the store's own alpha, computed once over the grouped
set, and the bundle applies its own photon scale.

A PINN predicts one patch per group, placed at the group centroid (``offsets``). A baseline
predicts one patch per member, placed at the member's position ``offsets - relative``. Each task
writes its block's patches and positions as one chunk of a staged run
``predictions/<model>/<run>/`` and returns the block's partial stitching canvas, so no predicted
patch stays in memory after its task. The canvases are tree-summed into the ``object``. The run
is moved into place when every array is written, and only then does ``predictions/<model>`` name
it in its ``current`` attribute, so readers never see a half-written run.

The client-side reading of the bundle and the grouped view is in
:mod:`ptychozarr.inference_inputs`, and marking and reading published runs in
:mod:`ptychozarr.inference_runs`. Their public names used by callers of inference are
re-exported here.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, Future

from ptychozarr.errors import InvalidInputError
from ptychozarr.inference_inputs import (
    BundleInfo,
    check_bundle_fits,
    open_grouped_arrays,
    read_bundle_info,
    resolve_group,
)
from ptychozarr.inference_runs import current_run, publish_current_run, read_run_object
from ptychozarr.models.bundle_format import MANIFEST_FILE
from ptychozarr.stitching import (
    CANVAS_PLANES,
    DEFAULT_CROP_SIZE,
    CanvasGeometry,
    canvas_geometry,
    partial_canvas,
    sum_canvases,
)
from ptychozarr.store import (
    PREDICTION_ARRAYS,
    create_array,
    open_store,
    stage_subgroup,
)
from ptychozarr.store.schema import format_block

__all__ = [
    "BundleInfo",
    "PredictionGraph",
    "ProgressCallback",
    "build_prediction_graph",
    "current_run",
    "predict",
    "predict_block",
    "read_bundle_info",
    "read_run_object",
    "resolve_group",
    "run_predictions",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Sequence[Future]], None]
"""Called with the futures of a submitted graph, for example ``distributed.progress``."""


# Worker side ----------------------------------------------------------------------------------

_MODEL_CACHE: dict[tuple[str, int], Any] = {}
_MODEL_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_CACHE_LOCK = threading.Lock()


def _cached_bundle(path: str) -> tuple[Any, threading.Lock]:
    """Return this process's loaded bundle for ``path`` and the lock that serialises its calls."""
    from ptychozarr.models.bundle import load_bundle

    key = (path, (Path(path) / MANIFEST_FILE).stat().st_mtime_ns)
    with _CACHE_LOCK:
        if key not in _MODEL_CACHE:
            logger.info("Loading model bundle %s in process %d", path, os.getpid())
            _MODEL_CACHE[key] = load_bundle(path)
            _MODEL_LOCKS[key] = threading.Lock()
        return _MODEL_CACHE[key], _MODEL_LOCKS[key]


def predict_block(x: np.ndarray, relative: np.ndarray, *, bundle_path: str,
                  batch_size: int) -> np.ndarray:
    """Predict the patches of one block of groups with the cached model of ``bundle_path``.

    Parameters
    ----------
    x
        (group, N, N, C) float32 normalised diffraction amplitude.
    relative
        (group, C, 2) float64 centroid minus member position (x, y), pixels.
    bundle_path
        Absolute bundle directory.
    batch_size
        Groups (PINN) or patterns (baseline) per model call; the last batch is padded.

    Returns
    -------
    numpy.ndarray
        (patch, N, N) complex64: one patch per group (PINN) or per member (baseline).
    """
    bundle, lock = _cached_bundle(bundle_path)
    # Keras builds its predict function on first use, so calls are serialised. This costs
    # nothing because TensorFlow's own thread pool already uses every core of the worker.
    with lock:
        return np.asarray(bundle.predict(x, relative, batch_size=batch_size), np.complex64)


# The graph ------------------------------------------------------------------------------------

@dataclass
class PredictionGraph:
    """Lazy patches, positions and stitched object of one model over one grouped view.

    Attributes
    ----------
    store
        Store directory.
    group
        Name of the grouped view.
    bundle
        The model bundle.
    run_path
        ``predictions/<model>/<run>`` the results go to.
    patches
        (patch, py, px) complex64 Dask array of the predictions, chunked like the groups (times
        C for a baseline), for use in memory. :func:`run_predictions` does not compute it: its
        tasks write the patches into the run as they predict them.
    positions
        (patch, xy) float64 Dask array: placement (x, y) of each patch centre, pixels.
    geometry
        Stitching canvas in the object frame.
    crop_size
        Side M of the stitched central crops.
    attrs
        Attributes written on the run.
    inputs
        The grouped view's ``X``, ``relative`` and ``offsets`` as Dask arrays chunked like ``X``.
    batch_size
        Groups (PINN) or patterns (baseline) per model call.
    obj
        (row, col) complex64 Dask array of the stitched object, set by :func:`run_predictions`
        once the run's arrays exist.
    """

    store: Path
    group: str
    bundle: BundleInfo
    run_path: str
    patches: da.Array
    positions: da.Array
    geometry: CanvasGeometry
    crop_size: int
    attrs: dict[str, Any]
    inputs: dict[str, da.Array]
    batch_size: int
    obj: da.Array | None = None

    @property
    def model(self) -> str:
        """Model folder under ``predictions/``: the bundle kind."""
        return self.bundle.kind


def _default_run_name() -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _patch_positions(kind: str, offsets: da.Array, relative: da.Array) -> da.Array:
    """Return the (patch, xy) placement: centroids (PINN) or member positions (baseline)."""
    if kind == "pinn":
        return offsets
    members = offsets[:, None, :] - relative
    return members.reshape(-1, 2)


def build_prediction_graph(store: str | os.PathLike[str], group: str,
                           bundle_path: str | os.PathLike[str], *, client: Client | None = None,
                           batch_size: int = 32, run: str | None = None,
                           crop_size: int = DEFAULT_CROP_SIZE) -> PredictionGraph:
    """Build the lazy inference and stitching graph of one model over one grouped view.

    Parameters
    ----------
    store
        Store directory with ``groups/<group>``.
    group
        Name of the grouped view.
    bundle_path
        Model bundle directory.
    client
        Client used to find the positions' extent when the store has no ``object`` (the canvas
        then spans the positions); default: the local threaded scheduler.
    batch_size
        Groups (PINN) or patterns (baseline) per model call.
    run
        Name of the run; default: a UTC time stamp with a random suffix.
    crop_size
        Side M of the central crop of each patch that is stitched.

    Raises
    ------
    BundleError
        The bundle's N or gridsize differs from the grouped view's.
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size: invalid value {batch_size!r}; use at least 1.")
    root = open_store(store)
    where = f"{os.fspath(store)}: groups/{group}"
    arrays = open_grouped_arrays(root, group, where=os.fspath(store))
    group_attrs = dict(root[f"groups/{group}"].attrs)
    info = read_bundle_info(bundle_path)
    check_bundle_fits(info, group_attrs, where=where)

    channels = info.gridsize**2
    factor = channels if info.kind == "baseline" else 1
    patches = da.blockwise(
        predict_block, "gij", arrays["X"], "gyxc", arrays["relative"], "gcd",
        new_axes={"i": info.n, "j": info.n}, adjust_chunks={"g": lambda size: size * factor},
        concatenate=True, dtype=np.complex64, meta=np.empty((0, 0, 0), np.complex64),
        token=f"predict_{info.kind}", bundle_path=str(info.path), batch_size=batch_size,
    )
    positions = _patch_positions(info.kind, arrays["offsets"], arrays["relative"])
    low, high = _positions_extent(positions, client)
    ground_truth = root.get("object")
    object_shape = ground_truth.shape if isinstance(ground_truth, zarr.Array) else None
    geometry = canvas_geometry(low, high, crop_size=crop_size,
                               object_shape=(object_shape[0], object_shape[1])
                               if object_shape is not None else None)

    run_name = run or _default_run_name()
    attrs = {
        "ptychozarr": format_block("prediction"), "run": run_name, "model": info.kind,
        "bundle": str(info.path), "group": group, "n": info.n, "gridsize": info.gridsize,
        "batch_size": batch_size, "alpha": group_attrs.get("alpha"),
        "training_alpha": float(info.manifest.get("alpha", float("nan"))),
        "intensity_scale": float(info.manifest.get("intensity_scale", float("nan"))),
        "n_groups": int(arrays["X"].shape[0]), "n_patches": int(patches.shape[0]),
        "positions_min_xy_px": list(low), "positions_max_xy_px": list(high),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return PredictionGraph(Path(store), group, info, f"predictions/{info.kind}/{run_name}",
                           patches, positions, geometry, crop_size, attrs, arrays, batch_size)


def _positions_extent(positions: da.Array,
                      client: Client | None) -> tuple[tuple[float, float], tuple[float, float]]:
    low, high = positions.min(axis=0), positions.max(axis=0)
    if client is not None:
        low, high = client.compute([low, high], sync=True)
    else:
        low, high = dask.compute(low, high, scheduler="threads")
    return (float(low[0]), float(low[1])), (float(high[0]), float(high[1]))


# Execution ------------------------------------------------------------------------------------

def _stage_arrays(staged: zarr.Group, graph: PredictionGraph) -> list[zarr.Array]:
    """Create ``patches`` and ``positions`` in a staged run with chunks equal to the graph's."""
    chunk = int(graph.patches.chunks[0][0]) if graph.patches.chunks[0] else 1
    targets = []
    for name, source in (("patches", graph.patches), ("positions", graph.positions)):
        target = create_array(staged, PREDICTION_ARRAYS[name], tuple(source.shape),
                              chunk_frames=chunk)
        targets.append(target)
    return targets


def _predict_into_run(x: np.ndarray, relative: np.ndarray, offsets: np.ndarray,
                      group_index: np.ndarray, *, bundle_path: str, batch_size: int, kind: str,
                      patches_target: zarr.Array, positions_target: zarr.Array, crop_size: int,
                      geometry: CanvasGeometry) -> np.ndarray:
    """Predict one block of groups, write its patches and positions, return its partial canvas.

    The block's patches are one chunk of the run's ``patches`` array (and its positions one
    chunk of ``positions``), so a task run again after a lost worker rewrites the same chunks.
    Keeping predicting, writing and placing in one task means no block of patches waits in
    worker memory for a later consumer.
    """
    patches = predict_block(x, relative, bundle_path=bundle_path, batch_size=batch_size)
    positions = offsets if kind == "pinn" else (offsets[:, None, :] - relative).reshape(-1, 2)
    factor = patches.shape[0] // max(x.shape[0], 1)
    start = int(group_index[0]) * factor if group_index.size else 0
    patches_target[start:start + patches.shape[0]] = patches
    positions_target[start:start + positions.shape[0]] = positions
    return partial_canvas(patches, positions, crop_size=crop_size, geometry=geometry)[None]


def _object_graph(graph: PredictionGraph, targets: Sequence[zarr.Array]) -> da.Array:
    """Return the lazy stitched object whose tasks also fill the run's patches and positions."""
    inputs = graph.inputs
    index = da.arange(inputs["X"].shape[0], chunks=(inputs["X"].chunks[0],))
    rows, cols = graph.geometry.shape
    partials = da.blockwise(
        _predict_into_run, "gkyx", inputs["X"], "gyxc", inputs["relative"], "gcd",
        inputs["offsets"], "gd", index, "g",
        new_axes={"k": CANVAS_PLANES, "y": rows, "x": cols}, adjust_chunks={"g": 1},
        concatenate=True, dtype=np.float64, meta=np.empty((0, 0, 0, 0), np.float64),
        token=f"predict_{graph.model}", bundle_path=str(graph.bundle.path),
        batch_size=graph.batch_size, kind=graph.model, patches_target=targets[0],
        positions_target=targets[1], crop_size=graph.crop_size, geometry=graph.geometry,
    )
    return sum_canvases(partials, name=f"predict_{graph.model}-canvas")


def run_predictions(graphs: Sequence[PredictionGraph], *, client: Client,
                    extra: Mapping[str, Callable[[], Any]] | None = None,
                    progress: ProgressCallback | None = None,
                    overwrite: bool = False) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Compute several prediction graphs (and extra lazy values) as one Dask job and publish them.

    Every run is staged. Each task predicts one block of groups, writes the block's patches and
    positions into the run's Zarr arrays (one chunk each) and returns the block's partial
    canvas; the partial canvases are tree-summed into the object. Once everything is computed,
    each run gets its ``object`` array, is moved into place, and becomes its model's
    ``current`` run.

    Parameters
    ----------
    graphs
        Graphs from :func:`build_prediction_graph`, at most one per model kind.
    client
        Dask client that runs the job.
    extra
        Name to a function returning a lazy value (Dask array or delayed) to compute in the same
        job. The functions are called once every graph's ``obj`` is set, so the values may
        depend on the stitched objects.
    progress
        Called with the job's futures (``distributed.progress`` draws a progress bar).
    overwrite
        Replace runs of the same name.

    Returns
    -------
    tuple
        The stitched objects, in the order of ``graphs``, and the computed ``extra`` values.
    """
    models = [graph.model for graph in graphs]
    if len(set(models)) != len(models):
        raise InvalidInputError(f"one graph per model kind expected, got models {models!r}.")

    with contextlib.ExitStack() as stack:
        staged_runs = []
        for graph in graphs:
            staged = stack.enter_context(stage_subgroup(graph.store, graph.run_path,
                                                        overwrite=overwrite, attrs=graph.attrs))
            graph.obj = _object_graph(graph, _stage_arrays(staged, graph))
            staged_runs.append(staged)
        extra_values = {name: build() for name, build in (extra or {}).items()}

        futures = client.compute([*(graph.obj for graph in graphs), *extra_values.values()])
        if progress is not None:
            progress(futures)
        try:
            results = client.gather(futures)
        except BaseException:
            _stop_job(client, futures)
            raise

        objects = [np.asarray(value) for value in results[:len(graphs)]]
        for staged, graph, obj in zip(staged_runs, graphs, objects, strict=True):
            _write_object(staged, obj, graph)
    for graph in graphs:
        publish_current_run(graph.store, graph.model, graph.run_path.rsplit("/", 1)[-1])
    computed = dict(zip(extra_values, results[len(graphs):], strict=True))
    return objects, computed


def _executing_keys(dask_worker: Any) -> list[Any]:
    return [task.key for task in (*dask_worker.state.executing, *dask_worker.state.long_running)]


def _stop_job(client: Client, futures: Sequence[Future], *, timeout_s: float = 60.0) -> None:
    """Cancel a failed job and wait until the tasks running at that moment have finished.

    A task that is running when another one fails still finishes and writes its chunks into
    the staged run, so the staged folder can only be removed for good after it. On a shared
    cluster this also waits for other clients' tasks that run at that moment (one task each).
    """
    try:
        client.cancel(futures)
        running = {key for keys in client.run(_executing_keys).values() for key in keys}
        deadline = time.monotonic() + timeout_s
        while running and time.monotonic() < deadline:
            time.sleep(0.1)
            running &= {key for keys in client.run(_executing_keys).values() for key in keys}
    except Exception as error:  # the job's own error is re-raised; this one is only logged
        logger.warning("Could not wait for the tasks of the failed job: %s", error)
        return
    if running:
        logger.warning("%d task(s) of the failed job still run after %.0f s; a staged run "
                       "beside the store may be left behind", len(running), timeout_s)


def _write_object(staged: zarr.Group, obj: np.ndarray, graph: PredictionGraph) -> None:
    array = create_array(staged, PREDICTION_ARRAYS["object"], obj.shape, attrs={
        "origin_xy_px": list(graph.geometry.origin_xy_px), "stitch_crop_size_px": graph.crop_size,
    })
    array[...] = obj
    staged.attrs.update({"object_origin_xy_px": list(graph.geometry.origin_xy_px),
                         "stitch_crop_size_px": graph.crop_size})


def predict(store: str | os.PathLike[str], group: str, bundle_path: str | os.PathLike[str], *,
            client: Client, batch_size: int = 32, run: str | None = None,
            stitch_crop_size: int = DEFAULT_CROP_SIZE,
            progress: ProgressCallback | None = None, overwrite: bool = False) -> str:
    """Predict a grouped view with a model bundle on a Dask cluster and stitch the object.

    Parameters
    ----------
    store
        Store directory (writable).
    group
        Name of the grouped view ``groups/<group>``.
    bundle_path
        Model bundle directory.
    client
        Dask client (see :func:`ptychozarr.cluster.make_client`).
    batch_size
        Groups (PINN) or patterns (baseline) per model call.
    run
        Run name; default: a UTC time stamp with a random suffix.
    stitch_crop_size
        Side M (pixels) of the central crop of each patch that is stitched.
    progress
        Called with the job's futures, for a progress bar.
    overwrite
        Replace a run of the same name.

    Returns
    -------
    str
        The run path ``predictions/<model>/<run>``, now its model's ``current`` run.

    Raises
    ------
    BundleError
        The bundle's N or gridsize differs from the grouped view's, or the bundle is damaged.
    """
    graph = build_prediction_graph(store, group, bundle_path, client=client,
                                   batch_size=batch_size, run=run, crop_size=stitch_crop_size)
    run_predictions([graph], client=client, progress=progress, overwrite=overwrite)
    return graph.run_path
