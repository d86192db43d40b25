"""A NumPy parser and checker for faiss' serialization of the indexes this library writes, run before faiss reads one.

faiss' reader (``faiss/impl/index_read.cpp``) trusts its input: a vector's length prefix is believed up to a
byte limit of 2^40, so one flipped bit in a small file makes it allocate gigabytes before the read fails, and
the HNSW graph (levels, offsets, neighbours, entry point) is used as stored. :func:`parse_index` and
:func:`parse_binary_index` walk the exact layout of ``index_write.cpp`` (faiss 1.15) for the types written by
:mod:`.faiss_backend` and :mod:`.faiss_quantized`, refuse any length that exceeds the bytes that remain, check
the graph, the storage's sizes and finite floats, and return the parts as NumPy views of the payload.

Layout, all little-endian (``WRITEVECTOR``: u64 count then the items; ``WRITEXBVECTOR``: u64 count of 4-byte
groups then the bytes)::

    index      fourcc, header (i32 d, i64 ntotal, i64 dummy x2, u8 is_trained, i32 metric[, f32 metric_arg]),
               then per type: IHNf/IHNs/IHNp/IHNr: HNSW, storage index
    HNSW       vec<f64> assign_probas, vec<i32> cum_nneighbor_per_level, vec<i32> levels, vec<u64> offsets,
               vec<i32> neighbors, i32 entry_point, max_level, efConstruction, efSearch, upper_beam
    IxF2/IxFI  header, xbvec codes (float32 rows)
    IxSQ       header, i32 qtype, i32 rangestat, f32 rangestat_arg, u64 d, u64 code_size, vec<f32> trained,
               vec<u8> codes
    IxPq       header, u64 d, u64 M, u64 nbits, vec<f32> centroids, vec<u8> codes, i32 search_type,
               u8 encode_signs, i32 polysemous_ht; nbits 8 or 4 (2^nbits centroids per subspace, codes of
               (M * nbits + 7) / 8 bytes)
    Ixrq       one-bit RaBitQ: header, u64 d, u64 code_size, i32 metric, vec<u8> codes, vec<f32> center, u8 qb,
               u8 centered; a code is (d + 7) / 8 sign bytes then f32 or_minus_c_l2sqr, f32 dp_multiplier
    Ixrr       multi-bit RaBitQ (nb_bits 2..8): as Ixrq with u64 nb_bits after the metric; a code is the sign
               bytes, f32 or_minus_c_l2sqr, dp_multiplier, f_error, then (d * (nb_bits - 1) + 7) / 8 bytes of
               extra bits, then f32 f_add_ex, f_rescale_ex (faiss/impl/RaBitQUtils.h)
    binary     IBHf: (i32 d, i32 code_size, i64 ntotal, u8 is_trained, i32 metric), HNSW, storage IBxF:
               binary header, vec<u8> xb
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import CorruptIndexError
from ..validation import stored_row_flaw

METRIC_INNER_PRODUCT = 0
METRIC_L2 = 1
#: faiss ScalarQuantizer::QuantizerType values this library uses
QT_8BIT = 0
QT_4BIT = 1
_UNIT_TOLERANCE = 1e-3
#: a one-bit RaBitQ code ends in two f32 correction factors
RABITQ_FACTOR_BYTES = 8
#: a multi-bit RaBitQ code holds three f32 factors after its sign bits and two after its extra bits
RABITQ_MULTIBIT_BASE_FACTOR_BYTES = 12
RABITQ_MULTIBIT_EX_FACTOR_BYTES = 8
#: PQ sub-code widths faiss' IndexHNSWPQ is built with here (16- or 256-centroid codebooks)
PQ_NBITS = (4, 8)
#: RaBitQ bits per dimension faiss serves (1 is the sign bit alone, Ixrq; 2..8 extended RaBitQ, Ixrr)
RABITQ_NB_BITS = tuple(range(1, 9))


def rabitq_code_size(d: int, nb_bits: int) -> int:
    """Bytes of one faiss RaBitQ code of ``d`` dimensions at ``nb_bits`` (``RaBitQuantizer::compute_code_size``)."""
    size = (d + 7) // 8
    if nb_bits == 1:
        return size + RABITQ_FACTOR_BYTES
    return (size + RABITQ_MULTIBIT_BASE_FACTOR_BYTES + (d * (nb_bits - 1) + 7) // 8
            + RABITQ_MULTIBIT_EX_FACTOR_BYTES)


def rabitq_factors(codes: np.ndarray, d: int, nb_bits: int) -> np.ndarray:
    """The f32 correction factors of ``(n, code_size)`` RaBitQ code rows as ``(n, f)`` float32, the squared
    distance to the centre first (2 factors for one bit, 5 for more)."""
    sign = (d + 7) // 8
    if nb_bits == 1:
        return codes[:, sign:].copy().view("<f4")
    base = codes[:, sign : sign + RABITQ_MULTIBIT_BASE_FACTOR_BYTES].copy().view("<f4")
    extra = codes[:, codes.shape[1] - RABITQ_MULTIBIT_EX_FACTOR_BYTES :].copy().view("<f4")
    return np.concatenate([base, extra], axis=1)


def _fail(message: str) -> CorruptIndexError:
    return CorruptIndexError(f"faiss payload: {message}")


class _Reader:
    """Bounds-checked little-endian reads over a payload; a length never sizes anything before it is checked."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if size > self.remaining():
            raise _fail(f"ends inside a field at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str) -> int | float:
        return self.unpack(fmt)[0]

    def fourcc(self) -> bytes:
        if self.remaining() < 4:
            raise _fail(f"ends where a type code was expected at byte {self.pos}")
        code = bytes(self.data[self.pos : self.pos + 4])
        self.pos += 4
        return code

    def vector(self, dtype: str, unit: int = 1) -> np.ndarray:
        """A ``WRITEVECTOR`` (``unit`` 1) or ``WRITEXBVECTOR`` (``unit`` 4, read as bytes) of ``dtype`` items."""
        (count,) = self.unpack("<Q")
        item = np.dtype(dtype).itemsize * unit
        if count > self.remaining() // item:
            raise _fail(f"a length field at byte {self.pos - 8} claims {count} items, more than the "
                        f"{self.remaining()} bytes that remain")
        out = np.frombuffer(self.data, dtype=dtype, count=count * unit, offset=self.pos)
        self.pos += count * item
        return out


@dataclass
class Hnsw:
    """faiss ``HNSW`` as stored."""

    assign_probas: np.ndarray
    cum_nneighbor_per_level: np.ndarray
    levels: np.ndarray
    offsets: np.ndarray
    neighbors: np.ndarray
    entry_point: int
    max_level: int
    ef_construction: int
    ef_search: int


@dataclass
class FaissPayload:
    """What a checked faiss payload holds: its type codes, header, graph and storage parts."""

    fourcc: bytes
    storage_fourcc: bytes
    d: int
    ntotal: int
    metric: int
    hnsw: Hnsw
    #: storage arrays by name: "vectors" (IxF*), "codes", "trained" (IxSQ), "centroids" (IxPq), "center" (Ixrq)
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    #: storage scalars by name: "qtype", "code_size", "pq_m", "nbits" (PQ and RaBitQ), "qb"
    fields: dict[str, int] = field(default_factory=dict)


def _header(r: _Reader) -> tuple[int, int, int]:
    d, ntotal, _dummy1, _dummy2, is_trained, metric = r.unpack("<iqqqBi")
    if metric > 1:
        r.one("<f")
    if d <= 0 or ntotal < 0 or is_trained > 1:
        raise _fail(f"index header holds d={d}, ntotal={ntotal}, is_trained={is_trained}")
    return d, ntotal, metric


def _hnsw(r: _Reader) -> Hnsw:
    probas = r.vector("<f8")
    cum = r.vector("<i4")
    levels = r.vector("<i4")
    offsets = r.vector("<u8")
    neighbors = r.vector("<i4")
    entry, max_level, ef_construction, ef_search, _upper_beam = r.unpack("<5i")
    return Hnsw(probas, cum, levels, offsets, neighbors, entry, max_level, ef_construction, ef_search)


def check_hnsw(h: Hnsw, ntotal: int, m: int, ef_construction: int) -> None:
    """The graph faiss searches: per-level capacities from ``m`` (2M on level 0, M above), levels, offsets that
    tile the neighbour array, neighbours that exist and reach the level they are linked on, the entry point on
    the top level, and construction parameters that match the configuration."""
    cum = h.cum_nneighbor_per_level.astype(np.int64)
    if len(cum) != len(h.assign_probas) + 1 or len(cum) < 2 or cum[0] != 0 or cum[1] != 2 * m or (
            np.diff(cum[1:]) != m).any():
        raise _fail(f"HNSW neighbour capacities per level do not follow M={m}")
    if not np.isfinite(h.assign_probas).all() or (h.assign_probas < 0).any() or (h.assign_probas > 1).any():
        raise _fail("HNSW level probabilities are not probabilities")
    if h.ef_construction != ef_construction or h.ef_search < 1:
        raise _fail(f"HNSW efConstruction {h.ef_construction} does not match the configuration's {ef_construction}"
                    f" or efSearch {h.ef_search} is not positive")
    levels = h.levels.astype(np.int64)
    if len(levels) != ntotal or len(h.offsets) != ntotal + 1:
        raise _fail(f"HNSW holds {len(levels)} levels and {len(h.offsets)} offsets for {ntotal} vectors")
    if ntotal == 0:
        if len(h.neighbors) or h.entry_point != -1 or h.max_level != -1:
            raise _fail("an empty HNSW graph holds neighbours or an entry point")
        return
    if levels.min() < 1 or levels.max() >= len(cum):
        raise _fail("HNSW node levels lie outside the levels the graph has room for")
    offsets = h.offsets.astype(np.int64)  # bounded by len(neighbors) below, so no overflow matters
    if offsets[0] != 0 or (h.offsets[-1] != np.uint64(len(h.neighbors))) or (
            np.diff(offsets) != cum[levels]).any():
        raise _fail("HNSW offsets do not tile its neighbour array by the nodes' levels")
    if h.max_level != int(levels.max()) - 1 or not 0 <= h.entry_point < ntotal or (
            levels[h.entry_point] - 1 != h.max_level):
        raise _fail(f"HNSW entry point {h.entry_point} and top level {h.max_level} do not agree with the levels")
    neighbors = h.neighbors
    if len(neighbors) and ((neighbors < -1).any() or (neighbors >= ntotal).any()):
        raise _fail("HNSW links to a node that does not exist")
    # the level each neighbour slot belongs to: faiss reads a neighbour's own list on that level
    node = np.repeat(np.arange(ntotal), np.diff(offsets))
    slot_level = np.searchsorted(cum, np.arange(len(neighbors)) - offsets[node], side="right") - 1
    linked = neighbors >= 0
    if (levels[neighbors[linked]] <= slot_level[linked]).any():
        raise _fail("HNSW links a node on some level to a node below that level")


def _storage(r: _Reader, out: FaissPayload) -> None:
    code = r.fourcc()
    out.storage_fourcc = code
    d, ntotal, metric = _header(r)
    if (d, ntotal, metric) != (out.d, out.ntotal, out.metric):
        raise _fail(f"storage {code!r} header (d={d}, ntotal={ntotal}, metric={metric}) disagrees with its index's")
    if code in (b"IxF2", b"IxFI"):
        codes = r.vector("<u1", unit=4)
        if len(codes) != ntotal * d * 4:
            raise _fail(f"flat storage holds {len(codes)} bytes, {ntotal} vectors of {d} floats need {ntotal * d * 4}")
        out.parts["vectors"] = codes.view("<f4").reshape(ntotal, d)
    elif code == b"IxSQ":
        qtype, _rangestat, _arg, sq_d, code_size = r.unpack("<iifQQ")
        trained = r.vector("<f4")
        codes = r.vector("<u1")
        want = {QT_8BIT: d, QT_4BIT: (d + 1) // 2}.get(qtype)
        # an index is trained by its first batch: an empty one may hold no ranges yet
        trained_ok = len(trained) == 2 * d or (ntotal == 0 and len(trained) == 0)
        if sq_d != d or code_size != want or not trained_ok or len(codes) != ntotal * code_size:
            raise _fail(f"scalar quantizer (qtype {qtype}, d {sq_d}, code size {code_size}, {len(trained)} trained "
                        f"values, {len(codes)} code bytes) does not fit {ntotal} vectors of {d} dimensions")
        out.parts.update(trained=trained, codes=codes)
        out.fields.update(qtype=qtype, code_size=code_size)
    elif code == b"IxPq":
        pq_d, pq_m, nbits = r.unpack("<QQQ")
        if nbits not in PQ_NBITS or pq_m < 1 or pq_d != d or d % pq_m:
            raise _fail(f"product quantizer (d {pq_d}, M {pq_m}, {nbits} bits) is not one of {d} dimensions with "
                        f"M dividing d and {' or '.join(map(str, PQ_NBITS))} bits")
        code_size = (pq_m * nbits + 7) // 8
        centroids = r.vector("<f4")
        codes = r.vector("<u1")
        r.unpack("<iBi")
        if len(centroids) != d * (1 << nbits) or len(codes) != ntotal * code_size:
            raise _fail(f"product quantizer (d {pq_d}, M {pq_m}, {nbits} bits, {len(centroids)} centroid values, "
                        f"{len(codes)} code bytes) does not fit {ntotal} vectors of {d} dimensions")
        out.parts.update(centroids=centroids, codes=codes)
        out.fields.update(pq_m=pq_m, nbits=nbits, code_size=code_size)
    elif code in (b"Ixrq", b"Ixrr"):
        rq_d, code_size, rq_metric = r.unpack("<QQi")
        nb_bits = 1 if code == b"Ixrq" else r.one("<Q")
        if code == b"Ixrr" and nb_bits not in RABITQ_NB_BITS[1:]:
            raise _fail(f"multi-bit RaBitQ storage claims {nb_bits} bits per dimension, not 2 to 8")
        codes = r.vector("<u1")
        center = r.vector("<f4")
        qb, centered = r.unpack("<BB")  # faiss 1.15.1 writes IndexRaBitQ::centered after qb
        if rq_d != d or rq_metric != metric or code_size != rabitq_code_size(d, nb_bits) or (
                len(codes) != ntotal * code_size) or len(center) not in (0, d) or qb > 8 or centered > 1:
            raise _fail(f"RaBitQ storage (d {rq_d}, code size {code_size}, {len(codes)} code bytes, "
                        f"{len(center)} center values) does not fit {ntotal} {nb_bits}-bit codes of {d} dimensions")
        # each code holds its own f32 factors: the squared distance to the center (>= 0) first, then multipliers
        factors = rabitq_factors(codes.reshape(ntotal, code_size), d, nb_bits)
        if factors.size and (not np.isfinite(factors).all() or (factors[:, 0] < 0).any()):
            raise _fail("RaBitQ codes hold non-finite or negative correction factors")
        out.parts.update(codes=codes, center=center)
        out.fields.update(code_size=code_size, qb=qb, nbits=nb_bits)
    else:
        raise _fail(f"storage type {code!r} is not one this library writes")
    for name in ("vectors", "trained", "centroids", "center"):
        if name in out.parts and not np.isfinite(out.parts[name]).all():
            raise _fail(f"stored {name} hold NaN or infinity")
    flaw = stored_row_flaw(out.parts["vectors"]) if "vectors" in out.parts else None
    if flaw is not None:  # the insert rule: a finite float32 squared norm too
        raise _fail(f"a stored vector no insert accepts: {flaw}")


#: index type code -> storage type codes it may hold
_FLOAT_TYPES = {b"IHNf": (b"IxF2", b"IxFI"), b"IHNs": (b"IxSQ",), b"IHNp": (b"IxPq",),
                b"IHNr": (b"Ixrq", b"Ixrr")}


def parse_index(payload: bytes, *, fourcc: bytes, d: int, metric: int, m: int, ef_construction: int,
                unit_vectors: bool = False, nbits: int | None = None) -> FaissPayload:
    """Parse and check a ``serialize_index`` payload that must be of type ``fourcc`` with dimension ``d`` and
    ``metric``, its graph built with ``m`` and ``ef_construction``; ``unit_vectors``: stored float vectors must
    be unit length (cosine); ``nbits``: the bits of a PQ sub-code or of a RaBitQ dimension the storage must
    hold (None: any faiss writes). Raises :class:`CorruptIndexError` on any disagreement or length past the
    end."""
    r = _Reader(payload)
    code = r.fourcc()
    if code != fourcc or code not in _FLOAT_TYPES:
        raise _fail(f"holds index type {code!r}, expected {fourcc!r}")
    found_d, ntotal, found_metric = _header(r)
    if found_d != d or found_metric != metric:
        raise _fail(f"holds {found_d}-d vectors under faiss metric {found_metric}, the configuration says {d}-d "
                    f"under metric {metric}")
    out = FaissPayload(code, b"", d, ntotal, metric, _hnsw(r))
    check_hnsw(out.hnsw, ntotal, m, ef_construction)
    _storage(r, out)
    if out.storage_fourcc not in _FLOAT_TYPES[code]:
        raise _fail(f"index {code!r} holds storage {out.storage_fourcc!r}")
    if nbits is not None and "nbits" in out.fields and out.fields["nbits"] != nbits:
        raise _fail(f"storage holds {out.fields['nbits']}-bit codes, the configuration says {nbits} bits")
    if r.remaining():
        raise _fail(f"{r.remaining()} bytes follow the index")
    vectors = out.parts.get("vectors")
    if unit_vectors and vectors is not None and len(vectors):
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        if (np.abs(norms - 1.0) > _UNIT_TOLERANCE).any():
            raise _fail("stored vectors are not unit length, so they were not written under the cosine metric")
    return out


def parse_binary_index(payload: bytes, *, d: int, m: int, ef_construction: int) -> FaissPayload:
    """Parse and check a ``serialize_index_binary`` payload of an ``IndexBinaryHNSW`` over ``d`` bits."""
    r = _Reader(payload)
    code = r.fourcc()
    if code != b"IBHf":
        raise _fail(f"holds binary index type {code!r}, expected b'IBHf'")

    def header() -> tuple[int, int, int, int]:
        found_d, code_size, ntotal, is_trained, metric = r.unpack("<iiqBi")
        if found_d != d or code_size != d // 8 or ntotal < 0 or is_trained > 1:
            raise _fail(f"binary header holds d={found_d}, code size {code_size}, ntotal={ntotal}; the "
                        f"configuration gives {d} bits")
        return found_d, code_size, ntotal, metric

    _, code_size, ntotal, metric = header()
    out = FaissPayload(code, b"", d, ntotal, metric, _hnsw(r))
    check_hnsw(out.hnsw, ntotal, m, ef_construction)
    out.storage_fourcc = r.fourcc()
    if out.storage_fourcc != b"IBxF" or header()[2:] != (ntotal, metric):
        raise _fail("binary HNSW storage is not a flat binary index of the same vectors")
    xb = r.vector("<u1")
    if len(xb) != ntotal * code_size:
        raise _fail(f"binary storage holds {len(xb)} bytes, {ntotal} codes of {code_size} bytes need more or less")
    if r.remaining():
        raise _fail(f"{r.remaining()} bytes follow the index")
    out.parts["codes"] = xb.reshape(ntotal, code_size)
    out.fields["code_size"] = code_size
    return out
