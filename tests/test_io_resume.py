"""Interruption and resume: a conversion killed with SIGKILL finishes with --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from io_samples import raw_arrays, write_npz

from ptychozarr.workflows import convert as convert_workflow

# Converts slowly (a pause after every chunk of 4 frames) so the test can kill it midway.
SLOW_CONVERT = """
import sys, time
from ptychozarr.io.convert import convert
convert(sys.argv[1], sys.argv[2], chunk_frames=4, progress=lambda done, total: time.sleep(0.05))
"""


def _frames_done(partial: Path) -> int:
    try:
        progress = json.loads((partial / ".ptychozarr-progress.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(progress["frames_done"].get("diffraction", 0))


def _chunk_files(store: Path) -> dict[str, bytes]:
    return {str(path.relative_to(store)): path.read_bytes()
            for path in sorted(store.rglob("*")) if path.is_file() and "/c/" in str(path)}


def test_killed_conversion_resumes(tmp_path: Path) -> None:
    arrays = raw_arrays(n_frames=400)
    arrays["diffraction"] = np.sqrt(np.random.default_rng(7).poisson(
        20, (400, 16, 16))).astype(np.float32)
    source = write_npz(tmp_path / "big.npz", arrays)
    output = tmp_path / "big.zarr"
    partial = tmp_path / "big.zarr.partial"

    process = subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, str(source), str(output)])
    deadline = time.monotonic() + 60
    while _frames_done(partial) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = _frames_done(partial)
    assert 40 <= killed_at < 400
    assert not output.exists()
    assert (tmp_path / "big.zarr.lock").exists()

    status = convert_workflow.main([str(source), str(output), "--chunk-frames", "4",
                                    "--resume", "--no-progress"])
    assert status == 0
    assert not partial.exists()
    assert not (tmp_path / "big.zarr.lock").exists()

    reference = tmp_path / "reference.zarr"
    assert convert_workflow.main([str(source), str(reference), "--chunk-frames", "4",
                                  "--no-progress"]) == 0
    resumed_chunks = _chunk_files(output)
    assert len(resumed_chunks) > 100
    assert resumed_chunks == _chunk_files(reference)


def test_interrupted_store_blocks_plain_rerun(tmp_path: Path) -> None:
    source = write_npz(tmp_path / "a.npz", raw_arrays())
    partial = tmp_path / "a.zarr.partial"
    partial.mkdir()
    (partial / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    status = convert_workflow.main([str(source), str(tmp_path / "a.zarr"), "--no-progress"])
    assert status == 2
    assert partial.exists()
    assert convert_workflow.main([str(source), str(tmp_path / "a.zarr"), "--overwrite",
                                  "--no-progress"]) == 0
    assert not partial.exists()
