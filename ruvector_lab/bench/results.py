"""Where results live and what they hold: one JSON file per run under a path derived from its parameters.

The notebooks and the report read these files; the schemas below are stable (a change bumps the ``schema`` tag).

Layout under the results root (``data/results`` in the pipeline)::

    runs/<dataset>/<backend>/<build-key>/build.json            one build configuration (schema ruvector-lab/build@2)
    runs/<dataset>/<backend>/<build-key>/query-ef<ef>-k<k>.json one query setting     (schema ruvector-lab/query@2)
    runs/<dataset>/<backend>/<build-key>/perquery/query-ef<ef>-k<k>-b<build>.h5
                                                     every query's ids and true distances (ruvector-lab/perquery@1)
    quant/<dataset>/<codec-key>.json                            one codec sweep   (schema ruvector-lab/quant@1)
    adr/<backend>.json, adr/common.json                         the ADR-006 suite (schema ruvector-lab/adr@1)

``<build-key>`` is ``M<m>-efc<ef_construction>-<quantization>`` (quantization ``none`` or a spec
``kind[-m<M>][-r<R>]``: ``scalar``, ``int4``, ``binary``, ``rabitq``, ``product-m48``, ``scalar-r40`` with 40
candidates re-scored exactly); ``<codec-key>`` is the spec alone. Quantized HNSW builds of the quantize stage live
under ``qhnsw/<dataset>/runs/...`` with the same schemas.

Every file holds ``schema``, ``status`` (``'ok'``; ``'not available'`` with a ``reason``: a backend or codec that
is absent here is recorded as absent, never faked; or ``'skipped'`` with a ``reason``, for a build the params'
``bench.max_train`` budget leaves out), ``fingerprint`` (parameters, the dataset's content hash, library versions
and a hash of the source files the measurement runs through: a finished run with the same fingerprint is skipped
unless forced, so an edit to one backend repeats only that backend's runs, and new vectors under an old name
repeat every run on them), ``code`` (a hash of the whole library, for provenance) and ``environment`` (library
versions, CPU model, cores, memory; see :func:`ruvector_lab.bench.env.environment`).

A Spread is {median, min, max, rel_spread ((max-min)/median), values}. Graph configurations are built
``builds`` times (seeded insertion orders, ``bench.build_repeats``); flat indexes once.

build@2 (``status == 'ok'``): ``dataset`` {name, n_train, n_test, dimensions, metric, gt_k, content_hash},
``backend``, ``tier``, ``graph`` ('hnsw' | 'flat'), ``build`` {m, ef_construction, quantization}, ``config``,
``builds`` [{seed, order, build_time_s, inserts_per_s, cpu_utilization, threads, serialized_bytes,
serialize_time_s}], ``median_build`` (index into builds), ``build_time_s`` (Spread over builds),
``inserts_per_s`` (at the median time), ``threads`` (the pinned counts read back: threads, faiss_omp, openmp,
blas, library_pools, ruvector_rayon), ``serialized_bytes``, ``bytes_per_vector`` {serialized, analytic {vectors,
graph, ids, total, ...}, rss_growth (resident-memory growth per vector of the build in a fresh child process),
child (that process's figures, or {status, reason})}, ``reference`` {before_s, after_s, drift, workload} (a fixed
workload timed before and after: the run's noise), ``noisy`` (names of figures whose rel_spread exceeds
``noise_threshold``), ``peak_rss_bytes``.

query@2: the build's ``dataset``, ``backend``, ``tier``, ``graph``, ``build`` plus ``query`` {ef_search, k,
n_queries, n_queries_requested, k_big, ef_effective (= max(ef_search, k): what a graph search really runs),
ef_effective_big (= max(ef_search, k_big), the setting of recall@k_big)}; from the median build: ``recall``
{"1", "10", "100"} (mean recall@k, distance ties tolerated), ``recall_strict`` {"10"} (ids only), ``perquery``
(:func:`ruvector_lab.bench.perquery.summarize_run`: the recall distribution, and recall per difficulty quintile),
``perquery_file``, ``latency_ms`` {p50, p95, p99, mean: median over timing repeats; ``spread`` {p50, p99};
``cpu_utilization``} (single queries, one caller, pools pinned to 1); over builds: ``recall_builds`` {"1", "10",
"100": Spread}, ``qps`` {"<threads>": Spread + cpu_utilization + pools} (the batch split across that many caller
threads, every library pool pinned to 1 inside each worker), ``qps_pool`` {"<threads>": the same} (one caller, the
library's own pools at that many threads; a backend without a pool shows cpu_utilization about 1), ``builds``
[{seed, recall, recall_strict, qps_1t, p50_ms, perquery_file}], ``median_build``, ``repeats`` (timing repeats per
build), ``warmup``, ``noisy``, ``noise_threshold``, ``reference``, ``parallelism`` (what each mode means),
``peak_rss_bytes``.

quant@1: ``dataset``, ``codec`` {kind, m, bits}, ``code_bytes``, ``codebook_bytes``, ``bytes_per_vector`` (code plus
the codebooks shared over the base set), ``compression``, ``train_time_s``, ``encode_per_s``,
``quantize_single_ms`` {p50, p95, p99}, ``reconstruction_mse``, ``rerank`` [{factor, candidates, recall_at_1,
recall_at_10, qps}] (brute force over the codes, then the best ``factor * k`` candidates re-scored exactly;
factor 1 is no re-ranking).

adr@1: ``backend`` ('common' for the cases that do not depend on the index backend), ``cases`` {case: {``scope``
('backend' | 'common'), ``protocols`` {``adr``: the ADR's protocol (one input repeated), ``honest``: distinct
inputs} each {iterations, latency_ms {p50, p95, p99, mean}, ``judged_ms``, ``verdict``}, and for search
``recall_at_10``}}, ``config``, ``threads``. The ADR protocol is judged on the mean (the ADR's avgMs), the honest
one on p95; cases whose capability is absent are ``{'status': 'not available', 'reason': ...}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import container
from ..errors import InvalidParameterError

SCHEMA_BUILD = "ruvector-lab/build@2"
SCHEMA_QUERY = "ruvector-lab/query@2"
SCHEMA_QUANT = "ruvector-lab/quant@1"
SCHEMA_ADR = "ruvector-lab/adr@1"

_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_component(value: str, what: str) -> str:
    """A path component made only of letters, digits, '-', '_' and '.', and not '.' or '..'."""
    if not isinstance(value, str) or not value or set(value) - _SAFE or value in {".", ".."}:
        raise InvalidParameterError(f"{what} {value!r} must be letters, digits, '-', '_' or '.'")
    return value


def build_key(m: int, ef_construction: int, quantization: str = "none") -> str:
    """``M16-efc100-none``: the folder of one build's results."""
    return f"M{int(m)}-efc{int(ef_construction)}-{check_component(quantization, 'quantization')}"


