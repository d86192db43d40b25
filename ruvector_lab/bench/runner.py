"""Build once, query many: per (dataset, backend, build parameters), a few independent builds, each swept over the
query parameters.

Build parameters (M, ef_construction, quantization) are separate from query parameters (ef_search), as in
ann-benchmarks, so one built index serves the whole sweep. An HNSW graph depends on the insertion order and the
level draws, so a configuration is built ``build_repeats`` times, each in another seeded insertion order; the
records hold every build's figures, the median with min-max over builds, and the operating points use the median
build. Each build configuration and each query setting is stored as its own JSON (see
:mod:`ruvector_lab.bench.results`), with the returned ids and true distances of every query kept in HDF5 beside
it (:mod:`ruvector_lab.bench.perquery`). A finished one whose fingerprint (parameters, dataset contents, library
versions, measured code) is unchanged is not repeated unless ``force`` is set. Builds and queries run in one
process because not every backend can serialize its graph (ruvector rebuilds on load), so a reload would measure
a different thing; the index's own memory is measured apart, in a fresh child process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import IndexBackend, spec
from ..backends import names as backend_names
from ..errors import InvalidParameterError
from ..index import HnswIndex
from ..runtime import Runtime
from ..types import HnswConfig, SearchBatch
from . import env, perquery, results
from .hdf5 import Dataset
from .metrics import mean_recall, spread, true_distances
from .params import section
from .threads import CpuMeter, pin_worker, pinned_threads, pool_threads
from .timer import Stopwatch, alternating, reference_seconds, summarize

log = logging.getLogger(__name__)

#: a batch-QPS measurement repeats whole passes over the queries for at least this long
MIN_QPS_SECONDS = 0.2

Progress = Callable[[str, int, int], None]


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


def auto_threads(cores: int | None = None) -> tuple[int, ...]:
    """Thread counts for a scaling sweep up to the usable cores: 1, the powers of two below, and the core count."""
    cores = cores or env.usable_cores()
    counts = {1, cores}
    t = 2
    while t < cores:
        counts.add(t)
        t *= 2
    return tuple(sorted(counts))


@dataclass(frozen=True)
class RunSettings:
    """How carefully to measure: query count, timing repeats per build, builds per configuration, warm-up, thread
    counts, insert chunk, memory measurement, the noise threshold and forcing."""

    n_queries: int = 1000
    repeats: int = 3
    warmup: int = 50
    #: thread counts of the scaling sweep (caller threads with pools pinned to 1; one caller with the pool at N)
    threads: tuple[int, ...] = (1, 2)
    build_threads: int = 2
    insert_chunk: int = 10_000
    k: int = 10
    force: bool = False
    #: repeats for exact (flat) backends, whose scans are slow and steady; None: the same as ``repeats``
    flat_repeats: int | None = None
    #: backend -> largest base set it is measured on (an exact scan on a slow tier can exceed the time budget)
    max_train: dict[str, int] = field(default_factory=dict)
    #: independent builds of each graph configuration (seeded insertion orders); flat indexes build once
    build_repeats: int = 1
    #: base sets larger than this build once, whatever ``build_repeats`` says (None: no limit)
    build_repeats_max_train: int | None = None
    #: measure each index's own memory by building it again in a fresh child process
    memory: bool = True
    #: a figure whose relative spread over repeats exceeds this is flagged noisy
    noise_threshold: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the parts that change a measurement go into the fingerprint)."""
        out = dataclasses.asdict(self)
        # the cap only decides the build count, which the fingerprint holds itself (per dataset)
        for key in ("force", "max_train", "noise_threshold", "build_repeats", "build_repeats_max_train"):
            out.pop(key)
        out["threads"] = list(self.threads)
        return out

    def builds_for(self, n_train: int, graph: str) -> int:
        """How many builds a configuration gets: one for flat indexes and for base sets over the cap."""
        if graph != "hnsw":
            return 1
        if self.build_repeats_max_train is not None and n_train > self.build_repeats_max_train:
            return 1
        return max(1, self.build_repeats)


