"""The data-only commands run end to end through ``ptychozarr`` without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from io_samples import write_raw_npz

from ptychozarr.cli import main

SCRIPT = """
import sys
from ptychozarr.cli import main
folder = sys.argv[1]
statuses = [
    main(["convert", f"{folder}/in.npz", f"{folder}/s.zarr", "--no-progress"]),
    main(["inspect", f"{folder}/s.zarr"]),
    main(["verify", f"{folder}/s.zarr", "--no-progress"]),
    main(["export", f"{folder}/s.zarr", f"{folder}/out.npz"]),
]
print("statuses", statuses)
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_data_commands_skip_tensorflow(tmp_path: Path) -> None:
    write_raw_npz(tmp_path / "in.npz")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "statuses [0, 0, 0, 0]"
    assert lines[-1] == "False False"
    assert (tmp_path / "out.npz").is_file()


def test_convert_help_states_units(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--crop N" in text
    assert "photon energy in eV" in text
    assert "--detector-distance-m VALUE" in text
