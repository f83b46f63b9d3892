"""Tests of the PINN's layers, the forward model wiring, the baseline and the factory checks."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ptychozarr import physics
from ptychozarr.config import ModelConfig
from ptychozarr.errors import InvalidInputError
from ptychozarr.models import build_model, compile_model, flatten_members, normalise_probe
from ptychozarr.models.layers import CentreCrop, GroupExtract, GroupMerge
from ptychozarr.models.pinn import canvas_px

PATCH = 32
# Members at integer offsets around the centroid (63, 65): relative = centroid - member.
MEMBERS = np.array([[60.0, 62.0], [66.0, 62.0], [60.0, 68.0], [66.0, 68.0]])
CENTROID = MEMBERS.mean(axis=0)


def _smooth_object(seed: int, side: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amplitude = 0.5 + gaussian_filter(rng.random((side, side)), 2)
    phase = gaussian_filter(rng.standard_normal((side, side)), 3)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def _group(obj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return member patches (1, PATCH, PATCH, 4) and relative offsets (1, 4, 2) of one group."""
    patches = physics.extract_patches_np(obj, MEMBERS, PATCH)
    relative = (CENTROID - MEMBERS)[np.newaxis].astype(np.float32)
    return np.moveaxis(patches, 0, -1)[np.newaxis], relative


def _merge_layer() -> GroupMerge:
    return GroupMerge(canvas_px(PATCH, float(np.abs(CENTROID - MEMBERS).max())))


def _disk_probe(n: int) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2
    return gaussian_filter((np.hypot(xx, yy) < n / 5).astype(np.float64), 1).astype(np.complex64)


def test_canvas_px_margin() -> None:
    assert canvas_px(64, 7.2) == 64 + 2 * 9


def test_merge_recovers_centroid_patch() -> None:
    obj = _smooth_object(0)
    patches, relative = _group(obj)

    canvas = _merge_layer()([patches, relative])
    centre = np.asarray(CentreCrop(PATCH)(canvas))[0, :, :, 0]
    expected = physics.extract_patches_np(obj, CENTROID[np.newaxis], PATCH)[0]

    # Pixels within 3 px of the border lie outside some members; all members cover the rest.
    np.testing.assert_allclose(centre[4:-4, 4:-4], expected[4:-4, 4:-4], rtol=1e-5, atol=1e-5)


def test_extract_returns_member_patches() -> None:
    obj = _smooth_object(1)
    patches, relative = _group(obj)

    canvas = _merge_layer()([patches, relative])
    extracted = np.asarray(GroupExtract(PATCH)([canvas, relative]))

    np.testing.assert_allclose(extracted, patches, rtol=1e-5, atol=1e-5)


def test_merge_keeps_groups_apart() -> None:
    # 16 groups of 4 members reach the 64 patches at which the reference sums a whole batch
    # into one canvas.
    patches, relative = _group(_smooth_object(2))
    batch_patches = np.concatenate([patches, np.zeros((15, PATCH, PATCH, 4), np.complex64)])
    batch_relative = np.repeat(relative, 16, axis=0)

    canvases = np.asarray(_merge_layer()([batch_patches, batch_relative]))
    alone = np.asarray(_merge_layer()([patches, relative]))

    assert np.count_nonzero(canvases[1:]) == 0
    np.testing.assert_allclose(canvases[:1], alone, rtol=1e-6, atol=1e-7)


def test_merge_weights_by_window() -> None:
    patches, relative = _group(_smooth_object(3))
    window = np.zeros((PATCH, PATCH), np.float32)
    canvas = np.asarray(GroupMerge(canvas_px(PATCH, 3.0), window=window)([patches, relative]))
    assert np.count_nonzero(canvas) == 0


def test_flatten_members_order() -> None:
    grouped = np.arange(2 * 3).reshape(2, 1, 1, 3).astype(np.float32)
    flat = np.asarray(flatten_members(grouped))
    assert flat.shape == (6, 1, 1, 1)
    np.testing.assert_array_equal(flat.ravel(), np.arange(6))


