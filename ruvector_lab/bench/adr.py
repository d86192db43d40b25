"""The ADR-006 benchmark suite (the seed's ``WasmBenchmarks`` plus pattern match), judged against the ADR's targets.

Each case runs two protocols. ``adr``: the ADR's own, one input repeated (one query 1,000 times, one sentence 100
times) and judged on the mean, as the ADR's ``avgMs``. ``honest``: distinct inputs (1,000 different queries,
different sentences), judged on p95 (p99 on a shared 2-core machine measures the scheduler), and for search with
recall@10 against exact ground truth beside the latency.
Cases that need a capability this installation lacks (the Embedder, the quantization package, the learning
module, a backend) are recorded as not available, never faked.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import ops
from ..errors import InvalidParameterError
from ..index import HnswIndex
from ..runtime import Runtime
from ..types import HnswConfig
from . import env, results
from .hdf5 import Dataset
from .metrics import mean_recall, true_distances
from .params import section
from .targets import variant_case, verdict
from .threads import pinned_threads
from .timer import summarize, time_calls

log = logging.getLogger(__name__)

#: ``progress(step, done, total)``: ``step`` names the case starting now, ``done`` of ``total`` cases are finished.
#: Called only between cases, never inside a timed section.
Progress = Callable[[str, int, int], None]
#: the steps of :func:`run_common` and :func:`run_backend` in progress reports
COMMON_STEPS = ("embed", "distance", "quantize", "pattern_match")
BACKEND_STEPS = ("hnsw_insert", "hnsw_search_k10", "batch_distance_10k", "pattern_match")

ADR_SENTENCE = "This is a test sentence for embedding."
_SUBJECTS = ("the engineer", "a small dog", "the index", "my neighbour", "the committee", "a red kite", "the model")
_VERBS = ("reads", "builds", "searches", "paints", "measures", "forgets", "explains", "carries")
_OBJECTS = ("a long report", "the river bank", "every vector", "an old map", "the quiet garden", "a hard question")


@dataclass(frozen=True)
class AdrSettings:
    """The suite's sizes, the ADR's index config (M 16, ef_construction 100, ef_search 50, cosine) and threads."""

    search_iterations: int = 1000
    embed_iterations: int = 100
    batch_iterations: int = 20
    op_iterations: int = 1000
    n_patterns: int = 10_000
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 50
    threads: int = 1
    embed_precision: str = "fp32"
    #: the embedding matrix beside the ADR's own setting: every precision x thread count, on short texts (as the
    #: ADR) and on mixed-length batches (30 short texts and 2 long paragraphs, as users send them)
    embed_precisions: tuple[str, ...] = ("fp32", "int8")
    embed_threads: tuple[int, ...] = (1, 2)
    seed: int = 7

    def __post_init__(self) -> None:
        # params.yaml gives lists; a frozen dataclass keeps tuples
        object.__setattr__(self, "embed_precisions", tuple(self.embed_precisions))
        object.__setattr__(self, "embed_threads", tuple(int(t) for t in self.embed_threads))


def distinct_sentences(n: int, seed: int = 7) -> list[str]:
    """``n`` different short English sentences (the honest protocol's inputs), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [f"{_SUBJECTS[rng.integers(len(_SUBJECTS))]} {_VERBS[rng.integers(len(_VERBS))]} "
            f"{_OBJECTS[rng.integers(len(_OBJECTS))]} on day {i}." for i in range(n)]


#: a mixed-length batch: this many short texts and the rest long paragraphs (past the model's 256 tokens)
MIXED_LONG = 2


def long_paragraph(seed: int, sentences: int = 40) -> str:
    """A paragraph of ``sentences`` distinct short sentences (~400 tokens, so the model reads its first 256)."""
    return " ".join(distinct_sentences(sentences, seed)).replace(" on day", ", on day")


