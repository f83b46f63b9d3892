"""Bad-input corpus: every command rejects malformed input with one message and writes nothing.

Each case builds its inputs in a fresh folder and runs one command through its ``main([...])``
in process. The test checks the exit status (2) and that exactly one ``ptychozarr: error:`` line
names the bad value and the fix, pinned by a regular expression. It also checks that the folder
is left exactly as it was: no output, no ``.partial``, ``.lock`` or staging folder, and no new
grouped view or prediction run inside the stores. Invalid input that the converter tests already
cover (missing keys, NaN patterns, negative counts, pickles, truncated zips) is not repeated here.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr
from io_samples import grouped_arrays, raw_arrays, write_cxi, write_npz

from ptychozarr.cli import EXIT_INVALID_INPUT
from ptychozarr.store import consolidate

GROUPED_VIEW = "synthetic"
"""Name of the grouped view that the ``grouped_store_factory`` fixture writes."""


class Inputs:
    """The folder of one case and copies of the session's store and bundles, made on request."""

    def __init__(self, folder: Path, request: pytest.FixtureRequest) -> None:
        self.folder = folder
        self.request = request

    def path(self, name: str) -> Path:
        return self.folder / name

    def raw_npz(self, name: str, **changes: Any) -> Path:
        """Write the converter's sample raw NPZ with ``changes`` applied."""
        arrays = raw_arrays()
        arrays.update(changes)
        return write_npz(self.path(name), arrays)

    @property
    def group(self) -> str:
        return str(self.request.getfixturevalue("simulated_store")["group"])

    def store(self, name: str = "data.zarr") -> Path:
        """Copy the session's simulated store (N=64, gridsize-1 view) into the folder."""
        source = self.request.getfixturevalue("simulated_store")["store"]
        return Path(shutil.copytree(source, self.path(name)))

    def bundle(self, kind: str = "pinn") -> Path:
        """Copy the session's trained bundle of ``kind`` into the folder."""
        source = self.request.getfixturevalue("trained_pair")[kind]
        return Path(shutil.copytree(source, self.path(kind)))

    def scheduler(self) -> list[str]:
        client = self.request.getfixturevalue("dask_client")
        return ["--scheduler", client.scheduler.address]


def _flip_byte(path: Path, offset: int = 100) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))


def _edit_manifest(bundle: Path, **changes: Any) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _edit_array(store: Path, name: str, index: tuple[int, ...], value: float) -> None:
    array = zarr.open_array(str(store / name), mode="r+")
    values = np.asarray(array[...])
    values[index] = value
    array[...] = values


# Convert ---------------------------------------------------------------------------------------

def _convert_probe_inf(inputs: Inputs) -> list[str]:
    probe = raw_arrays()["probeGuess"]
    probe[2, 2] = np.inf
    return [str(inputs.raw_npz("in.npz", probeGuess=probe)), str(inputs.path("out.zarr"))]


def _convert_position_nan(inputs: Inputs) -> list[str]:
    x = raw_arrays()["xcoords"]
    x[3] = np.nan
    return [str(inputs.raw_npz("in.npz", xcoords=x)), str(inputs.path("out.zarr"))]


def _convert_single_pattern(inputs: Inputs) -> list[str]:
    pattern = raw_arrays()["diffraction"][0]
    return [str(inputs.raw_npz("in.npz", diffraction=pattern)), str(inputs.path("out.zarr"))]


def _convert_patch_count(inputs: Inputs) -> list[str]:
    patches = raw_arrays()["Y"][:5]
    return [str(inputs.raw_npz("in.npz", Y=patches)), str(inputs.path("out.zarr"))]


def _convert_text_patterns(inputs: Inputs) -> list[str]:
    text = np.array(["a"] * 40)
    return [str(inputs.raw_npz("in.npz", diffraction=text)), str(inputs.path("out.zarr"))]


