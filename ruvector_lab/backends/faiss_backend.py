"""Native tier: faiss ``IndexHNSWFlat``.

Cosine runs as inner product on unit vectors, dot_product as raw inner product, euclidean as L2 (faiss
returns squared L2; the score is its square root). faiss HNSW cannot drop nodes, so deletes are held in an
``IDSelectorBitmap`` of live labels that every search passes to the graph walk.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from ..errors import BackendError, CorruptIndexError
from ..types import HnswConfig
from .base import IndexBackend


def _distance_kernel(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """faiss' SIMD kernels (``fvec_L2sqr_ny``, ``fvec_inner_products_ny``): exact differences, no expansion."""
    m, n, d = len(queries), len(vectors), vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    kernel = faiss.fvec_L2sqr_ny if metric == "euclidean" else faiss.fvec_inner_products_ny
    for row in range(m):
        q = np.ascontiguousarray(queries[row], dtype=np.float32)
        kernel(faiss.swig_ptr(out[row]), faiss.swig_ptr(q), faiss.swig_ptr(vectors), d, n)
    if metric == "euclidean":
        return np.sqrt(out, out=out)
    if metric == "dot_product":
        return np.negative(out, out=out)
    qn = np.linalg.norm(queries, axis=1, keepdims=True)
    vn = np.linalg.norm(vectors, axis=1)
    return (1.0 - out / (qn * vn)).astype(np.float32, copy=False)


def live_selector(live: np.ndarray) -> tuple[np.ndarray, faiss.IDSelector]:
    """A faiss selector that passes the labels whose entry in ``live`` is true, with the bitmap it reads
    (keep both alive together: the selector holds a raw pointer into the bitmap)."""
    bitmap = np.packbits(live, bitorder="little")  # faiss reads bit i of byte i//8, least significant bit first
    return bitmap, faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bitmap))


class LiveBitmap:
    """Deletes for faiss indexes, which cannot drop graph nodes: a live bitmap every search passes as its selector.

    The class using it keeps ``_live`` (bool per label), ``_n_dead``, ``_selector`` and ``_bitmap``.
    """

    _live: np.ndarray
    _n_dead: int

    def _live_view(self) -> np.ndarray:
        """The live flags of the labels the index holds."""
        return self._live

    def remove(self, labels: np.ndarray) -> None:
        """Mark labels dead in the bitmap; the graph keeps the nodes as routing points."""
        self._live[labels] = False
        self._n_dead += len(labels)
        self._refresh_selector()

    def _refresh_selector(self) -> None:
        """Rebuild the live bitmap after a mutation (never during a search: concurrent searches share it)."""
        if not self._n_dead:
            self._selector = self._bitmap = None
            return
        self._bitmap, self._selector = live_selector(self._live_view())


class FaissBackend(LiveBitmap, IndexBackend):
    """faiss IndexHNSWFlat with a live-label bitmap for deletes."""

    name = "faiss"
    tier = "native"
    graph = "hnsw"
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

    @property
    def index(self) -> faiss.Index:
        """The underlying faiss index (for direct comparisons in benchmarks)."""
        return self._index

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        if self.config.metric == "cosine":
            return np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    @classmethod
    def for_config(cls, config: HnswConfig) -> type[IndexBackend]:
        """``cls`` for float vectors; ``HnswConfig(quantization=...)`` goes to
        faiss' quantized HNSW indexes (:mod:`.faiss_quantized`)."""
        if config.quantization is None:
            return cls
        from .faiss_quantized import FaissQuantizedBackend

        return FaissQuantizedBackend.for_config(config)

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
        missing = labels < 0
        if self.config.metric == "euclidean":
            scores = np.sqrt(np.maximum(distances, 0.0))
        elif self.config.metric == "cosine":
            scores = 1.0 - distances
        else:
            scores = -distances
        scores = scores.astype(np.float32, copy=False)
        scores[missing] = np.inf
        return scores, labels.astype(np.int64, copy=False)

    def search_one(self, query: np.ndarray, k: int, ef_search: int) -> tuple[list[float], list[int]]:
        """One query straight to faiss, converted in Python (k values) rather than by NumPy calls."""
        if self.config.metric == "cosine":
            query = query * np.float32(1.0 / math.sqrt(float(query.dot(query))))
        distances, labels = self._index.search(query.reshape(1, -1), k, params=self._params(max(ef_search, k)))
        found = labels[0].tolist()
        if found[-1] < 0:  # the graph could not reach k live nodes: the batch path answers exactly
            return super().search_one(query, k, ef_search)
        raw = distances[0].tolist()
        metric = self.config.metric
        if metric == "euclidean":
            return [math.sqrt(d) if d > 0.0 else 0.0 for d in raw], found
        if metric == "cosine":
            return [1.0 - d for d in raw], found
        return [-d for d in raw], found

    def to_bytes(self) -> bytes:
        """faiss' own serialization of the graph and vectors (dead nodes included: they route searches)."""
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray) -> FaissBackend:
        """Rebuild the graph with faiss, then mark every label the facade does not hold as dead."""
        try:
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8).copy())
        except RuntimeError as exc:
            raise CorruptIndexError(f"faiss could not read the index payload: {exc}") from None
        if index.d != config.dimensions or not isinstance(index, faiss.IndexHNSWFlat):
            raise CorruptIndexError("faiss payload does not match the configured dimensions or index type")
        backend = cls(config, index)
        if len(live_labels) and (live_labels.min() < 0 or live_labels.max() >= index.ntotal):
            raise CorruptIndexError("live labels lie outside the faiss index")
        dead = np.setdiff1d(np.arange(index.ntotal, dtype=np.int64), live_labels)
        if len(dead):
            backend.remove(dead)
        return backend

    def close(self) -> None:
        """Drop the faiss index so its memory is freed now rather than at garbage collection."""
        self._index = None  # type: ignore[assignment]
        self._selector = None
