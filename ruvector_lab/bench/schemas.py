"""The result schemas, declared as data: one JSON Schema (draft 2020-12) per JSON record kind, and the layout of the
per-query HDF5 files, with :func:`validate` and :func:`validate_hdf5` to hold a record or a file against them.

Where each kind lives under a results root is :mod:`ruvector_lab.bench.results`; the tables read from them are
:mod:`ruvector_lab.bench.tables`, which validates every record it reads here first.

Tags (a record's ``schema`` key; a change of a record's shape bumps its tag):

- ``ruvector-lab/build@2`` (:data:`BUILD`): one build configuration, ``runs/<dataset>/<backend>/<build-key>/
  build.json`` (and the quantize stage's ``qhnsw/<dataset>/runs/...``);
- ``ruvector-lab/query@3`` (:data:`QUERY`): one query setting of a build, ``.../query-ef<ef>-k<k>.json``;
- ``ruvector-lab/quant@1`` (:data:`QUANT`): one codec sweep, ``quant/<dataset>/<codec-key>.json``;
- ``ruvector-lab/adr@1`` (:data:`ADR`): the ADR-006 suite on one backend, ``adr/<backend>.json`` and
  ``adr/common.json``;
- ``ruvector-lab/tune@1`` (:data:`TUNE`): one autotuner study for a dataset and a recall target,
  ``tune/<dataset>/recall-<target>.json`` (written by :mod:`ruvector_lab.bench.tune`; its evaluation caches
  ``tune/<dataset>/evals/*.json`` and the Optuna storage beside it are not results);
- ``ruvector-lab/perquery@1`` (:data:`PERQUERY`, HDF5, not JSON): every query's returned ids and their true
  distances, ``.../perquery/query-ef<ef>-k<k>-b<build>.h5`` (written by :mod:`ruvector_lab.bench.perquery`).

Every JSON record holds ``schema`` and ``status``: ``'ok'``, ``'not available'`` (a backend or codec absent here,
recorded as absent and never faked) or ``'skipped'`` (a build the params' ``bench.max_train`` budget leaves out),
the last two with a ``reason`` and the keys that say *what* is absent (dataset, backend, build, codec spec). A
status 'ok' record has the keys each schema lists as required, of the types it gives; keys beyond those are
allowed (provenance: ``fingerprint``, ``code``, ``environment``, which a record computed live and not yet written
by :func:`ruvector_lab.bench.results.write_json` may lack).

A Spread (``$defs/spread``) is {median, min, max, rel_spread ((max-min)/median), values}: a figure over builds or
timing repeats.

What the fields mean (the schemas below say which are required and of what type). Graph configurations are built
``builds`` times (seeded insertion orders, ``bench.build_repeats``); flat indexes once.

build@2 (``status == 'ok'``): ``dataset`` {name, n_train, n_test, dimensions, metric, gt_k, content_hash},
``backend``, ``tier``, ``graph`` ('hnsw' | 'flat'), ``build`` {m, ef_construction, quantization}, ``config``,
``builds`` [{seed, order, build_time_s, inserts_per_s, cpu_utilization, threads, serialized_bytes,
serialize_time_s, index_stats (quantized builds: ``IndexStats.extra``'s scalars: code, graph, re-rank and build
float bytes per vector apart), code_scan (quantized builds whose backend scans its codes: {recall {"1", "10"},
candidates, seconds} of every code scored with the index's own scoring and re-ranking, no graph)}],
``median_build`` (index into builds), ``build_time_s`` (Spread over builds),
``inserts_per_s`` (at the median time), ``threads`` (the pinned counts read back: threads, faiss_omp, openmp,
blas, library_pools, ruvector_rayon), ``serialized_bytes``, ``bytes_per_vector`` {serialized, analytic {vectors,
graph, ids, total, ...}, rss_growth (resident-memory growth per vector of the build in a fresh child process),
child (that process's figures, or {status, reason})}, ``reference`` {before_s, after_s, drift, workload} (a fixed
workload timed before and after: the run's noise), ``noisy`` (names of figures whose rel_spread exceeds
``noise_threshold``), ``peak_rss_bytes``.

query@3: the build's ``dataset``, ``backend``, ``tier``, ``graph``, ``build`` plus ``query`` {ef_search, k,
n_queries, n_queries_requested, k_big, ef_effective (= max(ef_search, k): what a graph search really runs),
ef_effective_big (= max(ef_search, k_big), the setting of recall@k_big)}; from the median build: ``recall``
{"1", "10", "100"} (mean recall@k, distance ties tolerated), ``recall_strict`` {"10"} (ids only), ``perquery``
(:func:`ruvector_lab.bench.perquery.summarize_run`: the recall distribution, and recall per difficulty quintile),
``perquery_file``, ``latency_ms`` {p50, p95, p99, mean: median over timing repeats; ``spread`` {p50, p99};
``cpu_utilization``} (single queries, one caller, pools pinned to 1); ``direct`` (null for a backend without
a library call of its own: numpy, wasm, quantized indexes) {``latency_ms`` {facade, direct}, ``qps`` {facade,
direct}, ``overhead`` {latency_p50: facade p50 / direct p50, qps: direct QPS / facade QPS}} (the library called
directly on the median build: single queries dealt out alternately between it and the facade, whose half is the
record's ``latency_ms``; its 1-thread batch QPS beside the median build's own); over builds: ``recall_builds``
{"1", "10", "100": Spread}, ``qps`` {"<threads>": Spread + cpu_utilization + pools} (the batch split across that many
caller threads, every library pool pinned to 1 inside each worker), ``qps_pool`` {"<threads>": the same} (one caller,
the library's own pools at that many threads; a backend without a pool shows cpu_utilization about 1), ``builds``
[{seed, recall, recall_strict, qps_1t, p50_ms, perquery_file}], ``median_build``, ``repeats`` (timing repeats per
build), ``warmup``, ``noisy``, ``noise_threshold``, ``reference``, ``parallelism`` (what each mode means),
``peak_rss_bytes``.

quant@1: ``dataset``, ``codec`` {kind, m, bits, rotation, graph}, ``code_bytes``, ``codebook_bytes``,
``bytes_per_vector`` (code plus the codebooks shared over the base set), ``compression``, ``train_time_s``,
``encode_per_s``, ``quantize_single_ms`` {p50, p95, p99}, ``reconstruction_mse``, ``neighbourhood_order`` (mean
Spearman correlation of the codes' distance estimates with the true ones on each query's 100 true neighbours;
null without ground-truth neighbours), ``neighbourhood_error`` {spread, spread_share, error_to_spread} (the codec's
reconstruction error against the spread of a query's 100 true neighbours; null without them),
``rabitq_alignment`` (RaBitQ's mean <x̄, y>; null for other codecs), ``rerank`` [{factor, candidates, recall_at_1,
recall_at_10, qps}] (brute force over the codes, then the best ``factor * k`` candidates re-scored exactly;
factor 1 is no re-ranking).

adr@1: ``backend`` ('common' for the cases that do not depend on the index backend), ``cases`` {case: {``scope``
('backend' | 'common'), ``protocols`` {``adr``: the ADR's protocol (one input repeated), ``honest``: distinct
inputs} each {iterations, latency_ms {p50, p95, p99, mean}, ``judged_ms``, ``verdict``}, and for search
``recall_at_10``}}, ``config``, ``threads``. The ADR protocol is judged on the mean (the ADR's avgMs), the honest
one on p95; cases whose capability is absent are ``{'status': 'not available', 'reason': ...}``.

tune@1 (always status 'ok'; :meth:`ruvector_lab.bench.tune.TuneResult.to_dict`): ``dataset`` (the name), ``target``
(recall@k), ``objective`` (the headline one: 'qps', 'memory' or 'build-time'), ``study_name`` and ``storage`` (the
Optuna study, resumable), ``trials`` [{number, state, candidate {backend, m, ef_construction, quantization, rerank}
(null when the trial never got one), label, reused, pruned (why, or null), feasible, ef_search (the cheapest reaching
the target), recall, qps (1 thread), latency_ms, bytes_per_vector, bytes {rss_growth, serialized, analytic},
build_time_s, wall_s, host {name, fingerprint} and host_load (the host the evaluation ran on and its measuring load,
null where not recorded), datetime_start, datetime_complete}], ``pareto`` (the feasible trials no other beats on QPS,
bytes per vector and build time), ``recommended`` {objective: null (nothing met the target over the verification
builds) or the configuration with its ef_search, figures, ``verification`` {builds, median_recall, min_recall,
meets_target, figures (re-measured at a raised ef, else null), raised_ef_search {from, to}, remeasured [{ef_search,
recall}] (each fresh build the raised ef was measured on)} and ``rejected``
(configurations ranked above it that failed verification, or met the target only at a raised ef_search where it
does worse on the objective: then with a ``reason``)}, ``builds`` (distinct configurations built), ``wall_s``,
``answer`` (one line), ``grid`` (null without the grid reference, else {builds, wall_s, feasible, best, pareto,
tuner_best, tuner_builds, tuner_wall_s, builds_ratio, qps_ratio (tuner best QPS / grid best QPS), same_configuration,
within_tolerance, tolerance, replay ({} when not replayed; {seeds, status} when the grid has nothing feasible; else
{seeds, builds, qps_ratio [per seed], median_qps_ratio, within_tolerance (seeds within the tolerance),
fraction_within_tolerance})}), ``space``, ``settings`` (the trial settings, the executor, the most trials run at
once, the sampler), ``excluded``, ``memory_budget``, ``dataset_record`` (the dataset as build@2 has it).

peers@1 (:mod:`ruvector_lab.bench.peers`): ``dataset``, ``pair`` {name, first, second (backend names such as
``node:hnswlib-native``, ``browser:hnswlib-wasm``, ``python:rvf-wasm``), comparison, same (one algorithm on both
sides), same_algorithm (what the two really implement)}, ``n_queries`` (both sides the same), ``settings`` (the
params' peers section but its lists of datasets and pairs) and ``sides`` (two: {backend, runtime, tier, package,
version, status ('ok', 'not available' or 'failed', with a ``reason``), ``runs`` [one fresh process each: {status,
build_time_s, build_cpu_utilization, memory_bytes, memory_bytes_per_vector (null when the runtime's memory did not
grow), clock_resolution_ms, points [{ef_search (null: none), recall_at_10, latency_ms {p50, p95, p99, mean}, qps
(median of the batch repeats), qps_repeats, cpu_utilization}]} or {status, reason, drift}], and when 'ok':
algorithm, engine, threads (the pinned pools and the process's threads), memory_measure ('process RSS growth' for
native sides, 'wasm linear memory growth' for WASM ones), info, build_time_s and memory_bytes_per_vector (Spreads
over runs), ``sweep`` [per ef_search over runs: recall_at_10, latency_ms (medians), latency_p50 and qps
(Spreads)]}).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import DatasetError, ResultSchemaError
from .perquery import SCHEMA_PERQUERY
from .results import SCHEMA_ADR, SCHEMA_BUILD, SCHEMA_QUANT, SCHEMA_QUERY

#: the autotuner's study (:mod:`ruvector_lab.bench.tune` writes it under the same tag). Declared here rather than
#: imported: importing the tuner would make its whole measurement code a dependency of every reader (the report
#: stage's deps in dvc.yaml); tests/test_bench_schemas.py checks the two agree
SCHEMA_TUNE = "ruvector-lab/tune@1"
#: native vs WASM builds of one library (:mod:`ruvector_lab.bench.peers` imports the tag from here, so the readers
#: do not depend on its measurement code)
SCHEMA_PEERS = "ruvector-lab/peers@1"

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: the statuses a record may have; every status but 'ok' carries a reason and no figures
STATUSES = ("ok", "not available", "skipped")

# ------------------------------------------------------------------------------------------------ building blocks
_NUM = {"type": "number"}
_NUM_NULL = {"type": ["number", "null"]}
_INT = {"type": "integer"}
_INT_NULL = {"type": ["integer", "null"]}
_STR = {"type": "string"}
_STR_NULL = {"type": ["string", "null"]}
_OBJ = {"type": "object"}

_DEFS: dict[str, Any] = {
    "spread": {
        "type": "object",
        "required": ["median", "min", "max", "rel_spread"],
        "properties": {"median": _NUM, "min": _NUM, "max": _NUM, "rel_spread": _NUM_NULL,
                       "values": {"type": "array", "items": _NUM}},
    },
    "dataset": {
        "type": "object",
        "required": ["name", "n_train", "n_test", "dimensions", "metric"],
        "properties": {"name": _STR, "n_train": _INT, "n_test": _INT, "dimensions": _INT, "metric": _STR,
                       "gt_k": _INT, "content_hash": _STR},
    },
    "build": {
        "type": "object",
        "required": ["m", "ef_construction", "quantization"],
        # quantization: 'none' or a spec (kind[-m<M>][-r<R>]), a path component of the build's folder
        "properties": {"m": _INT, "ef_construction": _INT,
                       "quantization": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]*$"}},
    },
    # recall per k: {"1": 0.98, "10": 0.97, "100": 0.95}
    "recall": {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"}, "additionalProperties": _NUM},
    "reference": {
        "type": "object",
        "required": ["before_s", "after_s", "drift"],
        "properties": {"before_s": _NUM_NULL, "after_s": _NUM_NULL, "drift": _NUM_NULL, "workload": _STR},
    },
    "noisy": {"type": "array", "items": _STR},
    "percentiles": {
        "type": "object",
        "required": ["p50", "p95", "p99"],
        "properties": {"p50": _NUM, "p95": _NUM, "p99": _NUM, "mean": _NUM},
    },
    "absent": {
        "type": "object",
        "required": ["reason"],
        "properties": {"status": {"enum": ["not available", "skipped"]}, "reason": _STR},
    },
}


def _record(tag: str, ok: dict[str, Any], absent: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A record's schema: the tag and a status, then ``ok`` when the status is 'ok', else ``absent``."""
    return {
        "$schema": DRAFT,
        "$id": f"https://ruvector-lab.invalid/schemas/{tag.replace('/', '-').replace('@', '-')}.json",
        "title": tag,
        "type": "object",
        "required": ["schema", "status"],
        "properties": {"schema": {"const": tag}, "status": {"enum": list(STATUSES)},
                       "fingerprint": _STR, "code": _STR, "environment": _OBJ},
        "if": {"properties": {"status": {"const": "ok"}}},
        "then": ok,
        "else": {"allOf": [{"$ref": "#/$defs/absent"}, absent]},
        "$defs": {**_DEFS, **(defs or {})},
    }


