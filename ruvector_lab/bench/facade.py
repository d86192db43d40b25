"""Facade overhead and the ADR search target on every backend.

For each native backend, ``HnswIndex.search`` is timed against a direct call of the underlying library with
the same parameters (k=10, efSearch from the config, one query at a time), interleaved in rounds on the same
queries so machine noise hits both alike. Issue target: facade p50 within 1.10x of direct. ADR-006 target:
HNSW search k=10 on 10,000 x 384 under 5 ms p50, every backend (numpy's exact search included).

Run: ``python -m ruvector_lab.bench.facade [--n 10000] [--dim 384] [--queries 1000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

import ruvector_lab as rl

from ..container import write_atomic
from .timer import interleaved, summarize

log = logging.getLogger(__name__)

ADR_SEARCH_TARGET_MS = 5.0
FACADE_TARGET_RATIO = 1.10


@dataclass(frozen=True)
class FacadeResult:
    """One backend's figures: facade and direct p50 (ms), their ratio, and the ADR verdict."""

    backend: str
    facade_p50_ms: float
    facade_p99_ms: float
    direct_p50_ms: float | None
    ratio: float | None
    recall_at_10: float
    build_s: float
    meets_adr_target: bool
    meets_facade_target: bool | None


def measure(backend: str, base: np.ndarray, queries: np.ndarray, truth: list[set[str]], k: int = 10,
            rounds: int = 3) -> FacadeResult:
    """Build an ADR-configured index on ``backend`` and time facade vs direct search over ``queries``."""
    config = rl.HnswConfig(dimensions=base.shape[1], m=16, ef_construction=100, ef_search=50, metric="cosine")
    index = rl.HnswIndex(config, backend=backend)
    start = time.perf_counter()
    index.insert_batch([f"vec_{i}" for i in range(len(base))], base)
    build_s = time.perf_counter() - start
    hits = sum(len({r.id for r in index.search(q, k)} & t) for q, t in zip(queries, truth, strict=True))
    funcs: dict[str, Callable[[object], object]] = {"facade": lambda q: index.search(q, k)}
    direct = index.raw_backend.direct_search(k, index.config.ef_search)
    if direct is not None:
        funcs["direct"] = direct  # type: ignore[assignment]
    samples = interleaved(funcs, list(queries), rounds=rounds)
    facade = summarize(samples["facade"])
    direct_p50 = summarize(samples["direct"]).p50_ms if "direct" in samples else None
    ratio = facade.p50_ms / direct_p50 if direct_p50 else None
    index.close()
    return FacadeResult(
        backend=backend,
        facade_p50_ms=facade.p50_ms,
        facade_p99_ms=facade.p99_ms,
        direct_p50_ms=direct_p50,
        ratio=ratio,
        recall_at_10=hits / (k * len(queries)),
        build_s=build_s,
        meets_adr_target=facade.p50_ms < ADR_SEARCH_TARGET_MS,
        meets_facade_target=None if ratio is None else ratio <= FACADE_TARGET_RATIO,
    )


def run(n: int = 10_000, dim: int = 384, n_queries: int = 1000, seed: int = 42,
        backends: list[str] | None = None) -> list[FacadeResult]:
    """The ADR's data (uniform in [-1, 1]) with distinct queries; exact truth from the NumPy backend."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (n, dim)).astype(np.float32)
    queries = rng.uniform(-1, 1, (n_queries, dim)).astype(np.float32)
    exact = rl.HnswIndex(rl.HnswConfig(dimensions=dim, metric="cosine"), backend="numpy")
    exact.insert_batch([f"vec_{i}" for i in range(n)], base)
    truth = [{r.id for r in hits} for hits in exact.search_batch(queries, k=10)]
    exact.close()
    names = backends or rl.Runtime.available_names()
    return [measure(name, base, queries, truth) for name in names]


def format_table(results: list[FacadeResult]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| backend | facade p50 ms | facade p99 ms | direct p50 ms | facade/direct | recall@10 | ADR < 5 ms |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        direct = f"{r.direct_p50_ms:.3f}" if r.direct_p50_ms is not None else "n/a"
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else "n/a"
        lines.append(
            f"| {r.backend} | {r.facade_p50_ms:.3f} | {r.facade_p99_ms:.3f} | {direct} | {ratio} | "
            f"{r.recall_at_10:.3f} | {'pass' if r.meets_adr_target else 'FAIL'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--backend", action="append", help="only these backends (repeatable)")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    results = run(args.n, args.dim, args.queries, backends=args.backend)
    print(format_table(results))
    print(f"\nmachine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    if args.json:
        write_atomic(args.json, json.dumps([asdict(r) for r in results], indent=2).encode())


if __name__ == "__main__":
    main()
