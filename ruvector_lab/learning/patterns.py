"""Learned patterns: an embedding with metadata, matched against queries by cosine similarity.

The ADR's ``createPattern`` / ``matchPatterns``. :func:`match_patterns` is exact (one matrix product over the
given patterns); :class:`PatternStore` keeps many patterns in an :class:`~ruvector_lab.HnswIndex` (cosine) so a
match costs a graph search instead of a scan, and returns up to ``k`` of the best matches above the threshold.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import container
from ..errors import CorruptIndexError, DimensionMismatchError, InvalidParameterError, UnknownIdError
from ..index import HnswIndex
from ..types import HnswConfig, check_positive_int
from ..validation import as_vector, check_id, check_nonzero

KIND = "pattern-store"


@dataclass(frozen=True)
class Pattern:
    """A unit-norm float32 ``embedding`` with JSON-able ``metadata`` under a string ``id``."""

    id: str
    embedding: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dimensions(self) -> int:
        """Length of the embedding."""
        return int(self.embedding.shape[0])


@dataclass(frozen=True)
class PatternMatch:
    """A pattern and its cosine ``similarity`` to the query (1 is identical, -1 opposite)."""

    pattern: Pattern
    similarity: float

    def __repr__(self) -> str:
        """id, similarity, metadata and the embedding's shape and first values: a list of matches stays readable
        (the default would print every number of every embedding)."""
        emb = self.pattern.embedding
        head = ", ".join(f"{float(x):.4f}" for x in emb[:4])
        more = ", ..." if emb.size > 4 else ""
        return (f"PatternMatch(id={self.pattern.id!r}, similarity={self.similarity:.4f}, "
                f"metadata={self.pattern.metadata!r}, embedding=<{emb.dtype} {tuple(emb.shape)}: [{head}{more}]>)")


def create_pattern(embedding: object, metadata: dict[str, Any] | None = None, id: str | None = None) -> Pattern:  # noqa: A002
    """Make a :class:`Pattern`: the embedding is checked (finite, non-zero) and L2-normalised; metadata must be
    a JSON-able mapping (so stores can be saved without pickle); ``id`` defaults to a random hex string."""
    vector = as_vector(embedding, name="pattern embedding")
    check_nonzero(vector, "pattern embedding")
    unit = (vector / np.linalg.norm(vector.astype(np.float64))).astype(np.float32)
    meta = {} if metadata is None else metadata
    if not isinstance(meta, dict):
        raise InvalidParameterError(f"pattern metadata must be a dict, got {type(meta).__name__}")
    try:
        meta = json.loads(json.dumps(meta, allow_nan=False))  # a private copy, and proof it can be saved
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"pattern metadata must be JSON-able: {exc}") from None
    return Pattern(check_id(id) if id is not None else uuid.uuid4().hex, unit, meta)


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not -1.0 <= float(threshold) <= 1.0:
        raise InvalidParameterError(f"threshold is a cosine similarity in [-1, 1], got {threshold!r}")
    return float(threshold)


def match_patterns(
    query: object, patterns: Sequence[Pattern] | PatternSet | PatternStore, threshold: float = 0.0,
    k: int | None = None,
) -> list[PatternMatch]:
    """Patterns whose cosine similarity to ``query`` is >= ``threshold``, best first (at most ``k`` if given).

    Over a sequence of patterns or a :class:`PatternSet` the match is exact (a sequence is stacked on every
    call; build a PatternSet once to match repeatedly). Given a :class:`PatternStore` it is the store's HNSW
    search (``k`` defaults to 10 there).
    """
    threshold = _check_threshold(threshold)
    if isinstance(patterns, PatternStore):
        return patterns.match(query, threshold, k=10 if k is None else k)
    if not isinstance(patterns, PatternSet):
        patterns = PatternSet(patterns)
    return patterns.match(query, threshold, k)


class PatternSet:
    """An immutable collection of patterns stacked into one matrix for exact matching by a matrix product."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        items = list(patterns)
        for p in items:
            if not isinstance(p, Pattern):
                raise InvalidParameterError(f"expected Pattern objects, got {type(p).__name__}")
        if items and len({p.dimensions for p in items}) > 1:
            raise DimensionMismatchError("patterns mix embedding dimensions")
        self._items = items
        self._matrix = np.stack([p.embedding for p in items]) if items else None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Pattern]:
        return iter(self._items)

    def match(self, query: object, threshold: float = 0.0, k: int | None = None) -> list[PatternMatch]:
        """Exact :func:`match_patterns` over this set."""
        threshold = _check_threshold(threshold)
        if k is not None:
            k = check_positive_int("k", k)
        if self._matrix is None:
            return []
        q = as_vector(query, self._matrix.shape[1], name="query")
        check_nonzero(q, "query")
        sims = self._matrix @ (q / np.linalg.norm(q))
        if k is not None and k < sims.shape[0]:
            candidates = np.argpartition(-sims, k - 1)[:k]  # the k best, unordered, in O(n)
        else:
            candidates = np.arange(sims.shape[0])
        keep = candidates[sims[candidates] >= threshold]
        order = keep[np.argsort(-sims[keep], kind="stable")]
        return [PatternMatch(self._items[i], float(sims[i])) for i in order]


