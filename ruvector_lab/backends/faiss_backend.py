"""Native tier: faiss ``IndexHNSWFlat``.

Cosine runs as inner product on unit vectors, dot_product as raw inner product, euclidean as L2 (faiss
returns squared L2; the score is its square root). faiss HNSW cannot drop nodes, so deletes are held in an
``IDSelectorBitmap`` of live labels that every search passes to the graph walk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import faiss
import numpy as np

from ..distances import cosine_from_dots, from_dots, from_squared_l2
from ..errors import BackendError, CorruptIndexError
from ..fastpath import SCORE_NEGATE, SCORE_ONE_MINUS, SCORE_SQRT
from ..types import HnswConfig
from . import faiss_format
from .base import IndexBackend, MemoryLayout, SearchRow, dump_native, load_native
from .faiss_common import LIVE_FLAG_BYTES, LiveBitmap, graph_bytes_per_node

#: container kind of the persisted index: faiss' serialization beside the metric
PAYLOAD_KIND = "faiss-backend"


def _distance_kernel(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """faiss' SIMD kernels (``fvec_L2sqr_ny``, ``fvec_inner_products_ny``): exact differences, no expansion;
    finished into scores by the library's conventions (:mod:`ruvector_lab.distances`)."""
    m, n, d = len(queries), len(vectors), vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    kernel = faiss.fvec_L2sqr_ny if metric == "euclidean" else faiss.fvec_inner_products_ny
    for row in range(m):
        q = np.ascontiguousarray(queries[row], dtype=np.float32)
        kernel(faiss.swig_ptr(out[row]), faiss.swig_ptr(q), faiss.swig_ptr(vectors), d, n)
    if metric == "euclidean":
        return from_squared_l2(out)
    if metric == "dot_product":
        return from_dots(out, metric)
    return cosine_from_dots(out, np.linalg.norm(queries, axis=1), np.linalg.norm(vectors, axis=1))


#: faiss' distances to the facade's scores: squared L2, or inner products (of unit rows under cosine)
_SCORE_MODES = {"cosine": SCORE_ONE_MINUS, "euclidean": SCORE_SQRT, "dot_product": SCORE_NEGATE}


