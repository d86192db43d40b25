"""Input checks shared by the whole library: every vector crosses one of these before any backend, and every
integer parameter passes :func:`check_positive_int`. Depends on nothing but :mod:`.errors`, so any module can
import it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import DimensionMismatchError, DuplicateIdError, InvalidIdError, InvalidParameterError, InvalidVectorError

_TINY = float(np.finfo(np.float32).tiny)


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


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum`` (bools refused), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        if not isinstance(value, np.integer):
            raise InvalidParameterError(f"{name} must be an integer, got {type(value).__name__}")
        value = int(value)
    if value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_id(value: object) -> str:
    """Return ``value`` if it is a non-empty string, else raise :class:`InvalidIdError`."""
    if not isinstance(value, str):
        raise InvalidIdError(f"ids must be strings, got {type(value).__name__} {value!r}")
    if not value:
        raise InvalidIdError("ids must be non-empty strings")
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
