"""Keras models of ptychozarr: the PINN, the supervised baseline, and model bundles.

Importing this package imports neither TensorFlow nor Keras and builds nothing: each name below
loads its module on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BuiltModel": "ptychozarr.models.factory",
    "build_model": "ptychozarr.models.factory",
    "compile_model": "ptychozarr.models.factory",
    "matching_object_amplitude": "ptychozarr.models.factory",
    "normalise_probe": "ptychozarr.models.factory",
    "probe_scale_for": "ptychozarr.models.factory",
    "flatten_members": "ptychozarr.models.layers",
    "ModelBundle": "ptychozarr.models.bundle",
    "load_bundle": "ptychozarr.models.bundle",
    "save_bundle": "ptychozarr.models.bundle",
    "save_untrained_bundle": "ptychozarr.models.bundle",
}

__all__ = [
    "BuiltModel",
    "ModelBundle",
    "build_model",
    "compile_model",
    "flatten_members",
    "load_bundle",
    "matching_object_amplitude",
    "normalise_probe",
    "probe_scale_for",
    "save_bundle",
    "save_untrained_bundle",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ptychozarr.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
