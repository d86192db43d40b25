"""The library's versioned, checksummed container for everything it writes (indexes, codecs, weights).

Layout, all integers little-endian::

    magic      8 bytes   b"RVLAB\\x00\\r\\n" (the CR LF catches text-mode mangling)
    version    u16       FORMAT_VERSION; a newer one is refused, never guessed at
    kind_len   u16       then the kind, ASCII (e.g. "hnsw-index"), so one kind is never read as another
    header_len u32       then the header, UTF-8 JSON: the caller's metadata and an array table
    arrays               the raw bytes of each array, in table order
    sha256     32 bytes  of everything before it

Arrays are stored as raw little-endian bytes with their dtype and shape in the header; only plain numeric
dtypes are accepted, so reading a container never runs code (no pickle anywhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptIndexError, InvalidParameterError

MAGIC = b"RVLAB\x00\r\n"
FORMAT_VERSION = 1
_DIGEST = 32
_ALLOWED_DTYPES = frozenset(
    {"<f4", "<f8", "<f2", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "|b1"}
)
_PREFIX = struct.Struct("<8sHH")


def dumps(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """Pack ``meta`` (JSON-able) and named numpy ``arrays`` into one container of the given ``kind``."""
    arrays = arrays or {}
    table = []
    chunks = []
    for name, array in arrays.items():
        arr = np.ascontiguousarray(array)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        arr = arr.astype(dtype, copy=False)
        if dtype.str not in _ALLOWED_DTYPES:
            raise InvalidParameterError(f"array {name!r} has dtype {arr.dtype}, which the container cannot store")
        data = arr.tobytes()
        table.append({"name": name, "dtype": dtype.str, "shape": list(arr.shape), "nbytes": len(data)})
        chunks.append(data)
    header = json.dumps({"meta": meta, "arrays": table}, separators=(",", ":"), allow_nan=False).encode()
    kind_bytes = kind.encode("ascii")
    body = b"".join(
        [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(kind_bytes)), kind_bytes, struct.pack("<I", len(header)), header,
         *chunks]
    )
    return body + hashlib.sha256(body).digest()


def loads(blob: bytes | bytearray | memoryview, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Check and unpack a container written by :func:`dumps`; return ``(meta, arrays)``.

    Raises :class:`CorruptIndexError` naming the problem for a blob that is not bytes, too short, of another
    magic, of a newer version, of another kind, whose checksum fails or whose array table does not add up.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CorruptIndexError(f"expected bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) < _PREFIX.size + 4 + _DIGEST:
        raise CorruptIndexError(f"blob is truncated: {len(data)} bytes is shorter than any container")
    magic, version, kind_len = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptIndexError(f"not a ruvector-lab container (magic {magic!r}, expected {MAGIC!r})")
    if version > FORMAT_VERSION:
        raise CorruptIndexError(
            f"container format version {version} is newer than this ruvector-lab reads ({FORMAT_VERSION}); "
            "upgrade ruvector-lab"
        )
    if version < 1:
        raise CorruptIndexError(f"container format version {version} is not valid")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptIndexError("checksum mismatch: the blob is truncated or was modified after it was written")
    pos = _PREFIX.size
    found_kind = body[pos : pos + kind_len].decode("ascii", errors="replace")
    pos += kind_len
    if found_kind != kind:
        raise CorruptIndexError(f"container holds a {found_kind!r}, expected a {kind!r}")
    if pos + 4 > len(body):
        raise CorruptIndexError("blob is truncated inside the header")
    (header_len,) = struct.unpack_from("<I", body, pos)
    pos += 4
    try:
        header = json.loads(body[pos : pos + header_len])
        meta, table = header["meta"], header["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptIndexError(f"container header is not valid: {exc}") from None
    pos += header_len
    arrays: dict[str, np.ndarray] = {}
    try:
        for entry in table:
            dtype = np.dtype(entry["dtype"]) if entry["dtype"] in _ALLOWED_DTYPES else None
            if dtype is None:
                raise CorruptIndexError(f"array {entry.get('name')!r} has a dtype the container does not allow")
            shape = tuple(int(s) for s in entry["shape"])
            nbytes = int(entry["nbytes"])
            if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
                raise CorruptIndexError(f"array {entry['name']!r}: shape {shape} does not match {nbytes} bytes")
            if pos + nbytes > len(body):
                raise CorruptIndexError(f"array {entry['name']!r} runs past the end of the blob")
            arrays[str(entry["name"])] = np.frombuffer(body, dtype=dtype, count=nbytes // dtype.itemsize,
                                                       offset=pos).reshape(shape).copy()
            pos += nbytes
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptIndexError(f"container array table is not valid: {exc}") from None
    if pos != len(body):
        raise CorruptIndexError(f"{len(body) - pos} unexpected bytes after the last array")
    if not isinstance(meta, dict):
        raise CorruptIndexError("container metadata is not a mapping")
    return meta, arrays


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