# -------------------------------------------------------------------------------------------------------- build@2
_BUILD_RUN = {  # one build of a configuration (seeded insertion order)
    "type": "object",
    "required": ["seed", "build_time_s", "serialized_bytes"],
    "properties": {"seed": _INT, "order": _STR, "build_time_s": _NUM, "inserts_per_s": _NUM_NULL,
                   "cpu_utilization": _NUM_NULL, "threads": _OBJ, "serialized_bytes": _INT,
                   "serialize_time_s": _NUM, "index_stats": _OBJ,
                   "code_scan": {"type": "object", "required": ["recall", "candidates"],
                                 "properties": {"recall": _OBJ, "candidates": _INT, "seconds": _NUM}}},
}

_BYTES_PER_VECTOR = {
    "type": "object",
    "required": ["serialized", "analytic", "rss_growth", "child"],
    "properties": {
        "serialized": _NUM,
        # the layout's estimate, or why there is none
        "analytic": {"oneOf": [
            {"type": "object", "required": ["total"], "properties": {"total": _NUM, "vectors": _NUM, "graph": _NUM,
                                                                     "ids": _NUM, "other": _NUM}},
            {"type": "object", "required": ["status", "reason"], "properties": {"status": _STR, "reason": _STR}},
        ]},
        "rss_growth": _NUM_NULL,
        # the fresh child process's figures, or {status, reason} when it did not measure
        "child": {"type": "object", "properties": {"status": _STR, "reason": _STR, "peak_rss_bytes": _INT}},
    },
}

