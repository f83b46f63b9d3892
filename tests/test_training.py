"""Training: streaming vs in-memory equivalence, validation split, bundles, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptychozarr.config import GroupingConfig, ModelConfig, TrainingConfig
from ptychozarr.container import LazyContainer
from ptychozarr.errors import InvalidInputError, MissingKeyError, OutputExistsError
from ptychozarr.grouping import group_dataset
from ptychozarr.models import load_bundle
from ptychozarr.models.bundle import save_untrained_bundle
from ptychozarr.models.factory import probe_scale_for
from ptychozarr.simulate import SimulationConfig, simulate_dataset
from ptychozarr.training import (
    TrainingResult,
    should_stream,
    split_groups,
    train,
    uniform_outputs,
)
from ptychozarr.workflows.train import main

VIEW = "synthetic"
TINY = {"n": 64, "n_filters_scale": 1}

# Both paths feed the model the same batches in the same order (same spans, same seeded
# shuffle). Their results can differ only by the floating-point summation order of
# TensorFlow's multi-threaded CPU kernels, which stays far below 1e-4 relative over a few steps.
EQUIVALENCE_RTOL = 1e-4


@pytest.fixture(scope="module")
def store_g1(tmp_path_factory: pytest.TempPathFactory, grouped_store_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("training") / "g1.zarr"
    return Path(grouped_store_factory(path, n_groups=24, gridsize=1, chunk_groups=8))


@pytest.fixture(scope="module")
def store_g2(tmp_path_factory: pytest.TempPathFactory, grouped_store_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("training") / "g2.zarr"
    return Path(grouped_store_factory(path, n_groups=64, gridsize=2, chunk_groups=16))


# One PINN run shared by the tests below: the streaming side of the equivalence test, the
# bundle checks and the uninterrupted reference of the resume test. The CLI arguments of
# `_command` give the same settings.
PINN_CONFIG = ModelConfig(gridsize=2, **TINY)  # type: ignore[arg-type]
PINN_TRAINING = TrainingConfig(epochs=3, batch_size=4, validation_fraction=0.1, seed=2)


@pytest.fixture(scope="module")
def streamed_pinn(store_g2: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    container = LazyContainer.open(store_g2, group=VIEW)
    out = tmp_path_factory.mktemp("streamed") / "pinn"
    return train(container, PINN_CONFIG, PINN_TRAINING, out=out, use_streaming=True)


def _assert_same_history(left: dict[str, list[float]], right: dict[str, list[float]]) -> None:
    assert left.keys() == right.keys()
    for name, values in left.items():
        np.testing.assert_allclose(values, right[name], rtol=EQUIVALENCE_RTOL, err_msg=name)


def test_streaming_matches_in_memory_pinn(streamed_pinn: TrainingResult, store_g2: Path) -> None:
    container = LazyContainer.open(store_g2, group=VIEW)
    block = container.read_span(["X", "relative"], 0, 8)
    inputs = [block["X"] * np.float32(container.norm_Y_I), block["relative"].astype(np.float32)]

    in_memory = train(container, PINN_CONFIG, PINN_TRAINING, use_streaming=False)
    expected = np.asarray(streamed_pinn.model.inference.predict_on_batch(inputs))
    predicted = np.asarray(in_memory.model.inference.predict_on_batch(inputs))

    assert streamed_pinn.streaming
    assert not in_memory.streaming
    assert len(in_memory.history["val_loss"]) == 3
    _assert_same_history(streamed_pinn.history, in_memory.history)
    np.testing.assert_allclose(predicted, expected, rtol=EQUIVALENCE_RTOL, atol=1e-5)


def test_streaming_matches_in_memory_baseline(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    config = ModelConfig(kind="baseline", **TINY)  # type: ignore[arg-type]
    training = TrainingConfig(epochs=2, batch_size=8, validation_fraction=0.2, seed=1,
                              shuffle_buffer_groups=6)
    x = container.read_span(["X"], 0, 8)["X"]

    results = [train(container, config, training, use_streaming=streaming)
               for streaming in (True, False)]
    predicted = [np.asarray(result.model.inference.predict_on_batch(x)[1]) for result in results]

    _assert_same_history(results[0].history, results[1].history)
    assert "val_loss" in results[0].history
    np.testing.assert_allclose(predicted[0], predicted[1], rtol=EQUIVALENCE_RTOL, atol=1e-5)


def test_should_stream_thresholds(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)
    group_bytes = container.row_nbytes(["X", "relative"])

    assert not should_stream(container, "pinn", TrainingConfig())
    assert should_stream(container, "pinn", TrainingConfig(streaming_threshold_groups=23))
    assert not should_stream(container, "pinn",
                             TrainingConfig(streaming_threshold_bytes=24 * group_bytes))
    assert should_stream(container, "pinn",
                         TrainingConfig(streaming_threshold_bytes=24 * group_bytes - 1))


def test_split_groups_disjoint_and_seeded() -> None:
    training, validation = split_groups(100, 0.05, seed=3)
    again = split_groups(100, 0.05, seed=3)[1]
    other = split_groups(100, 0.05, seed=4)[1]

    assert len(validation) == 5
    assert sorted([*training, *validation]) == list(range(100))
    np.testing.assert_array_equal(validation, again)
    assert not np.array_equal(validation, other)


def test_split_groups_keeps_one_for_validation() -> None:
    training, validation = split_groups(4, 0.05, seed=0)

    assert len(validation) == 1
    assert len(training) == 3


def test_train_writes_bundle(streamed_pinn: TrainingResult, store_g2: Path) -> None:
    out = streamed_pinn.bundle_path
    assert out is not None
    bundle = load_bundle(out)
    container = LazyContainer.open(store_g2, group=VIEW)

    assert not out.with_name("pinn.partial").exists()
    assert bundle.history["loss"] == pytest.approx(streamed_pinn.history["loss"])
    assert bundle.alpha == pytest.approx(container.attrs["alpha"])
    assert bundle.manifest["source_store"] == str(store_g2)
    assert bundle.manifest["grouping"]["group_name"] == VIEW
    assert bundle.model_config.max_offset_px == pytest.approx(container.attrs["max_offset_px"])


def test_train_rejects_wrong_gridsize(store_g1: Path) -> None:
    container = LazyContainer.open(store_g1, group=VIEW)

    with pytest.raises(InvalidInputError, match="grouped with 1 member"):
        train(container, ModelConfig(gridsize=2, **TINY), PINN_TRAINING)


def test_baseline_needs_ground_truth(tmp_path: Path, grouped_store_factory: Any) -> None:
    path = grouped_store_factory(tmp_path / "nogt.zarr", n_groups=8, ground_truth=False)
    container = LazyContainer.open(path, group=VIEW)

    with pytest.raises(MissingKeyError, match="baseline is supervised"):
        train(container, ModelConfig(kind="baseline", **TINY), PINN_TRAINING)


def test_train_rejects_interrupted_run(store_g1: Path, tmp_path: Path) -> None:
    (tmp_path / "pinn.partial").mkdir()
    container = LazyContainer.open(store_g1, group=VIEW)

    with pytest.raises(OutputExistsError, match="interrupted training run"):
        train(container, ModelConfig(**TINY), PINN_TRAINING, out=tmp_path / "pinn")


def _command(store: Path, out: Path, *extra: str) -> list[str]:
    """CLI arguments with the settings of PINN_CONFIG and PINN_TRAINING."""
    return ["--model", "pinn", str(store), "--group", VIEW, str(out), "--epochs", "3",
            "--batch-size", "4", "--validation-fraction", "0.1", "--seed", "2",
            "--n-filters-scale", "1", "--streaming", "--no-progress", *extra]


def test_cli_probe_scale_auto(store_g1: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    arguments = ["--model", "pinn", str(store_g1), "--group", VIEW, str(out), "--epochs", "1",
                 "--n-filters-scale", "1", "--no-progress", "--probe-scale", "auto"]

    status = main(arguments)
    probe = LazyContainer.open(store_g1, group=VIEW).probe_numpy()

    assert status == 0
    assert load_bundle(out).model_config.probe_scale == probe_scale_for(probe)
    assert probe_scale_for(probe) != pytest.approx(4.0, rel=0.05)


def test_cli_hidden_activation(store_g1: Path, tmp_path: Path) -> None:
    out = tmp_path / "leaky"
    status = main(["--model", "pinn", str(store_g1), "--group", VIEW, str(out), "--epochs", "1",
                   "--n-filters-scale", "1", "--no-progress", "--hidden-activation", "leaky_relu"])

    assert status == 0
    assert load_bundle(out).model_config.hidden_activation == "leaky_relu"


def test_cli_rejects_bad_probe_scale(store_g1: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "pinn", str(store_g1), "--group", VIEW, str(tmp_path / "x"),
              "--probe-scale", "-2"])

    assert exit_info.value.code == 2
    assert "--probe-scale: invalid value '-2'; use a positive number or auto" in (
        capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def _wait_for_checkpoint(pointer: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if pointer.exists():
            return dict(json.loads(pointer.read_text()))
        if process.poll() is not None:
            raise AssertionError(f"training exited early with status {process.returncode}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared within 120 s")


def test_killed_run_resumes(store_g2: Path, streamed_pinn: TrainingResult, tmp_path: Path,
                            caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "killed"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "ptychozarr.cli", "train",
                                *_command(store_g2, out)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        checkpoint = _wait_for_checkpoint(out.with_name("killed.partial") / "latest.json",
                                          process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()

    with caplog.at_level(logging.INFO, logger="ptychozarr.training"):
        status = main(_command(store_g2, out, "--resume"))
    resumed_history = load_bundle(out).history

    assert status == 0
    assert process.returncode == -signal.SIGKILL
    assert checkpoint["epoch"] == 1
    assert "Resuming from the checkpoint of epoch 1" in caplog.text
    assert resumed_history["loss"][0] == checkpoint["history"]["loss"][0]
    _assert_same_history(resumed_history, streamed_pinn.history)


def _diffraction_residual(bundle_path: Path, block: dict[str, np.ndarray]) -> float:
    """Return ||A - X|| / ||X|| of the PINN's predicted diffraction amplitude A."""
    bundle = load_bundle(bundle_path)
    scale = bundle.intensity_scale
    outputs = bundle.model.predict_on_batch([block["X"] * np.float32(scale),
                                             block["relative"].astype(np.float32)])
    amplitude = np.asarray(outputs[1]) / scale
    return float(np.linalg.norm(amplitude - block["X"]) / np.linalg.norm(block["X"]))


