"""Native tier, quantized: faiss HNSW graphs whose nodes hold codes instead of float vectors.

One class serves every kind that ``HnswConfig(quantization=...)`` names:

=========  =======================================  ========================================================
kind       faiss index                              codes
=========  =======================================  ========================================================
scalar     ``IndexHNSWSQ`` (``QT_8bit``)            d bytes; faiss trains one min/max per *dimension*
int4       ``IndexHNSWSQ`` (``QT_4bit``)            d/2 bytes; per-dimension range, as above
product    ``IndexHNSWPQ`` (m subspaces, 8|4 bits)  m or m/2 bytes; codebooks (and the OPQ rotation) from the
                                                    library's ProductCodec
binary     ``IndexBinaryHNSW`` (Hamming)            d/8 bytes; the library's BinaryCodec sign bits (cosine)
rabitq     ``IndexHNSWRaBitQ`` (1..8 bits, L2)      d/8 bytes + 8 bytes of factors (1 bit); extended RaBitQ adds
                                                    d (bits - 1) / 8 bytes and 12 more bytes of factors
=========  =======================================  ========================================================

faiss' scalar quantizers keep one range per dimension (trained on the first batch), not RuVector's
per-vector min/max: these are faiss' own codecs and the stats report their real code size. The first batch
added trains what needs training (up to ``train_size`` rows): add a representative batch first.

**Rotations.** faiss' RaBitQ applies no rotation of its own, so with ``rotation='random'`` (the rabitq default)
the backend rotates rows and queries by the library's seeded orthogonal matrix
(:func:`~ruvector_lab.quantization.rabitq.random_rotation`) before faiss sees them; L2 and cosine are unchanged
by it. This changed the faiss rabitq default: before it, faiss' RaBitQ ran unrotated (what ``rotation='none'``
still does), and a payload written then (it records no rotation) is served unrotated, as written. PQ with
``rotation='opq'`` rotates by the ProductCodec's learned rotation in the same way. The rotation is stored in the
payload and checked on load (shape, finite, orthogonal).

**graph='float'.** The graph is built from the float vectors while the search still walks code distances.
For the float-storage kinds, a float ``IndexFlat`` is kept beside the codes: an add points the HNSW index's
``storage`` at it (the index keeps owning its code storage and never frees the flat), lets faiss link the new
nodes by exact distances, points it back and adds the codes. ``IndexBinaryHNSW`` stores bits, so binary keeps
a float ``IndexHNSWFlat`` instead: each add copies the binary graph into it, adds there, and copies the graph
back (faiss assigns the ``HNSW`` struct by value): two O(graph) copies per add *call*, so add in batches. Either
way the float vectors are kept (one copy, shared with rerank) and serialized, so later inserts, and a load that
never trusts faiss' reader, build from floats again.

Cosine runs as L2 on unit vectors (``1 - cos = L2^2 / 2``): faiss builds poor HNSW graphs over PQ codes
under inner product, and its RaBitQ HNSW takes L2 only. dot_product runs as inner product, and cannot be
served by binary or RaBitQ codes.
With ``rerank=K`` the ``K`` best graph candidates are re-scored exactly against the kept float vectors; without
it the scores are faiss' estimates (binary: ``2 * hamming / d``, the cosine distance between the two sign
vectors).
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np

from .. import container
from ..distances import from_dots, from_squared_l2
from ..errors import BackendError, CorruptIndexError, QuantizationError
from ..quantization.base import checked_rotation, make_codec, random_rotation
from ..quantization.rerank import Rows, check_recorded_rerank, memory_stats, prepare, rerank
from ..types import HnswConfig
from ..validation import MAX_RABITQ_DIMENSIONS, stored_row_flaw
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
    q = config.quantization
    kind = q.kind
    if kind in _NO_DOT and config.metric == "dot_product":
        raise QuantizationError(f"{kind} codes cannot serve the 'dot_product' metric; they serve cosine"
                                + (" and euclidean" if kind == "rabitq" else ""))
    if kind == "binary" and config.metric != "cosine":
        raise QuantizationError(f"binary codes cannot serve the {config.metric!r} metric; they serve cosine")
    if kind == "product" and config.dimensions % q.m:
        raise QuantizationError(
            f"product quantization needs m to divide the dimension: m={q.m} does not divide {config.dimensions}"
        )
    if q.rotation != "none" and config.dimensions > MAX_RABITQ_DIMENSIONS:
        # the d x d rotation grows with the square of the width (the bound the rabitq codec applies too)
        raise QuantizationError(f"a {q.rotation} rotation of {config.dimensions} dimensions is past the "
                                f"{MAX_RABITQ_DIMENSIONS} a d x d rotation is allowed; use rotation='none'")


def _metric(config: HnswConfig) -> int:
    """faiss' metric for ``config``: cosine as L2 on unit vectors (faiss builds poor HNSW graphs over PQ codes
    under inner product), dot_product as inner product."""
    return int(faiss.METRIC_INNER_PRODUCT if config.metric == "dot_product" else faiss.METRIC_L2)


def build_index(config: HnswConfig) -> Any:
    """A new, untrained faiss HNSW index of the kind (and bits) ``config.quantization`` names."""
    check_serves(config)
    q = config.quantization
    d, m = config.dimensions, config.m
    metric = _metric(config)
    if q.kind == "binary":  # type: ignore[union-attr]
        index = faiss.IndexBinaryHNSW(d + (-d) % 8, m)  # bits, whole bytes (the codec pads with zero bits)
    elif q.kind == "rabitq":  # type: ignore[union-attr]
        index = faiss.IndexHNSWRaBitQ(d, m, q.bits, faiss.METRIC_L2)  # type: ignore[union-attr]
    elif q.kind == "product":  # type: ignore[union-attr]
        index = faiss.IndexHNSWPQ(d, q.m, m, q.bits, metric)  # type: ignore[union-attr]
    else:
        qtype = faiss.ScalarQuantizer.QT_8bit if q.kind == "scalar" else faiss.ScalarQuantizer.QT_4bit  # type: ignore
        index = faiss.IndexHNSWSQ(d, qtype, m, metric)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
    return index


#: faiss index type code per quantization kind (``index_write.cpp``)
_FOURCC = {"scalar": b"IHNs", "int4": b"IHNs", "product": b"IHNp", "rabitq": b"IHNr"}


def _parse_faiss(config: HnswConfig, blob: bytes) -> faiss_format.FaissPayload:
    """Parse and check faiss' serialization of the index ``build_index(config)`` makes, before faiss reads it:
    a PQ or RaBitQ storage of other bits than the configuration's is refused."""
    q = config.quantization
    kind = q.kind  # type: ignore[union-attr]
    d = config.dimensions
    if kind == "binary":
        return faiss_format.parse_binary_index(blob, d=d + (-d) % 8, m=config.m,
                                               ef_construction=config.ef_construction)
    parsed = faiss_format.parse_index(blob, fourcc=_FOURCC[kind], d=d, metric=_metric(config), m=config.m,
                                      ef_construction=config.ef_construction,
                                      nbits=q.bits if kind in ("product", "rabitq") else None)  # type: ignore
    fields = parsed.fields
    if kind in ("scalar", "int4") and fields["qtype"] != (
            faiss_format.QT_8BIT if kind == "scalar" else faiss_format.QT_4BIT):
        raise CorruptIndexError(f"faiss payload's scalar quantizer type {fields['qtype']} is not {kind}")
    if kind == "product" and fields["pq_m"] != q.m:  # type: ignore[union-attr]
        raise CorruptIndexError(f"faiss payload's product quantizer has {fields['pq_m']} subspaces, "
                                f"the configuration {q.m}")  # type: ignore[union-attr]
    return parsed