def mixed_batches(n: int, seed: int = 7, size: int = 32) -> list[list[str]]:
    """``n`` batches of ``size`` texts: ``size - MIXED_LONG`` distinct short sentences and :data:`MIXED_LONG` long
    paragraphs at seeded positions (what a user's batch looks like; one long text pads a fixed-size chunk)."""
    rng = np.random.default_rng(seed)
    short = distinct_sentences(n * (size - MIXED_LONG), seed + 1)
    out = []
    for i in range(n):
        batch = list(short[i * (size - MIXED_LONG) : (i + 1) * (size - MIXED_LONG)])
        for j in range(MIXED_LONG):
            batch.insert(int(rng.integers(len(batch) + 1)), long_paragraph(seed * 1000 + i * MIXED_LONG + j))
        out.append(batch)
    return out


def embed_cases(settings: AdrSettings) -> dict[str, Any]:
    """The embedding cases: ``embed_single`` and ``embed_batch_32`` at the ADR's setting (``embed_precision``,
    ``threads``, short texts), and every precision x thread count of the matrix as variants
    (:func:`~.targets.variant_case`): single short text, batch of 32 short texts, batch of 32 mixed-length texts.
    A mixed batch's info holds ``parts_ms``: the same texts embedded as two batches (short, long), whose ratio
    shows what one batch's padding costs."""
    try:
        from ..embeddings import Embedder
    except ImportError as exc:
        reason = f"Embedder unavailable: {type(exc).__name__}: {exc}"
        return {"embed_single": _absent(reason), "embed_batch_32": _absent(reason)}
    n_single, n_batch = settings.embed_iterations, settings.batch_iterations
    texts = distinct_sentences(n_single + 32 * n_batch, settings.seed)
    singles = texts[:n_single]
    short = [texts[n_single + 32 * i : n_single + 32 * (i + 1)] for i in range(n_batch)]
    mixed = mixed_batches(n_batch, settings.seed)
    adr_mixed = mixed_batches(1, settings.seed + 1)[0]
    canonical = (settings.embed_precision, settings.threads)
    configs = [canonical, *[(p, t) for p in settings.embed_precisions for t in settings.embed_threads
                            if (p, t) != canonical]]
    cases: dict[str, Any] = {}
    for precision, threads in configs:
        names = {"single": variant_case("embed_single", precision, f"{threads}t", "short"),
                 "short": variant_case("embed_batch_32", precision, f"{threads}t", "short"),
                 "mixed": variant_case("embed_batch_32", precision, f"{threads}t", "mixed")}
        try:
            embedder = Embedder(precision=precision, threads=threads)
        except Exception as exc:  # no model files, or a precision this installation cannot build
            reason = f"Embedder unavailable: {type(exc).__name__}: {exc}"
            cases.update({name: _absent(reason) for name in names.values()})
            continue
        with embedder:
            info = {"precision": precision, "threads": threads, "graph": embedder.info()["graph"]["running"]}
            got = {"single": _measure("embed_single", embedder.embed, ADR_SENTENCE, singles, n_single, 5),
                   "short": _measure("embed_batch_32", embedder.embed_batch, [ADR_SENTENCE] * 32, short, n_batch, 2),
                   "mixed": _measure("embed_batch_32", embedder.embed_batch, adr_mixed, mixed, n_batch, 2)}
            parts = summarize(time_calls(functools.partial(_embed_apart, embedder), mixed, warmup=2))
            for kind, case in got.items():
                case["info"] = info | {"texts": "mixed" if kind == "mixed" else "short"}
            got["mixed"]["info"]["parts_ms"] = {"p50": parts.p50_ms, "p95": parts.p95_ms, "mean": parts.mean_ms}
        for kind, case in got.items():
            cases[names[kind]] = case
        if (precision, threads) == canonical:
            cases["embed_single"], cases["embed_batch_32"] = got["single"], got["short"]
    return cases


def _embed_apart(embedder: Any, batch: Sequence[str]) -> None:
    """Embed a mixed batch as two: its short texts, then its long ones (the reference a mixed batch is held to)."""
    cut = sorted(batch, key=len)
    embedder.embed_batch(cut[: len(cut) - MIXED_LONG])
    embedder.embed_batch(cut[len(cut) - MIXED_LONG :])


