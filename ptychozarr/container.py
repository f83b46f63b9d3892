"""The lazy data container: a grouped view presented in the reference container's layout.

:class:`LazyContainer` opens ``groups/<name>`` of a dataset store and reads nothing but metadata.
Each array property (``.X``, ``.Y_I``, ``.Y_phi``, ``.Y``, ``.coords_nominal``, ``.coords_true``,
``.probe``) reads the whole array on first access, converts it to a TensorFlow tensor and caches
it, warning with :class:`LargeArrayWarning` when the array exceeds the container's memory budget.
Training and inference should not use these properties on large sets: they read chunk by chunk
through :meth:`LazyContainer.iter_chunks` and :meth:`LazyContainer.as_tf_dataset`.

Layouts. The store keeps ``relative`` as (group, channel, xy); the reference layout of the
coordinate properties is (group, 1, xy, channel). ``relative`` is centroid minus member, so a
member sits at ``offsets - relative``. ``coords_true`` comes from the measured positions and
``coords_nominal`` from the nominal ones (``xcoords_start``/``ycoords_start``) when the store has
them, otherwise from the measured ones too.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.abc.store import Store

from ptychozarr.errors import InvalidInputError, MissingKeyError, StoreSchemaError
from ptychozarr.store.open import open_store, read_probe
from ptychozarr.store.schema import check_format_version

if TYPE_CHECKING:
    import tensorflow as tf

    from ptychozarr.tfdata import ModelKind

__all__ = ["DEFAULT_MEMORY_BUDGET_BYTES", "LargeArrayWarning", "LazyContainer"]

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET_BYTES = 2**30
"""Size (1 GiB) above which materialising one array property warns."""

# Arrays of the grouped view, in store layout, that the container can read.
_STORE_ARRAYS = ("X", "Y_I", "Y_phi", "relative", "offsets", "indices")
_NOMINAL = "relative_nominal"


class LargeArrayWarning(UserWarning):
    """An array property materialised more bytes than the container's memory budget."""