#: ``ruvector-lab/build@2``: one build configuration
BUILD: dict[str, Any] = _record(
    SCHEMA_BUILD,
    ok={
        "required": ["dataset", "backend", "tier", "graph", "build", "config", "builds", "median_build",
                     "build_time_s", "inserts_per_s", "threads", "serialized_bytes", "bytes_per_vector", "reference",
                     "noisy", "noise_threshold", "peak_rss_bytes"],
        "properties": {
            "dataset": {"$ref": "#/$defs/dataset"}, "backend": _STR, "tier": _STR,
            "graph": {"enum": ["hnsw", "flat"]}, "build": {"$ref": "#/$defs/build"}, "config": _OBJ,
            "builds": {"type": "array", "minItems": 1, "items": _BUILD_RUN}, "median_build": _INT,
            "build_time_s": {"$ref": "#/$defs/spread"}, "inserts_per_s": _NUM_NULL,
            "threads": {"type": "object", "required": ["threads"], "properties": {"threads": _INT}},
            "serialized_bytes": _INT, "bytes_per_vector": _BYTES_PER_VECTOR,
            "reference": {"$ref": "#/$defs/reference"}, "noisy": {"$ref": "#/$defs/noisy"},
            "noise_threshold": _NUM, "peak_rss_bytes": _INT_NULL,
        },
    },
    absent={
        "required": ["dataset", "backend", "tier", "build"],
        "properties": {"dataset": {"$ref": "#/$defs/dataset"}, "backend": _STR, "tier": _STR,
                       "build": {"$ref": "#/$defs/build"}},
    },
)

