"""Product quantization, RuVector's ``ProductQuantized``: ``m`` subspaces, ``2**bits``-centroid codebooks.

The dimension is cut into ``m`` equal slices; each slice of a vector is coded by the index of its nearest
centroid in that slice's k-means codebook. ``bits`` is 8 (256 centroids, one byte per subspace, the default)
or 4 (16 centroids, two codes per byte). Codebooks are stored as ``(m, 2**bits, d/m)`` float32 and codes are
packed in faiss' ``PQEncoderGeneric`` layout (:func:`pack_codes`), so the faiss and NumPy paths, and
``faiss.ProductQuantizer(d, m, bits)`` given the same centroids, read and write the same codes. Scoring a
query builds one ``(m, 2**bits)`` lookup table and sums table entries per code (asymmetric distance).

``rotation='opq'`` learns an orthogonal ``(d, d)`` rotation ``R`` first (non-parametric optimized product
quantization, Ge et al., CVPR 2013): vectors are coded as ``x @ R``, the codebooks live in the rotated space,
and :attr:`ProductCodec.rotation` holds ``R`` (None without OPQ).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..distances import cosine_from_dots
from ..errors import QuantizationError
from ..validation import as_float32
from .base import Codec, checked_rotation
from .kmeans import kmeans, nearest

logger = logging.getLogger(__name__)

#: centroids per subspace at the default 8 bits (other modules size 8-bit codebooks with it)
KSUB = 256
NITER = 25
#: OPQ runs OPQ_ITERATIONS alternations (one Lloyd step on the codebooks, then the rotation) on at most
#: OPQ_SAMPLE rows, after OPQ_NITER_FIRST k-means iterations for the first codebooks; the final codebooks are
#: then fitted to all training rows with OPQ_NITER_FINAL iterations warm-started from the loop's. faiss'
#: OPQMatrix runs 50 alternations of 4 k-means iterations on up to 65536 rows; over-relaxing each rotation
#: step (OPQ_RELAX) reaches its error in a third of the alternations (measured on wordnet-minilm-384, m=48)
OPQ_ITERATIONS = 16
OPQ_NITER_FIRST = 10
OPQ_NITER_FINAL = 10
OPQ_SAMPLE = 16_384
OPQ_RELAX = 2.0


def pack_codes(values: np.ndarray, nbits: int) -> np.ndarray:
    """``(n, m)`` codes below ``2**nbits`` (``nbits`` <= 8) to ``(n, ceil(m * nbits / 8))`` uint8 rows.

    faiss' ``PQEncoderGeneric`` layout: code ``j`` takes bits ``j * nbits`` to ``(j + 1) * nbits - 1`` of its
    row, least significant bit first, where bit ``b`` of a row is bit ``b % 8`` of byte ``b // 8`` (at 4 bits:
    even codes in the low nibble, odd in the high); unused high bits of the last byte are zero.
    """
    n, m = values.shape
    v = values.astype(np.uint8)
    if nbits == 8:
        return np.ascontiguousarray(v)
    if nbits == 1:
        return np.packbits(v, axis=1, bitorder="little")
    if nbits == 4:
        if m % 2:
            v = np.concatenate([v, np.zeros((n, 1), np.uint8)], axis=1)
        return np.ascontiguousarray(v[:, 0::2] | (v[:, 1::2] << 4))
    bits = np.unpackbits(v[:, :, None], axis=2, count=nbits, bitorder="little")
    return np.packbits(bits.reshape(n, m * nbits), axis=1, bitorder="little")


def unpack_codes(packed: np.ndarray, m: int, nbits: int) -> np.ndarray:
    """The ``(n, m)`` uint8 codes of rows written by :func:`pack_codes`."""
    if nbits == 8:
        return packed
    if nbits == 1:
        return np.unpackbits(packed, axis=1, count=m, bitorder="little")
    n = packed.shape[0]
    if nbits == 4:
        out = np.empty((n, 2 * packed.shape[1]), np.uint8)
        np.bitwise_and(packed, 15, out=out[:, 0::2])
        np.right_shift(packed, 4, out=out[:, 1::2])
        return out[:, :m]
    bits = np.unpackbits(packed, axis=1, count=m * nbits, bitorder="little").reshape(n, m, nbits)
    return np.packbits(bits, axis=2, bitorder="little")[:, :, 0]


def padding_flaw(codes: np.ndarray, used_bits: int) -> str | None:
    """Why code rows whose first ``used_bits`` bits carry the codes could not have been packed by
    :func:`pack_codes` (the unused high bits of their last byte are set), or None."""
    spare = codes.shape[1] * 8 - used_bits
    if not spare or not codes.shape[0]:
        return None
    bad = np.flatnonzero(codes[:, -1] >> (8 - spare))
    return f"code {int(bad[0])} sets padding bits of its last byte" if bad.size else None


def _centroid_means(books: np.ndarray, codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Codebooks ``(m, ksub, dsub)`` with each centroid moved to the mean of the subspace rows assigned to it
    (``codes`` ``(n, m)``); a centroid nothing was assigned to stays where it was."""
    m, ksub, dsub = books.shape
    index = (codes + ksub * np.arange(m)[None, :]).ravel()
    counts = np.bincount(index, minlength=m * ksub).reshape(m, ksub)
    parts = rows.reshape(rows.shape[0], m, dsub)
    sums = np.stack([np.bincount(index, weights=parts[:, :, t].ravel(), minlength=m * ksub) for t in range(dsub)],
                    axis=1).reshape(m, ksub, dsub)
    out = books.copy()
    filled = counts > 0
    out[filled] = sums[filled] / counts[filled][:, None]
    return out


