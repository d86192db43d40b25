"""Native tier, quantized: the ``ruvector`` package's ``RabitqIndex`` (RuVector's own Rust RaBitQ).

``RabitqIndex`` is RuVector's ``RabitqPlusIndex``: a flat scan of 1-bit RaBitQ codes (random rotation, sign
bits, correction factors) whose best ``rerank_factor * k`` candidates are re-scored exactly against the float
vectors it always keeps. It scores squared L2 only, so this backend serves euclidean (score: the square root)
and cosine on unit vectors (``1 - cos = L2^2 / 2``); dot_product is refused.

``HnswConfig.rerank`` maps onto the library's ``rerank_factor`` as ``ceil(rerank / k)`` (at least 1: with
``rerank=0`` only the ``k`` best code estimates are re-scored). The index has no delete: deleted labels are
filtered out of over-fetched results. Serialization keeps the live rows in a library-owned row payload and a
load rebuilds the index from them (bit for bit the same index): ruvector's own ``.rbpx`` reader trusts its
header, and a crafted file made it abort the process or return rows outside the index (issue 18).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import ruvector

from .. import container
from ..distances import from_squared_l2
from ..errors import BackendError, CorruptIndexError, QuantizationError
from ..quantization.rerank import memory_stats, prepare
from ..types import HnswConfig
from .base import IndexBackend, MemoryLayout, check_rows
from .layout import empty_stats

PAYLOAD_KIND = "ruvector-rabitq-backend"
#: payload format: 2 holds the live rows (labels, vectors); 1 held ruvector's own ``.rbpx`` file (read by
#: :func:`parse_rbpx`, never by ruvector)
PAYLOAD_FORMAT = 2
#: RabitqIndex ids are u32
MAX_LABEL = (1 << 32) - 1
#: ``.rbpx`` v1 header, as ruvector 0.1.4 writes it: magic, version, dim, seed, rerank_factor, row count; then
#: ``count`` records of (u32 id, ``dim`` float32). The codes are not stored: ruvector re-encodes on load.
_RBPX_HEADER = struct.Struct("<8sIIQII")
_RBPX_MAGIC = b"rbpx0001"


def parse_rbpx(raw: np.ndarray, dimensions: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` of a format-1 payload's ``.rbpx`` bytes, whose layout must add up exactly;
    :class:`CorruptIndexError` otherwise. The rows are checked by the caller like any row payload."""
    blob = raw.tobytes() if raw.dtype == np.uint8 and raw.ndim == 1 else b""
    if len(blob) < _RBPX_HEADER.size:
        raise CorruptIndexError(f"ruvector rabitq payload's .rbpx file is {len(blob)} bytes, shorter than its header")
    magic, version, dim, _seed, _rerank, count = _RBPX_HEADER.unpack_from(blob, 0)
    if magic != _RBPX_MAGIC or version != 1:
        raise CorruptIndexError(f".rbpx file has magic {magic!r} version {version}, expected {_RBPX_MAGIC!r} 1")
    if dim != dimensions:
        raise CorruptIndexError(f".rbpx file holds {dim}-d vectors, expected {dimensions}")
    record = np.dtype([("id", "<u4"), ("vector", "<f4", (dimensions,))])
    if len(blob) != _RBPX_HEADER.size + count * record.itemsize:
        raise CorruptIndexError(f".rbpx file is {len(blob)} bytes, not what {count} rows of {dim} dimensions take")
    rows = np.frombuffer(blob, dtype=record, offset=_RBPX_HEADER.size)
    return rows["id"].astype(np.int64), rows["vector"].reshape(count, dimensions).astype(np.float32)