def check_rotation(rotation: object, dimensions: int, kind: str) -> np.ndarray:
    """A stored rotation as float32 ``(d, d)``, or :class:`CorruptIndexError` unless it is that shape, finite and
    orthogonal within the codecs' tolerance (:func:`~ruvector_lab.quantization.base.checked_rotation`): an
    orthogonal map keeps L2, cosine and dot products, any other would change the distances the codes estimate."""
    try:
        return checked_rotation(rotation, dimensions, kind)
    except QuantizationError as exc:
        raise CorruptIndexError(f"faiss quantized payload: {exc}") from None


def _install_trained(config: HnswConfig, index: Any, parsed: faiss_format.FaissPayload) -> None:
    """Give a new faiss index the parsed trained state (no faiss reader involved); binary needs none."""
    kind = config.quantization.kind  # type: ignore[union-attr]
    if kind == "binary":
        return
    storage = faiss.downcast_index(index.storage)
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


#: rows decoded at a time when a loaded index's codes are checked (bounds the temporary float array)
_DECODE_CHUNK = 8192


def _check_decoded(storage: Any, parsed: faiss_format.FaissPayload) -> None:
    """Refuse codes that decode to a row no insert accepts (non-finite, or a squared norm past float32).

    The parser checks the trained state, but a RaBitQ code carries its own scale factors, and finite factors
    or SQ ranges can still decode to rows whose distances overflow; decoding is arithmetic over checked
    lengths, so it is safe to run on any parsed payload.
    """
    if not parsed.ntotal:
        return
    codes = np.ascontiguousarray(parsed.parts["codes"]).reshape(parsed.ntotal, -1)
    for start in range(0, parsed.ntotal, _DECODE_CHUNK):
        with np.errstate(over="ignore", invalid="ignore"):
            flaw = stored_row_flaw(storage.sa_decode(codes[start : start + _DECODE_CHUNK]))
        if flaw is not None:
            raise CorruptIndexError(f"faiss payload holds codes that decode to a vector no insert accepts: {flaw}")


