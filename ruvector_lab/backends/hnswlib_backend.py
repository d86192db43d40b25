"""Native tier: hnswlib.

hnswlib's spaces map onto the library's metrics: ``cosine`` gives ``1 - cos`` already, ``l2`` gives squared
L2 (the score is its square root), ``ip`` gives ``1 - dot`` (the score is ``dot``'s negative). Deletes use
``mark_deleted``; the index grows by ``resize_index`` (doubling), so inserts never hit a capacity wall.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import hnswlib
import numpy as np

from .._rwlock import ReadWriteLock
from ..distances import cosine_from_dots, from_squared_l2, squared_l2_to_rows
from ..errors import CorruptIndexError
from ..fastpath import SCORE_MINUS_ONE, SCORE_SAME, SCORE_SQRT
from ..pools import pinned_pool_size
from ..types import HnswConfig
from . import hnswlib_format
from .base import IndexBackend, MemoryLayout, SearchRow, dump_native, load_native
from .layout import MALLOC_OVERHEAD, PY_INT, SET_PER_ITEM, expected_upper_levels

_SPACES = {"cosine": "cosine", "euclidean": "l2", "dot_product": "ip"}
#: hnswlib's distances to the facade's scores: cosine is 1 - cos already, l2 is squared, ip is 1 - dot
_SCORE_MODES = {"cosine": SCORE_SAME, "euclidean": SCORE_SQRT, "dot_product": SCORE_MINUS_ONE}
_INITIAL_CAPACITY = 1024
#: container kind of the persisted index: hnswlib's file beside the metric
PAYLOAD_KIND = "hnswlib-backend"
# hnswlib/hnswalg.h (HierarchicalNSW): std::mutex = 40 bytes (glibc x86-64), MAX_LABEL_OPERATION_LOCKS = 65536;
# label_lookup_ (std::unordered_map<labeltype, tableint>) costs a 24-byte node (next, key, value) in a 32-byte
# malloc chunk plus about one 8-byte bucket pointer per element (max_load_factor 1)
_MUTEX = 40
_LABEL_LOCKS = 65536
_LABEL_LOOKUP = 32 + 8


class HnswlibBackend(IndexBackend):
    """hnswlib.Index with mark_deleted and growth by resize."""

    name = "hnswlib"
    graph = "hnsw"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """hnswlib's level-0 block, upper-level link lists, label map and locks (hnswalg.h)."""
        m = config.m
        # size_links_level0_ = maxM0_ * sizeof(tableint) + sizeof(linklistsizeint), maxM0_ = 2M, inside
        # data_level0_memory_ (size_data_per_element_ = size_links_level0_ + data_size_ + labeltype); a node above
        # level 0 has one malloc'd block of size_links_per_element_ (= M*4 + 4) per upper level; linkLists_ holds
        # an 8-byte pointer and element_levels_ a 4-byte int per element.
        level0 = 2 * m * 4 + 4
        upper_lists = (m * 4 + 4) * expected_upper_levels(m) + MALLOC_OVERHEAD / m  # P(level > 0) = 1/M
        # the label stored in each element, label_lookup_, and this backend's Python ``_live`` set of ints
        ids = 8 + _LABEL_LOOKUP + SET_PER_ITEM + PY_INT
        # link_list_locks_ (one std::mutex per element) and the visited-list pool (one unsigned short per element)
        return MemoryLayout(vectors=4.0 * config.dimensions, graph=level0 + upper_lists + 8 + 4, ids=ids,
                            other=_MUTEX + 2, fixed=_LABEL_LOCKS * _MUTEX)

    def __init__(self, config: HnswConfig, index: hnswlib.Index | None = None) -> None:
        super().__init__(config)
        if index is None:
            index = hnswlib.Index(space=_SPACES[config.metric], dim=config.dimensions)
            index.init_index(max_elements=_INITIAL_CAPACITY, ef_construction=config.ef_construction, M=config.m)
            index.set_ef(config.ef_search)
        index.set_num_threads(1)
        self._index = index
        self._live: set[int] = set(int(label) for label in index.get_ids_list()) if index.element_count else set()
        self._ef = index.ef
        self._score_mode = _SCORE_MODES[config.metric]
        self._ef_lock = ReadWriteLock()
        self._ef_generation = 0

    @property
    def index(self) -> hnswlib.Index:
        """The underlying hnswlib index (for direct comparisons in benchmarks)."""
        return self._index

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert, doubling the capacity first when the new rows would not fit."""
        needed = self._index.element_count + len(labels)
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, 2 * capacity))
        # hnswlib's own pool: 1 thread unless the caller pinned library pools (ruvector_lab.pools) to more
        self._index.add_items(vectors, labels, num_threads=pinned_pool_size() or 1)
        self._live.update(labels.tolist())

    def remove(self, labels: np.ndarray) -> None:
        """mark_deleted: the node stays in the graph for routing but is never returned."""
        for label in labels.tolist():
            self._index.mark_deleted(label)
        self._live.difference_update(labels.tolist())

    def _convert(self, distances: np.ndarray) -> np.ndarray:
        metric = self.config.metric
        if metric == "euclidean":
            return from_squared_l2(distances)
        if metric == "dot_product":
            return distances - 1.0
        return distances

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """knn_query with this call's ef; with many deletions hnswlib may find fewer than k, so retry wider."""
        ef = max(ef_search, k)
        while True:
            # queries at the current ef share the lock (knn_query releases the GIL, so they run in parallel);
            # changing ef takes it alone, since set_ef changes state every query reads
            with self._ef_lock.read:
                if ef == self._ef:
                    try:
                        labels, distances = self._index.knn_query(queries, k=k,
                                                                  num_threads=pinned_pool_size() or 1)
                    except RuntimeError:
                        labels, distances = self._search_per_query(queries, k)
                    break
            self._use_ef(ef)
        return self._convert(distances).astype(np.float32, copy=False), labels.astype(np.int64, copy=False)

    def _use_ef(self, ef: int) -> None:
        """Set the index's ef alone (set_ef changes state every query reads)."""
        with self._ef_lock.write:
            if ef != self._ef:
                self._ef_generation += 1  # odd while changing: lock-free readers step aside
                self._index.set_ef(ef)
                self._ef = ef
                self._ef_generation += 1

    def search_row(self, query: np.ndarray, k: int, ef_search: int) -> SearchRow | None:
        """knn_query's own (1, k) arrays for one query, on one thread, and the conversion of its distances.

        Lock-free when the index already runs at this ef: the ef generation is read before and after the
        query (a seqlock), and a query that overlapped an ef change gets None (the caller's locked path redoes
        it), as do another ef and a graph that cannot reach k nodes (knn_query raises).
        """
        generation = self._ef_generation
        if (ef_search if ef_search > k else k) != self._ef or generation & 1:
            return None
        try:
            labels, distances = self._index.knn_query(query, k=k, num_threads=1)
        except RuntimeError:
            return None
        if self._ef_generation != generation:
            return None
        return distances, labels, self._score_mode

    def _search_per_query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Fallback when the graph cannot reach k live nodes for some row (deletions can strand nodes):
        those rows are answered exactly from the stored vectors, in hnswlib's own distance units."""
        out_l = np.full((len(queries), k), -1, dtype=np.int64)
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        exact: tuple[np.ndarray, np.ndarray] | None = None
        for row, q in enumerate(queries):
            try:
                labels, distances = self._index.knn_query(q, k=k, num_threads=1)
                out_l[row], out_d[row] = labels[0], distances[0]
                continue
            except RuntimeError:
                pass
            if exact is None:
                live = np.asarray(sorted(self._live), dtype=np.int64)
                exact = live, np.asarray(self._index.get_items(live), dtype=np.float32)
            live, vectors = exact
            dist = self._space_distances(q, vectors)
            order = np.argsort(dist, kind="stable")[:k]
            out_l[row, : len(order)], out_d[row, : len(order)] = live[order], dist[order]
        return out_l, out_d

    def _space_distances(self, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Distances as hnswlib reports them for its space (squared l2, 1-cos, 1-ip)."""
        space = _SPACES[self.config.metric]
        if space == "l2":
            return squared_l2_to_rows(query, vectors)
        dots = vectors @ query
        if space == "cosine":
            norms = np.linalg.norm(vectors, axis=1)
            return cosine_from_dots(dots[None, :], np.linalg.norm(query, keepdims=True), norms)[0]
        return 1.0 - dots

    def direct_search(self, k: int, ef_search: int) -> Callable[[np.ndarray], object]:
        """hnswlib's ``knn_query`` on one thread, the index set to the facade's ef first (through the same
        locked path a search at a new ef takes)."""
        self._use_ef(max(ef_search, k))
        lib = self._index
        return lambda q: lib.knn_query(q, k=k, num_threads=1)

    def direct_search_batch(self, k: int, ef_search: int) -> Callable[[np.ndarray], object]:
        """hnswlib's ``knn_query`` on a query matrix, one thread, at the facade's ef."""
        self._use_ef(max(ef_search, k))
        lib = self._index
        return lambda queries: lib.knn_query(queries, k=k, num_threads=1)

    def to_bytes(self) -> bytes:
        """hnswlib's own file format (written through a temporary file: it only writes to paths), beside the
        metric (:func:`~.base.dump_native`: the file cannot tell ``l2`` from ``ip``)."""
        fd, path = tempfile.mkstemp(suffix=".hnswlib")
        os.close(fd)
        try:
            self._index.save_index(path)
            with open(path, "rb") as handle:
                return dump_native(PAYLOAD_KIND, handle.read(), self.config.metric)
        finally:
            os.unlink(path)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> HnswlibBackend:
        """Check the file field by field (:mod:`.hnswlib_format`), then load the graph, deletion marks included.

        hnswlib's file loader trusts every header field and link, and only reads paths; so the checked file is
        handed to hnswlib as in-memory state instead (its ``Index(params)`` constructor, which copies arrays into
        an index sized from the configuration, never from the file), and no temporary file exists. With
        ``trust_native=False`` hnswlib reads nothing of the payload: the graph is rebuilt from the live vectors.
        """
        parsed = hnswlib_format.parse(load_native(PAYLOAD_KIND, payload, config), config)
        hnswlib_format.check_labels(parsed, live_labels)
        if not trust_native:
            backend = cls(config)
            labels, vectors = parsed.live()
            if len(labels):
                backend.add(labels, vectors)
            return backend
        # capacity from the content, not the file's max_elements_ (which sizes an allocation); add() grows it
        capacity = max(parsed.count, min(parsed.max_elements, max(_INITIAL_CAPACITY, 2 * parsed.count)))
        state = hnswlib_format.index_state(parsed, _SPACES[config.metric], config.ef_search, capacity)
        try:
            index = hnswlib.Index(state)
        except (RuntimeError, MemoryError, ValueError, TypeError) as exc:
            raise CorruptIndexError(f"hnswlib could not rebuild the checked index payload: {exc}") from None
        index.set_ef(config.ef_search)
        backend = cls(config, index)
        backend._live = set(live_labels.tolist())
        return backend

    def close(self) -> None:
        """Drop the hnswlib index so its memory is freed now."""
        self._index = None  # type: ignore[assignment]

