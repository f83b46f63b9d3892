"""Building models of several sizes in one process, and importing the models package."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ptychozarr import physics, sample_models
from ptychozarr.config import ModelConfig
from ptychozarr.errors import InvalidInputError
from ptychozarr.models import (
    build_model,
    matching_object_amplitude,
    normalise_probe,
    probe_scale_for,
)


def _probe(n: int) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2
    return np.exp(-(xx**2 + yy**2) / (2 * (n / 8) ** 2)).astype(np.complex64)


def test_multi_n_model_creation() -> None:
    for n in (128, 64):
        config = ModelConfig(n=n, gridsize=2, n_filters_scale=1, max_offset_px=4.0)
        built = build_model(config, probe=_probe(n), intensity_scale=1.0, seed=0)
        rng = np.random.default_rng(n)
        x = rng.random((1, n, n, 4)).astype(np.float32)
        relative = rng.uniform(-4, 4, (1, 4, 2)).astype(np.float32)

        obj, amplitude, intensity = built.training.predict([x, relative], verbose=0)
        patch = built.inference.predict([x, relative], verbose=0)

        assert tuple(built.training.inputs[0].shape) == (None, n, n, 4)
        assert tuple(built.training.inputs[1].shape) == (None, 4, 2)
        assert obj.shape == (1, n, n, 1)
        assert intensity.shape == (1, n, n, 4)
        assert np.all(np.isfinite(amplitude))
        np.testing.assert_array_equal(patch, obj)


def test_models_keep_own_scale() -> None:
    # The reference kept log s in one cache shared by every model of the process.
    config = ModelConfig(n=64, n_filters_scale=1)
    first = build_model(config, probe=_probe(64), intensity_scale=2.0, seed=0).training
    second = build_model(config, probe=_probe(64), intensity_scale=8.0, seed=0).training
    scales = [float(np.exp(model.get_layer("photon_scale").get_weights()[0]))
              for model in (first, second)]
    assert scales[0] == pytest.approx(2.0)
    assert scales[1] == pytest.approx(8.0)


def test_matching_amplitude_carries_data_energy() -> None:
    # Grouped data have a mean summed squared amplitude of (N/2)**2; a uniform object of the
    # matching amplitude under the normalised probe must diffract exactly that.
    probe = sample_models.default_probe(64)
    amplitude = matching_object_amplitude(probe, probe_scale=4.0)
    exit_wave = amplitude * normalise_probe(probe, probe_scale=4.0)
    assert physics.far_field_intensity_np(exit_wave).sum() == pytest.approx(32**2, rel=1e-4)
    assert amplitude == pytest.approx(0.64, abs=0.01)


def test_probe_scale_for_centres_sigmoid() -> None:
    probe = _probe(128)
    scale = probe_scale_for(probe)
    assert matching_object_amplitude(probe, probe_scale=scale) == pytest.approx(0.5, rel=2e-3)
    assert probe_scale_for(probe, object_amplitude=0.25) == pytest.approx(scale / 2, rel=5e-3)
    with pytest.raises(InvalidInputError, match=r"object_amplitude: invalid value 1\.5"):
        probe_scale_for(probe, object_amplitude=1.5)


def test_saturating_probe_scale_warns(caplog: pytest.LogCaptureFixture) -> None:
    # The normalisation measures the mean amplitude within N/4 of the centre. A Gaussian probe
    # of this width has relatively less energy, so the data need a larger object amplitude.
    wide = sample_models.gaussian_probe(64, 12.0)
    assert matching_object_amplitude(wide, probe_scale=4.0) > 0.75
    config = ModelConfig(n=64, n_filters_scale=1)
    with caplog.at_level(logging.WARNING, logger="ptychozarr.models.factory"):
        build_model(config, probe=sample_models.default_probe(64), intensity_scale=1.0, seed=0)
        assert not caplog.records
        build_model(config, probe=wide, intensity_scale=1.0, seed=0)
    suggested = probe_scale_for(wide)
    assert f"Use probe_scale {suggested:.3g} (--probe-scale auto)" in caplog.text


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_no_tensorflow() -> None:
    result = _run_python("""
        import sys
        import ptychozarr.models
        print("tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_import_no_side_effects() -> None:
    # Keras numbers unnamed layers and every symbolic tensor per process: had an import built a
    # model, the next Conv2D or Input would carry a suffix such as "_1".
    result = _run_python("""
        import keras
        import ptychozarr.models.baseline, ptychozarr.models.bundle, ptychozarr.models.factory
        import ptychozarr.models.layers, ptychozarr.models.pinn
        print(keras.layers.Conv2D(1, 3).name, keras.layers.Input((4,)).name)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["conv2d", "keras_tensor"]
