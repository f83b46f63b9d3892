"""Refine a store's probe with ePIE, the extended ptychographic iterative engine.

The PINN takes the probe as given. A probe that is only an initial guess, such as a zone-plate
model or a probe from another beam time, leaves errors that the network can only absorb into the
object. On measured data, a probe refined by a conventional reconstruction therefore trains
better. ePIE updates an object and the probe position by position. The exit wave ``P * O_j``
is propagated, and its far field takes the measured amplitude where the detector is valid. The
resulting change of the exit wave is then shared between object and probe.

The diffraction is read one chunk at a time, in a shuffled chunk order, so memory contains one
chunk, the object and the probe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zarr

from ptychozarr.config import ConfigBase, require
from ptychozarr.errors import InvalidInputError
from ptychozarr.grouping import read_positions, select_region
from ptychozarr.store import open_store, read_probe, required_array

__all__ = ["ProbeRefinementConfig", "ProbeRefinementResult", "refine_probe"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeRefinementConfig(ConfigBase):
    """Settings of one ePIE probe refinement.

    Attributes
    ----------
    iterations
        Passes over the selected scan positions.
    probe_start_iteration
        First pass (counted from 0) that updates the probe. Earlier passes update only the
        object, so that the probe is not fitted to an object that is still uniform.
    region
        Scan positions to use: ``None`` (all), ``"top"``, ``"bottom"``, ``"left"``, ``"right"``
        or ``"box:x0,x1,y0,y1"``, as for grouping. Refine on the training region only, so the
        test region stays unseen.
    seed
        Seed of the chunk and position order.
    """

    iterations: int = 20
    probe_start_iteration: int = 2
    region: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.iterations >= 1,
                f"iterations: invalid value {self.iterations!r}; use at least 1.")
        require(self.probe_start_iteration >= 0,
                f"probe_start_iteration: invalid value {self.probe_start_iteration!r}; use 0 "
                "or more.")


@dataclass(frozen=True)
class ProbeRefinementResult:
    """Outputs of one probe refinement.

    Attributes
    ----------
    probe
        (N, N) complex64 refined probe on the object pixel grid.
    obj
        (oy, ox) complex64 object reconstructed on the way (object pixels, positions as stored).
    residuals
        Per pass, ``||(|F| - A) * mask|| / ||A * mask||`` of the far-field amplitude ``|F|``
        against the measured amplitude ``A``, accumulated during the pass.
    positions_used
        Number of scan positions in the selected region.
    """

    probe: np.ndarray
    obj: np.ndarray
    residuals: list[float]
    positions_used: int


def _read_inputs(store_path: str | os.PathLike[str]
                 ) -> tuple[zarr.Array, np.ndarray, np.ndarray, np.ndarray]:
    """Open the diffraction and read the probe, the positions (scan, 2) ``(x, y)`` and the mask."""
    store = str(store_path)
    root = open_store(store_path)
    diffraction = required_array(root, "diffraction", where=store)
    probe = read_probe(root, where=store).astype(np.complex128)
    positions = read_positions(root, store)

    n = probe.shape[0]
    if diffraction.shape[1:] != (n, n):
        raise InvalidInputError(f"{store}: diffraction patterns {diffraction.shape[1:]!r} and "
                                f"probe {probe.shape!r} differ in size; they must both be N x N. "
                                "Convert the data with a probe cropped or padded to N x N.")
    stored_mask = root.get("mask")
    mask = (np.asarray(stored_mask[...], bool) if isinstance(stored_mask, zarr.Array)
            else np.ones((n, n), bool))
    return diffraction, probe, positions, mask


def _corners(positions: np.ndarray, n: int, store: str) -> np.ndarray:
    """Return the integer (x, y) top-left corner of each position's N x N patch."""
    corners = np.rint(positions - n / 2).astype(np.int64)
    if corners.min() < 0:
        raise InvalidInputError(
            f"{store}: a patch starts at {int(corners.min())} px, outside the object; convert "
            "the data with positions shifted so that every patch starts at >= 0."
        )
    return corners