class _StoreSource:
    """Reads rows of a grouped view from a Zarr group, one whole chunk at a time."""

    def __init__(self, root: zarr.Group, view: zarr.Group, *, where: str) -> None:
        self.root = root
        self.view = view
        self.where = where
        self.arrays: dict[str, zarr.Array] = {}
        for name in _STORE_ARRAYS:
            if name in view:
                array = view[name]
                if isinstance(array, zarr.Array):
                    self.arrays[name] = array
        missing = [name for name in ("X", "relative", "offsets", "indices")
                   if name not in self.arrays]
        if missing:
            raise MissingKeyError(
                f"{where}: grouped view lacks array(s) {missing!r}. Re-create it with "
                "`ptychozarr group`."
            )
        self.n_groups = int(self.arrays["X"].shape[0])
        self.chunk_groups = int(self.arrays["X"].chunks[0])
        self._nominal_positions: np.ndarray | None = None

    @property
    def has_nominal(self) -> bool:
        return "xcoords_start" in self.root and "ycoords_start" in self.root

    def has(self, name: str) -> bool:
        return name == _NOMINAL or name in self.arrays

    def row_shape(self, name: str) -> tuple[int, ...]:
        if name == _NOMINAL:
            return tuple(self.arrays["relative"].shape[1:])
        return tuple(self.arrays[name].shape[1:])

    def dtype(self, name: str) -> np.dtype[Any]:
        if name == _NOMINAL:
            return np.dtype(np.float64)
        return np.dtype(self.arrays[name].dtype)

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Read rows ``[start, stop)`` of array ``name`` in store layout."""
        if name == _NOMINAL:
            return self._read_nominal(start, stop)
        return np.asarray(self.arrays[name][start:stop])

    def _read_nominal(self, start: int, stop: int) -> np.ndarray:
        if not self.has_nominal:
            return self.read("relative", start, stop)
        if self._nominal_positions is None:
            x = np.asarray(self._root_array("xcoords_start")[...], dtype=np.float64)
            y = np.asarray(self._root_array("ycoords_start")[...], dtype=np.float64)
            self._nominal_positions = np.stack([x, y], axis=-1)
        members = self._nominal_positions[self.read("indices", start, stop)]
        return members.mean(axis=1, keepdims=True) - members

    def read_probe(self) -> np.ndarray:
        return read_probe(self.root, where=self.where)

    def _root_array(self, name: str) -> zarr.Array:
        array = self.root[name]
        if not isinstance(array, zarr.Array):
            raise StoreSchemaError(f"{self.where}: {name!r} is a group, expected an array.")
        return array


class _MemorySource:
    """Rows of a grouped view held in memory, in store layout."""

    def __init__(self, arrays: Mapping[str, np.ndarray], *, probe: np.ndarray | None,
                 chunk_groups: int) -> None:
        self.arrays = dict(arrays)
        self.probe = probe
        self.where = "in-memory arrays"
        self.n_groups = int(self.arrays["X"].shape[0])
        self.chunk_groups = max(1, int(chunk_groups))

    @property
    def has_nominal(self) -> bool:
        return _NOMINAL in self.arrays

    def has(self, name: str) -> bool:
        return name in self.arrays or name == _NOMINAL

    def row_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.arrays[self._resolve(name)].shape[1:])

    def dtype(self, name: str) -> np.dtype[Any]:
        return np.dtype(self.arrays[self._resolve(name)].dtype)

    def _resolve(self, name: str) -> str:
        if name == _NOMINAL and name not in self.arrays:
            return "relative"
        return name

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return self.arrays[self._resolve(name)][start:stop]

    def read_probe(self) -> np.ndarray:
        if self.probe is None:
            raise MissingKeyError(
                "in-memory container: no probe was given. Pass probe=(N, N) complex array to "
                "LazyContainer.from_arrays."
            )
        return self.probe


_Source = _StoreSource | _MemorySource


def _open_view(store: str | os.PathLike[str] | Store, group: str) -> tuple[zarr.Group, zarr.Group]:
    """Open the store root and its ``groups/<group>`` subgroup, reading metadata only."""
    if isinstance(store, Store):
        where = str(store)
        root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
        check_format_version(root.attrs.asdict(), where=where)
    else:
        where = os.fspath(store)
        root = open_store(store)
    groups = root.get("groups")
    view = groups.get(group) if isinstance(groups, zarr.Group) else None
    if not isinstance(view, zarr.Group):
        available = sorted(groups.group_keys()) if isinstance(groups, zarr.Group) else []
        raise MissingKeyError(
            f"{where}: grouped view {group!r} not found; the store has {available!r}. "
            "Create it with `ptychozarr group`."
        )
    return root, view


def _reference_coords(relative: np.ndarray) -> np.ndarray:
    """(group, channel, xy) -> (group, 1, xy, channel)."""
    return np.ascontiguousarray(np.transpose(relative, (0, 2, 1))[:, np.newaxis])


def _store_coords(coords: np.ndarray, *, name: str) -> np.ndarray:
    """(group, 1, xy, channel) -> (group, channel, xy), validating the reference layout."""
    if coords.ndim != 4 or coords.shape[1] != 1 or coords.shape[2] != 2:
        raise InvalidInputError(
            f"{name}: invalid shape {coords.shape!r}; expected (group, 1, 2, channel) with "
            "axis 2 = (x, y), the reference container's coordinate layout."
        )
    return np.ascontiguousarray(np.transpose(coords[:, 0], (0, 2, 1)), dtype=np.float64)


def _to_numpy(value: Any) -> np.ndarray:
    """Convert a NumPy array, TF tensor or array-like to a NumPy array."""
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


class LazyContainer:
    """Grouped diffraction data with the reference container's interface, read on demand.

    Build it with :meth:`open` (a store's grouped view) or :meth:`from_arrays` (NumPy arrays or
    TensorFlow tensors in the reference layout). Construction reads metadata only.

    Parameters are private; use the constructors. ``memory_budget_bytes`` sets the size above
    which an array property warns with :class:`LargeArrayWarning` before reading.
    """

    def __init__(self, source: _Source, *, rows: np.ndarray | None = None,
                 attrs: Mapping[str, Any] | None = None,
                 memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> None:
        self._source = source
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        # Attributes of the grouped view: alpha, intensity_scale, gridsize, source_store, ...
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.memory_budget_bytes = int(memory_budget_bytes)
        self._tensor_cache: dict[str, Any] = {}
        self._numpy_cache: dict[str, np.ndarray] = {}

    # Construction -----------------------------------------------------------------------------

    @classmethod
    def open(cls, store: str | os.PathLike[str] | Store, *, group: str,
             memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> LazyContainer:
        """Open ``groups/<group>`` of a dataset store without reading any chunk.

        Parameters
        ----------
        store
            Store directory, ``.zip`` of a finished store, fsspec URL, or an open Zarr store.
        group
            Name of the grouped view (see ``ptychozarr group``).
        memory_budget_bytes
            Array properties larger than this warn with :class:`LargeArrayWarning`.

        Raises
        ------
        MissingKeyError
            The grouped view or one of its required arrays is missing.
        StoreSchemaError
            The path is not a ptychozarr store.
        """
        root, view = _open_view(store, group)
        where = f"{store if isinstance(store, Store) else os.fspath(store)}: groups/{group}"
        attrs = dict(view.attrs.asdict())
        attrs.setdefault("source_store", str(store) if isinstance(store, Store)
                         else os.fspath(store))
        attrs["group_name"] = group
        container = cls(_StoreSource(root, view, where=where), attrs=attrs,
                        memory_budget_bytes=memory_budget_bytes)
        logger.debug("Opened %s: %d groups", where, len(container))
        return container

    @classmethod
    def from_arrays(cls, X: Any, *, Y_I: Any = None, Y_phi: Any = None, Y: Any = None,
                    coords_nominal: Any = None, coords_true: Any = None, probe: Any = None,
                    nn_indices: Any = None, global_offsets: Any = None,
                    norm_Y_I: float | None = None, alpha: float = 1.0, chunk_groups: int = 256,
                    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> LazyContainer:
        """Build a container from in-memory arrays or tensors in the reference layout.

        Parameters
        ----------
        X
            (group, ky, kx, channel) float32 normalised diffraction amplitude.
        Y_I, Y_phi
            (group, py, px, channel) float32 ground-truth amplitude and phase (rad), optional.
        Y
            (group, py, px, channel) complex64 ground truth; an alternative to ``Y_I``/``Y_phi``.
        coords_nominal, coords_true
            (group, 1, 2, channel) relative offsets (centroid minus member, x then y, pixels).
            Either may be omitted and defaults to the other, or to zeros when both are omitted.
        probe
            (N, N) complex64 illumination, optional.
        nn_indices
            (group, channel) int32 row of each member in the raw arrays; default ``arange``.
        global_offsets
            (group, 1, 2, 1) group centroids (x, y) in pixels; default zeros.
        norm_Y_I
            Intensity scale s linking ``X`` to photon counts; default 1.0.
        alpha
            Input normalisation that produced ``X``, recorded in :attr:`attrs`.
        chunk_groups
            Groups per block when the data are iterated chunk by chunk.
        """
        x = np.asarray(_to_numpy(X), dtype=np.float32)
        if x.ndim != 4:
            raise InvalidInputError(
                f"X: invalid shape {x.shape!r}; expected (group, ky, kx, channel)."
            )
        n_groups, channels = x.shape[0], x.shape[-1]
        arrays: dict[str, np.ndarray] = {"X": x}
        arrays.update(_ground_truth_arrays(Y_I=Y_I, Y_phi=Y_phi, Y=Y, shape=x.shape))
        arrays.update(_coordinate_arrays(coords_nominal, coords_true, n_groups, channels))
        arrays["indices"] = (np.arange(n_groups * channels, dtype=np.int32)
                             .reshape(n_groups, channels) if nn_indices is None
                             else np.asarray(_to_numpy(nn_indices), dtype=np.int32))
        arrays["offsets"] = (np.zeros((n_groups, 2)) if global_offsets is None else
                             np.asarray(_to_numpy(global_offsets), dtype=np.float64)
                             .reshape(n_groups, 2))
        probe_np = None if probe is None else np.asarray(_to_numpy(probe), dtype=np.complex64)
        scale = 1.0 if norm_Y_I is None else float(norm_Y_I)
        attrs = {"n": int(x.shape[1]), "gridsize": round(float(np.sqrt(channels))),
                 "alpha": float(alpha), "intensity_scale": scale,
                 "has_ground_truth": "Y_I" in arrays, "n_groups": int(n_groups),
                 "max_offset_px": float(np.abs(arrays["relative"]).max(initial=0.0))}
        source = _MemorySource(arrays, probe=probe_np, chunk_groups=chunk_groups)
        return cls(source, attrs=attrs, memory_budget_bytes=memory_budget_bytes)

    # Sizes and subsets ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._source.n_groups if self._rows is None else len(self._rows)

    def __repr__(self) -> str:
        shape = (len(self), *self._source.row_shape("X"))
        return (f"LazyContainer({self._source.where!r}, X={shape!r}, "
                f"cached={sorted(self._tensor_cache)!r})")

    @property
    def where(self) -> str:
        """Where the groups come from, for messages: ``<store>: groups/<name>`` or in memory."""
        return self._source.where

    @property
    def n(self) -> int:
        """Pattern side N in pixels."""
        return int(self._source.row_shape("X")[0])

    @property
    def channels(self) -> int:
        """Members per group C (gridsize**2)."""
        return int(self._source.row_shape("X")[-1])

    @property
    def has_ground_truth(self) -> bool:
        """Whether the view contains ground-truth patches ``Y_I`` and ``Y_phi``."""
        return self._source.has("Y_I") and self._source.has("Y_phi")

    @property
    def cached_arrays(self) -> tuple[str, ...]:
        """Names of the array properties already materialised as tensors."""
        return tuple(sorted(self._tensor_cache))

    def group_rows(self) -> np.ndarray:
        """Rows of the underlying view that this container presents, ascending, (group,) int64."""
        if self._rows is None:
            return np.arange(self._source.n_groups, dtype=np.int64)
        return self._rows.copy()

    def select(self, rows: Sequence[int] | np.ndarray) -> LazyContainer:
        """Return a container over a subset of this container's groups (positions in ``self``).

        The subset shares the source; it reads nothing until used. Rows are sorted so that
        chunk-by-chunk reads stay sequential.
        """
        positions = np.unique(np.asarray(rows, dtype=np.int64))
        if positions.size and (positions[0] < 0 or positions[-1] >= len(self)):
            raise InvalidInputError(
                f"rows: values must lie in [0, {len(self)}); got range "
                f"[{positions[0]}, {positions[-1]}]."
            )
        subset = LazyContainer(self._source, rows=self.group_rows()[positions], attrs=self.attrs,
                               memory_budget_bytes=self.memory_budget_bytes)
        return subset

    def row_nbytes(self, names: Sequence[str]) -> int:
        """Bytes of one group summed over the arrays ``names`` (store layout)."""
        return sum(int(np.prod(self._source.row_shape(name))) * self._source.dtype(name).itemsize
                   for name in names)

    # Chunked reading --------------------------------------------------------------------------

    def chunk_spans(self) -> list[tuple[int, int]]:
        """Spans ``[start, stop)`` of this container's positions that share a storage chunk."""
        rows = self.group_rows()
        if rows.size == 0:
            return []
        chunk_of_row = rows // self._source.chunk_groups
        edges = np.flatnonzero(np.diff(chunk_of_row)) + 1
        starts = np.concatenate([[0], edges])
        stops = np.concatenate([edges, [rows.size]])
        return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]

    def read_span(self, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
        """Read positions ``[start, stop)`` of arrays ``names`` (store layout) without caching.

        A span within one storage chunk (see :meth:`chunk_spans`) reads that chunk only. Wider
        spans work too, at the cost of more reads.
        Names: ``X``, ``Y_I``, ``Y_phi``, ``relative``, ``relative_nominal``, ``offsets``,
        ``indices``.
        """
        rows = self.group_rows()[start:stop]
        if rows.size == 0:
            return {name: np.empty((0, *self._source.row_shape(name)),
                                   dtype=self._source.dtype(name)) for name in names}
        first, last = int(rows[0]), int(rows[-1]) + 1
        local = rows - first
        contiguous = rows.size == last - first
        out = {}
        for name in names:
            self._require(name)
            block = self._source.read(name, first, last)
            out[name] = block if contiguous else block[local]
        return out

    def iter_chunks(self, names: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        """Yield arrays ``names`` chunk by chunk, in order, one storage chunk at a time."""
        for start, stop in self.chunk_spans():
            yield self.read_span(names, start, stop)

    def read_all(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Read arrays ``names`` for every group, chunk by chunk, into NumPy arrays."""
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for block in self.iter_chunks(names):
            for name in names:
                parts[name].append(block[name])
        return {name: (np.concatenate(chunks) if chunks else
                       np.empty((0, *self._source.row_shape(name)), self._source.dtype(name)))
                for name, chunks in parts.items()}

    def _require(self, name: str) -> None:
        if self._source.has(name):
            return
        if name in ("Y_I", "Y_phi"):
            raise MissingKeyError(
                f"{self._source.where}: no ground truth ({name!r}); the store has no object. "
                "Train a PINN, which needs none, or simulate/convert a dataset with an object."
            )
        raise MissingKeyError(f"{self._source.where}: array {name!r} is missing.")

    # Array properties (TensorFlow tensors, reference layout) ----------------------------------

    def _materialise(self, key: str, names: Sequence[str], nbytes_per_group: int) -> dict[str, Any]:
        nbytes = nbytes_per_group * len(self)
        if nbytes > self.memory_budget_bytes:
            warnings.warn(
                f"LazyContainer.{key}: materialising {nbytes / 2**20:.1f} MiB "
                f"({len(self)} groups), above the memory budget of "
                f"{self.memory_budget_bytes / 2**20:.1f} MiB. Iterate with as_tf_dataset() or "
                "iter_chunks() instead, or raise memory_budget_bytes.",
                LargeArrayWarning, stacklevel=4,
            )
        return self.read_all(names)

    def _tensor(self, key: str, names: Sequence[str], itemsize: int,
                convert: Any) -> tf.Tensor:
        cached = self._tensor_cache.get(key)
        if cached is not None:
            return cached
        import tensorflow as tf

        for name in names:
            self._require(name)
        per_group = itemsize * int(np.prod(self._source.row_shape(names[0])))
        arrays = self._materialise(key, names, per_group)
        tensor = tf.convert_to_tensor(convert(arrays))
        self._tensor_cache[key] = tensor
        return tensor

    @property
    def X(self) -> tf.Tensor:
        """(group, ky, kx, channel) float32 normalised diffraction amplitude alpha * |Psi|."""
        return self._tensor("X", ["X"], 4, lambda a: a["X"].astype(np.float32, copy=False))

    @property
    def Y_I(self) -> tf.Tensor:
        """(group, py, px, channel) float32 ground-truth amplitude at each member's position."""
        return self._tensor("Y_I", ["Y_I"], 4, lambda a: a["Y_I"].astype(np.float32, copy=False))

    @property
    def Y_phi(self) -> tf.Tensor:
        """(group, py, px, channel) float32 ground-truth phase in radians."""
        return self._tensor("Y_phi", ["Y_phi"], 4,
                            lambda a: a["Y_phi"].astype(np.float32, copy=False))

    @property
    def Y(self) -> tf.Tensor:
        """(group, py, px, channel) complex64 ground truth Y_I * exp(i Y_phi)."""
        return self._tensor("Y", ["Y_I", "Y_phi"], 8,
                            lambda a: (a["Y_I"] * np.exp(1j * a["Y_phi"])).astype(np.complex64))

    @property
    def coords_true(self) -> tf.Tensor:
        """(group, 1, 2, channel) float32 relative offsets from the measured positions (pixels)."""
        return self._tensor("coords_true", ["relative"], 4,
                            lambda a: _reference_coords(a["relative"]).astype(np.float32))

    @property
    def coords_nominal(self) -> tf.Tensor:
        """(group, 1, 2, channel) float32 relative offsets from the nominal positions (pixels)."""
        return self._tensor("coords_nominal", [_NOMINAL], 4,
                            lambda a: _reference_coords(a[_NOMINAL]).astype(np.float32))

    @property
    def coords(self) -> tf.Tensor:
        """Alias of :attr:`coords_nominal`."""
        return self.coords_nominal

    @property
    def probe(self) -> tf.Tensor:
        """(N, N) complex64 illumination on the object pixel grid."""
        cached = self._tensor_cache.get("probe")
        if cached is None:
            import tensorflow as tf

            cached = tf.convert_to_tensor(self.probe_numpy())
            self._tensor_cache["probe"] = cached
        return cached

    def probe_numpy(self) -> np.ndarray:
        """(N, N) complex64 illumination as a NumPy array (read on first call, then cached)."""
        if "probe" not in self._numpy_cache:
            self._numpy_cache["probe"] = self._source.read_probe()
        return self._numpy_cache["probe"]

    # NumPy-side attributes --------------------------------------------------------------------

    def _numpy(self, name: str) -> np.ndarray:
        if name not in self._numpy_cache:
            self._numpy_cache[name] = self.read_all([name])[name]
        return self._numpy_cache[name]

    @property
    def nn_indices(self) -> np.ndarray:
        """(group, channel) int32 row of each member in the raw arrays."""
        return self._numpy("indices")

    @property
    def global_offsets(self) -> np.ndarray:
        """(group, 1, 2, 1) float64 group centroids (x, y) in pixels."""
        return self._numpy("offsets")[:, np.newaxis, :, np.newaxis]

    @property
    def local_offsets(self) -> np.ndarray:
        """(group, 1, 2, channel) float64 centroid minus member (measured positions, pixels)."""
        return _reference_coords(self._numpy("relative"))

    @property
    def norm_Y_I(self) -> float:
        """Intensity scale s of the grouped set (``intensity_scale`` attribute)."""
        return float(self.attrs.get("intensity_scale", 1.0))

    # Streaming ---------------------------------------------------------------------------------

    def as_tf_dataset(self, batch_size: int, *, shuffle: bool = True, seed: int | None = None,
                      repeat: bool = False, drop_remainder: bool = False,
                      model: ModelKind = "pinn", shuffle_buffer_groups: int = 1024,
                      first_epoch: int = 0) -> tf.data.Dataset:
        """Stream (inputs, targets) batches for ``model`` from the store, chunk by chunk.

        See :func:`ptychozarr.tfdata.make_dataset` for the parameters and the element structure.
        """
        from ptychozarr.tfdata import make_dataset

        return make_dataset(self, batch_size, model=model, shuffle=shuffle, seed=seed,
                            repeat=repeat, drop_remainder=drop_remainder,
                            shuffle_buffer_groups=shuffle_buffer_groups, first_epoch=first_epoch)


def _ground_truth_arrays(*, Y_I: Any, Y_phi: Any, Y: Any,
                         shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    if Y is not None:
        if Y_I is not None or Y_phi is not None:
            raise InvalidInputError("Y: pass either Y or Y_I and Y_phi, not both.")
        complex_y = np.asarray(_to_numpy(Y))
        Y_I, Y_phi = np.abs(complex_y), np.angle(complex_y)
    if Y_I is None and Y_phi is None:
        return {}
    if Y_I is None or Y_phi is None:
        raise InvalidInputError("Y_I, Y_phi: pass both ground-truth arrays or neither.")
    arrays = {"Y_I": np.asarray(_to_numpy(Y_I), dtype=np.float32),
              "Y_phi": np.asarray(_to_numpy(Y_phi), dtype=np.float32)}
    for name, array in arrays.items():
        if array.shape != shape:
            raise InvalidInputError(
                f"{name}: shape {array.shape!r} does not match X {shape!r}; the ground truth "
                "needs one (py, px) patch per member, channels last."
            )
    return arrays


def _coordinate_arrays(coords_nominal: Any, coords_true: Any, n_groups: int,
                       channels: int) -> dict[str, np.ndarray]:
    true = None if coords_true is None else _store_coords(_to_numpy(coords_true),
                                                          name="coords_true")
    nominal = None if coords_nominal is None else _store_coords(_to_numpy(coords_nominal),
                                                                name="coords_nominal")
    if true is None:
        true = nominal if nominal is not None else np.zeros((n_groups, channels, 2))
    if true.shape != (n_groups, channels, 2):
        raise InvalidInputError(
            f"coordinates: shape {true.shape!r} does not match X with {n_groups} groups of "
            f"{channels} channels."
        )
    arrays = {"relative": true}
    if nominal is not None:
        arrays[_NOMINAL] = nominal
    return arrays
