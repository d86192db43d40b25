"""Native tier, quantized: the ``ruvector`` package's ``RabitqIndex`` (RuVector's own Rust RaBitQ).

``RabitqIndex`` is RuVector's ``RabitqPlusIndex``: a flat scan of 1-bit RaBitQ codes (random rotation, sign
bits, correction factors) whose best ``rerank_factor * k`` candidates are re-scored exactly against the float
vectors it always keeps. It scores squared L2 only, so this backend serves euclidean (score: the square root)
and cosine on unit vectors (``1 - cos = L2^2 / 2``); dot_product is refused.

``HnswConfig.rerank`` maps onto the library's ``rerank_factor`` as ``ceil(rerank / k)`` (at least 1: with
``rerank=0`` only the ``k`` best code estimates are re-scored). The index has no delete: deleted labels are
filtered out of over-fetched results, and serialization keeps them as the index's own ``.rbpx`` file does.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import numpy as np
import ruvector

from .. import container
from ..distances import from_squared_l2
from ..errors import BackendError, CorruptIndexError, QuantizationError
from ..quantization.rerank import memory_stats, prepare
from ..types import HnswConfig
from .base import IndexBackend, MemoryLayout
from .layout import empty_stats

PAYLOAD_KIND = "ruvector-rabitq-backend"
#: RabitqIndex ids are u32
MAX_LABEL = (1 << 32) - 1


def check_serves(config: HnswConfig) -> None:
    """Raise unless ``config`` asks for RaBitQ under euclidean or cosine."""
    kind = config.quantization.kind if config.quantization is not None else None
    if kind != "rabitq":
        raise BackendError(f"RuvectorRabitqBackend serves rabitq quantization only, not {kind!r}")
    if config.metric == "dot_product":
        raise QuantizationError(
            "ruvector's RabitqIndex scores L2 only: it serves euclidean and cosine, not dot_product"
        )


class RuvectorRabitqBackend(IndexBackend):
    """ruvector.RabitqIndex with tombstones for deletes."""

    name = "ruvector"
    graph = "flat"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """Sign bits plus the float rows it always keeps; the u64 ids passed in and (an estimate) per-vector
        correction factors."""
        extra = empty_stats(cls, config)
        return MemoryLayout(vectors=float(extra["code_bytes_per_vector"] + extra["float_bytes_per_vector"]),
                            ids=8.0, other=8.0, fixed=int(extra.get("fixed_bytes", 0)))

    def __init__(self, config: HnswConfig, index: Any = None) -> None:
        super().__init__(config)
        check_serves(config)
        self._index = index  # built by the first add: RabitqIndex.build needs at least one row
        self._dead: set[int] = set()
        self._count = len(index) if index is not None else 0

    @classmethod
    def check_config(cls, config: HnswConfig) -> None:
        """Refuse dot_product: ruvector's RabitqIndex scores L2 only."""
        check_serves(config)

    @property
    def index(self) -> Any:
        """The underlying ruvector.RabitqIndex (None before the first add)."""
        return self._index

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """The first batch builds the index (seeded rotation), later ones append (the Rust side releases the GIL)."""
        if len(labels) and int(labels.max()) > MAX_LABEL:
            raise BackendError(f"ruvector RabitqIndex ids are u32; label {int(labels.max())} does not fit")
        x = prepare(vectors, self.config.metric)
        ids = labels.astype(np.uint64)
        try:
            if self._index is None:
                self._index = ruvector.RabitqIndex.build(
                    x, ids=ids, rerank_factor=1, seed=int(self.config.quantization.seed)  # type: ignore[union-attr]
                )
            else:
                self._index.add_batch(ids, x)
        except ValueError as exc:
            raise BackendError(f"ruvector RabitqIndex refused the batch: {exc}") from None
        self._count += len(labels)

    def remove(self, labels: np.ndarray) -> None:
        """Tombstone the labels (RabitqIndex has no delete)."""
        self._dead.update(labels.tolist())

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """One Rust search per query with ``rerank_factor = max(1, ceil(rerank / k))``, past the tombstones."""
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        out_l = np.full((len(queries), k), -1, dtype=np.int64)
        if self._index is None:
            return out_d, out_l
        q = prepare(queries, self.config.metric)
        fetch = min(k + len(self._dead), self._count)
        factor = max(1, math.ceil(self.config.rerank / k))
        for row, vector in enumerate(q):
            hits = [(label, score) for label, score in self._index.search(vector, fetch, rerank_factor=factor)
                    if label not in self._dead][:k]
            for col, (label, score) in enumerate(hits):
                out_l[row, col] = label
                out_d[row, col] = score
        found = out_l >= 0
        out_d[found] = from_squared_l2(out_d[found], self.config.metric)  # cosine: L2^2 / 2 on unit rows
        return out_d, out_l

    def to_bytes(self) -> bytes:
        """The index's own ``.rbpx`` file (codes, rotation seed, float vectors) and the tombstones."""
        blob = b""
        if self._index is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "index.rbpx")
                self._index.save(path)
                with open(path, "rb") as handle:
                    blob = handle.read()
        arrays = {"rbpx": np.frombuffer(blob, dtype=np.uint8), "dead": np.array(sorted(self._dead), np.int64)}
        return container.dumps(PAYLOAD_KIND, {"count": self._count}, arrays)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray) -> RuvectorRabitqBackend:
        """Load the ``.rbpx`` file with ruvector; every stored label the facade does not hold is dead."""
        meta, arrays = container.loads(payload, PAYLOAD_KIND)
        if "rbpx" not in arrays:
            raise CorruptIndexError("ruvector rabitq payload lacks its index file")
        index = None
        if arrays["rbpx"].size:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "index.rbpx")
                with open(path, "wb") as handle:
                    handle.write(arrays["rbpx"].tobytes())
                try:
                    index = ruvector.RabitqIndex.load(path)
                except (ValueError, OSError, RuntimeError) as exc:
                    raise CorruptIndexError(f"ruvector could not read its RaBitQ file: {exc}") from None
            if index.dim != config.dimensions:
                raise CorruptIndexError(f"RaBitQ file holds {index.dim}-d vectors, expected {config.dimensions}")
        backend = cls(config, index)
        if backend._count != int(meta.get("count", -1)):
            raise CorruptIndexError("ruvector rabitq payload count does not match its index file")
        if len(live_labels) and (live_labels.min() < 0 or live_labels.max() >= backend._count):
            raise CorruptIndexError("live labels lie outside the ruvector RaBitQ index")
        backend._dead = set(np.setdiff1d(np.arange(backend._count), live_labels).tolist())
        return backend

    def close(self) -> None:
        """Drop the Rust index now."""
        self._index = None

    def stats_extra(self) -> dict[str, Any]:
        """Sign-bit bytes per vector (analytic), the float vectors it always keeps, ruvector's own memory count."""
        d = self.config.dimensions
        live = self._count - len(self._dead)
        return memory_stats(
            "rabitq", d, (d + 7) // 8, True, self.config.rerank, payload_bytes=len(self.to_bytes()), count=live,
            index="ruvector.RabitqIndex",
            library_memory_bytes=int(self._index.memory_bytes) if self._index is not None else 0,
        )
