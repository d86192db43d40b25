"""One autotuner trial: build a configuration in a fresh process, find the cheapest ef_search reaching each recall
target, and measure it there.

A trial runs in a **child process** (``python -m ruvector_lab.bench.trial SPEC.json``), as the memory measurement
does (:mod:`ruvector_lab.bench.memory`, whose child steps it reuses): the index's resident-memory growth is then
the index's own (the measurement issue's bytes per vector), a backend that crashes fails one trial and not the
study, and no trial inherits the allocator state of the ones before it. In the child:

1. warm-up, baseline RSS, load the vectors, build with the base rows in a seeded insertion order (ids are the
   row numbers), build time, RSS growth, serialized size;
2. for each recall target, :func:`find_ef`: ef_search doubles from ``k`` until recall@k over the queries reaches
   the target, then integer bisection between the last miss and the first hit (recall is monotone in ef up to
   noise). A target not reached at ``ef_max`` makes the trial infeasible for it, and nothing is timed for it
   (pruned: timing a configuration that cannot be used is wasted budget);
3. at each target's ef: 1-thread batch QPS (timed windows, pools pinned to 1) and single-query latency p50/p95/p99,
   then recall **re-measured** at that ef; if the re-measure falls below the target (a backend whose search is not
   deterministic) the search goes on upward from there.

Recall is the pipeline's recall@k (distance-tolerant: :func:`ruvector_lab.bench.metrics.mean_recall`).
"""

from __future__ import annotations

import argparse
import json
import logging
import numbers
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from ..validation import MAX_EF, check_positive_int
from .tune_space import Candidate

log = logging.getLogger(__name__)

#: the child's exit code when it raised (the error is in its result file)
_EXIT_RAISED = 3


