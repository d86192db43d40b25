"""Native tier: usearch (Unum's single-header HNSW, the ``usearch`` PyPI package), float and quantized.

One class serves float vectors and the two quantization kinds usearch has a real search kernel for:

==========  ====================  ==================  ============================================================
config      usearch storage       usearch metric      score (the library's convention)
==========  ====================  ==================  ============================================================
float       ``f32``               Cos / L2sq / IP     ``1 - cos`` / ``sqrt(l2sq)`` / ``ip - 1`` (usearch's IP is
                                                      ``1 - dot``, so ``-dot = ip - 1``)
scalar      ``i8``, d bytes       Cos (cosine only)   usearch's ``1 - cos`` between the two code vectors
binary      ``b1``, d/8 bytes     Hamming (cosine     ``2 * hamming / d``: the cosine distance of the two sign
                                  only)               vectors, as the faiss backend reports it
==========  ====================  ==================  ============================================================

``HnswConfig`` maps onto usearch's own names: ``m`` is ``connectivity`` (usearch keeps ``2 * m`` links on level 0,
``connectivity_base``), ``ef_construction`` is ``expansion_add`` and ``ef_search`` is ``expansion_search``.
Inserts run on usearch's own thread pool with ``ruvector_lab.pools.pinned_pool_size()`` threads (1 unless pinned),
as the hnswlib backend does. Keys are the facade's labels (int64 >= 0 viewed as uint64).

Quantized kinds (``HnswConfig(quantization=QuantizationConfig(kind=...))``):

* ``scalar``: 8 bits per dimension in usearch's ``i8`` storage, scored by its ``i8`` cosine kernel (exact integer
  dot products and norms, ``index_plugins.hpp`` ``metric_cos_i8_t``). The codes are ``round(127 x / max|x_i|)``:
  one symmetric range per vector, the library's per-vector-range ``scalar`` codec without the offset (an offset
  would not survive a dot product). usearch's own f32->i8 cast (``cast_to_i8_gt``) scales by the vector's L2 norm
  and truncates, which leaves most of the 255 levels unused (on 20k x 64 clustered rows it gave 4.6x the cosine
  error of these codes), so the backend encodes queries and rows itself and hands usearch ready ``int8`` rows.
  Per-vector scales keep directions only: L2 and inner products over the codes are not the vectors' distances, so
  ``scalar`` serves cosine alone.
* ``binary``: the library's :class:`~ruvector_lab.quantization.binary.BinaryCodec` sign bits in usearch's ``b1``
  storage under its Hamming metric (Hamming does not depend on the bit order inside a byte). Signs carry no
  magnitude: cosine only, as on faiss.
* ``int4``, ``product``, ``rabitq`` have no usearch storage: refused. usearch's ``f16``, ``bf16``, the FP8/FP6
  formats (``e5m2``, ``e4m3``, ``e3m2``, ``e2m3``), ``u8`` and ``f64`` have no codec kind in this library.
* ``graph='float'`` is refused: usearch quantizes a row as it is inserted and links it by code distances, with no
  float storage the graph could be built from.

With ``rerank=K`` the float rows (unit length under cosine) are kept beside the graph, the graph returns
``max(k, K)`` candidates and they are re-scored exactly (:func:`~ruvector_lab.quantization.rerank.rerank`), as
on the faiss backend; without it the scores are usearch's estimates above.

Deletes use usearch's ``remove``: the node stays in the graph as a routing point with the reserved free key, is
never returned, and its slot is reused by a later insert. Rows the graph cannot reach (k live nodes not found)
are answered by usearch's exact scan, which skips removed keys too.

Persistence is usearch's own buffer format (``save_index_to_buffer`` / ``load_index_from_buffer``) inside the
library's checksummed container. usearch's loader trusts its input (a flipped link byte crashes the process or
hangs it), so before loading, every field it trusts is checked here: header kinds and counts, levels, exact
length, every neighbour count and slot, the node keys, and finite float rows.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import usearch
from usearch.compiled import VERSION_MAJOR
from usearch.index import Index, MetricKind, ScalarKind

from .. import container
from ..distances import from_squared_l2
from ..errors import BackendError, CorruptIndexError, QuantizationError
from ..fastpath import SCORE_MINUS_ONE, SCORE_SAME, SCORE_SQRT
from ..pools import pinned_pool_size
from ..quantization.base import make_codec
from ..quantization.rerank import Rows, check_recorded_rerank, memory_stats, prepare, rerank
from ..types import HnswConfig
from ..validation import stored_row_flaw
from .base import IndexBackend, MemoryLayout, SearchRow

logger = logging.getLogger(__name__)

PAYLOAD_KIND = "usearch-backend"
#: quantization kinds served, and the usearch storage each one uses
SERVED_KINDS: dict[str, str] = {"scalar": "i8", "binary": "b1"}
_FLOAT_METRICS = {"cosine": MetricKind.Cos, "euclidean": MetricKind.L2sq, "dot_product": MetricKind.IP}
_SCALAR_KINDS = {"f32": ScalarKind.F32, "i8": ScalarKind.I8, "b1": ScalarKind.B1}
#: the key usearch writes into a removed node (index_dense.hpp: ``free_key_ = default_free_value<vector_key_t>()``)
_FREE_KEY = np.uint64(np.iinfo(np.uint64).max)

# Serialized layout, usearch 2.x (index_dense.hpp ``save_to_stream``, index.hpp ``index_gt::save_to_stream``):
# u32 rows, u32 bytes per row, the rows; a 64-byte ``index_dense_head_t`` (magic "usearch", u16 major/minor/patch,
# u8 metric/scalar/key/slot kinds, u64 present/deleted/dimensions, bool multi); ``index_serialized_header_t``
# (u64 size, connectivity, connectivity_base, max_level, entry_slot); i16 level per node; then each node's tape.
_MATRIX_HEAD = struct.Struct("<II")
_DENSE_HEAD = struct.Struct("<7sHHHBBBBQQQ?")
_DENSE_HEAD_BYTES = 64
_GRAPH_HEAD = struct.Struct("<5Q")
# node tape (index.hpp ``node_t``): u64 key, i16 level, then per level a u32 count and the u32 slots
# (``default_slot_t = std::uint32_t``); level 0 has room for connectivity_base slots, upper levels for connectivity
_NODE_HEAD = 8 + 2
_SLOT = 4
_COUNT = 4
_CHECK_CHUNK = 16384  # nodes gathered at once while checking a payload (bounds the temporary index arrays)


def _bytes_per_row(dtype: str, dimensions: int) -> int:
    """What usearch stores per vector (``metric_punned_t::bytes_per_vector``) for our dtypes."""
    if dtype == "f32":
        return 4 * dimensions
    if dtype == "i8":
        return dimensions
    return (dimensions + 7) // 8


def _i8_codes(x: np.ndarray) -> np.ndarray:
    """``round(127 x / max|x_i|)`` per row as int8: a symmetric per-vector range over all 255 levels (a zero row
    stays zero). Cosine is scale-invariant, so the per-row scale is not needed to score."""
    peak = np.abs(x).max(axis=1, keepdims=True)
    scaled = x * (np.float32(127.0) / np.where(peak > 0, peak, np.float32(1.0)))
    return np.clip(np.rint(scaled), -127, 127).astype(np.int8)


class UsearchBackend(IndexBackend):
    """usearch's dense HNSW index: float rows, or ``scalar`` (i8) / ``binary`` (b1) codes under cosine.

    **ef per call.** usearch 2.26 has no per-call ``expansion_search``: ``search_many`` reads the index's
    ``config_.expansion_search`` when each query starts (index_dense.hpp ``search_``), and the property setter
    takes no lock. The backend therefore holds one :class:`threading.Lock` around "set ``expansion_search`` if this
    call's ef differs from the index's, then search": a search always runs with its own ef, and a search at the
    index's current ef only pays the uncontended lock. This serialises concurrent searches on one index, which
    costs nothing here: the binding itself runs every ``add_many``/``search_many`` on an index under a per-index
    mutex (python/lib.cpp ``dense_index_py_t::mutex_ptr_``), with the GIL released. Parallelism comes from usearch's
    own ``threads`` inside one batch call (``pinned_pool_size()``, 1 unless pinned).
    """

    name = "usearch"
    graph = "hnsw"

    def __init__(self, config: HnswConfig, index: Index | None = None) -> None:
        super().__init__(config)
        self.check_config(config)
        quantization = config.quantization
        self._kind: str | None = quantization.kind if quantization is not None else None
        self._dtype = "f32" if self._kind is None else SERVED_KINDS[self._kind]
        self._metric = MetricKind.Hamming if self._kind == "binary" else (
            MetricKind.Cos if self._kind == "scalar" else _FLOAT_METRICS[config.metric])
        if index is None:
            index = Index(ndim=config.dimensions, metric=self._metric, dtype=self._dtype, connectivity=config.m,
                          expansion_add=config.ef_construction, expansion_search=config.ef_search)
        else:  # a restored index comes back with usearch's default expansions (they are not serialized)
            index.expansion_add = config.ef_construction
            index.expansion_search = config.ef_search
        self._index = index
        # the binding itself: Index.search/add wrap it in Python-side checks and result objects
        self._compiled = index._compiled
        self._ef = config.ef_search
        self._lock = threading.Lock()
        self._codec = make_codec(quantization, config.dimensions, metric="cosine") if self._kind == "binary" else None
        self._floats = Rows(config.dimensions, np.float32) if config.rerank else None
        self._row_labels = np.arange(0, dtype=np.int64)  # rows -> labels for rerank (rows are labels), grown lazily
        self._hamming_scale = np.float32(2.0 / config.dimensions)
        # the binding's float distances to the facade's scores: l2sq is squared, ip is 1 - dot, cos is 1 - cos
        self._score_mode = {"euclidean": SCORE_SQRT, "dot_product": SCORE_MINUS_ONE}.get(config.metric, SCORE_SAME)

    @classmethod
    def check_config(cls, config: HnswConfig) -> None:
        """Refuse a quantization kind usearch has no storage for, other bits or rotations than the kind's, a graph
        built from floats (``graph='float'``), and a metric its codes cannot score."""
        quantization = config.quantization
        if quantization is None:
            return
        kind = quantization.kind
        if kind not in SERVED_KINDS:
            raise QuantizationError(
                f"usearch has no storage for {kind!r} codes: it stores f64, f32, bf16, f16, FP8/FP6, i8, u8 and b1 "
                "scalars, and this backend serves 'scalar' (as i8) and 'binary' (as b1)"
            )
        quantization.check_served(
            "usearch", f"its {SERVED_KINDS[kind]} storage holds one fixed code per dimension",
            float_graph="usearch quantizes each row as it is inserted and builds its graph over those codes; it "
                        "keeps no float storage the graph could be built from",
        )
        if config.metric == "cosine":
            return
        if kind == "scalar":
            raise QuantizationError(
                f"scalar codes cannot serve the {config.metric!r} metric on usearch; they serve cosine: its i8 "
                "storage has no per-vector scale or offset, so each row is scaled to its own range and keeps its "
                "direction only, and L2 or inner products over such codes are not the vectors' distances"
            )
        raise QuantizationError(
            f"binary codes cannot serve the {config.metric!r} metric; they serve cosine (one sign bit per dimension, "
            "compared by Hamming distance, keeps no magnitude)"
        )

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """usearch's node tapes, stored rows, key map and slot records (index.hpp, index_dense.hpp, 2.26).

        Sized for a capacity of exactly n: usearch grows capacity to the next power of two
        (python/lib.cpp ``add_many``: ``ceil2(size + n)``), so the per-capacity parts (node and row pointers, key
        hash) can be up to twice these figures right after growth.
        """
        cls.check_config(config)
        d, m = config.dimensions, config.m
        kind = config.quantization.kind if config.quantization is not None else None
        dtype = "f32" if kind is None else SERVED_KINDS[kind]
        # rows live on a tape whose allocations are rounded to 8 bytes (``memory_mapping_allocator_gt<8>``)
        vectors = float(-(-_bytes_per_row(dtype, d) // 8) * 8)
        if config.rerank:
            vectors += 4.0 * d  # the float rows kept for re-ranking
        # a node tape is the 10-byte head, level 0 (u32 count + 2M u32 slots) and one (u32 + M u32) list per upper
        # level, each node one allocation on a tape rounded to 64 bytes (``memory_mapping_allocator_gt<64>``);
        # P(level = l) = (1 - 1/M) M^-l (``choose_random_level_``: floor(-ln U / ln M))
        level0 = _NODE_HEAD + _COUNT + 2 * m * _SLOT
        upper = _COUNT + m * _SLOT
        tape = 0.0
        for level in range(40):
            p = (1.0 - 1.0 / m) * float(m) ** -level
            tape += p * (-(-(level0 + level * upper) // 64) * 64)
            if p < 1e-12:
                break
        graph = tape + 8  # ``nodes_``: one 8-byte node_t pointer per member
        # ``slot_lookup_``: a flat hash multiset of 16-byte {u64 key, u32 slot} entries, at most 2/3 full, sized to
        # ceil2(1.5 * capacity) slots in buckets of 64 entries plus a 16-byte header: 2 slots per member at n = 2^k
        ids = 2 * (16 + 16 / 64)
        # ``vectors_lookup_``: one 8-byte row pointer per member
        other = 8.0
        # the striped node locks: ceil2(max(threads * 2M * 4, 256)) cache lines of 128 bytes, threads defaulting to
        # the hardware concurrency (index.hpp ``striped_locks_gt``, ``index_limits_t``)
        threads = max(1, os.cpu_count() or 1)
        stripes = 1 << (max(threads * 2 * m * 4, 256) - 1).bit_length()
        fixed = stripes * 128 + _DENSE_HEAD_BYTES
        return MemoryLayout(vectors=vectors, graph=graph, ids=ids, other=other, fixed=fixed)

    @property
    def index(self) -> Index:
        """The underlying ``usearch.index.Index`` (for direct comparisons in benchmarks)."""
        return self._index

    # ------------------------------------------------------------------ building
    def _codes(self, x: np.ndarray) -> np.ndarray:
        """Rows as usearch stores them: float32, int8 codes or packed sign bits (C-contiguous)."""
        if self._kind is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        if self._kind == "scalar":
            return _i8_codes(np.asarray(x, dtype=np.float32))
        return np.ascontiguousarray(self._codec.encode(x))  # type: ignore[union-attr]

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert under the labels as usearch keys, on usearch's pool of ``pinned_pool_size() or 1`` threads."""
        if not len(labels):
            return
        if self._floats is not None and int(labels[0]) != self._floats.count:
            raise BackendError(f"usearch rerank rows must continue at label {self._floats.count}, got {int(labels[0])}")
        keys = np.ascontiguousarray(labels, dtype=np.int64).view(np.uint64)
        try:
            self._compiled.add_many(keys, self._codes(vectors), copy=True, threads=pinned_pool_size() or 1)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise BackendError(f"usearch could not add {len(labels)} vectors: {exc}") from None
        if self._floats is not None:
            self._floats.append(prepare(vectors, self.config.metric))

    def remove(self, labels: np.ndarray) -> None:
        """usearch's remove: the node keeps routing searches under the free key and is never returned."""
        keys = np.ascontiguousarray(labels, dtype=np.int64).view(np.uint64)
        removed = self._compiled.remove_many(keys, False, 1)
        if removed != len(labels):
            raise BackendError(f"usearch removed {removed} of {len(labels)} labels")

    # ------------------------------------------------------------------ searching
    def _search(self, codes: np.ndarray, count: int, ef_search: int, exact: bool, threads: int) -> tuple[Any, ...]:
        """One ``search_many`` call at this ef: the index's expansion is changed, and read, under the lock."""
        with self._lock:
            if ef_search != self._ef and not exact:
                self._compiled.expansion_search = ef_search
                self._ef = ef_search
            return self._compiled.search_many(codes, count, exact, threads)

    def _raw_search(self, codes: np.ndarray, count: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Graph search for ``count`` results per row: ``(labels (m, count) int64, raw (m, count) float32)`` in
        usearch's units, label -1 where nothing was found. Rows the graph could not fill (removed nodes can
        strand some) are answered by usearch's exact scan, which skips removed keys too."""
        threads = pinned_pool_size() or 1
        keys, raw, counts, _, _ = self._search(codes, count, ef_search, False, threads)
        reachable = min(count, len(self._compiled))
        short = np.flatnonzero(counts < reachable)
        if len(short):
            keys_x, raw_x, counts_x, _, _ = self._search(codes[short], count, ef_search, True, threads)
            keys[short], raw[short], counts[short] = keys_x, raw_x, counts_x
        labels = keys.view(np.int64)
        missing = np.arange(count)[None, :] >= counts[:, None]
        labels[missing] = -1
        return labels, raw

    def _scores(self, raw: np.ndarray) -> np.ndarray:
        """usearch's raw distances in the library's convention (float32)."""
        if self._kind == "binary":
            return raw * self._hamming_scale
        metric = self.config.metric
        if metric == "euclidean":
            return from_squared_l2(raw)
        if metric == "dot_product":
            return raw - np.float32(1.0)
        return raw

    def _labels_of_rows(self) -> np.ndarray:
        """``arange(rows)`` for :func:`rerank` (rows are labels), grown by doubling rather than built per call."""
        rows = self._floats.count  # type: ignore[union-attr]
        if len(self._row_labels) < rows:
            self._row_labels = np.arange(max(rows, 2 * len(self._row_labels)), dtype=np.int64)
        return self._row_labels

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Graph search at this call's ef; with rerank, ``max(k, rerank)`` candidates re-scored exactly."""
        live = len(self._compiled)
        count = min(max(k, self.config.rerank), live) if self._floats is not None else min(k, live)
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        out_l = np.full((len(queries), k), -1, dtype=np.int64)
        if count == 0 or not len(queries):
            return out_d, out_l
        labels, raw = self._raw_search(self._codes(queries), count, ef_search)
        if self._floats is not None:
            prepared = prepare(queries, self.config.metric)
            return rerank(prepared, labels, self._floats.view, self._labels_of_rows(), self.config.metric, k)
        scores = self._scores(raw).astype(np.float32, copy=False)
        found = labels >= 0
        scores[~found] = np.inf
        if self._kind is not None:  # code distances tie often: ties go to the lower label, as on faiss
            for row in range(len(labels)):
                order = np.lexsort((labels[row], scores[row]))
                labels[row], scores[row] = labels[row, order], scores[row, order]
        out_d[:, :count] = scores
        out_l[:, :count] = np.where(np.isfinite(scores), labels, -1)
        return out_d, out_l

    def search_row(self, query: np.ndarray, k: int, ef_search: int) -> SearchRow | None:
        """The binding's ``search_many`` (1, k) arrays for one float query on one thread, and the conversion of
        its distances; None for quantized configs (their search encodes the query and may re-rank) and for a
        short result (k beyond the live count, or a graph that strands nodes), which :meth:`search` answers."""
        if self._kind is not None or self._floats is not None:
            return None
        with self._lock:
            if ef_search != self._ef:
                self._compiled.expansion_search = ef_search
                self._ef = ef_search
            keys, distances, counts, _, _ = self._compiled.search_many(query[None], k, False, 1)
        if counts.item(0) < k:
            return None
        return distances, keys, self._score_mode

    def direct_search(self, k: int, ef_search: int) -> Callable[[np.ndarray], object] | None:
        """The binding's ``search_many`` on one row and one thread, the index set to this ef first (under the
        lock, as a search at a new ef does); None for quantized configs, whose facade search also encodes the
        query and may re-rank."""
        if self._kind is not None or self._floats is not None:
            return None
        with self._lock:
            if ef_search != self._ef:
                self._compiled.expansion_search = ef_search
                self._ef = ef_search
        search_many = self._compiled.search_many
        return lambda q: search_many(q.reshape(1, -1), k, False, 1)

    def direct_search_batch(self, k: int, ef_search: int) -> Callable[[np.ndarray], object] | None:
        """The binding's ``search_many`` on a query matrix and one thread at this ef (float configs only)."""
        if self.direct_search(k, ef_search) is None:  # also sets the ef, under the lock
            return None
        search_many = self._compiled.search_many
        return lambda queries: search_many(queries, k, False, 1)

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """usearch's own serialization (rows, header, graph; removed nodes included), plus the float rows kept for
        rerank, in the library's checksummed container."""
        arrays = {"usearch": np.frombuffer(self._compiled.save_index_to_buffer(), dtype=np.uint8)}
        if self._floats is not None:
            arrays["vectors"] = self._floats.view
        meta = {"kind": self._kind, "dtype": self._dtype, "rerank": int(self.config.rerank),
                "usearch": usearch.__version__}
        return container.dumps(PAYLOAD_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> UsearchBackend:
        """Check the payload field by field (usearch's loader trusts it), load it, and make its live keys exactly
        the facade's labels (missing ones are corruption; extra ones are removed). With ``trust_native=False``
        usearch reads nothing of it: the graph is rebuilt from the live rows (floats or codes) parsed here."""
        cls.check_config(config)
        meta, arrays = container.loads(payload, PAYLOAD_KIND)
        kind = config.quantization.kind if config.quantization is not None else None
        dtype = "f32" if kind is None else SERVED_KINDS[kind]
        blob = arrays.get("usearch")
        if meta.get("kind") != kind or meta.get("dtype") != dtype or blob is None or blob.dtype != np.uint8 or (
                blob.ndim != 1):
            raise CorruptIndexError("usearch payload does not match the configured quantization")
        check_recorded_rerank(meta, config.rerank, "usearch")
        metric = MetricKind.Hamming if kind == "binary" else (
            MetricKind.Cos if kind == "scalar" else _FLOAT_METRICS[config.metric])
        keys, removed = check_serialized(blob, config, dtype, metric)
        live_keys = keys[~removed].view(np.int64)
        live_labels = np.asarray(live_labels, dtype=np.int64)
        if len(np.setdiff1d(live_labels, live_keys)):
            raise CorruptIndexError("usearch payload lacks some of the index's labels")
        floats = arrays.get("vectors")
        if config.rerank:
            top = int(max(live_keys.max(initial=-1), live_labels.max(initial=-1)))
            if floats is None or floats.dtype != np.float32 or floats.ndim != 2 or (
                    floats.shape[1] != config.dimensions or floats.shape[0] <= top):
                raise CorruptIndexError("usearch payload lacks the float rows its rerank needs")
        flaw = stored_row_flaw(floats) if floats is not None else None
        if flaw is not None:  # the insert rule: finite, with a finite float32 squared norm
            raise CorruptIndexError(f"usearch payload holds a float row no insert accepts: {flaw}")
        if not trust_native:
            return cls._rebuilt(config, blob, keys, removed, live_labels, floats)
        index = Index(ndim=config.dimensions, metric=metric, dtype=dtype, connectivity=config.m,
                      expansion_add=config.ef_construction, expansion_search=config.ef_search)
        try:
            index._compiled.load_index_from_buffer(blob)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise CorruptIndexError(f"usearch could not read the index payload: {exc}") from None
        if len(index) != len(live_keys):
            raise CorruptIndexError(f"usearch loaded {len(index)} vectors, its header says {len(live_keys)}")
        backend = cls(config, index)
        if backend._floats is not None:
            backend._floats.append(floats)  # type: ignore[arg-type]
        extra = np.setdiff1d(live_keys, live_labels)
        if len(extra):
            logger.debug("removing %d usearch keys the index no longer holds", len(extra))
            backend.remove(extra)
        return backend

    @classmethod
    def _rebuilt(cls, config: HnswConfig, blob: np.ndarray, keys: np.ndarray, removed: np.ndarray,
                 live_labels: np.ndarray, floats: np.ndarray | None) -> UsearchBackend:
        """A new index holding the facade's live rows, taken from the checked payload's row block (its
        ``u32 rows, u32 bytes per row`` head, then the rows as usearch stores them: f32, i8 codes or b1 bits)."""
        backend = cls(config)
        rows, cols = _MATRIX_HEAD.unpack_from(memoryview(np.ascontiguousarray(blob)), 0)
        stored = np.asarray(blob[_MATRIX_HEAD.size : _MATRIX_HEAD.size + rows * cols]).reshape(rows, cols)
        keep = ~removed & np.isin(keys.view(np.int64), np.asarray(live_labels, dtype=np.int64))
        if backend._dtype == "f32":
            data = stored[keep].copy().view("<f4")
        elif backend._dtype == "i8":
            data = stored[keep].view(np.int8).copy()
        else:
            data = stored[keep].copy()
        if keep.any():
            try:
                backend._compiled.add_many(np.ascontiguousarray(keys[keep]), np.ascontiguousarray(data), copy=True,
                                           threads=pinned_pool_size() or 1)
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise CorruptIndexError(f"usearch could not rebuild the index from its rows: {exc}") from None
        if backend._floats is not None:
            backend._floats.append(floats)  # type: ignore[arg-type]
        return backend

    def close(self) -> None:
        """Free usearch's memory now rather than at garbage collection."""
        index = self._index
        self._index = self._compiled = None  # type: ignore[assignment]
        if index is not None:
            index.reset()

    # ------------------------------------------------------------------ reporting
    def stats_extra(self) -> dict[str, Any]:
        """For quantized configs: code bytes per vector (usearch's row size), float bytes kept, measured payload."""
        if self._kind is None:
            return {}
        return memory_stats(
            self._kind, self.config.dimensions, _bytes_per_row(self._dtype, self.config.dimensions),
            self._floats is not None, self.config.rerank, payload_bytes=len(self.to_bytes()),
            count=len(self._compiled), index=f"usearch {self._dtype} {self._metric.name}",
        )


def check_serialized(blob: np.ndarray, config: HnswConfig, dtype: str, metric: MetricKind) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """Check usearch's serialized index (``save_index_to_buffer`` output) against ``config`` before usearch reads
    it, and return ``(keys (n,) uint64, removed (n,) bool)`` of its nodes.

    usearch's loader checks the magic, the major version, the key and slot types, the entry slot and the levels'
    count, but reads neighbour slots, node levels and vector counts as they come: a bad slot makes a later search
    read outside the node array. Everything it trusts is checked here; any mismatch raises
    :class:`CorruptIndexError`.
    """
    data = blob.tobytes() if not blob.flags.c_contiguous else memoryview(blob)
    total = len(blob)
    d, m = config.dimensions, config.m
    row_bytes = _bytes_per_row(dtype, d)
    fixed = _MATRIX_HEAD.size + _DENSE_HEAD_BYTES + _GRAPH_HEAD.size
    if total < fixed:
        raise CorruptIndexError(f"usearch payload is truncated ({total} bytes)")
    rows, cols = _MATRIX_HEAD.unpack_from(data, 0)
    vectors_end = _MATRIX_HEAD.size + rows * cols
    if cols != row_bytes or vectors_end + _DENSE_HEAD_BYTES + _GRAPH_HEAD.size > total:
        raise CorruptIndexError(f"usearch payload holds {rows} rows of {cols} bytes, expected rows of {row_bytes}")
    (magic, major, _minor, _patch, kind_metric, kind_scalar, kind_key, kind_slot, present, deleted, dimensions,
     multi) = _DENSE_HEAD.unpack_from(data, vectors_end)
    if magic != b"usearch" or major != VERSION_MAJOR:
        raise CorruptIndexError(f"not a usearch {VERSION_MAJOR}.x index (magic {magic!r}, major version {major})")
    if (kind_metric, kind_scalar, kind_key, kind_slot) != (
            metric.value, _SCALAR_KINDS[dtype].value, ScalarKind.U64.value, ScalarKind.U32.value):
        raise CorruptIndexError("usearch payload's metric, scalar, key or slot kind does not match the config")
    if dimensions != d or multi or present + deleted != rows:
        raise CorruptIndexError("usearch payload's dimensions or vector counts do not match")
    graph_at = vectors_end + _DENSE_HEAD_BYTES
    size, connectivity, connectivity_base, max_level, entry = _GRAPH_HEAD.unpack_from(data, graph_at)
    if size != rows or connectivity != m or connectivity_base != 2 * m:
        raise CorruptIndexError(f"usearch graph holds {size} nodes of connectivity {connectivity}/{connectivity_base}, "
                                f"expected {rows} of {m}/{2 * m}")
    levels_at = graph_at + _GRAPH_HEAD.size
    if size == 0:
        if levels_at != total:
            raise CorruptIndexError("usearch payload of an empty index has trailing bytes")
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=bool)
    tape_at = levels_at + 2 * size
    if tape_at > total or entry >= size:
        raise CorruptIndexError("usearch payload is truncated or its entry point lies outside the graph")
    levels = np.frombuffer(data, dtype="<i2", count=size, offset=levels_at).astype(np.int64)
    if levels.min() < 0 or levels.max() > max_level or levels[entry] != max_level:
        raise CorruptIndexError("usearch payload's node levels do not agree with its top level and entry point")
    flaw = stored_row_flaw(np.frombuffer(data, dtype="<f4", count=rows * d, offset=8).reshape(rows, d)) if (
        dtype == "f32") else None
    if flaw is not None:  # the insert rule: finite, with a finite float32 squared norm
        raise CorruptIndexError(f"usearch payload holds a vector no insert accepts (non-finite): {flaw}")
    level0 = _NODE_HEAD + _COUNT + connectivity_base * _SLOT
    upper = _COUNT + connectivity * _SLOT
    node_bytes = level0 + levels * upper
    ends = np.cumsum(node_bytes)
    if tape_at + int(ends[-1]) != total:
        raise CorruptIndexError(f"usearch payload is {total} bytes, its graph needs {tape_at + int(ends[-1])}")
    offsets = tape_at + ends - node_bytes
    keys = np.empty(size, dtype=np.uint64)
    for start in range(0, size, _CHECK_CHUNK):
        stop = min(start + _CHECK_CHUNK, size)
        nodes = blob[offsets[start:stop, None] + np.arange(level0)]
        keys[start:stop] = nodes[:, :8].copy().view("<u8")[:, 0]
        if not np.array_equal(nodes[:, 8:10].copy().view("<i2")[:, 0], levels[start:stop]):
            raise CorruptIndexError("usearch payload's node levels disagree with its level table")
        _check_links(nodes[:, _NODE_HEAD:], connectivity_base, levels, 0)
    for level in range(1, int(max_level) + 1):
        at = offsets[levels >= level] + level0 + (level - 1) * upper
        for start in range(0, len(at), _CHECK_CHUNK):
            _check_links(blob[at[start:start + _CHECK_CHUNK, None] + np.arange(upper)], connectivity, levels, level)
    removed = keys == _FREE_KEY
    live = keys[~removed]
    if int(removed.sum()) != deleted or len(np.unique(live)) != len(live) or (live >= np.uint64(1 << 63)).any():
        raise CorruptIndexError("usearch payload's node keys do not match its counts, or repeat")
    return keys, removed


def _check_links(lists: np.ndarray, capacity: int, levels: np.ndarray, level: int) -> None:
    """``lists`` (nodes, 4 + 4 * capacity) uint8, the neighbour lists of some nodes on ``level``: a u32 count then
    u32 slots. Every count must fit, and every listed slot must be a node that has this level (a search on level
    L reads the neighbours' level-L lists, which a lower node's tape does not hold)."""
    counts = lists[:, :_COUNT].copy().view("<u4")[:, 0]
    if (counts > capacity).any():
        raise CorruptIndexError("usearch payload lists more neighbours than a node holds")
    slots = lists[:, _COUNT:].copy().view("<u4")[np.arange(capacity)[None, :] < counts[:, None]]
    if (slots >= len(levels)).any():
        raise CorruptIndexError("usearch payload links to nodes that do not exist")
    if level and (levels[slots] < level).any():
        raise CorruptIndexError(f"usearch payload links nodes on level {level} to nodes below it")
