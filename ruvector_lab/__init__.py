"""ruvector-lab: a research workbench for vector search, the Python realisation of RuVector's ADR-006.

>>> import ruvector_lab as rl
>>> rt = rl.Runtime.initialize()           # native (faiss, hnswlib, ruvector), then wasm, then numpy
>>> idx = rl.HnswIndex(rl.HnswConfig(dimensions=384))

Heavy or optional parts (embeddings, quantization, learning) are imported on first use.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from .errors import (
    BackendError,
    BackendUnavailableError,
    CorruptIndexError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyIndexError,
    IndexClosedError,
    InvalidIdError,
    InvalidParameterError,
    InvalidVectorError,
    PoolError,
    RuvectorLabError,
    UnknownIdError,
)
from .index import HnswIndex
from .ops import batch_distance, distance, normalize
from .pool import ArrayPool, PoolStats
from .runtime import Runtime
from .types import METRICS, HnswConfig, IndexStats, SearchResult

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module that defines it; imported lazily so a missing optional dependency only disables its part
_LAZY: dict[str, str] = {
    "Embedder": ".embeddings",
    "ModelCache": ".embeddings",
    "QuantizationConfig": ".quantization",
    "quantize": ".quantization",
    "dequantize": ".quantization",
}


def __getattr__(name: str) -> Any:
    """Import the optional parts (embeddings, quantization, learning, ...) on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in {"learning", "embeddings", "quantization", "bench", "wasm"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ruvector_lab' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 - grouped: eager names, then the lazy ones
    "METRICS",
    "ArrayPool",
    "BackendError",
    "BackendUnavailableError",
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
    "InvalidVectorError",
    "PoolError",
    "PoolStats",
    "Runtime",
    "RuvectorLabError",
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
