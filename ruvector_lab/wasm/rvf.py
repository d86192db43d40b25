"""Thin typed wrappers over ``@ruvector/rvf-wasm``'s C ABI (``rvf_*`` exports).

Conventions learnt from the exports, the package's ``rvf_wasm.d.ts`` and the upstream crate ``rvf-wasm``:

* memory: ``rvf_alloc(size) -> ptr`` (8-byte aligned, 0 on failure) and ``rvf_free(ptr, size)``;
* store: ``rvf_store_create(dim, metric) -> handle`` (>0), ``rvf_store_ingest(h, vecs f32*, ids u64*, n)``,
  ``rvf_store_query(h, query f32*, k, metric, out) -> n`` writing ``n`` records of ``(id u64, dist f32)``
  (12 bytes, unaligned) nearest first, ``rvf_store_delete(h, ids u64*, n) -> deleted``, ``rvf_store_count``,
  ``rvf_store_status(h, out)`` (5 x u32: live, dim, metric, slots, deleted), ``rvf_store_export(h, out, len)``
  (returns ``-needed`` when ``len`` is too small), ``rvf_store_open(buf, len) -> handle``, ``rvf_store_close``;
  the store is exact (every live vector scored, then sorted; ties keep insertion order) and deletes only
  mark slots, so the owner compacts;
* metrics: 0 = squared L2, 1 = negative inner product, 2 = cosine distance ``1 - cos`` (3 = Hamming, fp16/i8
  kernels only);
* tile kernels: ``rvf_load_query(fp16*, dim)`` (dim <= 96: 192-byte query scratch), ``rvf_load_block(ptr,
  n, dtype)`` (dtype 0 = fp16, 1 = i8; at most 32 KiB), ``rvf_distances(metric, out f32*) -> n``;
  ``rvf_load_sq_params(f32 pairs (min, max), dim)`` (dim <= 128) with ``rvf_dequant_i8(src i8*, dst fp16*,
  n)`` computing ``min + (q + 128) / 255 * (max - min)`` per component (dimension ``i % dim``, the dim set by
  the last ``rvf_load_query``), rounded toward zero to fp16; ``rvf_load_pq_codebook(fp16*, m, k)`` and
  ``rvf_pq_distances(codes u8*, n, out f32*)`` (sum of per-subspace squared L2 to the chosen centroids);
  ``rvf_crc32c(ptr, len)``.

Every size and count is checked here before the call, so the module only ever sees requests it can serve.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError, CorruptIndexError, DimensionMismatchError, InvalidParameterError, InvalidVectorError
from . import rvf_format
from .instance import WasmInstance
from .loader import RVF_WASM
from .memory import to_i32

#: the module's metric codes for the library's metric names
METRIC_CODES: dict[str, int] = {"euclidean": 0, "dot_product": 1, "cosine": 2}
#: metric codes of the fp16 / int8 tile kernels
TILE_METRIC_CODES: dict[str, int] = {"euclidean": 0, "dot_product": 1, "cosine": 2, "hamming": 3}

MAX_DIMENSIONS = 1 << 20  # 4 MiB per vector; far past any real embedding, well inside wasm32
MAX_ID = (1 << 63) - 1  # ids are u64 in the module, int64 labels here
QUERY_SCRATCH_BYTES = 192
SIMD_BLOCK_BYTES = 32 * 1024
SQ_PARAMS_BYTES = 1024
RESULT_RECORD = 12  # (id u64, dist f32), packed
#: bytes a stored vector costs in the module beyond its components (slot record, allocator overhead)
SLOT_OVERHEAD = 48
#: linear memory the store may plan to use; the rest is headroom for query-time allocations
MEMORY_BUDGET = (1 << 32) - (256 << 20)
_INGEST_CHUNK_BYTES = 4 << 20
_RESULT = np.dtype([("id", "<u8"), ("dist", "<f4")])


def max_float32_norm_sq() -> float:
    """Largest squared norm for which every f32 distance the module computes stays finite."""
    return float(np.finfo(np.float32).max) / 4.0


def check_magnitude(matrix: np.ndarray, name: str = "vectors") -> None:
    """Refuse rows so large that the module's float32 distances would overflow to inf or NaN.

    The module sorts with a comparison that NaN breaks, so such rows never reach it.
    """
    if not matrix.size:
        return
    sq = np.einsum("ij,ij->i", matrix.astype(np.float64), matrix.astype(np.float64))
    bad = np.flatnonzero(sq > max_float32_norm_sq())
    if bad.size:
        raise InvalidVectorError(
            f"{name} row {int(bad[0])} has norm {float(np.sqrt(sq[bad[0]])):.3g}; float32 distances over it "
            f"would overflow (the wasm module computes in float32)"
        )


def unit_rows(matrix: np.ndarray, name: str = "vectors") -> np.ndarray:
    """Rows scaled to unit L2 norm (norms taken in float64), for the cosine metric.

    Cosine distance does not change with scale, but the module treats a norm product below 1e-10 as "no
    direction" (distance 1) and squares components in float32; unit rows avoid both. Zero rows are refused.
    """
    if not matrix.size:
        return matrix.astype(np.float32, copy=True)
    wide = matrix.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise InvalidVectorError(f"{name} row {int(zero[0])} is a zero vector; cosine distance is undefined for it")
    return (wide / norms[:, None]).astype(np.float32)


class RvfModule(WasmInstance):
    """An instance of rvf-wasm: stores (by handle) and the tile kernels, all calls under :attr:`lock`."""

    artifact = RVF_WASM
    alloc_export = "rvf_alloc"
    free_export = "rvf_free"

    # ------------------------------------------------------------ store API
    def store_create(self, dimensions: int, metric: str) -> int:
        """A new empty store; returns its handle."""
        if not 1 <= dimensions <= MAX_DIMENSIONS:
            raise InvalidParameterError(f"the wasm store takes 1 .. {MAX_DIMENSIONS} dimensions, got {dimensions}")
        code = METRIC_CODES.get(metric)
        if code is None:
            raise InvalidParameterError(f"rvf-wasm store has no metric {metric!r}; it has {sorted(METRIC_CODES)}")
        with self.lock:
            handle = int(self.call("rvf_store_create", dimensions, code))  # type: ignore[arg-type]
        if handle <= 0:
            raise BackendError(f"rvf_store_create({dimensions}, {code}) failed with {handle}")
        return handle

    def store_close(self, handle: int) -> None:
        """Free a store's vectors inside the module."""
        with self.lock:
            result = self.call("rvf_store_close", handle)
        if result != 0:
            raise BackendError(f"rvf_store_close({handle}) failed with {result}: no such store")

    def store_count(self, handle: int) -> int:
        """Live vectors in the store."""
        with self.lock:
            count = int(self.call("rvf_store_count", handle))  # type: ignore[arg-type]
        if count < 0:
            raise BackendError(f"rvf_store_count({handle}) failed: no such store")
        return count

    def store_dimension(self, handle: int) -> int:
        """The store's dimensions."""
        with self.lock:
            dim = int(self.call("rvf_store_dimension", handle))  # type: ignore[arg-type]
        if dim < 0:
            raise BackendError(f"rvf_store_dimension({handle}) failed: no such store")
        return dim

    def store_status(self, handle: int) -> dict[str, int]:
        """``{'live', 'dimensions', 'metric', 'slots', 'deleted'}`` as the module reports them."""
        with self.lock:
            out = self.scratch.get("status", 20)
            written = self.call("rvf_store_status", handle, to_i32(out))
            if written != 20:
                raise BackendError(f"rvf_store_status({handle}) failed with {written}")
            values = self.memory.read(out, "<u4", 5).tolist()
        return dict(zip(("live", "dimensions", "metric", "slots", "deleted"), values, strict=True))

    def store_ingest(self, handle: int, ids: np.ndarray, vectors: np.ndarray) -> int:
        """Append ``vectors`` (n, d) float32 under ``ids`` (n,) (0 .. 2**63-1); returns how many were taken."""
        n, dim = vectors.shape
        if ids.shape != (n,):
            raise DimensionMismatchError(f"{len(ids)} ids for {n} vectors")
        if n and (int(ids.min()) < 0 or int(ids.max()) > MAX_ID):
            raise InvalidParameterError(f"wasm store ids must lie in 0 .. {MAX_ID}")
        vecs = np.ascontiguousarray(vectors, dtype="<f4")
        keys = np.ascontiguousarray(ids, dtype="<u8")
        rows = max(1, _INGEST_CHUNK_BYTES // (4 * dim))
        taken = 0
        with self.lock:
            for start in range(0, n, rows):
                chunk = vecs[start : start + rows]
                vec_at = self.scratch.get("ingest_vectors", chunk.nbytes)
                id_at = self.scratch.get("ingest_ids", 8 * len(chunk))
                self.memory.write(vec_at, chunk)
                self.memory.write(id_at, keys[start : start + rows])
                got = int(self.call("rvf_store_ingest", handle, to_i32(vec_at), to_i32(id_at), len(chunk)))  # type: ignore[arg-type]
                if got != len(chunk):
                    raise BackendError(f"rvf_store_ingest took {got} of {len(chunk)} vectors")
                taken += got
        return taken

    def store_query(self, handle: int, query: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest live ids of one query and the module's raw distances (squared L2 for euclidean).

        ``k`` must not exceed the live count (the caller clamps), so the result buffer is sized exactly.
        """
        code = METRIC_CODES[metric]
        if k <= 0:
            return np.empty(0, np.uint64), np.empty(0, np.float32)
        q = np.ascontiguousarray(query, dtype="<f4")
        with self.lock:
            q_at = self.scratch.get("query", q.nbytes)
            out_at = self.scratch.get("results", RESULT_RECORD * k)
            self.memory.write(q_at, q)
            got = int(self.call("rvf_store_query", handle, to_i32(q_at), k, code, to_i32(out_at)))  # type: ignore[arg-type]
            if got < 0 or got > k:
                raise BackendError(f"rvf_store_query returned {got} for k={k}")
            raw = self.memory.read_bytes(out_at, RESULT_RECORD * got)
        records = np.frombuffer(raw, dtype=_RESULT, count=got)
        return records["id"].astype(np.uint64), records["dist"].astype(np.float32)

    def store_delete(self, handle: int, ids: np.ndarray) -> int:
        """Mark ``ids`` deleted; returns how many live slots matched."""
        keys = np.ascontiguousarray(ids, dtype="<u8")
        if not len(keys):
            return 0
        with self.lock:
            at = self.scratch.get("delete_ids", keys.nbytes)
            self.memory.write(at, keys)
            got = int(self.call("rvf_store_delete", handle, to_i32(at), len(keys)))  # type: ignore[arg-type]
        if got < 0:
            raise BackendError(f"rvf_store_delete({handle}) failed with {got}")
        return got

    def store_export(self, handle: int) -> bytes:
        """The store's live vectors as the module's ``.rvf`` bytes (see :mod:`.rvf_format`)."""
        with self.lock:
            status = self.store_status(handle)
            expected = rvf_format.export_size(status["live"], status["dimensions"])
            if expected >= 1 << 31:
                raise BackendError(
                    f"the wasm store's export would be {expected} bytes; the module's C ABI stops at 2 GiB"
                )
            if status["slots"] * (4 * status["dimensions"] + SLOT_OVERHEAD) + expected > MEMORY_BUDGET:
                raise BackendError("exporting this store would need more than wasm32's 4 GiB of linear memory")
            needed = -int(self.call("rvf_store_export", handle, 0, 0))  # type: ignore[arg-type]
            if needed != expected:
                raise BackendError(f"rvf_store_export asks for {needed} bytes, expected {expected}")
            at = self.memory.alloc(needed)
            try:
                written = int(self.call("rvf_store_export", handle, to_i32(at), needed))  # type: ignore[arg-type]
                if written != needed:
                    raise BackendError(f"rvf_store_export wrote {written} of {needed} bytes")
                return self.memory.read_bytes(at, needed)
            finally:
                self.memory.free(at)

    def store_open(self, blob: bytes) -> int:
        """A new store from ``.rvf`` bytes (the caller has checked them with :func:`rvf_format.parse_export`)."""
        if not 0 < len(blob) < 1 << 31:
            raise BackendError(f"rvf_store_open takes 1 .. 2**31-1 bytes, got {len(blob)}")
        with self.lock:
            at = self.memory.alloc(len(blob))
            try:
                self.memory.write_bytes(at, blob)
                handle = int(self.call("rvf_store_open", to_i32(at), len(blob)))  # type: ignore[arg-type]
            finally:
                self.memory.free(at)
        if handle <= 0:
            raise BackendError(f"rvf_store_open failed with {handle}")
        return handle

    # ------------------------------------------------------------ kernels
    def crc32c(self, data: bytes) -> int:
        """CRC-32C (Castagnoli) of ``data``, computed by the module."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidParameterError(f"crc32c takes bytes, got {type(data).__name__}")
        payload = bytes(data)
        if len(payload) >= 1 << 31:
            raise InvalidParameterError("crc32c takes at most 2**31-1 bytes")
        with self.lock:
            at = self.scratch.get("crc", len(payload))
            self.memory.write_bytes(at, payload)
            return int(self.call("rvf_crc32c", to_i32(at), len(payload))) & 0xFFFFFFFF  # type: ignore[arg-type]

    def _set_tile_dim(self, raw_query: bytes, dim: int) -> None:
        """Load the tile query (``dim`` fp16 values, or ``dim`` int8 values padded) and with it the tile dim."""
        at = self.scratch.get("tile_query", QUERY_SCRATCH_BYTES)
        self.memory.write_bytes(at, raw_query.ljust(2 * dim, b"\0"))
        result = self.call("rvf_load_query", to_i32(at), dim)
        if result != 0:
            raise BackendError(f"rvf_load_query(dim={dim}) failed with {result}")

    def tile_distances(self, query: np.ndarray, block: np.ndarray, metric: str) -> np.ndarray:
        """Module distances of one query to rows of ``block``, both float16 (metrics: euclidean = squared L2,
        dot_product = -dot, cosine, hamming) or both int8 (euclidean = squared L2, hamming); dim <= 96."""
        code = TILE_METRIC_CODES.get(metric)
        if code is None:
            raise InvalidParameterError(f"rvf tile kernels have no metric {metric!r}")
        if block.ndim != 2 or query.shape != (block.shape[1],):
            raise DimensionMismatchError(f"query {query.shape} does not match block {block.shape}")
        dim = block.shape[1]
        if not 1 <= dim <= QUERY_SCRATCH_BYTES // 2:
            raise InvalidParameterError(f"rvf tile kernels take 1 .. {QUERY_SCRATCH_BYTES // 2} dimensions, got {dim}")
        if block.dtype == np.float16 and query.dtype == np.float16:
            dtype_code, itemsize = 0, 2
        elif block.dtype == np.int8 and query.dtype == np.int8:
            dtype_code, itemsize = 1, 1
            if code in (1, 2):
                raise InvalidParameterError("the module's int8 tile kernel has only euclidean and hamming")
        else:
            raise InvalidParameterError(f"tile kernels take float16 or int8 for both sides, got {query.dtype}, "
                                        f"{block.dtype}")
        rows = max(1, SIMD_BLOCK_BYTES // (dim * itemsize))
        data = np.ascontiguousarray(block).view(np.uint8).reshape(len(block), dim * itemsize)
        out = np.empty(len(block), dtype=np.float32)
        with self.lock:
            self._set_tile_dim(np.ascontiguousarray(query).tobytes(), dim)
            block_at = self.scratch.get("tile_block", SIMD_BLOCK_BYTES)
            out_at = self.scratch.get("tile_out", 4 * rows)
            for start in range(0, len(block), rows):
                chunk = data[start : start + rows]
                self.memory.write(block_at, chunk)
                loaded = self.call("rvf_load_block", to_i32(block_at), len(chunk), dtype_code)
                if loaded != 0:
                    raise BackendError(f"rvf_load_block failed with {loaded}")
                got = int(self.call("rvf_distances", code, to_i32(out_at)))  # type: ignore[arg-type]
                if got != len(chunk):
                    raise BackendError(f"rvf_distances returned {got} for {len(chunk)} vectors")
                out[start : start + got] = self.memory.read(out_at, "<f4", got)
        return out

    def pq_distances(self, query: np.ndarray, codebook: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The module's product-quantization (ADC) distances: for each code row, the sum over subspaces of
        the squared L2 between the query's sub-vector and the chosen centroid, all in fp16 inputs.

        ``query`` float16 (d,) with d <= 96, ``codebook`` float16 (m, k, d / m) with ``m * k <= 3072``
        (the module's 12 KiB lookup table) and at most 16 KiB, ``codes`` uint8 (n, m) with every code < k.
        """
        if query.dtype != np.float16 or codebook.dtype != np.float16 or codes.dtype != np.uint8:
            raise InvalidParameterError("pq_distances takes a float16 query and codebook and uint8 codes")
        if codebook.ndim != 3 or codes.ndim != 2 or query.ndim != 1:
            raise DimensionMismatchError("pq_distances takes query (d,), codebook (m, k, d/m), codes (n, m)")
        m, k, sub = codebook.shape
        dim = len(query)
        if m * sub != dim or codes.shape[1] != m:
            raise DimensionMismatchError(
                f"codebook {codebook.shape} and codes {codes.shape} do not split a {dim}-d query into m sub-vectors"
            )
        if not 1 <= dim <= QUERY_SCRATCH_BYTES // 2:
            raise InvalidParameterError(f"the module's PQ kernel takes 1 .. {QUERY_SCRATCH_BYTES // 2} dimensions")
        if m * k > 3072 or codebook.nbytes > 16 * 1024 or k > 256:
            raise InvalidParameterError(
                f"the module's PQ tables hold m*k <= 3072 centroids in 16 KiB (k <= 256); got m={m}, k={k}"
            )
        if codes.size and int(codes.max()) >= k:
            raise InvalidParameterError(f"a PQ code is {int(codes.max())}, but the codebook has {k} centroids")
        n = len(codes)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        if n >= 1 << 28:
            raise InvalidParameterError("pq_distances takes fewer than 2**28 codes per call")
        with self.lock:
            self._set_tile_dim(np.ascontiguousarray(query).tobytes(), dim)
            book_at = self.scratch.get("pq_codebook", codebook.nbytes)
            self.memory.write(book_at, np.ascontiguousarray(codebook))
            loaded = self.call("rvf_load_pq_codebook", to_i32(book_at), m, k)
            if loaded != 0:
                raise BackendError(f"rvf_load_pq_codebook failed with {loaded}")
            codes_at = self.scratch.get("pq_codes", codes.nbytes)
            out_at = self.scratch.get("pq_out", 4 * n)
            self.memory.write(codes_at, np.ascontiguousarray(codes))
            got = int(self.call("rvf_pq_distances", to_i32(codes_at), n, to_i32(out_at)))  # type: ignore[arg-type]
            if got != n:
                raise BackendError(f"rvf_pq_distances returned {got} for {n} codes")
            out[:] = self.memory.read(out_at, "<f4", n)
        return out

    def dequantize_i8(self, codes: np.ndarray, minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
        """The module's int8 dequantization: ``min + (q + 128) / 255 * (max - min)``, returned as float32
        holding the module's fp16 results.

        ``codes`` is int8 of shape (n, d) (or (d,)); ``minimum``/``maximum`` are one (min, max) per
        dimension (d <= 96) or a single pair shared by every component (any d).
        """
        q = np.ascontiguousarray(codes, dtype=np.int8)
        lo = np.asarray(minimum, dtype=np.float32).reshape(-1)
        hi = np.asarray(maximum, dtype=np.float32).reshape(-1)
        if lo.shape != hi.shape:
            raise DimensionMismatchError(f"minimum {lo.shape} and maximum {hi.shape} differ in shape")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise InvalidVectorError("dequantization bounds hold NaN or inf")
        dim = len(lo)
        if dim not in (1, q.shape[-1] if q.ndim else 0):
            raise DimensionMismatchError(f"{dim} (min, max) pairs for codes of shape {q.shape}")
        if dim > min(QUERY_SCRATCH_BYTES // 2, SQ_PARAMS_BYTES // 8):
            raise InvalidParameterError(
                f"the module holds per-dimension bounds for at most {QUERY_SCRATCH_BYTES // 2} dimensions; "
                f"got {dim} (pass one shared pair per vector instead)"
            )
        count = q.size
        if count == 0:
            return np.empty(q.shape, dtype=np.float32)
        if count >= 1 << 29:
            raise InvalidParameterError("dequantize_i8 takes fewer than 2**29 codes per call")
        params = np.empty((dim, 2), dtype="<f4")
        params[:, 0], params[:, 1] = lo, hi
        with self.lock:
            p_at = self.scratch.get("sq_params", params.nbytes)
            self.memory.write(p_at, params)
            loaded = self.call("rvf_load_sq_params", to_i32(p_at), dim)
            if loaded != 0:
                raise BackendError(f"rvf_load_sq_params failed with {loaded}")
            self._set_tile_dim(b"", dim)
            src = self.scratch.get("dequant_src", count)
            dst = self.scratch.get("dequant_dst", 2 * count)
            self.memory.write(src, q.reshape(-1))
            result = self.call("rvf_dequant_i8", to_i32(src), to_i32(dst), count)
            if result != 0:
                raise BackendError(f"rvf_dequant_i8 failed with {result}")
            half = self.memory.read(dst, "<f2", count)
        return half.astype(np.float32).reshape(q.shape)


class RvfStore:
    """One store inside an :class:`RvfModule`, addressed by its handle."""

    def __init__(self, module: RvfModule, handle: int, dimensions: int) -> None:
        self.module = module
        self.handle = handle
        self.dimensions = dimensions

    @classmethod
    def create(cls, module: RvfModule, dimensions: int, metric: str) -> RvfStore:
        """A new empty store."""
        return cls(module, module.store_create(dimensions, metric), dimensions)

    @classmethod
    def from_export(cls, module: RvfModule, blob: bytes, dimensions: int) -> tuple[RvfStore, rvf_format.RvfExport]:
        """A store rebuilt from export bytes, checked first; the module's own reader opens it when its
        16-bit count can describe it, otherwise the vectors are ingested in chunks."""
        parsed = rvf_format.parse_export(blob, dimensions)
        try:  # the bound every add keeps (check_magnitude): past it the module's f32 distances overflow to inf
            check_magnitude(parsed.vectors, "exported vector")
        except InvalidVectorError as exc:
            raise CorruptIndexError(f"rvf export holds a vector no insert accepts: {exc}") from None
        if len(parsed) < 1 << 16:
            store = cls(module, module.store_open(blob), dimensions)
        else:
            store = cls.create(module, dimensions, "euclidean")
            store.ingest(parsed.ids, parsed.vectors)
        try:
            if store.count() != len(parsed) or module.store_dimension(store.handle) != dimensions:
                raise BackendError("rvf_store_open did not restore the exported vectors")
        except BaseException:
            store.close()
            raise
        return store, parsed

    def ingest(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        """See :meth:`RvfModule.store_ingest`."""
        return self.module.store_ingest(self.handle, ids, vectors)

    def query(self, query: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`RvfModule.store_query`."""
        return self.module.store_query(self.handle, query, k, metric)

    def delete(self, ids: np.ndarray) -> int:
        """See :meth:`RvfModule.store_delete`."""
        return self.module.store_delete(self.handle, ids)

    def count(self) -> int:
        """Live vectors."""
        return self.module.store_count(self.handle)

    def status(self) -> dict[str, int]:
        """See :meth:`RvfModule.store_status`."""
        return self.module.store_status(self.handle)

    def export(self) -> bytes:
        """See :meth:`RvfModule.store_export`."""
        return self.module.store_export(self.handle)

    def close(self) -> None:
        """Free the store inside the module (idempotent)."""
        if self.handle > 0:
            handle, self.handle = self.handle, 0
            if self.module.poisoned is None:
                self.module.store_close(handle)

