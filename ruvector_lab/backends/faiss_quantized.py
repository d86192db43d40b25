"""Native tier, quantized: faiss HNSW graphs whose nodes hold codes instead of float vectors.

One class serves every kind that ``HnswConfig(quantization=...)`` names:

=========  =====================================  ==========================================================
kind       faiss index                            codes
=========  =====================================  ==========================================================
scalar     ``IndexHNSWSQ`` (``QT_8bit``)          d bytes; faiss trains one min/max per *dimension*
int4       ``IndexHNSWSQ`` (``QT_4bit``)          d/2 bytes; per-dimension range, as above
product    ``IndexHNSWPQ`` (m subspaces, 8 bits)  m bytes; codebooks from the library's ProductCodec
binary     ``IndexBinaryHNSW`` (Hamming)          d/8 bytes; the library's BinaryCodec sign bits (cosine)
rabitq     ``IndexHNSWRaBitQ`` (1 bit, L2 only)   d/8 bytes + 8 bytes of correction factors
=========  =====================================  ==========================================================

faiss' scalar quantizers keep one range per dimension (trained on the first batch), not RuVector's
per-vector min/max: these are faiss' own codecs and the stats report their real code size. The first batch
added trains what needs training (up to ``train_size`` rows): add a representative batch first.

Cosine runs as L2 on unit vectors (``1 - cos = L2^2 / 2``): faiss builds poor HNSW graphs over PQ codes
under inner product, and its RaBitQ HNSW takes L2 only. dot_product runs as inner product, and cannot be
served by binary or RaBitQ codes.
With ``rerank=K`` the float vectors are kept beside the graph and the ``K`` best graph candidates are
re-scored exactly; without it the scores are faiss' estimates (binary: ``2 * hamming / d``, the cosine
distance between the two sign vectors).
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np

from .. import container
from ..distances import from_dots, from_squared_l2
from ..errors import BackendError, CorruptIndexError, QuantizationError
from ..quantization.base import make_codec
from ..quantization.product import KSUB
from ..quantization.rerank import Rows, check_recorded_rerank, memory_stats, prepare, rerank
from ..types import HnswConfig
from ..validation import stored_row_flaw
from . import faiss_format
from .base import IndexBackend, MemoryLayout, check_recorded_metric
from .faiss_common import LIVE_FLAG_BYTES, LiveBitmap, graph_bytes_per_node
from .layout import empty_stats

logger = logging.getLogger(__name__)

PAYLOAD_KIND = "faiss-quantized-backend"
#: kinds whose codes hold no magnitude, so inner products cannot be estimated
_NO_DOT = ("binary", "rabitq")


def check_serves(config: HnswConfig) -> None:
    """Raise unless faiss has an index for ``config.quantization`` under ``config.metric``."""
    if config.quantization is None:
        raise BackendError("FaissQuantizedBackend needs HnswConfig(quantization=...)")
    kind = config.quantization.kind
    if kind in _NO_DOT and config.metric == "dot_product":
        raise QuantizationError(f"{kind} codes cannot serve the 'dot_product' metric; they serve cosine"
                                + (" and euclidean" if kind == "rabitq" else ""))
    if kind == "binary" and config.metric != "cosine":
        raise QuantizationError(f"binary codes cannot serve the {config.metric!r} metric; they serve cosine")
    if kind == "product" and config.dimensions % config.quantization.m:  # type: ignore[union-attr]
        raise QuantizationError(
            f"product quantization needs m to divide the dimension: m={config.quantization.m} "  # type: ignore
            f"does not divide {config.dimensions}"
        )


def build_index(config: HnswConfig) -> Any:
    """A new, untrained faiss HNSW index of the kind ``config.quantization`` names."""
    check_serves(config)
    q = config.quantization
    d, m = config.dimensions, config.m
    # cosine as L2 on unit vectors: faiss builds poor HNSW graphs over PQ codes under inner product
    metric = faiss.METRIC_INNER_PRODUCT if config.metric == "dot_product" else faiss.METRIC_L2
    if q.kind == "binary":  # type: ignore[union-attr]
        index = faiss.IndexBinaryHNSW(d + (-d) % 8, m)  # bits, whole bytes (the codec pads with zero bits)
    elif q.kind == "rabitq":  # type: ignore[union-attr]
        index = faiss.IndexHNSWRaBitQ(d, m, 1, faiss.METRIC_L2)
    elif q.kind == "product":  # type: ignore[union-attr]
        index = faiss.IndexHNSWPQ(d, q.m, m, 8, metric)  # type: ignore[union-attr]
    else:
        qtype = faiss.ScalarQuantizer.QT_8bit if q.kind == "scalar" else faiss.ScalarQuantizer.QT_4bit  # type: ignore
        index = faiss.IndexHNSWSQ(d, qtype, m, metric)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
    return index


#: faiss index type code per quantization kind (``index_write.cpp``)
_FOURCC = {"scalar": b"IHNs", "int4": b"IHNs", "product": b"IHNp", "rabitq": b"IHNr"}


def _parse_faiss(config: HnswConfig, blob: bytes) -> faiss_format.FaissPayload:
    """Parse and check faiss' serialization of the index ``build_index(config)`` makes, before faiss reads it."""
    q = config.quantization
    kind = q.kind  # type: ignore[union-attr]
    d = config.dimensions
    if kind == "binary":
        return faiss_format.parse_binary_index(blob, d=d + (-d) % 8, m=config.m,
                                               ef_construction=config.ef_construction)
    metric = faiss.METRIC_INNER_PRODUCT if config.metric == "dot_product" else faiss.METRIC_L2
    parsed = faiss_format.parse_index(blob, fourcc=_FOURCC[kind], d=d, metric=int(metric), m=config.m,
                                      ef_construction=config.ef_construction)
    fields = parsed.fields
    if kind in ("scalar", "int4") and fields["qtype"] != (
            faiss_format.QT_8BIT if kind == "scalar" else faiss_format.QT_4BIT):
        raise CorruptIndexError(f"faiss payload's scalar quantizer type {fields['qtype']} is not {kind}")
    if kind == "product" and fields["pq_m"] != q.m:  # type: ignore[union-attr]
        raise CorruptIndexError(f"faiss payload's product quantizer has {fields['pq_m']} subspaces, "
                                f"the configuration {q.m}")  # type: ignore[union-attr]
    return parsed


