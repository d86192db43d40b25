"""Reading the bytes ``rvf_store_export`` writes, in Python, so nothing malformed ever reaches the module.

The layout the module writes (little-endian): a 64-byte segment header (magic ``SFVR``, version 1, type 1 =
vectors, flags, segment id, payload length, zeros), the vector payload ``count: u16, dim: u32`` then
``(id: u64, vector: f32 * dim)`` per live vector in insertion order, then a manifest segment (type 5) with a
44-byte payload ``epoch: u32, dim: u16, total: u64, profile: u8, segments: u32`` and one
``(id: u64, offset: u64, payload length: u64, type: u8)`` entry.

The module writes ``count`` and the manifest's ``dim`` as 16-bit fields, so past 65,535 vectors (or
dimensions) they wrap; the payload length is 64-bit and exact, so the number of vectors is taken from it and
the 16-bit field only has to agree modulo 2**16.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptIndexError

SEGMENT_HEADER_SIZE = 64
SEGMENT_MAGIC = b"SFVR"  # 0x52564653 little-endian
SEGMENT_VERSION = 1
SEGMENT_VEC = 1
SEGMENT_MANIFEST = 5
MANIFEST_PAYLOAD_SIZE = 44
_HEADER = struct.Struct("<4sBBHQQ")
_MANIFEST = struct.Struct("<IHQBIQQQB")


@dataclass(frozen=True)
class RvfExport:
    """The content of one exported store: ids (n,) uint64 and vectors (n, dim) float32, in store order."""

    dimensions: int
    ids: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def export_size(count: int, dimensions: int) -> int:
    """Bytes the module writes when it exports ``count`` vectors of ``dimensions``."""
    return 2 * SEGMENT_HEADER_SIZE + 6 + count * (8 + 4 * dimensions) + MANIFEST_PAYLOAD_SIZE


def _header(blob: bytes, offset: int, what: str) -> tuple[int, int, int]:
    if len(blob) < offset + SEGMENT_HEADER_SIZE:
        raise CorruptIndexError(f"rvf export is truncated inside the {what} segment header")
    magic, version, seg_type, _flags, seg_id, payload_len = _HEADER.unpack_from(blob, offset)
    if magic != SEGMENT_MAGIC or version != SEGMENT_VERSION:
        raise CorruptIndexError(f"rvf export's {what} segment has magic {magic!r} version {version}, "
                                f"expected {SEGMENT_MAGIC!r} version {SEGMENT_VERSION}")
    return seg_type, seg_id, payload_len


def parse_export(blob: bytes | bytearray | memoryview, dimensions: int) -> RvfExport:
    """Check and decode an export of a store of ``dimensions``; :class:`CorruptIndexError` names any flaw.

    Checked: both segment headers, the vector payload's length against ``dimensions``, the 16-bit count,
    the manifest's totals, the exact overall length, finite vectors and distinct ids.
    """
    data = bytes(blob)
    seg_type, _, payload_len = _header(data, 0, "vector")
    if seg_type != SEGMENT_VEC:
        raise CorruptIndexError(f"rvf export starts with segment type {seg_type}, expected {SEGMENT_VEC} (vectors)")
    row = 8 + 4 * dimensions
    if payload_len < 6 or (payload_len - 6) % row:
        raise CorruptIndexError(
            f"rvf vector payload of {payload_len} bytes does not hold whole vectors of {dimensions} dimensions"
        )
    count = (payload_len - 6) // row
    expected = export_size(count, dimensions)
    if len(data) != expected:
        raise CorruptIndexError(f"rvf export is {len(data)} bytes, expected {expected} for {count} vectors")
    start = SEGMENT_HEADER_SIZE
    count16, dim = struct.unpack_from("<HI", data, start)
    if dim != dimensions or count16 != count % (1 << 16):
        raise CorruptIndexError(
            f"rvf vector payload says {count16} vectors of {dim} dimensions; expected {count} of {dimensions}"
        )
    manifest_at = start + payload_len
    seg_type, _, manifest_len = _header(data, manifest_at, "manifest")
    if seg_type != SEGMENT_MANIFEST or manifest_len != MANIFEST_PAYLOAD_SIZE:
        raise CorruptIndexError(f"rvf manifest segment has type {seg_type} and {manifest_len} payload bytes")
    _epoch, _dim16, total, _profile, n_segments, _seg_id, seg_offset, seg_len, listed_type = _MANIFEST.unpack_from(
        data, manifest_at + SEGMENT_HEADER_SIZE
    )
    if total != count or n_segments != 1 or seg_offset != 0 or seg_len != payload_len or listed_type != SEGMENT_VEC:
        raise CorruptIndexError("rvf manifest does not describe the vector segment it follows")
    records = np.frombuffer(data, dtype=np.uint8, count=count * row, offset=start + 6).reshape(count, row)
    ids = records[:, :8].copy().view("<u8").reshape(count).astype(np.uint64)
    vectors = records[:, 8:].copy().view("<f4").reshape(count, dimensions).astype(np.float32)
    if vectors.size and not np.isfinite(vectors).all():
        raise CorruptIndexError("rvf export holds NaN or infinite vector components")
    if len(np.unique(ids)) != count:
        raise CorruptIndexError("rvf export holds the same id twice")
    return RvfExport(dimensions=dimensions, ids=ids, vectors=vectors)
