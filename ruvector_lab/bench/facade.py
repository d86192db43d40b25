"""The facade's own cost: ``HnswIndex.search`` against each native library called directly, across dimensions.

Protocol (issue 20): per dimension (128, 256, 384 and 768 by default) and native backend, 10,000 Gaussian vectors,
cosine, M=16, ef_construction=100, ef_search=50, k=10. Single queries: 500 distinct queries, the facade and the
library's own call (the backend's ``direct_search``: same index, parameters and thread) interleaved call by call,
rotating which goes first, in 5 rounds; a round gives each its p50, the figures are the medians over rounds, the
ratio the median of the rounds' facade p50 / direct p50 and the facade's cost the median of their differences.
Batch: ``search_batch`` of 1,000 queries. A whole batch takes 50-700 ms, and on a shared machine two runs of the
same batch differ by 10-30%, far more than the microsecond a query sought; so the facade's share is attributed
inside each call instead: the call runs under cProfile, and the time spent in the functions the library's own batch
call (``direct_search_batch``, profiled the same way) runs is the library's; the rest, per query, less the same
remainder of the direct call (its own Python loop, where the binding has no batch call), is the facade's (median of
``rounds`` calls each; each side's result is freed inside the profile, since the facade frees a binding's per-hit
objects inside its call and a direct caller pays the same when it drops them). Profiling adds about a microsecond
per Python call, and a batch makes a few dozen of them, so this over-states the cost by well under 0.1 us a query.
Both batch calls are also timed whole (fastest of ``rounds``).
Targets: ratio <= 1.10 at every dimension on every native backend; batch cost below 1 us a query.
Every library pool is pinned to one thread while timing.

Run: ``python -m ruvector_lab.bench.facade [--dims 128 256 384 768] [--n 10000] [--queries 500] [--rounds 5]
[--backend NAME ...] [--json out.json]``
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from ..backends import detection_order, spec
from ..container import write_atomic
from ..index import HnswIndex
from ..runtime import Runtime
from ..types import HnswConfig
from .env import cpu_model, facade_hot_path
from .threads import pinned_threads
from .timer import interleaved

log = logging.getLogger(__name__)

FACADE_TARGET_RATIO = 1.10
BATCH_TARGET_US = 1.0
DIMENSIONS = (128, 256, 384, 768)
BATCH_SIZE = 1000


@dataclass(frozen=True)
class FacadeResult:
    """One backend at one dimension: single-query p50/p99 (us) of the facade and of the library called directly,
    their ratio and difference (the facade's cost), the batch of 1,000 both ways (fastest call, ms) and the
    facade's cost per query in it (us), recall@10 and the verdicts."""

    backend: str
    dimensions: int
    facade_p50_us: float
    direct_p50_us: float
    ratio: float
    cost_us: float
    facade_p99_us: float
    direct_p99_us: float
    batch_facade_ms: float
    batch_direct_ms: float
    batch_cost_us_per_query: float
    recall_at_10: float
    build_s: float
    meets_ratio_target: bool
    meets_batch_target: bool
    #: whether the facade's C hot path (ruvector_lab._hotpath) served the single queries
    hot_path: bool


def native_backends() -> list[str]:
    """The native backends available here, in detection order."""
    available = set(Runtime.available_names())
    return [name for name in detection_order() if spec(name).tier == "native" and name in available]


def _percentile_us(samples: np.ndarray, q: float) -> float:
    return float(np.percentile(samples, q) * 1e6)


def _profile(func: Callable[[np.ndarray], object], block: np.ndarray,
             with_calls: bool = False) -> tuple[Any, ...]:
    """Run ``func(block)`` under cProfile: each function's own time (s) by (file, line, name), the total, and
    with ``with_calls`` the number of calls recorded."""
    profiler = cProfile.Profile(timer=time.perf_counter)
    profiler.enable()
    try:
        func(block)
    finally:
        profiler.disable()
    stats = profiler.getstats()
    own = {_key(entry.code): entry.inlinetime for entry in stats}
    if with_calls:
        return own, sum(own.values()), sum(entry.callcount for entry in stats)
    return own, sum(own.values())


def _key(code: object) -> tuple[str, int, str]:
    if isinstance(code, str):  # a built-in function: cProfile names it by a string
        return ("~", 0, code)
    return (code.co_filename, code.co_firstlineno, code.co_name)  # type: ignore[attr-defined]


def profiler_cost_per_call(calls: int = 20_000) -> float:
    """Seconds cProfile adds to each function call it records (median of 5): a loop of ``calls`` calls of a
    built-in, profiled and not."""
    data = [0]

    def loop(_: object) -> None:
        for _ in range(calls):
            len(data)

    plain, profiled = [], []
    for _ in range(5):
        start = time.perf_counter()
        loop(None)
        plain.append(time.perf_counter() - start)
        profiled.append(_profile(loop, np.empty(0))[1])
    return max(0.0, float(np.median(profiled) - np.median(plain)) / calls)


def batch_facade_cost(search_batch: Callable[[np.ndarray], object], direct: Callable[[np.ndarray], object],
                      block: np.ndarray, rounds: int, per_call: float | None = None) -> float:
    """Seconds a query that ``search_batch`` spends beyond what the ``direct`` call spends, attributed inside each
    call (see the module's docstring): the functions the ``direct`` call runs, bar this project's own wrappers,
    are the library's; what a call spends outside them, less the profiler's own cost per recorded call
    (``per_call``, measured when None), is its Python around the library. The facade's cost is its own
    outside time less the direct call's (a binding with no batch call, ruvector's, is called once per query
    by both, and a user of the library pays that loop too). Medians over ``rounds`` calls of each."""
    per_call = profiler_cost_per_call() if per_call is None else per_call
    library_own, _ = _profile(direct, block)
    library = {key for key in library_own
               if "ruvector_lab" not in key[0] and "_lsprof" not in key[2] and key[2] != "<lambda>"}

    def outside(func: Callable[[np.ndarray], object]) -> float:
        def call_and_drop(queries: np.ndarray) -> None:
            # the result is freed inside a profiled frame on both sides: freeing a binding's per-hit Python
            # objects (ruvector's 30,000 a batch) is the caller's cost whoever holds them, and where the facade
            # frees them inside its call, a direct result would otherwise be freed unprofiled
            func(queries)

        shares = []
        for _ in range(rounds):
            own, total, calls = _profile(call_and_drop, block, with_calls=True)
            spent = total - sum(t for key, t in own.items() if key in library) - per_call * calls
            shares.append(max(0.0, spent) / len(block))
        return float(np.median(shares))

    return max(0.0, outside(search_batch) - outside(direct))


def measure(backend: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int = 10,
            rounds: int = 5, batch_size: int = BATCH_SIZE) -> FacadeResult:
    """Build the issue's index on ``backend`` over ``base`` and time the facade against the direct call."""
    config = HnswConfig(dimensions=base.shape[1], m=16, ef_construction=100, ef_search=50, metric="cosine")
    index = HnswIndex(config, backend=backend)
    try:
        with pinned_threads(2):
            start = time.perf_counter()
            index.insert_batch([str(i) for i in range(len(base))], base)
            build_s = time.perf_counter() - start
        raw = index.raw_backend
        one, batch = raw.direct_search(k, config.ef_search), raw.direct_search_batch(k, config.ef_search)
        if one is None or batch is None:
            raise ValueError(f"backend {backend!r} has no direct library call to compare with")
        found = index.search_batch(queries, k).ids
        recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found.tolist(), truth.tolist(),
                                                                          strict=True)]))
        with pinned_threads(1):
            single = [interleaved({"facade": lambda q: index.search(q, k), "direct": one}, list(queries))
                      for _ in range(rounds)]
            block = np.resize(queries, (batch_size, queries.shape[1]))
            whole = interleaved({"facade": lambda b: index.search_batch(b, k), "direct": batch}, [block] * rounds,
                                warmup=1)
            batch_cost = batch_facade_cost(lambda b: index.search_batch(b, k), batch, block, rounds)
    finally:
        index.close()
    p50 = {name: [_percentile_us(r[name], 50) for r in single] for name in ("facade", "direct")}
    p99 = {name: float(np.median([_percentile_us(r[name], 99) for r in single])) for name in ("facade", "direct")}
    # the ratio and the cost pair each round's two p50s (measured in the same minutes) before taking the median
    rounds_paired = list(zip(p50["facade"], p50["direct"], strict=True))
    ratio = float(np.median([f / d for f, d in rounds_paired]))
    cost = float(np.median([f - d for f, d in rounds_paired]))
    facade_p50, direct_p50 = float(np.median(p50["facade"])), float(np.median(p50["direct"]))
    return FacadeResult(
        backend=backend, dimensions=base.shape[1], facade_p50_us=facade_p50, direct_p50_us=direct_p50, ratio=ratio,
        cost_us=cost, facade_p99_us=p99["facade"], direct_p99_us=p99["direct"],
        batch_facade_ms=float(whole["facade"].min()) * 1e3,
        batch_direct_ms=float(whole["direct"].min()) * 1e3,
        batch_cost_us_per_query=batch_cost * 1e6, recall_at_10=recall, build_s=build_s,
        meets_ratio_target=ratio <= FACADE_TARGET_RATIO, meets_batch_target=batch_cost < BATCH_TARGET_US,
        hot_path=facade_hot_path())


