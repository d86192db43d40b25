"""``HnswIndex``: string ids over any backend, with validation, replace semantics and a safe file format.

The facade owns everything that must behave the same on every backend: ids (mapped to int64 labels assigned
in insertion order and never reused), input checks (done before any backend is touched, so bad input leaves
the index unchanged), the "re-insert replaces" rule, clamping ``k`` to the live count, and the versioned,
checksummed container that :meth:`HnswIndex.serialize` writes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from . import container
from ._rwlock import ReadWriteLock
from .backends import IndexBackend
from .errors import (
    BackendError,
    BackendUnavailableError,
    CorruptIndexError,
    EmptyIndexError,
    IndexClosedError,
    InvalidParameterError,
    RuvectorLabError,
)
from .fastpath import hotpath, query_ok
from .runtime import Runtime
from .types import HnswConfig, IndexStats, SearchBatch, SearchHits, check_positive_int
from .validation import MAX_EF, MAX_K, as_matrix, as_vector, check_id, check_ids, check_nonzero, check_rows

log = logging.getLogger(__name__)

CONTAINER_KIND = "hnsw-index"
_FLOAT32 = np.dtype(np.float32)
_pick = itemgetter
_object_new = object.__new__
_TINY = float(np.finfo(np.float32).tiny)


def _resolve_backend(name: str | None) -> type[IndexBackend]:
    return Runtime.require(name) if name is not None else Runtime.initialize().backend_class


#: what a backend call raises through unchanged; anything else a library raises (RuntimeError, MemoryError, or a
#: pyo3 PanicException, which derives from BaseException) becomes a BackendError naming the backend
_PASS_THROUGH = (RuvectorLabError, KeyboardInterrupt, SystemExit, GeneratorExit)


def _backend_failure(backend: str, action: str, exc: BaseException) -> BackendError:
    return BackendError(f"the {backend} backend failed to {action}: {type(exc).__name__}: {exc}")


def _rows_fine(matrix: np.ndarray, cosine: bool) -> bool:
    """One pass for a batch of float32 rows: every squared norm finite proves every component finite (a NaN or
    inf term makes its sum NaN or inf) and, under cosine, every row non-zero; False sends the batch to the
    general checks, which name the bad row."""
    squared = np.einsum("ij,ij->i", matrix, matrix)
    return bool(np.isfinite(squared).all() and (not cosine or squared.min() > _TINY))


class HnswIndex:
    """A k-nearest-neighbour index with string ids on the runtime's backend (or the one named).

    >>> idx = HnswIndex(HnswConfig(dimensions=3, metric="euclidean"), backend="numpy")
    >>> idx.insert("a", [1.0, 0.0, 0.0]); idx.insert("b", [0.0, 1.0, 0.0])
    >>> [r.id for r in idx.search([0.9, 0.1, 0.0], k=2)]
    ['a', 'b']
    """

    def __init__(self, config: HnswConfig, backend: str | None = None) -> None:
        if not isinstance(config, HnswConfig):
            raise InvalidParameterError(f"config must be an HnswConfig, got {type(config).__name__}")
        self._init(config, _resolve_backend(backend), None, [], [])

    def _init(
        self,
        config: HnswConfig,
        backend_cls: type[IndexBackend],
        backend: IndexBackend | None,
        ids: list[str | None],
        live_labels: Sequence[int],
    ) -> None:
        self.config = config
        self._backend_name = backend_cls.name
        self._tier = Runtime.tier_of(backend_cls.name)
        impl = Runtime.serving_class(backend_cls.name, config)
        self._graph = impl.graph
        self._backend = backend if backend is not None else impl(config)
        self._ids = ids  # label -> id, None once deleted or replaced
        self._labels = {ids[label]: label for label in live_labels}  # id -> live label
        # label -> id as an object array for batch searches (one fancy index maps a whole result matrix, when a
        # SearchBatch's ids are first read). Append-only: a label's id is never edited, not even when the label
        # dies (backends never return dead labels), so a batch keeps the ids of its search's moment; replaced by
        # a longer copy when full, at least one slot longer than the labels so label -1 (padding) reads None
        self._id_table = np.full(len(ids) + 1, None, dtype=object)
        self._id_table[: len(ids)] = ids
        self._lock = ReadWriteLock()
        self._closed = False
        self._dimensions = config.dimensions
        self._default_ef = config.ef_search
        self._cosine = config.metric == "cosine"
        # the C hot path (ruvector_lab.fastpath): the backend's own result row made into SearchHits in C, where
        # the module is built and the backend answers search_row
        self._hot = hotpath is not None and type(self._backend).search_row is not IndexBackend.search_row

    # ------------------------------------------------------------------ checks
    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError("this HnswIndex was closed; create or deserialize a new one")

    def _vectors(self, vectors: object) -> np.ndarray:
        matrix = as_matrix(vectors, self.config.dimensions)
        check_rows(matrix, nonzero=self._cosine)  # the rule the payload loaders apply: a saved index loads
        return matrix

    def _query(self, query: object) -> np.ndarray:
        """The query as a checked float32 vector, or the typed error naming what is wrong with it."""
        vector = as_vector(query, self.config.dimensions, "query")
        if self._cosine:
            check_nonzero(vector, "query")
        return vector

    def _query_args(self, k: object, ef_search: object | None) -> tuple[int, int]:
        k = check_positive_int("k", k, maximum=MAX_K)
        ef = self.config.ef_search if ef_search is None else check_positive_int("ef_search", ef_search,
                                                                                    maximum=MAX_EF)
        if not self._labels:
            raise EmptyIndexError("the index holds no vectors; insert some before searching")
        return min(k, len(self._labels)), ef

    # --------------------------------------------------------------- mutations
    def insert(self, id: str, vector: object) -> None:  # noqa: A002 - the ADR's name
        """Store ``vector`` under ``id``; an id already present has its vector replaced."""
        self.insert_batch([check_id(id)], as_vector(vector, self.config.dimensions).reshape(1, -1))

    def insert_batch(self, ids: Sequence[str], vectors: object) -> None:
        """Store each row of ``vectors`` under the id at the same position; ids present are replaced.

        The whole batch is checked first (one id per row, no id twice, every row finite and of the right
        dimension), so a bad batch changes nothing.
        """
        with self._lock.write:
            self._check_open()
            matrix = self._vectors(vectors)
            checked = check_ids(ids, len(matrix))
            if not checked:
                return
            start = len(self._ids)
            labels = np.arange(start, start + len(checked), dtype=np.int64)
            replaced = [self._labels[i] for i in checked if i in self._labels]
            try:
                self._backend.add(labels, matrix)
                if replaced:
                    self._backend.remove(np.asarray(replaced, dtype=np.int64))
            except _PASS_THROUGH:
                raise
            except BaseException as exc:
                raise _backend_failure(self._backend_name, "insert", exc) from None
            if replaced:
                for label in replaced:
                    self._ids[label] = None
            self._ids.extend(checked)
            self._labels.update(zip(checked, labels.tolist(), strict=True))
            self._extend_table(start, checked)

    def _extend_table(self, start: int, added: list[str]) -> None:
        """Append an insert's ids to the id table (new labels from ``start``), growing it first if full."""
        table = self._id_table
        needed = start + len(added) + 1  # + the padding slot
        if needed > len(table):
            grown = np.full(max(needed, 2 * len(table)), None, dtype=object)
            grown[:start] = table[:start]
            self._id_table = table = grown
        table[start : start + len(added)] = added

    def delete(self, id: str) -> bool:  # noqa: A002
        """Remove ``id``; return True if it was present, False if the index did not hold it."""
        check_id(id)
        with self._lock.write:
            self._check_open()
            label = self._labels.pop(id, None)
            if label is None:
                return False
            try:
                self._backend.remove(np.asarray([label], dtype=np.int64))
            except _PASS_THROUGH:
                self._labels[id] = label
                raise
            except BaseException as exc:
                self._labels[id] = label
                raise _backend_failure(self._backend_name, "delete", exc) from None
            self._ids[label] = None
            return True

    # ---------------------------------------------------------------- searches
    def _results(self, distances: Sequence[float], labels: Sequence[int]) -> SearchHits:
        """One row's results without padding (label -1) or removed labels (id None)."""
        ids = self._ids
        kept = [(found, dist) for dist, label in zip(distances, labels, strict=True)
                if label >= 0 and (found := ids[label]) is not None]
        return SearchHits([found for found, _ in kept], [dist for _, dist in kept])

    def search(self, query: object, k: int = 10, ef_search: int | None = None) -> SearchHits:
        """The ``k`` nearest live vectors to ``query``, closest first (fewer if the index holds fewer), as
        :class:`~ruvector_lab.SearchHits`: a sequence of :class:`~ruvector_lab.SearchResult` ``(id, score)``
        made as they are read, with ``hits.ids`` and ``hits.scores`` beside.

        ``ef_search`` overrides the config's candidate list size for this call (graph backends).
        """
        # The common call (a float32 vector of the right shape, an int k, the default ef) is checked inline and
        # its results made in C (ruvector_lab.fastpath): a sub-100-us graph search makes every helper call and
        # temporary a visible share of the latency (issue 20: the facade's whole cost is a few us). Anything
        # else takes the general checks below.
        lock = self._lock
        readers = lock.readers  # the read lock's fast path, inlined (see ReadWriteLock)
        readers.append(None)
        if lock.gate:
            readers.pop()
            lock.acquire_read()
        try:
            if self._closed:
                self._check_open()
            q = query if query_ok(query, self._dimensions, self._cosine) else self._query(query)
            if type(k) is int and ef_search is None and 0 < k <= len(self._labels) and k <= MAX_K:
                k_eff, ef = k, self._default_ef
            else:
                k_eff, ef = self._query_args(k, ef_search)
            try:  # no cost unless something is raised (3.11's zero-cost exceptions)
                if self._hot:
                    row = self._backend.search_row(q, k_eff, ef)
                    if row is not None and (hits := hotpath.hits(SearchHits, row[0], row[1], self._ids,
                                                                 row[2])) is not None:
                        return hits
                    # no row for this call (another ef, a concurrent ef change, a short result) or a declined one
                    # (padding): the batch path, which sets the ef and fills or pads the row (search_one would
                    # only ask search_row again first)
                    distances, labels = self._backend.search(q.reshape(1, -1), k_eff, ef)
                    distances, labels = distances[0].tolist(), labels[0].tolist()
                else:  # no C module here, or a backend without search_row
                    distances, labels = self._backend.search_one(q, k_eff, ef)
            except _PASS_THROUGH:
                raise
            except BaseException as exc:
                raise _backend_failure(self._backend_name, "search", exc) from None
            if labels and labels[-1] >= 0:  # padding (-1) comes last, so a full row has none
                ids = self._ids
                found = _pick(*labels)(ids) if len(labels) > 1 else (ids[labels[0]],)
                if None not in found:  # backends never return a removed label; checked, it costs ~50 ns
                    hits = _object_new(SearchHits)  # SearchHits(found, distances) without a Python __init__ call
                    hits.ids, hits.scores = found, distances
                    return hits
            return self._results(distances, labels)
        finally:
            readers.pop()

    def search_batch(self, queries: object, k: int = 10, ef_search: int | None = None) -> SearchBatch:
        """:meth:`search` for every row of ``queries`` in one backend call.

        Returns a :class:`~ruvector_lab.SearchBatch`: ``batch[i]`` is what ``search(queries[i], k)`` gives, and its
        ``ids`` / ``scores`` arrays hold the whole result matrix (mapping labels to ids is one array index, so the
        facade adds well under a microsecond per query to the backend's own batch search).
        """
        with self._lock.read:
            self._check_open()
            matrix = queries
            if not (type(matrix) is np.ndarray and matrix.dtype is _FLOAT32 and matrix.ndim == 2
                    and matrix.shape[1] == self._dimensions and matrix.flags.c_contiguous and len(matrix)
                    and _rows_fine(matrix, self._cosine)):
                matrix = as_matrix(queries, self.config.dimensions, "queries")
                if self._cosine:
                    check_nonzero(matrix, "queries")
            k_eff, ef = self._query_args(k, ef_search)
            if not len(matrix):
                return SearchBatch(np.empty((0, k_eff), dtype=object), np.empty((0, k_eff), dtype=np.float32))
            try:
                distances, labels = self._backend.search(matrix, k_eff, ef)
            except _PASS_THROUGH:
                raise
            except BaseException as exc:
                raise _backend_failure(self._backend_name, "search", exc) from None
            return SearchBatch.from_labels(labels, self._id_table, distances)

    def scan_codes(self, queries: object, k: int = 10) -> SearchBatch:
        """Every stored code scored against each query, no graph, with the index's own scoring and re-ranking
        (``HnswConfig(rerank=...)``): the reference that tells what a quantized graph loses from what its codes
        lose. Same input checks and result type as :meth:`search_batch`; raises
        :class:`~ruvector_lab.errors.BackendUnavailableError` on a backend that has no code scan (float indexes,
        and quantized backends other than faiss)."""
        scan = getattr(self._backend, "scan_codes", None)
        with self._lock.read:
            self._check_open()
            matrix = as_matrix(queries, self.config.dimensions, "queries")
            if self._cosine:
                check_nonzero(matrix, "queries")
            k_eff, _ = self._query_args(k, None)
            if scan is None:
                raise BackendUnavailableError(f"backend {self._backend_name!r} has no code scan for this index "
                                              "(faiss' quantized HNSW indexes have one)")
            if not len(matrix):
                return SearchBatch(np.empty((0, k_eff), dtype=object), np.empty((0, k_eff), dtype=np.float32))
            try:
                distances, labels = scan(matrix, k_eff)
            except _PASS_THROUGH:
                raise
            except BaseException as exc:
                raise _backend_failure(self._backend_name, "scan_codes", exc) from None
            return SearchBatch.from_labels(labels, self._id_table, distances)

    # ------------------------------------------------------------ inspection
    def __len__(self) -> int:
        self._check_open()
        return len(self._labels)

    def __contains__(self, id: object) -> bool:  # noqa: A002
        self._check_open()
        return id in self._labels

    def ids(self) -> list[str]:
        """The live ids in insertion order of their current vectors."""
        with self._lock.read:
            self._check_open()
            return [i for i in self._ids if i is not None]

    @property
    def backend(self) -> str:
        """Name of the backend serving this index."""
        return self._backend_name

    @property
    def raw_backend(self) -> IndexBackend:
        """The backend object itself (benchmarks compare against the library underneath)."""
        return self._backend

    def stats(self) -> IndexStats:
        """Counts, configuration, backend and the serialized size in bytes."""
        with self._lock.read:
            self._check_open()
            size = len(self._serialize())
            extra: dict[str, Any] = getattr(self._backend, "stats_extra", dict)()
            return IndexStats(
                vector_count=len(self._labels),
                dimensions=self.config.dimensions,
                m=self.config.m,
                ef_construction=self.config.ef_construction,
                ef_search=self.config.ef_search,
                metric=self.config.metric,
                backend=self._backend_name,
                tier=self._tier,
                graph=self._graph,
                bytes=size,
                deleted_count=len(self._ids) - len(self._labels),
                extra=extra,
            )

    # ---------------------------------------------------------- persistence
    def _serialize(self) -> bytes:
        try:
            payload = self._backend.to_bytes()
        except _PASS_THROUGH:
            raise
        except BaseException as exc:
            raise _backend_failure(self._backend_name, "serialize", exc) from None
        encoded = [(i or "").encode("utf-8") for i in self._ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(e) for e in encoded])
        live = np.array([label for label, i in enumerate(self._ids) if i is not None], dtype=np.int64)
        tombstones = np.array([label for label, i in enumerate(self._ids) if i is None], dtype=np.int64)
        meta = {"backend": self._backend_name, "config": self.config.to_dict(), "labels": len(self._ids)}
        arrays = {
            "id_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            "id_offsets": offsets,
            "live": live,
            "tombstones": tombstones,
            "payload": np.frombuffer(payload, dtype=np.uint8),
        }
        return container.dumps(CONTAINER_KIND, meta, arrays)

    def serialize(self) -> bytes:
        """The index as bytes: magic, format version, backend, config, ids, tombstones, payload, sha256."""
        with self._lock.read:
            self._check_open()
            return self._serialize()

    @classmethod
    def deserialize(cls, blob: bytes, trust_native: bool = True) -> HnswIndex:
        """Rebuild an index from :meth:`serialize` output on the backend that wrote it.

        A truncated, tampered, foreign or newer blob raises :class:`CorruptIndexError`; a backend that is
        not available here raises :class:`BackendUnavailableError`.

        Every backend payload is parsed and checked by the library's own NumPy parsers before a native reader
        sees it (structure, sizes and offsets within the payload, graph links, finite vectors, and agreement
        with this header's metric, dimensions and labels), so a crafted file, even one whose checksum was
        recomputed, is refused with :class:`CorruptIndexError` rather than crashing the process.

        ``trust_native=True`` (the default) then hands the checked payload to the library's own reader: the
        graph comes back exactly as it was saved (identical search results) and loading costs a copy, not a
        rebuild. ``trust_native=False`` never gives the payload to a native reader: each backend rebuilds its
        index from the vectors (or codes) the library's parser took out of the payload, which costs a full
        index build and gives a new graph (the same neighbours up to the graph's approximation). The default
        is True because the checks cover every structure this library writes and a rebuild would make every
        load as slow as building the index; pass False for files from a source you do not trust, where it
        leaves no native file parser on the path at all. Any exception a library raises while loading (pyo3
        panics included, which are ``BaseException``) becomes :class:`CorruptIndexError`.
        """
        meta, arrays = container.loads(blob, CONTAINER_KIND)
        try:
            config = HnswConfig.from_dict(meta["config"])
            backend_name = str(meta["backend"])
            n_labels = int(meta["labels"])
            id_bytes, offsets = arrays["id_bytes"], arrays["id_offsets"]
            live, tombstones, payload = arrays["live"], arrays["tombstones"], arrays["payload"]
        except (KeyError, TypeError, ValueError, RuvectorLabError) as exc:
            raise CorruptIndexError(f"index container lacks or garbles a field: {exc}") from None
        if any(a.ndim != 1 or a.dtype.kind not in "iu" for a in (id_bytes, offsets, live, tombstones, payload)):
            raise CorruptIndexError("index container's id table, labels and payload must be 1-D integer arrays")
        if len(offsets) != n_labels + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) or (
            n_labels and offsets[-1] != len(id_bytes)
        ):
            raise CorruptIndexError("index container's id table is inconsistent")
        every = np.concatenate([live, tombstones])
        if len(every) != n_labels or not np.array_equal(np.sort(every), np.arange(n_labels)):
            raise CorruptIndexError("live labels and tombstones do not partition the index's labels")
        raw = id_bytes.tobytes()
        bounds = offsets.tolist()
        try:
            ids: list[str | None] = [raw[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_labels)]
        except UnicodeDecodeError:
            raise CorruptIndexError("index container holds ids that are not UTF-8") from None
        for label in tombstones.tolist():
            ids[label] = None
        live_ids = [ids[label] for label in live.tolist()]
        if any(not i for i in live_ids) or len(set(live_ids)) != len(live_ids):
            raise CorruptIndexError("index container holds empty or repeated live ids")
        backend_cls = Runtime.require(backend_name)
        impl = Runtime.serving_class(backend_name, config)
        try:
            backend = impl.from_bytes(config, payload.tobytes(), live, trust_native=bool(trust_native))
        except (RuvectorLabError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # a library refusing its payload (a pyo3 PanicException
            # is a BaseException) is corruption, not a crash
            raise CorruptIndexError(f"{backend_name} could not load its payload: {exc!r}") from None
        index = cls.__new__(cls)
        index._init(config, backend_cls, backend, ids, live.tolist())
        return index

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`serialize` output to ``path`` atomically (temporary file, fsync, rename)."""
        return container.write_atomic(path, self.serialize())

    @classmethod
    def load(cls, path: str | os.PathLike[str], trust_native: bool = True) -> HnswIndex:
        """Read an index written by :meth:`save` (``trust_native`` as in :meth:`deserialize`); anything but a
        regular file (a FIFO, a device, a directory) is refused with
        :class:`~ruvector_lab.errors.NotARegularFileError` without blocking on it."""
        return cls.deserialize(container.read_file(path), trust_native=trust_native)

    # ------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Free the backend; idempotent. Any later use raises :class:`IndexClosedError`."""
        with self._lock.write:
            if self._closed:
                return
            self._closed = True
            self._backend.close()
            self._labels = {}

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> HnswIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._labels)} vectors"
        return (
            f"HnswIndex({state}, dimensions={self.config.dimensions}, metric={self.config.metric!r}, "
            f"backend={self._backend_name!r})"
        )
