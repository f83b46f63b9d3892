"""Distributed faults: a worker lost while stitching, and a scheduler that never replies.

A worker killed with SIGKILL (as by the out-of-memory killer) while stitching loses the
patches it held in memory. Its nanny starts a new worker, the scheduler reads the lost patches
again, and the stitched object equals the one that the undisturbed run stored. A worker lost
during inference is tested with the comparison code. A scheduler address where a program
accepts connections but never replies ends in :class:`ClusterConnectionError` after the
configured connect timeout, instead of a client that waits for ever.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
from distributed import futures_of

from ptychozarr.cli import EXIT_INVALID_INPUT
from ptychozarr.cluster import close_client, make_client
from ptychozarr.errors import ClusterConnectionError
from ptychozarr.inference import predict, read_run_object
from ptychozarr.stitching import canvas_geometry, stitch
from ptychozarr.store import open_store
from ptychozarr.workflows import compare_models as compare_workflow


def _worker_pids(client: Any) -> list[int]:
    return sorted(client.run(os.getpid).values())


@pytest.fixture()
def published_run(simulated_store: dict[str, Any], trained_pair: dict[str, Path],
                  dask_client: Any, tmp_path: Path) -> dict[str, Any]:
    """A copy of the simulated store with one published PINN run."""
    store = Path(shutil.copytree(simulated_store["store"], tmp_path / "data.zarr"))
    run_path = predict(store, simulated_store["group"], trained_pair["pinn"],
                       client=dask_client)
    return {"store": store, "run_path": run_path}


def test_lost_worker_while_stitching(published_run: dict[str, Any]) -> None:
    store, run_path = published_run["store"], published_run["run_path"]
    expected, _, attributes = read_run_object(store, run_path)
    run: Any = open_store(store)[run_path]
    geometry = canvas_geometry((0.0, 0.0), (0.0, 0.0), object_shape=expected.shape)

    # The patches come from the stored run, so the workers need no model and start quickly.
    client = make_client(n_workers=1, threads_per_worker=1, memory_limit="1GiB")
    try:
        patches, positions = client.persist([da.from_zarr(run["patches"]),
                                             da.from_zarr(run["positions"])])
        client.gather(futures_of([patches, positions]))
        stitched = client.compute(stitch(patches, positions, geometry=geometry,
                                         crop_size=attributes["stitch_crop_size_px"]))
        (killed,) = _worker_pids(client)
        os.kill(killed, signal.SIGKILL)
        obj = stitched.result(timeout=120)
        restarted = _worker_pids(client)
    finally:
        close_client(client)

    assert len(restarted) == 1
    assert restarted[0] != killed
    assert obj.shape == expected.shape
    np.testing.assert_allclose(obj, expected, rtol=1e-6, atol=1e-7)


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()
    for connection in accepted:
        connection.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout_s", [0.5, 2.0])
def test_silent_scheduler_times_out(silent_port: int, timeout_s: float) -> None:
    address = f"tcp://127.0.0.1:{silent_port}"
    with pytest.raises(ClusterConnectionError,
                       match=rf"'{address}': could not connect within {timeout_s:g} s \(.*"
                             r"handshake did not complete.*raise --connect-timeout"):
        make_client(scheduler=address, connect_timeout_s=timeout_s)


@pytest.mark.timeout(60)
def test_silent_scheduler_command_fails(silent_port: int, simulated_store: dict[str, Any],
                                        trained_pair: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    address = f"tcp://127.0.0.1:{silent_port}"
    status = compare_workflow.main([
        str(simulated_store["store"]), str(tmp_path / "out"), "--pinn", str(trained_pair["pinn"]),
        "--scheduler", address, "--connect-timeout", "1",
    ])
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("ptychozarr: error:")]

    assert status == EXIT_INVALID_INPUT
    assert len(errors) == 1
    assert f"Dask scheduler {address!r}: could not connect within 1 s" in errors[0]
    assert not (tmp_path / "out").exists()
