"""Tests of the simulator: generators, store contents, reproducibility, NPZ output and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from ptychozarr import physics, sample_models
from ptychozarr.errors import InvalidInputError, MissingKeyError, OutputExistsError
from ptychozarr.simulate import SimulationConfig, build_inputs, simulate_dataset
from ptychozarr.store import open_store
from ptychozarr.workflows import simulate as simulate_workflow

SMALL = {"n": 32, "n_patterns": 48, "object_size_px": 96, "seed": 3}


def _array(store: Path, name: str) -> np.ndarray:
    array = open_store(store)[name]
    assert isinstance(array, zarr.Array)
    return np.asarray(array[...])


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


# Generators -----------------------------------------------------------------------------------


def test_default_probe_is_disk() -> None:
    probe = sample_models.default_probe(64)
    radius = np.sqrt((np.abs(probe) > 0.5).sum() / np.pi)
    assert probe.dtype == np.complex64
    assert radius == pytest.approx(11.3, abs=1.0)
    rows = np.arange(64)[:, None]
    assert (np.abs(probe) * rows).sum() / np.abs(probe).sum() == pytest.approx(31.5, abs=1e-3)


def test_generated_object_spans_ranges() -> None:
    config = SimulationConfig(**SMALL, amplitude_range=(0.3, 1.0), phase_range_rad=(-0.5, 0.5))
    obj = build_inputs(config).obj
    assert obj.shape == (96, 96)
    assert np.abs(obj).min() == pytest.approx(0.3, abs=1e-6)
    assert np.abs(obj).max() == pytest.approx(1.0, abs=1e-6)
    assert np.angle(obj).min() == pytest.approx(-0.5, abs=1e-6)
    assert np.angle(obj).max() == pytest.approx(0.5, abs=1e-6)


def test_phase_from_amplitude_pattern() -> None:
    independent = build_inputs(SimulationConfig(**SMALL)).obj
    tied = build_inputs(SimulationConfig(**SMALL, phase_pattern="amplitude")).obj
    np.testing.assert_allclose(np.abs(tied), np.abs(independent), rtol=1e-6)
    # Amplitude 0.3..1 and phase -0.5..0.5 rad come from one pattern: phase = (a - 0.65) / 0.7.
    np.testing.assert_allclose(np.angle(tied), (np.abs(tied) - 0.65) / 0.7, atol=1e-5)
    assert abs(np.corrcoef(np.abs(independent).ravel(), np.angle(independent).ravel())[0, 1]) < 0.5


def test_grf_object_differs_from_lines() -> None:
    lines = build_inputs(SimulationConfig(**SMALL)).obj
    grf = build_inputs(SimulationConfig(**SMALL, object_kind="grf")).obj
    assert grf.shape == lines.shape
    assert not np.allclose(grf, lines)


def test_image_object_from_png(tmp_path: Path) -> None:
    from skimage import io

    image = np.zeros((40, 50), np.uint8)
    image[10:20, 5:45] = 255
    io.imsave(tmp_path / "sample.png", image, check_contrast=False)
    config = SimulationConfig(n=16, n_patterns=4, object_kind="image",
                              object_path=str(tmp_path / "sample.png"))
    obj = build_inputs(config).obj
    assert obj.shape == (40, 50)
    assert np.abs(obj[15, 20]) == pytest.approx(1.0)
    assert np.abs(obj[0, 0]) == pytest.approx(0.3)


@pytest.mark.parametrize("kind", ["random", "raster", "spiral"])
def test_positions_inside_border(kind: str) -> None:
    config = SimulationConfig(**SMALL, positions_kind=kind)
    positions = build_inputs(config).positions
    assert positions.shape == (48, 2)
    assert positions.min() >= 16
    assert positions.max() <= 96 - 16
    assert len(np.unique(positions, axis=0)) == 48


def test_positions_from_csv(tmp_path: Path) -> None:
    table = np.array([[40.0, 30.5], [41.0, 33.0], [50.25, 60.0]])
    np.savetxt(tmp_path / "scan.csv", table, delimiter=",")
    config = SimulationConfig(**{**SMALL, "n_patterns": None}, positions_kind="file",
                              positions_path=str(tmp_path / "scan.csv"))
    np.testing.assert_array_equal(build_inputs(config).positions, table)


# Config ---------------------------------------------------------------------------------------


def test_config_rejects_bad_values() -> None:
    with pytest.raises(InvalidInputError, match="nphotons: invalid value -1"):
        SimulationConfig(nphotons=-1)
    with pytest.raises(InvalidInputError, match="n: invalid pattern side 33"):
        SimulationConfig(n=33)
    with pytest.raises(InvalidInputError, match="object_path: missing"):
        SimulationConfig(object_kind="image")
    with pytest.raises(InvalidInputError, match="with_nominal: nominal positions"):
        SimulationConfig(with_nominal=True)
    with pytest.raises(InvalidInputError, match="phase_pattern: invalid value 'same'; use"):
        SimulationConfig(phase_pattern="same")  # type: ignore[arg-type]


def test_config_round_trip() -> None:
    config = SimulationConfig(**SMALL, probe_kind="gaussian")
    assert SimulationConfig.from_dict(config.to_dict()) == config


def test_object_too_small_for_border() -> None:
    with pytest.raises(InvalidInputError, match="leaves no room for scan positions"):
        build_inputs(SimulationConfig(n=64, object_size_px=60))


def test_missing_npz_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", xcoords=np.zeros(3))
    with pytest.raises(MissingKeyError, match=r"key\(s\) \['probeGuess'\] missing"):
        build_inputs(SimulationConfig(from_npz=str(tmp_path / "bad.npz")))


# Store ----------------------------------------------------------------------------------------


def test_store_contents(tmp_path: Path) -> None:
    store = simulate_dataset(tmp_path / "s.zarr", SimulationConfig(**SMALL), chunk_frames=16)
    group = open_store(store)
    diffraction = group["diffraction"]
    assert isinstance(diffraction, zarr.Array)
    assert diffraction.shape == (48, 32, 32)
    assert diffraction.chunks == (16, 32, 32)
    assert diffraction.dtype == np.float32
    assert diffraction.attrs["amplitude_scale"] == "counts"
    assert group.attrs["amplitude_scale"] == "counts"
    assert group.attrs["nphotons"] == 1e9
    assert _array(store, "object").shape == (96, 96)
    assert _array(store, "probe").dtype == np.complex64
    assert "xcoords_start" not in group


def test_noise_free_mean_counts(tmp_path: Path) -> None:
    config = SimulationConfig(**SMALL, nphotons=1e6, noise=False)
    store = simulate_dataset(tmp_path / "s.zarr", config, chunk_frames=16)
    counts = _array(store, "diffraction").astype(np.float64) ** 2
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(1e6, rel=1e-5)


def test_poisson_counts_are_integers(tmp_path: Path) -> None:
    config = SimulationConfig(**SMALL, nphotons=1e4)
    store = simulate_dataset(tmp_path / "s.zarr", config, chunk_frames=16)
    counts = _array(store, "diffraction").astype(np.float64) ** 2
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-2)
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(1e4, rel=0.05)


def test_same_seed_identical_bytes(tmp_path: Path) -> None:
    config = SimulationConfig(**SMALL)
    first = simulate_dataset(tmp_path / "a.zarr", config, chunk_frames=16)
    second = simulate_dataset(tmp_path / "b.zarr", config, chunk_frames=16)
    assert _file_bytes(first) == _file_bytes(second)


def test_other_seed_differs(tmp_path: Path) -> None:
    first = simulate_dataset(tmp_path / "a.zarr", SimulationConfig(**SMALL), chunk_frames=16)
    other = SimulationConfig(**{**SMALL, "seed": 4})
    second = simulate_dataset(tmp_path / "b.zarr", other, chunk_frames=16)
    assert not np.array_equal(_array(first, "diffraction"), _array(second, "diffraction"))


def test_chunk_size_does_not_change_data(tmp_path: Path) -> None:
    config = SimulationConfig(**SMALL)
    small = simulate_dataset(tmp_path / "a.zarr", config, chunk_frames=8)
    large = simulate_dataset(tmp_path / "b.zarr", config, chunk_frames=48)
    np.testing.assert_array_equal(_array(small, "diffraction"), _array(large, "diffraction"))


def test_interrupted_run_resumes(tmp_path: Path) -> None:
    config = SimulationConfig(**SMALL)

    def stop_after_first_chunk(written: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate_dataset(tmp_path / "a.zarr", config, chunk_frames=16,
                         progress=stop_after_first_chunk)
    assert not (tmp_path / "a.zarr").exists()
    resumed = simulate_dataset(tmp_path / "a.zarr", config, chunk_frames=16, resume=True)
    straight = simulate_dataset(tmp_path / "b.zarr", config, chunk_frames=16)
    np.testing.assert_array_equal(_array(resumed, "diffraction"),
                                  _array(straight, "diffraction"))


def test_npz_output_matches_store(tmp_path: Path) -> None:
    config = SimulationConfig(**SMALL)
    store = simulate_dataset(tmp_path / "s.zarr", config, chunk_frames=16,
                             npz=tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["diff3d"], _array(store, "diffraction"))
        np.testing.assert_array_equal(archive["xcoords"], _array(store, "xcoords"))
        np.testing.assert_array_equal(archive["ycoords_start"], _array(store, "ycoords"))
        np.testing.assert_array_equal(archive["objectGuess"], _array(store, "object"))
        assert archive["probeGuess"].shape == (32, 32)
        assert '"nphotons": 1000000000.0' in str(archive["_metadata"])
    assert not (tmp_path / "s.npz.partial").exists()


def test_existing_npz_rejected(tmp_path: Path) -> None:
    (tmp_path / "s.npz").write_bytes(b"")
    with pytest.raises(OutputExistsError, match="Pass --overwrite"):
        simulate_dataset(tmp_path / "s.zarr", SimulationConfig(**SMALL), npz=tmp_path / "s.npz")
    assert not (tmp_path / "s.zarr").exists()


# Real probe and object ------------------------------------------------------------------------


@pytest.mark.realdata
def test_run1084_matches_physics(tmp_path: Path, run1084_path: Path) -> None:
    config = SimulationConfig(from_npz=str(run1084_path), noise=False)
    store = simulate_dataset(tmp_path / "r.zarr", config, chunk_frames=256)
    with np.load(run1084_path) as archive:
        obj, probe = archive["objectGuess"], archive["probeGuess"]
        positions = np.stack([archive["xcoords"], archive["ycoords"]], axis=1)

    patches = physics.extract_patches_np(obj, positions, 64)
    energies = (np.abs(patches * probe.astype(np.complex64)).astype(np.float64) ** 2)
    scale = np.sqrt(1e9 / energies.sum(axis=(1, 2)).mean())
    expected = physics.diffraction_amplitude_np(obj, probe, positions, scale=scale)
    stored = _array(store, "diffraction")
    assert stored.shape == (1087, 64, 64)
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-6 * float(expected.max()))
    np.testing.assert_array_equal(_array(store, "xcoords"), positions[:, 0])
    assert "xcoords_start" not in open_store(store)


@pytest.mark.realdata
def test_run1084_with_nominal(tmp_path: Path, run1084_path: Path) -> None:
    config = SimulationConfig(from_npz=str(run1084_path), n_patterns=64, with_nominal=True)
    store = simulate_dataset(tmp_path / "r.zarr", config)
    with np.load(run1084_path) as archive:
        nominal_x = archive["xcoords_start"][:64]
    np.testing.assert_array_equal(_array(store, "xcoords_start"), nominal_x)
    assert _array(store, "object").shape == (227, 226)


# Command line ---------------------------------------------------------------------------------


def test_cli_writes_store(tmp_path: Path) -> None:
    status = simulate_workflow.main([
        str(tmp_path / "c.zarr"), "--n", "32", "--n-patterns", "20", "--object-size", "80",
        "--positions", "spiral", "--probe", "gaussian", "--no-noise", "--nphotons", "1e5",
        "--npz", str(tmp_path / "c.npz"), "--phase-pattern", "amplitude",
    ])
    assert status == 0
    assert _array(tmp_path / "c.zarr", "diffraction").shape == (20, 32, 32)
    assert (tmp_path / "c.npz").is_file()
    obj = _array(tmp_path / "c.zarr", "object")
    np.testing.assert_allclose(np.angle(obj), (np.abs(obj) - 0.65) / 0.7, atol=1e-5)


def test_cli_invalid_option_exit_status(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    status = simulate_workflow.main([str(tmp_path / "c.zarr"), "--nphotons", "0"])
    assert status == 2
    assert "nphotons: invalid value 0.0" in capsys.readouterr().err
