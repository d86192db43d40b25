"""The wasm tier: RuVector's own ``@ruvector/rvf-wasm`` store, run in-process by wasmtime.

The module's store is exact (flat), as RuVector's WASM build is: every query scores every live vector with
the module's float32 kernels and sorts them. Each backend object owns one module instance (its own linear
memory), so closing an index gives its memory back. The module only marks deleted slots, so when deleted
slots outnumber live ones (and pass :attr:`WasmBackend.compact_min_deleted`) the store is rebuilt from its
own export, which keeps linear memory bounded under any mix of inserts and deletes.

Everything that crosses into the module is checked here first (shapes, dtypes, NaN, magnitudes that would
overflow float32, label range, ``k``); under cosine rows are stored and queried at unit length (as the
numpy backend does), which leaves the distances unchanged and keeps the module's float32 arithmetic in
range. A trap inside the module surfaces as
:class:`~ruvector_lab.errors.BackendError`. Unavailable (no wasmtime, no ``node_modules``, wrong build):
constructing the backend raises :class:`~ruvector_lab.errors.BackendUnavailableError` saying why.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import (
    BackendError,
    CorruptIndexError,
    DimensionMismatchError,
    IndexClosedError,
    InvalidParameterError,
    InvalidVectorError,
)
from ..types import HnswConfig
from ..wasm.kernels import batch_distances, to_library_scores
from ..wasm.loader import RVF_WASM
from ..wasm.rvf import (
    MAX_DIMENSIONS,
    MAX_ID,
    MEMORY_BUDGET,
    SLOT_OVERHEAD,
    RvfModule,
    RvfStore,
    check_magnitude,
    unit_rows,
)
from .base import IndexBackend, MemoryLayout, dump_native, load_native

#: the module takes k as an i32
MAX_K = (1 << 31) - 1
#: container kind of the persisted store: the module's export beside the metric it was written under
PAYLOAD_KIND = "wasm-backend"


class WasmBackend(IndexBackend):
    """Exact search in rvf-wasm's in-memory store; all three metrics (euclidean, dot_product, cosine)."""

    name = "wasm"
    graph = "flat"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """rvf-wasm's store, in the module's linear memory: the vector plus SLOT_OVERHEAD bytes of slot record
        (u64 id, flags) and allocator overhead per slot. The module instance's own memory is not counted."""
        return MemoryLayout(vectors=4.0 * config.dimensions, other=float(SLOT_OVERHEAD))
    distance_kernel = staticmethod(batch_distances)
    #: deleted slots tolerated before a compaction (a compaction also needs more deleted than live slots)
    compact_min_deleted: ClassVar[int] = 256

    def __init__(self, config: HnswConfig) -> None:
        super().__init__(config)
        if config.dimensions > MAX_DIMENSIONS:
            raise InvalidParameterError(
                f"the wasm backend takes at most {MAX_DIMENSIONS} dimensions, got {config.dimensions}"
            )
        self._module = RvfModule()  # BackendUnavailableError when the module cannot be had
        self._closed = False
        try:
            self._store = RvfStore.create(self._module, config.dimensions, config.metric)
        except BaseException:
            self._module.close()
            raise
        self._live = 0
        self._slots = 0
        self._compactions = 0

    # ------------------------------------------------------------ checks
    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError("this wasm backend was closed")

    def _matrix(self, vectors: np.ndarray, name: str) -> np.ndarray:
        if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
            raise InvalidVectorError(f"{name} must be a float32 matrix, got {getattr(vectors, 'dtype', type(vectors))}")
        if vectors.shape[1] != self.config.dimensions:
            raise DimensionMismatchError(
                f"{name} have {vectors.shape[1]} dimensions, expected {self.config.dimensions}"
            )
        if vectors.size and not np.isfinite(vectors).all():
            raise InvalidVectorError(f"{name} hold NaN or inf")
        if self.config.metric == "cosine":
            return unit_rows(vectors, name)  # same distances; no tiny-norm or overflow corner in the module
        check_magnitude(vectors, name)
        return np.ascontiguousarray(vectors)

    @staticmethod
    def _labels(labels: np.ndarray, count: int | None = None) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidParameterError(f"labels must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}")
        if count is not None and len(arr) != count:
            raise DimensionMismatchError(f"{len(arr)} labels for {count} vectors")
        if len(arr) and (int(arr.min()) < 0 or int(arr.max()) > MAX_ID):
            raise InvalidParameterError(f"labels must lie in 0 .. {MAX_ID} (the module's ids are u64)")
        return arr.astype(np.int64, copy=False)

    # ------------------------------------------------------------ protocol
    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows to the module's store under ``labels``."""
        matrix = self._matrix(vectors, "vectors")
        keys = self._labels(labels, len(matrix))
        if not len(keys):
            return
        with self._module.lock:
            self._check_open()
            needed = (self._slots + len(keys)) * (4 * self.config.dimensions + SLOT_OVERHEAD)
            if needed > MEMORY_BUDGET:
                raise BackendError(
                    f"{self._slots + len(keys)} vectors of {self.config.dimensions} dimensions would not fit in "
                    "wasm32's 4 GiB of linear memory; use a native backend for an index this large"
                )
            self._store.ingest(keys.astype(np.uint64), matrix)
            self._live += len(keys)
            self._slots += len(keys)

    def remove(self, labels: np.ndarray) -> None:
        """Mark ``labels`` deleted in the store; compact when deleted slots dominate."""
        keys = np.unique(self._labels(labels))
        if not len(keys):
            return
        with self._module.lock:
            self._check_open()
            deleted = self._store.delete(keys.astype(np.uint64))
            self._live -= deleted
            if deleted != len(keys):
                raise BackendError(f"the wasm store held {deleted} of the {len(keys)} labels asked to be removed")
            if self._slots - self._live > max(self.compact_min_deleted, self._live):
                self._compact()

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k per query from the module (``ef_search`` is ignored: the store is flat)."""
        matrix = self._matrix(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise InvalidParameterError(f"k must be an integer in 1 .. {MAX_K}, got {k!r}")
        k = int(k)
        with self._module.lock:
            self._check_open()
            k_eff = min(k, self._live)
            out_d = np.full((len(matrix), k), np.inf, dtype=np.float32)
            out_l = np.full((len(matrix), k), -1, dtype=np.int64)
            if k_eff == 0:
                return out_d, out_l
            metric = self.config.metric
            for row, query in enumerate(matrix):
                ids, raw = self._store.query(query, k_eff, metric)
                out_l[row, : len(ids)] = ids.astype(np.int64)
                out_d[row, : len(ids)] = to_library_scores(raw, metric)
            return out_d, out_l

    def to_bytes(self) -> bytes:
        """The store's own ``rvf_store_export`` bytes (live vectors with their labels as ids), with the metric
        they were written under (the export does not record it, and cosine rows are stored at unit length)."""
        with self._module.lock:
            self._check_open()
            export = self._store.export()
        return dump_native(PAYLOAD_KIND, export, self.config.metric)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> WasmBackend:
        """A backend whose store is opened from :meth:`to_bytes` output; the ids must be exactly ``live_labels``
        (``trust_native`` changes nothing: the export is parsed in Python and replayed into a sandboxed store)."""
        export = load_native(PAYLOAD_KIND, payload, config)
        backend = cls(config)
        try:
            with backend._module.lock:
                store, parsed = RvfStore.from_export(backend._module, export, config.dimensions)
                stored = np.sort(parsed.ids.astype(np.int64))
                if not np.array_equal(stored, np.sort(np.asarray(live_labels, dtype=np.int64))):
                    store.close()
                    raise CorruptIndexError("the wasm store's ids do not match the index's live labels")
                backend._store.close()
                backend._store = store
                backend._live = backend._slots = len(parsed)
        except BaseException:
            backend.close()
            raise
        return backend

    def close(self) -> None:
        """Free the store and the module instance (its whole linear memory); idempotent."""
        with self._module.lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._store.close()
            finally:
                self._module.close()

    # ------------------------------------------------------------ upkeep and inspection
    def _compact(self) -> None:
        """Rebuild the store from its own export so deleted slots stop costing memory and scan time."""
        fresh, _ = RvfStore.from_export(self._module, self._store.export(), self.config.dimensions)
        self._store.close()
        self._store = fresh
        self._slots = self._live
        self._compactions += 1

    @property
    def memory_bytes(self) -> int:
        """Current size of this backend's wasm linear memory."""
        return self._module.memory_bytes

    def stats_extra(self) -> dict[str, Any]:
        """Module, linear memory size and slot counts, for :meth:`HnswIndex.stats`."""
        with self._module.lock:
            self._check_open()
            status = self._store.status()
            return {
                "wasm_module": str(RVF_WASM),
                "wasm_memory_bytes": self._module.memory_bytes,
                "wasm_slots": status["slots"],
                "wasm_deleted_slots": status["deleted"],
                "wasm_compactions": self._compactions,
            }
