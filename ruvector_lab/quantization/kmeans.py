"""k-means for codebooks: faiss where it is installed, NumPy otherwise, with the same output format.

Both paths return ``(k, d)`` float32 centroids. They do not return the same centroids (their random starts
differ: faiss draws ``k`` rows uniformly, NumPy uses k-means++), but they solve the same problem: a seeded
start from ``k`` data rows, Lloyd iterations, empty clusters split off the largest one. With no more rows
than centroids both return the rows themselves (padded by repetition), so tiny training sets reconstruct
exactly on either path. ``init`` warm-starts Lloyd's iterations from given centroids on both paths (OPQ
retrains its codebooks this way after every rotation update, a few iterations at a time).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ..errors import InvalidParameterError
from ..validation import as_matrix, check_positive_int

logger = logging.getLogger(__name__)

Engine = Literal["auto", "faiss", "numpy"]
#: rows per block when distances are computed block by block (bounds temporary memory to a few MB)
_BLOCK = 1024


def faiss_available() -> bool:
    """True if faiss can be imported here."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str) -> str:
    """Map ``'auto'`` to ``'faiss'`` if it is installed, else ``'numpy'``; check explicit choices."""
    if engine == "auto":
        return "faiss" if faiss_available() else "numpy"
    if engine == "faiss":
        if not faiss_available():
            from ..errors import BackendUnavailableError

            raise BackendUnavailableError("engine='faiss' was asked for but faiss cannot be imported")
        return engine
    if engine == "numpy":
        return engine
    raise InvalidParameterError(f"unknown engine {engine!r}; expected 'auto', 'faiss' or 'numpy'")


def nearest(x: np.ndarray, centroids: np.ndarray, *, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid of each row and its squared L2 distance, ``(labels int64, dist float32)``.

    Uses direct differences for low-dimensional rows (exact, as faiss does for PQ subspaces) and the norm
    expansion otherwise; ties go to the lowest centroid index. ``exact=False`` always takes the norm expansion
    (matrix products: several times faster on short rows, but near-ties may resolve differently).
    """
    n, d = x.shape
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32)
    direct = exact and d <= 16
    c_sq = None if direct else np.einsum("ij,ij->i", centroids, centroids)
    block = max(1, _BLOCK * 16 // max(d, 1)) if direct else _BLOCK
    for start in range(0, n, block):
        chunk = x[start : start + block]
        if direct:
            diff = chunk[:, None, :] - centroids[None, :, :]
            dist = np.einsum("ijk,ijk->ij", diff, diff)
        else:
            dist = c_sq[None, :] - 2.0 * (chunk @ centroids.T)  # type: ignore[index]
            dist += np.einsum("ij,ij->i", chunk, chunk)[:, None]
        best = np.argmin(dist, axis=1)
        labels[start : start + len(chunk)] = best
        dists[start : start + len(chunk)] = np.maximum(dist[np.arange(len(chunk)), best], 0.0)
    return labels, dists


def kmeans(x: object, k: int, *, niter: int = 25, seed: int = 0, engine: Engine = "auto",
           init: np.ndarray | None = None) -> np.ndarray:
    """Cluster the rows of ``x`` into ``k`` centroids; return them as a ``(k, d)`` float32 array.

    ``init``: ``(k, d)`` starting centroids instead of a seeded random start (a warm start)."""
    data = as_matrix(x, name="training vectors")
    k = check_positive_int("k", k)
    niter = check_positive_int("niter", niter)
    seed = check_positive_int("seed", seed, minimum=0)
    n = data.shape[0]
    if init is not None:
        init = as_matrix(init, data.shape[1], name="initial centroids")
        if init.shape[0] != k:
            raise InvalidParameterError(f"initial centroids must be {k} rows, got {init.shape[0]}")
    if n <= k:
        # every row is its own centroid; repeat rows to fill k so the codebook shape never changes
        return np.ascontiguousarray(data[np.arange(k) % n], dtype=np.float32)
    if resolve_engine(engine) == "faiss":
        return _kmeans_faiss(data, k, niter, seed, init)
    return _kmeans_numpy(data, k, niter, seed, init)


def _kmeans_faiss(data: np.ndarray, k: int, niter: int, seed: int, init: np.ndarray | None) -> np.ndarray:
    import faiss

    # min_points_per_centroid=1: small training sets are a choice here, not a mistake worth a warning
    km = faiss.Kmeans(data.shape[1], k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(data, init_centroids=None if init is None else np.array(init, dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k, data.shape[1])


def _kmeans_pp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ start: each next row drawn with probability proportional to its squared distance to the
    rows already picked (it avoids the two-starts-in-one-cluster traps of a uniform draw)."""
    n = data.shape[0]
    chosen = [int(rng.integers(n))]
    closest = np.einsum("ij,ij->i", data - data[chosen[0]], data - data[chosen[0]]).astype(np.float64)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct rows than k: take unused rows in order
            unused = np.setdiff1d(np.arange(n), chosen)
            chosen.extend(unused[: k - len(chosen)].tolist())
            break
        pick = int(rng.choice(n, p=closest / total))
        chosen.append(pick)
        diff = data - data[pick]
        np.minimum(closest, np.einsum("ij,ij->i", diff, diff), out=closest)
    return data[chosen].copy()


def _kmeans_numpy(data: np.ndarray, k: int, niter: int, seed: int, init: np.ndarray | None) -> np.ndarray:
    centroids = _kmeans_pp(data, k, np.random.default_rng(seed)) if init is None else np.array(init, np.float32)
    for _ in range(niter):
        labels, _ = nearest(data, centroids)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centroids, dtype=np.float64)
        np.add.at(sums, labels, data)
        filled = counts > 0
        centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        for empty in np.flatnonzero(~filled):
            # split the largest cluster in two, as faiss does, so no centroid is wasted
            big = int(np.argmax(counts))
            centroids[empty] = centroids[big] * (1 + 1 / 1024)
            centroids[big] = centroids[big] * (1 - 1 / 1024)
            counts[empty] = counts[big] // 2
            counts[big] -= counts[empty]
    return np.ascontiguousarray(centroids, dtype=np.float32)