def check_serves(config: HnswConfig) -> None:
    """Raise unless ``config`` asks for 1-bit, randomly rotated RaBitQ (the only codes RabitqIndex has) under
    euclidean or cosine; ``graph`` does not matter to a flat scan."""
    kind = config.quantization.kind if config.quantization is not None else None
    if kind != "rabitq":
        raise BackendError(f"RuvectorRabitqBackend serves rabitq quantization only, not {kind!r}")
    # a flat scan: what its graph would be built from does not arise, so graph='float' is accepted
    config.quantization.check_served(  # type: ignore[union-attr]
        "ruvector", "RabitqIndex codes one sign bit per dimension after its own seeded random rotation, and has "
                    "no setting for more bits or for no rotation")
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
        if len(labels) and int(labels.min()) < self._count:  # only after loading a file that lied about its rows
            raise BackendError(f"label {int(labels.min())} is already among the {self._count} rows of the RaBitQ "
                               "index (a loaded file held more rows than its index header has labels)")
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
        """Every row the index holds (the deleted ones too, so a load scans the very same rows) as it holds them
        (unit length under cosine), under their labels: a row payload the library parses itself, so no native
        reader ever sees a stored file (format 2; see :meth:`from_bytes`)."""
        labels = np.empty(0, np.int64)
        vectors = np.empty((0, self.config.dimensions), np.float32)
        if self._index is not None:
            items = self._index.export_items()
            if items:
                labels = np.fromiter((label for label, _ in items), dtype=np.int64, count=len(items))
                vectors = np.stack([vector for _, vector in items]).astype(np.float32, copy=False)
        meta = {"format": PAYLOAD_FORMAT, "metric": self.config.metric}
        return container.dumps(PAYLOAD_KIND, meta, {"labels": labels, "vectors": vectors})

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> RuvectorRabitqBackend:
        """Rebuild the index from the payload's rows, checked like every row payload (:func:`check_rows`); every
        stored label the facade does not hold is dead.

        ``RabitqIndex.build`` with the config's seed gives the index bit for bit (its codes are a function of
        dimension, seed and rows, and a build equals a build plus appends), so nothing is lost by never handing
        ruvector a stored file; ``trust_native`` changes nothing. A format-1 payload (ruvector's own ``.rbpx``
        file, as ruvector-lab wrote it before) is parsed in NumPy (:func:`parse_rbpx`), never by ruvector.
        """
        meta, arrays = container.loads(payload, PAYLOAD_KIND)
        if "rbpx" in arrays:  # format 1: all rows ever added, the dead ones included
            labels, vectors = parse_rbpx(arrays["rbpx"], config.dimensions)
        elif meta.get("format") == PAYLOAD_FORMAT:
            if meta.get("metric") != config.metric:  # rows under cosine are unit length, raw otherwise
                raise CorruptIndexError(f"ruvector rabitq payload was written under the {meta.get('metric')!r} "
                                        f"metric, the index header says {config.metric!r}")
            labels, vectors = arrays.get("labels"), arrays.get("vectors")
        else:
            raise CorruptIndexError(f"ruvector rabitq payload of format {meta.get('format')!r}; this version reads "
                                    f"format {PAYLOAD_FORMAT} (rows) and 1 (an .rbpx file)")
        live = np.asarray(live_labels, dtype=np.int64)
        n = len(labels) if isinstance(labels, np.ndarray) and labels.ndim == 1 else 0
        if n > MAX_LABEL + 1:
            raise CorruptIndexError(f"ruvector rabitq payload holds {n} rows; RabitqIndex ids are u32")
        # the facade labels rows 0, 1, 2, ... and the index keeps every row it was given: the stored labels are
        # exactly 0..n-1, the live ones among them, the rest deleted
        dead = np.setdiff1d(np.arange(n, dtype=np.int64), live)
        labels, vectors = check_rows(PAYLOAD_KIND, labels, vectors, config, np.concatenate([live, dead]))
        index = None
        if len(labels):
            order = np.argsort(labels, kind="stable")  # insertion order: labels grow as rows are added
            try:  # the rows as stored (already prepared): a second normalisation would move their last bits
                index = ruvector.RabitqIndex.build(
                    np.ascontiguousarray(vectors[order]), ids=labels[order].astype(np.uint64), rerank_factor=1,
                    seed=int(config.quantization.seed),  # type: ignore[union-attr]
                )
            except ValueError as exc:
                raise CorruptIndexError(f"ruvector refused the payload's rows: {exc}") from None
        backend = cls(config, index)
        backend._dead = set(dead.tolist())
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
