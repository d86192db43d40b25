"""Synthetic result records of every schema (build@2, query@3, quant@1, adr@1), shaped as the pipeline writes them,
and a small results tree made of them: the inputs of tests/test_bench_schemas.py and tests/test_bench_tables.py
(import as ``from result_records import ...``). Numbers are made up but consistent (a median lies within its
min-max, recall grows with ef_search), so the frames' values can be checked against them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ruvector_lab.bench import results

DATASET = {"name": "syn-200-8", "n_train": 200, "n_test": 12, "dimensions": 8, "metric": "cosine", "gt_k": 20,
           "content_hash": "0123456789abcdef"}
REFERENCE = {"before_s": 0.050, "after_s": 0.053, "drift": 0.06, "workload": "a fixed sort, one thread"}
TIERS = {"faiss": "native", "hnswlib": "native", "ruvector": "native", "wasm": "wasm", "numpy": "fallback"}


def spread(*values: float) -> dict[str, Any]:
    """A Spread as the runner writes it."""
    med = float(np.median(values))
    lo, hi = float(min(values)), float(max(values))
    return {"median": med, "min": lo, "max": hi, "rel_spread": (hi - lo) / med if med else 0.0,
            "values": [float(v) for v in values]}


def pools(n: int) -> dict[str, Any]:
    """A pinned-pools report with every pool at ``n``."""
    return {"threads": n, "faiss_omp": n, "openmp": [n], "blas": [n, n], "library_pools": n, "ruvector_rayon": 2}


def _base(schema: str, backend: str, m: int, efc: int, quantization: str, dataset: dict[str, Any]) -> dict[str, Any]:
    return {"schema": schema, "status": "ok", "fingerprint": "feedfacecafebeef", "dataset": dict(dataset),
            "backend": backend, "tier": TIERS.get(backend, "native"),
            "build": {"m": m, "ef_construction": efc, "quantization": quantization},
            "environment": {"cpu_model": "Synthetic CPU", "cores_usable": 2, "cores_total": 4,
                            "memory_bytes": 8 * 2**30, "python": "3.11.0", "libraries": {"numpy": "2.0"}}}


def build_record(backend: str = "hnswlib", m: int = 8, efc: int = 40, quantization: str = "none",
                 graph: str = "hnsw", times: tuple[float, ...] = (1.0, 1.3, 1.1), status: str = "ok",
                 reason: str = "", dataset: dict[str, Any] = DATASET, drift: float | None = 0.06) -> dict[str, Any]:
    """A build@2 record; ``status`` 'not available' or 'skipped' gives the absent shape with ``reason``."""
    rec = _base(results.SCHEMA_BUILD, backend, m, efc, quantization, dataset)
    if status != "ok":
        return rec | {"status": status, "reason": reason or f"{status}: synthetic", "fingerprint": ""}
    n = dataset["n_train"]
    builds = [{"seed": i, "order": "seeded permutation", "build_time_s": t, "inserts_per_s": n / t,
               "cpu_utilization": 1.5 + 0.1 * i, "threads": pools(2), "serialized_bytes": 64 * n,
               "serialize_time_s": 0.01} for i, t in enumerate(times)]
    med = spread(*times)
    return rec | {
        "graph": graph, "config": {"dimensions": dataset["dimensions"], "m": m, "ef_construction": efc,
                                   "ef_search": 50, "metric": dataset["metric"]},
        "builds": builds, "median_build": int(np.argsort(times)[(len(times) - 1) // 2]), "build_time_s": med,
        "inserts_per_s": n / med["median"], "threads": pools(2), "serialized_bytes": 64 * n,
        "bytes_per_vector": {"serialized": 64.0, "analytic": {"vectors": 32.0, "graph": 20.0, "ids": 8.0,
                                                              "other": 1.0, "total": 61.0},
                             "rss_growth": 70.5, "child": {"peak_rss_bytes": 123456789, "rss_growth_per_vector": 70.5}},
        "reference": {**REFERENCE, "drift": drift}, "noisy": ["build_time_s"] if med["rel_spread"] > 0.2 else [],
        "noise_threshold": 0.2, "peak_rss_bytes": 400_000_000}


def query_record(backend: str = "hnswlib", ef: int = 40, recall: float = 0.9, qps: tuple[float, ...] = (1000.0,),
                 m: int = 8, efc: int = 40, quantization: str = "none", graph: str = "hnsw", k: int = 10,
                 pool2: float | None = 1800.0, qps2: float | None = 1900.0, p50_spread: float = 0.0,
                 direct: tuple[float, float] | None = (0.45, 1100.0),
                 dataset: dict[str, Any] = DATASET) -> dict[str, Any]:
    """A query@3 record of one ef_search: recall@10 ``recall`` for the median build (the others 0.01 either side),
    1-thread QPS over builds ``qps``, 2-thread QPS in both modes (None: not measured), and the library called
    directly: ``direct`` = (its p50 ms, its 1-thread QPS) beside the facade's 0.5 ms and median ``qps``, or None."""
    rec = _base(results.SCHEMA_QUERY, backend, m, efc, quantization, dataset)
    n_builds = len(qps)
    recalls = [recall] if n_builds == 1 else [recall - 0.01, recall, recall + 0.01][:n_builds]
    median = recalls.index(recall)
    files = [f"perquery/query-ef{ef}-k{k}-b{i}.h5" for i in range(n_builds)]
    one = spread(*qps) | {"cpu_utilization": 1.0, "pools": pools(1), "over": "builds"}
    by_threads = {"1": one}
    if qps2 is not None:
        by_threads["2"] = spread(qps2) | {"cpu_utilization": 1.9, "pools": pools(1), "over": "timing repeats"}
    bins = [{"bin": b, "difficulty_min": 1.0 + b, "difficulty_max": 1.5 + b, "n_queries": 2, "mean_recall": recall,
             "p5_recall": recall - 0.1, "n_nan_excluded": 2} for b in range(5)]
    return rec | {
        "graph": graph,
        "query": {"ef_search": ef, "k": k, "n_queries": 12, "n_queries_requested": 12, "k_big": 20,
                  "ef_effective": max(ef, k) if graph == "hnsw" else None,
                  "ef_effective_big": max(ef, 20) if graph == "hnsw" else None},
        "recall": {"1": min(1.0, recall + 0.05), str(k): recall, "20": recall - 0.02},
        "recall_strict": {str(k): recall - 0.005},
        "recall_builds": {"1": spread(*[min(1.0, r + 0.05) for r in recalls]), str(k): spread(*recalls),
                          "20": spread(*[r - 0.02 for r in recalls])},
        "perquery": {"k": k, "n_queries": 12, "recall_strict_mean": recall - 0.005, "recall_tolerant_mean": recall,
                     "recall_tolerant": {"n": 12, "mean": recall, "min": recall - 0.3, "p1": recall - 0.25,
                                         "p5": recall - 0.2, "p50": min(1.0, recall + 0.05),
                                         "share_below_0.5": 0.0},
                     "recall_strict": {"mean": recall - 0.005}, "percentile_method": "linear",
                     "difficulty": {"lid": {"direction": "higher is harder", "n_nan": 2, "bins": bins},
                                    "rc": {"direction": "lower is harder", "n_nan": 2, "bins": bins}}},
        "perquery_file": files[median],
        "latency_ms": {"p50": 0.5, "p95": 0.8, "p99": 1.0, "mean": 0.55, "count": 12, "cpu_utilization": 1.0,
                       "spread": {"p50": spread(0.5, 0.5 * (1 + p50_spread)), "p99": spread(1.0)}},
        "direct": None if direct is None else {
            "latency_ms": {"facade": {"p50": 0.5, "p95": 0.8, "p99": 1.0, "mean": 0.55, "count": 12},
                           "direct": {"p50": direct[0], "p95": 0.75, "p99": 0.95, "mean": direct[0] + 0.05,
                                      "count": 12}},
            "qps": {"facade": spread(one["median"]) | {"cpu_utilization": 1.0},
                    "direct": spread(direct[1]) | {"cpu_utilization": 1.0}},
            "overhead": {"latency_p50": 0.5 / direct[0], "qps": direct[1] / one["median"]}},
        "qps": by_threads,
        "qps_pool": {"2": spread(pool2) | {"cpu_utilization": 1.95, "pools": pools(2), "over": "timing repeats"}}
        if pool2 is not None else {},
        "builds": [{"seed": i, "recall": {"1": min(1.0, r + 0.05), str(k): r, "20": r - 0.02},
                    "recall_strict": {str(k): r - 0.005}, "qps_1t": q, "perquery_file": f}
                   for i, (r, q, f) in enumerate(zip(recalls, qps, files, strict=True))],
        "median_build": median, "repeats": 1, "warmup": 2, "noisy": sorted(
            [f"qps_{t}t" for t, s in by_threads.items() if s["rel_spread"] > 0.2]
            + (["latency_p50"] if spread(0.5, 0.5 * (1 + p50_spread))["rel_spread"] > 0.2 else [])),
        "noise_threshold": 0.2, "reference": dict(REFERENCE), "peak_rss_bytes": 400_000_000,
        "parallelism": {"qps": "caller threads", "qps_pool": "library pool", "latency_ms": "one caller"}}


