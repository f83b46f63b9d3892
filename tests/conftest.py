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
