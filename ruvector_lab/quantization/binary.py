"""Binary quantization, RuVector's ``BinaryQuantized``: one sign bit per dimension, 32x.

Bit ``i`` of a code is set when dimension ``i`` is >= 0, packed eight to a byte with the lowest dimension
in the lowest bit: exactly faiss' ``fvecs2bitvecs`` layout, so the codes feed ``IndexBinaryFlat`` and
``IndexBinaryHNSW`` unchanged. Codes keep directions only (no norm), so the codec serves cosine alone.
Decoding gives the +1/-1 sign vector; the asymmetric score is the cosine between the float query and it.
"""

from __future__ import annotations

import numpy as np

from ..distances import cosine_from_dots
from .base import Codec


def pack_signs(x: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32 to ``(n, ceil(d/8))`` uint8 sign bits (x >= 0 sets the bit, little bit order)."""
    return np.packbits(x >= 0, axis=1, bitorder="little")


#: (256, 8) float32: the bits of each byte value, lowest bit first
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.float32)
#: up to this many queries, per-byte lookup tables beat unpacking every code to floats
_TABLE_QUERIES = 4


def bit_dots(queries: np.ndarray, packed: np.ndarray, dimensions: int) -> np.ndarray:
    """``(m, n)`` float32 inner products of float query rows with the 0/1 bit vectors packed in ``packed``.

    For a few queries each code byte is looked up in a per-query ``(bytes, 256)`` table (no float matrix of
    the codes is built); for many, the bits are unpacked once and multiplied.
    """
    m, nbytes = queries.shape[0], packed.shape[1]
    if m > _TABLE_QUERIES:
        bits = np.unpackbits(packed, axis=1, count=dimensions, bitorder="little").astype(np.float32)
        return queries @ bits.T
    padded = np.zeros((m, nbytes * 8), dtype=np.float32)
    padded[:, :dimensions] = queries
    out = np.zeros((m, packed.shape[0]), dtype=np.float32)
    for row in range(m):
        table = padded[row].reshape(nbytes, 8) @ _BYTE_BITS.T  # table[j, v]: query . bits of value v at byte j
        for j in range(nbytes):
            out[row] += table[j][packed[:, j]]
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(m, n)`` Hamming distances (int32) between the bit codes in the rows of ``a`` and of ``b``."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    for row, code in enumerate(a):
        out[row] = np.bitwise_count(np.bitwise_xor(b, code)).sum(axis=1, dtype=np.int32)
    return out


class BinaryCodec(Codec):
    """Sign bits; cosine only, since the codes carry no magnitude."""

    kind = "binary"
    supported_metrics = ("cosine",)

    @property
    def code_size(self) -> int:
        """``ceil(d / 8)`` bytes."""
        return (self.dimensions + 7) // 8

    def _encode(self, x: np.ndarray) -> np.ndarray:
        if self.engine == "faiss":
            import faiss

            out = np.empty((x.shape[0], self.code_size), dtype=np.uint8)
            faiss.fvecs2bitvecs(faiss.swig_ptr(x), faiss.swig_ptr(out), self.dimensions, x.shape[0])
            return out
        return pack_signs(x)

    def _bits(self, codes: np.ndarray) -> np.ndarray:
        return np.unpackbits(codes, axis=1, count=self.dimensions, bitorder="little")

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        signs = self._bits(codes).astype(np.float32)
        signs *= 2
        signs -= 1
        return signs

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        # q . s = 2 (q . bits) - sum(q): inner products with the 0/1 bits, no +-1 matrix needed
        dots = 2.0 * bit_dots(queries, codes, self.dimensions) - queries.sum(axis=1)[:, None]
        sign_norms = np.full(codes.shape[0], np.sqrt(self.dimensions), dtype=np.float32)
        return cosine_from_dots(dots, np.linalg.norm(queries, axis=1), sign_norms)

    def hamming(self, codes_a: object, codes_b: object) -> np.ndarray:
        """Symmetric ``(m, n)`` Hamming distances between two sets of this codec's codes (int32)."""
        a, _ = self.check_codes(codes_a)
        b, _ = self.check_codes(codes_b)
        return hamming(a, b)
