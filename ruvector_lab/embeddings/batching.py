"""Token-budget batching: which texts share a model run, so the cost follows the real tokens, not the padding.

A model run pads every text of its chunk to the chunk's longest, and costs about ``overhead + rows x longest``
token-steps. Sorting by length and cutting chunks at a fixed count pads 30 short texts to the length of a long one
that lands among them (a batch of 32 with two 256-token paragraphs cost 4x its parts). :func:`plan_chunks` sorts
by length and then chooses the cut points that minimise that cost exactly (dynamic programming over the sorted
lengths), under a budget of padded tokens per run (bounding memory and the attention's quadratic term) and an
optional cap on rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidParameterError

#: padded tokens per model run at most (rows x longest row). Measured on 2 cores with int8 MiniLM over 3,000
#: WordNet texts (3 interleaved rounds): 512 -> 585 texts/s, 1,024 -> 688, 2,048 -> 621, 4,096 -> 672: flat from
#: 1,024 up within the machine's noise; 2,048 keeps a run's activations near 12 MB and attention to 8 long texts
DEFAULT_TOKEN_BUDGET = 2048
#: the fixed cost of one model run, in token-steps of a large run. Measured on batches of 32 short sentences
#: (11-14 tokens; median of 5 rounds of 12 batches): overhead 0 / 8 / 32 / never split gave 114.6 / 111.1 / 115.2 /
#: 120.9 ms (fp32, 1 thread) and 53.2 / 50.5 / 51.7 / 52.6 ms (int8, 2 threads)
RUN_OVERHEAD_TOKENS = 8


def plan_chunks(lengths: Sequence[int] | np.ndarray, token_budget: int = DEFAULT_TOKEN_BUDGET,
                max_rows: int | None = None, run_overhead: int = RUN_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Split rows of the given token ``lengths`` into chunks (arrays of row indices, longest rows first).

    Each chunk holds rows of similar length; its padded size (rows x its longest row) stays within
    ``token_budget`` unless a single row exceeds it (then that row runs alone), and within ``max_rows`` rows if
    given. Among such plans over the length-sorted rows, the one with the least ``run_overhead x chunks + padded
    tokens`` is returned. Every row appears in exactly one chunk.
    """
    for name, value, low in (("token_budget", token_budget, 1), ("run_overhead", run_overhead, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidParameterError(f"{name} must be an int >= {low}, got {value!r}")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer))
                                 or max_rows < 1):
        raise InvalidParameterError(f"max_rows must be None or an int >= 1, got {max_rows!r}")
    sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if sizes.size and sizes.min() < 1:
        raise InvalidParameterError("every length must be >= 1 (a tokenised text has at least [CLS] and [SEP])")
    order = np.argsort(-sizes, kind="stable")
    ordered = sizes[order]
    n = ordered.size
    best = np.zeros(n + 1, dtype=np.int64)  # best[j]: least cost of the first j sorted rows
    cut = np.zeros(n + 1, dtype=np.int64)   # cut[j]: where the last chunk of that plan starts
    for j in range(1, n + 1):
        # a chunk [i, j) pads to ordered[i]; it fits while ordered[i] x (j - i) <= budget (one row always may)
        # no chunk ending at row j can hold more than budget // (its shortest row) rows
        span = min(j, max(1, token_budget // int(ordered[j - 1])), j if max_rows is None else int(max_rows))
        starts = np.arange(j - span, j)
        rows = j - starts
        fits = (ordered[starts] * rows <= token_budget) | (rows == 1)
        # fits is monotone: fewer rows and (sorted) shorter lengths as i grows, so the feasible starts are a suffix
        first = int(np.argmax(fits))
        starts, rows = starts[first:], rows[first:]
        costs = best[starts] + run_overhead + ordered[starts] * rows
        pick = int(np.argmin(costs))
        best[j], cut[j] = costs[pick], starts[pick]
    chunks: list[np.ndarray] = []
    j = n
    while j > 0:
        i = int(cut[j])
        chunks.append(order[i:j])
        j = i
    chunks.reverse()
    return chunks