def _measure(case: str, func: Callable[[Any], Any], adr_arg: Any, honest_args: Sequence[Any], adr_iterations: int,
             warmup: int = 10) -> dict[str, Any]:
    """Both protocols of one case: ``adr`` repeats ``adr_arg``, ``honest`` walks ``honest_args``."""
    adr = summarize(time_calls(func, [adr_arg] * adr_iterations, warmup=warmup))
    honest = summarize(time_calls(func, list(honest_args), warmup=warmup))
    out = {}
    for name, summary, judged in (("adr", adr, adr.mean_ms), ("honest", honest, honest.p95_ms)):
        out[name] = {"iterations": summary.count, "latency_ms": {"p50": summary.p50_ms, "p95": summary.p95_ms,
                                                                   "p99": summary.p99_ms, "mean": summary.mean_ms},
                     "judged_ms": judged, "verdict": verdict(case, judged)}
    return {"status": "ok", "protocols": out}


def _absent(reason: str) -> dict[str, Any]:
    return {"status": "not available", "reason": reason}


def _stepper(progress: Progress | None, steps: Sequence[str]) -> Callable[[int], None]:
    """``step(i)``: tell ``progress`` that ``i`` of ``steps`` are done and ``steps[i]`` starts (a no-op without)."""

    def step(i: int) -> None:
        if progress:
            progress(steps[i] if i < len(steps) else "done", i, len(steps))

    return step


def run_common(ds: Dataset, settings: AdrSettings, progress: Progress | None = None) -> dict[str, Any]:
    """The cases that do not depend on the index backend: embedding, distance, quantize, exact pattern match.
    ``progress`` hears of the :data:`COMMON_STEPS`."""
    cases: dict[str, Any] = {}
    rng = np.random.default_rng(settings.seed)
    step = _stepper(progress, COMMON_STEPS)
    with pinned_threads(settings.threads):
        step(0)
        cases.update(embed_cases(settings))
        step(1)
        pairs = [(ds.train[i], ds.train[i + 1]) for i in range(min(settings.op_iterations, len(ds.train) - 1))]
        cases["distance"] = _measure("distance", lambda p: ops.distance(p[0], p[1], ds.metric), pairs[0], pairs,
                                     settings.op_iterations)
        step(2)
        try:
            from ..quantization import QuantizationConfig, quantize

            cfg = QuantizationConfig(kind="scalar")
            rows = list(ds.train[: settings.op_iterations])
            cases["quantize"] = _measure("quantize", lambda v: quantize(v, cfg), rows[0], rows, settings.op_iterations)
            cases["quantize"]["info"] = {"kind": "scalar"}
        except ImportError as exc:
            cases["quantize"] = _absent(f"quantization package unavailable: {exc}")
        step(3)
        try:
            from ..learning import create_pattern, match_patterns

            n = min(settings.n_patterns, len(ds.train))
            patterns = [create_pattern(v, id=str(i)) for i, v in enumerate(ds.train[:n])]
            queries = list(ds.test[: min(settings.op_iterations, len(ds.test))])
            cases["pattern_match"] = _measure("pattern_match", lambda q: match_patterns(q, patterns, 0.0, k=10),
                                              queries[0], queries, min(settings.op_iterations, 200), 3)
            cases["pattern_match"]["info"] = {"patterns": n, "method": "exact match_patterns over a list"}
        except ImportError as exc:
            cases["pattern_match"] = _absent(f"learning module unavailable: {exc}")
    step(4)
    del rng
    for case in cases.values():
        case["scope"] = "common"
    return {"schema": results.SCHEMA_ADR, "status": "ok", "backend": "common", "cases": cases,
            "config": asdict(settings), "threads": {"threads": settings.threads}, "environment": env.environment()}


