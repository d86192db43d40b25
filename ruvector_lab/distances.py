"""The library's distances: what each metric's score is, and the exact kernels every part computes them with.

A score is a distance, smaller is closer, the same on every backend:

* ``cosine``: ``1 - cos(q, x)``, in [0, 2]. A zero vector has no direction: its cosine with anything is taken
  as 0, so it scores 1 (never NaN). NaN in the inputs gives NaN.
* ``euclidean``: the L2 distance ``|q - x|`` (not squared).
* ``dot_product``: ``-dot(q, x)`` (can be negative).

The kernels, by what they compute (``q`` query rows, ``x`` vector rows, all of one width ``d``):

==============================  ===========  =======================================================================
function                        result       for
==============================  ===========  =======================================================================
:func:`pairwise_float32`        (m, n) f32   raw rows; the reference kernel of ``batch_distance`` and of the codecs
:func:`pairwise_float64`        (m, n) f64   ground truth, its verification, relative contrast: float64 arithmetic
:func:`query_to_rows_unit`      (n,)         one query against rows in their stored form (unit length under cosine)
:func:`rows_to_rows_float32`    (n,) f32     paired rows ``distance(a[i], b[i])``: :func:`ruvector_lab.distance`
:func:`rows_to_rows_float64`    (...) f64    paired rows, broadcasting: the true distances of returned ids
:func:`ranking_scores`          (m, n)       not distances: scores in the distance order, for picking candidates
==============================  ===========  =======================================================================

and the pieces the backends finish with: :func:`cosine_from_dots`, :func:`from_dots` (unit rows),
:func:`from_squared_l2`, :func:`squared_l2_to_rows` and :func:`squared_norms` (for libraries that work in
squared L2), and the row normalisations :func:`normalize_rows` / :func:`normalize_rows_float64`.

Euclidean pairwise distances in float32 are taken from direct differences, never from the expansion
``|q|^2 + |x|^2 - 2 q.x``, whose cancellation loses every digit of a distance near zero in float32. The
expansion is used only to *rank* (:func:`ranking_scores`, followed by an exact re-scoring of the winners) and
in :func:`pairwise_float64`, where float64 keeps its error near ``1e-16 (|q|^2 + |x|^2)``, far below the float32
in which distances are stored.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from .errors import InvalidParameterError

Metric = Literal["cosine", "euclidean", "dot_product"]
#: the metrics every index, op and benchmark takes
METRICS: tuple[str, ...] = get_args(Metric)


def check_metric(metric: object) -> str:
    """Return ``metric`` if it is one of :data:`METRICS`, else raise :class:`InvalidParameterError`."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise _unknown(metric)
    return metric


def _unknown(metric: object) -> InvalidParameterError:
    """The error for a metric that is not one of :data:`METRICS`."""
    return InvalidParameterError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


# ---- conventions: raw quantities -> scores -------------------------------------------------------------------
def _cosine(dots: np.ndarray, norm_products: np.ndarray) -> np.ndarray:
    """``1 - dots / (|q| |x|)`` in the inputs' precision; a zero norm product gives cosine 0 (distance 1)."""
    return 1.0 - dots / np.where(norm_products == 0, 1.0, norm_products)


def cosine_from_dots(dots: np.ndarray, query_norms: np.ndarray, vector_norms: np.ndarray) -> np.ndarray:
    """Cosine distances ``1 - dots / (|q| |x|)`` as float32 from ``(m, n)`` dot products and the ``(m,)`` and
    ``(n,)`` norms of both sides; a pair with a zero-norm side scores 1 rather than NaN."""
    return _cosine(dots, query_norms[:, None] * vector_norms[None, :]).astype(np.float32, copy=False)


def from_dots(dots: np.ndarray, metric: str) -> np.ndarray:
    """Scores from inner products: dot_product ``-dot``; cosine ``1 - dot``, right only when both sides are unit
    length (the stored form under cosine). Euclidean needs more than dots (see :func:`from_squared_l2`)."""
    if metric == "cosine":
        return 1.0 - dots
    if metric == "dot_product":
        return -dots
    if metric == "euclidean":
        raise InvalidParameterError("euclidean distances cannot be had from inner products alone")
    raise _unknown(metric)