class PatternStore:
    """Patterns kept in a cosine :class:`HnswIndex` for fast matching; ids are the patterns' ids.

    ``backend`` names an index backend (None: the runtime's). Re-adding a pattern id replaces it.
    """

    def __init__(self, dimensions: int, m: int = 16, ef_construction: int = 100, ef_search: int = 64,
                 backend: str | None = None) -> None:
        self.config = HnswConfig(dimensions=dimensions, m=m, ef_construction=ef_construction,
                                 ef_search=ef_search, metric="cosine")
        self._index = HnswIndex(self.config, backend=backend)
        self._patterns: dict[str, Pattern] = {}

    @property
    def dimensions(self) -> int:
        """Embedding dimension of the store."""
        return self.config.dimensions

    @property
    def backend(self) -> str:
        """Name of the index backend in use."""
        return self._index.backend

    def add(self, pattern: Pattern) -> str:
        """Store one pattern; return its id."""
        self.add_many([pattern])
        return pattern.id

    def create(self, embedding: object, metadata: dict[str, Any] | None = None, id: str | None = None) -> Pattern:  # noqa: A002
        """:func:`create_pattern` then :meth:`add`; return the pattern."""
        pattern = create_pattern(embedding, metadata, id)
        self.add(pattern)
        return pattern

    def add_many(self, patterns: Sequence[Pattern]) -> None:
        """Store a batch of patterns in one index insert (ids must be distinct within the batch)."""
        items = list(patterns)
        for p in items:
            if not isinstance(p, Pattern):
                raise InvalidParameterError(f"expected Pattern objects, got {type(p).__name__}")
            if p.dimensions != self.dimensions:
                raise DimensionMismatchError(
                    f"pattern {p.id!r} has {p.dimensions} dimensions, the store holds {self.dimensions}"
                )
        if not items:
            return
        self._index.insert_batch([p.id for p in items], np.stack([p.embedding for p in items]))
        self._patterns.update((p.id, p) for p in items)

    def get(self, id: str) -> Pattern:  # noqa: A002
        """The pattern stored under ``id``; raises :class:`UnknownIdError` if there is none."""
        try:
            return self._patterns[check_id(id)]
        except KeyError:
            raise UnknownIdError(f"no pattern with id {id!r}") from None

    def remove(self, id: str) -> bool:  # noqa: A002
        """Forget a pattern; True if it was stored."""
        removed = self._index.delete(id)
        self._patterns.pop(id, None)
        return removed

    def __len__(self) -> int:
        return len(self._patterns)

    def __contains__(self, id: object) -> bool:  # noqa: A002
        return id in self._patterns

    def __iter__(self) -> Iterator[Pattern]:
        return iter(list(self._patterns.values()))

    def match(self, query: object, threshold: float = 0.0, k: int = 10) -> list[PatternMatch]:
        """Up to ``k`` stored patterns with cosine similarity >= ``threshold``, best first (HNSW search:
        approximate on graph backends, exact on flat ones)."""
        threshold = _check_threshold(threshold)
        k = check_positive_int("k", k)
        q = as_vector(query, self.dimensions, name="query")
        if not self._patterns:
            return []
        hits = self._index.search(q, k=k, ef_search=max(self.config.ef_search, k))
        out = []
        for hit in hits:
            similarity = 1.0 - hit.score
            if similarity < threshold:
                break  # hits are sorted by distance, so every later one is below the threshold too
            out.append(PatternMatch(self._patterns[hit.id], similarity))
        return out

    def to_bytes(self) -> bytes:
        """Serialize patterns, metadata and the built index into one container (kind ``pattern-store``)."""
        items = list(self._patterns.values())
        meta = {"config": self.config.to_dict(), "backend": self.backend,
                "patterns": [{"id": p.id, "metadata": p.metadata} for p in items]}
        embeddings = np.stack([p.embedding for p in items]) if items else np.zeros((0, self.dimensions), np.float32)
        index_blob = np.frombuffer(self._index.serialize(), dtype=np.uint8)
        return container.dumps(KIND, meta, {"embeddings": embeddings, "index": index_blob})

    @classmethod
    def from_bytes(cls, blob: bytes) -> PatternStore:
        """Inverse of :meth:`to_bytes`; a truncated, tampered or inconsistent blob raises CorruptIndexError."""
        meta, arrays = container.loads(blob, KIND)
        try:
            cfg = HnswConfig.from_dict(meta["config"])
            entries = meta["patterns"]
            embeddings = arrays["embeddings"]
            if embeddings.shape != (len(entries), cfg.dimensions):
                raise ValueError(f"{len(entries)} patterns but embeddings of shape {embeddings.shape}")
            index = HnswIndex.deserialize(arrays["index"].tobytes())
            patterns = [Pattern(str(e["id"]), embeddings[i], dict(e["metadata"])) for i, e in enumerate(entries)]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptIndexError(f"pattern store blob is not consistent: {exc}") from None
        if sorted(index.ids()) != sorted(p.id for p in patterns):
            raise CorruptIndexError("pattern store blob: the index and the pattern list hold different ids")
        store = cls.__new__(cls)
        store.config = cfg
        store._index = index
        store._patterns = {p.id: p for p in patterns}
        return store

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the store to ``path`` atomically."""
        container.write_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PatternStore:
        """Read a store written by :meth:`save`."""
        with open(path, "rb") as handle:
            return cls.from_bytes(handle.read())

    def close(self) -> None:
        """Release the index."""
        self._index.close()
