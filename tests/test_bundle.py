"""Tests of model bundles: round trip, manifest, atomic writing and safe loading."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptychozarr.config import ModelConfig, TrainingConfig
from ptychozarr.errors import (
    BundleError,
    InputFileNotFoundError,
    InvalidInputError,
    OutputExistsError,
)
from ptychozarr.models import (
    BuiltModel,
    build_model,
    load_bundle,
    normalise_probe,
    save_bundle,
    save_untrained_bundle,
)
from ptychozarr.models.bundle import MANIFEST_FILE, MODEL_FILE, PROBE_FILE

N = 64
HISTORY = {"loss": [3.0, 2.5], "val_loss": [3.1, float("nan")]}
GROUPING = {"gridsize": 2, "K": 7, "seed": 0, "n_groups": 5, "region": "top", "name": "g2"}


def _probe() -> np.ndarray:
    yy, xx = np.mgrid[:N, :N] - N / 2
    return np.exp(-(xx**2 + yy**2) / (2 * 8.0**2)).astype(np.complex64)


def _inputs(groups: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(groups)
    x = rng.random((groups, N, N, channels)).astype(np.float32)
    relative = rng.uniform(-3, 3, (groups, channels, 2))
    return x, relative


def _save(path: Path, kind: str = "pinn", *, phase_activation: str = "pi_tanh",
          hidden_activation: str = "relu", **options: Any) -> tuple[Path, BuiltModel]:
    config = ModelConfig(kind=kind, n=N, gridsize=2, n_filters_scale=1,  # type: ignore[arg-type]
                         max_offset_px=3.0,
                         phase_activation=phase_activation,  # type: ignore[arg-type]
                         hidden_activation=hidden_activation)  # type: ignore[arg-type]
    built = build_model(config, probe=_probe(), intensity_scale=40.0, seed=0)
    saved = save_bundle(path, built, model_config=config, training_config=TrainingConfig(),
                        history=HISTORY, alpha=0.25, intensity_scale=40.0, probe=_probe(),
                        grouping=GROUPING, source_store="/data/train.zarr", **options)
    return saved, built


@pytest.fixture(scope="module")
def pinn_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuiltModel]:
    return _save(tmp_path_factory.mktemp("bundles") / "pinn")


def _edit_manifest(path: Path, **changes: Any) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (MANIFEST_FILE, MODEL_FILE, PROBE_FILE):
        (copy / name).write_bytes((bundle / name).read_bytes())
    return copy


def test_pinn_round_trip_predictions(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    path, built = pinn_bundle
    x, relative = _inputs(5, 4)
    bundle = load_bundle(path)

    predicted = bundle.predict(x, relative, batch_size=5)
    expected = built.inference.predict_on_batch([x * np.float32(40.0),
                                                 relative.astype(np.float32)])

    assert predicted.shape == (5, N, N)
    assert predicted.dtype == np.complex64
    np.testing.assert_array_equal(predicted, expected[..., 0])


def _layer_kind(layer: Any) -> str:
    """Return a layer's activation when it has one, else its class name."""
    return str(layer.get_config().get("activation", layer.__class__.__name__))


@pytest.mark.parametrize(("option", "value", "layer", "kind"), [
    ("phase_activation", "linear", "phase_activation", "Identity"),
    ("hidden_activation", "leaky_relu", "encoder_0_conv_a", "leaky_relu"),
])
def test_model_option_round_trip(tmp_path: Path, option: str, value: str, layer: str,
                                 kind: str) -> None:
    path, built = _save(tmp_path / value, **{option: value})
    x, relative = _inputs(3, 4)
    bundle = load_bundle(path)

    predicted = bundle.predict(x, relative, batch_size=3)
    expected = built.inference.predict_on_batch([x * np.float32(40.0),
                                                 relative.astype(np.float32)])

    assert getattr(bundle.model_config, option) == value
    assert _layer_kind(bundle.model.get_layer(layer)) == kind
    np.testing.assert_array_equal(predicted, expected[..., 0])


def test_pinn_batches_agree(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    x, relative = _inputs(7, 4)
    bundle = load_bundle(pinn_bundle[0])
    whole = bundle.predict(x, relative, batch_size=7)
    batched = bundle.predict(x, relative, batch_size=3)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-5)