def _hnsw_bytes(hnsw: Any) -> int:
    """Bytes of one faiss ``HNSW``'s per-node arrays as they are: int32 neighbours, size_t offsets, int levels."""
    return int(hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4)


class FaissQuantizedBackend(LiveBitmap, IndexBackend):
    """A faiss HNSW graph over codes (built from the codes or from the float vectors), deletes held in a live
    bitmap, optional exact rerank."""

    name = "faiss"
    graph = "hnsw"

    @classmethod
    def memory_layout(cls, config: HnswConfig) -> MemoryLayout:
        """Codes plus the float rows kept (for rerank, or to build the graph from floats: one copy) as an
        empty index reports them, the same graph as IndexHNSWFlat, the live flag; fixed: the trained state and
        rotation, and for PQ the symmetric distance table the graph build uses (``M * ksub^2`` floats), for SQ
        the per-dimension min and range."""
        extra = empty_stats(cls, config)
        fixed = int(extra.get("fixed_bytes", 0))
        q = config.quantization
        if q.kind == "product":  # type: ignore[union-attr]
            fixed += q.m * (1 << q.bits) ** 2 * 4  # type: ignore[union-attr, operator]
        elif q.kind in ("scalar", "int4"):  # type: ignore[union-attr]
            fixed += 2 * config.dimensions * 4  # 0 until trained, so empty_stats does not count it
        return MemoryLayout(vectors=float(extra["code_bytes_per_vector"] + extra["float_bytes_per_vector"]),
                            graph=graph_bytes_per_node(config.m), other=LIVE_FLAG_BYTES, fixed=fixed)

    def __init__(self, config: HnswConfig, index: Any = None, *, rotation: np.ndarray | None = None,
                 rotates: bool | None = None) -> None:
        """``index``: a loaded faiss index (default: a new one); ``rotation``: the rotation its codes were made
        under; ``rotates``: whether this index rotates at all (default: unless ``rotation='none'``; False for
        a rabitq payload written before faiss rabitq rotated)."""
        super().__init__(config)
        if config.quantization is None:
            raise BackendError("FaissQuantizedBackend needs HnswConfig(quantization=...)")
        q = config.quantization
        d = config.dimensions
        self._kind = q.kind
        self._index = index if index is not None else build_index(config)
        self._binary = self._kind == "binary"
        self._codec = make_codec(q, d, metric="cosine") if self._binary else None
        self._storage = (faiss.downcast_IndexBinary if self._binary else faiss.downcast_index)(self._index.storage)
        self._rotates = q.rotation != "none" if rotates is None else bool(rotates)
        # applied to what faiss sees (rows and queries): None until training makes it, for a new index
        self._rotation = rotation if self._rotates else None
        # graph='float': the float rows faiss builds the graph from (they are the rerank rows too)
        self._float_hnsw: Any = None
        self._float_flat: Any = None
        if q.graph == "float":
            if self._binary:  # IndexBinaryHNSW's storage holds bits: a float HNSW builds, its graph is copied
                self._float_hnsw = faiss.IndexHNSWFlat(d, config.m, faiss.METRIC_L2)  # L2 on unit rows
                self._float_hnsw.hnsw.efConstruction = config.ef_construction
                self._float_hnsw.hnsw.efSearch = config.ef_search
                self._float_flat = faiss.downcast_index(self._float_hnsw.storage)
            else:
                self._float_flat = faiss.IndexFlat(d, _metric(config))
        self._floats = Rows(d, np.float32) if config.rerank and self._float_flat is None else None
        self._live_rows = Rows(1, np.bool_)  # grows by doubling: one-by-one inserts stay linear
        self._live = self._live_rows.view[:, 0]
        self._grow_live(self._index.ntotal)
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

    @property
    def rotation(self) -> np.ndarray | None:
        """The ``(d, d)`` rotation applied as ``x @ rotation`` before faiss (None: none, or not trained yet)."""
        return self._rotation

    # ------------------------------------------------------------------ building
    def _grow_live(self, n: int) -> None:
        self._live_rows.append(np.ones((n, 1), dtype=bool))
        self._live = self._live_rows.view[:, 0]

    def _train(self, x: np.ndarray) -> None:
        q = self.config.quantization
        if len(x) > q.train_size:  # type: ignore[union-attr]
            rng = np.random.default_rng(q.seed)  # type: ignore[union-attr]
            x = x[np.sort(rng.choice(len(x), q.train_size, replace=False))]  # type: ignore[union-attr]
        if self._kind == "product":
            # the library's codebooks (and OPQ rotation), installed in faiss' PQ
            codec = make_codec(q, self.config.dimensions, metric=self.config.metric).train(x)  # type: ignore
            rotation = getattr(codec, "rotation", None)
            if self._rotates:
                if rotation is None:
                    raise QuantizationError(f"the product codec learned no rotation for rotation={q.rotation!r}")
                self._rotation = np.ascontiguousarray(rotation, dtype=np.float32)
            pq = self._storage.pq
            books = np.ascontiguousarray(codec.codebooks, dtype=np.float32)
            if books.shape != (pq.M, pq.ksub, pq.dsub):
                raise QuantizationError(f"the product codec trained codebooks of shape {books.shape}, faiss' PQ "
                                        f"holds ({pq.M}, {pq.ksub}, {pq.dsub})")
            faiss.copy_array_to_vector(books.ravel(), pq.centroids)
            # the graph is built with symmetric code-to-code distances: faiss aborts the process without them
            pq.compute_sdc_table()
            self._storage.is_trained = True
            self._index.is_trained = True
        else:
            if self._rotates:  # rabitq: faiss' RaBitQ has no rotation of its own
                self._rotation = random_rotation(self.config.dimensions, q.seed)  # type: ignore[union-attr]
            self._index.train(self._to_faiss(x))

    def _to_faiss(self, x: np.ndarray) -> np.ndarray:
        """Prepared rows or queries as faiss takes them: sign bits (binary), rotated, or as they are."""
        if self._binary:
            return self._codec.encode(x)  # type: ignore[union-attr]
        if self._rotation is not None:
            return np.ascontiguousarray(x @ self._rotation, dtype=np.float32)
        return x

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append to the graph (faiss numbers rows 0..ntotal-1: exactly the facade's labels)."""
        if len(labels) and int(labels[0]) != self._index.ntotal:
            raise BackendError(f"faiss labels must continue at {self._index.ntotal}, got {int(labels[0])}")
        self._append(prepare(vectors, self.config.metric))

    def _append(self, x: np.ndarray) -> None:
        """Add prepared rows (unit length under cosine): train on the first batch, then link and store them."""
        if not self._binary and not self._index.is_trained:
            if len(x) < 256:
                logger.warning("training faiss %s on a first batch of only %d rows", self._kind, len(x))
            self._train(x)
        rows = self._to_faiss(x)
        if self._float_flat is None:
            self._index.add(rows)
        elif self._binary:
            self._add_binary_float_graph(x, rows)
        else:
            self._add_float_graph(x, rows)
        if self._floats is not None:
            self._floats.append(x)
        self._grow_live(len(x))
        self._refresh_selector()

    def _add_float_graph(self, x: np.ndarray, codes_input: np.ndarray) -> None:
        """Link ``x`` by float distances: the index's storage points at the float flat while faiss adds (faiss
        adds the rows there and builds the graph through its distance computer), then back at the codes, which
        get the (rotated) rows. A pointer swap, no copy; the index owns only its code storage."""
        codes = self._index.storage  # a non-owning proxy of the pointer the index owns
        self._index.storage = self._float_flat
        try:
            self._index.add(x)  # the float flat holds the rows unrotated: the rotation is orthogonal
        finally:
            self._index.storage = codes
        self._storage.add(codes_input)

    def _add_binary_float_graph(self, x: np.ndarray, codes: np.ndarray) -> None:
        """Link ``x`` in a float IndexHNSWFlat holding the binary graph, then copy the graph into the binary
        index: ``HNSW`` is a struct member, assigned by value, so each call copies the graph twice (O(graph)).
        The float HNSW's graph is emptied after: one graph at rest, the binary index's."""
        flat = self._float_hnsw
        flat.hnsw = self._index.hnsw
        flat.ntotal = self._float_flat.ntotal  # after a load the float rows were restored to its storage only
        try:
            flat.add(x)
            self._storage.add(codes)
            self._index.hnsw = flat.hnsw
            self._index.ntotal = self._storage.ntotal
        finally:
            flat.hnsw.reset()  # keeps the level law and capacities, drops the links

    def _float_rows(self) -> np.ndarray | None:
        """The kept float rows (prepared, unrotated), or None: a view of the float flat for graph='float'."""
        if self._float_flat is not None:
            n, d = int(self._float_flat.ntotal), self.config.dimensions
            if not n:
                return np.empty((0, d), dtype=np.float32)
            return faiss.rev_swig_ptr(self._float_flat.get_xb(), n * d).reshape(n, d)
        return self._floats.view if self._floats is not None else None

    # ------------------------------------------------------------------ searching
    def _graph_search(self, q: np.ndarray, fetch: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """Graph search of faiss-ready queries (:meth:`_to_faiss`)."""
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, fetch)
        if self._selector is not None:
            params.sel = self._selector
        distances, labels = self._index.search(q, fetch, params=params)
        labels = labels.astype(np.int64, copy=False)
        short = np.flatnonzero((labels < 0).any(axis=1))
        if len(short):
            # the graph could not reach enough live nodes (deletions strand some): scan the codes instead
            distances[short], labels[short] = self._scan_storage(q[short], fetch)
        return distances, labels

    def _scan_storage(self, q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """Every stored code scored against faiss-ready queries, the ``fetch`` best live ones per row, fetching
        past the dead ones because not every faiss storage honours a selector."""
        wide = min(fetch + self._n_dead, self._index.ntotal)
        d_all, l_all = self._storage.search(q, wide)
        distances = np.zeros((len(q), fetch), dtype=d_all.dtype)
        labels = np.full((len(q), fetch), -1, dtype=np.int64)
        for row, (d_row, l_row) in enumerate(zip(d_all, l_all, strict=True)):
            keep = (l_row >= 0) & self._live[np.maximum(l_row, 0)]
            n = min(fetch, int(keep.sum()))
            distances[row, :n], labels[row, :n] = d_row[keep][:n], l_row[keep][:n]
        return distances, labels

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
        return self._search(queries, k, ef_search)

    def scan_codes(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` without the graph: every live code scored with the index's own scoring (faiss'
        storage), then the same re-ranking. The reference that separates what the graph loses from what the
        codes lose."""
        return self._search(queries, k, None)

    def _search(self, queries: np.ndarray, k: int, ef_search: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Candidates from the graph (or, ``ef_search`` None, from every code), then rerank or faiss' scores."""
        q = prepare(queries, self.config.metric)
        live_count = len(self._live) - self._n_dead
        fetch = min(max(k, self.config.rerank), live_count)
        if fetch == 0:
            return np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        qf = self._to_faiss(q)
        raw, labels = (self._scan_storage(qf, fetch) if ef_search is None else
                       self._graph_search(qf, fetch, ef_search))
        if self.config.rerank:
            return rerank(q, labels, self._float_rows(), np.arange(len(self._live)), self.config.metric, k)
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
        """faiss' own serialization of graph and codes; the float vectors when kept (rerank, graph='float'); the
        rotation when one is applied; the kind, bits, rotation, graph, rerank depth and metric they were written
        under."""
        arrays = {"faiss": self._faiss_bytes()}
        floats = self._float_rows()
        if floats is not None:
            arrays["vectors"] = floats
        if self._rotation is not None:
            arrays["rotation"] = self._rotation
        q = self.config.quantization
        meta: dict[str, Any] = {"kind": self._kind, "rerank": int(self.config.rerank), "metric": self.config.metric,
                                "bits": int(q.bits), "graph": q.graph}  # type: ignore[union-attr, arg-type]
        if self._rotates or q.rotation == "none":  # type: ignore[union-attr]
            # an unrotated rabitq index loaded from a payload of before rotations records none, as it did
            meta["rotation"] = q.rotation  # type: ignore[union-attr]
        return container.dumps(PAYLOAD_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, config: HnswConfig, payload: bytes, live_labels: np.ndarray, *,
                   trust_native: bool = True) -> FaissQuantizedBackend:
        """Check faiss' payload (:mod:`.faiss_format`: index and storage types for this kind, bits and metric,
        every length field, the graph, the trained state; the rotation: shape, finite, orthogonal), load graph
        and codes with faiss, then mark every label the facade does not hold as dead. With
        ``trust_native=False`` faiss reads nothing of it: a new index gets the stored trained state and is
        rebuilt from the kept float rows (graph='float' builds from them again), or else from the decoded codes
        (the stored codes are then put back verbatim: a decoded extended-RaBitQ code keeps only its sign bits)."""
        meta, arrays = container.loads(payload, PAYLOAD_KIND)
        q = config.quantization
        if q is None or meta.get("kind") != q.kind or "faiss" not in arrays:
            raise CorruptIndexError("faiss quantized payload does not match the configured quantization")
        check_recorded_rerank(meta, config.rerank, "faiss quantized")
        if "metric" in meta:  # faiss stores cosine and euclidean codes alike, as L2; payloads before it lack it
            check_recorded_metric("faiss quantized", meta, config)
        check_serves(config)
        # payloads written before bits, rotation and graph existed lack them: the kind's defaults, unrotated
        if meta.get("bits", q.bits) != q.bits or meta.get("graph", "codes") != q.graph:
            raise CorruptIndexError(f"faiss quantized payload was written with {meta.get('bits')} bits and graph "
                                    f"{meta.get('graph', 'codes')!r}, the index header says {q.bits} bits and "
                                    f"graph {q.graph!r}")
        recorded = meta.get("rotation")
        if recorded is not None and recorded != q.rotation:
            raise CorruptIndexError(f"faiss quantized payload was written with rotation {recorded!r}, the index "
                                    f"header says {q.rotation!r}")
        rotates = recorded is not None and q.rotation != "none"
        if recorded is None and q.rotation != "none":
            logger.warning("faiss %s payload was written before faiss' %s codes were rotated: served unrotated, "
                           "as written", q.kind, q.kind)
        raw = arrays["faiss"].copy()
        parsed = _parse_faiss(config, raw.tobytes())
        if not rotates and "rotation" in arrays:
            raise CorruptIndexError("faiss quantized payload holds a rotation its configuration does not apply")
        # an index is trained (and its rotation made) by its first batch: an empty one has neither yet
        rotation = check_rotation(arrays.get("rotation"), config.dimensions, q.kind) if rotates and (
            parsed.ntotal or "rotation" in arrays) else None
        vectors = arrays.get("vectors")
        keeps = bool(config.rerank) or q.graph == "float"
        if keeps and (vectors is None or vectors.shape != (parsed.ntotal, config.dimensions)):
            raise CorruptIndexError("faiss quantized payload lacks the float vectors its rerank or float graph needs")
        vectors = vectors if keeps else None
        flaw = stored_row_flaw(vectors) if vectors is not None else None
        if flaw is not None:  # the insert rule: finite, with a finite float32 squared norm
            raise CorruptIndexError(f"faiss quantized payload holds a float vector no insert accepts: {flaw}")
        if not trust_native:
            index = build_index(config)
            if parsed.ntotal:  # an empty index was never trained: a new one is as good
                _install_trained(config, index, parsed)
            if q.kind != "binary":
                _check_decoded(faiss.downcast_index(index.storage), parsed)
            backend = cls(config, index, rotation=rotation, rotates=rotates)
            if parsed.ntotal:
                if vectors is not None:
                    backend._append(vectors.astype(np.float32))
                else:
                    backend._add_stored_codes(parsed)
        else:
            try:
                index = faiss.deserialize_index_binary(raw) if q.kind == "binary" else faiss.deserialize_index(raw)
            except RuntimeError as exc:
                raise CorruptIndexError(f"faiss could not read the index payload: {exc}") from None
            expected = type(build_index(config))
            if type(index) is not expected:
                raise CorruptIndexError(f"faiss payload holds a {type(index).__name__}, expected {expected.__name__}")
            if q.kind != "binary":
                _check_decoded(faiss.downcast_index(index.storage), parsed)
            backend = cls(config, index, rotation=rotation, rotates=rotates)
            if vectors is not None:
                backend._restore_floats(vectors.astype(np.float32))
        if len(live_labels) and (live_labels.min() < 0 or live_labels.max() >= backend._index.ntotal):
            raise CorruptIndexError("live labels lie outside the faiss index")
        dead = np.setdiff1d(np.arange(backend._index.ntotal, dtype=np.int64), live_labels)
        if len(dead):
            backend.remove(dead)
        return backend

    def _add_stored_codes(self, parsed: faiss_format.FaissPayload) -> None:
        """Rebuild from checked codes alone: binary codes are added as they are; other kinds add the decoded
        rows (in the rotated space the codes live in) and then get their stored codes back verbatim."""
        codes = np.ascontiguousarray(parsed.parts["codes"]).reshape(parsed.ntotal, -1)
        if self._binary:
            self._index.add(codes)
        else:
            self._index.add(np.ascontiguousarray(self._storage.sa_decode(codes), dtype=np.float32))
            faiss.copy_array_to_vector(codes.ravel(), self._storage.codes)
        self._grow_live(parsed.ntotal)
        self._refresh_selector()

    def _restore_floats(self, vectors: np.ndarray) -> None:
        """Keep a loaded index's float rows: in the float flat (graph='float') or the rerank rows."""
        if self._float_flat is not None:
            self._float_flat.add(vectors)
        elif self._floats is not None:
            self._floats.append(vectors)

    def close(self) -> None:
        """Drop the faiss indexes now rather than at garbage collection."""
        self._index = self._storage = self._selector = None
        self._float_hnsw = self._float_flat = None

    # ------------------------------------------------------------------ reporting
    def _fixed_bytes(self) -> int:
        """Trained state shared by all vectors: SQ ranges, PQ codebooks, RaBitQ centre, and the rotation."""
        out = 0
        if self._kind == "product":
            pq = self._storage.pq
            out = int(pq.M * pq.ksub * pq.dsub * 4)
        elif self._kind in ("scalar", "int4"):
            out = int(self._storage.sq.trained.size() * 4)
        elif self._kind == "rabitq":
            out = int(self._storage.center.size() * 4)
        if self._rotates:
            out += 4 * self.config.dimensions**2
        return out

    def stats_extra(self) -> dict[str, Any]:
        """Bytes per vector by part: codes (faiss' code size), graph links (analytic, and as the graph holds
        them), float vectors kept for rerank, float vectors kept only to build the graph from; the trained
        state, the measured payload."""
        q = self.config.quantization
        count = len(self._live) - self._n_dead
        more: dict[str, Any] = {}
        if self._index.ntotal:
            more["graph_bytes_per_vector_measured"] = round(_hnsw_bytes(self._index.hnsw) / self._index.ntotal, 2)
        return memory_stats(
            self._kind, self.config.dimensions, int(self._storage.code_size), bool(self.config.rerank),
            self.config.rerank, fixed_bytes=self._fixed_bytes(), payload_bytes=len(self.to_bytes()), count=count,
            build_floats=self._float_flat is not None, graph_bytes=graph_bytes_per_node(self.config.m),
            index=type(self._index).__name__, bits=int(q.bits),  # type: ignore[union-attr, arg-type]
            rotation=q.rotation if self._rotates else "none", graph_built_from=q.graph,  # type: ignore[union-attr]
            **more,
        )
