"""The fallback tier: exact search in NumPy. Always available, and the reference every other backend is held to."""

from __future__ import annotations

import numpy as np

from ..distances import normalize_rows, query_to_rows_unit, ranking_scores, squared_norms
from ..types import HnswConfig
from .base import IndexBackend, MemoryLayout, dump_rows, load_rows
from .layout import ROW_MAP_PER_VECTOR

_PAYLOAD = "numpy-backend"
_QUERY_BLOCK = 256  # queries per matrix product: bounds the (block x n) score matrix


class NumpyBackend(IndexBackend):
    """Exact (flat) search over a growable float32 matrix with a live mask."""

    name = "numpy"
    graph = "flat"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """rows (float32), ``_sq_norms`` (float32), ``_labels`` (int64), ``_live`` (bool), ``_row_of`` dict."""
        return MemoryLayout(vectors=4.0 * config.dimensions, ids=8.0 + ROW_MAP_PER_VECTOR, other=4.0 + 1.0)

    def __init__(self, config: HnswConfig) -> None:
        super().__init__(config)
        self._vectors = np.empty((0, config.dimensions), dtype=np.float32)
        self._sq_norms = np.empty(0, dtype=np.float32)
        self._labels = np.empty(0, dtype=np.int64)
        self._live = np.empty(0, dtype=bool)
        self._count = 0
        self._row_of: dict[int, int] = {}

    def _grow(self, extra: int) -> None:
        needed = self._count + extra
        if needed <= len(self._labels):
            return
        capacity = max(needed, 2 * len(self._labels), 64)
        for attr, fill in (("_vectors", 0.0), ("_sq_norms", 0.0), ("_labels", -1), ("_live", False)):
            old = getattr(self, attr)
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[: self._count] = old[: self._count]
            setattr(self, attr, new)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows; under cosine the stored rows are unit length so a search is one matrix product."""
        if self.config.metric == "cosine":
            vectors = normalize_rows(vectors)
        self._grow(len(labels))
        rows = slice(self._count, self._count + len(labels))
        self._vectors[rows] = vectors
        self._sq_norms[rows] = squared_norms(vectors)
        self._labels[rows] = labels
        self._live[rows] = True
        for offset, label in enumerate(labels.tolist()):
            self._row_of[label] = self._count + offset
        self._count += len(labels)

    def remove(self, labels: np.ndarray) -> None:
        """Clear the live bit of each label's row (rows are compacted only on serialization)."""
        for label in labels.tolist():
            self._live[self._row_of.pop(label)] = False

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k: one matrix product per block of queries, then exact scores for the winners."""
        n = self._count
        vectors, live, labels = self._vectors[:n], self._live[:n], self._labels[:n]
        k_eff = min(k, int(live.sum()))
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        out_l = np.full((len(queries), k), -1, dtype=np.int64)
        if k_eff == 0:
            return out_d, out_l
        metric = self.config.metric
        if metric == "cosine":
            queries = normalize_rows(queries)
        for start in range(0, len(queries), _QUERY_BLOCK):
            block = queries[start : start + _QUERY_BLOCK]
            # ranking by the norm expansion is safe; the reported scores are recomputed exactly below
            rank = ranking_scores(block, vectors, metric, self._sq_norms[:n])
            rank[:, ~live] = np.inf
            top = np.argpartition(rank, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n else np.argsort(rank, axis=1)
            top = top[:, :k_eff]
            for row, (q, cand) in enumerate(zip(block, top, strict=True)):
                scores = query_to_rows_unit(q, vectors[cand], metric)
                order = np.lexsort((labels[cand], scores))
                out_d[start + row, :k_eff] = scores[order]
                out_l[start + row, :k_eff] = labels[cand][order]
        return out_d, out_l

    def to_bytes(self) -> bytes:
        """The live rows and their labels."""
        live = self._live[: self._count]
        return dump_rows(_PAYLOAD, self._labels[: self._count][live], self._vectors[: self._count][live],
                         self.config.metric)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> NumpyBackend:
        """Rebuild from :meth:`to_bytes`; the stored labels must be exactly the facade's live labels
        (``trust_native`` changes nothing: the rows are always parsed by the library itself)."""
        labels, vectors = load_rows(_PAYLOAD, payload, config, live_labels)
        backend = cls(config)
        backend.add(labels, vectors)
        return backend