@dataclass(frozen=True)
class TrialSettings:
    """How a trial measures: recall@``k`` over ``n_queries`` queries, ef_search up to ``ef_max``, builds with the
    pools at ``build_threads``, ``repeats`` timing windows and ``warmup`` untimed single queries."""

    k: int = 10
    n_queries: int = 1000
    ef_max: int = 512
    build_threads: int = 2
    insert_chunk: int = 10_000
    repeats: int = 3
    warmup: int = 50
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        check_positive_int("k", self.k)
        check_positive_int("n_queries", self.n_queries)
        check_positive_int("ef_max", self.ef_max, minimum=self.k, maximum=MAX_EF)
        check_positive_int("build_threads", self.build_threads)
        check_positive_int("insert_chunk", self.insert_chunk)
        check_positive_int("repeats", self.repeats)
        check_positive_int("warmup", self.warmup, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (part of every evaluation's fingerprint but ``timeout_s``)."""
        return {"k": self.k, "n_queries": self.n_queries, "ef_max": self.ef_max, "build_threads": self.build_threads,
                "insert_chunk": self.insert_chunk, "repeats": self.repeats, "warmup": self.warmup}


def find_ef(recall_at: Callable[[int], float], target: float, lo: int, hi: int,
            start: int | None = None) -> tuple[int | None, dict[int, float]]:
    """The smallest integer ef in ``[lo, hi]`` whose recall reaches ``target``, with every probe's recall.

    ``recall_at(ef)`` is called once per probed ef: doubling from ``start`` (default ``lo``) until a hit or ``hi``,
    then bisection between the last miss and the first hit. Returns ``(None, probes)`` when ``hi`` misses."""
    probes: dict[int, float] = {}

    def probe(ef: int) -> bool:
        if ef not in probes:
            probes[ef] = float(recall_at(ef))
        return probes[ef] >= target

    miss, ef = lo - 1, min(hi, max(lo, start or lo))
    if start is not None and start > lo:
        miss = start - 1
    while not probe(ef):
        miss = ef
        if ef >= hi:
            return None, probes
        ef = min(hi, max(ef + 1, 2 * ef))
    hit = ef
    while hit - miss > 1:
        mid = (hit + miss) // 2
        if probe(mid):
            hit = mid
        else:
            miss = mid
    return hit, probes


# ---------------------------------------------------------------------------------------------------- the parent
class TrialData:
    """A dataset's arrays written once to a temporary folder for the trials' children (``.npy``, no pickle):
    base vectors, queries and the true distances of their neighbours. Use as a context manager."""

    def __init__(self, train: np.ndarray, test: np.ndarray, distances: np.ndarray, metric: str,
                 n_queries: int) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="ruvector-lab-tune-")
        self.path = Path(self._folder.name)
        n = min(int(n_queries), len(test))
        np.save(self.path / "train.npy", np.ascontiguousarray(train, dtype=np.float32), allow_pickle=False)
        np.save(self.path / "queries.npy", np.ascontiguousarray(test[:n], dtype=np.float32), allow_pickle=False)
        np.save(self.path / "distances.npy", np.ascontiguousarray(distances[:n], dtype=np.float32),
                allow_pickle=False)
        self.metric = metric
        self.dimensions = int(train.shape[1])
        self.n_train = len(train)
        self.n_queries = n

    def __enter__(self) -> TrialData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the folder."""
        self._folder.cleanup()


def evaluate(data: TrialData, candidate: Candidate, targets: Sequence[float], seed: int,
             settings: TrialSettings, check: dict[float, int] | None = None, timing: bool = True) -> dict[str, Any]:
    """Build ``candidate`` in a child process (insertion order seeded by ``seed``) and measure it at the cheapest
    ef_search reaching each of ``targets``. ``check`` (target -> ef) also records recall at a given ef (the
    verification of another build's answer, as ``recall_at_check``), and times that ef instead of the build's
    own; ``timing=False`` skips QPS and latency. Returns the child's record (see the module docstring); a child that
    crashes, times out or raises is returned as ``{"status": "failed", "reason": ...}``, never raised: one bad
    configuration must not end a study."""
    spec = {"candidate": candidate.to_dict(), "targets": [float(t) for t in targets], "seed": int(seed),
            "check": {str(float(t)): int(e) for t, e in (check or {}).items()}, "timing": bool(timing)}
    return _run_child(data, spec, settings, f"trial {candidate.label}")


def _run_child(data: TrialData, spec: dict[str, Any], settings: TrialSettings, what: str) -> dict[str, Any]:
    """Run ``python -m ruvector_lab.bench.trial`` on ``spec`` (plus the data and settings) and return its record,
    with ``wall_s``; a crash, a timeout or a raised error comes back as ``{"status": "failed", "reason": ...}``."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ruvector-lab-trial-") as folder:
        work = Path(folder)
        spec = {**spec, "data": str(data.path), "metric": data.metric, "settings": settings.to_dict(),
                "result": str(work / "result.json")}
        (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env["RAYON_NUM_THREADS"] = str(settings.build_threads)
        command = [sys.executable, "-P", "-X", "faulthandler", "-m", "ruvector_lab.bench.trial",
                   str(work / "spec.json")]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=settings.timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"{what} timed out after {settings.timeout_s:g} s",
                    "wall_s": time.perf_counter() - started}
        path = work / "result.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        except ValueError:
            record = None
    wall = time.perf_counter() - started
    if done.returncode != 0 or record is None or "error" in record:
        failure = (record or {}).get("error") or {}
        from .memory import _describe_exit, _tail

        reason = (f"{failure['type']}: {failure['message']}" if failure else
                  f"child {_describe_exit(done.returncode)}; stderr: {_tail(done.stderr) or '(empty)'}")
        log.warning("%s failed: %s", what, reason)
        return {"status": "failed", "reason": reason, "wall_s": wall}
    record["wall_s"] = wall
    return record


def _build(config: Any, backend: str, train: np.ndarray, order: np.ndarray, chunk: int) -> tuple[Any, float]:
    """An index of ``train`` inserted in ``order`` (ids are the row numbers), and the seconds it took."""
    from .. import HnswIndex

    start = time.perf_counter()
    index = HnswIndex(config, backend=backend)
    for begin in range(0, len(order), chunk):
        rows = order[begin : begin + chunk]
        index.insert_batch([str(i) for i in rows.tolist()], train[rows])
    return index, time.perf_counter() - start


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("mode") == "head-to-head":
        return _child_head_to_head(spec)
    from . import env
    from .memory import _peak, _reset_peak, _trim, _warm_up
    from .metrics import mean_recall, true_distances
    from .runner import ids_matrix, latency, qps_caller_threads
    from .threads import pinned_threads

    settings = TrialSettings(**spec["settings"])
    candidate = Candidate.from_dict(spec["candidate"])
    folder = Path(spec["data"])
    k = settings.k
    with pinned_threads(settings.build_threads):
        probe_config = candidate.config(np.load(folder / "queries.npy", mmap_mode="r").shape[1], spec["metric"])
        _warm_up(probe_config, candidate.backend)
        _trim()
        rss_baseline = env.current_rss_bytes()
        train = np.load(folder / "train.npy", allow_pickle=False)
        queries = np.load(folder / "queries.npy", allow_pickle=False)
        gt = np.load(folder / "distances.npy", allow_pickle=False)
        n = len(train)
        order = np.random.default_rng(int(spec["seed"])).permutation(n)
        _trim()
        rss_before = env.current_rss_bytes()
        peak_reset = _reset_peak()
        index, build_time = _build(probe_config, candidate.backend, train, order, settings.insert_chunk)
        peak, peak_source = _peak()
        _trim()
        rss_after = env.current_rss_bytes()
        serialized = len(index.serialize())
    from .memory import analytic_bytes_per_vector

    try:
        analytic: float | None = float(analytic_bytes_per_vector(candidate.backend, probe_config)["total"])
    except Exception:  # a layout the estimate does not know: the measured figures stand alone
        analytic = None
    growth = (rss_after - rss_before) / n
    record: dict[str, Any] = {
        "status": "ok", "candidate": candidate.to_dict(), "seed": int(spec["seed"]), "n_train": n,
        "n_queries": len(queries), "k": k, "build_time_s": build_time,
        "bytes_per_vector": {"rss_growth": growth, "serialized": serialized / n, "analytic": analytic,
                             "peak_growth": max(0, peak - rss_before) / n,
                             "peak_source": peak_source if peak_reset else f"{peak_source} (whole process)",
                             "rss_baseline_bytes": rss_baseline},
        "targets": {},
    }
    try:
        with pinned_threads(1):
            def recall_at(ef: int) -> float:
                ids = ids_matrix(index.search_batch(queries, k, ef), k)
                return mean_recall(gt, true_distances(queries, train, ids, spec["metric"]), k)

            memo: dict[int, float] = {}

            def remembered(ef: int) -> float:  # every target's search shares the probes already made
                if ef not in memo:
                    memo[ef] = recall_at(ef)
                return memo[ef]

            for target in spec["targets"]:
                ef, probes = find_ef(remembered, target, k, settings.ef_max)
                entry: dict[str, Any] = {"probes": {str(e): r for e, r in sorted(probes.items())}}
                check = spec.get("check", {}).get(str(float(target)))
                if check is not None:  # another build's answer: its recall here, and the timing at it
                    entry["recall_at_check"] = {"ef_search": int(check), "recall": remembered(int(check))}
                    if spec.get("timing", True):
                        qps = qps_caller_threads(index, queries, k, int(check), 1, settings.repeats)
                        lat = latency(index, queries, k, int(check), settings.repeats, settings.warmup)
                        entry["recall_at_check"].update(
                            qps=qps["median"], qps_spread=qps, recall_remeasured=recall_at(int(check)),
                            latency_ms={"p50": lat["p50"], "p95": lat["p95"], "p99": lat["p99"]})
                if ef is None:
                    entry.update(feasible=False, ef_search=None, recall=probes[max(probes)],
                                 reason=f"recall@{k} {probes[max(probes)]:.4f} < {target} at ef_search "
                                        f"{settings.ef_max} (tune.ef_max)")
                elif not spec.get("timing", True) or check is not None:
                    entry.update(feasible=True, ef_search=int(ef), recall=memo[ef])
                else:
                    entry.update(_timed(index, queries, k, ef, target, settings, recall_at, memo, entry))
                record["targets"][str(target)] = entry
    finally:
        index.close()
    return record


def _child_head_to_head(spec: dict[str, Any]) -> dict[str, Any]:
    """Build every entry (seed 0) in this one process, then time 1-thread batch QPS of all of them in alternating
    windows (the order reversed every repeat), so drift and neighbours hit them alike; recall at each one's ef."""
    from .metrics import mean_recall, true_distances
    from .runner import ids_matrix, qps_alternating
    from .threads import pinned_threads

    settings = TrialSettings(**spec["settings"])
    folder = Path(spec["data"])
    train = np.load(folder / "train.npy", allow_pickle=False)
    queries = np.load(folder / "queries.npy", allow_pickle=False)
    gt = np.load(folder / "distances.npy", allow_pickle=False)
    order = np.random.default_rng(0).permutation(len(train))
    k = settings.k
    indexes: dict[str, tuple[Any, int]] = {}
    out: dict[str, Any] = {}
    try:
        for entry in spec["entries"]:
            cand = Candidate.from_dict(entry["candidate"])
            ef = int(entry["ef_search"])
            with pinned_threads(settings.build_threads):
                index, _ = _build(cand.config(train.shape[1], spec["metric"]), cand.backend, train, order,
                                  settings.insert_chunk)
            indexes[cand.label] = (index, ef)
            with pinned_threads(1):
                ids = ids_matrix(index.search_batch(queries, k, ef), k)
            out[cand.label] = {"candidate": cand.to_dict(), "ef_search": ef,
                               "recall": mean_recall(gt, true_distances(queries, train, ids, spec["metric"]), k)}
        funcs = {label: (lambda q, index=index, ef=ef: index.search_batch(q, k, ef))
                 for label, (index, ef) in indexes.items()}
        for label, figure in qps_alternating(funcs, queries, int(spec["repeats"])).items():
            out[label]["qps"] = figure["median"]
            out[label]["qps_spread"] = figure
    finally:
        for index, _ in indexes.values():
            index.close()
    return {"status": "ok", "mode": "head-to-head", "entries": out}


def head_to_head(data: TrialData, entries: Sequence[tuple[Candidate, int]], settings: TrialSettings,
                 repeats: int = 7) -> dict[str, Any]:
    """1-thread batch QPS of several configurations (each at its ef_search) built and timed in one child process,
    in alternating windows: the fair comparison of figures that separate trials measured at different moments.
    Returns ``{"status": "ok", "entries": {label: {candidate, ef_search, recall, qps, qps_spread}}}``, or a
    failure record as :func:`evaluate` does."""
    spec = {"mode": "head-to-head", "entries": [{"candidate": c.to_dict(), "ef_search": int(ef)} for c, ef in entries],
            "repeats": int(repeats)}
    return _run_child(data, spec, settings, "head-to-head of " + ", ".join(c.label for c, _ in entries))


def _timed(index: Any, queries: np.ndarray, k: int, ef: int, target: float, settings: TrialSettings,
           recall_at: Callable[[int], float], memo: dict[int, float], entry: dict[str, Any]) -> dict[str, Any]:
    """QPS and latency at ``ef``, then recall re-measured there; a re-measure below the target (a search that is
    not deterministic) moves the search upward from there and times the new ef instead."""
    from .runner import latency, qps_caller_threads

    while True:
        qps = qps_caller_threads(index, queries, k, ef, 1, settings.repeats)
        lat = latency(index, queries, k, ef, settings.repeats, settings.warmup)
        again = recall_at(ef)
        if again >= target:
            return {"feasible": True, "ef_search": int(ef), "recall": memo.get(ef, again),
                    "recall_remeasured": again, "qps": qps["median"], "qps_spread": qps,
                    "latency_ms": {"p50": lat["p50"], "p95": lat["p95"], "p99": lat["p99"]}}
        moved, more = find_ef(recall_at, target, ef, settings.ef_max, start=ef + 1) if ef < settings.ef_max \
            else (None, {})
        entry["probes"].update({str(e): r for e, r in more.items()})
        entry.setdefault("remeasure_moved", []).append({"from": int(ef), "to": moved, "recall_remeasured": again})
        if moved is None:
            return {"feasible": False, "ef_search": None, "recall": again,
                    "reason": f"recall@{k} re-measured {again:.4f} < {target}, and not reached up to ef_search "
                              f"{settings.ef_max}"}
        ef = moved


def main(argv: list[str] | None = None) -> int:
    """Child entry point: ``python -m ruvector_lab.bench.trial SPEC.json`` (written by :func:`evaluate`)."""
    from .memory import _write_json

    parser = argparse.ArgumentParser(description="One autotuner trial (internal).")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    result = Path(spec["result"])
    try:
        record = _child(spec)
    except Exception as exc:  # reported to the parent, which records the trial as failed with this reason
        import traceback

        traceback.print_exc()
        _write_json(result, {"error": {"type": type(exc).__name__, "message": str(exc)}})
        return _EXIT_RAISED
    _write_json(result, record)
    return 0


def check_targets(targets: Sequence[float]) -> tuple[float, ...]:
    """Recall targets as floats in (0, 1]; anything else raises :class:`InvalidParameterError`."""
    out = []
    for target in targets:
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0 < float(target) <= 1:
            raise InvalidParameterError(f"a recall target must be a number in (0, 1], got {target!r}")
        out.append(float(target))
    if not out:
        raise InvalidParameterError("no recall target given")
    return tuple(out)


__all__ = ["TrialData", "TrialSettings", "check_targets", "evaluate", "find_ef", "head_to_head"]

if __name__ == "__main__":
    sys.exit(main())