def _rebuild(config: HnswConfig, parsed: faiss_format.FaissPayload, vectors: np.ndarray | None) -> Any:
    """A new faiss index for ``config`` holding the parsed trained state and rows, no faiss reader involved:
    binary codes are added as they are; other kinds re-encode the kept float rows, or else the decoded codes
    (which encode back to the same codes, up to float rounding)."""
    index = build_index(config)
    codes = parsed.parts["codes"]
    if config.quantization.kind == "binary":  # type: ignore[union-attr]
        if parsed.ntotal:
            index.add(np.ascontiguousarray(codes))
        return index
    storage = faiss.downcast_index(index.storage)
    kind = config.quantization.kind  # type: ignore[union-attr]
    if kind in ("scalar", "int4"):
        faiss.copy_array_to_vector(np.array(parsed.parts["trained"]), storage.sq.trained)
    elif kind == "product":
        faiss.copy_array_to_vector(np.array(parsed.parts["centroids"]), storage.pq.centroids)
        storage.pq.compute_sdc_table()  # the graph build needs it: faiss aborts the process without
    else:
        faiss.copy_array_to_vector(np.array(parsed.parts["center"]), storage.center)
        storage.qb = parsed.fields["qb"]
    storage.is_trained = True
    index.is_trained = True
    if parsed.ntotal:
        rows = vectors if vectors is not None else storage.sa_decode(
            np.ascontiguousarray(codes).reshape(parsed.ntotal, -1))
        index.add(np.ascontiguousarray(rows, dtype=np.float32))
    return index


#: rows decoded at a time when a loaded index's codes are checked (bounds the temporary float array)
_DECODE_CHUNK = 8192