def test_normalise_probe_scale() -> None:
    probe = _disk_probe(64) * 7.0
    normalised = normalise_probe(probe, probe_scale=4.0)
    yy, xx = np.mgrid[:64, :64] - 32
    disk = np.hypot(xx, yy) < 16
    assert math.isclose(4.0 * np.mean(np.abs(normalised * disk)), 1.0, rel_tol=1e-5)


def test_normalise_probe_rejects_zero() -> None:
    with pytest.raises(InvalidInputError, match="within N/4 = 16 px of the centre"):
        normalise_probe(np.zeros((64, 64), np.complex64), probe_scale=4.0)


def test_pinn_intensity_is_physics() -> None:
    config = ModelConfig(n=64, gridsize=1, n_filters_scale=1)
    probe = _disk_probe(64)
    built = build_model(config, probe=probe, intensity_scale=50.0, seed=0)
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)

    obj, amplitude, intensity = built.training.predict([x * 50.0, np.zeros((2, 1, 2))], verbose=0)
    expected = 50.0**2 * physics.far_field_intensity_np(obj[..., 0] * built.probe)

    np.testing.assert_allclose(intensity[..., 0], expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(amplitude**2, intensity, rtol=1e-4, atol=1e-3)


def test_pinn_gridsize2_outputs() -> None:
    config = ModelConfig(n=64, gridsize=2, n_filters_scale=1, max_offset_px=5.0)
    built = build_model(config, probe=_disk_probe(64), intensity_scale=10.0, seed=0)
    x = np.random.default_rng(1).random((3, 64, 64, 4)).astype(np.float32)
    relative = np.random.default_rng(2).uniform(-5, 5, (3, 4, 2)).astype(np.float32)

    obj, amplitude, intensity = built.training.predict([x, relative], verbose=0)

    assert obj.shape == (3, 64, 64, 1)
    assert obj.dtype == np.complex64
    assert amplitude.shape == (3, 64, 64, 4)
    assert intensity.shape == (3, 64, 64, 4)
    assert built.training.get_layer("merge").output.shape == (None, 76, 76, 1)


def test_pinn_fits_its_own_data() -> None:
    config = ModelConfig(n=64, gridsize=1, n_filters_scale=1)
    probe = _disk_probe(64)
    obj = _smooth_object(4, side=160)
    positions = np.random.default_rng(5).uniform(40, 120, (16, 2))
    patches = physics.extract_patches_np(obj, positions, 64)
    scale = 30.0
    normalised = normalise_probe(probe, probe_scale=config.probe_scale)
    x = physics.far_field_amplitude_np(patches * normalised)[..., np.newaxis]
    built = build_model(config, probe=probe, intensity_scale=scale, seed=0)
    compile_model(built, learning_rate=3e-3)

    targets = (np.zeros((16, 64, 64, 1), np.float32), x * scale, (x * scale) ** 2)
    history = built.training.fit([x * scale, np.zeros((16, 1, 2))], targets, epochs=8,
                                 batch_size=8, verbose=0).history

    assert history["loss"][-1] < history["loss"][0]


def test_baseline_shapes() -> None:
    config = ModelConfig(kind="baseline", n=128, gridsize=2, n_filters_scale=1)
    built = build_model(config, probe=None, intensity_scale=1.0, seed=0)
    amplitude, phase = built.training.predict(np.zeros((2, 128, 128, 1), np.float32), verbose=0)
    assert built.inference is built.training
    assert amplitude.shape == (2, 128, 128, 1)
    assert phase.shape == (2, 128, 128, 1)


def test_seed_reproducible() -> None:
    config = ModelConfig(kind="baseline", n=64, n_filters_scale=1)
    first = build_model(config, probe=None, intensity_scale=1.0, seed=7).training
    second = build_model(config, probe=None, intensity_scale=1.0, seed=7).training
    other = build_model(config, probe=None, intensity_scale=1.0, seed=8).training
    kernel = [model.get_layer("encoder_0_conv_a").get_weights()[0]
              for model in (first, second, other)]
    np.testing.assert_array_equal(kernel[0], kernel[1])
    assert not np.array_equal(kernel[0], kernel[2])


def test_build_rejects_missing_probe() -> None:
    with pytest.raises(InvalidInputError, match="the PINN needs the"):
        build_model(ModelConfig(n=64), probe=None, intensity_scale=1.0)


def test_build_rejects_probe_shape() -> None:
    with pytest.raises(InvalidInputError, match=r"shape \(32, 32\) does not match N=64"):
        build_model(ModelConfig(n=64), probe=np.ones((32, 32)), intensity_scale=1.0)


def test_build_rejects_scale() -> None:
    with pytest.raises(InvalidInputError, match=r"intensity_scale: invalid value 0\.0"):
        build_model(ModelConfig(n=64), probe=_disk_probe(64), intensity_scale=0.0)


def test_config_rejects_phase_activation() -> None:
    with pytest.raises(InvalidInputError, match="phase_activation: invalid value 'relu'; use"):
        ModelConfig(phase_activation="relu")  # type: ignore[arg-type]


def test_config_rejects_hidden_activation() -> None:
    with pytest.raises(InvalidInputError, match="hidden_activation: invalid value 'tanh'; use"):
        ModelConfig(hidden_activation="tanh")  # type: ignore[arg-type]


@pytest.mark.parametrize(("activation", "gradient_flows"), [("relu", False),
                                                            ("leaky_relu", True)])
def test_switched_off_units_get_gradient(activation: str, gradient_flows: bool) -> None:
    import tensorflow as tf

    config = ModelConfig(n=64, n_filters_scale=1,
                         hidden_activation=activation)  # type: ignore[arg-type]
    built = build_model(config, probe=_disk_probe(64), intensity_scale=10.0, seed=0)
    layer = built.training.get_layer("amplitude_decoder_2_conv_b")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, -100.0)])
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)

    with tf.GradientTape() as tape:
        amplitude = tf.abs(built.inference([x, np.zeros((2, 1, 2), np.float32)]))
        total = tf.reduce_sum(amplitude)
    gradient = tape.gradient(total, layer.kernel)

    assert layer.get_config()["activation"] == activation
    assert bool(np.any(np.asarray(gradient) != 0)) is gradient_flows


