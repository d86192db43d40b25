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


def interleaved(funcs: dict[str, Callable[[object], object]], args: Sequence[object], rounds: int = 5,
                warmup: int = 20) -> dict[str, np.ndarray]:
    """Time several functions on the same args in alternating rounds, so drift on a shared machine
    hits them alike; return all per-call seconds of each."""
    for func in funcs.values():
        for arg in list(args)[:warmup]:
            func(arg)
    chunks = np.array_split(np.arange(len(args)), rounds)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in funcs}
    for chunk in chunks:
        for name, func in funcs.items():
            samples[name].append(time_calls(func, [args[i] for i in chunk], warmup=0))
    return {name: np.concatenate(parts) for name, parts in samples.items()}