# -------------------------------------------------------------------------------------------------------- query@3
_QPS_FIGURE = {  # batch QPS at one thread count: a Spread plus the CPU that ran and the pools read back
    "allOf": [{"$ref": "#/$defs/spread"}],
    "properties": {"cpu_utilization": _NUM_NULL, "pools": _OBJ, "over": _STR},
}
_QPS = {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"}, "additionalProperties": _QPS_FIGURE}
_BIN = {
    "type": "object",
    "required": ["bin", "difficulty_min", "difficulty_max", "n_queries", "mean_recall", "p5_recall",
                 "n_nan_excluded"],
    "properties": {"bin": _INT, "difficulty_min": _NUM, "difficulty_max": _NUM, "n_queries": _INT,
                   "mean_recall": _NUM, "p5_recall": _NUM, "n_nan_excluded": _INT},
}
_PERQUERY_SUMMARY = {  # perquery.summarize_run
    "type": "object",
    "required": ["k", "n_queries", "recall_tolerant", "recall_strict_mean", "difficulty"],
    "properties": {
        "k": _INT, "n_queries": _INT, "recall_strict_mean": _NUM, "recall_tolerant_mean": _NUM,
        "recall_tolerant": {"type": "object", "required": ["n", "mean", "min", "p1", "p5", "p50", "share_below_0.5"],
                            "properties": {"n": _INT, "mean": _NUM, "min": _NUM, "p1": _NUM, "p5": _NUM,
                                           "p50": _NUM, "share_below_0.5": _NUM}},
        "difficulty": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["direction", "bins"],
            "properties": {"direction": _STR, "n_nan": _INT, "bins": {"type": "array", "items": _BIN}}}},
    },
}
_QUERY_BUILD = {  # one build's figures at this setting
    "type": "object",
    "required": ["seed", "recall", "recall_strict", "perquery_file"],
    "properties": {"seed": _INT, "recall": {"$ref": "#/$defs/recall"}, "recall_strict": {"$ref": "#/$defs/recall"},
                   "qps_1t": _NUM_NULL, "perquery_file": _STR},
}

_LATENCY = {"allOf": [{"$ref": "#/$defs/percentiles"}], "required": ["mean"],
            "properties": {"count": _INT, "cpu_utilization": _NUM_NULL,
                           "spread": {"type": "object", "additionalProperties": {"$ref": "#/$defs/spread"}}}}
_DIRECT = {  # runner.library_direct: the facade and its library measured together; null without a direct call
    "type": ["object", "null"],
    "required": ["latency_ms", "qps", "overhead"],
    "properties": {
        "latency_ms": {"type": "object", "required": ["facade", "direct"],
                       "properties": {"facade": _LATENCY, "direct": _LATENCY}},
        "qps": {"type": "object", "required": ["facade", "direct"],
                "properties": {"facade": _QPS_FIGURE, "direct": _QPS_FIGURE}},
        "overhead": {"type": "object", "required": ["latency_p50", "qps"],
                     "properties": {"latency_p50": _NUM, "qps": _NUM}},
    },
}

#: ``ruvector-lab/query@3``: one query setting of a build configuration
QUERY: dict[str, Any] = _record(
    SCHEMA_QUERY,
    ok={
        "required": ["dataset", "backend", "tier", "graph", "build", "query", "recall", "recall_strict",
                     "recall_builds", "perquery", "perquery_file", "latency_ms", "direct", "qps", "qps_pool", "builds",
                     "median_build", "repeats", "warmup", "noisy", "noise_threshold", "reference"],
        "properties": {
            "dataset": {"$ref": "#/$defs/dataset"}, "backend": _STR, "tier": _STR,
            "graph": {"enum": ["hnsw", "flat"]}, "build": {"$ref": "#/$defs/build"},
            "query": {"type": "object",
                      "required": ["ef_search", "k", "n_queries", "k_big", "ef_effective", "ef_effective_big"],
                      "properties": {"ef_search": _INT, "k": _INT, "n_queries": _INT, "n_queries_requested": _INT,
                                     "k_big": _INT, "ef_effective": _INT_NULL, "ef_effective_big": _INT_NULL}},
            "recall": {"$ref": "#/$defs/recall"}, "recall_strict": {"$ref": "#/$defs/recall"},
            "recall_builds": {"type": "object", "additionalProperties": {"$ref": "#/$defs/spread"}},
            "perquery": _PERQUERY_SUMMARY, "perquery_file": _STR,
            "latency_ms": _LATENCY,
            "direct": _DIRECT,
            "qps": {**_QPS, "required": ["1"]}, "qps_pool": _QPS,
            "builds": {"type": "array", "minItems": 1, "items": _QUERY_BUILD}, "median_build": _INT,
            "repeats": _INT, "warmup": _INT, "noisy": {"$ref": "#/$defs/noisy"}, "noise_threshold": _NUM,
            "reference": {"$ref": "#/$defs/reference"}, "parallelism": _OBJ, "peak_rss_bytes": _INT_NULL,
        },
    },
    absent={
        "required": ["dataset", "backend", "build"],
        "properties": {"dataset": {"$ref": "#/$defs/dataset"}, "backend": _STR, "build": {"$ref": "#/$defs/build"}},
    },
)