@dataclass
class Outcome:
    """What :func:`run_build` did: the files it wrote, the runs it skipped, why a build was unavailable, and (run
    through an executor) why its task failed."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    unavailable: str | None = None
    failed: str | None = None


def parse_quantization(spec: str, dimensions: int) -> Any:
    """A QuantizationConfig for ``spec`` (grammar: :func:`results.spec_fields`): 'scalar', 'int4', 'binary',
    'rabitq', 'rabitq-b4', 'rabitq-norot', 'product' (m = d/8), 'product-w4' (m = d/4), 'product-m96-b4-opq',
    any with '-gfloat' (the '-r<R>' re-rank count is the HnswConfig's, ignored here). Raises ImportError when
    the quantization package is absent, InvalidParameterError for a bad spec or kind."""
    from ..quantization import QuantizationConfig

    fields = results.spec_fields(spec)
    if (fields.m is not None or fields.width is not None) and fields.kind != "product":
        raise InvalidParameterError(f"quantization spec {spec!r}: only 'product' takes -m<M> or -w<W>")
    m = 8
    if fields.kind == "product":
        width = fields.width or 8
        if fields.m is None and dimensions % width:
            raise InvalidParameterError(f"quantization spec {spec!r}: subspaces {width} wide do not divide "
                                        f"{dimensions} dimensions")
        m = fields.m or max(1, dimensions // width)
    return QuantizationConfig(kind=fields.kind, m=m, bits=fields.bits,  # type: ignore[arg-type]
                              rotation=fields.rotation, graph=fields.graph)  # type: ignore[arg-type]


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
        kwargs["rerank"] = results.split_spec(build.quantization)[2]
    return HnswConfig(**kwargs)


def ids_matrix(rows: Sequence[Sequence[Any]], k: int) -> np.ndarray:
    """The int labels of search results as an ``(m, k)`` matrix, -1 where a row has fewer than ``k``."""
    if isinstance(rows, SearchBatch):
        ids = rows.ids[:, :k]
        found = ids != None  # noqa: E711 - elementwise on an object array
        if not (found[:, 1:] & ~found[:, :-1]).any():  # every row's hits first, padding last: map in one go
            out = np.full((len(ids), k), -1, dtype=np.int64)
            out[:, : ids.shape[1]][found] = np.fromiter(map(int, ids[found]), dtype=np.int64, count=int(found.sum()))
            return out
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        labels = [int(r.id) for r in row[:k]]
        out[i, : len(labels)] = labels
    return out


# ------------------------------------------------------------------------------------------------- timing steps
def _timed_passes(run_pass: Callable[[], None], n_queries: int, repeats: int) -> tuple[list[float], CpuMeter]:
    """QPS of ``repeats`` windows, each of whole passes until MIN_QPS_SECONDS have gone by (so a fast index is
    not timed over a few ms), with the process CPU time over wall time of all windows."""
    values = []
    meter = CpuMeter()
    for _ in range(repeats):
        done = 0
        with meter:
            start = time.perf_counter()
            while True:
                run_pass()
                done += n_queries
                elapsed = time.perf_counter() - start
                if elapsed >= MIN_QPS_SECONDS:
                    break
        values.append(done / elapsed)
    return values, meter


def caller_pool(threads: int, pin: int = 1) -> ThreadPoolExecutor:
    """The caller threads of a batch-QPS measurement: each worker pins its own pools to ``pin`` threads."""
    return ThreadPoolExecutor(max_workers=threads, initializer=pin_worker, initargs=(pin,),
                              thread_name_prefix="ruvector-lab-caller")


def qps_caller_threads(index: HnswIndex, queries: np.ndarray, k: int, ef: int, threads: int,
                       repeats: int) -> dict[str, Any]:
    """Batch QPS with the batch split across ``threads`` caller threads, every library pool pinned to 1 thread
    in each of them (in the worker itself: OpenMP counts are per thread). Returns a Spread dict plus
    ``cpu_utilization`` and ``pools`` (the counts a worker read back)."""
    chunks = [c for c in np.array_split(queries, threads) if len(c)]
    with pinned_threads(1), caller_pool(threads) as pool:
        pools = {"threads": 1, **pool.submit(pool_threads).result()}
        list(pool.map(lambda c: index.search_batch(c[:8], k, ef), chunks))  # warm the workers and caches
        values, meter = _timed_passes(lambda: list(pool.map(lambda c: index.search_batch(c, k, ef), chunks)),
                                      len(queries), repeats)
    return {**spread(values).to_dict(), "cpu_utilization": meter.utilization, "pools": pools}


def qps_library_pool(index: HnswIndex, queries: np.ndarray, k: int, ef: int, threads: int,
                     repeats: int) -> dict[str, Any]:
    """Batch QPS of one caller with the library's own pools at ``threads`` (faiss' OpenMP, BLAS, hnswlib's
    num_threads); a backend without a pool runs single-threaded, which ``cpu_utilization`` shows."""
    with pinned_threads(threads) as pools:
        index.search_batch(queries[:8], k, ef)
        values, meter = _timed_passes(lambda: index.search_batch(queries, k, ef), len(queries), repeats)
    return {**spread(values).to_dict(), "cpu_utilization": meter.utilization, "pools": pools}


def _latency_runs(funcs: dict[str, Callable[[object], object]], queries: np.ndarray, repeats: int,
                  warmup: int) -> dict[str, dict[str, Any]]:
    """Single-query latency of each function (one caller, pools pinned to 1), the queries dealt out in turn
    (:func:`~ruvector_lab.bench.timer.alternating`): percentiles as the median over repeats, with the spread of
    p50 and p99 and the CPU utilisation of the whole measurement."""
    reps: dict[str, list[Any]] = {name: [] for name in funcs}
    meter = CpuMeter()
    with pinned_threads(1):
        for rep in range(repeats):
            with meter:
                samples = alternating(funcs, list(queries), warmup=warmup if rep == 0 else 5)
            for name, times in samples.items():
                reps[name].append(summarize(times))
    return {name: {
        "p50": float(np.median([r.p50_ms for r in runs])),
        "p95": float(np.median([r.p95_ms for r in runs])),
        "p99": float(np.median([r.p99_ms for r in runs])),
        "mean": float(np.median([r.mean_ms for r in runs])),
        "count": runs[0].count,
        "spread": {"p50": spread(r.p50_ms for r in runs).to_dict(), "p99": spread(r.p99_ms for r in runs).to_dict()},
        "cpu_utilization": meter.utilization,
    } for name, runs in reps.items()}


def latency(index: HnswIndex, queries: np.ndarray, k: int, ef: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Single-query latency percentiles of ``index.search`` (one caller, pools pinned to 1): median over repeats,
    with the spread of p50 and p99 and the CPU utilisation."""
    return _latency_runs({"facade": lambda q: index.search(q, k, ef)}, queries, repeats, warmup)["facade"]


