"""RaBitQ (Gao and Long, SIGMOD 2024) and extended RaBitQ (Gao et al., SIGMOD 2025) in NumPy: ``B`` bits per
dimension (1 to 8) after a random rotation, plus three float32 factors per vector, with an unbiased estimate of
inner products.

Training fixes the centre ``c`` (mean of the sample) and, under ``rotation='random'`` (the default), a seeded
random orthogonal matrix ``P``; ``rotation='none'`` uses no rotation (``P`` is the identity and is not stored).
A vector ``x`` becomes its residual ``r = x - c`` and the rotated unit residual ``y = (r / |r|) P``. Each
dimension gets a level ``u_i`` in ``[0, 2^B - 1]`` standing for ``v_i = u_i - (2^B - 1) / 2``, namely
``v_i = sign(y_i) (min(floor(t |y_i|), 2^(B-1) - 1) + 1/2)`` with the per-vector scale ``t`` that maximises
``cos(v, y)`` (:func:`best_scales`). At one bit ``v = sign(y) / 2``: the nearest hypercube vertex, RaBitQ
proper. The code's grid point is ``x̄ = 2 v / sqrt(d)`` (the vertex ``sign(y) / sqrt(d)`` at one bit).

Code row layout, ``ceil(d B / 8) + 12`` bytes: the levels packed ``B`` bits per dimension in faiss'
``PQEncoderGeneric`` order (:func:`~ruvector_lab.quantization.product.pack_codes`: level ``i`` in bits
``i B`` to ``(i + 1) B - 1`` of the row, least significant bit first, bit ``b`` of the row being bit ``b % 8``
of byte ``b // 8``; at one bit, the sign of dimension ``i`` in bit ``i % 8`` of byte ``i // 8``), then
``|r|``, ``<x̄, y>`` (how well the grid point matches: the estimator's correction) and ``|x|`` as
little-endian float32. For a query ``q``: ``<x, q> ≈ <c, q> + |r| <x̄, q P> / <x̄, y>`` (scale-free in ``x̄``,
so the same as ``|r| <v̂, q P> / <v̂, y>`` with ``v̂ = v / |v|``), from which dot products, cosines (with
``|x|``) and L2 distances follow. The faiss and ruvector RaBitQ indexes use their own layouts; this codec
serves direct use and the quantization sweep.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..distances import cosine_from_dots
from ..errors import QuantizationError
from ..validation import MAX_RABITQ_DIMENSIONS, as_float32, check_positive_int
from .base import Codec, checked_rotation, random_rotation
from .binary import bit_dots
from .product import pack_codes, padding_flaw, unpack_codes

__all__ = ["FACTOR_BYTES", "RabitqCodec", "best_scales", "random_rotation"]

FACTOR_BYTES = 12  # |r|, <x̄, y>, |x> as float32
#: the scale search: ``s = t max|y_i|`` is tried on a geometric grid over ``[_S_LOW, _S_HIGH] * 2^(B-1)`` (the
#: exact optimum lay between 0.91 and 2.46 times 2^(B-1) for B = 2 to 8 on wordnet, fashion-mnist, uniform
#: random and Gaussian rows, rotated or not), then on a linear grid between the neighbours of the best point:
#: the mean cosine comes within 1e-5 of the exact critical-point scan's at a fraction of its cost
_S_LOW, _S_HIGH = 0.8, 3.2
_COARSE, _FINE = 14, 14
_SCALE_ROWS = 512  # rows per chunk of the search: bounds its (rows, grid, d) temporaries to a few tens of MB


def _grid_cosines(a: np.ndarray, top: int, scales: np.ndarray) -> np.ndarray:
    """``(n, G)`` cosines between ``a`` (``(n, d)`` absolute values) and its level vectors
    ``min(floor(t a), top) + 1/2`` for each of the ``(n, G)`` scales ``t``."""
    k = scales[:, :, None] * a[:, None, :]
    np.floor(k, out=k)
    np.minimum(k, top, out=k)
    num = np.matmul(k, a[:, :, None])[..., 0] + 0.5 * a.sum(axis=1, keepdims=True)
    # |k + 1/2|^2 = k^2 + k + 1/4 summed over the d dimensions
    den = np.einsum("ngd,ngd->ng", k, k) + k.sum(axis=2) + 0.25 * a.shape[1]
    return num / np.sqrt(den)


def best_scales(a: np.ndarray, bits: int) -> np.ndarray:
    """Per row of ``a`` (``(n, d)`` float32 absolute values of unit vectors), the scale ``t`` whose levels
    ``min(floor(t a), 2^(bits-1) - 1) + 1/2`` have the largest cosine with ``a``.

    The cosine is a step function of ``t`` that changes only where some ``t a_i`` crosses an integer; rather
    than scanning those ``d 2^(bits-1)`` points per row, a coarse geometric grid finds the right region and a
    fine linear grid refines it, vectorized over chunks of rows."""
    top = (1 << (bits - 1)) - 1
    peak = a.max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).astype(np.float32)  # a zero row has no direction: any scale will do
    coarse = (top + 1) * np.geomspace(_S_LOW, _S_HIGH, _COARSE, dtype=np.float32)
    fine = np.linspace(0.0, 1.0, _FINE, dtype=np.float32)
    out = np.empty(a.shape[0], dtype=np.float32)
    for start in range(0, a.shape[0], _SCALE_ROWS):
        rows = a[start : start + _SCALE_ROWS]
        pick = np.arange(len(rows))
        scales = coarse[None, :] / peak[start : start + len(rows), None]
        best = _grid_cosines(rows, top, scales).argmax(axis=1)
        low = scales[pick, np.maximum(best - 1, 0)]
        high = scales[pick, np.minimum(best + 1, _COARSE - 1)]
        scales = low[:, None] + (high - low)[:, None] * fine[None, :]
        out[start : start + len(rows)] = scales[pick, _grid_cosines(rows, top, scales).argmax(axis=1)]
    return out


class RabitqCodec(Codec):
    """RaBitQ codes of ``config.bits`` bits per dimension with per-vector factors; needs :meth:`train` (centre,
    and the rotation under ``rotation='random'``) before use."""

    kind = "rabitq"
    needs_training = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the d x d rotation grows with the square of the width: bounded before it is ever built
        check_positive_int("dimensions of a rabitq codec", self.dimensions, maximum=MAX_RABITQ_DIMENSIONS)
        self.bits: int = self.config.bits  # type: ignore[assignment]
        self.rotated = self.config.rotation == "random"
        self.centre: np.ndarray | None = None
        #: the ``(d, d)`` float32 random rotation ``P``, applied as ``x @ rotation``; None under rotation='none'
        self.rotation: np.ndarray | None = None
        self._bits_bytes = (self.dimensions * self.bits + 7) // 8
        #: levels stand for ``u - _offset``: the half-integers -(2^B - 1)/2 .. (2^B - 1)/2
        self._offset = ((1 << self.bits) - 1) / 2

    @property
    def code_size(self) -> int:
        """``ceil(d * bits / 8)`` bytes of levels plus 12 bytes of factors."""
        return self._bits_bytes + FACTOR_BYTES

    @property
    def codebook_bytes(self) -> int:
        """Bytes of the shared state: centre and (rotation='random') rotation, float32."""
        return 4 * (self.dimensions + (self.dimensions**2 if self.rotated else 0))

    @property
    def is_trained(self) -> bool:
        """True once the centre (and rotation, if any) exists."""
        return self.centre is not None

    def train(self, x: object) -> RabitqCodec:
        """Centre = mean of up to ``train_size`` sampled rows; rotation from ``config.seed``."""
        data = self._training_rows(x)
        if data.shape[0] > self.config.train_size:
            rng = np.random.default_rng(self.config.seed)
            data = data[rng.choice(data.shape[0], self.config.train_size, replace=False)]
        self.centre = data.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.rotation = random_rotation(self.dimensions, self.config.seed) if self.rotated else None
        return self

    def _rotate(self, x: np.ndarray) -> np.ndarray:
        return x if self.rotation is None else x @ self.rotation

    def _levels(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(levels (n, d) uint8, <x̄, y> (n,))`` of rotated unit residuals ``y``."""
        if self.bits == 1:
            # <x̄, y> = sum |y| / sqrt(d): the original RaBitQ, kept to the bit for codes written before
            return y >= 0, np.abs(y).sum(axis=1) / np.sqrt(self.dimensions)
        magnitudes = np.abs(y).astype(np.float32)
        half = 1 << (self.bits - 1)
        k = best_scales(magnitudes, self.bits)[:, None] * magnitudes
        np.floor(k, out=k)
        np.minimum(k, half - 1, out=k)
        levels = np.where(y >= 0, half + k, half - 1 - k).astype(np.uint8)
        # <x̄, y> = 2 <v, y> / sqrt(d) and <v, y> = sum (k_i + 1/2) |y_i|: v's signs are y's
        k += 0.5
        return levels, 2.0 * np.einsum("ij,ij->i", k, magnitudes) / np.sqrt(self.dimensions)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        residual = x - self.centre
        norm_r = np.linalg.norm(residual, axis=1).astype(np.float32)
        unit = residual / np.where(norm_r > 0, norm_r, 1)[:, None]
        levels, ip = self._levels(self._rotate(unit))
        # a residual of zero has no direction: factor 1 keeps the estimate exact (it adds |r| = 0 times anything)
        ip = np.where(norm_r > 0, ip, 1.0).astype(np.float32)
        factors = np.stack([norm_r, ip, np.linalg.norm(x, axis=1).astype(np.float32)], axis=1).astype("<f4")
        return np.ascontiguousarray(np.concatenate([pack_codes(levels, self.bits), factors.view(np.uint8)], axis=1))

    def _split(self, codes: np.ndarray, levels: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray,
                                                                         np.ndarray]:
        """``(levels or None, |r|, <x̄, y>, |x|)`` of code rows."""
        unpacked = unpack_codes(codes[:, : self._bits_bytes], self.dimensions, self.bits) if levels else None
        factors = np.ascontiguousarray(codes[:, self._bits_bytes :]).view("<f4").astype(np.float32)
        return unpacked, factors[:, 0], factors[:, 1], factors[:, 2]

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        # the vector whose inner products are exactly the estimator's: c + |r| (x̄ P^T) / <x̄, y>
        levels, norm_r, ip, _ = self._split(codes)
        grid = (levels.astype(np.float32) * 2 - np.float32(2 * self._offset)) / np.float32(np.sqrt(self.dimensions))
        back = grid if self.rotation is None else grid @ self.rotation.T
        return (self.centre + (norm_r / ip)[:, None] * back).astype(np.float32)  # type: ignore[operator]

    def _level_dots(self, rotated: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``(m, n)`` inner products of rotated queries with the codes' levels ``u`` (0/1 bits at one bit)."""
        packed = codes[:, : self._bits_bytes]
        if self.bits == 1:
            return bit_dots(rotated, packed, self.dimensions)
        return rotated @ unpack_codes(packed, self.dimensions, self.bits).astype(np.float32).T

    def alignment(self, codes: object) -> np.ndarray:
        """Each code row's stored ``<x̄, y>``: how close its quantized direction lies to the vector's own (1 =
        exact). The estimator divides by it, so lower values mean noisier distance estimates."""
        rows, _ = self.check_codes(codes)
        levels, _, ip, _ = self._split(rows)
        # the stored factor is <x̄, y> with x̄ = (2u - (2^B - 1)) / sqrt(d), a unit vector only at one bit
        grid = 2.0 * levels.astype(np.float64) - 2 * self._offset
        return (ip / np.sqrt(np.einsum("ij,ij->i", grid, grid) / self.dimensions)).astype(np.float32)

    def estimate_dots(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``(m, n)`` estimates of ``<x, q>`` for checked float32 queries and code rows."""
        _, norm_r, ip, _ = self._split(codes, levels=False)
        rotated = self._rotate(queries)
        # <x̄, qP> = (2 <u, qP> - (2^B - 1) sum(qP)) / sqrt(d), since x̄ = (2u - (2^B - 1)) / sqrt(d)
        grid_dots = (2.0 * self._level_dots(rotated, codes)
                     - (2 * self._offset) * rotated.sum(axis=1)[:, None]) / np.sqrt(self.dimensions)
        return (queries @ self.centre)[:, None] + grid_dots * (norm_r / ip)[None, :]

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        if self.metric == "euclidean":
            # the paper's L2 form, centred on c: |x - q|^2 = |r|^2 + |q - c|^2 - 2 <x - c, q - c>, only the last
            # term estimated. Its error grows with |q - c|, where the uncentred |q|^2 + |x|^2 - 2 <x, q> errs with
            # |q|: far worse on data far from the origin (image pixels, all >= 0)
            _, norm_r, _, _ = self._split(codes, levels=False)
            centred = queries - self.centre
            residual_dots = self.estimate_dots(centred, codes) - (centred @ self.centre)[:, None]
            sq = (norm_r**2)[None, :] + np.einsum("ij,ij->i", centred, centred)[:, None] - 2.0 * residual_dots
            return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)
        dots = self.estimate_dots(queries, codes)
        if self.metric == "dot_product":
            return np.negative(dots).astype(np.float32)
        norm_x = self._split(codes, levels=False)[3]
        return cosine_from_dots(dots, np.linalg.norm(queries, axis=1), norm_x)

    def stored_flaw(self, codes: np.ndarray) -> str | None:
        """Padding bits and factors first (``|r|`` and ``|x|`` finite and >= 0, ``<x̄, y>`` finite and > 0, as
        the encoder writes them), then the decoded rows (:meth:`Codec.stored_flaw`)."""
        flaw = padding_flaw(codes[:, : self._bits_bytes], self.dimensions * self.bits)
        if flaw is not None:
            return flaw
        _, norm_r, ip, norm_x = self._split(codes, levels=False)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~(np.isfinite(norm_r) & np.isfinite(ip) & np.isfinite(norm_x)
                                   & (norm_r >= 0) & (ip > 0) & (norm_x >= 0)))
        if bad.size:
            row = int(bad[0])
            return (f"code {row} has factors |r|={float(norm_r[row])!r}, <x̄, y>={float(ip[row])!r}, "
                    f"|x|={float(norm_x[row])!r}; the first and last must be finite and >= 0, the second > 0")
        return super().stored_flaw(codes)

    def _state(self) -> dict[str, np.ndarray]:
        if self.centre is None:
            return {}
        return {"centre": self.centre, **({"rotation": self.rotation} if self.rotation is not None else {})}

    def _load_state(self, arrays: dict[str, np.ndarray]) -> None:
        centre, rotation = arrays.get("centre"), arrays.get("rotation")
        d = self.dimensions
        if centre is None or centre.shape != (d,) or (self.rotated and rotation is None):
            raise QuantizationError("a trained rabitq codec was stored without a matching centre and rotation")
        if rotation is not None and not self.rotated:
            raise QuantizationError("a rabitq codec with rotation='none' was stored with a rotation")
        self.centre = as_float32(centre, "centre")
        self.rotation = checked_rotation(rotation, d, self.kind) if self.rotated else None