class ProductCodec(Codec):
    """``m`` subspace codes of ``bits`` (8 or 4) each, optionally after a learned rotation (OPQ); needs
    :meth:`train` before use."""

    kind = "product"
    needs_training = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        m = self.config.m
        if self.dimensions % m:
            raise QuantizationError(
                f"product quantization needs m to divide the dimension: m={m} does not divide {self.dimensions}"
            )
        self.m = m
        self.dsub = self.dimensions // m
        self.bits: int = self.config.bits  # type: ignore[assignment]
        self.ksub = 1 << self.bits
        self.opq = self.config.rotation == "opq"
        self.codebooks: np.ndarray | None = None
        #: the learned ``(d, d)`` float32 OPQ rotation, applied as ``x @ rotation`` before coding; None without OPQ
        self.rotation: np.ndarray | None = None
        self._faiss_pq: Any = None

    @property
    def code_size(self) -> int:
        """``ceil(m * bits / 8)`` bytes (codebooks, shared by all vectors, not counted)."""
        return (self.m * self.bits + 7) // 8

    @property
    def codebook_bytes(self) -> int:
        """Bytes of the shared state: codebooks ``m * 2**bits * (d/m) * 4``, plus the ``d x d`` float32 OPQ
        rotation."""
        return self.m * self.ksub * self.dsub * 4 + (4 * self.dimensions**2 if self.opq else 0)

    @property
    def is_trained(self) -> bool:
        """True once codebooks exist (trained or loaded)."""
        return self.codebooks is not None

    def train(self, x: object) -> ProductCodec:
        """Fit one ``2**bits``-centroid k-means codebook per subspace on up to ``config.train_size`` sampled rows;
        with OPQ, learn the rotation first (:meth:`_train_opq`) and fit the codebooks to the rotated rows."""
        data = self._training_rows(x)
        if data.shape[0] > self.config.train_size:
            rng = np.random.default_rng(self.config.seed)
            data = data[np.sort(rng.choice(data.shape[0], self.config.train_size, replace=False))]
        if data.shape[0] < self.ksub:
            logger.warning("training PQ on %d rows, fewer than the %d centroids per subspace", data.shape[0],
                           self.ksub)
        rotation, init = self._train_opq(data) if self.opq else (None, None)
        if rotation is not None:
            data = data @ rotation
        books = self._fit_books(data, NITER if init is None else OPQ_NITER_FINAL, init)
        self.set_codebooks(books, rotation=rotation)
        return self

    def _fit_books(self, data: np.ndarray, niter: int, init: np.ndarray | None) -> np.ndarray:
        """``(m, ksub, dsub)`` codebooks of (rotated) rows, each subspace warm-started from ``init`` if given."""
        books = np.empty((self.m, self.ksub, self.dsub), dtype=np.float32)
        for j in range(self.m):
            sub = np.ascontiguousarray(data[:, j * self.dsub : (j + 1) * self.dsub])
            books[j] = kmeans(sub, self.ksub, niter=niter, seed=self.config.seed + j, engine=self.engine,
                              init=None if init is None else init[j])
        return books

    def _train_opq(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-parametric OPQ on at most :data:`OPQ_SAMPLE` rows ``X``. From ``R = I``, alternate: assign the
        rows of ``X R`` to the codebooks and move each centroid to the mean of its rows (one Lloyd step), then
        set ``R`` to the orthogonal Procrustes solution ``U V^T`` of the SVD ``X^T Y = U S V^T`` (``Y`` the
        reconstruction of ``X R``: the ``R`` minimising ``|X R - Y|``). Each rotation step is over-relaxed
        (``R + OPQ_RELAX (R' - R)`` projected back onto the orthogonal matrices), and relaxation stops for good
        the first time the error grows. Returns ``(R, codebooks)``; the codebooks warm-start the final fit.

        Cost: two ``n x d x d`` products and two ``d x d`` SVDs per alternation, whatever ``m``; with 4-bit
        codebooks (cheap k-means) these dominate, so OPQ then costs several times plain PQ."""
        if data.shape[0] > OPQ_SAMPLE:
            rng = np.random.default_rng(self.config.seed + 1)
            data = data[np.sort(rng.choice(data.shape[0], OPQ_SAMPLE, replace=False))]
        # start from plain PQ (R = I): on wordnet it ended lower than faiss' random start (6 and 20 alternations)
        rotation = np.eye(self.dimensions, dtype=np.float32)
        books = self._fit_books(data, OPQ_NITER_FIRST, None)
        relax, last = OPQ_RELAX, np.inf
        for it in range(OPQ_ITERATIONS):
            rotated = data @ rotation
            codes = self._assign(rotated, books)
            books = _centroid_means(books, codes, rotated)
            recon = books[np.arange(self.m)[None, :], codes].reshape(data.shape)
            error = float(np.mean((recon - rotated) ** 2))
            logger.debug("OPQ iteration %d: mse %.6g", it, error)
            if error > last:
                relax = 1.0
            last = error
            u, _, vt = np.linalg.svd(data.T @ recon)
            target = u @ vt
            if relax != 1.0 and it:
                u, _, vt = np.linalg.svd(rotation + relax * (target - rotation))
                target = u @ vt
            rotation = np.ascontiguousarray(target, dtype=np.float32)
        return rotation, books

    def _assign(self, rotated: np.ndarray, books: np.ndarray) -> np.ndarray:
        """``(n, m)`` index of the nearest centroid of each subspace of rotated rows (ties need not match the
        encoder's: this only steers OPQ)."""
        codes = np.empty((rotated.shape[0], self.m), dtype=np.int64)
        for j in range(self.m):
            sub = np.ascontiguousarray(rotated[:, j * self.dsub : (j + 1) * self.dsub])
            if self.engine == "faiss":
                import faiss

                codes[:, j] = faiss.knn(sub, books[j], 1)[1][:, 0]
            else:
                codes[:, j] = nearest(sub, books[j], exact=False)[0]
        return codes

    def set_codebooks(self, codebooks: object, rotation: object = None) -> None:
        """Install ``(m, 2**bits, d/m)`` float32 codebooks (trained elsewhere, or to compare code paths) and, for
        an OPQ codec, the orthogonal ``(d, d)`` rotation they were trained under (needed unless one is already
        installed); a codec without OPQ refuses a rotation."""
        books = as_float32(codebooks, "codebooks")
        if books.shape != (self.m, self.ksub, self.dsub):
            raise QuantizationError(
                f"codebooks must be {self.m} x {self.ksub} x {self.dsub}, got shape {books.shape}")
        if rotation is not None:
            if not self.opq:
                raise QuantizationError("a product codec without rotation='opq' takes no rotation")
            rotation = checked_rotation(rotation, self.dimensions, self.kind)
        elif self.opq and self.rotation is None:
            raise QuantizationError("an OPQ product codec needs the rotation its codebooks were trained under")
        if rotation is not None:
            self.rotation = rotation
        self.codebooks = books
        self._faiss_pq = None

    def _pq(self) -> Any:
        """A faiss ProductQuantizer holding these codebooks, built once per set of codebooks."""
        if self._faiss_pq is None:
            import faiss

            pq = faiss.ProductQuantizer(self.dimensions, self.m, self.bits)
            faiss.copy_array_to_vector(self.codebooks.ravel(), pq.centroids)  # type: ignore[union-attr]
            self._faiss_pq = pq
        return self._faiss_pq

    def _rotate(self, x: np.ndarray) -> np.ndarray:
        return x if self.rotation is None else np.ascontiguousarray(x @ self.rotation)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        x = self._rotate(x)
        if self.engine == "faiss":
            return self._pq().compute_codes(x)
        codes = np.empty((x.shape[0], self.m), dtype=np.uint8)
        for j in range(self.m):
            sub = np.ascontiguousarray(x[:, j * self.dsub : (j + 1) * self.dsub])
            codes[:, j] = nearest(sub, self.codebooks[j])[0]  # type: ignore[index]
        return pack_codes(codes, self.bits)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        if self.engine == "faiss":
            out = self._pq().decode(codes)
        else:
            parts = self.codebooks[np.arange(self.m)[None, :], unpack_codes(codes, self.m, self.bits)]  # type: ignore
            out = parts.reshape(codes.shape[0], self.dimensions)
        # R is orthogonal: its transpose maps the rotated reconstruction back
        return out if self.rotation is None else np.ascontiguousarray(out @ self.rotation.T)

    def tables(self, query: np.ndarray) -> np.ndarray:
        """The ``(m, 2**bits)`` lookup table of one float32 query (rotated here under OPQ): squared L2 per
        centroid under euclidean, inner products otherwise."""
        return self._tables(self._rotate(query.reshape(1, -1))[0])

    def _tables(self, rotated: np.ndarray) -> np.ndarray:
        q = rotated.reshape(self.m, 1, self.dsub)
        if self.metric == "euclidean":
            diff = self.codebooks - q  # type: ignore[operator]
            return np.einsum("jkd,jkd->jk", diff, diff)
        return np.einsum("jkd,jkd->jk", self.codebooks, np.broadcast_to(q, self.codebooks.shape))  # type: ignore

    def _gather(self, table: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Per code row, the sum over subspaces of ``table[j, code_j]``, read byte by byte: at 4 bits the two
        subspaces of a byte are first merged into one 256-entry table, so packed codes are never unpacked."""
        if self.bits == 4:
            pairs = np.zeros((2 * self.code_size, 16), dtype=table.dtype)
            pairs[: self.m] = table  # an odd m pads with a zero table: the spare nibble (zero) adds nothing
            table = (pairs[0::2, None, :] + pairs[1::2, :, None]).reshape(self.code_size, 256)
        return table[np.arange(self.code_size)[None, :], codes].sum(axis=1, dtype=np.float32)

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        rotated = self._rotate(queries)
        out = np.empty((queries.shape[0], codes.shape[0]), dtype=np.float32)
        for row, q in enumerate(rotated):
            out[row] = self._gather(self._tables(q), codes)
        if self.metric == "euclidean":
            return np.sqrt(np.maximum(out, 0, out=out), out=out)
        if self.metric == "dot_product":
            return np.negative(out, out=out)
        centroid_sq = np.einsum("jkd,jkd->jk", self.codebooks, self.codebooks)  # type: ignore[arg-type]
        norms = np.sqrt(self._gather(centroid_sq, codes))
        return cosine_from_dots(out, np.linalg.norm(queries, axis=1), norms)

    def stored_flaw(self, codes: np.ndarray) -> str | None:
        """Padding bits first (an odd ``m`` of 4-bit codes leaves the last high nibble zero), then the decoded
        rows (:meth:`Codec.stored_flaw`)."""
        return padding_flaw(codes, self.m * self.bits) or super().stored_flaw(codes)

    def _state(self) -> dict[str, np.ndarray]:
        if self.codebooks is None:
            return {}
        return {"codebooks": self.codebooks, **({"rotation": self.rotation} if self.rotation is not None else {})}

    def _load_state(self, arrays: dict[str, np.ndarray]) -> None:
        if "codebooks" not in arrays:
            raise QuantizationError("a trained product codec was stored without its codebooks")
        rotation = arrays.get("rotation")
        if self.opq and rotation is None:
            raise QuantizationError("a trained OPQ product codec was stored without its rotation")
        if not self.opq and rotation is not None:
            raise QuantizationError("a product codec without rotation='opq' was stored with a rotation")
        self.set_codebooks(arrays["codebooks"], rotation=rotation)
