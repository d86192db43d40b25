"""Quantized flat search: every query scores every stored code (asymmetric distance), optionally re-scored.

Serves ``HnswConfig(quantization=...)`` on the numpy and wasm tiers with the library's own codecs of
RuVector's kinds (scalar, int4, binary, product); rabitq is refused here (faiss and ruvector serve it). The
index holds one code row per vector; with ``rerank=K`` it also keeps the float vectors and re-scores the
``K`` best code-ranked candidates exactly, so returned scores are exact. Without rerank the scores are the
codec's asymmetric distances (float query against codes). Every codec variant (4-bit PQ, OPQ) is served, on both
tiers, through the codec itself: no WASM module scores codes here.

Product codebooks are trained on the first batch added (up to ``train_size`` rows): add a representative
batch first. Under cosine, vectors are normalised before they are encoded.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from .. import container
from ..errors import BackendError, CorruptIndexError
from ..quantization.base import Codec, make_codec
from ..quantization.rerank import Rows, check_recorded_rerank, memory_stats, prepare, rerank
from ..types import HnswConfig
from ..validation import stored_row_flaw
from .base import IndexBackend, MemoryLayout
from .layout import ROW_MAP_PER_VECTOR, empty_stats

logger = logging.getLogger(__name__)

PAYLOAD_KIND = "quantized-flat-backend"
_QUERY_BLOCK = 64  # queries scored together: bounds the (block x n) score matrix


class QuantizedFlatBackend(IndexBackend):
    """Flat scan over codes of one :class:`~ruvector_lab.quantization.Codec`, float rows kept only for rerank."""

    name = "numpy"
    graph = "flat"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """Codes (plus float rows kept for rerank), labels (int64), live flags (bool), the ``_row_of`` dict;
        fixed: the codec's codebooks."""
        extra = empty_stats(cls, config)
        return MemoryLayout(vectors=float(extra["code_bytes_per_vector"] + extra["float_bytes_per_vector"]),
                            ids=8.0 + ROW_MAP_PER_VECTOR, other=1.0, fixed=int(extra.get("fixed_bytes", 0)))
    #: which code runs the scan (reported in stats)
    scan: ClassVar[str] = "numpy"

    def __init__(self, config: HnswConfig, codec: Codec | None = None) -> None:
        super().__init__(config)
        if config.quantization is None:
            raise BackendError("QuantizedFlatBackend needs HnswConfig(quantization=...)")
        self._codec = codec or make_codec(config.quantization, config.dimensions, metric=config.metric)
        self._codes = Rows(self._codec.code_size, np.uint8)
        self._floats = Rows(config.dimensions, np.float32) if config.rerank else None
        self._labels = Rows(1, np.int64)
        self._live = Rows(1, np.bool_)
        self._row_of: dict[int, int] = {}
        self._n_live = 0

    @classmethod
    def check_config(cls, config: HnswConfig) -> None:
        """Refuse a plain float config or a codec that cannot serve the metric (the codec's own checks)."""
        if config.quantization is None:
            raise BackendError(f"{cls.__name__} needs HnswConfig(quantization=...)")

    @property
    def codec(self) -> Codec:
        """The codec whose codes this index scans."""
        return self._codec

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Encode and append; the first batch trains a codec that needs training (PQ codebooks)."""
        x = prepare(vectors, self.config.metric)
        if not self._codec.is_trained:
            if len(x) < 256:
                logger.warning("training %s codebooks on a first batch of only %d rows", self._codec.kind, len(x))
            self._codec.train(x)
        start = self._codes.count
        self._codes.append(self._codec.encode(x))
        if self._floats is not None:
            self._floats.append(x)
        self._labels.append(labels.reshape(-1, 1))
        self._live.append(np.ones((len(labels), 1), dtype=np.bool_))
        self._row_of.update(zip(labels.tolist(), range(start, start + len(labels)), strict=True))
        self._n_live += len(labels)

    def remove(self, labels: np.ndarray) -> None:
        """Clear the live bit of each label's row."""
        live = self._live.view
        for label in labels.tolist():
            live[self._row_of.pop(label), 0] = False
        self._n_live -= len(labels)

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """Score all codes, keep the best ``k`` (or ``rerank`` for exact re-scoring); ef_search is unused."""
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        out_l = np.full((len(queries), k), -1, dtype=np.int64)
        k_eff = min(k, self._n_live)
        if k_eff == 0:
            return out_d, out_l
        q = prepare(queries, self.config.metric)
        codes, live, labels = self._codes.view, self._live.view[:, 0], self._labels.view[:, 0]
        fetch = min(max(k_eff, self.config.rerank), self._n_live)
        for start in range(0, len(q), _QUERY_BLOCK):
            block = q[start : start + _QUERY_BLOCK]
            scores = self._codec.distance(block, codes)
            scores[:, ~live] = np.inf
            top = np.argpartition(scores, fetch - 1, axis=1)[:, :fetch] if fetch < len(labels) else (
                np.broadcast_to(np.arange(len(labels)), (len(block), len(labels)))
            )
            rows = slice(start, start + len(block))
            if self._floats is not None:
                top = np.where(live[top], top, -1)
                out_d[rows], out_l[rows] = rerank(block, top, self._floats.view, labels, self.config.metric, k)
                continue
            for i, cand in enumerate(top):
                cand = cand[live[cand]]
                order = np.lexsort((labels[cand], scores[i, cand]))[:k_eff]
                out_d[start + i, : len(order)] = scores[i, cand[order]]
                out_l[start + i, : len(order)] = labels[cand[order]]
        return out_d, out_l

    def to_bytes(self) -> bytes:
        """The codec (with codebooks), live labels, their codes and, when kept, their float vectors."""
        live = self._live.view[:, 0]
        arrays = {
            "codec": np.frombuffer(self._codec.to_bytes(), dtype=np.uint8),
            "labels": self._labels.view[live, 0],
            "codes": self._codes.view[live],
        }
        if self._floats is not None:
            arrays["vectors"] = self._floats.view[live]
        return container.dumps(PAYLOAD_KIND, {"rerank": int(self.config.rerank)}, arrays)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> QuantizedFlatBackend:
        """Rebuild from :meth:`to_bytes`; the codec must match the config and the labels the facade's
        (``trust_native`` changes nothing: codes and rows are parsed by the library itself)."""
        meta, arrays = container.loads(payload, PAYLOAD_KIND)
        check_recorded_rerank(meta, config.rerank, "quantized")
        if not {"codec", "labels", "codes"} <= set(arrays):
            raise CorruptIndexError("quantized payload lacks its codec, labels or codes")
        codec = Codec.from_bytes(arrays["codec"].tobytes())
        if codec.config != config.quantization or codec.dimensions != config.dimensions or (
            codec.metric != config.metric
        ):
            raise CorruptIndexError(
                f"the stored codec ({codec.config.kind}, {codec.dimensions}-d, {codec.metric!r} metric) does not "
                f"match the index header ({config.quantization.kind}, {config.dimensions}-d, "  # type: ignore[union-attr]
                f"{config.metric!r} metric)")
        labels, codes = arrays["labels"], arrays["codes"]
        vectors = arrays.get("vectors")
        if codes.shape != (len(labels), codec.code_size) or (config.rerank and (
                vectors is None or vectors.shape != (len(labels), config.dimensions))):
            raise CorruptIndexError("quantized payload arrays do not have the configured shapes")
        if codes.dtype != np.uint8 or labels.dtype.kind not in "iu" or (
                vectors is not None and vectors.dtype.kind != "f"):
            raise CorruptIndexError("quantized payload arrays do not have the configured dtypes")
        flaw = codec.stored_flaw(np.ascontiguousarray(codes))  # codec parameters in each code, e.g. min/scale
        if flaw is None and vectors is not None:
            vectors = vectors.astype(np.float32)
            flaw = stored_row_flaw(vectors, nonzero=config.metric == "cosine")
        if flaw is not None:
            raise CorruptIndexError(f"quantized payload holds a vector no insert accepts: {flaw}")
        if not np.array_equal(np.sort(labels), np.sort(live_labels)):
            raise CorruptIndexError("quantized payload labels do not match the index's ids")
        backend = cls(config, codec)
        backend._codes.append(codes)
        if backend._floats is not None:
            backend._floats.append(vectors.astype(np.float32))  # type: ignore[union-attr]
        backend._labels.append(labels.astype(np.int64).reshape(-1, 1))
        backend._live.append(np.ones((len(labels), 1), dtype=np.bool_))
        backend._row_of = dict(zip(labels.tolist(), range(len(labels)), strict=True))
        backend._n_live = len(labels)
        return backend

    def stats_extra(self) -> dict[str, Any]:
        """Code, float and codebook bytes per vector, compression ratio, measured payload size."""
        codec = self._codec
        return memory_stats(
            codec.kind, self.config.dimensions, codec.code_size, self._floats is not None, self.config.rerank,
            fixed_bytes=getattr(codec, "codebook_bytes", 0), payload_bytes=len(self.to_bytes()),
            count=self._n_live, scan=self.scan, index="flat codes",
        )


class WasmQuantizedFlatBackend(QuantizedFlatBackend):
    """The same flat code scan on the wasm tier.

    The scan itself runs in NumPy: rvf-wasm's store holds float vectors only and its fp16/int8 tile kernels
    take at most 96 dimensions, so codes are not handed to the module (``stats().extra['scan']`` says so).
    """

    name = "wasm"
