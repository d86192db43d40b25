"""ruvector-lab: a research workbench for vector search, the Python realisation of RuVector's ADR-006.

>>> import ruvector_lab as rl
>>> rt = rl.Runtime.initialize()           # native (faiss, hnswlib, ruvector, usearch), then wasm, then numpy
>>> idx = rl.HnswIndex(rl.HnswConfig(dimensions=384))

Every name but the exceptions is imported on first use: optional parts (embeddings, quantization, learning) so a
missing dependency only disables its part, and the index and runtime so that code importing one subpackage (the
embeddings, the benchmark's dataset readers) runs, and depends on, only what it uses.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    BackendUnavailableError,
    CacheError,
    CorruptIndexError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyIndexError,
    IndexClosedError,
    InvalidIdError,
    InvalidParameterError,
    InvalidTextError,
    InvalidVectorError,
    NotARegularFileError,
    PoolError,
    ResultSchemaError,
    RuvectorLabError,
    UnknownIdError,
)

if TYPE_CHECKING:
    from .embeddings import Embedder, ModelCache
    from .index import HnswIndex
    from .ops import batch_distance, distance, normalize
    from .pool import ArrayPool, PoolStats
    from .quantization import QuantizationConfig, dequantize, quantize
    from .runtime import Runtime
    from .types import METRICS, HnswConfig, IndexStats, SearchBatch, SearchHits, SearchResult

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module that defines it; imported lazily so a missing optional dependency only disables its part
_LAZY: dict[str, str] = {
    "HnswIndex": ".index",
    "batch_distance": ".ops",
    "distance": ".ops",
    "normalize": ".ops",
    "ArrayPool": ".pool",
    "PoolStats": ".pool",
    "Runtime": ".runtime",
    "METRICS": ".types",
    "HnswConfig": ".types",
    "IndexStats": ".types",
    "SearchBatch": ".types",
    "SearchHits": ".types",
    "SearchResult": ".types",
    "Embedder": ".embeddings",
    "ModelCache": ".embeddings",
    "QuantizationConfig": ".quantization",
    "quantize": ".quantization",
    "dequantize": ".quantization",
}


def __getattr__(name: str) -> Any:
    """Import the public names and the optional parts (embeddings, quantization, learning, ...) on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in {"learning", "embeddings", "quantization", "bench", "wasm"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ruvector_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the lazy ones (tab completion in Jupyter lists them before first use)."""
    return sorted(set(globals()) | set(__all__))


__all__ = [  # noqa: RUF022 - grouped: eager names, then the lazy ones
    "METRICS",
    "ArrayPool",
    "BackendError",
    "BackendUnavailableError",
    "CacheError",
    "CorruptIndexError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EmptyIndexError",
    "HnswConfig",
    "HnswIndex",
    "IndexClosedError",
    "IndexStats",
    "InvalidIdError",
    "InvalidParameterError",
    "InvalidTextError",
    "InvalidVectorError",
    "NotARegularFileError",
    "PoolError",
    "PoolStats",
    "ResultSchemaError",
    "Runtime",
    "RuvectorLabError",
    "SearchBatch",
    "SearchHits",
    "SearchResult",
    "UnknownIdError",
    "__version__",
    "batch_distance",
    "distance",
    "normalize",
    "Embedder",
    "ModelCache",
    "QuantizationConfig",
    "dequantize",
    "quantize",
]
