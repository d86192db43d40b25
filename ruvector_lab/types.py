"""Configuration and result types shared by the whole library.

The metric names and their check live in :mod:`.distances`, the integer check in :mod:`.validation`; both are
re-exported here, where users have imported them from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np

from .distances import METRICS, Metric, check_metric
from .errors import InvalidParameterError
from .validation import MAX_DIMENSIONS, MAX_EF, MAX_M, MAX_RABITQ_DIMENSIONS, MAX_RERANK, check_positive_int

if TYPE_CHECKING:  # imported on first use at run time: ``import ruvector_lab`` leaves the quantization package alone
    from .quantization.config import QuantizationConfig

__all__ = [
    "METRICS",
    "HnswConfig",
    "IndexStats",
    "Metric",
    "SearchBatch",
    "SearchHits",
    "SearchResult",
    "check_metric",
    "check_positive_int",
]


@dataclass(frozen=True)
class HnswConfig:
    """Build and default query parameters of an :class:`~ruvector_lab.HnswIndex`.

    ``m`` is the number of links per node and layer, ``ef_construction`` the candidate list size while
    building, ``ef_search`` the default candidate list size of a query (a query may pass its own).
    Exact backends (numpy, wasm) keep these values but do not use them.

    ``quantization`` (a :class:`~ruvector_lab.quantization.QuantizationConfig`, or its ``to_dict`` form)
    makes the index store compressed codes instead of float vectors; ``rerank`` > 0 also keeps the float
    vectors and re-scores that many code-ranked candidates exactly (0: codes only, approximate scores).
    """

    dimensions: int
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 50
    metric: Metric = "cosine"
    quantization: QuantizationConfig | None = None
    rerank: int = 0

    def __post_init__(self) -> None:
        # upper bounds before any backend sees a value: native libraries abort or overflow far above them
        check_positive_int("dimensions", self.dimensions, maximum=MAX_DIMENSIONS)
        check_positive_int("m", self.m, minimum=2, maximum=MAX_M)
        check_positive_int("ef_construction", self.ef_construction, maximum=MAX_EF)
        check_positive_int("ef_search", self.ef_search, maximum=MAX_EF)
        check_metric(self.metric)
        check_positive_int("rerank", self.rerank, minimum=0, maximum=MAX_RERANK)
        if self.quantization is not None:
            from .quantization.config import QuantizationConfig

            if isinstance(self.quantization, dict):
                object.__setattr__(self, "quantization", QuantizationConfig.from_dict(self.quantization))
            elif not isinstance(self.quantization, QuantizationConfig):
                raise InvalidParameterError(
                    f"quantization must be a QuantizationConfig or None, got {type(self.quantization).__name__}"
                )
            if self.quantization.kind == "rabitq":  # type: ignore[union-attr]
                check_positive_int("dimensions of a rabitq index", self.dimensions, maximum=MAX_RABITQ_DIMENSIONS)
        elif self.rerank:
            raise InvalidParameterError("rerank re-scores quantized candidates; it needs quantization=...")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return {
            "dimensions": int(self.dimensions),
            "m": int(self.m),
            "ef_construction": int(self.ef_construction),
            "ef_search": int(self.ef_search),
            "metric": self.metric,
        } | (
            {"quantization": self.quantization.to_dict(), "rerank": int(self.rerank)}
            if self.quantization is not None
            else {}
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HnswConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are refused."""
        known = {"dimensions", "m", "ef_construction", "ef_search", "metric", "quantization", "rerank"}
        unknown = set(values) - known
        if unknown:
            raise InvalidParameterError(f"unknown HnswConfig fields: {sorted(unknown)}")
        return cls(**values)


class SearchResult(NamedTuple):
    """One hit of a search: ``score`` is a distance, smaller is closer (cosine ``1-cos``, euclidean L2,
    dot_product ``-dot``). Immutable; a NamedTuple because searches build many of them."""

    id: str
    score: float


_new_tuple = tuple.__new__  # SearchResult(...) goes through a Python-level __new__; this is the C one
# an endless supply of the result type for map(_new_tuple, ...): repeat() without a count keeps no state, so one
# object serves every call and thread
_SEARCH_RESULT = repeat(SearchResult)