# -------------------------------------------------------------------------------------------------------- quant@1
#: ``ruvector-lab/quant@1``: one codec's sweep on one dataset
QUANT: dict[str, Any] = _record(
    SCHEMA_QUANT,
    ok={
        "required": ["dataset", "spec", "codec", "code_bytes", "codebook_bytes", "bytes_per_vector", "compression",
                     "train_time_s", "encode_per_s", "quantize_single_ms", "reconstruction_mse", "rerank"],
        "properties": {
            "dataset": {"$ref": "#/$defs/dataset"}, "spec": _STR,
            "codec": {"type": "object", "required": ["kind"],
                      "properties": {"kind": _STR, "m": _INT_NULL, "bits": _INT_NULL, "rotation": _STR_NULL,
                                     "graph": _STR_NULL}},
            "code_bytes": _INT, "codebook_bytes": _INT, "bytes_per_vector": _NUM, "compression": _NUM,
            "train_time_s": _NUM, "encode_per_s": _NUM_NULL, "quantize_single_ms": {"$ref": "#/$defs/percentiles"},
            "reconstruction_mse": _NUM, "neighbourhood_order": _NUM_NULL, "rabitq_alignment": _NUM_NULL,
            "neighbourhood_error": {"type": ["object", "null"], "required": ["spread", "spread_share",
                                    "error_to_spread"], "properties": {"spread": _NUM, "spread_share": _NUM,
                                                                       "error_to_spread": _NUM}},
            "rerank": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["factor", "candidates", "recall_at_1", "recall_at_10", "qps"],
                "properties": {"factor": {"type": "integer", "minimum": 1}, "candidates": _INT,
                               "recall_at_1": _NUM, "recall_at_10": _NUM, "qps": _NUM}}},
            "n_queries": _INT, "k": _INT,
        },
    },
    absent={
        "required": ["dataset", "spec"],
        "properties": {"dataset": {"type": "object", "required": ["name"], "properties": {"name": _STR}},
                       "spec": _STR},
    },
)

# ---------------------------------------------------------------------------------------------------------- adr@1
_PROTOCOL = {
    "type": "object",
    "required": ["iterations", "latency_ms", "judged_ms", "verdict"],
    "properties": {"iterations": _INT, "latency_ms": {"$ref": "#/$defs/percentiles"}, "judged_ms": _NUM_NULL,
                   "verdict": {"enum": ["pass", "fail", "no target", "not available"]}},
}
_CASE = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"enum": ["ok", "not available"]}, "scope": {"enum": ["backend", "common"]}},
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"required": ["protocols"],
             "properties": {"protocols": {"type": "object", "required": ["adr", "honest"],
                                          "additionalProperties": {"$ref": "#/$defs/protocol"}},
                            "recall_at_10": _NUM_NULL, "info": _OBJ}},
    "else": {"required": ["reason"], "properties": {"reason": _STR}},
}

#: ``ruvector-lab/adr@1``: the ADR-006 suite on one backend ('common': the cases that do not depend on it)
ADR: dict[str, Any] = _record(
    SCHEMA_ADR,
    ok={
        "required": ["backend", "cases", "config", "threads"],
        "properties": {"backend": _STR, "tier": _STR, "cases": {"type": "object",
                                                                "additionalProperties": {"$ref": "#/$defs/case"}},
                       "config": _OBJ, "threads": _OBJ},
        # every backend but 'common' names its tier
        "if": {"properties": {"backend": {"not": {"const": "common"}}}},
        "then": {"required": ["tier"]},
    },
    absent={
        "required": ["backend"],
        "properties": {"backend": _STR, "cases": {"type": "object", "maxProperties": 0}},
    },
    defs={"protocol": _PROTOCOL, "case": _CASE},
)

# --------------------------------------------------------------------------------------------------------- tune@1
_CANDIDATE = {
    "type": "object",
    "required": ["backend", "m", "ef_construction", "quantization", "rerank"],
    "properties": {"backend": _STR, "m": _INT, "ef_construction": _INT, "quantization": _STR, "rerank": _INT},
}
_TUNE_BYTES = {"type": ["object", "null"], "properties": {"rss_growth": _NUM_NULL, "serialized": _NUM_NULL,
                                                          "analytic": _NUM_NULL}}
