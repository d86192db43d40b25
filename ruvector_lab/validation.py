"""Input checks shared by the whole library: every vector crosses one of these before any backend, and every
integer parameter passes :func:`check_positive_int`. Depends on nothing but :mod:`.errors`, so any module can
import it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import DimensionMismatchError, DuplicateIdError, InvalidIdError, InvalidParameterError, InvalidVectorError

_TINY = float(np.finfo(np.float32).tiny)

# ---- upper bounds of every integer parameter: the one place they are defined (issue 18). Each is far above what
# a study uses and far below what the native libraries choke on: faiss and hnswlib keep ef and k in 32-bit ints
# (ef >= 2**31 raises untyped errors there, and 2**64 leaves hnswlib's ef setting broken for good), and ruvector
# allocates its candidate lists up front (ef_search=2**31 asked for 17 GB and aborted the process; m=2**62
# panicked). All five backends build and search at every bound together (d=65,536, m=2,048, ef=2**20).

#: vector width: 65,536 float32 are 256 KiB a vector, past any embedding model (the largest are ~12k wide) while
#: every backend's per-vector buffers stay small; faiss' and hnswlib's int-sized strides are nowhere near overflow.
MAX_DIMENSIONS = 65_536
#: RaBitQ's width: its d x d random rotation is 64 MiB at 4,096 (the codec's QR takes seconds) and ruvector builds
#: its own in time cubic in d (about a minute at 4,096); faiss serves any width, but one bound serves every backend.
MAX_RABITQ_DIMENSIONS = 4_096
#: HNSW links per node and layer: studies use 4..128; at 2,048 a node's level-0 link list (2m int32) is 16 KiB,
#: while hnswlib silently clamps m above 10,000 and ruvector panics on sizes that overflow its allocations.
MAX_M = 2_048
#: candidate list size of build and query (ef_construction, ef_search): 2**20 entries keep a candidate heap at
#: ~16 MiB per search thread and well inside the 32-bit ints faiss and hnswlib hold ef in.
MAX_EF = 1 << 20
#: neighbours per query: results are allocated as k x (float32 + int64) per query, 12 MiB at 2**20, and faiss'
#: and hnswlib's heaps count k in 32-bit ints.
MAX_K = 1 << 20
#: code-ranked candidates re-scored exactly per query: a k by another name, so the same bound.
MAX_RERANK = MAX_K
#: product quantization subspaces: m must divide the dimension, so it can never usefully exceed MAX_DIMENSIONS.
MAX_PQ_M = MAX_DIMENSIONS
#: training rows sampled for codebooks: 16.7M rows is 65,000 per PQ centroid, far past where codebooks stop
#: improving (faiss itself subsamples to 256 per centroid), and sample indices stay in 32-bit range.
MAX_TRAIN_SIZE = 1 << 24
#: codec seed: PQ seeds subspace j's k-means with seed + j and faiss takes a 32-bit int seed, so 2**30 leaves
#: room for every j < MAX_PQ_M (ruvector's and NumPy's 64-bit seeds take it too).
MAX_SEED = 1 << 30


def as_float32(value: object, name: str = "vector") -> np.ndarray:
    """Convert ``value`` to a C-contiguous float32 array; refuse ragged, non-numeric or non-finite input."""
    if (
        type(value) is np.ndarray
        and value.dtype == np.float32
        and value.flags.c_contiguous
        and np.isfinite(value).all()
    ):
        return value  # the hot path of every search: already what the backends take
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except ValueError as exc:  # numpy refuses ragged nested sequences
            raise InvalidVectorError(f"{name} is ragged or not numeric: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidVectorError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InvalidVectorError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.dtype == np.bool_:
        raise InvalidVectorError(f"{name} must be numeric, got booleans")
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.size and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0].tolist()
        raise InvalidVectorError(
            f"{name} holds NaN or inf, or a value too large for float32 (first at position {bad})"
        )
    return out


def as_vector(value: object, dimensions: int | None = None, name: str = "vector") -> np.ndarray:
    """One vector as float32 of shape ``(dimensions,)``."""
    arr = as_float32(value, name)
    if arr.ndim != 1:
        raise DimensionMismatchError(f"{name} must be one vector (1-D), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DimensionMismatchError(f"{name} is empty")
    if dimensions is not None and arr.shape[0] != dimensions:
        raise DimensionMismatchError(f"{name} has {arr.shape[0]} dimensions, expected {dimensions}")
    return arr


def as_matrix(value: object, dimensions: int | None = None, name: str = "vectors") -> np.ndarray:
    """A matrix of row vectors as float32 of shape ``(n, dimensions)``; one vector becomes one row."""
    arr = as_float32(value, name)
    if arr.ndim == 1:
        # an empty sequence is an empty batch; any other 1-D input is one vector
        arr = arr.reshape(0, dimensions or 0) if arr.size == 0 else arr.reshape(1, -1)
    if arr.ndim != 2:
        raise DimensionMismatchError(f"{name} must be a matrix of row vectors (2-D), got shape {arr.shape}")
    if arr.shape[1] == 0 and arr.shape[0] > 0:
        raise DimensionMismatchError(f"{name} rows are empty")
    if dimensions is not None and arr.shape[1] != dimensions:
        raise DimensionMismatchError(f"{name} have {arr.shape[1]} dimensions, expected {dimensions}")
    return arr


def check_nonzero(matrix: np.ndarray, name: str = "vector") -> None:
    """Refuse zero rows: under cosine a zero vector has no direction and would give NaN scores."""
    if matrix.ndim == 1:
        if float(matrix @ matrix) > _TINY:
            return
        raise InvalidVectorError(f"{name} is a zero vector; cosine distance is undefined for it")
    norms = np.einsum("ij,ij->i", matrix, matrix)
    zero = np.flatnonzero(norms <= _TINY)
    if zero.size:
        where = "" if matrix.ndim == 1 else f" (row {int(zero[0])})"
        raise InvalidVectorError(f"{name} is a zero vector{where}; cosine distance is undefined for it")


def squared_norms(matrix: np.ndarray) -> np.ndarray:
    """Each row's squared L2 norm as float32 accumulates it (other dtypes are cast to float32 first, as the
    loaders store them); ``inf`` where it overflows (no warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rows = matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)
        return np.einsum("ij,ij->i", rows, rows, dtype=np.float32)


