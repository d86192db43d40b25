"""4-bit scalar quantization with a per-vector range, RuVector's ``Int4Quantized``: about 8x.

Sixteen levels over each vector's own min..max, two dimensions per byte (even dimension in the low nibble,
as faiss' 4-bit scalar quantizer packs them), then the same 8-byte min/scale header as the scalar codec:
``ceil(d / 2) + 8`` bytes. Max abs error per vector <= (max - min) / 15.
"""

from __future__ import annotations

import numpy as np

from .scalar import _PerVectorCodec


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """``(n, d)`` values 0..15 to ``(n, ceil(d/2))`` bytes, even columns in the low nibble."""
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(q[:, 0::2] | (q[:, 1::2] << 4))


def unpack_nibbles(packed: np.ndarray, dimensions: int) -> np.ndarray:
    """Inverse of :func:`pack_nibbles`: ``(n, dimensions)`` uint8 values 0..15."""
    out = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = packed & 0x0F
    out[:, 1::2] = packed >> 4
    return out[:, :dimensions]


class Int4Codec(_PerVectorCodec):
    """Sixteen levels per dimension over the vector's own range, two dimensions per byte."""

    kind = "int4"
    levels = 15

    @property
    def payload_size(self) -> int:
        """``ceil(d / 2)`` bytes of packed nibbles."""
        return (self.dimensions + 1) // 2

    def _pack(self, q: np.ndarray) -> np.ndarray:
        return pack_nibbles(q)

    def _unpack(self, payload: np.ndarray) -> np.ndarray:
        return unpack_nibbles(payload, self.dimensions)
