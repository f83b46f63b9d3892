"""``ptychozarr train --model {pinn,baseline} STORE --group NAME OUT``: train a model bundle."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from ptychozarr.cli import command

logger = logging.getLogger(__name__)


def _probe_scale(text: str) -> float | str:
    """Parse ``--probe-scale``: ``auto`` or a positive number."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; use a positive number or auto")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychozarr train",
        description="Train a PINN (unsupervised, through the far-field forward model) or the "
        "supervised baseline on a grouped view of a store and save a model bundle. A "
        "checkpoint is written after every epoch into OUT.partial; --resume continues from it.",
    )
    parser.add_argument("--model", choices=["pinn", "baseline"], required=True,
                        help="network to train")
    parser.add_argument("store", help="dataset store (directory, .zip or URL)")
    parser.add_argument("--group", required=True, metavar="NAME",
                        help="grouped view to train on (groups/NAME, see `ptychozarr group`)")
    parser.add_argument("out", help="bundle directory to write")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=50, help="maximum epochs (default: 50)")
    training.add_argument("--batch-size", type=int, default=16,
                          help="examples per batch: groups for the PINN, patterns for the "
                          "baseline (default: 16)")
    training.add_argument("--learning-rate", type=float, default=1e-3,
                          help="initial Adam learning rate (default: 0.001)")
    training.add_argument("--validation-fraction", type=float, default=0.05,
                          help="fraction of groups held out for validation (default: 0.05)")
    training.add_argument("--seed", type=int, default=0,
                          help="seed of weights, shuffling and validation split (default: 0)")
    training.add_argument("--shuffle-buffer", type=int, default=1024, metavar="GROUPS",
                          help="shuffle buffer size in groups (default: 1024)")
    training.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=None,
                          help="stream batches from the store every epoch (--streaming) or "
                          "read the data into memory once (--no-streaming); default: stream "
                          "above 10,000 groups or 2 GiB")
    training.add_argument("--resume", action="store_true",
                          help="continue an interrupted run from its last checkpoint")
    training.add_argument("--overwrite", action="store_true",
                          help="replace an existing bundle and discard an interrupted run")

    model = parser.add_argument_group("model")
    model.add_argument("--n-filters-scale", type=int, default=2,
                       help="multiplier of every convolution's filter count (default: 2)")
    model.add_argument("--amp-activation", choices=["sigmoid", "swish", "softplus", "relu"],
                       default="sigmoid", help="PINN amplitude activation (default: sigmoid)")
    model.add_argument("--phase-activation", choices=["pi_tanh", "linear"], default="pi_tanh",
                       help="PINN phase activation: pi * tanh as in PtychoPINN (default), or "
                       "linear, which cannot saturate when the phase drifts towards ±pi")
    model.add_argument("--hidden-activation", choices=["relu", "leaky_relu"], default="relu",
                       help="activation of every hidden convolution: relu as in PtychoPINN "
                       "(default), or leaky_relu, whose units cannot switch off for good")
    model.add_argument("--probe-trainable", action="store_true",
                       help="let the PINN refine the probe")
    model.add_argument("--probe-file", metavar="PATH",
                       help="probe to train the PINN with instead of the store's: an (N, N) "
                       ".npy array (e.g. from `ptychozarr refine-probe`) or an NPZ's probeGuess")
    model.add_argument("--probe-scale", type=_probe_scale, default=4.0, metavar="SCALE",
                       help="PINN probe normalisation P / (SCALE * mean|P| within N/4); "
                       "'auto' picks the scale at which the data need an object amplitude of "
                       "0.5, the middle of the sigmoid head (default: 4, as in PtychoPINN)")
    model.add_argument("--intensity-scale-trainable", action="store_true",
                       help="let the PINN refine the photon scale")
    model.add_argument("--nll-weight", type=float, default=1.0,
                       help="weight of the Poisson NLL on intensities (PINN, default: 1)")
    model.add_argument("--mae-weight", type=float, default=0.0,
                       help="weight of the amplitude MAE (PINN, default: 0)")
    model.add_argument("--no-progress", action="store_true",
                       help="hide the progress bar (the per-epoch log line stays)")
    return parser


def _progress_callback() -> Any:
    """Return a Keras callback that shows one tqdm bar per epoch."""
    import keras
    from tqdm import tqdm

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.bar: Any = None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            total = self.params.get("steps")
            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{self.params['epochs']}",
                            unit="batch", leave=False)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.5g}", refresh=False)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.bar.close()

    return EpochProgress()


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptychozarr train``."""
    options = _parser().parse_args(argv)

    from ptychozarr.config import ModelConfig, TrainingConfig
    from ptychozarr.container import LazyContainer
    from ptychozarr.sample_models import load_probe
    from ptychozarr.training import train

    container = LazyContainer.open(options.store, group=options.group)
    probe = None if options.probe_file is None else load_probe(options.probe_file)
    probe_scale = options.probe_scale
    if probe_scale == "auto" and options.model == "pinn":
        from ptychozarr.models.factory import probe_scale_for

        probe_scale = probe_scale_for(container.probe_numpy() if probe is None else probe)
        logger.info("Probe scale %.3g puts the data at an object amplitude of 0.5", probe_scale)
    model_config = ModelConfig(
        kind=options.model, n=container.n, gridsize=round(container.channels**0.5),
        n_filters_scale=options.n_filters_scale, amp_activation=options.amp_activation,
        phase_activation=options.phase_activation,
        hidden_activation=options.hidden_activation,
        probe_trainable=options.probe_trainable,
        probe_scale=4.0 if probe_scale == "auto" else probe_scale,
        intensity_scale_trainable=options.intensity_scale_trainable,
        max_offset_px=float(container.attrs.get("max_offset_px", 0.0)),
        nll_weight=options.nll_weight, mae_weight=options.mae_weight,
    )
    training_config = TrainingConfig(
        epochs=options.epochs, batch_size=options.batch_size,
        learning_rate=options.learning_rate, validation_fraction=options.validation_fraction,
        seed=options.seed, shuffle_buffer_groups=options.shuffle_buffer,
    )
    callbacks = [] if options.no_progress else [_progress_callback()]
    result = train(container, model_config, training_config, out=options.out,
                   use_streaming=options.streaming, resume=options.resume,
                   overwrite=options.overwrite, callbacks=callbacks, probe=probe)
    final = {name: values[-1] for name, values in result.history.items() if values}
    logger.info("Saved %s bundle to %s after %d epochs (%s)", options.model, result.bundle_path,
                len(result.history.get("loss", [])),
                ", ".join(f"{name}={value:.5g}" for name, value in sorted(final.items())))
    return 0