def _check_decoded(storage: Any, parsed: faiss_format.FaissPayload) -> None:
    """Refuse codes that decode to a row no insert accepts (non-finite, or a squared norm past float32).

    The parser checks the trained state, but a RaBitQ code carries its own scale factors, and finite factors
    or SQ ranges can still decode to rows whose distances overflow; decoding is arithmetic over checked
    lengths, so it is safe to run on any parsed payload.
    """
    codes = np.ascontiguousarray(parsed.parts["codes"]).reshape(parsed.ntotal, -1)
    for start in range(0, parsed.ntotal, _DECODE_CHUNK):
        with np.errstate(over="ignore", invalid="ignore"):
            flaw = stored_row_flaw(storage.sa_decode(codes[start : start + _DECODE_CHUNK]))
        if flaw is not None:
            raise CorruptIndexError(f"faiss payload holds codes that decode to a vector no insert accepts: {flaw}")


class FaissQuantizedBackend(LiveBitmap, IndexBackend):
    """A faiss HNSW graph over codes, deletes held in a live bitmap, optional exact rerank."""

    name = "faiss"
    graph = "hnsw"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """Codes (plus float rows kept for rerank) as an empty index reports them, the same graph as
        IndexHNSWFlat, the live flag; fixed: the trained state, and for PQ the symmetric distance table the graph
        build uses (``M * 256 * 256`` floats), for SQ the per-dimension min and range."""
        extra = empty_stats(cls, config)
        fixed = int(extra.get("fixed_bytes", 0))
        kind = config.quantization.kind  # type: ignore[union-attr]
        if kind == "product":
            fixed += config.quantization.m * KSUB * KSUB * 4  # type: ignore[union-attr]
        elif kind in ("scalar", "int4"):
            fixed += 2 * config.dimensions * 4  # 0 until trained, so empty_stats does not count it
        return MemoryLayout(vectors=float(extra["code_bytes_per_vector"] + extra["float_bytes_per_vector"]),
                            graph=graph_bytes_per_node(config.m), other=LIVE_FLAG_BYTES, fixed=fixed)

    def __init__(self, config: HnswConfig, index: Any = None) -> None:
        super().__init__(config)
        if config.quantization is None:
            raise BackendError("FaissQuantizedBackend needs HnswConfig(quantization=...)")
        self._kind = config.quantization.kind
        self._index = index if index is not None else build_index(config)
        self._binary = self._kind == "binary"
        self._codec = make_codec(config.quantization, config.dimensions, metric="cosine") if self._binary else None
        self._storage = (faiss.downcast_IndexBinary if self._binary else faiss.downcast_index)(self._index.storage)
        self._floats = Rows(config.dimensions, np.float32) if config.rerank else None
        self._live_rows = Rows(1, np.bool_)  # grows by doubling: one-by-one inserts stay linear
        self._live_rows.append(np.ones((self._index.ntotal, 1), dtype=bool))
        self._live = self._live_rows.view[:, 0]
        self._n_dead = 0
        self._selector: Any = None
        self._bitmap: np.ndarray | None = None

    @classmethod
    def check_config(cls, config: HnswConfig) -> None:
        """Refuse a metric or shape faiss' index for this kind does not serve."""
        check_serves(config)

    @property
    def index(self) -> Any:
        """The underlying faiss index."""
        return self._index

    # ------------------------------------------------------------------ building
    def _train(self, x: np.ndarray) -> None:
        q = self.config.quantization
        if len(x) > q.train_size:  # type: ignore[union-attr]
            rng = np.random.default_rng(q.seed)  # type: ignore[union-attr]
            x = x[np.sort(rng.choice(len(x), q.train_size, replace=False))]  # type: ignore[union-attr]
        if self._kind == "product":
            # the library's codebooks (same k-means as ProductCodec), installed in faiss' PQ
            codec = make_codec(q, self.config.dimensions, metric=self.config.metric).train(x)  # type: ignore
            faiss.copy_array_to_vector(codec.codebooks.ravel(), self._storage.pq.centroids)  # type: ignore
            # the graph is built with symmetric code-to-code distances: faiss aborts the process without them
            self._storage.pq.compute_sdc_table()
            self._storage.is_trained = True
            self._index.is_trained = True
        else:
            self._index.train(x)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        if self._binary:
            return self._codec.encode(x)  # type: ignore[union-attr]
        return x

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append to the graph (faiss numbers rows 0..ntotal-1: exactly the facade's labels)."""
        if len(labels) and int(labels[0]) != self._index.ntotal:
            raise BackendError(f"faiss labels must continue at {self._index.ntotal}, got {int(labels[0])}")
        x = prepare(vectors, self.config.metric)
        if not self._binary and not self._index.is_trained:
            if len(x) < 256:
                logger.warning("training faiss %s on a first batch of only %d rows", self._kind, len(x))
            self._train(x)
        self._index.add(self._encode(x))
        if self._floats is not None:
            self._floats.append(x)
        self._live_rows.append(np.ones((len(labels), 1), dtype=bool))
        self._live = self._live_rows.view[:, 0]
        self._refresh_selector()


    # ------------------------------------------------------------------ searching
    def _graph_search(self, q: np.ndarray, fetch: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, fetch)
        if self._selector is not None:
            params.sel = self._selector
        distances, labels = self._index.search(self._encode(q), fetch, params=params)
        short = np.flatnonzero((labels < 0).any(axis=1))
        if len(short):
            # the graph could not reach enough live nodes (deletions strand some): scan the codes instead,
            # fetching past the dead ones because not every faiss storage honours a selector
            wide = min(fetch + self._n_dead, self._index.ntotal)
            d_all, l_all = self._storage.search(self._encode(q[short]), wide)
            for row, d_row, l_row in zip(short, d_all, l_all, strict=True):
                keep = (l_row >= 0) & self._live[np.maximum(l_row, 0)]
                n = min(fetch, int(keep.sum()))
                distances[row, :n], labels[row, :n] = d_row[keep][:n], l_row[keep][:n]
                distances[row, n:], labels[row, n:] = 0, -1
        return distances, labels.astype(np.int64, copy=False)

    def _scores(self, raw: np.ndarray) -> np.ndarray:
        """faiss' raw estimates in the library's convention."""
        raw = raw.astype(np.float32)
        if self._binary:
            return raw * np.float32(2.0 / self.config.dimensions)
        if self.config.metric == "dot_product":
            return from_dots(raw, "dot_product")
        return from_squared_l2(raw, self.config.metric)  # squared L2 estimates; on unit vectors 1 - cos = L2^2 / 2

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Graph search over codes; with rerank, ``max(k, rerank)`` candidates re-scored exactly."""
        q = prepare(queries, self.config.metric)
        live_count = len(self._live) - self._n_dead
        fetch = min(max(k, self.config.rerank), live_count)
        if fetch == 0:
            return np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        raw, labels = self._graph_search(q, fetch, ef_search)
        if self._floats is not None:
            return rerank(q, labels, self._floats.view, np.arange(len(self._live)), self.config.metric, k)
        scores = self._scores(raw)
        scores[labels < 0] = np.inf
        out_d = np.full((len(q), k), np.inf, dtype=np.float32)
        out_l = np.full((len(q), k), -1, dtype=np.int64)
        for row in range(len(q)):
            order = np.lexsort((labels[row], scores[row]))[:k]  # faiss' heap order is not stable on ties
            out_d[row, : len(order)], out_l[row, : len(order)] = scores[row, order], labels[row, order]
        out_l[~np.isfinite(out_d)] = -1
        return out_d, out_l

    # ------------------------------------------------------------------ persistence
    def _faiss_bytes(self) -> np.ndarray:
        blob = faiss.serialize_index_binary(self._index) if self._binary else faiss.serialize_index(self._index)
        return np.asarray(blob, dtype=np.uint8)

    def to_bytes(self) -> bytes:
        """faiss' own serialization of graph and codes, plus the float vectors when kept for rerank; the kind,
        rerank depth and metric they were written under."""
        arrays = {"faiss": self._faiss_bytes()}
        if self._floats is not None:
            arrays["vectors"] = self._floats.view
        meta = {"kind": self._kind, "rerank": int(self.config.rerank), "metric": self.config.metric}
        return container.dumps(PAYLOAD_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> FaissQuantizedBackend:
        """Check faiss' payload (:mod:`.faiss_format`: index and storage types for this kind and metric, every
        length field, the graph, the trained state), load graph and codes with faiss, then mark every label the
        facade does not hold as dead. With ``trust_native=False`` faiss reads nothing of it: a new index gets
        the stored trained state and is rebuilt from the kept float rows, or else from the decoded codes."""
        meta, arrays = container.loads(payload, PAYLOAD_KIND)
        if config.quantization is None or meta.get("kind") != config.quantization.kind or "faiss" not in arrays:
            raise CorruptIndexError("faiss quantized payload does not match the configured quantization")
        check_recorded_rerank(meta, config.rerank, "faiss quantized")
        if "metric" in meta:  # faiss stores cosine and euclidean codes alike, as L2; payloads before it lack it
            check_recorded_metric("faiss quantized", meta, config)
        check_serves(config)
        raw = arrays["faiss"].copy()
        parsed = _parse_faiss(config, raw.tobytes())
        vectors = arrays.get("vectors")
        if config.rerank and (vectors is None or vectors.shape != (parsed.ntotal, config.dimensions)):
            raise CorruptIndexError("faiss quantized payload lacks the float vectors its rerank needs")
        flaw = stored_row_flaw(vectors) if vectors is not None else None
        if flaw is not None:  # the insert rule: finite, with a finite float32 squared norm
            raise CorruptIndexError(f"faiss quantized payload holds a float vector no insert accepts: {flaw}")
        if not trust_native:
            index = _rebuild(config, parsed, vectors if config.rerank else None)
        else:
            try:
                index = faiss.deserialize_index_binary(raw) if config.quantization.kind == "binary" else (
                    faiss.deserialize_index(raw))
            except RuntimeError as exc:
                raise CorruptIndexError(f"faiss could not read the index payload: {exc}") from None
        expected = type(build_index(config))
        if type(index) is not expected:
            raise CorruptIndexError(f"faiss payload holds a {type(index).__name__}, expected {expected.__name__}")
        if config.quantization.kind != "binary":
            _check_decoded(faiss.downcast_index(index.storage), parsed)
        backend = cls(config, index)
        if backend._floats is not None:
            backend._floats.append(vectors.astype(np.float32))  # type: ignore[union-attr]
        if len(live_labels) and (live_labels.min() < 0 or live_labels.max() >= index.ntotal):
            raise CorruptIndexError("live labels lie outside the faiss index")
        dead = np.setdiff1d(np.arange(index.ntotal, dtype=np.int64), live_labels)
        if len(dead):
            backend.remove(dead)
        return backend

    def close(self) -> None:
        """Drop the faiss index now rather than at garbage collection."""
        self._index = self._storage = self._selector = None

    # ------------------------------------------------------------------ reporting
    def _fixed_bytes(self) -> int:
        """Trained state shared by all vectors: SQ ranges, PQ codebooks, RaBitQ centre."""
        if self._kind == "product":
            return int(self._storage.pq.M * KSUB * self._storage.pq.dsub * 4)
        if self._kind in ("scalar", "int4"):
            return int(self._storage.sq.trained.size() * 4)
        if self._kind == "rabitq":
            return int(self._storage.center.size() * 4)
        return 0

    def stats_extra(self) -> dict[str, Any]:
        """Code bytes per vector (faiss' code size), float bytes kept, trained state, measured payload."""
        return memory_stats(
            self._kind, self.config.dimensions, int(self._storage.code_size), self._floats is not None,
            self.config.rerank, fixed_bytes=self._fixed_bytes(), payload_bytes=len(self.to_bytes()),
            count=len(self._live) - self._n_dead, index=type(self._index).__name__,
        )