def quant_record(spec: str = "scalar", kind: str | None = None, rerank: tuple[tuple[int, float, float], ...] =
                 ((1, 0.90, 5000.0), (4, 0.99, 3000.0)), status: str = "ok",
                 dataset: dict[str, Any] = DATASET) -> dict[str, Any]:
    """A quant@1 record: ``rerank`` is (factor, recall@10, qps) per factor."""
    base = {"schema": results.SCHEMA_QUANT, "dataset": dict(dataset), "spec": spec, "fingerprint": "0badc0de"}
    if status != "ok":
        return base | {"status": status, "reason": f"QuantizationError: {spec} is synthetic"}
    d = dataset["dimensions"]
    return base | {
        "status": "ok", "codec": {"kind": kind or spec.split("-")[0], "m": 8, "bits": 8, "seed": 0},
        "code_bytes": d, "codebook_bytes": 0, "bytes_per_vector": float(d), "compression": 4.0,
        "train_time_s": 0.01, "encode_per_s": 1e6, "quantize_single_ms": {"p50": 0.01, "p95": 0.02, "p99": 0.03,
                                                                         "mean": 0.012},
        "reconstruction_mse": 1e-4, "n_queries": 12, "k": 10, "threads": {"threads": 1},
        "rerank": [{"factor": f, "candidates": 10 * f, "recall_at_1": min(1.0, r + 0.05), "recall_at_10": r,
                    "qps": q} for f, r, q in rerank]}


