"""Simulation of far-field ptychography datasets, written into a store chunk by chunk.

The simulator scans a probe over a complex object and records the far-field diffraction of each
exit wave with :mod:`ptychozarr.physics`. The exit waves are scaled so that the noise-free mean
total count per pattern equals ``nphotons``. Poisson noise is then drawn and the store receives
the amplitude ``sqrt(counts)`` (``amplitude_scale: counts``), the object as ground truth, the
probe and the positions.

Memory stays bounded by one chunk of patterns plus the object, the probe and two float64 values
per position, whatever the number of patterns. Randomness comes from one seed. The object, the
positions and the noise of each pattern use separate streams, and the noise of pattern j is seeded
by ``(seed, j)``, so the stored values do not depend on the chunk size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ptychozarr import sample_models
from ptychozarr.config import ConfigBase, require
from ptychozarr.errors import InvalidInputError, OutputExistsError
from ptychozarr.store import RAW_ARRAYS, StoreWriter
from ptychozarr.store.create import default_chunk_frames

__all__ = ["SimulationConfig", "SimulationInputs", "build_inputs", "simulate_dataset"]

logger = logging.getLogger(__name__)

ObjectKind = Literal["lines", "grf", "image", "npz"]
ProbeKind = Literal["disk", "gaussian", "file"]
PositionsKind = Literal["random", "raster", "spiral", "file"]
PhasePattern = Literal["independent", "amplitude"]

# Independent random streams derived from the one seed.
_AMPLITUDE_STREAM, _PHASE_STREAM, _POSITIONS_STREAM, _NOISE_STREAM = range(4)


@dataclass(frozen=True)
class SimulationConfig(ConfigBase):
    """Settings of one simulation: object, probe, scan, dose, noise and seed.

    Options left as ``None`` are filled in on construction, so a config always records the
    values used. With ``from_npz``, the object, probe and positions default to that NPZ file's
    ``objectGuess``, ``probeGuess`` and ``xcoords``/``ycoords``.

    Attributes
    ----------
    n
        Pattern and probe side N in pixels. Default: the side of a probe read from a file,
        else 64.
    n_patterns
        Number of scan positions. Default 1000 for generated positions; with positions from a
        file, the first ``n_patterns`` are used (default: all).
    object_kind
        ``"lines"`` (blurred random lines), ``"grf"`` (Gaussian random field), ``"image"``
        (grey-level image at its own size) or ``"npz"`` (complex ``objectGuess`` used as is).
    object_path
        Image or NPZ file for ``object_kind`` ``"image"`` or ``"npz"``.
    object_size_px
        Side of generated objects (``"lines"``, ``"grf"``) in pixels.
    amplitude_range, phase_range_rad
        Ranges that the [0, 1] patterns of generated and image objects are mapped to. An image
        sets both.
    phase_pattern
        Where the phase of a generated object comes from: ``"independent"`` (default) draws a
        second pattern, so phase and amplitude are unrelated; ``"amplitude"`` maps the
        amplitude pattern itself, so the phase rises with the amplitude (PtychoPINN's
        random-lines study objects are made this way).
    probe_kind
        ``"disk"`` (smoothed disk, the default probe), ``"gaussian"`` or ``"file"``.
    probe_path
        ``.npy`` or ``.npz`` (``probeGuess``) file for ``probe_kind="file"``.
    probe_sigma_px
        Standard deviation of the Gaussian probe in pixels. Default N / 8.
    positions_kind
        ``"random"`` (uniform), ``"raster"``, ``"spiral"`` (Fermat) or ``"file"``.
    positions_path
        File for ``positions_kind="file"`` (see :func:`ptychozarr.sample_models.load_positions`).
    border_px
        Distance of generated positions from the object edge in pixels. Default N / 2, so
        every patch lies inside the object.
    nphotons
        Mean total photon count per pattern (noise-free), default 1e9.
    noise
        Draw Poisson counts; ``False`` stores the noise-free amplitude.
    seed
        Seed of every random draw.
    from_npz
        PtychoPINN raw NPZ providing object, probe and positions by default.
    with_nominal
        Also store the nominal positions ``xcoords_start``/``ycoords_start`` of a positions NPZ.
    """

    n: int | None = None
    n_patterns: int | None = None
    object_kind: ObjectKind | None = None
    object_path: str | None = None
    object_size_px: int = 256
    amplitude_range: tuple[float, float] = (0.3, 1.0)
    phase_range_rad: tuple[float, float] = (-0.5, 0.5)
    phase_pattern: PhasePattern = "independent"
    probe_kind: ProbeKind | None = None
    probe_path: str | None = None
    probe_sigma_px: float | None = None
    positions_kind: PositionsKind | None = None
    positions_path: str | None = None
    border_px: float | None = None
    nphotons: float = 1e9
    noise: bool = True
    seed: int = 0
    from_npz: str | None = None
    with_nominal: bool = False

    def __post_init__(self) -> None:
        self._fill_sources()
        require(self.object_kind in ("lines", "grf", "image", "npz"),
                f"object_kind: invalid value {self.object_kind!r}; use 'lines', 'grf', 'image' "
                "or 'npz'.")
        require(self.phase_pattern in ("independent", "amplitude"),
                f"phase_pattern: invalid value {self.phase_pattern!r}; use 'independent' or "
                "'amplitude'.")
        require(self.probe_kind in ("disk", "gaussian", "file"),
                f"probe_kind: invalid value {self.probe_kind!r}; use 'disk', 'gaussian' or "
                "'file'.")
        require(self.positions_kind in ("random", "raster", "spiral", "file"),
                f"positions_kind: invalid value {self.positions_kind!r}; use 'random', "
                "'raster', 'spiral' or 'file'.")
        for kind, path, option in ((self.object_kind in ("image", "npz"), self.object_path,
                                    "object_path"),
                                   (self.probe_kind == "file", self.probe_path, "probe_path"),
                                   (self.positions_kind == "file", self.positions_path,
                                    "positions_path")):
            require(not kind or path is not None,
                    f"{option}: missing; the chosen kind reads a file. Give its path "
                    "(or --from-npz).")
        self._check_values()

    def _fill_sources(self) -> None:
        npz = self.from_npz
        defaults: dict[str, Any] = {
            "object_kind": "npz" if npz else "lines",
            "object_path": npz if self.object_kind in (None, "npz") else None,
            "probe_kind": "file" if npz else "disk",
            "probe_path": npz if self.probe_kind in (None, "file") else None,
            "positions_kind": "file" if npz else "random",
            "positions_path": npz if self.positions_kind in (None, "file") else None,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        object.__setattr__(self, "amplitude_range", tuple(self.amplitude_range))
        object.__setattr__(self, "phase_range_rad", tuple(self.phase_range_rad))

    def _check_values(self) -> None:
        require(self.n is None or (self.n >= 2 and self.n % 2 == 0),
                f"n: invalid pattern side {self.n!r}; use an even number of pixels.")
        require(self.n_patterns is None or self.n_patterns >= 1,
                f"n_patterns: invalid value {self.n_patterns!r}; use at least 1.")
        require(self.object_size_px >= 2,
                f"object_size_px: invalid value {self.object_size_px!r}; use at least 2.")
        require(len(self.amplitude_range) == 2 and min(self.amplitude_range) >= 0,
                f"amplitude_range: invalid value {self.amplitude_range!r}; use two numbers "
                ">= 0 (low, high).")
        require(len(self.phase_range_rad) == 2,
                f"phase_range_rad: invalid value {self.phase_range_rad!r}; use two numbers "
                "(low, high) in radians.")
        require(self.probe_sigma_px is None or self.probe_sigma_px > 0,
                f"probe_sigma_px: invalid value {self.probe_sigma_px!r}; use a positive width.")
        require(self.border_px is None or self.border_px >= 0,
                f"border_px: invalid value {self.border_px!r}; use a distance >= 0.")
        require(math.isfinite(self.nphotons) and self.nphotons > 0,
                f"nphotons: invalid value {self.nphotons!r}; use a positive count.")
        require(not self.with_nominal or (self.positions_kind == "file"
                                          and str(self.positions_path).endswith(".npz")),
                "with_nominal: nominal positions come only from a positions NPZ "
                "(--from-npz or --positions-file FILE.npz).")


@dataclass(frozen=True)
class SimulationInputs:
    """Object, probe and positions of one simulation, before any diffraction is computed.

    Attributes
    ----------
    obj
        (oy, ox) complex64 object.
    probe
        (N, N) complex64 probe.
    positions
        (scan, 2) float64 measured positions ``(x, y)`` in object pixels.
    nominal
        (scan, 2) float64 nominal positions, or ``None``.
    sources
        Checksums of the input files, for provenance.
    """

    obj: np.ndarray
    probe: np.ndarray
    positions: np.ndarray
    nominal: np.ndarray | None
    sources: dict[str, Any]

    @property
    def n(self) -> int:
        """Pattern side N in pixels."""
        return int(self.probe.shape[0])


def build_inputs(config: SimulationConfig) -> SimulationInputs:
    """Build the object, probe and positions that ``config`` describes."""
    probe = _build_probe(config)
    obj = _build_object(config)
    positions, nominal = _build_positions(config, obj.shape, probe.shape[0])
    paths = {path for path in (config.object_path, config.probe_path, config.positions_path)
             if path is not None}
    sources = {os.path.basename(path): _sha256(Path(path)) for path in sorted(paths)}
    return SimulationInputs(obj, probe, positions, nominal, sources)


def _build_probe(config: SimulationConfig) -> np.ndarray:
    if config.probe_kind == "file":
        probe = sample_models.load_probe(str(config.probe_path))
        if config.n is not None and probe.shape[0] != config.n:
            raise InvalidInputError(
                f"{config.probe_path}: probe side {probe.shape[0]!r} differs from n={config.n!r}. "
                "Leave n unset to use the probe's side."
            )
        return probe
    n = config.n or 64
    if config.probe_kind == "gaussian":
        return sample_models.gaussian_probe(n, config.probe_sigma_px or n / 8)
    return sample_models.default_probe(n)


def _build_object(config: SimulationConfig) -> np.ndarray:
    if config.object_kind == "npz":
        arrays = sample_models.load_npz_arrays(str(config.object_path), ("objectGuess",))
        obj = arrays["objectGuess"]
        if obj.ndim != 2:
            raise InvalidInputError(f"{config.object_path}: objectGuess has shape {obj.shape!r}; "
                                    "expected a 2-D (oy, ox) array.")
        return obj.astype(np.complex64)
    if config.object_kind == "image":
        pattern = sample_models.image_pattern(str(config.object_path))
        return sample_models.complex_object(pattern, pattern,
                                            amplitude_range=config.amplitude_range,
                                            phase_range_rad=config.phase_range_rad)

    generator = (sample_models.random_lines if config.object_kind == "lines"
                 else sample_models.gaussian_random_field)
    size = config.object_size_px
    amplitude = generator(size, np.random.default_rng([config.seed, _AMPLITUDE_STREAM]))
    phase = (amplitude if config.phase_pattern == "amplitude"
             else generator(size, np.random.default_rng([config.seed, _PHASE_STREAM])))
    return sample_models.complex_object(amplitude, phase, amplitude_range=config.amplitude_range,
                                        phase_range_rad=config.phase_range_rad)


def _build_positions(config: SimulationConfig, object_shape: tuple[int, ...], n: int
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    if config.positions_kind == "file":
        positions, nominal = sample_models.load_positions(str(config.positions_path),
                                                          with_nominal=config.with_nominal)
        count = config.n_patterns or len(positions)
        if count > len(positions):
            raise InvalidInputError(
                f"n_patterns: {count!r} requested but {config.positions_path} has only "
                f"{len(positions)} positions. Request at most {len(positions)}."
            )
        return positions[:count], None if nominal is None else nominal[:count]

    count = config.n_patterns or 1000
    border = n / 2 if config.border_px is None else config.border_px
    box = sample_models.scan_box((int(object_shape[0]), int(object_shape[1])), border)
    if config.positions_kind == "raster":
        return sample_models.raster_positions(count, box), None
    if config.positions_kind == "spiral":
        return sample_models.fermat_spiral_positions(count, box), None
    rng = np.random.default_rng([config.seed, _POSITIONS_STREAM])
    return sample_models.random_positions(count, box, rng), None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


# Diffraction ----------------------------------------------------------------------------------


def _chunk_starts(count: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, count, chunk):
        yield start, min(start + chunk, count)


def exit_wave_scale(inputs: SimulationInputs, nphotons: float, *, chunk_frames: int) -> float:
    """Return the factor on probe x patch that makes the mean summed intensity ``nphotons``.

    The summed intensity of each pattern (``sum |probe * patch|**2``, by Parseval's identity
    also the summed far-field intensity) is computed chunk by chunk in float64, and the mean
    is taken over all patterns at once, so the result does not depend on ``chunk_frames``.
    """
    from ptychozarr import physics

    energies = np.empty(len(inputs.positions), np.float64)
    for start, stop in _chunk_starts(len(inputs.positions), chunk_frames):
        patches = physics.extract_patches_np(inputs.obj, inputs.positions[start:stop], inputs.n)
        exit_waves = patches * inputs.probe
        energies[start:stop] = (np.abs(exit_waves).astype(np.float64) ** 2).sum(axis=(1, 2))
    mean_energy = float(np.mean(energies))
    if mean_energy <= 0:
        raise InvalidInputError(
            "simulation: every exit wave is zero (mean summed |probe x patch|**2 is 0). Check "
            "that the positions lie on the object and that the probe is not zero."
        )
    return math.sqrt(nphotons / mean_energy)


def _poisson_amplitude(amplitude: np.ndarray, seed: int, first_index: int) -> np.ndarray:
    """Replace noise-free amplitudes (pattern, ky, kx) by sqrt of Poisson counts."""
    noisy = np.empty_like(amplitude)
    for offset, pattern in enumerate(amplitude):
        sequence = np.random.SeedSequence([seed, _NOISE_STREAM, first_index + offset])
        counts = np.random.Generator(np.random.PCG64(sequence)).poisson(
            pattern.astype(np.float64) ** 2)
        noisy[offset] = np.sqrt(counts)
    return noisy


def _diffraction_chunks(inputs: SimulationInputs, config: SimulationConfig, scale: float,
                        chunk_frames: int, *, first: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, amplitude)`` per chunk, from the chunk that starts at ``first``."""
    import tensorflow as tf

    from ptychozarr import physics

    obj = tf.constant(inputs.obj)
    probe = tf.constant(inputs.probe)
    for start, stop in _chunk_starts(len(inputs.positions), chunk_frames):
        if start < first:
            continue
        amplitude = physics.diffraction_amplitude(obj, probe, inputs.positions[start:stop],
                                                  scale=scale).numpy()
        if config.noise:
            amplitude = _poisson_amplitude(amplitude, config.seed, start)
        yield start, amplitude.astype(np.float32, copy=False)