def stored_row_flaw(matrix: np.ndarray, nonzero: bool = False) -> str | None:
    """Why a row may not be stored, or None: the one rule the inserts and the payload loaders share.

    Every component finite and a finite float32 squared norm (a row past it, norm >= ~1.8e19, has no finite
    float32 distance to anything and normalises to zero), and with ``nonzero`` (cosine) not a zero row.
    """
    if matrix.ndim != 2:
        return f"rows of shape {matrix.shape} are not a matrix"
    if not matrix.size:
        return None
    norms = squared_norms(matrix)
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:
        return (f"row {int(bad[0])} holds NaN or inf, or has a squared norm past float32's range: no float32 "
                "distance to it is finite")
    if nonzero:
        zero = np.flatnonzero(norms <= _TINY)
        if zero.size:
            return f"row {int(zero[0])} is a zero vector; cosine distance is undefined for it"
    return None


def check_rows(matrix: np.ndarray, nonzero: bool = False, name: str = "vectors") -> None:
    """Refuse rows :func:`stored_row_flaw` finds a flaw in (:class:`InvalidVectorError`); one float32 pass."""
    flaw = stored_row_flaw(matrix, nonzero)
    if flaw is not None:
        raise InvalidVectorError(f"{name}: {flaw}")


def check_positive_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``minimum..maximum`` (bools refused), else raise
    :class:`InvalidParameterError` naming the parameter and the bound it broke. ``maximum`` None: no upper bound;
    the library passes one of the ``MAX_*`` constants above."""
    if isinstance(value, bool) or not isinstance(value, int):
        if not isinstance(value, np.integer):
            raise InvalidParameterError(f"{name} must be an integer, got {type(value).__name__}")
        value = int(value)
    if value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be <= {maximum} (the library's upper bound), got {value}")
    return int(value)


def check_id(value: object) -> str:
    """Return ``value`` if it is a non-empty string that UTF-8 can encode, else raise :class:`InvalidIdError`.

    Ids are stored as UTF-8, so one holding a lone surrogate (``"\\ud800"``, e.g. from ``surrogateescape``
    decoding) is refused here rather than accepted and then failing every ``save()``.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"ids must be strings, got {type(value).__name__} {value!r}")
    if not value:
        raise InvalidIdError("ids must be non-empty strings")
    if not value.isascii():  # ASCII always encodes: the common case skips the encode
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidIdError(
                f"id {value!r} cannot be encoded as UTF-8: {value[exc.start]!r} at position {exc.start} is a "
                "lone surrogate"
            ) from None
    return value


def check_ids(values: Sequence[str], count: int) -> list[str]:
    """Check a batch of ids against ``count`` rows: every id a non-empty string, no id twice."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise InvalidIdError(f"ids must be a sequence of strings, got {type(values).__name__}")
    ids = [check_id(v) for v in values]
    if len(ids) != count:
        raise InvalidIdError(f"got {len(ids)} ids for {count} vectors; they must match one to one")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DuplicateIdError(f"id {dup!r} appears more than once in the batch")
    return ids
