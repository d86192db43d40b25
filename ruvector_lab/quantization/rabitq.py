"""RaBitQ (Gao and Long, SIGMOD 2024) in NumPy: one bit per dimension after a random rotation, plus three
float32 factors per vector, with an unbiased estimate of inner products.

Training fixes the centre ``c`` (mean of the sample) and a seeded random orthogonal matrix ``P``. A vector
``x`` becomes its residual ``r = x - c``; the signs of the rotated unit residual ``y = (r / |r|) P`` are the
code bits, i.e. the nearest vertex ``x̄ = sign(y) / sqrt(d)`` of the hypercube. Stored per vector: the bits,
``|r|``, ``<x̄, y>`` (how well the vertex matches: the estimator's correction) and ``|x|``. For a query
``q``: ``<x, q> ≈ <c, q> + |r| <x̄, q P> / <x̄, y>``, from which dot products, cosines (with ``|x|``) and L2
distances follow. Code size ``ceil(d/8) + 12`` bytes. The faiss and ruvector RaBitQ indexes use their own
layouts; this codec serves the flat scan of the numpy and wasm tiers and any direct use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..distances import cosine_from_dots
from ..errors import QuantizationError
from ..validation import MAX_RABITQ_DIMENSIONS, as_float32, check_positive_int
from .base import Codec
from .binary import bit_dots

FACTOR_BYTES = 12  # |r|, <x̄, y>, |x> as float32


def random_rotation(dimensions: int, seed: int) -> np.ndarray:
    """A seeded ``(d, d)`` float32 orthogonal matrix (QR of a Gaussian matrix, signs fixed so it is unique)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dimensions, dimensions)))
    return np.ascontiguousarray(q * np.sign(np.diag(r)), dtype=np.float32)


class RabitqCodec(Codec):
    """1-bit RaBitQ codes with per-vector factors; needs :meth:`train` (centre and rotation) before use."""

    kind = "rabitq"
    needs_training = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the d x d rotation grows with the square of the width: bounded before it is ever built
        check_positive_int("dimensions of a rabitq codec", self.dimensions, maximum=MAX_RABITQ_DIMENSIONS)
        self.centre: np.ndarray | None = None
        self.rotation: np.ndarray | None = None
        self._bits_bytes = (self.dimensions + 7) // 8

    @property
    def code_size(self) -> int:
        """``ceil(d / 8)`` bytes of bits plus 12 bytes of factors."""
        return self._bits_bytes + FACTOR_BYTES

    @property
    def codebook_bytes(self) -> int:
        """Bytes of the shared state: centre and rotation, float32."""
        return 4 * (self.dimensions + self.dimensions**2)

    @property
    def is_trained(self) -> bool:
        """True once centre and rotation exist."""
        return self.centre is not None

    def train(self, x: object) -> RabitqCodec:
        """Centre = mean of up to ``train_size`` sampled rows; rotation from ``config.seed``."""
        data = self._training_rows(x)
        if data.shape[0] > self.config.train_size:
            rng = np.random.default_rng(self.config.seed)
            data = data[rng.choice(data.shape[0], self.config.train_size, replace=False)]
        self.centre = data.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.rotation = random_rotation(self.dimensions, self.config.seed)
        return self

    def _encode(self, x: np.ndarray) -> np.ndarray:
        residual = x - self.centre
        norm_r = np.linalg.norm(residual, axis=1).astype(np.float32)
        unit = residual / np.where(norm_r > 0, norm_r, 1)[:, None]
        y = unit @ self.rotation
        bits = y >= 0
        # <x̄, y> = sum |y| / sqrt(d); a residual of zero has no direction: factor 1 keeps the estimate exact
        ip = np.where(norm_r > 0, np.abs(y).sum(axis=1) / np.sqrt(self.dimensions), 1.0).astype(np.float32)
        factors = np.stack([norm_r, ip, np.linalg.norm(x, axis=1).astype(np.float32)], axis=1).astype("<f4")
        return np.ascontiguousarray(
            np.concatenate([np.packbits(bits, axis=1, bitorder="little"), factors.view(np.uint8)], axis=1)
        )

    def _split(self, codes: np.ndarray, bits: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray,
                                                                       np.ndarray]:
        """``(bits or None, |r|, <x̄, y>, |x|)`` of code rows."""
        unpacked = (np.unpackbits(codes[:, : self._bits_bytes], axis=1, count=self.dimensions, bitorder="little")
                    if bits else None)
        factors = np.ascontiguousarray(codes[:, self._bits_bytes :]).view("<f4").astype(np.float32)
        return unpacked, factors[:, 0], factors[:, 1], factors[:, 2]

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        # the vector whose inner products are exactly the estimator's: c + |r| (x̄ P^T) / <x̄, y>
        bits, norm_r, ip, _ = self._split(codes)
        vertex = (bits.astype(np.float32) * 2 - 1) / np.float32(np.sqrt(self.dimensions))
        return (self.centre + (norm_r / ip)[:, None] * (vertex @ self.rotation.T)).astype(np.float32)  # type: ignore

    def estimate_dots(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``(m, n)`` estimates of ``<x, q>`` for checked float32 queries and code rows."""
        _, norm_r, ip, _ = self._split(codes, bits=False)
        rotated = queries @ self.rotation  # type: ignore[operator]
        bit_part = bit_dots(rotated, codes[:, : self._bits_bytes], self.dimensions)
        vertex_dots = (2.0 * bit_part - rotated.sum(axis=1)[:, None]) / np.sqrt(self.dimensions)
        return (queries @ self.centre)[:, None] + vertex_dots * (norm_r / ip)[None, :]

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        dots = self.estimate_dots(queries, codes)
        if self.metric == "dot_product":
            return np.negative(dots).astype(np.float32)
        norm_x = self._split(codes, bits=False)[3]
        if self.metric == "cosine":
            return cosine_from_dots(dots, np.linalg.norm(queries, axis=1), norm_x)
        sq = np.einsum("ij,ij->i", queries, queries)[:, None] + (norm_x**2)[None, :] - 2.0 * dots
        return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"centre": self.centre, "rotation": self.rotation} if self.centre is not None else {}

    def _load_state(self, arrays: dict[str, np.ndarray]) -> None:
        centre, rotation = arrays.get("centre"), arrays.get("rotation")
        d = self.dimensions
        if centre is None or rotation is None or centre.shape != (d,) or rotation.shape != (d, d):
            raise QuantizationError("a trained rabitq codec was stored without a matching centre and rotation")
        self.centre = as_float32(centre, "centre")
        self.rotation = as_float32(rotation, "rotation")