_TUNE_LATENCY = {"oneOf": [{"$ref": "#/$defs/percentiles"}, {"type": "null"}]}
_TUNE_TRIAL = {  # one Optuna trial; a pruned or failed one has nulls where it has no figures
    "type": "object",
    "required": ["number", "state", "candidate", "label", "feasible", "ef_search", "recall", "qps",
                 "bytes_per_vector", "build_time_s"],
    "properties": {
        "number": _INT, "state": _STR, "candidate": {"oneOf": [{"$ref": "#/$defs/candidate"}, {"type": "null"}]},
        "label": {"type": ["string", "null"]}, "reused": {"type": ["boolean", "null"]},
        "pruned": {"type": ["string", "null"]}, "feasible": {"type": ["boolean", "null"]}, "ef_search": _INT_NULL,
        "recall": _NUM_NULL, "qps": _NUM_NULL, "latency_ms": _TUNE_LATENCY, "bytes_per_vector": _NUM_NULL,
        "bytes": _TUNE_BYTES, "build_time_s": _NUM_NULL, "wall_s": _NUM_NULL,
        "host": {"type": ["object", "null"]}, "host_load": {"type": ["object", "null"]},
        "datetime_start": {"type": ["string", "null"]}, "datetime_complete": {"type": ["string", "null"]},
    },
}
_TUNE_POINT = {  # a feasible configuration's figures at the cheapest ef_search reaching the target
    "type": "object",
    "required": ["candidate", "label", "ef_search", "recall", "qps", "bytes_per_vector", "build_time_s"],
    "properties": {"candidate": {"$ref": "#/$defs/candidate"}, "label": _STR, "feasible": {"const": True},
                   "ef_search": _INT, "recall": _NUM, "qps": _NUM, "latency_ms": _TUNE_LATENCY,
                   "bytes_per_vector": _NUM, "bytes": _TUNE_BYTES, "build_time_s": _NUM},
}
_VERIFICATION = {  # the recommendation rebuilt with other seeds
    "type": "object",
    "required": ["meets_target", "builds"],
    "properties": {
        "meets_target": {"type": "boolean"}, "ef_search": _INT, "median_recall": _NUM, "min_recall": _NUM,
        "builds": {"type": "array", "items": {"type": "object", "required": ["seed"], "properties": {
            "seed": _INT, "recall": _NUM, "own_ef_search": _INT_NULL, "failed": {"type": ["string", "null"]}}}},
        "figures": {"type": ["object", "null"]}, "reason": {"type": ["string", "null"]},
        "raised_ef_search": {"type": "object", "required": ["from", "to"], "properties": {"from": _INT, "to": _INT}},
        "remeasured": {"type": "array", "items": {"type": "object", "required": ["ef_search", "recall"],
                                                  "properties": {"ef_search": _INT, "recall": _NUM}}},
    },
}
_RECOMMENDATION = {
    "oneOf": [{"type": "null"}, {
        "type": "object",
        "allOf": [{"$ref": "#/$defs/candidate"}],
        "required": ["label", "spec", "ef_search", "dimensions", "metric", "recall", "qps", "latency_ms",
                     "bytes_per_vector", "bytes", "build_time_s", "verification", "rejected"],
        "properties": {"label": _STR, "spec": _STR, "ef_search": _INT, "dimensions": _INT, "metric": _STR,
                       "recall": _NUM, "qps": _NUM, "latency_ms": {"$ref": "#/$defs/percentiles"},
                       "bytes_per_vector": _NUM, "bytes": _TUNE_BYTES, "build_time_s": _NUM,
                       "verification": {"$ref": "#/$defs/verification"},
                       "rejected": {"type": "array", "items": {"type": "object", "required": ["label"]}}},
    }],
}
_REPLAY = {  # {} when not replayed; {seeds, status} when the grid has nothing feasible
    "type": "object",
    "properties": {"seeds": {"type": "array", "items": _INT}, "status": _STR, "builds": _INT,
                   "qps_ratio": {"type": "array", "items": _NUM}, "median_qps_ratio": _NUM,
                   "within_tolerance": _INT, "fraction_within_tolerance": _NUM},
    "anyOf": [{"maxProperties": 0}, {"required": ["seeds", "status"]},
              {"required": ["seeds", "builds", "qps_ratio", "median_qps_ratio", "within_tolerance",
                            "fraction_within_tolerance"]}],
}
_GRID = {
    "oneOf": [{"type": "null"}, {
        "type": "object",
        "required": ["builds", "wall_s", "feasible", "best", "pareto", "tuner_best", "tuner_builds", "tuner_wall_s",
                     "builds_ratio", "qps_ratio", "same_configuration", "within_tolerance", "tolerance", "replay"],
        "properties": {
            "builds": _INT, "wall_s": _NUM, "feasible": _INT,
            "best": {"oneOf": [{"$ref": "#/$defs/point"}, {"type": "null"}]},
            "pareto": {"type": "array", "items": {"$ref": "#/$defs/point"}},
            "tuner_best": {"oneOf": [{"$ref": "#/$defs/point"}, {"type": "null"}]},
            "tuner_builds": _INT, "tuner_wall_s": _NUM, "builds_ratio": _NUM_NULL, "qps_ratio": _NUM_NULL,
            "same_configuration": {"type": "boolean"}, "within_tolerance": {"type": "boolean"}, "tolerance": _NUM,
            "replay": {"$ref": "#/$defs/replay"},
        },
    }],
}

#: ``ruvector-lab/tune@1``: one autotuner study (a dataset and a recall target)
TUNE: dict[str, Any] = _record(
    SCHEMA_TUNE,
    ok={
        "required": ["dataset", "target", "objective", "study_name", "storage", "trials", "pareto", "recommended",
                     "builds", "wall_s", "answer", "grid", "space", "settings", "excluded", "memory_budget"],
        "properties": {
            "dataset": _STR, "target": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "objective": {"enum": ["qps", "memory", "build-time"]}, "study_name": _STR, "storage": _STR,
            "trials": {"type": "array", "items": {"$ref": "#/$defs/trial"}},
            "pareto": {"type": "array", "items": {"$ref": "#/$defs/point"}},
            "recommended": {"type": "object", "required": ["qps", "memory", "build-time"],
                            "additionalProperties": {"$ref": "#/$defs/recommendation"}},
            "builds": _INT, "wall_s": _NUM, "answer": _STR, "grid": {"$ref": "#/$defs/grid"}, "space": _OBJ,
            "settings": _OBJ, "excluded": {"type": "object", "additionalProperties": _STR},
            "memory_budget": _NUM_NULL, "dataset_record": {"$ref": "#/$defs/dataset"},
        },
    },
    absent={"required": ["dataset"], "properties": {"dataset": _STR}},
    defs={"candidate": _CANDIDATE, "trial": _TUNE_TRIAL, "point": _TUNE_POINT, "verification": _VERIFICATION,
          "recommendation": _RECOMMENDATION, "replay": _REPLAY, "grid": _GRID},
)

