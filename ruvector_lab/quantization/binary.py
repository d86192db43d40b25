"""Binary quantization, RuVector's ``BinaryQuantized``: one sign bit per dimension, 32x.

Bit ``i`` of a code is set when dimension ``i`` is >= 0, packed eight to a byte with the lowest dimension
in the lowest bit: exactly faiss' ``fvecs2bitvecs`` layout, so the codes feed ``IndexBinaryFlat`` and
``IndexBinaryHNSW`` unchanged. Codes keep directions only (no norm), so the codec serves cosine alone.
Decoding gives the +1/-1 sign vector; the asymmetric score is the cosine between the float query and it.
"""

from __future__ import annotations

import numpy as np

from .base import Codec, cosine_from_dots


def pack_signs(x: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32 to ``(n, ceil(d/8))`` uint8 sign bits (x >= 0 sets the bit, little bit order)."""
    return np.packbits(x >= 0, axis=1, bitorder="little")


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
        # q . s = 2 (q . bits) - sum(q): one matrix product over the 0/1 bits, no +-1 matrix needed
        dots = 2.0 * (queries @ self._bits(codes).T.astype(np.float32)) - queries.sum(axis=1)[:, None]
        sign_norms = np.full(codes.shape[0], np.sqrt(self.dimensions), dtype=np.float32)
        return cosine_from_dots(dots, np.linalg.norm(queries, axis=1), sign_norms)

    def hamming(self, codes_a: object, codes_b: object) -> np.ndarray:
        """Symmetric ``(m, n)`` Hamming distances between two sets of this codec's codes (int32)."""
        a, _ = self.check_codes(codes_a)
        b, _ = self.check_codes(codes_b)
        return hamming(a, b)
