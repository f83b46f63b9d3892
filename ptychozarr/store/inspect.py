"""A readable summary of a store: arrays, sizes, chunking, compression and metadata.

:func:`summarize_store` reads only metadata and the sizes of stored chunk files, never chunk data,
so it is fast on stores of any size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import zarr

from ptychozarr.store.open import StorePath, open_store

__all__ = ["format_summary", "summarize_store"]

PHYSICAL_KEYS = ("propagation", "energy_ev", "wavelength_m", "detector_distance_m",
                 "detector_pixel_size_m", "object_pixel_size_m", "nphotons", "amplitude_scale")
"""Root attributes shown in the metadata section, in this order."""


def _array_summary(path: str, array: zarr.Array) -> dict[str, Any]:
    # Zarr v3 metadata; a v2 array (not written by ptychozarr) has neither attribute.
    names = (getattr(array.metadata, "dimension_names", None)
             or tuple(f"dim_{i}" for i in range(array.ndim)))
    codecs = [type(codec).__name__.removesuffix("Codec")
              for codec in getattr(array.metadata, "codecs", ())]
    stored = int(array.nbytes_stored())
    return {
        "path": path,
        "dims": dict(zip(names, (int(n) for n in array.shape), strict=True)),
        "dtype": str(array.dtype),
        "chunks": [int(n) for n in array.chunks],
        "n_chunks": int(array.nchunks),
        "uncompressed_bytes": int(array.nbytes),
        "stored_bytes": stored,
        "codecs": codecs,
        "units": array.attrs.get("units"),
        "long_name": array.attrs.get("long_name"),
    }


def summarize_store(path: StorePath) -> dict[str, Any]:
    """Return the layout and metadata of the store at ``path`` as a JSON dictionary.

    Keys: ``path``, ``format`` (the ``ptychozarr`` block), ``arrays`` (one entry per array in
    the whole tree, with dims, dtype, chunks, sizes, codecs, units), ``attrs`` (root attributes)
    and ``groups`` (attributes of every subgroup, by path).
    """
    root = open_store(path)
    arrays = []
    groups: dict[str, Any] = {}
    for member_path, node in sorted(root.members(max_depth=None), key=lambda item: item[0]):
        if isinstance(node, zarr.Array):
            arrays.append(_array_summary(member_path, node))
        else:
            groups[member_path] = node.attrs.asdict()
    attrs = root.attrs.asdict()
    return {"path": str(path), "format": attrs.get("ptychozarr", {}), "arrays": arrays,
            "attrs": attrs, "groups": groups}


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def _ratio(uncompressed: int, stored: int) -> str:
    return f"{uncompressed / stored:.2f}x" if stored else "-"


def _format_arrays(arrays: list[dict[str, Any]]) -> list[str]:
    lines = []
    for array in arrays:
        dims = ", ".join(f"{name}={size}" for name, size in array["dims"].items())
        chunks = "x".join(str(n) for n in array["chunks"])
        uncompressed, stored = array["uncompressed_bytes"], array["stored_bytes"]
        lines.append(
            f"  {array['path']:<22} ({dims}) {array['dtype']}  chunks {chunks} "
            f"({array['n_chunks']})  {_size(uncompressed)} -> {_size(stored)} "
            f"({_ratio(uncompressed, stored)})  [{array['units']}]"
        )
    return lines


def _format_mapping(mapping: Mapping[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{indent}{key}:")
            lines.extend(_format_mapping(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {json.dumps(value)}")
    return lines


def format_summary(summary: Mapping[str, Any]) -> str:
    """Format :func:`summarize_store` output as text for a terminal."""
    block = summary["format"]
    arrays = summary["arrays"]
    attrs = summary["attrs"]
    uncompressed = sum(array["uncompressed_bytes"] for array in arrays)
    stored = sum(array["stored_bytes"] for array in arrays)
    codecs = sorted({" + ".join(array["codecs"]) for array in arrays})
    lines = [
        f"Store {summary['path']}",
        f"  format version {block.get('format_version')}, written by ptychozarr "
        f"{block.get('writer_version')}",
        f"  {len(arrays)} arrays, {_size(uncompressed)} uncompressed, {_size(stored)} stored, "
        f"compression ratio {_ratio(uncompressed, stored)} ({'; '.join(codecs)})",
        "",
        "Arrays (dimensions, dtype, chunk shape (count), uncompressed -> stored (ratio), [units])",
        *_format_arrays(arrays),
        "",
        "Metadata",
    ]
    known = [key for key in PHYSICAL_KEYS if key in attrs]
    lines.extend(f"  {key}: {json.dumps(attrs[key])}" for key in known)
    if not known:
        lines.append("  (none)")
    for section in ("conventions", "provenance", "source_metadata"):
        if section in attrs:
            lines += ["", section.capitalize().replace("_", " ")]
            value = attrs[section]
            lines.extend(_format_mapping(value, "  ") if isinstance(value, Mapping)
                         else [f"  {json.dumps(value)}"])
    for path, group_attrs in summary["groups"].items():
        if group_attrs:
            lines += ["", f"Group {path}", *_format_mapping(group_attrs, "  ")]
    return "\n".join(lines)