def test_trained_pair_generalises(trained_pair: dict[str, Path],
                                  simulated_store: dict[str, Any], tmp_path: Path) -> None:
    # A scaled-down version of the documented random-lines comparison. Four epochs of tiny
    # networks on 256 patterns do not yet reconstruct the object better than its mean value
    # does, so the checks are what they do learn, scored on 64 patterns of another object: the
    # PINN's fit to the measured diffraction (untrained: about 0.24, trained: about 0.11) and
    # the baseline's amplitude scale (untrained: MAE about 0.8, trained: about 0.08).
    test_store = tmp_path / "unseen.zarr"
    simulate_dataset(test_store, SimulationConfig(n=64, n_patterns=64, object_kind="lines",
                                                  object_size_px=160, seed=1))
    group = group_dataset(test_store, GroupingConfig(gridsize=1))
    block = LazyContainer.open(test_store, group=group).read_all(["X", "relative", "Y_I"])
    untrained = save_untrained_bundle(simulated_store["store"], simulated_store["group"],
                                      tmp_path / "untrained", kind="pinn")

    trained_residual = _diffraction_residual(trained_pair["pinn"], block)
    untrained_residual = _diffraction_residual(untrained, block)
    patches = load_bundle(trained_pair["baseline"]).predict(block["X"], block["relative"])
    centre = slice(16, 48)
    amplitude_error = np.abs(np.abs(patches[:, centre, centre])
                             - block["Y_I"][:, centre, centre, 0]).mean()

    assert trained_residual <= 0.15
    assert trained_residual <= 0.6 * untrained_residual
    assert amplitude_error <= 0.12


