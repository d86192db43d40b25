"""Native tier: the ``ruvector`` PyPI package's ``HnswIndex`` (RuVector's own Rust HNSW).

Its metric names and score conventions match the library's (cosine ``1 - cos``, euclidean L2, dot_product
``-dot``). It keys vectors by string, so labels travel as their decimal strings. It has no persistence of its
own beyond ``export_items``: serialization stores the live vectors and deserialization rebuilds the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from operator import itemgetter

import numpy as np
import ruvector

from ..errors import BackendError
from ..fastpath import ROW_PAIRS, hotpath
from ..types import HnswConfig
from .base import IndexBackend, MemoryLayout, SearchRow, dump_rows, load_rows
from .layout import MALLOC_OVERHEAD, expected_upper_levels

_PAYLOAD = "ruvector-backend"
_METRICS = {"cosine": "cosine", "euclidean": "euclidean", "dot_product": "dot_product"}
_FLOAT_COPIES = 3
_first, _second = itemgetter(0), itemgetter(1)  # a hit is (id, score, metadata)


class RuvectorBackend(IndexBackend):
    """ruvector.HnswIndex with per-query ef_search."""

    name = "ruvector"
    graph = "hnsw"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """An estimate from RuVector's sources (crates/ruvector-core/src/index/hnsw.rs over the vendored
        patches/hnsw_rs/src/hnsw.rs); the Python binding's own source is not published, so this is not exact."""
        m = config.m
        # three float copies of each vector (ruvector-core's VectorDB storage map, HnswIndex.vectors and hnsw_rs's
        # Point data: three Vec<f32>, 16 bytes of malloc chunk each); measured RSS grows by 12 bytes per dimension
        # and vector, which agrees
        vectors = _FLOAT_COPIES * (4.0 * config.dimensions + MALLOC_OVERHEAD)
        # hnsw_rs: every link is an Arc<PointWithOrder> (an 8-byte pointer in a Vec, plus a 32-byte ArcInner in a
        # 48-byte malloc chunk), counted here at the caps of 2M links on level 0 and M per upper level: hnsw_rs's
        # neighbour-selection heuristic usually keeps fewer, so this over-states (20k x 64 random vectors, M=16:
        # measured growth ~0.4x of the total). Per node: an Arc<Point> (~80), an Arc<RwLock<Vec<..>>> (~64) and
        # its table of 16 per-layer Vec headers (16 * 24 -> ~400), the level-0 list's chunk (~16) and a
        # points_by_layer slot (8).
        graph = (2 * m + m * expected_upper_levels(m)) * (8 + 48) + 80 + 64 + 400 + 16 + 8
        # the id String (24-byte header + a >= 32-byte heap chunk) in the VectorDB's storage map, HnswIndex.vectors,
        # id_to_idx and idx_to_id (DashMaps: hashbrown tables at <= 7/8 load, growing x2: ~1.5 slots per item of
        # 48, 48, 32 and 32 bytes, one control byte each)
        ids = 4 * (24 + 32) + 1.5 * (48 + 48 + 32 + 32 + 4)
        return MemoryLayout(vectors=vectors, graph=graph, ids=ids)

    def __init__(self, config: HnswConfig) -> None:
        super().__init__(config)
        self._index = ruvector.HnswIndex.create(
            config.dimensions,
            metric=_METRICS[config.metric],
            m=config.m,
            ef_construction=config.ef_construction,
            ef_search=config.ef_search,
        )
        self._stored = 0  # graph nodes, deleted ones included
        self._dead = 0

    @property
    def index(self) -> ruvector.HnswIndex:
        """The underlying ruvector index (for direct comparisons in benchmarks)."""
        return self._index

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """insert_batch under the labels' decimal strings (the Rust side releases the GIL)."""
        try:
            self._index.insert_batch([str(label) for label in labels.tolist()], np.ascontiguousarray(vectors))
        except ruvector.RuVectorError as exc:
            raise BackendError(f"ruvector insert failed: {exc}") from None
        self._stored += len(labels)

    def remove(self, labels: np.ndarray) -> None:
        """Real delete in ruvector (the graph node stays until a rebuild, as its docs say)."""
        for label in labels.tolist():
            self._index.delete(str(label))
        self._dead += len(labels)

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """One Rust search per query with this call's ef_search.

        ruvector drops deleted ids after the graph search, so with deletions it is asked for up to
        ``k + deleted`` candidates to still return ``k`` live ones.
        """
        fetch = min(k + self._dead, self._stored) if self._dead else k
        ef = max(ef_search, fetch)
        search = self._index.search
        rows = [search(q, fetch, ef_search=ef) for q in queries]
        # the common case, every row full: read in C where the hot path is built, else two array conversions
        # instead of an element-wise fill
        if hotpath is not None and (arrays := hotpath.pairs_rows(rows, k)) is not None:
            return arrays
        rows = [row[:k] for row in rows]
        if rows and min(map(len, rows)) == k:
            hits = list(chain.from_iterable(rows))
            # ids come back as strings: parsed in C (map), as are the scores
            labels = np.fromiter(map(int, map(_first, hits)), dtype=np.int64, count=len(hits))
            scores = np.fromiter(map(_second, hits), dtype=np.float32, count=len(hits))
            return scores.reshape(len(rows), k), labels.reshape(len(rows), k)
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        out_l = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(rows):
            for col, (label, score, _meta) in enumerate(hits):
                out_l[row, col] = int(label)
                out_d[row, col] = score
        return out_d, out_l

    def search_row(self, query: np.ndarray, k: int, ef_search: int) -> SearchRow | None:
        """One Rust search: its list of (label string, score, metadata) tuples, of which the first ``k`` are
        the answer (more are fetched after deletions, which ruvector drops after the graph search)."""
        fetch = min(k + self._dead, self._stored) if self._dead else k
        return self._index.search(query, fetch, ef_search=max(ef_search, fetch)), k, ROW_PAIRS

    def search_one(self, query: np.ndarray, k: int, ef_search: int) -> tuple[list[float], list[int]]:
        """:meth:`search_row`'s tuples as the two lists."""
        hits = self.search_row(query, k, ef_search)[0][:k]
        if not hits:
            return [], []
        labels, scores, _ = zip(*hits, strict=True)
        return list(scores), list(map(int, labels))

    def direct_search(self, k: int, ef_search: int) -> Callable[[np.ndarray], object]:
        """ruvector's ``search`` with the facade's ef (no deletes to over-fetch for in a fresh index)."""
        lib, ef = self._index, max(ef_search, k)
        return lambda q: lib.search(q, k, ef_search=ef)

    def direct_search_batch(self, k: int, ef_search: int) -> Callable[[np.ndarray], object]:
        """ruvector's ``search`` row by row (its binding has no batch call), at the facade's ef."""
        lib, ef = self._index, max(ef_search, k)
        return lambda queries: [lib.search(q, k, ef_search=ef) for q in queries]

    def to_bytes(self) -> bytes:
        """The live labels and vectors as ruvector exports them."""
        items = self._index.export_items()
        labels = np.array([int(label) for label, _v, _m in items], dtype=np.int64)
        vectors = (
            np.stack([np.asarray(v, dtype=np.float32) for _l, v, _m in items])
            if items
            else np.empty((0, self.config.dimensions), dtype=np.float32)
        )
        order = np.argsort(labels, kind="stable")  # insertion order, so a rebuild is deterministic
        return dump_rows(_PAYLOAD, labels[order], vectors[order], self.config.metric)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> RuvectorBackend:
        """Rebuild the graph from the stored vectors (ruvector has no graph serialization, so ``trust_native``
        changes nothing: no native reader ever sees the payload)."""
        labels, vectors = load_rows(_PAYLOAD, payload, config, live_labels)
        backend = cls(config)
        if len(labels):
            backend.add(labels, vectors)
        return backend
