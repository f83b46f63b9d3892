"""ptychozarr: out-of-core X-ray ptychography with neural networks.

Datasets live in chunked Zarr v3 stores; training streams them through ``tf.data``; inference and
comparison run as Dask graphs. TensorFlow is imported only by the names that need it, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from ptychozarr.store import open_dataset, open_datatree, open_store

# Names whose modules import TensorFlow or Dask distributed: resolved on first attribute access.
_LAZY = {
    "LazyContainer": "ptychozarr.container",
    "train": "ptychozarr.training",
    "load_bundle": "ptychozarr.models.bundle",
    "predict": "ptychozarr.inference",
    "stitch": "ptychozarr.stitching",
    "compare_models": "ptychozarr.compare",
    "make_client": "ptychozarr.cluster",
    "simulate_dataset": "ptychozarr.simulate",
    "group_dataset": "ptychozarr.grouping",
    "convert": "ptychozarr.io.convert",
}

__all__ = [
    "LazyContainer",
    "__version__",
    "compare_models",
    "convert",
    "group_dataset",
    "load_bundle",
    "make_client",
    "open_dataset",
    "open_datatree",
    "open_store",
    "predict",
    "simulate_dataset",
    "stitch",
    "train",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ptychozarr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
