"""Tests of the plot helpers: what each figure draws, from NumPy and xarray inputs."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import LogNorm

from ptychozarr import plotting
from ptychozarr.errors import InvalidInputError
from ptychozarr.metrics import fourier_ring_correlation


@pytest.fixture(autouse=True)
def headless_figures() -> Iterator[None]:
    plt.switch_backend("Agg")
    yield
    plt.close("all")


def _rendered_pixels(figure: object) -> np.ndarray:
    canvas = figure.canvas  # type: ignore[attr-defined]
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def _complex_image(rows: int = 24, columns: int = 32) -> np.ndarray:
    y, x = np.mgrid[:rows, :columns]
    return ((1 + x / columns) * np.exp(1j * (y / rows - 0.5))).astype(np.complex64)


def test_diffraction_log_intensity() -> None:
    amplitude = np.zeros((16, 16), dtype=np.float32)
    amplitude[8, 8] = 100.0
    amplitude[2, 3] = 2.0
    ax = plotting.plot_diffraction(amplitude)
    image = ax.get_images()[0]
    assert isinstance(image.norm, LogNorm)
    assert image.norm.vmin == pytest.approx(4.0)
    assert image.norm.vmax == pytest.approx(1e4)
    assert np.asarray(image.get_array()).max() == pytest.approx(1e4)


def test_diffraction_units_from_dataarray() -> None:
    pattern = xr.DataArray(np.ones((8, 8), dtype=np.float32), dims=("ky", "kx"),
                           attrs={"units": "sqrt(photons)"})
    ax = plotting.plot_diffraction(pattern)
    colorbar_axes = ax.get_figure().axes[1]
    assert colorbar_axes.get_ylabel() == "intensity (photons)"


def test_diffraction_draws_into_given_axes() -> None:
    figure, ax = plt.subplots()
    returned = plotting.plot_diffraction(np.ones((8, 8)), ax=ax)
    assert returned is ax
    assert len(figure.axes) == 2


def test_diffraction_rejects_stack() -> None:
    with pytest.raises(InvalidInputError, match=r"expected a 2-D array, got shape \(3, 8, 8\)"):
        plotting.plot_diffraction(np.ones((3, 8, 8)))


def test_scan_positions_over_object() -> None:
    x = np.array([5.0, 10.0, 20.0])
    y = np.array([4.0, 12.0, 18.0])
    obj = _complex_image()
    ax = plotting.plot_scan_positions(x, y, obj=obj)
    offsets = np.asarray(ax.collections[0].get_offsets())
    np.testing.assert_allclose(offsets, np.stack([x, y], axis=1))
    np.testing.assert_allclose(ax.get_images()[0].get_array(), np.abs(obj))
    assert ax.get_xlabel() == "x (column, px)"


def test_scan_positions_rows_point_down() -> None:
    ax = plotting.plot_scan_positions(np.arange(4.0), np.arange(4.0))
    bottom, top = ax.get_ylim()
    assert bottom > top


def test_scan_positions_metres_over_object_rejected() -> None:
    x = xr.DataArray(np.zeros(3), dims="scan", attrs={"units": "m"})
    with pytest.raises(InvalidInputError, match="positions are in 'm'"):
        plotting.plot_scan_positions(x, x, obj=_complex_image())


def test_scan_positions_length_mismatch() -> None:
    with pytest.raises(InvalidInputError, match=r"lengths differ \(3 != 2\)"):
        plotting.plot_scan_positions(np.zeros(3), np.zeros(2))


def test_complex_amplitude_and_phase() -> None:
    image = _complex_image()
    figure = plotting.plot_complex(image, title="probe")
    amplitude_ax, phase_ax = figure.axes[:2]
    assert amplitude_ax.get_title() == "probe amplitude"
    assert phase_ax.get_title() == "probe phase"
    np.testing.assert_allclose(amplitude_ax.get_images()[0].get_array(), np.abs(image))
    np.testing.assert_allclose(phase_ax.get_images()[0].get_array(), np.angle(image))
    assert phase_ax.get_images()[0].get_clim() == pytest.approx((-np.pi, np.pi))


def test_complex_phase_mask() -> None:
    image = np.ones((4, 4), dtype=np.complex64)
    image[0, 0] = 0.01
    figure = plotting.plot_complex(image, phase_mask=0.05)
    phase = np.ma.filled(figure.axes[1].get_images()[0].get_array(), np.nan)
    assert np.isnan(phase[0, 0])
    assert np.isfinite(phase[1:, 1:]).all()


def test_complex_into_given_axes() -> None:
    figure, axes = plt.subplots(1, 2)
    assert plotting.plot_complex(_complex_image(), axes=axes) is figure
    with pytest.raises(InvalidInputError, match="expected 2 axes, got 1"):
        plotting.plot_complex(_complex_image(), axes=axes[:1])


def test_complex_figure_not_blank() -> None:
    pixels = _rendered_pixels(plotting.plot_complex(_complex_image()))
    assert pixels.std() > 10


def test_reconstructions_beside_ground_truth() -> None:
    truth = _complex_image()
    figure = plotting.plot_reconstructions({"PtychoPINN": truth * 0.9, "Baseline": truth * 1.1},
                                           ground_truth=truth)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles[:3] == ["PtychoPINN amplitude", "Baseline amplitude", "ground truth amplitude"]
    assert titles[3:6] == ["PtychoPINN phase", "Baseline phase", "ground truth phase"]


def test_reconstructions_share_row_limits() -> None:
    truth = _complex_image()
    figure = plotting.plot_reconstructions({"PtychoPINN": truth * 2}, ground_truth=truth,
                                           percentiles=(0.0, 100.0))
    pinn_limits = figure.axes[0].get_images()[0].get_clim()
    truth_limits = figure.axes[1].get_images()[0].get_clim()
    assert pinn_limits == truth_limits
    assert pinn_limits[1] == pytest.approx(np.abs(truth * 2).max())


def test_reconstructions_need_an_image() -> None:
    with pytest.raises(InvalidInputError, match="nothing to draw"):
        plotting.plot_reconstructions({})


def test_frc_curves_and_thresholds() -> None:
    curve = np.linspace(1.0, 0.0, 20)
    ax = plotting.plot_frc({"PtychoPINN amplitude": curve})
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), curve)
    np.testing.assert_allclose(lines[0].get_xdata(), np.arange(20))
    threshold_levels = sorted(line.get_ydata()[0] for line in lines[1:])
    assert threshold_levels == pytest.approx([1 / 7, 0.5])


def test_frc_frequency_coordinate() -> None:
    frequency = np.linspace(0, 5e6, 10)
    curve = xr.DataArray(np.linspace(1, 0, 10), dims="frequency",
                         coords={"frequency": frequency})
    ax = plotting.plot_frc({"amplitude": curve}, frequency_label="spatial frequency (1/m)")
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), frequency)
    assert ax.get_xlabel() == "spatial frequency (1/m)"


def test_frc_plain_array_ring_index() -> None:
    ax = plotting.plot_frc({"a": np.linspace(1, 0, 5)})
    assert ax.get_xlabel() == "ring index"


def test_frc_curve_objects_from_metrics() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((32, 32))
    curve = fourier_ring_correlation(image, image + 0.1 * rng.random((32, 32)),
                                     pixel_size_m=10e-9)
    ax = plotting.plot_frc({"amplitude": curve})
    value_line, halfbit_line = ax.get_lines()[:2]
    np.testing.assert_allclose(value_line.get_ydata(), curve.correlation)
    np.testing.assert_allclose(value_line.get_xdata(), curve.frequency_cycles_per_px / 10e-3)
    np.testing.assert_allclose(halfbit_line.get_ydata(), curve.halfbit_threshold)
    assert ax.get_xlabel() == "spatial frequency (1/µm)"


def test_frc_curve_without_pixel_size() -> None:
    image = np.random.default_rng(0).random((16, 16))
    ax = plotting.plot_frc({"phase": fourier_ring_correlation(image, image)}, halfbit=False)
    assert ax.get_xlabel() == "spatial frequency (cycles/pixel)"
    assert len(ax.get_lines()) == 3


def test_frc_frequency_length_mismatch() -> None:
    with pytest.raises(InvalidInputError, match="does not match curve 'a' of 5 rings"):
        plotting.plot_frc({"a": np.ones(5)}, frequency=np.arange(4))


def test_history_loss_curves() -> None:
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0], "learning_rate": [1e-3] * 3}
    ax = plotting.plot_history(history)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["loss", "val_loss"]
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3])
    assert ax.get_yscale() == "log"


def test_history_negative_values_linear() -> None:
    ax = plotting.plot_history({"loss": [1.0, -2.0]})
    assert ax.get_yscale() == "linear"


def test_history_missing_key() -> None:
    with pytest.raises(InvalidInputError, match=r"\['mae'\] not in the history"):
        plotting.plot_history({"loss": [1.0]}, keys=["mae"])