def _convert_empty_file(inputs: Inputs) -> list[str]:
    inputs.path("in.npz").write_bytes(b"")
    return [str(inputs.path("in.npz")), str(inputs.path("out.zarr"))]


def _convert_absent_key(inputs: Inputs) -> list[str]:
    return [str(inputs.raw_npz("in.npz")), str(inputs.path("out.zarr")),
            "--diffraction-key", "patterns"]


def _convert_truncated_cxi(inputs: Inputs) -> list[str]:
    write_cxi(inputs.path("whole.cxi"))
    content = inputs.path("whole.cxi").read_bytes()
    inputs.path("whole.cxi").unlink()
    inputs.path("in.cxi").write_bytes(content[: len(content) // 2])
    return [str(inputs.path("in.cxi")), str(inputs.path("out.zarr"))]


def _convert_cxi_translation_nan(inputs: Inputs) -> list[str]:
    write_cxi(inputs.path("in.cxi"))
    with h5py.File(inputs.path("in.cxi"), "a") as file:
        translation = file["entry_1/sample_1/geometry_1/translation"]
        values = translation[...]
        values[2, 0] = np.nan
        translation[...] = values
    return [str(inputs.path("in.cxi")), str(inputs.path("out.zarr"))]


def _convert_grouped_channels(inputs: Inputs) -> list[str]:
    arrays = {key: value for key, value in grouped_arrays().items() if not key.startswith("_")}
    arrays["X"] = arrays["X"][..., :3]
    np.savez(inputs.path("in.npz"), **arrays)
    return [str(inputs.path("in.npz")), str(inputs.path("out.zarr"))]


# Simulate --------------------------------------------------------------------------------------

def _simulate_zero_patterns(inputs: Inputs) -> list[str]:
    return [str(inputs.path("sim.zarr")), "--n-patterns", "0"]


def _simulate_nphotons_nan(inputs: Inputs) -> list[str]:
    return [str(inputs.path("sim.zarr")), "--nphotons", "nan"]


def _simulate_probe_side(inputs: Inputs) -> list[str]:
    np.save(inputs.path("probe.npy"), np.ones((32, 32), np.complex64))
    return [str(inputs.path("sim.zarr")), "--n", "64", "--probe", "file", "--probe-file",
            str(inputs.path("probe.npy"))]


def _simulate_probe_nan(inputs: Inputs) -> list[str]:
    probe = np.ones((64, 64), np.complex64)
    probe[3, 3] = np.nan
    np.save(inputs.path("probe.npy"), probe)
    return [str(inputs.path("sim.zarr")), "--probe", "file", "--probe-file",
            str(inputs.path("probe.npy")), "--n-patterns", "8", "--object-size", "128"]


def _simulate_truncated_npz(inputs: Inputs) -> list[str]:
    content = inputs.raw_npz("whole.npz").read_bytes()
    inputs.path("whole.npz").unlink()
    inputs.path("scan.npz").write_bytes(content[:100])
    return [str(inputs.path("sim.zarr")), "--from-npz", str(inputs.path("scan.npz"))]


def _simulate_position_columns(inputs: Inputs) -> list[str]:
    np.save(inputs.path("positions.npy"), np.full((4, 3), 60.0))
    return [str(inputs.path("sim.zarr")), "--positions", "file", "--positions-file",
            str(inputs.path("positions.npy")), "--object-size", "128"]


def _simulate_corrupted_image(inputs: Inputs) -> list[str]:
    inputs.path("object.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return [str(inputs.path("sim.zarr")), "--object", "image", "--object-file",
            str(inputs.path("object.png")), "--n-patterns", "8"]


# Group -----------------------------------------------------------------------------------------

def _group_other_version(inputs: Inputs) -> list[str]:
    store = inputs.store()
    root = zarr.open_group(str(store), mode="r+")
    block: Any = root.attrs["ptychozarr"]
    root.attrs["ptychozarr"] = {**block, "format_version": 2}
    consolidate(store)
    return [str(store), "--name", "new"]


def _group_missing_positions(inputs: Inputs) -> list[str]:
    store = inputs.store()
    shutil.rmtree(store / "xcoords")
    consolidate(store)
    return [str(store), "--name", "new"]


def _group_nan_pattern(inputs: Inputs) -> list[str]:
    store = inputs.store()
    _edit_array(store, "diffraction", (40, 3, 3), np.nan)
    return [str(store), "--name", "new"]


def _group_corrupted_chunk(inputs: Inputs) -> list[str]:
    store = inputs.store()
    _flip_byte(store / "diffraction" / "c" / "1" / "0" / "0")
    return [str(store), "--name", "new"]


def _group_plain_zarr(inputs: Inputs) -> list[str]:
    zarr.open_group(str(inputs.path("plain.zarr")), mode="w")
    return [str(inputs.path("plain.zarr"))]


def _group_negative_nphotons(inputs: Inputs) -> list[str]:
    store = inputs.store()
    zarr.open_group(str(store), mode="r+").attrs["nphotons"] = -3.0
    consolidate(store)
    return [str(store), "--name", "new"]


# Train -----------------------------------------------------------------------------------------

def _train(inputs: Inputs, store: Path, *extra: str) -> list[str]:
    return ["--model", "pinn", str(store), "--group", inputs.group, str(inputs.path("bundle")),
            "--epochs", "1", "--n-filters-scale", "1", "--no-progress", *extra]


def _refine_plain_zarr(inputs: Inputs) -> list[str]:
    zarr.open_group(str(inputs.path("plain.zarr")), mode="w")
    return [str(inputs.path("plain.zarr")), str(inputs.path("probe.npy"))]


def _refine_empty_region(inputs: Inputs) -> list[str]:
    return [str(inputs.store()), str(inputs.path("probe.npy")), "--region", "box:0,1,0,1"]


def _refine_without_probe(inputs: Inputs) -> list[str]:
    store = inputs.store()
    shutil.rmtree(store / "probe")
    consolidate(store)
    return [str(store), str(inputs.path("probe.npy"))]


def _train_missing_view(inputs: Inputs) -> list[str]:
    arguments = _train(inputs, inputs.store())
    arguments[arguments.index("--group") + 1] = "absent"
    return arguments


def _train_zero_epochs(inputs: Inputs) -> list[str]:
    return [*_train(inputs, inputs.store()), "--epochs", "0"]


def _train_nan_input(inputs: Inputs) -> list[str]:
    store = inputs.store()
    _edit_array(store, f"groups/{inputs.group}/X", (37, 3, 3, 0), np.nan)
    return _train(inputs, store)


def _train_corrupted_chunk(inputs: Inputs) -> list[str]:
    store = inputs.store()
    _flip_byte(store / "groups" / inputs.group / "X" / "c" / "2" / "0" / "0" / "0")
    return _train(inputs, store, "--streaming")


def _train_without_probe(inputs: Inputs) -> list[str]:
    store = inputs.store()
    shutil.rmtree(store / "probe")
    consolidate(store)
    return _train(inputs, store)


# Reconstruct -----------------------------------------------------------------------------------

def _reconstruct(inputs: Inputs, store: Path, bundle: Path, *extra: str) -> list[str]:
    return [str(store), "--model", str(bundle), str(inputs.path("object.npz")),
            *inputs.scheduler(), *extra]


def _reconstruct_other_n(inputs: Inputs) -> list[str]:
    factory = inputs.request.getfixturevalue("grouped_store_factory")
    store = factory(inputs.path("n32.zarr"), n_groups=8, n=32)
    return _reconstruct(inputs, store, inputs.bundle())


def _reconstruct_other_gridsize(inputs: Inputs) -> list[str]:
    factory = inputs.request.getfixturevalue("grouped_store_factory")
    store = factory(inputs.path("g2.zarr"), n_groups=6, gridsize=2)
    return _reconstruct(inputs, store, inputs.bundle(), "--group", GROUPED_VIEW)


def _reconstruct_missing_manifest(inputs: Inputs) -> list[str]:
    bundle = inputs.bundle()
    (bundle / "manifest.json").unlink()
    return _reconstruct(inputs, inputs.store(), bundle)


def _reconstruct_tampered_manifest(inputs: Inputs) -> list[str]:
    # gridsize 2 would make reconstruct group the store anew before any worker loads the model.
    bundle = inputs.bundle()
    _edit_manifest(bundle, gridsize=2)
    return _reconstruct(inputs, inputs.store(), bundle)


def _reconstruct_truncated_model(inputs: Inputs) -> list[str]:
    bundle = inputs.bundle()
    content = (bundle / "model.keras").read_bytes()
    (bundle / "model.keras").write_bytes(content[:1000])
    return _reconstruct(inputs, inputs.store(), bundle)


def _reconstruct_output_format(inputs: Inputs) -> list[str]:
    arguments = _reconstruct(inputs, inputs.store(), inputs.bundle())
    arguments[3] = str(inputs.path("object.png"))
    return arguments


# Compare ---------------------------------------------------------------------------------------

def _compare(inputs: Inputs, *arms: str) -> list[str]:
    return [str(inputs.store()), str(inputs.path("out")), *arms, *inputs.scheduler()]


def _compare_npz_key(inputs: Inputs) -> list[str]:
    np.savez(inputs.path("recon.npz"), wrong=np.ones((4, 4), np.complex64))
    return _compare(inputs, "--pinn", str(inputs.bundle()), "--recon-npz",
                    str(inputs.path("recon.npz")))


def _compare_npz_nan(inputs: Inputs) -> list[str]:
    np.savez(inputs.path("recon.npz"),
             reconstructed_object=np.full((160, 160), np.nan, np.complex64))
    return _compare(inputs, "--recon-npz", str(inputs.path("recon.npz")))


def _compare_npz_truncated(inputs: Inputs) -> list[str]:
    inputs.path("recon.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 20)
    return _compare(inputs, "--recon-npz", str(inputs.path("recon.npz")))


def _compare_bundle_kind(inputs: Inputs) -> list[str]:
    return _compare(inputs, "--pinn", str(inputs.bundle("baseline")))


def _compare_percentiles(inputs: Inputs) -> list[str]:
    return _compare(inputs, "--pinn", str(inputs.bundle()), "--p-min", "50", "--p-max", "10")


@dataclass(frozen=True)
class Case:
    """One malformed input: the command, how to build its arguments, the expected message."""

    command: str
    build: Callable[[Inputs], list[str]]
    message: str


CASES = {
    "convert-probe-inf": Case(
        "convert", _convert_probe_inf,
        r"probe 'probeGuess' contains NaN or infinite values\. Repair it, or remove it"),
    "convert-position-nan": Case(
        "convert", _convert_position_nan,
        r"position x at index 3 is np\.float64\(nan\); every position must be finite\. "
        r"Remove those patterns or repair"),
    "convert-single-pattern": Case(
        "convert", _convert_single_pattern,
        r"diffraction 'diffraction' has shape \(16, 16\); a stack of patterns \(M, N, N\)"),
    "convert-patch-count": Case(
        "convert", _convert_patch_count,
        r"object patches 'Y' have shape \(5, 16, 16\); one patch per pattern.*Remove 'Y' or fix"),
    "convert-text-patterns": Case(
        "convert", _convert_text_patterns,
        r"diffraction 'diffraction' has dtype '<U1'; a numeric array is required"),
    "convert-empty-file": Case(
        "convert", _convert_empty_file,
        r"neither an NPZ \(zip\) nor an HDF5/CXI file \(first bytes b''\)\. Convert it"),
    "convert-absent-key": Case(
        "convert", _convert_absent_key,
        r"diffraction key 'patterns' not found; the file has \[.*\]\. Pass the right name with "
        r"--diffraction-key"),
    "convert-truncated-cxi": Case(
        "convert", _convert_truncated_cxi,
        r"in\.cxi: HDF5 file cannot be opened .*truncated or corrupted; copy or download it"),
    "convert-cxi-translation-nan": Case(
        "convert", _convert_cxi_translation_nan,
        r"translation' contains NaN or infinite values; every translation must be finite\. "
        r"Repair"),
    "convert-grouped-channels": Case(
        "convert", _convert_grouped_channels,
        r"'X' has 3 channels; a group has gridsize\*\*2 members \(1 or 4\)"),
    "simulate-zero-patterns": Case(
        "simulate", _simulate_zero_patterns, r"n_patterns: invalid value 0; use at least 1"),
    "simulate-nphotons-nan": Case(
        "simulate", _simulate_nphotons_nan, r"nphotons: invalid value nan; use a positive count"),
    "simulate-probe-side": Case(
        "simulate", _simulate_probe_side,
        r"probe\.npy: probe side 32 differs from n=64\. Leave n unset"),
    "simulate-probe-nan": Case(
        "simulate", _simulate_probe_nan,
        r"probe\.npy: the probe contains NaN or infinite values\. Repair it, or simulate with a "
        r"generated probe"),
    "simulate-truncated-npz": Case(
        "simulate", _simulate_truncated_npz,
        r"scan\.npz: cannot read as an NPZ archive .*truncated or corrupted"),
    "simulate-position-columns": Case(
        "simulate", _simulate_position_columns,
        r"positions\.npy: positions have shape \(4, 3\); expected \(scan, 2\) with columns x"),
    "simulate-corrupted-image": Case(
        "simulate", _simulate_corrupted_image,
        r"object\.png: cannot read the object image \(.*\)\. Use a PNG, JPEG, TIFF or \.npy"),
    "group-other-version": Case(
        "group", _group_other_version,
        r"store format version 2 is not supported; this ptychozarr reads version 1\. "
        r"Re-convert"),
    "group-missing-positions": Case(
        "group", _group_missing_positions,
        r"required array 'xcoords' is missing\. The store is incomplete; re-create it"),
    "group-nan-pattern": Case(
        "group", _group_nan_pattern,
        r"pattern 40 contains NaN or infinite values.*Repair the store's diffraction array"),
    "group-corrupted-chunk": Case(
        "group", _group_corrupted_chunk,
        r"array 'diffraction', chunk \(1, 0, 0\): the stored bytes .* fail their CRC32C checksum"
        r".*`ptychozarr verify"),
    "group-plain-zarr": Case(
        "group", _group_plain_zarr,
        r"plain\.zarr: not a ptychozarr store .*Create one with `ptychozarr convert`"),
    "group-negative-nphotons": Case(
        "group", _group_negative_nphotons,
        r"root attribute nphotons=-3\.0 is not a positive number\. Pass nphotons explicitly"),
    "refine-probe-plain-zarr": Case(
        "refine_probe", _refine_plain_zarr,
        r"plain\.zarr: not a ptychozarr store .*Create one with `ptychozarr convert`"),
    "refine-probe-empty-region": Case(
        "refine_probe", _refine_empty_region,
        r"region: 'box:0,1,0,1' contains no scan position of .*data\.zarr; choose a region"),
    "train-missing-view": Case(
        "train", _train_missing_view,
        r"grouped view 'absent' not found; the store has \['g1-.*'\]\. Create it with "
        r"`ptychozarr group`"),
    "train-zero-epochs": Case(
        "train", _train_zero_epochs, r"epochs: invalid value 0; use at least 1"),
    "train-nan-input": Case(
        "train", _train_nan_input,
        r"'X' of group 37 contains NaN or infinite values.*`ptychozarr group --overwrite`"),
    "train-corrupted-chunk": Case(
        "train", _train_corrupted_chunk,
        r"array 'groups/g1-.*/X', chunk \(2, 0, 0, 0\): the stored bytes .* fail their CRC32C"),
    "train-without-probe": Case(
        "train", _train_without_probe,
        r"the store has no 'probe' array\. A PINN and probe refinement need the illumination.*"
        r"--probe-key"),
    "refine-probe-without-probe": Case(
        "refine_probe", _refine_without_probe,
        r"the store has no 'probe' array\. A PINN and probe refinement need the illumination.*"
        r"--probe-key"),
    "reconstruct-other-n": Case(
        "reconstruct", _reconstruct_other_n,
        r"trained on N=64 patterns, but .*n32\.zarr: diffraction has N=32\. Use a bundle "
        r"trained at N=32"),
    "reconstruct-other-gridsize": Case(
        "reconstruct", _reconstruct_other_gridsize,
        r"trained with gridsize 1, but .* is grouped with gridsize 2\. Group the store with "
        r"`ptychozarr group --gridsize 1`"),
    "reconstruct-missing-manifest": Case(
        "reconstruct", _reconstruct_missing_manifest,
        r"manifest\.json is missing, so this is not a complete ptychozarr model bundle\. Pass "
        r"the directory"),
    "reconstruct-tampered-manifest": Case(
        "reconstruct", _reconstruct_tampered_manifest,
        r"manifest\.json: the manifest's content does not match its 'content_sha256'.*Restore "
        r"the original"),
    "reconstruct-truncated-model": Case(
        "reconstruct", _reconstruct_truncated_model,
        r"model\.keras: sha256 does not match the manifest.*Restore the original"),
    "reconstruct-output-format": Case(
        "reconstruct", _reconstruct_output_format,
        r"unknown output extension '\.png'; use one of \['\.h5'"),
    "compare-npz-key": Case(
        "compare_models", _compare_npz_key,
        r"recon\.npz: key 'reconstructed_object' is missing; found \['wrong'\]\. Save the "
        r"complex 2-D object"),
    "compare-npz-nan": Case(
        "compare_models", _compare_npz_nan,
        r"'reconstructed_object' contains NaN or infinite values.*Replace them"),
    "compare-npz-truncated": Case(
        "compare_models", _compare_npz_truncated,
        r"recon\.npz: cannot be read as an NPZ file without pickle .*Write it again"),
    "compare-bundle-kind": Case(
        "compare_models", _compare_bundle_kind,
        r"a baseline bundle given as --pinn; pass it with --baseline"),
    "compare-percentiles": Case(
        "compare_models", _compare_percentiles,
        r"plot_percentiles: invalid value \(50\.0, 10\.0\); use \(low, high\)"),
}


def _folder_listing(folder: Path) -> dict[str, int]:
    """Every path under ``folder`` with its size (0 for folders)."""
    return {str(path.relative_to(folder)): path.stat().st_size if path.is_file() else 0
            for path in folder.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_rejected(name: str, tmp_path: Path, request: pytest.FixtureRequest,
                            capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    arguments = case.build(Inputs(tmp_path, request))
    before = _folder_listing(tmp_path)
    capsys.readouterr()

    workflow = importlib.import_module(f"ptychozarr.workflows.{case.command}")
    status = workflow.main(arguments)
    message = capsys.readouterr().err
    errors = [line for line in message.splitlines() if line.startswith("ptychozarr: error:")]

    assert status == EXIT_INVALID_INPUT
    assert len(errors) == 1, message
    assert re.search(case.message, errors[0]), errors[0]
    assert "Traceback" not in message
    assert _folder_listing(tmp_path) == before


def test_corpus_covers_commands() -> None:
    commands = {case.command for case in CASES.values()}
    assert commands == {"convert", "simulate", "group", "refine_probe", "train", "reconstruct",
                        "compare_models"}
    assert len(CASES) >= 25