def test_baseline_uses_hidden_activation() -> None:
    config = ModelConfig(kind="baseline", n=64, n_filters_scale=1,
                         hidden_activation="leaky_relu")
    model = build_model(config, probe=None, intensity_scale=1.0, seed=0).training

    activations = {layer.get_config()["activation"] for layer in model.layers
                   if "_conv_" in layer.name}

    assert activations == {"leaky_relu"}


def test_compile_rejects_no_loss() -> None:
    config = ModelConfig(n=64, n_filters_scale=1, nll_weight=0.0, mae_weight=0.0)
    built = build_model(config, probe=_disk_probe(64), intensity_scale=1.0, seed=0)
    with pytest.raises(InvalidInputError, match="nll_weight and mae_weight are both 0"):
        compile_model(built)


def test_layers_load_safely(tmp_path: Path) -> None:
    config = ModelConfig(n=64, gridsize=2, n_filters_scale=1, max_offset_px=3.0,
                         probe_trainable=True, intensity_scale_trainable=True)
    built = build_model(config, probe=_disk_probe(64), intensity_scale=5.0, seed=0)
    path = f"{tmp_path}/model.keras"
    built.training.save(path)

    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)

    assert len(loaded.get_layer("illumination").trainable_weights) == 2
    assert len(loaded.get_layer("photon_scale").trainable_weights) == 1
    np.testing.assert_array_equal(loaded.get_layer("merge").get_weights()[0],
                                  built.training.get_layer("merge").get_weights()[0])