def exact_neighbours(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The true top-``k`` rows of ``base`` for each query under cosine (exact, NumPy), as id strings."""
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    top = np.argsort(-(q @ unit.T), axis=1, kind="stable")[:, :k]
    return top.astype(str)


def run(dims: Sequence[int] = DIMENSIONS, n: int = 10_000, n_queries: int = 500, rounds: int = 5, seed: int = 42,
        backends: Sequence[str] | None = None, progress: bool = False) -> list[FacadeResult]:
    """The issue's table: every native backend (or ``backends``) at every dimension in ``dims``, on seeded
    Gaussian data with distinct queries."""
    names = list(backends) if backends else native_backends()
    out = []
    steps = [(d, name) for d in dims for name in names]
    bar = tqdm(steps, desc="facade", unit="index", disable=not progress)
    data: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for d, name in bar:
        if d not in data:
            rng = np.random.default_rng(seed + d)
            base = rng.standard_normal((n, d)).astype(np.float32)
            queries = rng.standard_normal((n_queries, d)).astype(np.float32)
            data = {d: (base, queries, exact_neighbours(base, queries, 10))}
        bar.set_postfix_str(f"{name} d={d}")
        out.append(measure(name, *data[d], rounds=rounds))
    return out


def format_table(results: Sequence[FacadeResult]) -> str:
    """A Markdown table of the results (times in microseconds)."""
    lines = [
        "| backend | dim | facade p50 us | direct p50 us | ratio | facade cost us | batch cost us/query | recall@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        flag = "" if r.meets_ratio_target else " (over 1.10)"
        lines.append(f"| {r.backend} | {r.dimensions} | {r.facade_p50_us:.1f} | {r.direct_p50_us:.1f} | "
                     f"{r.ratio:.3f}{flag} | {r.cost_us:.1f} | {r.batch_cost_us_per_query:.2f} | "
                     f"{r.recall_at_10:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the table and the machine, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMENSIONS))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", action="append", help="only these backends (repeatable); default every native")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    results = run(args.dims, args.n, args.queries, args.rounds, backends=args.backend, progress=True)
    print(format_table(results))
    hot = "built" if facade_hot_path() else "not built (the Python path ran; `make setup` builds it)"
    print(f"\nmachine: {cpu_model()}, python {platform.python_version()}; the facade's C hot path: {hot}")
    if args.json:
        write_atomic(args.json, json.dumps([asdict(r) for r in results], indent=2).encode())


if __name__ == "__main__":
    main()