# -------------------------------------------------------------------------------------------------------- peers@1
_PEER_POINT = {  # one process's figures at one ef_search (null: the side has none)
    "type": "object",
    "required": ["ef_search", "recall_at_10", "latency_ms", "qps", "qps_repeats"],
    "properties": {"ef_search": _INT_NULL, "recall_at_10": {"type": "number", "minimum": 0, "maximum": 1},
                   "latency_ms": {"$ref": "#/$defs/percentiles"}, "qps": _NUM,
                   "qps_repeats": {"type": "array", "items": _NUM, "minItems": 1}, "cpu_utilization": _NUM_NULL},
}
_PEER_RUN = {  # one fresh process of a side: its figures, or why it gave none
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"enum": ["ok", "not available", "failed"]}},
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"required": ["build_time_s", "memory_bytes", "memory_bytes_per_vector", "n_queries", "k", "points"],
             "properties": {"build_time_s": _NUM, "build_cpu_utilization": _NUM_NULL, "memory_bytes": _NUM_NULL,
                            "memory_bytes_per_vector": _NUM_NULL, "clock_resolution_ms": _NUM_NULL,
                            "n_queries": _INT, "k": _INT,
                            "points": {"type": "array", "items": {"$ref": "#/$defs/peer_point"}, "minItems": 1}}},
    "else": {"required": ["reason"], "properties": {"reason": _STR, "drift": {"type": "boolean"}}},
}
_PEER_SWEEP = {  # a side's figures at one ef_search over its runs
    "type": "object",
    "required": ["ef_search", "recall_at_10", "latency_ms", "latency_p50", "qps"],
    "properties": {"ef_search": _INT_NULL, "recall_at_10": _NUM, "latency_ms": {"$ref": "#/$defs/percentiles"},
                   "latency_p50": {"$ref": "#/$defs/spread"}, "qps": {"$ref": "#/$defs/spread"},
                   "cpu_utilization": _NUM_NULL},
}
_PEER_SIDE = {
    "type": "object",
    "required": ["backend", "runtime", "tier", "package", "status", "runs"],
    "properties": {"backend": {"type": "string", "pattern": "^(node|browser|python):[a-z0-9-]+$"},
                   "runtime": {"enum": ["node", "browser", "python"]}, "tier": {"enum": ["native", "wasm"]},
                   "package": _STR, "version": _STR_NULL, "status": {"enum": ["ok", "not available", "failed"]},
                   "runs": {"type": "array", "items": {"$ref": "#/$defs/peer_run"}}},
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"required": ["algorithm", "engine", "threads", "memory_measure", "sweep", "build_time_s",
                          "memory_bytes_per_vector"],
             "properties": {"algorithm": _STR, "engine": _OBJ, "threads": _OBJ, "memory_measure": _STR_NULL,
                            "info": _OBJ, "sweep": {"type": "array", "items": {"$ref": "#/$defs/peer_sweep"},
                                                    "minItems": 1},
                            "build_time_s": {"$ref": "#/$defs/spread"},
                            "memory_bytes_per_vector": {"oneOf": [{"$ref": "#/$defs/spread"}, {"type": "null"}]}}},
    "else": {"required": ["reason"], "properties": {"reason": _STR}},
}
_PEER_PAIR = {
    "type": "object",
    "required": ["name", "first", "second", "comparison", "same", "same_algorithm"],
    "properties": {"name": _STR, "first": _STR, "second": _STR, "comparison": _STR, "same": {"type": "boolean"},
                   "same_algorithm": _STR},
}

#: ``ruvector-lab/peers@1``: one pair of builds (native vs WASM, or one module in two engines) on one dataset
PEERS: dict[str, Any] = _record(
    SCHEMA_PEERS,
    ok={
        "required": ["dataset", "pair", "sides", "settings", "n_queries"],
        "properties": {"dataset": {"$ref": "#/$defs/dataset"}, "pair": {"$ref": "#/$defs/peer_pair"},
                       "sides": {"type": "array", "items": {"$ref": "#/$defs/peer_side"}, "minItems": 2,
                                 "maxItems": 2},
                       "settings": _OBJ, "n_queries": _INT},
    },
    absent={"required": ["pair"], "properties": {"pair": {"$ref": "#/$defs/peer_pair"}}},
    defs={"peer_point": _PEER_POINT, "peer_run": _PEER_RUN, "peer_sweep": _PEER_SWEEP, "peer_side": _PEER_SIDE,
          "peer_pair": _PEER_PAIR},
)

#: every JSON schema, by tag
SCHEMAS: dict[str, dict[str, Any]] = {SCHEMA_BUILD: BUILD, SCHEMA_QUERY: QUERY, SCHEMA_QUANT: QUANT, SCHEMA_ADR: ADR,
                                      SCHEMA_TUNE: TUNE, SCHEMA_PEERS: PEERS}


# ---------------------------------------------------------------------------------------------- perquery@1 (HDF5)
@dataclass(frozen=True)
class H5Array:
    """One dataset an HDF5 result file holds: its name, number of dimensions, the numpy dtype kinds it may have
    ('i' signed integer, 'f' float), whether it must be there, and which array it must agree with (``like``:
    the same shape; ``rows_of``: one value per row of it)."""

    name: str
    ndim: int
    kinds: str
    required: bool = True
    like: str | None = None
    rows_of: str | None = None


@dataclass(frozen=True)
class H5Layout:
    """An HDF5 result format: the root attribute ``schema`` holds ``tag``; ``attrs`` are the other root
    attributes it must have; ``arrays`` the datasets."""

    tag: str
    arrays: tuple[H5Array, ...]
    attrs: tuple[str, ...] = ()


#: ``ruvector-lab/perquery@1`` (see :mod:`ruvector_lab.bench.perquery`): ``neighbors`` (m, k) int64 ids (-1: no
#: result), ``distances`` (m, k) their true distances, optional ``times`` (m,) seconds per query; the run's scalar
#: attributes as root attributes and the rest JSON-encoded in the attribute ``run``
PERQUERY = H5Layout(
    tag=SCHEMA_PERQUERY,
    arrays=(H5Array("neighbors", 2, "i"), H5Array("distances", 2, "f", like="neighbors"),
            H5Array("times", 1, "f", required=False, rows_of="neighbors")),
    attrs=("run",),
)

#: every HDF5 layout, by tag
LAYOUTS: dict[str, H5Layout] = {SCHEMA_PERQUERY: PERQUERY}


# ------------------------------------------------------------------------------------------------------ checking
def _where(record: Mapping[str, Any] | None, path: str | os.PathLike[str] | None) -> str:
    if path is not None:
        return str(path)
    if isinstance(record, Mapping) and record.get("_path"):
        return str(record["_path"])
    return "a record not read from a file"


