"""What the Dask executor buys on this machine: exact ground truth and a build matrix, local vs N worker processes.

    python -m ruvector_lab.bench.scaleout [--workers 2] [--n 20000] [--gt-n 200000] [--json scaleout.json]

The same work runs twice in one process, in the same order each time: first with the local executor (this process,
one task at a time, the library pools as a local run has them), then on a ``LocalCluster`` of ``workers`` single-
threaded worker processes (pools pinned to one thread each, every build a measuring task alone on its worker). The
work: exact top-100 ground truth of ``gt_queries`` seeded Gaussian queries among ``gt_n`` base rows (a size where
the product, not the task overhead, is the cost), and on a second set of ``n`` rows (its ground truth computed
apart, not timed) a matrix of 8 builds (hnswlib and faiss, M 8/16, ef_construction 64/128, one build each, single-
threaded, swept over ef_search 10 and 40 with 1-thread QPS; no memory child, no thread scaling). The figures are the
wall times of each part both ways and their ratio (cluster / local: 0.5 is perfect on 2 workers), with the cluster's
start-up apart; the run also checks that the two ways agree on every ground-truth id and every recall figure.

Ground truth is a matrix product that a local run already spreads over every core through BLAS, so a cluster of
single-threaded workers cannot halve it; builds pinned to one thread are one core's work each, which the cluster
runs side by side. The ratios say which is which on the machine at hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import env, results
from .executor import ExecutorSettings, open_executor
from .groundtruth import knn_ground_truth, knn_ground_truth_on
from .hdf5 import Dataset, write_hdf5
from .matrix import build_jobs, run_builds
from .runner import BuildParams, RunSettings

log = logging.getLogger(__name__)

#: the build matrix: 2 backends x 2 M x 2 ef_construction = 8 builds
BACKENDS = ("hnswlib", "faiss")
MS = (8, 16)
EF_CONSTRUCTIONS = (64, 128)
EF_SEARCHES = (10, 40)


def dataset(n: int, dimensions: int, queries: int, seed: int = 7) -> Dataset:
    """Seeded Gaussian base and query rows, euclidean (ground truth is what the benchmark computes)."""
    rng = np.random.default_rng(seed)
    return Dataset(f"scaleout-{n}x{dimensions}", rng.standard_normal((n, dimensions), dtype=np.float32),
                   rng.standard_normal((queries, dimensions), dtype=np.float32), "euclidean")


def _settings(n_queries: int) -> RunSettings:
    return RunSettings(n_queries=n_queries, repeats=1, warmup=10, threads=(1,), build_threads=1, memory=False,
                       build_repeats=1)


def _recalls(root: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(root.glob("runs/*/*/*/query-*.json")):
        record = json.loads(path.read_text())
        out[path.relative_to(root).as_posix()] = record.get("recall")
    return out


def _run(settings: ExecutorSettings, gt_set: Dataset, gt_path: Path, build_set: Dataset, build_path: Path, k: int,
         root: Path) -> dict[str, Any]:
    """Ground truth of ``gt_set``, then the build matrix on ``build_set``, on one executor: wall times and what
    they produced."""
    start = time.perf_counter()
    with open_executor(settings) as pool:
        ready = time.perf_counter()
        ref = pool.dataset_ref(gt_path, gt_set)
        t0 = time.perf_counter()
        if settings.kind == "local":
            neighbors, _ = knn_ground_truth(gt_set.test, gt_set.train, k, gt_set.metric)
        else:
            neighbors, _ = knn_ground_truth_on(pool, ref, gt_set, k)
        gt_s = time.perf_counter() - t0
        ref = pool.dataset_ref(build_path, build_set)
        builds = [BuildParams(m, efc) for m in MS for efc in EF_CONSTRUCTIONS]
        jobs = build_jobs(ref, BACKENDS, builds, EF_SEARCHES)
        t0 = time.perf_counter()
        outcomes = run_builds(jobs, _settings(min(len(build_set.test), 500)), root / "results", pool)
        build_s = time.perf_counter() - t0
        workers = pool.workers()
    failed = [f"{job.name}: {o.failed or o.unavailable}" for job, o in zip(jobs, outcomes, strict=True)
              if o.failed or o.unavailable]
    return {"executor": settings.describe(), "workers": workers, "startup_s": ready - start,
            "groundtruth_s": gt_s, "builds_s": build_s, "builds": len(jobs), "failed": failed,
            "neighbors": neighbors, "recalls": _recalls(root / "results")}


def measure(workers: int = 2, n: int = 20_000, dimensions: int = 128, queries: int = 1000, gt_n: int = 200_000,
            gt_queries: int = 10_000, k: int = 100) -> dict[str, Any]:
    """Both runs and their ratios (see the module docstring); the record the CLI prints and writes."""
    gt_set = dataset(gt_n, dimensions, gt_queries, seed=11)
    build_set = dataset(n, dimensions, queries)
    build_set.neighbors, build_set.distances = knn_ground_truth(build_set.test, build_set.train, k, "euclidean")
    with tempfile.TemporaryDirectory(prefix="ruvector-lab-scaleout-") as tmp:
        scratch = Path(tmp)
        gt_path = write_hdf5(scratch / "gt.hdf5", gt_set)
        build_path = write_hdf5(scratch / "builds.hdf5", build_set)
        runs = {}
        for settings in (ExecutorSettings("local"), ExecutorSettings("dask", f"local:{workers}")):
            root = scratch / settings.kind
            root.mkdir()
            runs[settings.kind] = _run(settings, gt_set, gt_path, build_set, build_path, k, root)
    local, cluster = runs["local"], runs["dask"]
    same_truth = bool(np.array_equal(local.pop("neighbors"), cluster.pop("neighbors")))
    same_recall = local.pop("recalls") == cluster.pop("recalls")
    ratio = {part: cluster[part] / local[part] for part in ("groundtruth_s", "builds_s")}
    ratio["total"] = (cluster["groundtruth_s"] + cluster["builds_s"]) / (local["groundtruth_s"] + local["builds_s"])
    return {"schema": "ruvector-lab/scaleout@1", "status": "ok",
            "workload": {"n": n, "dimensions": dimensions, "queries": queries, "gt_n": gt_n, "gt_queries": gt_queries,
                         "k": k, "backends": list(BACKENDS), "m": list(MS), "ef_construction": list(EF_CONSTRUCTIONS),
                         "ef_search": list(EF_SEARCHES), "build_threads": 1},
            "local": local, "dask": cluster, "ratio": ratio, "target_ratio": 0.6,
            "same_groundtruth": same_truth, "same_recall": same_recall, "environment": env.environment()}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure, print the table, optionally write the record as JSON."""
    parser = argparse.ArgumentParser(prog="python -m ruvector_lab.bench.scaleout", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n", type=int, default=20_000, help="base rows")
    parser.add_argument("--dimensions", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000, help="queries of the build set")
    parser.add_argument("--gt-n", type=int, default=200_000, help="base rows of the ground-truth set")
    parser.add_argument("--gt-queries", type=int, default=10_000, help="queries of the ground-truth set")
    parser.add_argument("--json", type=Path, help="write the record here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    record = measure(args.workers, args.n, args.dimensions, args.queries, args.gt_n, args.gt_queries)
    local, cluster, ratio = record["local"], record["dask"], record["ratio"]
    print(f"{'part':<14}{'local s':>10}{'dask s':>10}{'ratio':>8}")
    for part, label in (("groundtruth_s", "ground truth"), ("builds_s", f"{local['builds']} builds")):
        print(f"{label:<14}{local[part]:>10.2f}{cluster[part]:>10.2f}{ratio[part]:>8.2f}")
    print(f"{'total':<14}{local['groundtruth_s'] + local['builds_s']:>10.2f}"
          f"{cluster['groundtruth_s'] + cluster['builds_s']:>10.2f}{ratio['total']:>8.2f}")
    print(f"cluster start-up {cluster['startup_s']:.1f} s (apart); {cluster['workers']} workers; same ground truth: "
          f"{record['same_groundtruth']}; same recall: {record['same_recall']}; failed: "
          f"{local['failed'] + cluster['failed'] or 'none'}")
    if args.json:
        results.write_json(args.json, record)
    return 0 if record["same_groundtruth"] and record["same_recall"] and not (local["failed"] or cluster["failed"]) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
