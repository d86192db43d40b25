"""A small, safe reader of the safetensors format (a JSON header then raw little-endian tensors).

Reading never runs code: the header is JSON and each tensor is copied out of the byte buffer with numpy after
its dtype, shape and byte range have been checked. Written here instead of taking a dependency for 40 lines.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..errors import ModelError

_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I8": "|i1", "U8": "|u1"}


def read_safetensors(blob: bytes) -> dict[str, np.ndarray]:
    """Parse a safetensors file held in ``blob``; return ``{name: array}``. Raise :class:`ModelError` if malformed."""
    if len(blob) < 8:
        raise ModelError("safetensors blob is shorter than its 8-byte header length")
    (header_len,) = struct.unpack_from("<Q", blob, 0)
    if header_len > len(blob) - 8:
        raise ModelError(f"safetensors header length {header_len} runs past the end of the blob")
    try:
        header = json.loads(blob[8 : 8 + header_len])
    except ValueError as exc:
        raise ModelError(f"safetensors header is not valid JSON: {exc}") from None
    data_start = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise ModelError(f"tensor {name!r} has dtype {entry.get('dtype')!r}, which this reader does not take")
        begin, end = (int(x) for x in entry["data_offsets"])
        shape = tuple(int(s) for s in entry["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(blob) - data_start or count * np.dtype(dtype).itemsize != end - begin:
            raise ModelError(f"tensor {name!r}: byte range {begin}..{end} does not fit shape {shape} or the blob")
        tensors[name] = np.frombuffer(blob, dtype=dtype, count=count, offset=data_start + begin).reshape(shape).copy()
    return tensors