def library_direct(index: HnswIndex, queries: np.ndarray, k: int, ef: int, repeats: int, warmup: int,
                   facade_qps: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The facade against its library called directly (the backend's ``direct_search`` and
    ``direct_search_batch``: the same index, parameters and thread): single-query latency of both in one run,
    the queries dealt out alternately, and 1-thread batch QPS in alternating windows. With ``facade_qps`` (the
    index's own 1-thread figure, already measured) only the direct windows are timed and that figure stands for
    the facade's, which saves the pipeline a window per setting.

    Returns ``{"latency_ms": {"facade", "direct"}, "qps": {"facade", "direct"}, "overhead": {"latency_p50",
    "qps"}}`` (overhead: facade p50 / direct p50, and direct QPS / facade QPS: 1.0 is no cost), or None for a
    backend with no library underneath (numpy) or whose search is not the library's alone (quantized, wasm).
    """
    backend = index.raw_backend
    one, batch = backend.direct_search(k, ef), backend.direct_search_batch(k, ef)
    if one is None or batch is None:
        return None
    lat = _latency_runs({"facade": lambda q: index.search(q, k, ef), "direct": one}, queries, repeats, warmup)
    if facade_qps is None:
        qps = qps_alternating({"facade": lambda c: index.search_batch(c, k, ef), "direct": batch}, queries, repeats)
    else:
        qps = {"facade": facade_qps, **qps_alternating({"direct": batch}, queries, repeats)}
    return {
        "latency_ms": lat,
        "qps": qps,
        "overhead": {"latency_p50": lat["facade"]["p50"] / lat["direct"]["p50"],
                     "qps": qps["direct"]["median"] / qps["facade"]["median"]},
    }


def qps_alternating(funcs: dict[str, Callable[[np.ndarray], object]], queries: np.ndarray,
                    repeats: int) -> dict[str, dict[str, Any]]:
    """1-thread batch QPS of each function over the whole query matrix, in one caller thread with every pool
    pinned to 1 (as ``qps["1"]``), in timed windows that alternate between the functions (the order reversed on
    every repeat), so machine drift hits all alike. Returns a Spread dict plus ``cpu_utilization`` each."""
    names = list(funcs)
    values: dict[str, list[float]] = {name: [] for name in names}
    meters = {name: CpuMeter() for name in names}
    with pinned_threads(1), caller_pool(1) as pool:
        for func in funcs.values():
            pool.submit(func, queries[:8]).result()  # warm the worker and caches
        for rep in range(repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                func = funcs[name]
                window, meter = _timed_passes(lambda f=func: pool.submit(f, queries).result(), len(queries), 1)
                values[name] += window
                meters[name].cpu_s += meter.cpu_s
                meters[name].wall_s += meter.wall_s
    return {name: {**spread(values[name]).to_dict(), "cpu_utilization": meters[name].utilization} for name in names}


# ------------------------------------------------------------------------------------------------ run planning
@dataclass
class _Plan:
    """One build configuration's work: where it goes, its fingerprints, which query settings still need a run."""

    ds: Dataset
    backend: str
    build: BuildParams
    config: HnswConfig
    tier: str
    graph: str
    directory: Path
    build_fp: str
    efs: list[int]
    todo: list[tuple[int, Path, str]]
    n_queries: int
    builds: int


def _base_record(ds: Dataset, backend: str, build: BuildParams, schema: str, fp: str) -> dict[str, Any]:
    return {"schema": schema, "status": "ok", "fingerprint": fp, "dataset": ds.describe(), "backend": backend,
            "tier": spec(backend).tier, "build": dataclasses.asdict(build), "environment": env.environment()}


def unavailable_record(ds: Dataset, backend: str, build: BuildParams, reason: str) -> dict[str, Any]:
    """The build.json of a build that cannot run here: status 'not available' and why."""
    record = _base_record(ds, backend, build, results.SCHEMA_BUILD, "")
    record.update(status="not available", reason=reason)
    return record


@dataclass(frozen=True)
class _Resolved:
    """A build this machine can run: its config and the backend class that serves it (resolved once)."""

    config: HnswConfig
    impl: type[IndexBackend]


def _resolve(ds: Dataset, backend: str, build: BuildParams, settings: RunSettings) -> _Resolved | tuple[str, str]:
    """The config and serving class of this build, or (status, reason) when it cannot run here: 'not available'
    (a missing capability) or 'skipped' (the params' time budget)."""
    if backend not in backend_names():  # a typo, not an absent capability
        raise InvalidParameterError(f"unknown backend {backend!r}; known: {', '.join(backend_names())}")
    try:
        config = make_config(ds, build)
        impl = Runtime.serving_class(backend, config)
    except Exception as exc:  # absent capability: recorded, never faked
        return "not available", f"{type(exc).__name__}: {exc}"
    cap = settings.max_train.get(backend)
    if cap is not None and len(ds.train) > cap:
        return "skipped", (f"skipped: {len(ds.train)} base vectors exceed bench.max_train.{backend} = {cap} "
                           "(the time budget of the default pipeline); raise it to measure")
    return _Resolved(config, impl)


def _record_unavailable(ds: Dataset, backend: str, build: BuildParams, status: str, reason: str,
                        root: str | Path) -> Outcome:
    """Write the build.json of a build that cannot run here (status and reason, no numbers)."""
    build_path = results.run_dir(root, ds.name, backend, build.key) / "build.json"
    record = unavailable_record(ds, backend, build, reason)
    record["status"] = status
    results.write_json(build_path, record)
    log.info("%s/%s/%s %s: %s", ds.name, backend, build.key, status, reason)
    return Outcome(written=[build_path], unavailable=reason)


def _plan(ds: Dataset, backend: str, build: BuildParams, resolved: _Resolved, ef_searches: Sequence[int],
          settings: RunSettings, root: str | Path) -> _Plan:
    """Fingerprints of the build and of each query setting, and which settings are not finished yet."""
    graph = resolved.impl.graph
    efs = list(ef_searches) if graph == "hnsw" else list(ef_searches)[:1]
    n_queries = min(settings.n_queries, len(ds.test))
    if settings.n_queries > len(ds.test):
        log.warning("%s has %d queries, fewer than bench.n_queries = %d: measuring all %d (recorded)",
                    ds.name, len(ds.test), settings.n_queries, n_queries)
    builds = settings.builds_for(len(ds.train), graph)
    # dataset.describe() carries the content hash of train, test and ground truth: new vectors, new runs
    base_params = {"dataset": ds.describe(), "backend": backend, "build": dataclasses.asdict(build),
                   "settings": settings.to_dict(), "builds": builds, "schema": results.SCHEMA_QUERY}
    code = results.measured_code_hash(backend, quantized=build.quantization != "none")
    directory = results.run_dir(root, ds.name, backend, build.key)
    build_fp = results.fingerprint({**base_params, "schema": results.SCHEMA_BUILD}, code)
    build_done = results.is_done(directory / "build.json", build_fp)
    todo = []
    for ef in efs:
        path = results.query_file(directory, ef, settings.k)
        fp = results.fingerprint({**base_params, "ef_search": ef}, code)
        if settings.force or not build_done or not results.is_done(path, fp):
            todo.append((ef, path, fp))
    return _Plan(ds, backend, build, resolved.config, spec(backend).tier, graph, directory, build_fp, efs, todo,
                 n_queries, builds)


# ------------------------------------------------------------------------------------------------- the steps
def _build_index(plan: _Plan, seed: int, settings: RunSettings, progress: Progress | None) -> tuple[HnswIndex,
                                                                                                   dict[str, Any]]:
    """One build, inserting the base rows in a seeded random order (ids stay the row numbers)."""
    ds = plan.ds
    n = len(ds.train)
    order = np.random.default_rng(seed).permutation(n)
    index = HnswIndex(plan.config, backend=plan.backend)
    meter = CpuMeter()
    with pinned_threads(settings.build_threads) as pinned, Stopwatch() as sw, meter:
        for start in range(0, n, settings.insert_chunk):
            rows = order[start : start + settings.insert_chunk]
            index.insert_batch([str(i) for i in rows.tolist()], ds.train[rows])
            if progress:
                progress("insert", min(n, start + settings.insert_chunk), n)
    with Stopwatch() as ser:
        serialized = len(index.serialize())
    figures = {"seed": seed, "order": "seeded permutation", "build_time_s": sw.seconds,
               "inserts_per_s": n / sw.seconds if sw.seconds else None, "cpu_utilization": meter.utilization,
               "threads": pinned, "serialized_bytes": serialized, "serialize_time_s": ser.seconds}
    if plan.config.quantization is not None:  # codes, graph and float vectors per vector, stated apart
        figures["index_stats"] = {key: value for key, value in index.stats().extra.items()
                                  if isinstance(value, (str, int, float, bool)) or value is None}
    return index, figures


def _code_scan(index: HnswIndex, plan: _Plan, settings: RunSettings) -> dict[str, Any] | None:
    """Recall of a quantized index's own code scan (every code, no graph, the same scoring and re-ranking:
    :meth:`HnswIndex.scan_codes`), None where the backend has none: beside the ef sweep it tells what the graph
    loses from what the codes lose."""
    if plan.config.quantization is None or not hasattr(index.raw_backend, "scan_codes"):
        return None
    ds, k = plan.ds, settings.k
    queries = ds.test[: plan.n_queries]
    gt_d = ds.distances[: plan.n_queries]
    with pinned_threads(1), Stopwatch() as sw:
        run_ids = ids_matrix(index.scan_codes(queries, k), k)
    run_d = true_distances(queries, ds.train, run_ids, ds.metric)
    return {"recall": {"1": mean_recall(gt_d, run_d, 1), str(k): mean_recall(gt_d, run_d, k)},
            "candidates": max(k, int(plan.config.rerank)), "seconds": sw.seconds}


def _measure_recall_and_qps(index: HnswIndex, plan: _Plan, ef: int, settings: RunSettings, k_big: int,
                            difficulty: dict[str, np.ndarray], perquery_path: Path,
                            recall_big: dict[int, float]) -> dict[str, Any]:
    """What every build gives for one ef_search: recall (tolerant and strict; every query's ids and true
    distances kept in HDF5) and single-thread batch QPS. ``recall_big`` caches recall@k_big of this build by
    the ef that really runs (max(ef, k_big)), so the settings below k_big search once between them."""
    ds, k = plan.ds, settings.k
    queries = ds.test[: plan.n_queries]
    gt_d, gt_i = ds.distances[: plan.n_queries], ds.neighbors[: plan.n_queries]
    ef_big = max(ef, k_big)
    with pinned_threads(1):
        run_ids = ids_matrix(index.search_batch(queries, k, ef), k)
        run_d = true_distances(queries, ds.train, run_ids, ds.metric)
        if ef_big not in recall_big:
            run_big = true_distances(queries, ds.train, ids_matrix(index.search_batch(queries, k_big, ef_big), k_big),
                                     ds.metric)
            recall_big[ef_big] = mean_recall(gt_d, run_big, k_big)
    perquery.write_query_results(perquery_path, run_ids, run_d, None,
                                 {"dataset": ds.name, "backend": plan.backend, "build": plan.build.key,
                                  "ef_search": ef, "k": k})
    repeats = _timing_repeats(plan, settings)
    return {
        "recall": {"1": mean_recall(gt_d, run_d, 1), str(k): mean_recall(gt_d, run_d, k),
                   str(k_big): recall_big[ef_big]},
        "recall_strict": {str(k): float(perquery.strict_recall(gt_i, run_ids, k).mean())},
        "perquery": perquery.summarize_run(gt_i, gt_d, run_ids, run_d, k, difficulty),
        "perquery_file": perquery_path.name,
        "qps": {"1": qps_caller_threads(index, queries, k, ef, 1, repeats)}, "repeats": repeats,
    }


def _measure_latency_and_scaling(index: HnswIndex, plan: _Plan, ef: int, settings: RunSettings,
                                 facade_qps: dict[str, Any]) -> dict[str, Any]:
    """What the median build adds for one ef_search: single-query latency (with the library called directly
    where the backend has a direct call: the facade's latency is then that paired run's facade half, so each
    query is timed once a side), the library's own 1-thread batch QPS beside ``facade_qps`` (this build's), and
    batch QPS at every thread count > 1 in both modes (caller threads; the library's own pool)."""
    queries = plan.ds.test[: plan.n_queries]
    k, repeats = settings.k, _timing_repeats(plan, settings)
    direct = library_direct(index, queries, k, ef, repeats, settings.warmup, facade_qps=facade_qps)
    return {
        "latency_ms": direct["latency_ms"]["facade"] if direct else latency(index, queries, k, ef, repeats,
                                                                            settings.warmup),
        "direct": direct,
        "qps": {str(t): qps_caller_threads(index, queries, k, ef, t, repeats) for t in settings.threads if t > 1},
        "qps_pool": {str(t): qps_library_pool(index, queries, k, ef, t, repeats) for t in settings.threads if t > 1},
    }


def _timing_repeats(plan: _Plan, settings: RunSettings) -> int:
    return settings.repeats if plan.graph == "hnsw" or settings.flat_repeats is None else settings.flat_repeats


def _median_build(per_build: list[dict[int, dict[str, Any]]], k: int) -> int:
    """The build whose mean recall@k over the sweep is the median (the lower middle for an even count)."""
    scores = [np.mean([m["recall"][str(k)] for m in sweep.values()]) for sweep in per_build]
    order = np.argsort(scores, kind="stable")
    return int(order[(len(order) - 1) // 2])


def _flag_noise(figures: dict[str, dict[str, Any]], threshold: float) -> list[str]:
    """Names of the Spread figures whose relative spread exceeds ``threshold``."""
    return sorted(name for name, s in figures.items() if (s.get("rel_spread") or 0.0) > threshold)


def _query_record(plan: _Plan, ef: int, fp: str, settings: RunSettings, k_big: int,
                  sweeps: list[dict[int, dict[str, Any]]], builds: list[dict[str, Any]], median: int,
                  reference: dict[str, Any]) -> dict[str, Any]:
    """The query JSON of one ef_search over every build: the median build's recall and per-query figures,
    median and min-max over builds of recall and QPS, the effective ef, and noise flags."""
    k = settings.k
    runs = [sweep[ef] for sweep in sweeps]
    mid = runs[median]
    record = _base_record(plan.ds, plan.backend, plan.build, results.SCHEMA_QUERY, fp)
    # 1 thread: the median over builds with min-max; more threads: the median build's own timing passes
    qps = {t: (spread(r["qps"]["1"]["median"] for r in runs).to_dict() | {
        "cpu_utilization": float(np.median([r["qps"]["1"]["cpu_utilization"] or 0 for r in runs])),
        "pools": mid["qps"]["1"]["pools"], "over": "builds"}) if t == "1" else fig | {"over": "timing repeats"}
        for t, fig in mid["qps"].items()}
    qps_pool = {t: fig | {"over": "timing repeats"} for t, fig in mid["qps_pool"].items()}
    recall_builds = {key: spread(r["recall"][key] for r in runs).to_dict() for key in mid["recall"]}
    noisy = _flag_noise({f"qps_{t}t": s for t, s in qps.items()} | {f"qps_pool_{t}t": s for t, s in qps_pool.items()}
                        | {"latency_p50": mid["latency_ms"]["spread"]["p50"]}, settings.noise_threshold)
    record.update(
        graph=plan.graph,
        query={"ef_search": ef, "k": k, "n_queries": plan.n_queries, "n_queries_requested": settings.n_queries,
               "k_big": k_big,
               # a graph search needs ef >= k: the libraries raise it silently, so the record says what ran
               "ef_effective": max(ef, k) if plan.graph == "hnsw" else None,
               "ef_effective_big": max(ef, k_big) if plan.graph == "hnsw" else None},
        recall=mid["recall"], recall_strict=mid["recall_strict"], recall_builds=recall_builds,
        perquery=mid["perquery"], perquery_file=f"perquery/{mid['perquery_file']}",
        latency_ms=mid["latency_ms"], direct=mid["direct"], qps=qps, qps_pool=qps_pool, repeats=mid["repeats"],
        warmup=settings.warmup,
        builds=[{"seed": b["seed"], "recall": r["recall"], "recall_strict": r["recall_strict"],
                 "qps_1t": r["qps"]["1"]["median"],
                 "perquery_file": f"perquery/{r['perquery_file']}"} for b, r in zip(builds, runs, strict=True)],
        median_build=median, noisy=noisy, noise_threshold=settings.noise_threshold, reference=reference,
        peak_rss_bytes=env.peak_rss_bytes(),
        parallelism={"qps": "batch split across N caller threads, every library pool pinned to 1 in each "
                            "(1 thread: every build; more: the median build)",
                     "qps_pool": "one caller, the library's own pools (OpenMP, BLAS, hnswlib) at N threads "
                                 "(the median build)",
                     "latency_ms": "one caller, single queries, pools pinned to 1 (the median build)",
                     "direct": "the library called directly on the median build: single queries dealt out "
                               "alternately between it and the facade (latency_ms is that run's facade half), "
                               "and its 1-thread batch QPS beside the build's own (qps 1)"})
    return record


def _memory_figures(plan: _Plan, settings: RunSettings, builds: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes per vector three ways: serialized, analytic (the structure's layout) and the resident-memory growth
    of a build in a fresh child process (when ``settings.memory``)."""
    from . import memory

    n = len(plan.ds.train)
    out: dict[str, Any] = {"serialized": builds[0]["serialized_bytes"] / n}
    try:
        out["analytic"] = memory.analytic_bytes_per_vector(plan.backend, plan.config, plan.ds.dimensions)
    except Exception as exc:  # a layout the estimate does not know is recorded as such
        out["analytic"] = {"status": "not available", "reason": f"{type(exc).__name__}: {exc}"}
    if not settings.memory:
        out["rss_growth"] = None
        out["child"] = {"status": "not measured", "reason": "bench.memory is false"}
        return out
    try:
        child = memory.measure_index_memory(plan.ds.train, plan.config, plan.backend,
                                            insert_chunk=settings.insert_chunk,
                                            threads=settings.build_threads).to_dict()
    except Exception as exc:  # recorded, never faked: the build figures stand without it
        log.warning("%s/%s: memory measurement failed: %s", plan.ds.name, plan.backend, exc)
        out["rss_growth"] = None
        out["child"] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        return out
    out["rss_growth"] = child.get("rss_growth_per_vector")
    out["child"] = child
    return out


def _sweep_builds(plan: _Plan, settings: RunSettings, progress: Progress | None
                  ) -> tuple[list[dict[str, Any]], list[dict[int, dict[str, Any]]], int]:
    """Build the configuration ``plan.builds`` times; on every build, recall and 1-thread QPS at each unfinished
    ef_search (the figures whose spread over builds the records show); on the median build, latency and thread
    scaling, whose cost would not fit the budget on every build. Returns (build figures, sweeps, median)."""
    ds, k = plan.ds, settings.k
    k_big = _k_big(ds)
    difficulty = perquery.query_difficulty(ds.test[: plan.n_queries], ds.train, ds.distances[: plan.n_queries],
                                           ds.metric)
    total = (plan.builds + 1) * len(plan.todo)
    builds: list[dict[str, Any]] = []
    sweeps: list[dict[int, dict[str, Any]]] = []
    indexes: list[HnswIndex] = []
    try:
        for repeat in range(plan.builds):
            index, figures = _build_index(plan, repeat, settings, progress)
            indexes.append(index)
            scanned = _code_scan(index, plan, settings)
            if scanned is not None:
                figures["code_scan"] = scanned
            sweep: dict[int, dict[str, Any]] = {}
            recall_big: dict[int, float] = {}
            for step, (ef, _path, _fp) in enumerate(plan.todo):
                pq_path = plan.directory / "perquery" / f"query-ef{ef}-k{k}-b{repeat}.h5"
                sweep[ef] = _measure_recall_and_qps(index, plan, ef, settings, k_big, difficulty, pq_path,
                                                    recall_big)
                if progress:
                    progress("query", repeat * len(plan.todo) + step + 1, total)
            builds.append(figures)
            sweeps.append(sweep)
        median = _median_build(sweeps, k)
        for step, (ef, _path, _fp) in enumerate(plan.todo):
            timing = _measure_latency_and_scaling(indexes[median], plan, ef, settings,
                                                  facade_qps=sweeps[median][ef]["qps"]["1"])
            sweeps[median][ef]["latency_ms"] = timing["latency_ms"]
            sweeps[median][ef]["qps"].update(timing["qps"])
            sweeps[median][ef]["qps_pool"] = timing["qps_pool"]
            sweeps[median][ef]["direct"] = timing["direct"]
            if progress:
                progress("query", plan.builds * len(plan.todo) + step + 1, total)
    finally:
        for index in indexes:
            index.close()
    return builds, sweeps, median


def _k_big(ds: Dataset) -> int:
    """The k of the deep recall figure: 100, or fewer when the ground truth or the base set is smaller."""
    return min(100, ds.distances.shape[1], len(ds.train))  # type: ignore[union-attr]


def _reference(before_s: float) -> dict[str, Any]:
    """The fixed workload timed again after the measurement, with its drift from before: the run's noise."""
    after_s = reference_seconds()
    return {"before_s": before_s, "after_s": after_s,
            "drift": abs(after_s - before_s) / before_s if before_s else None,
            "workload": "median of 5 sorts of 4,000,000 seeded floats, one thread"}


def _build_record(plan: _Plan, settings: RunSettings, builds: list[dict[str, Any]], median: int,
                  reference: dict[str, Any]) -> dict[str, Any]:
    """build.json: every build's figures, the spread of build time, memory three ways, noise flags."""
    n = len(plan.ds.train)
    record = _base_record(plan.ds, plan.backend, plan.build, results.SCHEMA_BUILD, plan.build_fp)
    times = spread(b["build_time_s"] for b in builds)
    record.update(graph=plan.graph, config=plan.config.to_dict(), builds=builds, median_build=median,
                  build_time_s=times.to_dict(), inserts_per_s=n / times.median if times.median else None,
                  threads=builds[0]["threads"], serialized_bytes=builds[0]["serialized_bytes"],
                  bytes_per_vector=_memory_figures(plan, settings, builds), reference=reference,
                  noisy=_flag_noise({"build_time_s": times.to_dict(), "reference_drift": {
                      "rel_spread": reference["drift"]}}, settings.noise_threshold),
                  noise_threshold=settings.noise_threshold, peak_rss_bytes=env.peak_rss_bytes())
    return record


def run_build(
    ds: Dataset,
    backend: str,
    build: BuildParams,
    ef_searches: Sequence[int],
    settings: RunSettings,
    root: str | Path,
    progress: Progress | None = None,
) -> Outcome:
    """Build one index configuration ``builds`` times and run the query sweep on each build, writing build.json,
    one query JSON per ef_search and the per-query HDF5 files.

    Steps: resolve the backend class that serves the config (once); plan (fingerprints, unfinished settings);
    time the reference workload; sweep every build; time the reference again; write the records. An
    unavailable backend or quantization is recorded as such (no numbers). Exact (flat) backends ignore
    ef_search, so they run only the first value, and build once. ``progress(step, done, total)`` reports inserts
    and queries.
    """
    if ds.neighbors is None or ds.distances is None:
        raise InvalidParameterError(f"dataset {ds.name!r} has no ground truth; run the groundtruth stage first")
    if not ef_searches:
        raise InvalidParameterError("ef_searches is empty")
    resolved = _resolve(ds, backend, build, settings)
    if not isinstance(resolved, _Resolved):
        return _record_unavailable(ds, backend, build, *resolved, root)
    plan = _plan(ds, backend, build, resolved, ef_searches, settings, root)
    if not plan.todo:
        return Outcome(skipped=[results.query_file(plan.directory, ef, settings.k) for ef in plan.efs])

    reference_before = reference_seconds()
    builds, sweeps, median = _sweep_builds(plan, settings, progress)
    reference = _reference(reference_before)

    outcome = Outcome()
    results.write_json(plan.directory / "build.json", _build_record(plan, settings, builds, median, reference))
    outcome.written.append(plan.directory / "build.json")
    for ef, path, fp in plan.todo:
        results.write_json(path, _query_record(plan, ef, fp, settings, _k_big(ds), sweeps, builds, median,
                                               reference))
        outcome.written.append(path)
    return outcome


def run_settings(params: dict[str, Any], force: bool = False) -> RunSettings:
    """The measurement settings of the build and query stages (section ``bench`` plus ``query.k``)."""
    bench = section(params, "bench")
    query = section(params, "query")
    defaults = RunSettings()
    cap = bench.get("build_repeats_max_train")
    return RunSettings(
        n_queries=int(bench.get("n_queries", defaults.n_queries)),
        repeats=int(bench.get("repeats", defaults.repeats)),
        warmup=int(bench.get("warmup", defaults.warmup)),
        threads=thread_counts(bench.get("threads", list(defaults.threads))),
        build_threads=int(bench.get("build_threads", defaults.build_threads)),
        insert_chunk=int(bench.get("insert_chunk", defaults.insert_chunk)),
        k=int(query.get("k", defaults.k)),
        force=force or bool(bench.get("force", False)),
        flat_repeats=int(bench["flat_repeats"]) if bench.get("flat_repeats") is not None else None,
        max_train={str(k): int(v) for k, v in (bench.get("max_train") or {}).items()},
        build_repeats=int(bench.get("build_repeats", defaults.build_repeats)),
        build_repeats_max_train=int(cap) if cap is not None else None,
        memory=bool(bench.get("memory", defaults.memory)),
        noise_threshold=float(bench.get("noise_threshold", defaults.noise_threshold)),
    )


def thread_counts(value: Any) -> tuple[int, ...]:
    """``bench.threads``: a list of counts, or ``auto`` (1, powers of two, and every usable core)."""
    if value == "auto":
        return auto_threads()
    if not isinstance(value, list) or not value:
        raise InvalidParameterError(f"params bench.threads must be 'auto' or a non-empty list of integers: {value!r}")
    counts = tuple(sorted({int(t) for t in value}))
    if counts[0] < 1:
        raise InvalidParameterError(f"params bench.threads must be >= 1, got {value!r}")
    return counts


def cap_rayon_pool(threads: int) -> None:
    """Size ruvector's process-wide rayon pool (read from ``RAYON_NUM_THREADS`` at its first use) unless the user
    set it: call before ruvector first runs, e.g. at the start of a build stage."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
