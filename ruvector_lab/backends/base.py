"""The one protocol every backend implements.

A backend stores float32 row vectors under int64 *labels* that the :class:`~ruvector_lab.HnswIndex` facade
assigns (0, 1, 2, ... in insertion order, never reused); string ids, validation, replace semantics and the
serialized container all live in the facade, so a backend only has to do what its library does well.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import container
from ..errors import BackendError, CorruptIndexError
from ..types import METRICS, HnswConfig

#: ``kernel(queries (m, d), vectors (n, d), metric) -> (m, n) float32`` distances, same convention as the index.
DistanceKernel = Callable[[np.ndarray, np.ndarray, str], np.ndarray]


@dataclass(frozen=True)
class MemoryLayout:
    """Bytes per stored vector of a backend's structures, by part, plus what does not grow with n.

    ``vectors``: the stored rows (float32 or codes, plus float copies kept for re-ranking); ``graph``: links and
    per-node graph bookkeeping (0 for flat scans); ``ids``: the backend's own label maps; ``other``: live flags,
    cached norms, locks, slot records; ``fixed``: bytes whatever the size (trained codebooks, lock tables).
    """

    vectors: float
    graph: float = 0.0
    ids: float = 0.0
    other: float = 0.0
    fixed: int = 0


class IndexBackend(ABC):
    """A vector store with k-nearest-neighbour search over int64 labels.

    Contract: ``search`` returns, per query row, up to ``k`` live labels sorted by ascending distance
    (cosine ``1 - cos``, euclidean L2, dot_product ``-dot``), padded with label ``-1`` and distance ``inf``.
    Removed labels never come back. ``ef_search`` is honoured per call by graph backends, ignored by
    exact ones.
    """

    name: ClassVar[str]
    graph: ClassVar[str]  # 'hnsw' | 'flat'
    #: a faster distance kernel this backend brings to the vector ops, or None to use NumPy's
    distance_kernel: ClassVar[DistanceKernel | None] = None

    def __init__(self, config: HnswConfig) -> None:
        self.config = config

    @classmethod
    def check_config(cls, config: HnswConfig) -> None:
        """Raise if this class cannot serve ``config`` (a metric or shape its codes do not support).

        The registry (:func:`ruvector_lab.backends.class_for`) has already matched the quantization kind; this
        hook adds the class's own limits. The default accepts everything.
        """
        return None

    @abstractmethod
    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Store ``vectors`` (n, d) float32 under new, increasing ``labels`` (n,) int64."""

    @abstractmethod
    def remove(self, labels: np.ndarray) -> None:
        """Forget the given labels; every one of them is live."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(distances (m, k) float32, labels (m, k) int64)`` for ``queries`` (m, d)."""

    def search_one(self, query: np.ndarray, k: int, ef_search: int) -> tuple[list[float], list[int]]:
        """One query (d,) as Python lists ``(distances, labels)``, padding allowed as in :meth:`search`.

        The facade's single-query path: backends override it to skip NumPy post-processing, whose fixed
        per-call cost is a visible share of a sub-millisecond graph search.
        """
        distances, labels = self.search(query.reshape(1, -1), k, ef_search)
        return distances[0].tolist(), labels[0].tolist()

    @abstractmethod
    def to_bytes(self) -> bytes:
        """The backend's own state as bytes (wrapped by the facade's checksummed container)."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray) -> IndexBackend:
        """Rebuild a backend from :meth:`to_bytes` output; ``live_labels`` are the labels the facade holds."""

    def direct_search(self, k: int, ef_search: int) -> Callable[[np.ndarray], object] | None:
        """The library's own single-query call with the parameters the facade would use (one query row in,
        whatever the library returns out), for the facade-overhead benchmark; None when the backend has no
        library underneath (the NumPy fallback) or the call would not be the same work."""
        return None

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout | None:
        """Expected bytes of this backend's own structures under ``config``, from its library's data layout
        (the facade's id maps excluded), or None when the layout is not known."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold only Python memory
        """Release native resources early; the object is not used afterwards."""

    @classmethod
    def probe(cls) -> None:
        """Prove the backend works here by building a tiny index per metric and finding known neighbours.

        Raises any exception on failure; the runtime turns it into a reason string.
        """
        rng = np.random.default_rng(7)
        data = rng.standard_normal((32, 8)).astype(np.float32)
        for metric in METRICS:
            backend = cls(HnswConfig(dimensions=8, m=4, ef_construction=32, ef_search=32, metric=metric))
            try:
                backend.add(np.arange(32, dtype=np.int64), data)
                queries = data[:4] * 1.001 if metric != "dot_product" else data[:4]
                _, labels = backend.search(queries, 1, 32)
                if metric != "dot_product" and labels[:, 0].tolist() != [0, 1, 2, 3]:
                    raise BackendError(f"probe search under {metric} returned {labels[:, 0].tolist()}")
                if labels.shape != (4, 1):
                    raise BackendError(f"probe search returned shape {labels.shape}")
            finally:
                backend.close()


def pad_results(distances: list[np.ndarray], labels: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-query results of varying length into the padded ``(m, k)`` arrays of the contract."""
    out_d = np.full((len(labels), k), np.inf, dtype=np.float32)
    out_l = np.full((len(labels), k), -1, dtype=np.int64)
    for row, (dist, lab) in enumerate(zip(distances, labels, strict=True)):
        n = min(k, len(lab))
        out_d[row, :n] = dist[:n]
        out_l[row, :n] = lab[:n]
    return out_d, out_l


def dump_rows(kind: str, labels: np.ndarray, vectors: np.ndarray) -> bytes:
    """The payload of a backend that persists as plain rows: its live labels and vectors."""
    return container.dumps(kind, {}, {"labels": labels, "vectors": vectors})


def load_rows(kind: str, payload: bytes, config: HnswConfig, live_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read :func:`dump_rows` output; the rows must have the configured width and exactly the facade's labels."""
    _, arrays = container.loads(payload, kind)
    labels, vectors = arrays.get("labels"), arrays.get("vectors")
    if labels is None or vectors is None or vectors.shape != (len(labels), config.dimensions):
        raise CorruptIndexError(f"{kind} payload does not hold labels and vectors of the configured shape")
    if not np.array_equal(np.sort(labels), np.sort(live_labels)):
        raise CorruptIndexError(f"{kind} payload labels do not match the index's ids")
    return labels.astype(np.int64), vectors.astype(np.float32)
