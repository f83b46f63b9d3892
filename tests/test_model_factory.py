"""Building models of several sizes in one process, and importing the models package."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ptychozarr.config import ModelConfig
from ptychozarr.models import build_model


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
