"""What every quantized index shares: preparing vectors for a metric, growable row storage, exact rerank,
and the memory figures that ``stats()`` reports."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..distances import normalize_rows, query_to_rows_unit
from ..errors import CorruptIndexError


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Rows as the quantized indexes store them: unit length under cosine (so codes encode directions and a
    cosine is a dot product), unchanged otherwise; float32, C-contiguous."""
    if metric == "cosine":
        vectors = normalize_rows(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)


class Rows:
    """A growable ``(n, width)`` array (amortised doubling), for codes or float vectors."""

    def __init__(self, width: int, dtype: type | np.dtype) -> None:
        self._data = np.empty((0, width), dtype=dtype)
        self.count = 0

    def append(self, rows: np.ndarray) -> None:
        """Add rows at the end."""
        needed = self.count + len(rows)
        if needed > len(self._data):
            grown = np.empty((max(needed, 2 * len(self._data), 64), self._data.shape[1]), dtype=self._data.dtype)
            grown[: self.count] = self._data[: self.count]
            self._data = grown
        self._data[self.count : needed] = rows
        self.count = needed

    @property
    def view(self) -> np.ndarray:
        """The filled rows (a view, not a copy)."""
        return self._data[: self.count]


def rerank(queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, labels: np.ndarray, metric: str,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate rows exactly against the stored float ``vectors`` and keep the best ``k``.

    ``queries`` and ``vectors`` are prepared (:func:`prepare`); each candidate is scored by
    :func:`~ruvector_lab.distances.query_to_rows_unit`.

    ``candidates`` is ``(m, c)`` row indices (``-1`` = no candidate); ``labels`` maps rows to labels.
    Returns ``(distances (m, k) float32, labels (m, k) int64)`` padded with ``inf`` / ``-1``; ties go to the
    lower label, as on the exact backends.
    """
    out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    out_l = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (q, cand) in enumerate(zip(queries, candidates, strict=True)):
        cand = cand[cand >= 0]
        if not len(cand):
            continue
        scores = query_to_rows_unit(q, vectors[cand], metric).astype(np.float32)
        order = np.lexsort((labels[cand], scores))[:k]
        out_d[row, : len(order)] = scores[order]
        out_l[row, : len(order)] = labels[cand][order]
    return out_d, out_l


def check_recorded_rerank(meta: dict[str, Any], rerank_k: int, what: str) -> None:
    """Refuse a payload whose recorded rerank depth is not the header's ``rerank_k``.

    The depth decides what was stored (float rows or not) and which scores a search returns (exact or code
    estimates), so a header edited to another depth over the same payload would change every answer without
    an error. Every quantized payload has recorded it since it was first written.
    """
    recorded = meta.get("rerank")
    if type(recorded) is not int or recorded != rerank_k:
        raise CorruptIndexError(f"{what} payload was written with rerank {recorded!r}, the index header says "
                                f"{rerank_k}")


def memory_stats(kind: str, dimensions: int, code_bytes: int, keeps_floats: bool, rerank_k: int,
                 fixed_bytes: int = 0, payload_bytes: int | None = None, count: int = 0, *,
                 build_floats: bool = False, graph_bytes: float | None = None, **more: Any) -> dict[str, Any]:
    """The ``IndexStats.extra`` entries of a quantized index.

    ``code_bytes`` per vector is analytic. Float vectors are kept for rerank (``keeps_floats``) or to build a
    graph from them (``build_floats``, HNSW over codes with ``graph='float'``), one copy serving both:
    ``rerank_float_bytes_per_vector`` is ``4 * d`` when rerank keeps them, ``build_float_bytes_per_vector``
    ``4 * d`` when only the graph build does, and ``float_bytes_per_vector`` their sum. ``graph_bytes`` (graph
    backends) gives ``graph_bytes_per_vector``, the links and per-node bookkeeping, so codes, graph and float
    vectors read apart. ``fixed_bytes`` counts what does not grow with n (codebooks, rotations);
    ``compression_ratio`` is float32 bytes over code bytes; ``payload_bytes`` (measured: the backend's
    serialized state) gives ``measured_bytes_per_vector``.
    """
    rerank_bytes = 4 * dimensions if keeps_floats else 0
    build_bytes = 4 * dimensions if build_floats and not keeps_floats else 0
    float_bytes = rerank_bytes + build_bytes
    out: dict[str, Any] = {
        "quantization": kind,
        "rerank": int(rerank_k),
        "code_bytes_per_vector": int(code_bytes),
        "float_bytes_per_vector": int(float_bytes),
        "rerank_float_bytes_per_vector": int(rerank_bytes),
        "build_float_bytes_per_vector": int(build_bytes),
        "stored_bytes_per_vector": int(code_bytes + float_bytes),
        "fixed_bytes": int(fixed_bytes),
        "compression_ratio": round(4.0 * dimensions / code_bytes, 3),
    }
    if graph_bytes is not None:
        out["graph_bytes_per_vector"] = round(float(graph_bytes), 2)
    if payload_bytes is not None:
        out["payload_bytes"] = int(payload_bytes)
        out["measured_bytes_per_vector"] = round(payload_bytes / count, 2) if count else 0.0
    out.update(more)
    return out
