"""Latency measurement: warm-up, then one timing per call, summarised by percentiles.

Timings on shared machines are noisy: report medians and spreads from one run, never one absolute time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    """Per-call latency in milliseconds over ``count`` calls."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        """Plain values for JSON."""
        return asdict(self)


def summarize(samples_s: Sequence[float] | np.ndarray) -> LatencySummary:
    """Percentiles (linear interpolation) of per-call times given in seconds."""
    arr = np.asarray(samples_s, dtype=np.float64) * 1e3
    if arr.size == 0:
        raise ValueError("no samples to summarize")
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return LatencySummary(int(arr.size), float(p50), float(p95), float(p99), float(arr.mean()),
                          float(arr.min()), float(arr.max()))


def time_calls(func: Callable[[object], object], args: Sequence[object], warmup: int = 20) -> np.ndarray:
    """Call ``func(arg)`` for each arg after ``warmup`` untimed calls; return per-call seconds."""
    for arg in list(args)[:warmup]:
        func(arg)
    out = np.empty(len(args), dtype=np.float64)
    clock = time.perf_counter
    for i, arg in enumerate(args):
        start = clock()
        func(arg)
        out[i] = clock() - start
    return out


def interleaved(funcs: dict[str, Callable[[object], object]], args: Sequence[object], rounds: int = 1,
                warmup: int = 20) -> dict[str, np.ndarray]:
    """Time several functions on the same args, alternating call by call and rotating which goes first.

    Calling each function on an arg right after another did warms the caches for the second one (the graph
    nodes and vectors the query touches); rotating the order makes that advantage the same for all, and
    alternating per call makes drift on a shared machine hit them alike. ``rounds`` repeats the whole pass.
    Returns every per-call time in seconds, per function.
    """
    names = list(funcs)
    for func in funcs.values():
        for arg in list(args)[:warmup]:
            func(arg)
    samples = {name: np.empty(rounds * len(args), dtype=np.float64) for name in names}
    clock = time.perf_counter
    slot = 0
    for _ in range(rounds):
        for i, arg in enumerate(args):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                func = funcs[name]
                start = clock()
                func(arg)
                samples[name][slot] = clock() - start
            slot += 1
    return samples


def alternating(funcs: dict[str, Callable[[object], object]], args: Sequence[object],
                warmup: int = 20) -> dict[str, np.ndarray]:
    """Time several functions over the same args, each arg going to one function per round, in turn.

    Round ``r`` gives arg ``i`` to function ``(i + r) % n``; after ``n`` rounds every function has timed every arg
    exactly once. Unlike :func:`interleaved`, no function runs an arg right after another did (which would find
    that query's graph nodes in cache), so each figure is a cold-ish query as in real use, while alternating call
    by call makes drift on a shared machine hit all alike. With one function this is :func:`time_calls`.
    Returns per-call seconds per function, in arg order.
    """
    names = list(funcs)
    for func in funcs.values():
        for arg in list(args)[:warmup]:
            func(arg)
    samples = {name: np.empty(len(args), dtype=np.float64) for name in names}
    clock = time.perf_counter
    for round_ in range(len(names)):
        for i, arg in enumerate(args):
            name = names[(i + round_) % len(names)]
            func = funcs[name]
            start = clock()
            func(arg)
            samples[name][i] = clock() - start
    return samples


def time_repeats(func: Callable[[], object], repeats: int = 3, warmup: int = 1) -> np.ndarray:
    """Run ``func()`` ``warmup`` times untimed, then ``repeats`` times; return the seconds of each timed run."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        func()
    out = np.empty(repeats, dtype=np.float64)
    for i in range(repeats):
        start = time.perf_counter()
        func()
        out[i] = time.perf_counter() - start
    return out


class Stopwatch:
    """Wall time of a ``with`` block: ``with Stopwatch() as sw: ...; sw.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def reference_seconds(repeats: int = 5, size: int = 4_000_000) -> float:
    """Median seconds of a fixed single-threaded workload (sorting ``size`` seeded random floats, ~50-100 ms: long
    enough that its own jitter is small): taken before and after a measurement, its drift says how much the
    machine's speed moved meanwhile (the run's noise)."""
    data = np.random.default_rng(0).random(size)
    return float(np.median(time_repeats(lambda: np.sort(data), repeats=repeats, warmup=1)))