def test_bundle_attributes(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    path, built = pinn_bundle
    bundle = load_bundle(path)
    assert bundle.model_config == built.config
    assert bundle.training_config == TrainingConfig()
    assert bundle.alpha == 0.25
    assert bundle.intensity_scale == pytest.approx(40.0)
    assert bundle.history == {"loss": [3.0, 2.5], "val_loss": [3.1, None]}
    assert built.probe is not None
    np.testing.assert_array_equal(bundle.probe, built.probe)


def test_manifest_entries(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    manifest = load_bundle(pinn_bundle[0]).manifest
    assert manifest["kind"] == "pinn"
    assert (manifest["n"], manifest["gridsize"], manifest["K"]) == (N, 2, 7)
    assert manifest["grouping"] == GROUPING
    assert manifest["source_store"] == "/data/train.zarr"
    assert set(manifest["versions"]) >= {"ptychozarr", "tensorflow", "keras"}
    assert set(manifest["files"]) == {MODEL_FILE, PROBE_FILE}


def test_probe_is_plain_npy(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    probe = np.load(pinn_bundle[0] / PROBE_FILE, allow_pickle=False)
    assert probe.shape == (N, N)
    assert probe.dtype == np.complex64


def test_baseline_round_trip(tmp_path: Path) -> None:
    path, built = _save(tmp_path / "baseline", kind="baseline")
    x, relative = _inputs(3, 4)
    bundle = load_bundle(path)

    predicted = bundle.predict(x, relative, batch_size=12)
    flat = np.moveaxis(x, -1, 1).reshape(12, N, N, 1)
    amplitude, phase = built.inference.predict_on_batch(flat)

    assert predicted.shape == (12, N, N)
    np.testing.assert_array_equal(predicted, (amplitude * np.exp(1j * phase))[..., 0]
                                  .astype(np.complex64))


def test_save_leaves_no_staging(tmp_path: Path) -> None:
    _save(tmp_path / "bundle")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["bundle"]


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    config = ModelConfig(n=N, n_filters_scale=1)
    built = build_model(config, probe=_probe(), intensity_scale=1.0, seed=0)
    with pytest.raises(TypeError):
        save_bundle(tmp_path / "bundle", built, model_config=config,
                    training_config=TrainingConfig(), history={}, alpha=1.0, intensity_scale=1.0,
                    probe=_probe(), grouping={"not_json": object()}, source_store="s")
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_existing(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    with pytest.raises(OutputExistsError, match="Pass overwrite=True"):
        _save(tmp_path / "bundle")


def test_save_overwrites(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    path, _ = _save(tmp_path / "bundle", overwrite=True)
    assert load_bundle(path).kind == "pinn"
    assert sorted(item.name for item in tmp_path.iterdir()) == ["bundle"]


def test_save_rejects_wrong_config(tmp_path: Path) -> None:
    built = build_model(ModelConfig(n=N, n_filters_scale=1), probe=_probe(), intensity_scale=1.0)
    with pytest.raises(InvalidInputError, match=r"input shape \(64, 64, 1\) does not match"):
        save_bundle(tmp_path / "bundle", built, model_config=ModelConfig(n=128),
                    training_config=TrainingConfig(), history={}, alpha=1.0,
                    intensity_scale=1.0, probe=_probe(), grouping={}, source_store="s")


def _reference_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.dill", b"\x80\x04N.")
        archive.writestr("autoencoder/params.dill", b"\x80\x04N.")
    return path


def test_load_rejects_reference_archive(tmp_path: Path) -> None:
    archive = _reference_archive(tmp_path / "wts.h5.zip")
    with pytest.raises(BundleError, match=r"holds pickled \(dill\) objects"):
        load_bundle(archive)


def test_load_rejects_reference_directory(tmp_path: Path) -> None:
    _reference_archive(tmp_path / "wts.h5.zip")
    with pytest.raises(BundleError, match="Retrain the model with `ptychozarr train`"):
        load_bundle(tmp_path)


def test_load_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match="model bundle not found"):
        load_bundle(tmp_path / "absent")


def test_load_rejects_missing_manifest(tmp_path: Path,
                                       pinn_bundle: tuple[Path, BuiltModel]) -> None:
    copy = _copy(pinn_bundle[0], tmp_path)
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        load_bundle(copy)


def test_load_rejects_edited_manifest(tmp_path: Path,
                                      pinn_bundle: tuple[Path, BuiltModel]) -> None:
    copy = _copy(pinn_bundle[0], tmp_path)
    _edit_manifest(copy, alpha=0.5)
    with pytest.raises(BundleError, match="was modified after the bundle was written"):
        load_bundle(copy)


def test_load_rejects_invalid_json(tmp_path: Path,
                                   pinn_bundle: tuple[Path, BuiltModel]) -> None:
    copy = _copy(pinn_bundle[0], tmp_path)
    (copy / MANIFEST_FILE).write_text("{\"kind\": ")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(copy)


@pytest.mark.parametrize("name", [MODEL_FILE, PROBE_FILE])
def test_load_rejects_modified_file(tmp_path: Path, pinn_bundle: tuple[Path, BuiltModel],
                                    name: str) -> None:
    copy = _copy(pinn_bundle[0], tmp_path)
    with (copy / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="sha256 does not match the manifest"):
        load_bundle(copy)


def test_check_compatible_n(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    bundle = load_bundle(pinn_bundle[0])
    with pytest.raises(BundleError, match="trained on N=64 patterns, but the data have N=128"):
        bundle.check_compatible(128, 2)


def test_check_compatible_gridsize(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    bundle = load_bundle(pinn_bundle[0])
    with pytest.raises(BundleError, match="trained with gridsize 2, but the data are grouped"):
        bundle.check_compatible(64, 1)


def test_predict_rejects_shape(pinn_bundle: tuple[Path, BuiltModel]) -> None:
    bundle = load_bundle(pinn_bundle[0])
    x, relative = _inputs(2, 1)
    with pytest.raises(InvalidInputError, match=r"expects \(group, 64, 64, 4\)"):
        bundle.predict(x, relative)


def test_untrained_bundle_for_group(tmp_path: Path, grouped_store_factory: Any) -> None:
    store = grouped_store_factory(tmp_path / "store.zarr", n_groups=4, gridsize=2)
    path = save_untrained_bundle(store, "synthetic", tmp_path / "bundle")
    bundle = load_bundle(path)
    bundle.check_compatible(64, 2)
    assert bundle.manifest["grouping"]["name"] == "synthetic"
    assert bundle.model_config.max_offset_px > 0


def test_untrained_bundle_model_options(tmp_path: Path, grouped_store_factory: Any) -> None:
    store = grouped_store_factory(tmp_path / "store.zarr", n_groups=4, gridsize=1)
    probe = _probe() * np.exp(0.5j)
    path = save_untrained_bundle(store, "synthetic", tmp_path / "bundle", probe_scale=2.5,
                                 phase_activation="linear", probe=probe)
    bundle = load_bundle(path)
    assert bundle.model_config.probe_scale == 2.5
    assert bundle.model_config.phase_activation == "linear"
    np.testing.assert_allclose(bundle.probe, normalise_probe(probe, probe_scale=2.5), rtol=1e-6)
