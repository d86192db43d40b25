"""Product quantization, RuVector's ``ProductQuantized``: ``m`` subspaces, 256-centroid codebooks, ``m`` bytes.

The dimension is cut into ``m`` equal slices; each slice of a vector is coded by the index of its nearest
centroid in that slice's k-means codebook. Codebooks are stored as ``(m, 256, d/m)`` float32, the layout of
faiss' ``ProductQuantizer.centroids``, so the faiss and NumPy paths read and write the same codes. Scoring
a query builds one ``(m, 256)`` lookup table and sums table entries per code (asymmetric distance).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..distances import cosine_from_dots
from ..errors import QuantizationError
from ..validation import as_float32
from .base import Codec
from .kmeans import kmeans, nearest

logger = logging.getLogger(__name__)

KSUB = 256
NITER = 25


class ProductCodec(Codec):
    """``m`` subspace codes of one byte each; needs :meth:`train` before use."""

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
        self.codebooks: np.ndarray | None = None
        self._faiss_pq: Any = None

    @property
    def code_size(self) -> int:
        """``m`` bytes (codebooks, shared by all vectors, not counted)."""
        return self.m

    @property
    def codebook_bytes(self) -> int:
        """Bytes of the codebooks: ``m * 256 * (d/m) * 4``."""
        return self.m * KSUB * self.dsub * 4

    @property
    def is_trained(self) -> bool:
        """True once codebooks exist (trained or loaded)."""
        return self.codebooks is not None

    def train(self, x: object) -> ProductCodec:
        """Fit one 256-centroid k-means codebook per subspace on up to ``config.train_size`` sampled rows."""
        data = self._training_rows(x)
        if data.shape[0] > self.config.train_size:
            rng = np.random.default_rng(self.config.seed)
            data = data[np.sort(rng.choice(data.shape[0], self.config.train_size, replace=False))]
        if data.shape[0] < KSUB:
            logger.warning("training PQ on %d rows, fewer than the %d centroids per subspace", data.shape[0], KSUB)
        books = np.empty((self.m, KSUB, self.dsub), dtype=np.float32)
        for j in range(self.m):
            sub = np.ascontiguousarray(data[:, j * self.dsub : (j + 1) * self.dsub])
            books[j] = kmeans(sub, KSUB, niter=NITER, seed=self.config.seed + j, engine=self.engine)
        self.set_codebooks(books)
        return self

    def set_codebooks(self, codebooks: object) -> None:
        """Install ``(m, 256, d/m)`` float32 codebooks (trained elsewhere, or to compare code paths)."""
        books = as_float32(codebooks, "codebooks")
        if books.shape != (self.m, KSUB, self.dsub):
            raise QuantizationError(f"codebooks must be {self.m} x {KSUB} x {self.dsub}, got shape {books.shape}")
        self.codebooks = books
        self._faiss_pq = None

    def _pq(self) -> Any:
        """A faiss ProductQuantizer holding these codebooks, built once per set of codebooks."""
        if self._faiss_pq is None:
            import faiss

            pq = faiss.ProductQuantizer(self.dimensions, self.m, 8)
            faiss.copy_array_to_vector(self.codebooks.ravel(), pq.centroids)  # type: ignore[union-attr]
            self._faiss_pq = pq
        return self._faiss_pq

    def _encode(self, x: np.ndarray) -> np.ndarray:
        if self.engine == "faiss":
            return self._pq().compute_codes(x)
        codes = np.empty((x.shape[0], self.m), dtype=np.uint8)
        for j in range(self.m):
            sub = np.ascontiguousarray(x[:, j * self.dsub : (j + 1) * self.dsub])
            codes[:, j] = nearest(sub, self.codebooks[j])[0]  # type: ignore[index]
        return codes

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        if self.engine == "faiss":
            return self._pq().decode(codes)
        parts = self.codebooks[np.arange(self.m)[None, :], codes]  # type: ignore[index]
        return parts.reshape(codes.shape[0], self.dimensions)

    def tables(self, query: np.ndarray) -> np.ndarray:
        """The ``(m, 256)`` lookup table of one float32 query: squared L2 per centroid under euclidean,
        inner products otherwise."""
        q = query.reshape(self.m, 1, self.dsub)
        if self.metric == "euclidean":
            diff = self.codebooks - q  # type: ignore[operator]
            return np.einsum("jkd,jkd->jk", diff, diff)
        return np.einsum("jkd,jkd->jk", self.codebooks, np.broadcast_to(q, self.codebooks.shape))  # type: ignore

    def _gather(self, table: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return table[np.arange(self.m)[None, :], codes].sum(axis=1, dtype=np.float32)

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        out = np.empty((queries.shape[0], codes.shape[0]), dtype=np.float32)
        for row, q in enumerate(queries):
            out[row] = self._gather(self.tables(q), codes)
        if self.metric == "euclidean":
            return np.sqrt(np.maximum(out, 0, out=out), out=out)
        if self.metric == "dot_product":
            return np.negative(out, out=out)
        centroid_sq = np.einsum("jkd,jkd->jk", self.codebooks, self.codebooks)  # type: ignore[arg-type]
        norms = np.sqrt(self._gather(centroid_sq, codes))
        return cosine_from_dots(out, np.linalg.norm(queries, axis=1), norms)

    def _state(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.codebooks} if self.codebooks is not None else {}

    def _load_state(self, arrays: dict[str, np.ndarray]) -> None:
        if "codebooks" not in arrays:
            raise QuantizationError("a trained product codec was stored without its codebooks")
        self.set_codebooks(arrays["codebooks"])