def _protocols(adr_ms: float, honest_ms: float, verdict: str) -> dict[str, Any]:
    def one(judged: float) -> dict[str, Any]:
        return {"iterations": 20, "latency_ms": {"p50": judged * 0.9, "p95": judged, "p99": judged * 1.1,
                                                 "mean": judged}, "judged_ms": judged, "verdict": verdict}

    return {"adr": one(adr_ms), "honest": one(honest_ms)}


def adr_record(backend: str, status: str = "ok") -> dict[str, Any]:
    """An adr@1 record: 'common' (distance, embed_single not available, quantize) or a backend (insert, search with
    recall, a pattern match that replaces the common one); ``status`` 'not available' gives the absent shape."""
    base = {"schema": results.SCHEMA_ADR, "backend": backend, "config": {"m": 8, "seed": 7}}
    if status != "ok":
        return base | {"status": status, "reason": f"{backend} is not installed here", "cases": {}}
    if backend == "common":
        cases = {"distance": {"status": "ok", "scope": "common", "protocols": _protocols(0.01, 0.02, "no target")},
                 "embed_single": {"status": "not available", "scope": "common", "reason": "no model files"},
                 "pattern_match": {"status": "ok", "scope": "common", "info": {"method": "exact", "patterns": 50},
                                   "protocols": _protocols(5.0, 6.0, "pass")},
                 "quantize": {"status": "ok", "scope": "common", "info": {"kind": "scalar"},
                              "protocols": _protocols(0.05, 0.06, "pass")}}
        return base | {"status": "ok", "cases": cases, "threads": {"threads": 1}}
    cases = {"hnsw_insert": {"status": "ok", "scope": "backend", "protocols": _protocols(0.3, 0.5, "no target")},
             "hnsw_search_k10": {"status": "ok", "scope": "backend", "recall_at_10": 0.42,
                                 "info": {"config": {"m": 8}, "graph": "hnsw"},
                                 "protocols": _protocols(0.2, 2.5, "fail")},
             "pattern_match": {"status": "ok", "scope": "backend", "protocols": _protocols(0.1, 0.2, "pass")}}
    return base | {"status": "ok", "tier": TIERS.get(backend, "native"), "cases": cases, "threads": {"threads": 1}}


