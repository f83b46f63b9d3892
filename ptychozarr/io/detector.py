"""Detector preparation applied to every slab of frames: crop, bin and zero-pad.

The steps run in this order on photon intensities (amplitudes are squared first and the square
root is taken afterwards), after any shift of the zero frequency to the centre:

1. ``crop``: keep a ``crop`` x ``crop`` window whose centre pixel ``(crop // 2, crop // 2)`` is
   the chosen centre, given as ``(row, col)`` or found as the intensity centroid of the mean
   pattern. A window that reaches past the detector edge (to recentre without shrinking) gets
   zeros there, and those pixels are invalid in the stored ``mask``;
2. ``bin``: sum ``bin`` x ``bin`` blocks (the side must be divisible by ``bin``);
3. ``pad``: zero-pad to ``pad`` x ``pad`` pixels, keeping the centre pixel at ``pad // 2``.

Each step changes the far-field geometry. The object pixel size is lambda * z / (n * p) for n
detector pixels of pitch p, so cropping enlarges object pixels by ``side / crop``, binning keeps
them, and padding shrinks them by ``side / pad``. Positions given in object pixels are scaled by
:attr:`DetectorPlan.position_scale`, and a probe on the object pixel grid is resampled by
:meth:`DetectorPlan.transform_probe` to stay consistent with the prepared patterns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychozarr.config import SUPPORTED_N
from ptychozarr.errors import InvalidInputError

__all__ = ["DetectorPlan", "intensity_centroid", "parse_center"]

logger = logging.getLogger(__name__)


def parse_center(text: str) -> tuple[float, float] | None:
    """Parse ``"auto"`` (returns ``None``) or ``"ROW,COL"`` in detector pixels."""
    if text.strip().lower() == "auto":
        return None
    try:
        row, col = (float(part) for part in text.split(","))
    except ValueError as error:
        raise InvalidInputError(
            f"center: invalid value {text!r}; use 'auto' or 'ROW,COL' in detector pixels, "
            "for example '64,64'."
        ) from error
    return row, col


def intensity_centroid(mean_intensity: np.ndarray) -> tuple[float, float]:
    """Return the ``(row, col)`` intensity centroid of a (ky, kx) pattern, in pixels."""
    weights = np.asarray(mean_intensity, dtype=np.float64)
    total = weights.sum()
    if not total > 0:
        raise InvalidInputError(
            "center: the mean pattern has no positive intensity, so --center auto cannot find "
            "its centroid. Give the centre as --center ROW,COL."
        )
    rows = np.arange(weights.shape[0]) @ weights.sum(axis=1) / total
    cols = np.arange(weights.shape[1]) @ weights.sum(axis=0) / total
    return float(rows), float(cols)


@dataclass(frozen=True)
class DetectorPlan:
    """Crop, bin and pad settings resolved for one input frame shape.

    Build it with :meth:`build`; the identity plan (no step) leaves frames unchanged.
    """

    input_shape: tuple[int, int]
    crop: int | None = None
    crop_origin: tuple[int, int] = (0, 0)
    """``(row, col)`` of the crop window's first pixel in the input frame."""
    center: tuple[float, float] | None = None
    center_source: str | None = None
    bin: int = 1
    pad: int | None = None

    @classmethod
    def build(cls, input_shape: tuple[int, int], *, crop: int | None = None,
              center: tuple[float, float] | None = None, bin: int = 1, pad: int | None = None,
              mean_intensity: np.ndarray | None = None, where: str = "input") -> DetectorPlan:
        """Check the settings against ``input_shape`` and resolve the crop window.

        ``center=None`` with a crop uses the intensity centroid of ``mean_intensity`` (the mean
        (ky, kx) pattern after any zero-frequency shift), which must then be given.
        """
        ny, nx = input_shape
        if crop is None and ny != nx:
            raise InvalidInputError(
                f"{where}: patterns are not square ({ny} x {nx} pixels). Crop them to a square "
                "with --crop N (and --center auto or ROW,COL)."
            )
        origin, source = (0, 0), None
        if crop is not None:
            if center is None:
                if mean_intensity is None:
                    raise ValueError("center=None needs mean_intensity")
                center, source = intensity_centroid(mean_intensity), "auto"
            else:
                source = "user"
            origin = cls._crop_origin(input_shape, crop, center, where)
        side = crop if crop is not None else nx
        if side % bin:
            raise InvalidInputError(
                f"{where}: --bin {bin} does not divide the pattern side {side} (after cropping). "
                f"Choose a crop size that is a multiple of {bin}."
            )
        if pad is not None and pad < side // bin:
            raise InvalidInputError(
                f"{where}: --pad {pad} is smaller than the pattern side {side // bin} (after "
                "cropping and binning); use --crop to make patterns smaller."
            )
        plan = cls(input_shape, crop, origin, center, source, bin, pad)
        if plan.output_side not in SUPPORTED_N:
            logger.warning("Patterns will be %d x %d pixels; the networks need N in %s, so "
                           "crop, bin or pad them before training", plan.output_side,
                           plan.output_side, SUPPORTED_N)
        return plan

    @staticmethod
    def _crop_origin(input_shape: tuple[int, int], crop: int, center: tuple[float, float],
                     where: str) -> tuple[int, int]:
        ny, nx = input_shape
        row0 = round(center[0]) - crop // 2
        col0 = round(center[1]) - crop // 2
        if row0 + crop <= 0 or col0 + crop <= 0 or row0 >= ny or col0 >= nx:
            raise InvalidInputError(
                f"{where}: a {crop} x {crop} crop around (row, col) = ({center[0]:.1f}, "
                f"{center[1]:.1f}) does not overlap the {ny} x {nx} pattern. Give a --center "
                "ROW,COL inside the pattern."
            )
        if row0 < 0 or col0 < 0 or row0 + crop > ny or col0 + crop > nx:
            logger.info("%s: the crop window reaches past the detector edge; those pixels are "
                        "stored as 0 and marked invalid in the mask", where)
        return row0, col0

    # Geometry ---------------------------------------------------------------------------------

    @property
    def is_identity(self) -> bool:
        """True when no step changes the frames."""
        return self.crop is None and self.bin == 1 and self.pad is None

    @property
    def fills_outside(self) -> bool:
        """True when the crop window reaches past the detector, so a ``mask`` is needed."""
        if self.crop is None:
            return False
        (row0, col0), (ny, nx) = self.crop_origin, self.input_shape
        return row0 < 0 or col0 < 0 or row0 + self.crop > ny or col0 + self.crop > nx

    @property
    def needs_mask(self) -> bool:
        """True when the plan adds pixels without data (outside the detector, or padding)."""
        return self.fills_outside or self.pad is not None

    @property
    def binned_side(self) -> int:
        """Pattern side after cropping and binning."""
        side = self.crop if self.crop is not None else self.input_shape[1]
        return side // self.bin

    @property
    def output_side(self) -> int:
        """Pattern side N of the stored frames."""
        return self.pad if self.pad is not None else self.binned_side

    @property
    def position_scale(self) -> tuple[float, float]:
        """Factors ``(sx, sy)`` that convert input object pixels to output object pixels."""
        extent = self.output_side * self.bin
        return extent / self.input_shape[1], extent / self.input_shape[0]

    def describe(self) -> dict[str, Any]:
        """Return the applied steps as JSON for the store's ``conventions``."""
        steps: dict[str, Any] = {"input_shape": list(self.input_shape),
                                 "output_side": self.output_side}
        if self.crop is not None and self.center is not None:
            steps["crop"] = self.crop
            steps["crop_center_row_col"] = [round(self.center[0], 3), round(self.center[1], 3)]
            steps["crop_center_source"] = self.center_source
            steps["crop_origin_row_col"] = list(self.crop_origin)
        if self.bin > 1:
            steps["bin"] = self.bin
        if self.pad is not None:
            steps["pad"] = self.pad
        return steps

    # Application ------------------------------------------------------------------------------

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Apply crop, bin and pad to intensities of shape (frame, ky, kx).

        Returns (frame, N, N) with N = :attr:`output_side`, in the dtype of ``frames``; binning
        sums, so pass float64 (or counts) rather than amplitudes.
        """
        out = frames
        if self.crop is not None:
            out = self._crop(out, fill=0)
        if self.bin > 1:
            count, side = out.shape[0], out.shape[-1] // self.bin
            out = out.reshape(count, side, self.bin, side, self.bin).sum(axis=(2, 4))
        if self.pad is not None:
            out = self._zero_pad(out, self.pad, fill=0)
        return out

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """Apply the plan to a (ky, kx) validity mask: a binned pixel is valid when all its
        pixels are, and padded pixels are invalid."""
        out = mask[np.newaxis].astype(bool)
        if self.crop is not None:
            out = self._crop(out, fill=False)
        if self.bin > 1:
            side = out.shape[-1] // self.bin
            out = np.asarray(out.reshape(1, side, self.bin, side, self.bin).all(axis=(2, 4)))
        if self.pad is not None:
            out = self._zero_pad(out, self.pad, fill=False)
        return np.asarray(out[0])

    def _crop(self, frames: np.ndarray, *, fill: Any) -> np.ndarray:
        crop = self.crop or frames.shape[-1]
        row0, col0 = self.crop_origin
        if not self.fills_outside:
            return frames[:, row0:row0 + crop, col0:col0 + crop]
        ny, nx = frames.shape[-2:]
        out = np.full((frames.shape[0], crop, crop), fill, dtype=frames.dtype)
        rows = slice(max(row0, 0), min(row0 + crop, ny))
        cols = slice(max(col0, 0), min(col0 + crop, nx))
        out[:, rows.start - row0:rows.stop - row0, cols.start - col0:cols.stop - col0] = (
            frames[:, rows, cols])
        return out

    @staticmethod
    def _zero_pad(frames: np.ndarray, pad: int, *, fill: Any) -> np.ndarray:
        side = frames.shape[-1]
        before = pad // 2 - side // 2
        padded = np.full((frames.shape[0], pad, pad), fill, dtype=frames.dtype)
        padded[:, before:before + side, before:before + side] = frames
        return padded

    def transform_probe(self, probe: np.ndarray) -> np.ndarray:
        """Resample a (py, px) probe on the input object grid to the output object grid.

        Cropping the detector crops the probe's centred, unitary Fourier transform. Binning by
        F keeps the central 1/F of the probe in real space, so tails beyond the smaller field of
        view are dropped, not aliased. Padding zero-pads the Fourier transform. The total probe
        energy is kept up to what these steps cut away.
        """
        if self.is_identity:
            return probe
        out = np.asarray(probe, dtype=np.complex128)
        if self.crop is not None:
            out = _fourier_resize(out, self.crop)
        if self.bin > 1:
            side = out.shape[0] // self.bin
            start = out.shape[0] // 2 - side // 2
            out = out[start:start + side, start:start + side]
        if self.pad is not None:
            out = _fourier_resize(out, self.pad)
        return out


def _fourier_resize(image: np.ndarray, side: int) -> np.ndarray:
    """Crop or zero-pad the centred unitary Fourier transform of a square image to ``side``."""
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho"))
    old = spectrum.shape[0]
    resized = np.zeros((side, side), dtype=np.complex128)
    if side <= old:
        start = old // 2 - side // 2
        resized[...] = spectrum[start:start + side, start:start + side]
    else:
        start = side // 2 - old // 2
        resized[start:start + old, start:start + old] = spectrum
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(resized), norm="ortho"))