def run_backend(ds: Dataset, backend: str, settings: AdrSettings, progress: Progress | None = None) -> dict[str, Any]:
    """The cases that run on an index backend: single inserts, search k=10 (with recall), batch distance on the
    backend's kernel, and pattern match through a PatternStore on that backend. ``progress`` hears of the
    :data:`BACKEND_STEPS` (nothing when the backend is not available)."""
    base = {"schema": results.SCHEMA_ADR, "backend": backend, "config": asdict(settings),
            "environment": env.environment()}
    available = Runtime.available()
    if backend not in available:
        raise InvalidParameterError(f"unknown backend {backend!r}; known: {', '.join(available)}")
    ok = available[backend]
    if ok is not True:
        return {**base, "status": "not available", "reason": str(ok), "cases": {}}
    tier = Runtime.tier_of(backend)
    cases: dict[str, Any] = {}
    rng = np.random.default_rng(settings.seed)
    config = HnswConfig(dimensions=ds.dimensions, m=settings.m, ef_construction=settings.ef_construction,
                        ef_search=settings.ef_search, metric=ds.metric)
    step = _stepper(progress, BACKEND_STEPS)
    with pinned_threads(settings.threads):
        step(0)
        index = HnswIndex(config, backend=backend)
        items = [(str(i), v) for i, v in enumerate(ds.train)]
        samples = time_calls(lambda item: index.insert(item[0], item[1]), items, warmup=0)
        ins = summarize(samples)
        cases["hnsw_insert"] = {"status": "ok", "protocols": {
            name: {"iterations": ins.count, "latency_ms": {"p50": ins.p50_ms, "p95": ins.p95_ms, "p99": ins.p99_ms,
                                                           "mean": ins.mean_ms},
                   "judged_ms": judged, "verdict": verdict("hnsw_insert", judged)}
            for name, judged in (("adr", ins.mean_ms), ("honest", ins.p95_ms))},
            "inserts_per_s": len(items) / float(samples.sum()), "vectors": len(items)}
        step(1)
        one_query = rng.uniform(-1.0, 1.0, ds.dimensions).astype(np.float32)
        queries = ds.test[: settings.search_iterations]
        search = _measure("hnsw_search_k10", lambda q: index.search(q, 10), one_query, list(queries),
                          settings.search_iterations, 20)
        if ds.distances is not None:
            hits = index.search_batch(queries, 10)
            ids = np.array([[int(r.id) for r in row] + [-1] * (10 - len(row)) for row in hits])
            search["recall_at_10"] = mean_recall(ds.distances[: len(queries)],
                                                 true_distances(queries, ds.train, ids, ds.metric), 10)
        search["info"] = {"config": config.to_dict(), "graph": Runtime.require(backend).graph}
        cases["hnsw_search_k10"] = search
        index.close()
        step(2)
        previous = Runtime.current()
        Runtime.initialize(backend=backend)  # batch_distance uses the runtime backend's kernel
        try:
            cases["batch_distance_10k"] = _measure(
                "batch_distance_10k", lambda q: ops.batch_distance(q, ds.train, ds.metric), queries[0],
                list(queries[:200]), 200, 5)
        finally:
            Runtime.reset()
            if previous is not None:
                Runtime.initialize(backend=previous.backend)
        step(3)
        try:
            from ..learning import PatternStore, create_pattern

            n = min(settings.n_patterns, len(ds.train))
            store = PatternStore(ds.dimensions, m=settings.m, ef_construction=settings.ef_construction,
                                 backend=backend)
            store.add_many([create_pattern(v, id=str(i)) for i, v in enumerate(ds.train[:n])])
            cases["pattern_match"] = _measure("pattern_match", lambda q: store.match(q, 0.0, k=10), queries[0],
                                              list(queries[:200]), 200, 5)
            cases["pattern_match"]["info"] = {"patterns": n, "method": "PatternStore (HNSW) k=10"}
        except ImportError as exc:
            cases["pattern_match"] = _absent(f"learning module unavailable: {exc}")
    step(4)
    for case in cases.values():
        case["scope"] = "backend"
    return {**base, "status": "ok", "tier": tier, "cases": cases, "threads": {"threads": settings.threads}}


def adr_settings(params: dict[str, Any]) -> AdrSettings:
    """The ADR suite's settings (section ``adr``; unknown keys refused, 'dataset' is read separately)."""
    adr = dict(section(params, "adr"))
    adr.pop("dataset", None)
    known = set(AdrSettings.__dataclass_fields__)
    unknown = set(adr) - known
    if unknown:
        raise InvalidParameterError(f"unknown params adr keys {sorted(unknown)}; known: {sorted(known)}")
    return AdrSettings(**adr)