class FaissBackend(LiveBitmap, IndexBackend):
    """faiss IndexHNSWFlat with a live-label bitmap for deletes."""

    name = "faiss"
    graph = "hnsw"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """float32 rows, faiss' HNSW links and the live bitmap's flag."""
        return MemoryLayout(vectors=4.0 * config.dimensions, graph=graph_bytes_per_node(config.m),
                            other=LIVE_FLAG_BYTES)
    distance_kernel = staticmethod(_distance_kernel)

    def __init__(self, config: HnswConfig, index: faiss.Index | None = None) -> None:
        super().__init__(config)
        faiss_metric = faiss.METRIC_L2 if config.metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        if index is None:
            index = faiss.IndexHNSWFlat(config.dimensions, config.m, faiss_metric)
            index.hnsw.efConstruction = config.ef_construction
            index.hnsw.efSearch = config.ef_search
        self._index = index
        self._live = np.zeros(max(64, index.ntotal), dtype=bool)
        self._live[: index.ntotal] = True
        self._n_dead = 0
        self._selector: faiss.IDSelector | None = None
        self._bitmap: np.ndarray | None = None
        self._params_cache: tuple[int, object, faiss.SearchParametersHNSW] | None = None
        self._score_mode = _SCORE_MODES[config.metric]

    @property
    def index(self) -> faiss.Index:
        """The underlying faiss index (for direct comparisons in benchmarks)."""
        return self._index

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        if self.config.metric == "cosine":
            # faiss' own normalisation on a copy (one C pass, zero rows left zero), as a faiss user does it
            unit = np.array(vectors, dtype=np.float32, order="C", copy=True)
            faiss.normalize_L2(unit)
            return unit
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append to the graph; faiss numbers rows 0..ntotal-1, which are exactly the facade's labels."""
        if len(labels) and int(labels[0]) != self._index.ntotal:
            raise BackendError(f"faiss labels must continue at {self._index.ntotal}, got {int(labels[0])}")
        self._index.add(self._prepare(vectors))
        needed = self._index.ntotal
        if needed > len(self._live):
            grown = np.zeros(max(needed, 2 * len(self._live)), dtype=bool)
            grown[: len(self._live)] = self._live
            self._live = grown
        self._live[labels] = True
        self._refresh_selector()

    def _live_view(self) -> np.ndarray:
        return self._live[: self._index.ntotal]  # the array grows by doubling, ahead of the index

    def _params(self, ef_search: int) -> faiss.SearchParametersHNSW:
        # one parameter object per (ef, selector): building a SWIG object per query costs microseconds
        cached = self._params_cache
        if cached is not None and cached[0] == ef_search and cached[1] is self._selector:
            return cached[2]
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef_search
        if self._selector is not None:
            params.sel = self._selector
        self._params_cache = (ef_search, self._selector, params)
        return params

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Graph search with this call's efSearch (at least k) and the live-label selector."""
        params = self._params(max(ef_search, k))
        prepared = self._prepare(queries)
        distances, labels = self._index.search(prepared, k, params=params)
        short = np.flatnonzero(labels[:, -1] < 0)
        if len(short):
            # the graph could not reach k live nodes (HNSW graphs can strand a few); the facade only asks
            # for k <= live count, so those rows are answered exactly from the stored vectors instead
            flat_params = faiss.SearchParameters()
            if self._selector is not None:
                flat_params.sel = self._selector
            distances[short], labels[short] = self._index.storage.search(prepared[short], k, params=flat_params)
        metric = self.config.metric  # faiss returns squared L2, or inner products (of unit rows under cosine)
        if metric == "cosine":  # 1 - dot, in place: faiss' output array is ours
            scores = np.subtract(np.float32(1.0), distances, out=distances)
        else:
            scores = from_squared_l2(distances) if metric == "euclidean" else from_dots(distances, metric)
            scores = scores.astype(np.float32, copy=False)
        if len(short):  # only a short row can hold padding (label -1)
            scores[labels < 0] = np.inf
        return scores, labels.astype(np.int64, copy=False)

    def search_row(self, query: np.ndarray, k: int, ef_search: int) -> SearchRow | None:
        """faiss' own (1, k) arrays for one query (normalised first under cosine, as :meth:`search` does) and
        the conversion of its distances (squared L2, or inner products)."""
        if self.config.metric == "cosine":
            query = query * np.float32(1.0 / math.sqrt(float(query.dot(query))))
        distances, labels = self._index.search(query.reshape(1, -1), k, params=self._params(max(ef_search, k)))
        return distances, labels, self._score_mode

    def direct_search(self, k: int, ef_search: int) -> Callable[[np.ndarray], object]:
        """faiss' ``search`` with the facade's parameters (efSearch = max(ef, k), the live selector), the
        query normalised first under cosine as the facade does."""
        lib, params = self._index, self._params(max(ef_search, k))
        if self.config.metric == "cosine":
            return lambda q: lib.search((q / np.linalg.norm(q)).reshape(1, -1), k, params=params)
        return lambda q: lib.search(q.reshape(1, -1), k, params=params)

    def direct_search_batch(self, k: int, ef_search: int) -> Callable[[np.ndarray], object]:
        """faiss' ``search`` on a query matrix with the facade's parameters; under cosine the rows are first
        normalised by faiss' own ``normalize_L2`` on a copy, as a faiss user would."""
        lib, params = self._index, self._params(max(ef_search, k))
        if self.config.metric == "cosine":

            def search(queries: np.ndarray) -> object:
                unit = queries.copy()
                faiss.normalize_L2(unit)
                return lib.search(unit, k, params=params)

            return search
        return lambda queries: lib.search(queries, k, params=params)

    def to_bytes(self) -> bytes:
        """faiss' own serialization of the graph and vectors (dead nodes included: they route searches), beside
        the metric (:func:`~.base.dump_native`: faiss records inner product for both cosine and dot_product)."""
        return dump_native(PAYLOAD_KIND, faiss.serialize_index(self._index).tobytes(), self.config.metric)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> FaissBackend:
        """Check the payload (:mod:`.faiss_format`: type, metric, dimensions, every length field, the graph,
        finite and, under cosine, unit vectors), load it with faiss, then mark every label the facade does not
        hold as dead. With ``trust_native=False`` faiss reads nothing of it: the graph is rebuilt from the stored
        rows (dead ones included, so rows stay the facade's labels)."""
        payload = load_native(PAYLOAD_KIND, payload, config)
        faiss_metric = faiss.METRIC_L2 if config.metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        parsed = faiss_format.parse_index(
            payload, fourcc=b"IHNf", d=config.dimensions, metric=int(faiss_metric), m=config.m,
            ef_construction=config.ef_construction, unit_vectors=config.metric == "cosine")
        if len(live_labels) and (live_labels.min() < 0 or live_labels.max() >= parsed.ntotal):
            raise CorruptIndexError("live labels lie outside the faiss index")
        if trust_native:
            try:
                index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8).copy())
            except RuntimeError as exc:
                raise CorruptIndexError(f"faiss could not read the index payload: {exc}") from None
            if index.d != config.dimensions or not isinstance(index, faiss.IndexHNSWFlat):
                raise CorruptIndexError("faiss payload does not match the configured dimensions or index type")
            backend = cls(config, index)
        else:
            backend = cls(config)
            if parsed.ntotal:
                backend.add(np.arange(parsed.ntotal, dtype=np.int64), np.array(parsed.parts["vectors"]))
            index = backend.index
        dead = np.setdiff1d(np.arange(index.ntotal, dtype=np.int64), live_labels)
        if len(dead):
            backend.remove(dead)
        return backend

    def close(self) -> None:
        """Drop the faiss index so its memory is freed now rather than at garbage collection."""
        self._index = None  # type: ignore[assignment]
        self._selector = None