@cache
def _validator(tag: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(SCHEMAS[tag])


def _known() -> str:
    return ", ".join(sorted(SCHEMAS))


def validate(record: Any, path: str | os.PathLike[str] | None = None,
             expect: str | Collection[str] | None = None) -> str:
    """The schema tag of ``record`` once it matches that tag's schema.

    Raises :class:`~ruvector_lab.errors.ResultSchemaError`, naming the file (``path``, else the record's
    ``_path``) and the tag, for a record that is not a JSON object, has no ``schema`` tag or one this version does
    not know, has a tag other than ``expect`` (a tag or a collection of tags; None: any known tag), or does not
    match its schema (the message is jsonschema's, with the place in the record).
    """
    where = _where(record, path)
    shown = str(path) if path is not None else None
    if not isinstance(record, Mapping):
        raise ResultSchemaError(f"{where}: a result record must be a JSON object, got {type(record).__name__}",
                                shown, None)
    tag = record.get("schema")
    status = record.get("status")
    if tag is None:
        raise ResultSchemaError(f"{where}: no schema tag (key 'schema'); known tags: {_known()}", shown, None)
    if not isinstance(tag, str) or tag not in SCHEMAS:
        raise ResultSchemaError(f"{where}: unknown schema tag {tag!r}; known tags: {_known()}", shown, str(tag))
    if expect is not None:
        wanted = {expect} if isinstance(expect, str) else set(expect)
        if tag not in wanted:
            raise ResultSchemaError(f"{where}: holds a {tag!r} record where {' or '.join(sorted(wanted))} is "
                                    "expected", shown, tag)
    if status not in STATUSES:
        raise ResultSchemaError(f"{where}: {tag} record has status {status!r}; expected one of "
                                f"{', '.join(map(repr, STATUSES))}", shown, tag)
    from jsonschema.exceptions import best_match

    error = best_match(_validator(tag).iter_errors(dict(record)))
    if error is not None:
        raise ResultSchemaError(f"{where}: {tag} record does not match its schema at {error.json_path}: "
                                f"{error.message}", shown, tag)
    return tag


def validate_hdf5(path: str | os.PathLike[str], layout: H5Layout | None = None) -> str:
    """The schema tag of the HDF5 result file at ``path`` once its root attributes and datasets match the layout
    of that tag (or ``layout``, which then also fixes the tag).

    Raises :class:`~ruvector_lab.errors.ResultSchemaError` (naming the file and the tag) for a missing or unknown
    tag, a missing attribute or dataset, or a dataset of the wrong dimensions, dtype or shape;
    :class:`~ruvector_lab.errors.DatasetError` when the file is missing or is not readable HDF5 (truncated).
    """
    import h5py
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"no HDF5 result file at {p}")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DatasetError(f"{p} is not a readable HDF5 file: {exc}") from None
    with f:
        raw = f.attrs.get("schema")
        tag = raw.decode() if isinstance(raw, bytes) else raw
        if tag is None:
            raise ResultSchemaError(f"{p}: no schema tag (root attribute 'schema'); known HDF5 tags: "
                                    f"{', '.join(sorted(LAYOUTS))}", str(p), None)
        want = layout or LAYOUTS.get(str(tag))
        if want is None or want.tag != tag:
            expected = want.tag if want is not None else ", ".join(sorted(LAYOUTS))
            raise ResultSchemaError(f"{p}: unknown schema tag {tag!r}; expected {expected}", str(p), str(tag))
        missing = [name for name in want.attrs if name not in f.attrs]
        if missing:
            raise ResultSchemaError(f"{p}: {tag} file lacks the root attribute(s) {missing}", str(p), tag)
        shapes: dict[str, tuple[int, ...]] = {}
        for arr in want.arrays:
            if arr.name not in f:
                if arr.required:
                    raise ResultSchemaError(f"{p}: {tag} file lacks the dataset {arr.name!r}", str(p), tag)
                continue
            node = f[arr.name]
            if not isinstance(node, h5py.Dataset):
                raise ResultSchemaError(f"{p}: {tag} file: {arr.name!r} is not a dataset", str(p), tag)
            shape, kind = tuple(node.shape), np.dtype(node.dtype).kind
            if len(shape) != arr.ndim or kind not in arr.kinds:
                raise ResultSchemaError(f"{p}: {tag} file: dataset {arr.name!r} is {len(shape)}-D {node.dtype}, "
                                        f"expected {arr.ndim}-D of kind {arr.kinds!r}", str(p), tag)
            if arr.like is not None and arr.like in shapes and shape != shapes[arr.like]:
                raise ResultSchemaError(f"{p}: {tag} file: {arr.name!r} {shape} does not match {arr.like!r} "
                                        f"{shapes[arr.like]}", str(p), tag)
            if arr.rows_of is not None and arr.rows_of in shapes and shape[:1] != shapes[arr.rows_of][:1]:
                raise ResultSchemaError(f"{p}: {tag} file: {arr.name!r} {shape} has not one value per row of "
                                        f"{arr.rows_of!r} {shapes[arr.rows_of]}", str(p), tag)
            shapes[arr.name] = shape
    return str(tag)


def check_schemas() -> None:
    """Check every schema of :data:`SCHEMAS` against the JSON Schema draft 2020-12 meta-schema (raises
    ``jsonschema.SchemaError``)."""
    from jsonschema import Draft202012Validator

    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


__all__ = ["ADR", "BUILD", "DRAFT", "LAYOUTS", "PEERS", "PERQUERY", "QUANT", "QUERY", "SCHEMAS", "SCHEMA_PEERS",
           "SCHEMA_TUNE", "STATUSES", "TUNE", "H5Array", "H5Layout", "check_schemas", "validate", "validate_hdf5"]