#: what :func:`write_tree` writes: (dataset, backend, build key) -> the query settings' (ef, recall@10, qps)
SWEEP = {("hnswlib", "M8-efc40-none"): [(10, 0.70, (3000.0, 2000.0, 2600.0)), (40, 0.92, (1500.0, 1400.0, 1450.0)),
                                        (160, 0.99, (600.0, 590.0, 610.0))],
         ("numpy", "M8-efc40-none"): [(10, 1.0, (200.0,))]}


def write_tree(root: Path) -> Path:
    """A small results tree: a graph backend built three times with three ef_search settings, an exact backend,
    a build skipped by the time budget, a quantized HNSW build under qhnsw/ (re-rank depth 40), two codec sweeps
    (one not available), the ADR suite (common, one backend, one backend not available), and a query file cut short
    by an interrupted run."""
    name = DATASET["name"]
    runs = root / "runs" / name
    results.write_json(runs / "hnswlib" / "M8-efc40-none" / "build.json", build_record("hnswlib"))
    for ef, recall, qps in SWEEP[("hnswlib", "M8-efc40-none")]:
        results.write_json(runs / "hnswlib" / "M8-efc40-none" / f"query-ef{ef}-k10.json",
                           query_record("hnswlib", ef, recall, qps, p50_spread=0.5 if ef == 10 else 0.0))
    results.write_json(runs / "numpy" / "M8-efc40-none" / "build.json",
                       build_record("numpy", graph="flat", times=(0.02,)))
    results.write_json(runs / "numpy" / "M8-efc40-none" / "query-ef10-k10.json",
                       query_record("numpy", 10, 1.0, (200.0,), graph="flat", pool2=None))
    results.write_json(runs / "wasm" / "M8-efc40-none" / "build.json",
                       build_record("wasm", status="skipped", reason="skipped: 200 base vectors exceed the budget"))
    qh = root / "qhnsw" / name / "runs" / name / "faiss" / "M8-efc40-scalar-r40"
    results.write_json(qh / "build.json", build_record("faiss", quantization="scalar-r40", times=(0.5, 0.6, 0.55)))
    results.write_json(qh / "query-ef10-k10.json",
                       query_record("faiss", 10, 0.95, (800.0, 810.0, 790.0), quantization="scalar-r40"))
    results.write_json(root / "quant" / name / "scalar.json", quant_record("scalar"))
    results.write_json(root / "quant" / name / "binary.json", quant_record("binary", status="not available"))
    for backend, status in (("common", "ok"), ("faiss", "ok"), ("wasm", "not available")):
        results.write_json(root / "adr" / f"{backend}.json", adr_record(backend, status))
    (runs / "hnswlib" / "M8-efc40-none" / "query-ef320-k10.json").write_text('{"schema": "ruvector-lab/query@3", "st')
    return root