class SearchHits(Sequence[SearchResult]):
    """What :meth:`~ruvector_lab.HnswIndex.search` returns: the hits of one query, closest first.

    A read-only sequence of :class:`SearchResult` over two parallel sequences, ``ids`` (str) and ``scores``
    (float, the :class:`SearchResult` convention). Each :class:`SearchResult` is made when it is read
    (``hits[0]``, iteration, ``list(hits)``), so a search pays for no result objects its caller never reads:
    building ten of them costs as much as the rest of the facade together (issue 20). ``hits.ids`` is all many
    callers need. ``==`` compares with any sequence of ``(id, score)`` pairs, so ``hits == [SearchResult("a",
    0.0)]`` holds; ``list(hits)`` is a plain list.
    """

    __slots__ = ("ids", "scores")

    def __init__(self, ids: Sequence[str], scores: Sequence[float]) -> None:
        if len(ids) != len(scores):
            raise ValueError(f"{len(ids)} ids and {len(scores)} scores: they must pair up")
        self.ids = ids
        self.scores = scores

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> SearchResult: ...

    @overload
    def __getitem__(self, index: slice) -> SearchHits: ...

    def __getitem__(self, index: int | slice) -> SearchResult | SearchHits:
        if isinstance(index, slice):
            return SearchHits(self.ids[index], self.scores[index])
        return _new_tuple(SearchResult, (self.ids[index], self.scores[index]))

    def __iter__(self) -> Iterator[SearchResult]:
        return map(_new_tuple, _SEARCH_RESULT, zip(self.ids, self.scores, strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SearchHits):
            return list(self.ids) == list(other.ids) and list(self.scores) == list(other.scores)
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(mine == theirs for mine, theirs in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment] - equal to lists, so unhashable like them

    def __repr__(self) -> str:
        return repr(list(self))


class SearchBatch(Sequence[SearchHits]):
    """What :meth:`~ruvector_lab.HnswIndex.search_batch` returns: one row of results per query.

    ``batch[i]`` is query ``i``'s :class:`SearchHits`, what :meth:`~ruvector_lab.HnswIndex.search` returns for it;
    iterating yields those rows; ``==`` compares them with any sequence of sequences. The rows
    are built when read: the batch itself holds arrays, so answering a thousand queries does not cost ten
    thousand result objects up front (and code that wants arrays reads them directly):

    - ``ids``: ``(m, k)`` object array of id strings, None where a query found fewer than ``k``;
    - ``scores``: ``(m, k)`` float32 distances (the :class:`SearchResult` convention), inf where padded.

    From a search, ``ids`` too is made on first use, from the result's labels and the index's label -> id table
    (append-only, so the ids are those of the search's moment): mapping ten thousand labels touches ten thousand
    string objects, which costs more than the rest of the facade's batch path together.
    """

    __slots__ = ("_ids", "_labels", "_table", "scores")

    def __init__(self, ids: np.ndarray, scores: np.ndarray) -> None:
        if ids.shape != scores.shape or ids.ndim != 2:
            raise ValueError(f"ids {ids.shape} and scores {scores.shape} must be matrices of one shape")
        self._ids: np.ndarray | None = ids
        self._labels: np.ndarray | None = None
        self._table: np.ndarray | None = None
        self.scores = scores

    @classmethod
    def from_labels(cls, labels: np.ndarray, table: np.ndarray, scores: np.ndarray) -> SearchBatch:
        """A batch whose ids are ``table[labels]``, looked up when first read. ``table`` maps every label the
        result can hold to its id and must not change afterwards (the index appends to its table, never edits
        it); label -1 (padding) must read None, i.e. ``table[-1]`` is None."""
        if labels.shape != scores.shape or labels.ndim != 2:
            raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be matrices of one shape")
        batch = cls.__new__(cls)
        batch._ids, batch._labels, batch._table, batch.scores = None, labels, table, scores
        return batch

    @property
    def ids(self) -> np.ndarray:
        """``(m, k)`` object array of id strings, None where a query found fewer than ``k``."""
        if self._ids is None:
            self._ids = self._table[self._labels]  # type: ignore[index]
        return self._ids

    def _row_ids(self, index: int | slice) -> list:
        if self._ids is None:
            return self._table[self._labels[index]].tolist()  # type: ignore[index]
        return self._ids[index].tolist()

    @staticmethod
    def _row(ids: list[str | None], scores: list[float]) -> SearchHits:
        if None not in ids:
            return SearchHits(ids, scores)
        kept = [i for i, found in enumerate(ids) if found is not None]
        return SearchHits([ids[i] for i in kept], [scores[i] for i in kept])

    def __len__(self) -> int:
        return len(self.scores)

    @overload
    def __getitem__(self, index: int) -> SearchHits: ...

    @overload
    def __getitem__(self, index: slice) -> list[SearchHits]: ...

    def __getitem__(self, index: int | slice) -> SearchHits | list[SearchHits]:
        if isinstance(index, slice):
            rows = zip(self._row_ids(index), self.scores[index].tolist(), strict=True)
            return [self._row(ids, scores) for ids, scores in rows]
        return self._row(self._row_ids(index), self.scores[index].tolist())

    def __iter__(self) -> Iterator[SearchHits]:
        for ids, scores in zip(self.ids.tolist(), self.scores.tolist(), strict=True):
            yield self._row(ids, scores)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(mine == theirs for mine, theirs in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment] - equal to lists, so unhashable like them

    def counts(self) -> np.ndarray:
        """Hits per query (``k`` unless the index held fewer live vectors than ``k``)."""
        return np.count_nonzero(self.ids != None, axis=1)  # noqa: E711 - elementwise test on an object array

    def to_lists(self) -> list[list[SearchResult]]:
        """Every row built now: a plain ``list[list[SearchResult]]``."""
        return [list(row) for row in self]

    def __repr__(self) -> str:
        return f"SearchBatch({len(self)} queries, k={self.scores.shape[1]})"


@dataclass(frozen=True)
class IndexStats:
    """What an index reports about itself.

    ``vector_count`` counts live vectors; ``deleted_count`` the slots that deletes or replaces left in the
    backend's structure (graphs cannot drop nodes). ``bytes`` is the size of :meth:`HnswIndex.serialize`'s
    output, i.e. measured, not estimated. ``graph`` is ``'hnsw'`` for graph backends, ``'flat'`` for exact ones.
    """

    vector_count: int
    dimensions: int
    m: int
    ef_construction: int
    ef_search: int
    metric: str
    backend: str
    tier: str
    graph: str
    bytes: int
    deleted_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_per_vector(self) -> float:
        """Serialized bytes divided by the live vector count (0 for an empty index)."""
        return self.bytes / self.vector_count if self.vector_count else 0.0