def from_squared_l2(squared: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Scores from squared L2 distances (clamped at 0 first: estimates and expansions can dip below it):
    euclidean their square root; cosine half of them, right only on unit rows (``1 - cos = |q - x|^2 / 2``)."""
    squared = np.maximum(squared, 0.0)
    if metric == "euclidean":
        return np.sqrt(squared)
    if metric == "cosine":
        return squared / 2
    if metric == "dot_product":
        raise InvalidParameterError("dot_product scores cannot be had from L2 distances")
    raise _unknown(metric)


def squared_norms(rows: np.ndarray) -> np.ndarray:
    """``|x|^2`` of every row, in the rows' precision (what :func:`ranking_scores` takes under euclidean)."""
    return np.einsum("ij,ij->i", rows, rows)


def normalize_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length in their own precision: how indexes store vectors under cosine (a cosine is
    then a dot product). A zero row stays zero (no direction: its dot with anything is 0, i.e. distance 1)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not norms.all():  # rare: only then pay for the fix-up
        norms[norms == 0] = 1.0
    return rows / norms


def normalize_rows_float64(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length with norms and division in float64, rounded once to float32 (neither huge
    nor tiny components overflow or lose precision): :func:`ruvector_lab.normalize`. Zero rows must be refused
    by the caller (they give NaN)."""
    norms = np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)
    return (rows / norms).astype(np.float32)


# ---- exact kernels -------------------------------------------------------------------------------------------
def pairwise_float32(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """All ``(m, n)`` distances between query rows and vector rows as float32, computed without the norm
    expansion: euclidean from direct differences (one query at a time), cosine from the norms of both sides
    (neither needs to be normalised; a zero row scores 1), dot_product ``-dot``.

    The reference kernel of :func:`ruvector_lab.batch_distance` and of the codecs' decoded distances.
    """
    if metric == "euclidean":
        out = np.empty((queries.shape[0], vectors.shape[0]), dtype=np.float32)
        for row, q in enumerate(queries):
            diff = vectors - q
            out[row] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out
    dots = queries @ vectors.T
    if metric == "dot_product":
        return (-dots).astype(np.float32, copy=False)
    if metric == "cosine":
        return cosine_from_dots(dots, np.linalg.norm(queries, axis=1), np.linalg.norm(vectors, axis=1))
    raise _unknown(metric)


def pairwise_float64(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """All ``(m, n)`` distances in float64 (inputs are widened first): the exact path of ground truth.

    Euclidean is ``sqrt(max(|q|^2 + |x|^2 - 2 q.x, 0))`` in float64 (one matrix product; its rounding error,
    about ``1e-16 (|q|^2 + |x|^2)`` in the square, is far below the float32 that ground truth is stored in);
    cosine ``1 - q.x / (|q| |x|)`` with a zero-norm side scoring 1; dot_product ``-q.x``.
    """
    q64, x64 = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "euclidean":
        sq = (q64**2).sum(1)[:, None] + (x64**2).sum(1)[None, :] - 2.0 * q64 @ x64.T
        return from_squared_l2(sq)
    dots = q64 @ x64.T
    if metric == "dot_product":
        return -dots
    if metric == "cosine":
        return _cosine(dots, np.linalg.norm(q64, axis=1)[:, None] * np.linalg.norm(x64, axis=1)[None, :])
    raise _unknown(metric)


def squared_l2_to_rows(query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(n,)`` squared L2 distances of one query ``(d,)`` to ``rows`` ``(n, d)`` from direct differences, in the
    inputs' precision (the unit of libraries that report squared L2)."""
    diff = rows - query
    return np.einsum("ij,ij->i", diff, diff)


def query_to_rows_unit(query: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """``(n,)`` distances of one query ``(d,)`` to ``rows`` ``(n, d)``, both in their stored form: unit length
    under cosine (so ``1 - dot``), as given otherwise. Euclidean from direct differences. In the inputs'
    precision; the exact re-scoring step of the numpy backend and of quantized rerank."""
    if metric == "euclidean":
        return np.sqrt(squared_l2_to_rows(query, rows))
    return from_dots(rows @ query, metric)


def rows_to_rows_float32(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """``(n,)`` float32 distances between paired rows ``a[i]`` and ``b[i]`` of two ``(n, d)`` matrices (cosine
    from both norms, a zero row scoring 1): :func:`ruvector_lab.distance`."""
    if metric == "euclidean":
        diff = a - b
        out = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    else:
        dots = np.einsum("ij,ij->i", a, b)
        if metric == "dot_product":
            out = -dots
        elif metric == "cosine":
            out = _cosine(dots, np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        else:
            raise _unknown(metric)
    return out.astype(np.float32, copy=False)


def rows_to_rows_float64(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances between paired rows along the last axis; ``a`` and ``b`` broadcast against each other
    (e.g. queries ``(m, 1, d)`` against the rows they returned ``(m, k, d)`` give ``(m, k)``). Euclidean from
    direct differences; cosine from both norms, a zero row scoring 1."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if metric == "euclidean":
        return np.sqrt(((b64 - a64) ** 2).sum(axis=-1))
    dots = (b64 * a64).sum(axis=-1)
    if metric == "dot_product":
        return -dots
    if metric == "cosine":
        return _cosine(dots, np.linalg.norm(b64, axis=-1) * np.linalg.norm(a64, axis=-1))
    raise _unknown(metric)


def ranking_scores(queries: np.ndarray, vectors: np.ndarray, metric: str,
                   vector_sq_norms: np.ndarray | None = None) -> np.ndarray:
    """``(m, n)`` scores whose order along each row is the distance order (smaller is closer), from one matrix
    product: euclidean ``|x|^2 - 2 q.x`` (``vector_sq_norms`` from :func:`squared_norms`), otherwise ``-q.x``,
    which ranks cosine only when the rows are unit length. Not distances: float32 cancellation makes them
    unfit to report, so the winners are re-scored exactly (:func:`query_to_rows_unit`, :func:`pairwise_float64`).
    """
    dots = queries @ vectors.T
    if metric == "euclidean":
        if vector_sq_norms is None:
            vector_sq_norms = squared_norms(vectors)
        return vector_sq_norms[None, :] - 2.0 * dots
    if metric in ("cosine", "dot_product"):
        return -dots
    raise _unknown(metric)