def run_dir(root: str | os.PathLike[str], dataset: str, backend: str, key: str) -> Path:
    """The folder holding one build's build.json and its query runs."""
    return Path(root) / "runs" / check_component(dataset, "dataset") / check_component(backend, "backend") / key


def query_file(directory: Path, ef_search: int, k: int) -> Path:
    """The JSON of one query setting inside a build folder."""
    return directory / f"query-ef{int(ef_search)}-k{int(k)}.json"


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the library's source files except the report and CLI (which do not change measurements)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel in {"bench/report.py", "cli.py"}:
            continue
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: the facade and protocol every backend's measurement goes through
_COMMON_CODE = ("index.py", "types.py", "_rwlock.py", "container.py", "validation.py", "kernels.py", "pools.py",
                "backends/__init__.py", "backends/base.py", "bench/runner.py", "bench/metrics.py", "bench/timer.py",
                "bench/threads.py", "bench/perquery.py", "bench/memory.py")


def measured_code_hash(backend: str | None = None, quantized: bool = False) -> str:
    """sha256 over the source files a measurement of ``backend`` runs through: the facade and protocol, the
    backend's module (and the WASM runtime for 'wasm'), the quantization package and quantized backends when the
    build is quantized. An edit elsewhere leaves it unchanged, so it does not repeat unrelated finished runs."""
    package = Path(__file__).resolve().parents[1]
    files = [package / rel for rel in _COMMON_CODE]
    if backend is not None:
        from ..backends import BACKENDS

        module = BACKENDS.get(backend, ("", ""))[0].rsplit(".", 1)[-1]
        files.append(package / "backends" / f"{module}.py")
        if backend == "wasm":
            files += sorted((package / "wasm").glob("*.py"))
    if quantized:
        files += sorted((package / "quantization").glob("*.py")) + sorted((package / "backends").glob("*.py"))
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    return digest.hexdigest()[:16]


def fingerprint(params: dict[str, Any], code: str = "") -> str:
    """Parameters, the versions of the measured libraries and ``code`` (a :func:`measured_code_hash`), as one short
    hex string: a finished run with the same fingerprint is not repeated unless forced."""
    from .env import library_versions

    blob = json.dumps({"params": params, "libraries": library_versions(), "code": code}, sort_keys=True,
                      default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_json(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write ``record`` as indented JSON, atomically."""
    record = {**record, "code": code_hash()} if "schema" in record else record
    data = json.dumps(record, indent=1, sort_keys=True, default=_jsonable, allow_nan=True).encode()
    out = container.write_atomic(path, data + b"\n")
    os.chmod(out, 0o644)  # results are for reading by notebooks and other users, not secrets
    return out


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot store {type(value).__name__} in a result")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record at ``path``, or None if it is missing or unreadable (an interrupted run counts as not done)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(path: str | os.PathLike[str], fp: str) -> bool:
    """True when ``path`` holds a finished (status ok) run with fingerprint ``fp``."""
    record = read_json(path)
    return bool(record) and record.get("status") == "ok" and record.get("fingerprint") == fp


def collect(root: str | os.PathLike[str], pattern: str) -> list[dict[str, Any]]:
    """Every readable record under ``root`` matching the glob ``pattern``, each with its ``_path``."""
    out = []
    for path in sorted(Path(root).glob(pattern)):
        record = read_json(path)
        if record is not None:
            record["_path"] = str(path)
            out.append(record)
    return out
