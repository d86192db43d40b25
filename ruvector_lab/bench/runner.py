"""Build once, query many: one index per (dataset, backend, build parameters), then a sweep of query parameters.

Build parameters (M, ef_construction, quantization) are separate from query parameters (ef_search), as in
ann-benchmarks, so one built index serves the whole sweep. Each build and each query setting is stored as its own
JSON (see :mod:`ruvector_lab.bench.results`); a finished one with the same parameters and code is not repeated
unless ``force`` is set. Builds and queries run in one process because not every backend can serialize its graph
(ruvector rebuilds on load), so a reload would measure a different thing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from ..index import HnswIndex
from ..runtime import Runtime
from ..types import HnswConfig
from . import env, results
from .hdf5 import Dataset
from .metrics import mean_recall, spread, true_distances
from .threads import pinned_threads
from .timer import Stopwatch, summarize, time_calls

log = logging.getLogger(__name__)

#: a batch-QPS measurement repeats whole passes over the queries for at least this long
MIN_QPS_SECONDS = 0.2


@dataclass(frozen=True)
class BuildParams:
    """What an index is built with; ``quantization`` is 'none' or a codec spec ('scalar', 'product-m48', ...)."""

    m: int = 16
    ef_construction: int = 100
    quantization: str = "none"

    @property
    def key(self) -> str:
        """The folder name of this build's results."""
        return results.build_key(self.m, self.ef_construction, self.quantization)


@dataclass(frozen=True)
class RunSettings:
    """How carefully to measure: query count, repeats, warm-up, thread counts, insert chunk, forcing."""

    n_queries: int = 1000
    repeats: int = 3
    warmup: int = 50
    threads: tuple[int, ...] = (1, 2)
    build_threads: int = 2
    insert_chunk: int = 10_000
    k: int = 10
    force: bool = False
    #: repeats for exact (flat) backends, whose scans are slow and steady; None: the same as ``repeats``
    flat_repeats: int | None = None
    #: backend -> largest base set it is measured on (an exact scan on a slow tier can exceed the time budget)
    max_train: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the parts that change a measurement go into the fingerprint)."""
        out = dataclasses.asdict(self)
        out.pop("force")
        out.pop("max_train")
        out["threads"] = list(self.threads)
        return out


@dataclass
class Outcome:
    """What :func:`run_build` did: the files it wrote, the runs it skipped, and why a build was unavailable."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    unavailable: str | None = None


def split_spec(spec: str) -> tuple[str, int | None, int]:
    """``'product-m48-r40'`` -> ``('product', 48, 40)``: kind, PQ subspaces (None: default) and re-rank count."""
    kind, *parts = spec.split("-")
    m, rerank = None, 0
    for part in parts:
        if part[:1] == "m" and part[1:].isdigit():
            m = int(part[1:])
        elif part[:1] == "r" and part[1:].isdigit():
            rerank = int(part[1:])
        else:
            raise InvalidParameterError(f"quantization spec {spec!r}: expected kind[-m<M>][-r<R>], got part {part!r}")
    return kind, m, rerank


