"""The quantization sweep: for each codec, bytes per vector against recall, with and without exact re-ranking.

Brute force over the codes isolates the codec from any graph: each query is scored against every code, the best
``factor * k`` candidates are re-scored with the float vectors, and recall@k is taken against exact ground truth
(factor 1 is no re-ranking). Codecs come from a list in params.yaml; one that the quantization package does not
have, or that cannot serve the dataset's metric, is recorded as not available.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..distances import pairwise_float64, ranking_scores, squared_norms
from ..errors import InvalidParameterError
from . import env, results
from .executor import DatasetRef, Executor
from .hdf5 import Dataset
from .metrics import mean_recall, true_distances
from .runner import parse_quantization
from .threads import pinned_threads
from .timer import summarize, time_calls

log = logging.getLogger(__name__)

#: ``progress(step, done, total)``: ``step`` names what starts now, ``done`` of ``total`` steps are finished.
#: Called only between timed sections, so a progress bar never lands inside a measurement.
Progress = Callable[[str, int, int], None]
#: the steps of one codec in progress reports: train, encode and scan, re-rank
CODEC_STEPS = 3


def _percentiles(samples_s: np.ndarray) -> dict[str, float]:
    summary = summarize(samples_s)
    return {"p50": summary.p50_ms, "p95": summary.p95_ms, "p99": summary.p99_ms, "mean": summary.mean_ms}


def _code_scores(codec: Any, queries: np.ndarray, codes: np.ndarray, decoded: np.ndarray | None,
                 metric: str) -> np.ndarray:
    """Ranking scores of queries against codes (smaller is closer). Codecs whose distance is the metric's
    distance to the decoded row (:func:`_ranks_by_decoded`) rank on decoded rows by one matrix product (the same
    order as the codec's distances, much faster than table lookups per code); others through ``distance``."""
    if decoded is None:
        return codec.distance(queries, codes)
    if metric == "euclidean":
        return ranking_scores(queries, decoded, "euclidean", squared_norms(decoded))
    dots = queries @ decoded.T
    if metric == "cosine":  # |q| is the same along a row: the order of -q.x / |x|
        norms = np.linalg.norm(decoded, axis=1)
        return -dots / np.where(norms > 0, norms, np.inf)[None, :]
    return -dots


#: scores held at once while scanning (float32: 512 MiB), which sets how many queries share one pass over the codes
SCORE_BLOCK_FLOATS = 1 << 27
#: true neighbours per query whose order the codec's estimates are checked against (the neighbourhood diagnostic)
ORDER_NEIGHBOURS = 100
#: rows whose reconstruction error and spread about the mean the neighbourhood error averages over
ERROR_SAMPLE = 20_000
#: queries the diagnostic uses (it is a mean over queries; more would only cost time)
ORDER_QUERIES = 300


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (0 = smallest; ties broken by position, which real distances rarely need)."""
    ranks = np.empty_like(values, dtype=np.float64)
    np.put_along_axis(ranks, np.argsort(values, axis=-1, kind="stable"),
                      np.arange(values.shape[-1], dtype=np.float64)[None, :], axis=-1)
    return ranks


def neighbourhood_order(codec: Any, queries: np.ndarray, codes: np.ndarray, decoded: np.ndarray | None,
                        neighbours: np.ndarray, true_dist: np.ndarray, metric: str) -> float:
    """Mean Spearman correlation, over queries, between the codec's distance estimates and the true distances
    on each query's ``ORDER_NEIGHBOURS`` true nearest neighbours: 1 when the codes order a neighbourhood as the
    floats do, near 0 when they cannot tell its members apart. This is what recall without re-ranking rests on,
    measured where it is decided (among the near neighbours), so it explains a codec that loses to a smaller one:
    a codec that spends its bits elsewhere (e.g. on cluster centres) has a low value here whatever its overall
    reconstruction error."""
    width = min(ORDER_NEIGHBOURS, neighbours.shape[1])
    rows = min(ORDER_QUERIES, len(queries))
    estimates = np.empty((rows, width))
    for i in range(rows):
        nbrs = neighbours[i, :width]
        estimates[i] = _code_scores(codec, queries[i : i + 1], codes[nbrs],
                                    None if decoded is None else decoded[nbrs], metric)[0]
    a, b = _ranks(estimates), _ranks(true_dist[:rows, :width])
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return float(np.mean(np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1), 0.0)))


def rabitq_alignment(codec: Any, codes: np.ndarray) -> float | None:
    """Mean ``<x̄, y>`` of a RaBitQ codec's code rows (:meth:`RabitqCodec.alignment`): how close each vector's
    quantized direction lies to its own (1 = exact); the estimator divides by it, so a lower value means noisier
    estimates. None for other codecs."""
    if getattr(codec, "kind", None) != "rabitq":
        return None
    return float(np.mean(codec.alignment(codes)))


def _metric_space(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows as the metric sees them: unit vectors under cosine (only directions count), as they are otherwise."""
    if metric != "cosine":
        return x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def neighbourhood_error(x: np.ndarray, decoded: np.ndarray, neighbours: np.ndarray, metric: str
                        ) -> dict[str, float]:
    """How the codec's error compares with the scale at which neighbours differ, in the metric's space.

    ``spread``: mean squared distance of a query's ``ORDER_NEIGHBOURS`` true neighbours to their own centroid;
    ``spread_share``: that over the whole base set's variance (small on clustered data: the neighbours of a
    query sit in one tight cluster); ``error_to_spread``: the codec's mean squared reconstruction error over
    ``spread`` (near or past 1, the codes cannot tell a neighbourhood's members apart, whatever share of the
    total variance they keep). RaBitQ's decoded rows are its estimator's vectors, scaled by ``1 / <x̄, y>``: under
    cosine only their direction enters."""
    width = min(ORDER_NEIGHBOURS, neighbours.shape[1])
    rows = neighbours[: min(ORDER_QUERIES, len(neighbours)), :width]
    members = _metric_space(x[rows.ravel()], metric).reshape(*rows.shape, -1)
    spread = float(np.mean(np.sum((members - members.mean(axis=1, keepdims=True)) ** 2, axis=-1)))
    # the whole set's variance and the codec's error are means over rows: a seeded sample gives them
    sample = np.sort(np.random.default_rng(0).choice(len(x), min(len(x), ERROR_SAMPLE), replace=False))
    space = _metric_space(x[sample], metric)
    total = float(np.mean(np.sum((space - space.mean(axis=0)) ** 2, axis=1)))
    error = float(np.mean(np.sum((_metric_space(decoded[sample], metric) - space) ** 2, axis=1)))
    return {"spread": spread, "spread_share": spread / total if total > 0 else 0.0,
            "error_to_spread": error / spread if spread > 0 else float("inf")}


def _reconstruction(codec: Any, codes: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Each vector's point in the codec's code space: the decoded row, except for RaBitQ, whose decoded rows are
    its estimator's vectors ``c + (|r| / <x̄, y>) x̄ P^T``; its quantized point is ``c + |r| x̄ P^T``."""
    if getattr(codec, "kind", None) != "rabitq":
        return decoded
    return (codec.centre + codec.alignment(codes)[:, None] * (decoded - codec.centre)).astype(np.float32)


#: codecs whose distance to a query is the metric's distance to the decoded row (PQ's asymmetric tables sum
#: exactly the query's products with the reconstruction; scalar codes are affine in their levels)
RECONSTRUCTING = ("scalar", "int4", "product")


def _ranks_by_decoded(codec: Any) -> bool:
    """True when the metric on a codec's decoded rows ranks as its own distances do (:data:`RECONSTRUCTING`):
    not RaBitQ, whose decoded rows are its estimator's vectors (stretched by ``1 / <x̄, y>``), nor binary."""
    return getattr(codec, "kind", None) in RECONSTRUCTING


def sweep_codec(ds: Dataset, spec: str, factors: Sequence[int] = (1, 4, 10), k: int = 10, n_queries: int = 1000,
                query_block: int | None = None, progress: Progress | None = None, train_size: int | None = None,
                train_threads: int = 1) -> dict[str, Any]:
    """Measure one codec on ``ds``; returns the quant@1 record (see :mod:`ruvector_lab.bench.results`).
    ``progress`` hears of its :data:`CODEC_STEPS` steps (train, encode and scan, re-rank). ``train_size``
    overrides the codec config's sample for training (None: the config's default); training runs with
    ``train_threads`` library threads (k-means is the sweep's costliest step), encoding and scans with one."""
    base = {"schema": results.SCHEMA_QUANT, "dataset": ds.describe(), "spec": spec,
            "environment": env.environment()}
    try:
        from ..quantization import make_codec

        config = parse_quantization(spec, ds.dimensions)
        if train_size is not None:
            config = dataclasses.replace(config, train_size=int(train_size))
        codec = make_codec(config, ds.dimensions, metric=ds.metric)
    except Exception as exc:  # absent package, or a kind that cannot serve this metric: not available
        return {**base, "status": "not available", "reason": f"{type(exc).__name__}: {exc}"}
    if ds.distances is None:
        raise ValueError(f"dataset {ds.name!r} has no ground truth")
    if progress:
        progress("train", 0, CODEC_STEPS)
    with pinned_threads(train_threads) as pinned_train:
        start = time.perf_counter()
        codec.train(ds.train)
        train_time = time.perf_counter() - start
    with pinned_threads(1):
        if progress:
            progress("encode and scan", 1, CODEC_STEPS)
        start = time.perf_counter()
        codes = codec.encode(ds.train)
        encode_time = time.perf_counter() - start
        singles = time_calls(lambda v: codec.encode(v), list(ds.test[:1000]), warmup=20)
        decoded_all = codec.decode(codes)
        mse = float(np.mean((decoded_all.astype(np.float64) - ds.train) ** 2))
        alignment = rabitq_alignment(codec, codes)
        local = (neighbourhood_error(ds.train, _reconstruction(codec, codes, decoded_all), ds.neighbors, ds.metric)
                 if ds.neighbors is not None else None)
        decoded = decoded_all if _ranks_by_decoded(codec) else None
        if decoded is None:
            del decoded_all
        queries = ds.test[: min(n_queries, len(ds.test))]
        gt = ds.distances[: len(queries)]
        widest = min(max(factors) * k, len(ds.train))
        cands = np.empty((len(queries), widest), dtype=np.int64)
        start = time.perf_counter()
        # as many queries per scan as keep the (block, n) score matrix near SCORE_BLOCK_FLOATS: a codec whose
        # scoring unpacks every code (multi-bit RaBitQ) then does so once or a few times, not once per 200 queries
        block = query_block or max(1, min(len(queries), SCORE_BLOCK_FLOATS // max(1, len(codes))))
        for qs in range(0, len(queries), block):
            scores = _code_scores(codec, queries[qs : qs + block], codes, decoded, ds.metric)
            part = np.argpartition(scores, widest - 1, axis=1)[:, :widest]
            order = np.argsort(np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
            cands[qs : qs + block] = np.take_along_axis(part, order, axis=1)
        scan_time = time.perf_counter() - start
        ordering = (neighbourhood_order(codec, queries, codes, decoded, ds.neighbors, ds.distances, ds.metric)
                 if ds.neighbors is not None else None)
    if progress:
        progress("re-rank", 2, CODEC_STEPS)
    rerank = []
    for factor in factors:
        width = min(factor * k, widest)
        top = cands[:, :width]
        if factor > 1:  # exact re-scoring of the candidates with the float vectors
            start = time.perf_counter()
            exact = np.stack([pairwise_float64(queries[i : i + 1], ds.train[top[i]], ds.metric)[0]
                              for i in range(len(queries))])
            order = np.argsort(exact, axis=1, kind="stable")[:, :k]
            chosen = np.take_along_axis(top, order, axis=1)
            extra = time.perf_counter() - start
        else:
            chosen, extra = top[:, :k], 0.0
        run = true_distances(queries, ds.train, chosen, ds.metric)
        rerank.append({"factor": int(factor), "candidates": int(width), "recall_at_1": mean_recall(gt, run, 1),
                       "recall_at_10": mean_recall(gt, run, k), "qps": len(queries) / (scan_time + extra)})
    codebook = len(codec.to_bytes()) if codec.needs_training else 0  # trained codebooks are shared overhead
    return {**base, "status": "ok", "codec": config.to_dict(), "code_bytes": int(codec.code_size),
            "codebook_bytes": int(codebook), "bytes_per_vector": codec.code_size + codebook / len(ds.train),
            "compression": 4.0 * ds.dimensions / (codec.code_size + codebook / len(ds.train)),
            "train_time_s": train_time, "encode_per_s": len(ds.train) / encode_time if encode_time else None,
            "quantize_single_ms": _percentiles(singles),
            "reconstruction_mse": mse, "neighbourhood_order": ordering, "neighbourhood_error": local,
            "rabitq_alignment": alignment,
            "rerank": rerank, "n_queries": len(queries), "k": k,
            "threads": {"threads": 1, "train": int(pinned_train.get("threads", train_threads))}}


def run_quant_sweep(ds: Dataset, specs: Sequence[str], root: str | Path, factors: Sequence[int] = (1, 4, 10),
                    n_queries: int = 1000, force: bool = False, progress: Progress | None = None,
                    train_size: int | None = None, train_threads: int = 1, executor: Executor | None = None,
                    ref: DatasetRef | None = None) -> list[Path]:
    """Sweep every codec spec on ``ds`` and write quant/<dataset>/<spec>.json; finished ones are skipped.
    ``progress`` hears of every codec's steps, ``CODEC_STEPS * len(specs)`` in all, as ``"<spec>: <step>"``;
    ``train_size`` and ``train_threads`` as in :func:`sweep_codec`.

    Each unfinished codec is one measuring task on ``executor`` (default: this process); ``ref`` names ``ds`` for
    a cluster's workers (made from the executor when not given). Records are written here, with the task's host
    load; a codec whose task failed raises after the others are written."""
    from .executor import LocalExecutor, Task, raise_failures

    executor = executor or LocalExecutor()
    pending: list[tuple[str, Path, str]] = []
    total = CODEC_STEPS * len(specs)
    for i, spec in enumerate(specs):
        path = Path(root) / "quant" / results.check_component(ds.name, "dataset") / \
            f"{results.check_component(spec, 'codec')}.json"
        fp = results.fingerprint({"dataset": ds.describe(), "spec": spec, "factors": list(factors),
                                  "n_queries": n_queries, "train_size": train_size, "train_threads": train_threads},
                                 results.measured_code_hash(None, quantized=True))
        if not force and results.is_done(path, fp):
            steps = _codec_progress(progress, spec, CODEC_STEPS * i, total)
            if steps:
                steps("already done", CODEC_STEPS, CODEC_STEPS)
            continue
        pending.append((spec, path, fp))
    if not pending:
        return []
    ref = ref or executor.dataset_ref(None, ds)
    local = executor.kind == "local"
    tasks = [Task(f"{ds.name}/{spec}", _codec_task,
                  (ref, spec, tuple(factors), n_queries, train_size, train_threads,
                   _codec_progress(progress, spec, CODEC_STEPS * specs.index(spec), total) if local else None),
                  measuring=True) for spec, _path, _fp in pending]
    written = []
    outcomes = executor.run(tasks, f"codecs {ds.name}")
    for (spec, path, fp), outcome in zip(pending, outcomes, strict=True):
        if not outcome.ok:
            continue
        record = {**outcome.value, "fingerprint": fp, "host_load": outcome.host_load}
        results.write_json(path, record)
        written.append(path)
        log.info("quantization %s on %s: %s", spec, ds.name, record.get("status"))
        if progress and not local:
            progress(f"{spec}: {record.get('status')}", CODEC_STEPS * (specs.index(spec) + 1), total)
    raise_failures(outcomes, f"codecs of {ds.name}")
    return written


def _codec_task(ref: DatasetRef, spec: str, factors: tuple[int, ...], n_queries: int, train_size: int | None,
                train_threads: int, progress: Progress | None) -> dict[str, Any]:
    """One codec's record, measured where the executor runs it."""
    record = sweep_codec(ref.load(), spec, factors=factors, n_queries=n_queries, progress=progress,
                         train_size=train_size, train_threads=train_threads)
    if progress:
        progress(str(record.get("status")), CODEC_STEPS, CODEC_STEPS)
    return record


def _codec_progress(progress: Progress | None, spec: str, before: int, total: int) -> Progress | None:
    """One codec's step reports as the sweep's: offset by the steps of the codecs before it, named by its spec."""
    if progress is None:
        return None

    def report(step: str, done: int, _steps: int) -> None:
        progress(f"{spec}: {step}", before + done, total)

    return report


def _per_dataset(quantization: dict[str, Any], key: str, dataset: str) -> list[str]:
    """Params ``quantization.<key>``: a list (every dataset) or a mapping dataset -> list (a dataset it does not
    name gets none)."""
    specs = quantization.get(key) or []
    if isinstance(specs, dict):
        specs = specs.get(dataset) or []
    if not isinstance(specs, list):
        raise InvalidParameterError(f"params quantization.{key} must be a list of specs or a mapping dataset -> list")
    return [str(spec) for spec in specs]


def codec_specs(quantization: dict[str, Any], dataset: str) -> list[str]:
    """The codec specs the sweep runs on ``dataset``: params ``quantization.codecs``, a list (every dataset) or a
    mapping dataset -> list (each data set swept for what it shows, within the pipeline's time budget)."""
    return _per_dataset(quantization, "codecs", dataset)


def hnsw_specs(quantization: dict[str, Any], dataset: str) -> list[str]:
    """The quantized HNSW specs the quantize stage builds on ``dataset``: params ``quantization.hnsw`` as in
    :func:`codec_specs`, for the datasets of ``hnsw_datasets`` only."""
    if dataset not in (quantization.get("hnsw_datasets") or []):
        return []
    return _per_dataset(quantization, "hnsw", dataset)