# Output ---------------------------------------------------------------------------------------


class _NpzStream:
    """Write a PtychoPINN raw NPZ whose diffraction stack arrives chunk by chunk.

    Small arrays are written first; the stack ``diff3d`` is streamed into its zip member, so the
    file never needs the whole stack in memory. The archive is written under ``<path>.partial``
    and renamed when complete.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self._zip = zipfile.ZipFile(self.partial, "w", compression=zipfile.ZIP_DEFLATED,
                                    allowZip64=True)
        for name, array in arrays.items():
            with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        self._member = self._zip.open("diff3d.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                  "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self._member, header)

    def write(self, chunk: np.ndarray) -> None:
        self._member.write(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())

    def close(self, *, keep: bool) -> None:
        self._member.close()
        self._zip.close()
        if keep:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def _npz_arrays(inputs: SimulationInputs, metadata: dict[str, Any]) -> dict[str, np.ndarray]:
    nominal = inputs.positions if inputs.nominal is None else inputs.nominal
    return {
        "xcoords": inputs.positions[:, 0], "ycoords": inputs.positions[:, 1],
        "xcoords_start": nominal[:, 0], "ycoords_start": nominal[:, 1],
        "probeGuess": inputs.probe, "objectGuess": inputs.obj,
        "scan_index": np.zeros(len(inputs.positions), np.int64),
        # A 0-d unicode array, so readers need no unpickling.
        "_metadata": np.array(json.dumps(metadata)),
    }


def _create_arrays(writer: StoreWriter, inputs: SimulationInputs, chunk_frames: int) -> None:
    count, n = len(inputs.positions), inputs.n
    writer.create_array(RAW_ARRAYS["diffraction"], (count, n, n), chunk_frames=chunk_frames,
                        attrs={"amplitude_scale": "counts"})
    names = ["xcoords", "ycoords"] + (["xcoords_start", "ycoords_start"]
                                      if inputs.nominal is not None else [])
    for name in names:
        writer.create_array(RAW_ARRAYS[name], (count,))
    writer.create_array(RAW_ARRAYS["probe"], inputs.probe.shape)
    writer.create_array(RAW_ARRAYS["object"], inputs.obj.shape)

    writer.write_whole("xcoords", inputs.positions[:, 0])
    writer.write_whole("ycoords", inputs.positions[:, 1])
    if inputs.nominal is not None:
        writer.write_whole("xcoords_start", inputs.nominal[:, 0])
        writer.write_whole("ycoords_start", inputs.nominal[:, 1])
    writer.write_whole("probe", inputs.probe)
    writer.write_whole("object", inputs.obj)


def _root_attributes(config: SimulationConfig, inputs: SimulationInputs,
                     scale: float) -> dict[str, Any]:
    return {
        "nphotons": float(config.nphotons),
        "amplitude_scale": "counts",
        "conventions": {
            "diffraction": "amplitude sqrt(counts), zero frequency at (N/2, N/2)",
            "positions": "patch centres (x = column, y = row) in object pixels",
        },
        "provenance": {
            "source": "ptychozarr simulate",
            "simulation": config.to_dict(),
            "exit_wave_scale": scale,
            "input_files_sha256": inputs.sources,
        },
    }


def simulate_dataset(out: str | os.PathLike[str], config: SimulationConfig, *,
                     overwrite: bool = False, resume: bool = False,
                     chunk_frames: int | None = None,
                     npz: str | os.PathLike[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Simulate a dataset into a new store, chunk by chunk.

    Parameters
    ----------
    out
        Path of the new store (a directory).
    config
        What to simulate.
    overwrite
        Replace an existing store (and NPZ) at the output paths.
    resume
        Finish an interrupted simulation of the same config; chunks already written are kept.
    chunk_frames
        Patterns per stored chunk; default about 8 MiB of diffraction per chunk.
    npz
        Also write a PtychoPINN raw NPZ there (``diff3d`` amplitude as in the store, positions
        and their ``*_start`` copies, ``probeGuess``, ``objectGuess``, ``scan_index`` zeros and
        a JSON ``_metadata`` string).
    progress
        Called as ``progress(written, total)`` with the number of patterns written so far after
        each chunk.

    Returns
    -------
    Path
        Path of the published store. Its arrays: ``diffraction`` (scan, ky, kx) float32
        sqrt(counts), ``xcoords``/``ycoords`` (scan,) float64 pixels, ``probe`` (py, px) and
        ``object`` (oy, ox) complex64, and ``xcoords_start``/``ycoords_start`` with
        ``with_nominal``.
    """
    npz_path = None if npz is None else Path(npz)
    if npz_path is not None and npz_path.exists() and not overwrite:
        raise OutputExistsError(f"{npz_path}: output already exists. Pass --overwrite to "
                                "replace it, or choose another path.")
    inputs = build_inputs(config)
    frames = chunk_frames or default_chunk_frames((inputs.n, inputs.n), np.float32)
    identity = {"simulation": config.to_dict(), "chunk_frames": frames}
    logger.info("Simulating %d patterns of %dx%d on a %s object", len(inputs.positions),
                inputs.n, inputs.n, inputs.obj.shape)

    scale = exit_wave_scale(inputs, config.nphotons, chunk_frames=frames)
    attributes = _root_attributes(config, inputs, scale)
    with StoreWriter(out, overwrite=overwrite, resume=resume, identity=identity) as writer:
        done = writer.frames_done("diffraction") if writer.resumed else 0
        _create_arrays(writer, inputs, frames)
        stream = None
        if npz_path is not None:
            metadata = {"nphotons": config.nphotons, "N": inputs.n, "gridsize": 1,
                        "seed": config.seed, "simulation": config.to_dict()}
            stream = _NpzStream(npz_path, (len(inputs.positions), inputs.n, inputs.n),
                                _npz_arrays(inputs, metadata))
        try:
            _write_diffraction(writer, stream, inputs, config, scale, frames, done, progress)
        except BaseException:
            if stream is not None:
                stream.close(keep=False)
            raise
        writer.set_attrs(attributes)
        path = writer.commit()
    if stream is not None:
        stream.close(keep=True)
    return path


def _write_diffraction(writer: StoreWriter, stream: _NpzStream | None, inputs: SimulationInputs,
                       config: SimulationConfig, scale: float, frames: int, done: int,
                       progress: Callable[[int, int], None] | None) -> None:
    if done:
        logger.info("Resuming after %d patterns already written", done)
        if progress is not None:
            progress(done, len(inputs.positions))
    # The NPZ is rewritten whole, so it needs the chunks that the store already has.
    first = done if stream is None else 0
    for start, amplitude in _diffraction_chunks(inputs, config, scale, frames, first=first):
        if start >= done:
            writer.write_frames("diffraction", start, amplitude)
        if stream is not None:
            stream.write(amplitude)
        if progress is not None and start >= done:
            progress(start + len(amplitude), len(inputs.positions))

