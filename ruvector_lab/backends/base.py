"""The one protocol every backend implements.

A backend stores float32 row vectors under int64 *labels* that the :class:`~ruvector_lab.HnswIndex` facade
assigns (0, 1, 2, ... in insertion order, never reused); string ids, validation, replace semantics and the
serialized container all live in the facade, so a backend only has to do what its library does well.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .. import container
from ..errors import BackendError, CorruptIndexError
from ..fastpath import ROW_PAIRS, convert_scores
from ..types import METRICS, HnswConfig
from ..validation import stored_row_flaw

#: one query's result as its library gave it, for the facade's hot path (see IndexBackend.search_row)
SearchRow = tuple[Any, Any, int]

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

    def search_row(self, query: np.ndarray, k: int, ef_search: int) -> SearchRow | None:
        """The library's own answer to one query (d,), unconverted: ``(distances, labels, mode)``, a result row
        of each as the library returned it (a (k,) or (1, k) array) and the :mod:`~ruvector_lab.fastpath` score
        conversion that takes its distances to this protocol's; with ``mode`` ``ROW_PAIRS``, ``(results, k,
        ROW_PAIRS)``, a list of ``(label string, score, ...)`` tuples of which the first ``k`` count. None when
        this call needs the general path (another ef than the index runs at, a concurrent change, a short
        result), and always for backends without such a call (the default).

        The facade's single-query hot path: its C module reads the row in place, so a search pays for no NumPy
        post-processing and no Python lists (issue 20); :meth:`search_one` converts the same row in Python.
        """
        return None

    def search_one(self, query: np.ndarray, k: int, ef_search: int) -> tuple[list[float], list[int]]:
        """One query (d,) as Python lists ``(distances, labels)``, padding allowed as in :meth:`search`:
        :meth:`search_row` converted (:func:`~ruvector_lab.fastpath.convert_scores`) where it answers and the
        row is full, else a one-row :meth:`search`."""
        row = self.search_row(query, k, ef_search)
        if row is not None and row[2] != ROW_PAIRS:
            distances, labels, mode = row
            found = labels.ravel().tolist()
            if found and found[-1] >= 0 and len(found) == k:
                return convert_scores(distances.ravel().tolist(), mode), found
        distances, labels = self.search(query.reshape(1, -1), k, ef_search)
        return distances[0].tolist(), labels[0].tolist()

    @abstractmethod
    def to_bytes(self) -> bytes:
        """The backend's own state as bytes (wrapped by the facade's checksummed container)."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> IndexBackend:
        """Rebuild a backend from :meth:`to_bytes` output; ``live_labels`` are the labels the facade holds.

        The payload may have been crafted (its container checksum recomputed): a backend parses and checks its
        structure with the library's own code before any native reader sees it, and raises
        :class:`CorruptIndexError` when it disagrees with itself or with ``config`` and ``live_labels``. With
        ``trust_native=False`` no native reader sees it at all: the index is rebuilt from the vectors (or codes)
        parsed out of it. Backends that always rebuild from rows ignore the flag.
        """

    def direct_search(self, k: int, ef_search: int) -> Callable[[np.ndarray], object] | None:
        """The library's own single-query call with the parameters the facade would use (one query row in,
        whatever the library returns out), for the facade-overhead benchmark; None when the backend has no
        library underneath (the NumPy fallback) or the call would not be the same work."""
        return None

    def direct_search_batch(self, k: int, ef_search: int) -> Callable[[np.ndarray], object] | None:
        """The library's own batch call on one thread for a query matrix, as :meth:`direct_search` for one row
        (the benchmark's library-direct batch QPS); None where :meth:`direct_search` is None."""
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


def dump_rows(kind: str, labels: np.ndarray, vectors: np.ndarray, metric: str | None = None) -> bytes:
    """The payload of a backend that persists as plain rows: its live labels and vectors, and the metric they
    were written under (so a header whose metric was changed is refused, as the native formats' own are)."""
    return container.dumps(kind, {"metric": metric} if metric is not None else {},
                           {"labels": labels, "vectors": vectors})


def load_rows(kind: str, payload: bytes, config: HnswConfig, live_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read :func:`dump_rows` output; the rows must have the configured width and exactly the facade's labels."""
    meta, arrays = container.loads(payload, kind)
    if "metric" in meta:  # payloads written before it was kept lack it
        check_recorded_metric(kind, meta, config)
    return check_rows(kind, arrays.get("labels"), arrays.get("vectors"), config, live_labels)


def check_recorded_metric(kind: str, meta: dict, config: HnswConfig) -> None:
    """Refuse a payload whose recorded ``metric`` is not the header's (:class:`CorruptIndexError`)."""
    if meta.get("metric") != config.metric:
        raise CorruptIndexError(f"{kind} payload was written under the {meta.get('metric')!r} metric, the index "
                                f"header says {config.metric!r}")


def dump_native(kind: str, native: bytes, metric: str) -> bytes:
    """The payload of a backend whose library format does not record the metric (hnswlib's file cannot tell
    ``l2`` from ``ip``; the rvf export has no metric): the library's bytes beside the metric they were written
    under, so a header whose metric was changed is refused."""
    return container.dumps(kind, {"metric": metric}, {"native": np.frombuffer(native, dtype=np.uint8)})


def load_native(kind: str, payload: bytes, config: HnswConfig) -> bytes:
    """The library's bytes inside :func:`dump_native` output, once its metric is the header's. A payload that
    is not a container is a bare library payload, as written before the metric was kept: returned as it is
    (the library's own parser checks it all the same, but cannot check the metric)."""
    if bytes(payload[: len(container.MAGIC)]) != container.MAGIC:
        return bytes(payload)
    meta, arrays = container.loads(payload, kind)
    check_recorded_metric(kind, meta, config)
    native = arrays.get("native")
    if native is None or native.dtype != np.uint8 or native.ndim != 1:
        raise CorruptIndexError(f"{kind} payload lacks the library's bytes")
    return native.tobytes()


def check_rows(kind: str, labels: np.ndarray | None, vectors: np.ndarray | None, config: HnswConfig,
               live_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check rows parsed out of a payload; return them as ``(int64 labels, float32 vectors)``.

    The rows must have the configured width, integer labels that are exactly the facade's ``live_labels``, and
    pass the insert rule (:func:`~ruvector_lab.validation.stored_row_flaw`: finite, a finite float32 squared
    norm, non-zero under cosine), so every row a loader accepts could have been inserted.
    """
    if labels is None or vectors is None or labels.ndim != 1 or vectors.shape != (len(labels), config.dimensions):
        raise CorruptIndexError(f"{kind} payload does not hold labels and vectors of the configured shape")
    if labels.dtype.kind not in "iu" or vectors.dtype.kind != "f":
        raise CorruptIndexError(f"{kind} payload holds {labels.dtype} labels and {vectors.dtype} vectors")
    with np.errstate(over="ignore"):  # float64 values past float32 become inf and are refused just below
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
    flaw = stored_row_flaw(rows, nonzero=config.metric == "cosine")
    if flaw is not None:
        raise CorruptIndexError(f"{kind} payload holds a vector no insert accepts: {flaw}")
    if not np.array_equal(np.sort(labels), np.sort(live_labels)):
        raise CorruptIndexError(f"{kind} payload labels do not match the index's ids")
    return labels.astype(np.int64), rows