def test_uniform_outputs_detects_dead_head(store_g1: Path) -> None:
    from ptychozarr.models import build_model

    container = LazyContainer.open(store_g1, group=VIEW)
    config = ModelConfig(**TINY)  # type: ignore[arg-type]
    built = build_model(config, probe=container.probe_numpy(), intensity_scale=container.norm_Y_I,
                        seed=0)
    healthy = uniform_outputs(built, container)
    head = built.training.get_layer("amplitude_head")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.3)])

    assert healthy == {}
    assert uniform_outputs(built, container) == {"amplitude": pytest.approx(1 / (1 + np.exp(-0.3)))}


def test_train_warns_about_uniform_output(store_g1: Path, caplog: pytest.LogCaptureFixture) -> None:
    # At a learning rate of 1 the first steps saturate the output activations for good.
    container = LazyContainer.open(store_g1, group=VIEW)
    training = TrainingConfig(epochs=2, batch_size=4, learning_rate=1.0, seed=0)

    with caplog.at_level(logging.WARNING, logger="ptychozarr.training"):
        train(container, ModelConfig(**TINY), training)  # type: ignore[arg-type]

    assert "The trained PINN predicts the same amplitude" in caplog.text
    assert "--hidden-activation leaky_relu, whose units" in caplog.text
    assert "a learning rate below 1 (--learning-rate" in caplog.text
