"""Latency of the learning operations against the ADR's targets (measured, never asserted in tests).

* pattern match against 10,000 stored patterns (ADR: < 20 ms p50; aim < 1 ms): the HNSW-backed
  :class:`~.patterns.PatternStore`, the exact :class:`~.patterns.PatternSet` (stacked once) and
  :func:`~.patterns.match_patterns` over a plain list (stacked on every call);
* one online LoRA update on a batch of 32 (< 100 ms);
* applying a rank-8 adapter to one 384-d vector (< 50 us).

Run: ``python -m ruvector_lab.learning.benchmark [--patterns 10000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..backends import names as backend_names
from ..types import check_positive_int
from .experiment import HelpFormatter
from .lora import LoRAConfig, LoRATrainer, apply
from .patterns import PatternSet, PatternStore, create_pattern, match_patterns

#: ADR-006 targets in seconds, by measurement name
TARGETS = {"pattern_match_store": 20e-3, "pattern_match_set": 20e-3, "pattern_match_list": 20e-3,
           "lora_update_b32": 100e-3, "apply_rank8_one_vector": 50e-6}


@dataclass(frozen=True)
class Timing:
    """Median and 95th percentile of ``runs`` timed calls, in seconds, and the ADR target they face."""

    name: str
    p50: float
    p95: float
    runs: int
    target: float

    @property
    def meets_target(self) -> bool:
        """Whether the median is under the ADR target."""
        return self.p50 < self.target


def time_calls(fn: Callable[[], object], runs: int, warmup: int = 3) -> tuple[float, float]:
    """``(p50, p95)`` in seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    runs = check_positive_int("runs", runs)
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - start
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def run_benchmarks(patterns: int = 10_000, dimensions: int = 384, runs: int = 200, seed: int = 0,
                   backend: str | None = None) -> list[Timing]:
    """Measure the three operations once; ``backend`` is the pattern store's index backend (None: runtime's)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dimensions))
    vectors = (centres[rng.integers(0, 50, patterns)] + 0.5 * rng.standard_normal((patterns, dimensions)))
    vectors = vectors.astype(np.float32)
    items = [create_pattern(v, {"i": i}, id=f"p{i}") for i, v in enumerate(vectors)]
    store = PatternStore(dimensions, backend=backend)
    store.add_many(items)
    queries = vectors[rng.integers(0, patterns, runs)] + 0.1 * rng.standard_normal((runs, dimensions)).astype(
        np.float32)
    cycle = iter(np.tile(np.arange(runs), 100))
    out = []

    def timing(name: str, fn: Callable[[], object], n: int) -> None:
        p50, p95 = time_calls(fn, n)
        out.append(Timing(name, p50, p95, n, TARGETS[name]))

    timing("pattern_match_store", lambda: store.match(queries[next(cycle)], threshold=0.5, k=10), runs)
    exact = PatternSet(items)
    timing("pattern_match_set", lambda: exact.match(queries[next(cycle)], 0.5, k=10), max(runs // 4, 5))
    timing("pattern_match_list", lambda: match_patterns(queries[next(cycle)], items, 0.5, k=10), max(runs // 10, 5))
    trainer = LoRATrainer(dimensions, LoRAConfig(rank=8, seed=seed))
    batch_q = rng.standard_normal((32, dimensions)).astype(np.float32)
    batch_t = rng.standard_normal((32, dimensions)).astype(np.float32)
    timing("lora_update_b32", lambda: trainer.update(batch_q, batch_t), runs)
    weights = trainer.weights
    one = queries[0]
    timing("apply_rank8_one_vector", lambda: apply(weights, one), runs * 10)
    store.close()
    return out


def _parser() -> argparse.ArgumentParser:
    """The command line of ``python -m ruvector_lab.learning.benchmark``."""
    parser = argparse.ArgumentParser(
        prog="python -m ruvector_lab.learning.benchmark", formatter_class=HelpFormatter,
        description="Latency of the learning operations against ADR-006's targets: pattern match against the\n"
                    "stored patterns (HNSW PatternStore, exact PatternSet, match_patterns over a list; < 20 ms),\n"
                    "one online LoRA update on a batch of 32 (< 100 ms), and applying a rank-8 adapter to one\n"
                    "vector (< 50 us).",
        epilog="Each line: the operation, its median (p50) and 95th percentile over the timed calls, the ADR target,\n"
               "and ok when the median is under the target, MISSED when it is not (on this machine, in this run:\n"
               "a measurement, not a test). Exit status is 0 either way.")
    parser.add_argument("--patterns", type=int, metavar="N", default=10_000, help="patterns stored before matching")
    parser.add_argument("--dimensions", type=int, metavar="D", default=384, help="embedding dimension")
    parser.add_argument("--runs", type=int, metavar="N", default=200,
                        help="timed calls per operation (fewer for the slower exact matches, more for apply)")
    parser.add_argument("--backend", default=None, choices=backend_names(), metavar="NAME",
                        help=f"index backend of the PatternStore, one of {', '.join(backend_names())} (default: the "
                             "runtime's choice)")
    parser.add_argument("--json", metavar="PATH", help="also write the timings as JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: print the timings (median, p95, target) and optionally write them as JSON."""
    parser = _parser()
    args = parser.parse_args(argv)
    timings = run_benchmarks(args.patterns, args.dimensions, args.runs, backend=args.backend)
    for t in timings:
        sys.stdout.write(f"{t.name:<24} p50 {t.p50 * 1e6:10.1f} us  p95 {t.p95 * 1e6:10.1f} us  "
                         f"target {t.target * 1e6:8.0f} us  {'ok' if t.meets_target else 'MISSED'}\n")
    if args.json:
        from ..container import write_atomic

        write_atomic(args.json, json.dumps([asdict(t) for t in timings], indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
