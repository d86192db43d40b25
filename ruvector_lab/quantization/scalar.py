"""Scalar quantization with a per-vector range, RuVector's ``ScalarQuantized``: uint8 levels, about 4x.

Each vector keeps its own minimum and step (``(max - min) / 255``) as two float32 values at the end of its
code, so vectors of very different scales quantize equally well and no training is needed. Code layout:
``d`` bytes of levels, then ``min`` and ``scale`` as little-endian float32 (``d + 8`` bytes).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..distances import cosine_from_dots
from ..errors import QuantizationError
from .base import SCORE_BLOCK, Codec

#: bytes of the per-vector header (float32 min, float32 scale) after the levels
HEADER_BYTES = 8


def levels_and_range(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize each row of ``x`` to integers ``0..levels`` over its own min..max.

    Returns ``(q uint8 (n, d), mins float32 (n,), scales float32 (n,))`` with ``x ~ mins + q * scales``; a
    constant row gets scale 0 and decodes exactly. Raises :class:`QuantizationError` if a row's range does
    not fit in float32.
    """
    mins = x.min(axis=1)
    with np.errstate(over="ignore"):
        spans = x.max(axis=1) - mins
    if not np.isfinite(spans).all():
        row = int(np.flatnonzero(~np.isfinite(spans))[0])
        raise QuantizationError(f"row {row}: its value range overflows float32 and cannot be quantized")
    scales = (spans / np.float32(levels)).astype(np.float32)
    # divide rather than multiply by 1/scale: a subnormal step has no finite float32 reciprocal
    q = (x - mins[:, None]) / np.where(scales > 0, scales, np.float32(1))[:, None]
    np.rint(q, out=q)
    np.clip(q, 0, levels, out=q)
    return q.astype(np.uint8), mins.astype(np.float32), scales


def pack_header(mins: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``(n, 8)`` uint8: each row's min and scale as little-endian float32."""
    return np.stack([mins, scales], axis=1).astype("<f4").view(np.uint8)


def unpack_header(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each code row's ``(min, scale)`` from its last 8 bytes."""
    header = np.ascontiguousarray(codes[:, -HEADER_BYTES:]).view("<f4").astype(np.float32)
    return header[:, 0], header[:, 1]


class _PerVectorCodec(Codec):
    """Shared by scalar and int4: levels over each vector's own min..max, header of min and scale."""

    levels: ClassVar[int]

    def _pack(self, q: np.ndarray) -> np.ndarray:
        return q

    def _unpack(self, payload: np.ndarray) -> np.ndarray:
        return payload

    @property
    def payload_size(self) -> int:
        """Bytes of levels per vector (the code minus its 8-byte header)."""
        return self.dimensions

    @property
    def code_size(self) -> int:
        """Level bytes plus the 8-byte min/scale header."""
        return self.payload_size + HEADER_BYTES

    def _encode(self, x: np.ndarray) -> np.ndarray:
        q, mins, scales = levels_and_range(x, self.levels)
        return np.ascontiguousarray(np.concatenate([self._pack(q), pack_header(mins, scales)], axis=1))

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        # x = min + scale * levels, so every term comes from products with the integer levels: no decoded matrix
        mins, scales = unpack_header(codes)
        levels = self._unpack(codes[:, : self.payload_size]).astype(np.float32)
        dots = (queries @ levels.T) * scales + np.outer(queries.sum(axis=1), mins)
        if self.metric == "dot_product":
            return np.negative(dots)
        sum_l = levels.sum(axis=1)
        sum_l2 = np.einsum("ij,ij->i", levels, levels)
        x_sq = self.dimensions * mins * mins + 2.0 * mins * scales * sum_l + scales * scales * sum_l2
        x_sq = np.maximum(x_sq, 0.0)
        if self.metric == "cosine":
            return cosine_from_dots(dots, np.linalg.norm(queries, axis=1), np.sqrt(x_sq))
        q_sq = np.einsum("ij,ij->i", queries, queries)
        return np.sqrt(np.maximum(q_sq[:, None] + x_sq[None, :] - 2.0 * dots, 0.0)).astype(np.float32)

    def stored_flaw(self, codes: np.ndarray) -> str | None:
        """The header first: each code's min and scale finite and the scale >= 0 (the encoder writes
        ``(max - min) / levels``); then the decoded rows (:meth:`Codec.stored_flaw`) and the norm that
        :meth:`_score` builds from the header, which must be finite too."""
        mins, scales = unpack_header(codes)
        bad = np.flatnonzero(~(np.isfinite(mins) & np.isfinite(scales) & (scales >= 0)))
        if bad.size:
            row = int(bad[0])
            return (f"code {row} has min {float(mins[row])!r} and scale {float(scales[row])!r}; both must be finite "
                    "and the scale >= 0")
        flaw = super().stored_flaw(codes)
        if flaw is not None:
            return flaw
        for start in range(0, codes.shape[0], SCORE_BLOCK):
            block = codes[start : start + SCORE_BLOCK]
            m, s = mins[start : start + len(block)], scales[start : start + len(block)]
            levels = self._unpack(block[:, : self.payload_size]).astype(np.float32)
            with np.errstate(all="ignore"):
                terms = (self.dimensions * m * m, 2.0 * m * s * levels.sum(axis=1),
                         s * s * np.einsum("ij,ij->i", levels, levels))
                x_sq = terms[0] + terms[1] + terms[2]
            bad = np.flatnonzero(~(np.isfinite(terms[0]) & np.isfinite(terms[1]) & np.isfinite(terms[2])
                                   & np.isfinite(x_sq)))
            if bad.size:
                return f"code {start + int(bad[0])}'s min and scale overflow float32 in its squared norm"
        return None

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        mins, scales = unpack_header(codes)
        q = self._unpack(codes[:, : self.payload_size]).astype(np.float32)
        q *= scales[:, None]
        q += mins[:, None]
        return q


class ScalarCodec(_PerVectorCodec):
    """uint8 per dimension over the vector's own range; max abs error per vector <= (max - min) / 255."""

    kind = "scalar"
    levels = 255