def _update(obj: np.ndarray, probe: np.ndarray, corner: np.ndarray, amplitude: np.ndarray,
            mask: np.ndarray, *, update_probe: bool) -> tuple[float, float]:
    """Apply one ePIE update in place and return the squared residual and data norms."""
    n = probe.shape[0]
    window = (slice(corner[1], corner[1] + n), slice(corner[0], corner[0] + n))
    patch = obj[window].copy()
    exit_wave = probe * patch

    far_field = np.fft.fftshift(np.fft.fft2(exit_wave, norm="ortho"))
    modulus = np.abs(far_field)
    residual = float(np.sum(((modulus - amplitude) * mask) ** 2))
    norm = float(np.sum((amplitude * mask) ** 2))

    phase = far_field / np.maximum(modulus, 1e-12)
    corrected = np.where(mask, amplitude * phase, far_field)
    change = np.fft.ifft2(np.fft.ifftshift(corrected), norm="ortho") - exit_wave

    obj[window] = patch + np.conj(probe) / np.max(np.abs(probe) ** 2) * change
    if update_probe:
        probe += np.conj(patch) / max(float(np.max(np.abs(patch) ** 2)), 1e-12) * change
    return residual, norm


def refine_probe(store_path: str | os.PathLike[str],
                 config: ProbeRefinementConfig = ProbeRefinementConfig(), *,
                 on_iteration: Callable[[int, float], None] | None = None
                 ) -> ProbeRefinementResult:
    """Refine the store's probe (and an object) with ePIE.

    Parameters
    ----------
    store_path
        Dataset store with ``diffraction`` (scan, ky, kx) float32 amplitude (square root of
        counts, zero frequency centred), ``probe`` (N, N) complex, ``xcoords``/``ycoords``
        (scan,) float64 patch centres in object pixels, and optionally ``mask`` (ky, kx) bool.
    config
        Iterations, region and seed.
    on_iteration
        Called after each pass with the pass number (from 1) and its residual.

    Returns
    -------
    ProbeRefinementResult
        The refined probe, the object and the residual of every pass.

    Notes
    -----
    Positions are rounded to whole pixels; sub-pixel shifts are not modelled.
    """
    store = str(store_path)
    diffraction, probe, positions, mask = _read_inputs(store_path)
    n = probe.shape[0]

    rows = select_region(positions, config.region)
    if len(rows) == 0:
        raise InvalidInputError(f"region: {config.region!r} contains no scan position of "
                                f"{store}; choose a region that overlaps the scan.")
    corners = _corners(positions, n, store)
    side = corners[rows].max(axis=0) + n
    obj = np.ones((int(side[1]), int(side[0])), np.complex128)

    chunk_rows = int(diffraction.chunks[0])
    by_chunk = {int(chunk): rows[rows // chunk_rows == chunk]
                for chunk in np.unique(rows // chunk_rows)}
    rng = np.random.default_rng(config.seed)

    residuals: list[float] = []
    for iteration in range(config.iterations):
        update_probe = iteration >= config.probe_start_iteration
        squared, norm = 0.0, 0.0
        for chunk in rng.permutation(list(by_chunk)):
            start = int(chunk) * chunk_rows
            block = np.asarray(diffraction[start:start + chunk_rows], np.float64)
            for row in rng.permutation(by_chunk[int(chunk)]):
                step = _update(obj, probe, corners[row], block[row - start], mask,
                               update_probe=update_probe)
                squared, norm = squared + step[0], norm + step[1]

        residuals.append(float(np.sqrt(squared / norm)) if norm > 0 else float("nan"))
        logger.info("ePIE pass %d/%d: residual %.4f", iteration + 1, config.iterations,
                    residuals[-1])
        if on_iteration is not None:
            on_iteration(iteration + 1, residuals[-1])

    return ProbeRefinementResult(probe.astype(np.complex64), obj.astype(np.complex64),
                                 residuals, len(rows))
