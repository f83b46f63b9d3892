"""Tests of detector preparation: crop, bin, pad, masks, probes and position scaling."""

from __future__ import annotations

import numpy as np
import pytest

from ptychozarr.errors import InvalidInputError
from ptychozarr.io.detector import DetectorPlan, intensity_centroid, parse_center


def _spot(shape: tuple[int, int], row: int, col: int) -> np.ndarray:
    frame = np.zeros((1, *shape))
    frame[0, row, col] = 1.0
    return frame


def test_identity_plan_keeps_frames() -> None:
    plan = DetectorPlan.build((8, 8))
    frames = np.arange(2 * 64, dtype=np.float64).reshape(2, 8, 8)
    assert plan.is_identity
    assert np.array_equal(plan.apply(frames), frames)
    assert plan.position_scale == (1.0, 1.0)


def test_crop_puts_center_at_half_side() -> None:
    plan = DetectorPlan.build((20, 20), crop=8, center=(12.0, 7.0))
    out = plan.apply(_spot((20, 20), 12, 7))
    assert out.shape == (1, 8, 8)
    assert np.argwhere(out[0]).tolist() == [[4, 4]]
    assert plan.position_scale == (8 / 20, 8 / 20)


def test_crop_auto_uses_centroid() -> None:
    mean = np.zeros((16, 16))
    mean[5, 9] = 3.0
    plan = DetectorPlan.build((16, 16), crop=6, mean_intensity=mean)
    assert plan.center == (5.0, 9.0)
    assert plan.center_source == "auto"
    assert plan.crop_origin == (2, 6)


def test_crop_past_edge_fills_zero_and_masks() -> None:
    plan = DetectorPlan.build((8, 8), crop=8, center=(4.0, 6.0))
    frames = np.ones((1, 8, 8))
    out = plan.apply(frames)
    assert plan.fills_outside
    assert out[0, :, -2:].sum() == 0
    assert out[0, :, :-2].sum() == 8 * 6
    mask = plan.apply_mask(np.ones((8, 8), bool))
    assert not mask[:, -2:].any()
    assert mask[:, :-2].all()


def test_crop_without_overlap_rejected() -> None:
    with pytest.raises(InvalidInputError, match="does not overlap the 8 x 8 pattern"):
        DetectorPlan.build((8, 8), crop=4, center=(30.0, 30.0))


def test_bin_sums_blocks() -> None:
    plan = DetectorPlan.build((4, 4), bin=2)
    frames = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    out = plan.apply(frames)
    assert out[0].tolist() == [[10.0, 18.0], [42.0, 50.0]]
    assert plan.position_scale == (1.0, 1.0)


def test_bin_must_divide_side() -> None:
    with pytest.raises(InvalidInputError, match="--bin 3 does not divide the pattern side 8"):
        DetectorPlan.build((8, 8), bin=3)


def test_pad_keeps_center_pixel() -> None:
    plan = DetectorPlan.build((6, 6), pad=10)
    out = plan.apply(_spot((6, 6), 3, 3))
    assert np.argwhere(out[0]).tolist() == [[5, 5]]
    assert plan.position_scale == (10 / 6, 10 / 6)
    assert plan.needs_mask
    assert plan.apply_mask(np.ones((6, 6), bool)).sum() == 36


def test_pad_smaller_than_side_rejected() -> None:
    with pytest.raises(InvalidInputError, match="--pad 4 is smaller than the pattern side 8"):
        DetectorPlan.build((8, 8), pad=4)


def test_bin_mask_needs_all_valid() -> None:
    plan = DetectorPlan.build((4, 4), bin=2)
    valid = np.ones((4, 4), bool)
    valid[0, 1] = False
    assert plan.apply_mask(valid).tolist() == [[False, True], [True, True]]


def test_non_square_needs_crop() -> None:
    with pytest.raises(InvalidInputError, match=r"not square \(6 x 8 pixels\)"):
        DetectorPlan.build((6, 8))
    plan = DetectorPlan.build((6, 8), crop=6, center=(3.0, 4.0))
    assert plan.position_scale == (6 / 8, 6 / 6)


def test_probe_crop_matches_far_field_crop() -> None:
    rng = np.random.default_rng(0)
    probe = rng.random((16, 16)) * np.exp(1j * rng.random((16, 16)))
    plan = DetectorPlan.build((16, 16), crop=8, center=(8.0, 8.0))
    small = plan.transform_probe(probe)
    far_field = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe), norm="ortho"))
    small_far_field = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(small), norm="ortho"))
    assert small.shape == (8, 8)
    assert np.allclose(small_far_field, far_field[4:12, 4:12])


def test_probe_pad_keeps_energy() -> None:
    probe = np.random.default_rng(1).random((8, 8)).astype(np.complex128)
    plan = DetectorPlan.build((8, 8), pad=16)
    padded = plan.transform_probe(probe)
    assert padded.shape == (16, 16)
    assert np.sum(np.abs(padded) ** 2) == pytest.approx(np.sum(np.abs(probe) ** 2))


def test_probe_bin_keeps_center() -> None:
    probe = np.zeros((8, 8), complex)
    probe[3:5, 3:5] = 1
    plan = DetectorPlan.build((8, 8), bin=2)
    assert np.array_equal(plan.transform_probe(probe), probe[2:6, 2:6])


def test_center_parsing() -> None:
    assert parse_center("auto") is None
    assert parse_center("64,65.5") == (64.0, 65.5)
    with pytest.raises(InvalidInputError, match="use 'auto' or 'ROW,COL'"):
        parse_center("middle")


def test_centroid_of_dark_pattern_rejected() -> None:
    with pytest.raises(InvalidInputError, match="no positive intensity"):
        intensity_centroid(np.zeros((4, 4)))
