"""Configuration and result types shared by the whole library.

The metric names and their check live in :mod:`.distances`, the integer check in :mod:`.validation`; both are
re-exported here, where users have imported them from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .distances import METRICS, Metric, check_metric
from .errors import InvalidParameterError
from .validation import check_positive_int

if TYPE_CHECKING:  # imported on first use at run time: ``import ruvector_lab`` leaves the quantization package alone
    from .quantization.config import QuantizationConfig

__all__ = [
    "METRICS",
    "HnswConfig",
    "IndexStats",
    "Metric",
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
        check_positive_int("dimensions", self.dimensions)
        check_positive_int("m", self.m, minimum=2)
        check_positive_int("ef_construction", self.ef_construction)
        check_positive_int("ef_search", self.ef_search)
        check_metric(self.metric)
        check_positive_int("rerank", self.rerank, minimum=0)
        if self.quantization is not None:
            from .quantization.config import QuantizationConfig

            if isinstance(self.quantization, dict):
                object.__setattr__(self, "quantization", QuantizationConfig.from_dict(self.quantization))
            elif not isinstance(self.quantization, QuantizationConfig):
                raise InvalidParameterError(
                    f"quantization must be a QuantizationConfig or None, got {type(self.quantization).__name__}"
                )
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