def parse_quantization(spec: str, dimensions: int) -> Any:
    """A QuantizationConfig for ``spec``: 'scalar', 'int4', 'binary', 'rabitq', 'product' (m = d/8) or
    'product-m48' (a '-r<R>' suffix, the HNSW re-rank count, is ignored here). Raises ImportError when the
    quantization package is absent, InvalidParameterError for a bad spec or kind."""
    from ..quantization import QuantizationConfig

    kind, m, _ = split_spec(spec)
    if kind == "product":
        return QuantizationConfig(kind="product", m=m or max(1, dimensions // 8))
    if m is not None:
        raise InvalidParameterError(f"quantization spec {spec!r}: only 'product' takes -m<M>")
    return QuantizationConfig(kind=kind)


def make_config(ds: Dataset, build: BuildParams, ef_search: int = 50) -> HnswConfig:
    """The HnswConfig of a build; a quantized build ('scalar-r40': scalar codes, 40 candidates re-scored exactly)
    needs HnswConfig(quantization=...) to exist, else ImportError naming what is missing."""
    kwargs: dict[str, Any] = {"dimensions": ds.dimensions, "m": build.m, "ef_construction": build.ef_construction,
                              "ef_search": ef_search, "metric": ds.metric}
    if build.quantization != "none":
        names = {f.name for f in dataclasses.fields(HnswConfig)}
        if "quantization" not in names:
            raise ImportError("HnswConfig has no 'quantization' field in this version of ruvector-lab")
        kwargs["quantization"] = parse_quantization(build.quantization, ds.dimensions)
        kwargs["rerank"] = split_spec(build.quantization)[2]
    return HnswConfig(**kwargs)


def _ids_matrix(rows: Sequence[Sequence[Any]], k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        labels = [int(r.id) for r in row[:k]]
        out[i, : len(labels)] = labels
    return out


def _batch_qps(index: HnswIndex, queries: np.ndarray, k: int, ef: int, threads: int, repeats: int) -> dict[str, Any]:
    """Queries per second of search_batch with the batch split across ``threads`` caller threads."""
    chunks = [c for c in np.array_split(queries, threads) if len(c)]
    values = []
    with pinned_threads(1), ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda c: index.search_batch(c[:8], k, ef), chunks))  # warm the workers and caches
        for _ in range(repeats):
            # whole passes until MIN_QPS_SECONDS have gone by, so a fast index is not timed over a few ms
            done, start = 0, time.perf_counter()
            while True:
                list(pool.map(lambda c: index.search_batch(c, k, ef), chunks))
                done += len(queries)
                elapsed = time.perf_counter() - start
                if elapsed >= MIN_QPS_SECONDS:
                    break
            values.append(done / elapsed)
    return spread(values).to_dict()


def _latency(index: HnswIndex, queries: np.ndarray, k: int, ef: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Single-query latency percentiles: median over repeats, with the spread of p50 and p99."""
    reps = []
    with pinned_threads(1):
        for rep in range(repeats):
            samples = time_calls(lambda q: index.search(q, k, ef), list(queries), warmup=warmup if rep == 0 else 5)
            reps.append(summarize(samples))
    return {
        "p50": float(np.median([r.p50_ms for r in reps])),
        "p95": float(np.median([r.p95_ms for r in reps])),
        "p99": float(np.median([r.p99_ms for r in reps])),
        "mean": float(np.median([r.mean_ms for r in reps])),
        "count": reps[0].count,
        "spread": {"p50": spread(r.p50_ms for r in reps).to_dict(), "p99": spread(r.p99_ms for r in reps).to_dict()},
    }


def _base_record(ds: Dataset, backend: str, build: BuildParams, schema: str, fp: str) -> dict[str, Any]:
    return {"schema": schema, "status": "ok", "fingerprint": fp, "dataset": ds.describe(), "backend": backend,
            "tier": Runtime.tier_of(backend), "build": dataclasses.asdict(build), "environment": env.environment()}


def unavailable_record(ds: Dataset, backend: str, build: BuildParams, reason: str) -> dict[str, Any]:
    """The build.json of a build that cannot run here: status 'not available' and why."""
    record = _base_record(ds, backend, build, results.SCHEMA_BUILD, "")
    record.update(status="not available", reason=reason)
    return record


def run_build(
    ds: Dataset,
    backend: str,
    build: BuildParams,
    ef_searches: Sequence[int],
    settings: RunSettings,
    root: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
) -> Outcome:
    """Build one index and run its query sweep, writing build.json and one query JSON per ef_search.

    An unavailable backend or quantization is recorded as such (no numbers). Exact (flat) backends ignore
    ef_search, so they run only the first value. ``progress(step, done, total)`` reports inserts and queries.
    """
    if ds.neighbors is None or ds.distances is None:
        raise InvalidParameterError(f"dataset {ds.name!r} has no ground truth; run the groundtruth stage first")
    if not ef_searches:
        raise InvalidParameterError("ef_searches is empty")
    outcome = Outcome()
    directory = results.run_dir(root, ds.name, backend, build.key)
    build_path = directory / "build.json"
    available = Runtime.available()
    if backend not in available:  # a typo, not an absent capability
        raise InvalidParameterError(f"unknown backend {backend!r}; known: {', '.join(available)}")
    ok = available[backend]
    reason = None if ok is True else str(ok)
    config = None
    if reason is None:
        try:
            config = make_config(ds, build)
            Runtime.require(backend).for_config(config)
        except Exception as exc:  # absent capability: recorded, never faked
            reason = f"{type(exc).__name__}: {exc}"
    cap = settings.max_train.get(backend)
    if reason is None and cap is not None and len(ds.train) > cap:
        outcome.unavailable = (f"skipped: {len(ds.train)} base vectors exceed bench.max_train.{backend} = {cap} "
                               "(the time budget of the default pipeline); raise it to measure")
        record = unavailable_record(ds, backend, build, outcome.unavailable)
        record["status"] = "skipped"
        results.write_json(build_path, record)
        outcome.written.append(build_path)
        return outcome
    if reason is not None or config is None:
        outcome.unavailable = reason
        results.write_json(build_path, unavailable_record(ds, backend, build, reason or "unavailable"))
        outcome.written.append(build_path)
        log.info("%s/%s/%s not available: %s", ds.name, backend, build.key, reason)
        return outcome

    graph = Runtime.require(backend).graph
    efs = list(ef_searches) if graph == "hnsw" else list(ef_searches)[:1]
    n_queries = min(settings.n_queries, len(ds.test))
    base_params = {"dataset": ds.describe(), "backend": backend, "build": dataclasses.asdict(build),
                   "settings": settings.to_dict()}
    code = results.measured_code_hash(backend, quantized=build.quantization != "none")
    build_fp = results.fingerprint(base_params, code)
    todo = []
    for ef in efs:
        path = results.query_file(directory, ef, settings.k)
        fp = results.fingerprint({**base_params, "ef_search": ef}, code)
        if not settings.force and results.is_done(path, fp) and results.is_done(build_path, build_fp):
            outcome.skipped.append(path)
        else:
            todo.append((ef, path, fp))
    if not todo:
        return outcome

    # ---- build
    n = len(ds.train)
    ids = [str(i) for i in range(n)]
    rss_before = env.current_rss_bytes()
    index = HnswIndex(config, backend=backend)
    with pinned_threads(settings.build_threads) as pinned, Stopwatch() as sw:
        for start in range(0, n, settings.insert_chunk):
            stop = min(n, start + settings.insert_chunk)
            index.insert_batch(ids[start:stop], ds.train[start:stop])
            if progress:
                progress("insert", stop, n)
    with Stopwatch() as ser:
        blob = index.serialize()
    record = _base_record(ds, backend, build, results.SCHEMA_BUILD, build_fp)
    record.update(graph=graph, threads=pinned, build_time_s=sw.seconds, inserts_per_s=n / sw.seconds if sw.seconds
                  else None, serialized_bytes=len(blob), bytes_per_vector=len(blob) / n, serialize_time_s=ser.seconds,
                  rss_before_bytes=rss_before, rss_after_bytes=env.current_rss_bytes(),
                  peak_rss_bytes=env.peak_rss_bytes(), config=config.to_dict() if hasattr(config, "to_dict") else None)
    del blob
    results.write_json(build_path, record)
    outcome.written.append(build_path)

    # ---- query sweep
    queries = ds.test[:n_queries]
    gt = ds.distances[:n_queries]
    k_big = min(100, ds.distances.shape[1], n)
    repeats = settings.repeats if graph == "hnsw" or settings.flat_repeats is None else settings.flat_repeats
    for step, (ef, path, fp) in enumerate(todo):
        with pinned_threads(1):
            hits = index.search_batch(queries, settings.k, ef)
            run_d = true_distances(queries, ds.train, _ids_matrix(hits, settings.k), ds.metric)
            hits_big = index.search_batch(queries, k_big, max(ef, k_big))
            run_big = true_distances(queries, ds.train, _ids_matrix(hits_big, k_big), ds.metric)
        recall = {"1": mean_recall(gt, run_d, 1), str(settings.k): mean_recall(gt, run_d, settings.k),
                  str(k_big): mean_recall(gt, run_big, k_big)}
        latency = _latency(index, queries, settings.k, ef, repeats, settings.warmup)
        qps = {str(t): _batch_qps(index, queries, settings.k, ef, t, repeats) for t in settings.threads}
        query_record = _base_record(ds, backend, build, results.SCHEMA_QUERY, fp)
        query_record.update(graph=graph, query={"ef_search": ef, "k": settings.k, "n_queries": n_queries},
                            recall=recall, latency_ms=latency, qps=qps, repeats=repeats,
                            warmup=settings.warmup, peak_rss_bytes=env.peak_rss_bytes(),
                            parallelism="batch split across caller threads; library pools pinned to 1 each")
        results.write_json(path, query_record)
        outcome.written.append(path)
        if progress:
            progress("query", step + 1, len(todo))
    index.close()
    return outcome
