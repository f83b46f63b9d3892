"""Small generated input files for the converter tests: raw, grouped and CXI layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

N_FRAMES = 40
SIDE = 16


def raw_arrays(n_frames: int = N_FRAMES, side: int = SIDE, *, seed: int = 0) -> dict[str, Any]:
    """Return PtychoPINN raw-layout arrays in the store's dtypes (amplitudes, pixels)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(side / 2, side / 2 + 40, n_frames)
    y = rng.uniform(side / 2, side / 2 + 40, n_frames)
    return {
        "diffraction": rng.random((n_frames, side, side), dtype=np.float32),
        "xcoords": x,
        "ycoords": y,
        "xcoords_start": np.round(x),
        "ycoords_start": np.round(y),
        "scan_index": np.arange(n_frames, dtype=np.int32) % 3,
        "probeGuess": (rng.random((side, side)) + 1j * rng.random((side, side))).astype(
            np.complex64),
        "objectGuess": (rng.random((side + 48, side + 48))
                        * np.exp(1j * rng.random((side + 48, side + 48)))).astype(np.complex64),
        "Y": (rng.random((n_frames, side, side)) + 1j).astype(np.complex64),
        "_metadata": np.array(json.dumps({"nphotons": 1e9, "physics_parameters": {"N": side}}),
                              dtype=object),
    }


def write_npz(path: Path, arrays: dict[str, Any], *, compressed: bool = True) -> Path:
    """Write ``arrays`` with ``np.savez_compressed`` (or ``np.savez``) and return ``path``."""
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def write_raw_npz(path: Path, *, drop: tuple[str, ...] = (), compressed: bool = True,
                  **changes: Any) -> dict[str, Any]:
    """Write a raw NPZ, without the keys in ``drop`` and with ``changes`` applied."""
    arrays = raw_arrays()
    arrays.update(changes)
    for key in drop:
        arrays.pop(key, None)
    write_npz(path, arrays, compressed=compressed)
    return arrays


def grouped_arrays(*, n_rows: int = 30, n_groups: int = 20, side: int = SIDE,
                   seed: int = 1) -> dict[str, Any]:
    """Return a grouped (model-ready) NPZ layout built from known raw rows and positions.

    Rows 0 and 1 are in no group. The returned dict also contains ``_amplitude`` (rows, N, N),
    ``_positions`` (rows, 2) and ``_alpha``, which are not written to the file.
    """
    rng = np.random.default_rng(seed)
    channels = 4
    amplitude = rng.random((n_rows, side, side), dtype=np.float32)
    positions = rng.uniform(10, 60, (n_rows, 2))
    indices = np.stack([rng.choice(np.arange(2, n_rows), channels, replace=False)
                        for _ in range(n_groups)]).astype(np.int32)
    alpha = 1.7
    members = positions[indices]
    centroids = members.mean(axis=1)
    return {
        "X": (alpha * amplitude[indices]).transpose(0, 2, 3, 1).astype(np.float32),
        "Y_I": rng.random((n_groups, side, side, channels), dtype=np.float32),
        "Y_phi": rng.random((n_groups, side, side, channels), dtype=np.float32) - 0.5,
        "nn_indices": indices,
        "global_offsets": centroids[:, np.newaxis, :, np.newaxis],
        "local_offsets": (centroids[:, :, np.newaxis] - members.transpose(0, 2, 1))[:, np.newaxis],
        "coords_nominal": np.zeros((n_groups, 1, 2, channels), np.float32),
        "coords_true": np.zeros((n_groups, 1, 2, channels), np.float32),
        "probe": np.ones((side, side), np.complex64),
        "norm_Y_I": np.float64(123.0),
        "YY_full": None,
        "_amplitude": amplitude,
        "_positions": positions,
        "_alpha": alpha,
    }


def write_grouped_npz(path: Path, **changes: Any) -> dict[str, Any]:
    """Write a grouped NPZ (without the ``_``-prefixed reference entries) and return all."""
    arrays = grouped_arrays()
    arrays.update(changes)
    write_npz(path, {key: value for key, value in arrays.items()
                     if not key.startswith("_") or key == "_metadata"})
    return arrays


def write_cxi(path: Path, *, n_frames: int = 12, side: int = 32, seed: int = 2,
              near_field: bool = False) -> dict[str, Any]:
    """Write a small CXI 1.6 file with counts, mask, translations and source metadata."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(50, (n_frames, side, side)).astype(np.int32)
    translation = np.zeros((n_frames, 3))
    translation[:, 0] = rng.uniform(-2e-6, 2e-6, n_frames)
    translation[:, 1] = rng.uniform(-1e-6, 3e-6, n_frames)
    bad = np.zeros((side, side), np.uint32)
    bad[3, 5] = 1
    with h5py.File(path, "w") as file:
        file["cxi_version"] = 160
        detector = file.create_group("entry_1/instrument_1/detector_1")
        detector["data"] = counts
        detector["mask"] = bad
        detector["distance"] = np.float32(2.0)
        detector["x_pixel_size"] = 75e-6
        detector["y_pixel_size"] = 75e-6
        source = file.create_group("entry_1/instrument_1/source_1")
        source["energy"] = 8000 * 1.602176634e-19
        file["entry_1/sample_1/geometry_1/translation"] = translation
    return {"counts": counts, "translation": translation, "bad": bad}
