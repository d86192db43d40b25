"""The facade's per-query hot path: the C module ``ruvector_lab._hotpath`` when it was built, else nothing.

A library's result row becomes the facade's results through one of five score conversions (the backends'
distance units to the facade's: cosine ``1 - cos``, euclidean L2, dot product ``-dot``). :func:`convert_scores`
is their one definition in Python; the C module mirrors it (a test holds the two equal). Where the C module is
missing (no compiler at set-up), :data:`hotpath` is None and the facade takes its Python path: the same checks
and the same results, a few microseconds slower a query (issue 20).
"""

from __future__ import annotations

import logging
import math
import sys
from types import ModuleType

import numpy as np

log = logging.getLogger(__name__)

#: score conversions of a library's result row (the C module's numbering)
SCORE_SAME, SCORE_SQRT, SCORE_MINUS_ONE, SCORE_ONE_MINUS, SCORE_NEGATE = range(5)
#: a row that is a list of (decimal label string, score, ...) tuples, scores as they are (ruvector's results)
ROW_PAIRS = 5


def _load() -> ModuleType | None:
    try:
        # imported by one of its names (``from . import _hotpath`` would read as an import of the package itself,
        # a cycle through ruvector_lab/__init__.py)
        from ._hotpath import query_ok  # noqa: F401
    except ImportError as exc:
        log.info("the facade's C hot path is not built (%s); searches take the Python path "
                 "(`make setup` builds it where a C compiler and Python's headers are installed)", exc)
        return None
    return sys.modules[f"{__package__}._hotpath"]


#: ``ruvector_lab._hotpath`` or None
hotpath: ModuleType | None = _load()

_FLOAT32 = np.dtype(np.float32)
_TINY = float(np.finfo(np.float32).tiny)


def query_ok_python(query: object, dimensions: int, cosine: bool) -> bool:
    """True when ``query`` is a float32 ndarray of shape ``(dimensions,)`` (contiguous, aligned, native byte
    order), every component finite and, under cosine, the vector not zero: the facade's fast-path test (the C
    module's ``query_ok`` where built). False sends the caller to the general checks, which convert what they
    can and name what is wrong."""
    if type(query) is not np.ndarray or query.dtype is not _FLOAT32 or query.shape != (dimensions,):
        return False
    flags = query.flags
    if not (flags.c_contiguous and flags.aligned):
        return False
    # in float64, as the C module sums: NaN or inf if any component is, and no finite float32 row overflows it
    squared = float(np.einsum("i,i->", query, query, dtype=np.float64))
    return math.isfinite(squared) and (squared > _TINY or not cosine)


#: the facade's query test: C where built, else :func:`query_ok_python`
query_ok = hotpath.query_ok if hotpath is not None else query_ok_python


def convert_scores(raw: list[float], mode: int) -> list[float]:
    """The facade's scores from a library's distances under conversion ``mode`` (``SCORE_*``): ``SCORE_SQRT``
    takes a squared L2 distance to L2 (a negative rounding error to 0), ``SCORE_MINUS_ONE`` maps ``1 - dot`` to
    ``-dot``, ``SCORE_ONE_MINUS`` a similarity ``s`` to ``1 - s``, ``SCORE_NEGATE`` ``dot`` to ``-dot``."""
    if mode == SCORE_SAME:
        return raw
    if mode == SCORE_SQRT:
        return [math.sqrt(d) if d > 0.0 else 0.0 for d in raw]
    if mode == SCORE_MINUS_ONE:
        return [d - 1.0 for d in raw]
    if mode == SCORE_ONE_MINUS:
        return [1.0 - d for d in raw]
    if mode == SCORE_NEGATE:
        return [-d for d in raw]
    raise ValueError(f"unknown score conversion {mode!r}")
