"""Shared fixtures: paths to the real data under ../shared/data and small generated inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PTYCHOZARR_SHARED_DATA", REPOSITORY.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Return a file under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data file {path} is absent (set PTYCHOZARR_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def siemens_star_path() -> Path:
    """Tike's APS Siemens-star NPZ (bz2-compressed)."""
    return shared_file("tike-siemens-star/siemens-star-small.npz.bz2")


@pytest.fixture(scope="session")
def run1084_path() -> Path:
    """PtychoPINN's Run1084 probe, object and positions (no diffraction)."""
    return shared_file("ptychopinn-run1084/Run1084_recon3_postPC.npz")


@pytest.fixture(scope="session")
def petra_cxi_path() -> Path:
    """The PETRA III P25 near-field CXI file."""
    return shared_file("cdtools-petra-nearfield/PETRAIII_P25_Near_Field_Ptycho.cxi")


# ---------------------------------------------------------------------------------------------
# Container, tf.data and training fixtures: synthetic grouped stores, and a tiny simulated store
# with one trained PINN and baseline bundle pair for the tests that need a model.
# ---------------------------------------------------------------------------------------------

GROUPED_VIEW = "synthetic"
"""Name of the grouped view written by ``write_grouped_store``."""


def write_grouped_store(path: Path, *, n_groups: int, n: int = 64, gridsize: int = 1,
                        chunk_groups: int = 16, ground_truth: bool = True,
                        nominal: bool = True, seed: int = 0) -> Path:
    """Write a small physically consistent store with one grouped view named GROUPED_VIEW.

    The object is smooth random amplitude and phase, the probe a Gaussian; every group's
    members are consecutive scan positions within 4 px of each other, and X is the normalised
    far-field amplitude (unitary FFT, zero frequency centred) of probe times patch, with
    Poisson noise.
    """
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from ptychozarr.store import (
        GROUP_ARRAYS,
        RAW_ARRAYS,
        StoreWriter,
        create_array,
        stage_subgroup,
    )
    from ptychozarr.store.schema import format_block

    rng = np.random.default_rng(seed)
    channels = gridsize**2
    n_scan = n_groups * channels
    side = 2 * n + 32
    smooth = gaussian_filter(rng.random((side, side)), 3)
    amplitude = 0.3 + 0.7 * (smooth - smooth.min()) / np.ptp(smooth)
    phase = np.clip(gaussian_filter(rng.standard_normal((side, side)), 4) * 3, -1, 1)
    obj = (amplitude * np.exp(1j * phase)).astype(np.complex64)
    yy, xx = np.mgrid[:n, :n] - n / 2
    probe = np.exp(-(xx**2 + yy**2) / (2 * (n / 8) ** 2)).astype(np.complex64)

    # Group members lie within 4 px of a random centre, as neighbours in a dense scan do.
    centres = rng.integers(n // 2 + 4, side - n // 2 - 4, (n_groups, 1, 2))
    spread = rng.integers(-4, 5, (n_groups, channels, 2)) if channels > 1 else 0
    x, y = (centres + spread).reshape(n_scan, 2).astype(np.float64).T
    patches = np.stack([obj[int(b) - n // 2:int(b) + n // 2, int(a) - n // 2:int(a) + n // 2]
                        for a, b in zip(x, y, strict=True)])
    waves = np.fft.fftshift(np.fft.fft2(patches * probe, norm="ortho"), axes=(-2, -1))
    amplitudes = (np.sqrt(rng.poisson(np.abs(waves) ** 2 * 1e4 / np.mean(np.abs(waves) ** 2)))
                  .astype(np.float32))

    with StoreWriter(path) as writer:
        raw = {"diffraction": amplitudes, "xcoords": x, "ycoords": y, "probe": probe,
               "object": obj}
        if nominal:
            raw.update(xcoords_start=np.round(x / 4) * 4, ycoords_start=np.round(y / 4) * 4)
        for name, values in raw.items():
            writer.create_array(RAW_ARRAYS[name], values.shape, chunk_frames=chunk_groups)
            writer.write_whole(name, values)
        writer.set_attrs({"nphotons": float(np.mean(np.sum(amplitudes**2, axis=(1, 2)))),
                          "amplitude_scale": "counts"})
        writer.commit()

    indices = np.arange(n_scan, dtype=np.int32).reshape(n_groups, channels)
    members = np.stack([x, y], axis=-1)[indices]
    offsets = members.mean(axis=1)
    relative = offsets[:, np.newaxis] - members
    alpha = float(np.sqrt((n / 2) ** 2 / np.mean(np.sum(amplitudes.astype(np.float64) ** 2,
                                                         axis=(1, 2)))))
    arrays = {"indices": indices, "offsets": offsets, "relative": relative,
              "X": np.moveaxis(amplitudes[indices] * alpha, 1, -1).astype(np.float32)}
    if ground_truth:
        arrays["Y_I"] = np.moveaxis(np.abs(patches[indices]), 1, -1).astype(np.float32)
        arrays["Y_phi"] = np.moveaxis(np.angle(patches[indices]), 1, -1).astype(np.float32)
    nphotons = 1e4 * n * n / 4
    attrs = {"ptychozarr": format_block("group"), "gridsize": gridsize, "K": max(channels, 4),
             "seed": seed, "n_groups": n_groups, "region": None, "oversample": False, "n": n,
             "alpha": alpha, "intensity_scale": float(np.sqrt(nphotons) / (n / 2)),
             "nphotons": nphotons, "has_ground_truth": ground_truth,
             "max_offset_px": float(np.abs(relative).max()), "source_store": str(path)}
    with stage_subgroup(path, f"groups/{GROUPED_VIEW}", attrs=attrs) as group:
        for name, values in arrays.items():
            array = create_array(group, GROUP_ARRAYS[name], values.shape,
                                 chunk_frames=chunk_groups)
            array[...] = values
    return path


@pytest.fixture(scope="session")
def grouped_store_factory() -> Any:
    """The function ``write_grouped_store(path, *, n_groups, ...)`` for tests to call."""
    return write_grouped_store


@pytest.fixture(scope="session")
def counting_store() -> Any:
    """A function ``(path) -> store`` that opens a read-only LocalStore counting chunk reads.

    The store's ``chunk_reads`` lists every key read except ``zarr.json`` metadata documents.
    """
    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype
    from zarr.storage import LocalStore

    class CountingStore(LocalStore):
        def __init__(self, root: Path) -> None:
            super().__init__(root, read_only=True)
            self.chunk_reads: list[str] = []

        async def get(self, key: str, prototype: BufferPrototype | None = None,
                      byte_range: ByteRequest | None = None) -> Buffer | None:
            if not key.endswith("zarr.json"):
                self.chunk_reads.append(key)
            return await super().get(key, prototype, byte_range)

    return CountingStore


@pytest.fixture(scope="session")
def simulated_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny simulated store with one grouped view, for tests that need real physics.

    256 patterns of N=64 from a 160 px random-lines object (default probe, 1e9 photons, seed 0,
    chunks of 32), grouped with gridsize 1. Returns ``{"store": Path, "group": str}``.
    """
    from ptychozarr.config import GroupingConfig
    from ptychozarr.grouping import group_dataset
    from ptychozarr.simulate import SimulationConfig, simulate_dataset

    store = tmp_path_factory.mktemp("simulated") / "lines.zarr"
    config = SimulationConfig(n=64, n_patterns=256, object_kind="lines", object_size_px=160,
                              seed=0)
    simulate_dataset(store, config, chunk_frames=32)
    group = group_dataset(store, GroupingConfig(gridsize=1), chunk_groups=32)
    return {"store": store, "group": group}


@pytest.fixture(scope="session")
def trained_pair(simulated_store: dict[str, Any],
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A PINN and a baseline bundle trained for 4 epochs on ``simulated_store``.

    Tiny networks (n_filters_scale 1, batch 16, seed 0): the PINN fits the diffraction of
    unseen patterns far better than an untrained one, but neither model is converged. Returns
    ``{"pinn": Path, "baseline": Path}``.
    """
    from ptychozarr.config import ModelConfig, TrainingConfig
    from ptychozarr.container import LazyContainer
    from ptychozarr.training import train

    container = LazyContainer.open(simulated_store["store"], group=simulated_store["group"])
    folder = tmp_path_factory.mktemp("trained")
    training = TrainingConfig(epochs=4, batch_size=16, seed=0)
    bundles = {}
    for kind in ("pinn", "baseline"):
        config = ModelConfig(kind=kind, n=64, gridsize=1, n_filters_scale=1)
        result = train(container, config, training, out=folder / kind)
        assert result.bundle_path is not None
        bundles[kind] = result.bundle_path
    return bundles


# ---------------------------------------------------------------------------------------------
# Dask fixtures: one LocalCluster for the whole session, shared by the inference, stitching and
# comparison tests (a test that kills workers starts its own).
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dask_client() -> Any:
    """A client of a one-worker LocalCluster (2 threads, 3 GiB) started by ``make_client``."""
    from ptychozarr.cluster import close_client, make_client

    client = make_client(n_workers=1, threads_per_worker=2, memory_limit="3GiB")
    yield client
    close_client(client)
