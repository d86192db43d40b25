"""Native vs WASM on the same algorithm, in the ADR's own runtimes: the published npm builds of one library measured
side by side (the DVC stage ``node-peers``, ``ruvector-lab peers DATASET``).

A *pair* is two *sides*: one library's native build and its WASM build (``hnswlib-node`` / ``hnswlib-wasm``,
``@ruvector/rvf-node`` / ``@ruvector/rvf-wasm``, ``@ruvector/core`` / ``@ruvector/wasm``), or one WASM module in two
engines (``@ruvector/rvf-wasm`` in Node's V8 and in Python's wasmtime). :data:`PAIRS` and :data:`SIDES` are the one
home of what each side is. Each side runs in its own process, ``runs`` times, the sides alternating so that drift on
a shared machine falls on both:

- Node sides: ``node peers/runner.mjs SPEC.json`` (``peers/sides-node.mjs``);
- browser sides (WASM builds made for the web only, e.g. ``hnswlib-wasm``): the same runner serves
  ``peers/page.html`` from 127.0.0.1 to headless Chromium with every other host unresolvable;
- the Python side: ``python -m ruvector_lab.bench.peers SPEC.json``, the rvf module through wasmtime
  (:mod:`ruvector_lab.wasm.rvf`).

All three run one protocol (``peers/protocol.mjs``, mirrored by :func:`measure_python`): build with the same M,
ef_construction and metric; a check that stored vectors find themselves (a package whose API changed meaning fails
there, never as a number); per ef_search a warm-up, every query timed alone (p50/p95/p99) and the query set as one
batch loop ``repeats`` times (QPS, with the process CPU over wall time: about 1.0 shows the work ran on one thread).
Thread pools are pinned to one through the environment (``RAYON_NUM_THREADS``, ``OMP_NUM_THREADS``,
``UV_THREADPOOL_SIZE``) and recorded. The returned ids are scored here against the dataset's ground truth with the
project's one recall definition (:mod:`ruvector_lab.bench.metrics`).

Failure: a missing Node.js, Chromium or package makes that side "not available" with the reason; version drift
fails the side naming the package and version; a crashed or hung process is a failed run with its stderr tail, and
the other sides and pairs still run. Records: ``peers/<dataset>/<pair>.json`` under the results root (schema
``ruvector-lab/peers@1``, :mod:`ruvector_lab.bench.schemas`); the equal-recall comparison is read from them by
:func:`ruvector_lab.bench.tables.peer_comparison`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidParameterError, RuvectorLabError
from ..validation import check_positive_int
from . import env, results
from .hdf5 import Dataset
from .metrics import mean_recall, spread, true_distances
from .params import section
from .schemas import SCHEMA_PEERS
from .threads import CpuMeter
from .timer import summarize

log = logging.getLogger(__name__)

#: thread pools pinned to one in every side's process: Rust (rayon), OpenMP and libuv's pool (async N-API calls)
PINNED_ENV = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "UV_THREADPOOL_SIZE": "1"}
#: the project's JavaScript: the runner, the protocol, the sides, the page
PEERS_DIR = Path(__file__).resolve().parents[2] / "peers"
#: share of probed stored vectors that must find themselves among their k nearest after a build (every side's spec
#: carries it to peers/drift.mjs): a package whose answers changed meaning finds almost none, while a graph on hard
#: data (uniform 384-d vectors) misses a few even at a wide ef_search
PROBE_MIN_SHARE = 0.5
#: the recall every record reports: recall@10 of the first 10 ids a side returned (settings require k >= 10)
RECALL_K = 10
#: lines of a crashed process's stderr kept in its record
STDERR_TAIL_LINES = 12


class PeerDriftError(BackendError):
    """A package's API no longer means what the runner expects (version drift): the side fails, naming it."""


@dataclass(frozen=True)
class Side:
    """One package in one runtime: ``name`` (the runner's side name), ``runtime`` ('node', 'browser' or
    'python'), ``tier`` ('native' or 'wasm'), the npm ``package`` it runs and whether it scans exactly
    (``exact``: no ef_search, every vector scored)."""

    name: str
    runtime: str
    tier: str
    package: str
    exact: bool = False

    @property
    def backend(self) -> str:
        """The side's name in results: ``node:hnswlib-native``, ``browser:hnswlib-wasm``, ``python:rvf-wasm``."""
        return f"{self.runtime}:{self.name}"


@dataclass(frozen=True)
class Pair:
    """Two sides compared: ratios are ``second`` over ``first`` (WASM over native; wasmtime over V8). ``same``:
    both run one algorithm (only then does a ratio speak to the ADR's native-vs-WASM claim); ``same_algorithm``
    says what the two implement, as checked (not as the package names suggest)."""

    name: str
    first: Side
    second: Side
    same: bool
    same_algorithm: str
    comparison: str = "native vs wasm"

    @property
    def sides(self) -> tuple[Side, Side]:
        """(first, second)."""
        return (self.first, self.second)

    @property
    def exact(self) -> bool:
        """True when a side scans exactly: such a pair runs on ``exact_queries`` queries (both sides the same)."""
        return self.first.exact or self.second.exact


SIDES: dict[str, Side] = {side.backend: side for side in (
    Side("hnswlib-native", "node", "native", "hnswlib-node"),
    Side("hnswlib-wasm", "browser", "wasm", "hnswlib-wasm"),
    Side("rvf-native", "node", "native", "@ruvector/rvf-node"),
    Side("rvf-wasm", "node", "wasm", "@ruvector/rvf-wasm", exact=True),
    Side("ruvector-core", "node", "native", "@ruvector/core"),
    Side("ruvector-wasm", "node", "wasm", "@ruvector/wasm", exact=True),
    Side("rvf-wasm", "python", "wasm", "@ruvector/rvf-wasm", exact=True),
)}

PAIRS: dict[str, Pair] = {pair.name: pair for pair in (
    Pair("hnswlib", SIDES["node:hnswlib-native"], SIDES["browser:hnswlib-wasm"], True,
         "yes: hnswlib's C++ HNSW, built as a Node addon (N-API, node-gyp Release -O3 for the x86-64 baseline, so "
         "SSE distance kernels) and with emscripten (-O3, no WASM SIMD; a web-only build, run in Chromium)"),
    Pair("rvf", SIDES["node:rvf-native"], SIDES["node:rvf-wasm"], False,
         "no: the same RVF store format, but rvf-node searches an HNSW graph (built on the first query) while the "
         "rvf-wasm microkernel scans every vector exactly"),
    Pair("ruvector", SIDES["node:ruvector-core"], SIDES["node:ruvector-wasm"], False,
         "no: @ruvector/core builds an HNSW graph (its efSearch has no effect); @ruvector/wasm says 'HNSW requested "
         "but not available (WASM build), using flat index' and scans exactly"),
    Pair("rvf-engines", SIDES["node:rvf-wasm"], SIDES["python:rvf-wasm"], True,
         "yes: the same rvf_wasm_bg.wasm module, run by V8 (Node) and by wasmtime (Python)",
         comparison="V8 vs wasmtime"),
)}


@dataclass(frozen=True)
class PeerSettings:
    """The ``peers`` section of params.yaml: which pairs, the index config every side builds, the query protocol
    and how many fresh processes each side runs in (``runs``: the spread of every figure)."""

    datasets: tuple[str, ...] = ()
    pairs: tuple[str, ...] = tuple(PAIRS)
    runs: int = 2
    m: int = 16
    ef_construction: int = 100
    ef_search: tuple[int, ...] = (10, 40, 160)
    k: int = 10
    n_queries: int = 1000
    exact_queries: int = 200
    warmup: int = 50
    repeats: int = 2
    seed: int = 100
    timeout_s: float = 900.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(self.datasets))
        object.__setattr__(self, "pairs", tuple(self.pairs))
        if not self.ef_search:
            raise InvalidParameterError("peers.ef_search must list at least one value")
        object.__setattr__(self, "ef_search", tuple(check_positive_int("peers.ef_search", e) for e in self.ef_search))
        unknown = sorted(set(self.pairs) - set(PAIRS))
        if unknown:
            raise InvalidParameterError(f"peers.pairs: unknown pair(s) {unknown}; known: {', '.join(PAIRS)}")
        for name in ("runs", "m", "ef_construction", "n_queries", "exact_queries", "repeats"):
            check_positive_int(f"peers.{name}", getattr(self, name))
        check_positive_int("peers.warmup", self.warmup, minimum=0)
        if check_positive_int("peers.k", self.k) < RECALL_K:
            raise InvalidParameterError(f"peers.k must be >= {RECALL_K}: the records report recall@{RECALL_K}")
        if not isinstance(self.timeout_s, int | float) or isinstance(self.timeout_s, bool) or self.timeout_s <= 0:
            raise InvalidParameterError(f"peers.timeout_s must be a number of seconds > 0, got {self.timeout_s!r}")


def peer_settings(params: dict[str, Any]) -> PeerSettings:
    """The :class:`PeerSettings` of a params dict (its ``peers`` section; absent keys take the defaults)."""
    raw = section(params, "peers")
    known = {f for f in PeerSettings.__dataclass_fields__}
    extra = sorted(set(raw) - known)
    if extra:
        raise InvalidParameterError(f"peers: unknown key(s) {extra}; known: {', '.join(sorted(known))}")
    return PeerSettings(**raw)


# ------------------------------------------------------------------------------------------------------ tooling
@dataclass(frozen=True)
class Tools:
    """What the runner needs from the machine: the project root (node_modules), ``node`` and ``chromium``."""

    root: Path
    node: str | None
    chromium: str | None

    @classmethod
    def find(cls, root: str | os.PathLike[str] | None = None) -> Tools:
        """Look up ``node`` and Chromium on the PATH (``RUVECTOR_LAB_CHROMIUM`` names another browser binary)."""
        chromium = os.environ.get("RUVECTOR_LAB_CHROMIUM") or next(
            (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
        return cls(Path(root) if root else PEERS_DIR.parent, shutil.which("node"), chromium)

    def package_version(self, package: str) -> str | None:
        """The installed version of an npm package under the project's node_modules, or None."""
        try:
            data = json.loads((self.root / "node_modules" / package / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return str(data.get("version")) if isinstance(data, dict) else None

    def missing(self, side: Side) -> str | None:
        """Why ``side`` cannot run here, or None when it can."""
        if side.runtime in ("node", "browser") and self.node is None:
            return ("Node.js not found on the PATH (Debian: apt-get install -y nodejs npm; then make setup-npm), so "
                    f"{side.package} cannot run")
        if side.runtime == "browser" and self.chromium is None:
            return ("Chromium not found (Debian: apt-get install -y chromium, as make setup-browser does), so the "
                    f"browser build {side.package} cannot run")
        if self.package_version(side.package) is None:
            return f"{side.package} is not installed under {self.root / 'node_modules'} (make setup-npm)"
        return None

    def engine_versions(self) -> dict[str, str | None]:
        """Node.js and Chromium versions (for the fingerprint: a new engine is a new measurement)."""
        return {"node": _version_of(self.node), "chromium": _version_of(self.chromium)}


def _version_of(binary: str | None) -> str | None:
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


# ------------------------------------------------------------------------------------------------------- export
def export_dataset(ds: Dataset, directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``train.f32`` and ``test.f32`` (little-endian float32 rows, what the runner and the page read) into
    ``directory``; returns the metadata the spec carries."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, matrix in (("train", ds.train), ("test", ds.test)):
        np.ascontiguousarray(matrix, dtype="<f4").tofile(out / f"{name}.f32")
    return {"n_train": len(ds.train), "n_test": len(ds.test), "dimensions": ds.dimensions, "metric": ds.metric}


def side_spec(side: Side, settings: PeerSettings, meta: dict[str, Any], data_dir: Path, output: Path,
              tools: Tools, n_queries: int) -> dict[str, Any]:
    """The JSON spec one side's process runs from (the runner's and :func:`measure_python`'s input)."""
    return {
        "side": side.name, "runtime": side.runtime, "root": str(tools.root), "data_dir": str(data_dir),
        "meta": meta, "output": str(output), "timeout_s": settings.timeout_s, "chromium": tools.chromium,
        "browser_packages": [side.package] if side.runtime == "browser" else [],
        "build": {"m": settings.m, "ef_construction": settings.ef_construction, "seed": settings.seed},
        "query": {"k": settings.k, "ef_search": list(settings.ef_search), "n_queries": n_queries,
                  "warmup": settings.warmup, "repeats": settings.repeats},
        "probe_min_share": PROBE_MIN_SHARE,
    }


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def run_process(side: Side, spec: dict[str, Any], tools: Tools, workdir: Path) -> dict[str, Any]:
    """Run one side once in a fresh process; its raw result (status 'ok', 'not available' or 'failed').

    A process that crashes, is killed or outlives ``timeout_s`` (plus a minute for start-up) is a failed run whose
    reason holds its exit and the tail of its stderr; it never raises for the side's own failure."""
    spec_file = workdir / f"{side.runtime}-{side.name}.spec.json"
    output = Path(spec["output"])
    output.unlink(missing_ok=True)
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    if side.runtime == "python":
        cmd = [sys.executable, "-m", "ruvector_lab.bench.peers", str(spec_file)]
    else:
        cmd = [str(tools.node), str(PEERS_DIR / "runner.mjs"), str(spec_file)]
    environ = {**os.environ, **PINNED_ENV}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=spec["timeout_s"] + 60, env=environ,
                              cwd=workdir, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return {"status": "failed", "reason": f"no result within {spec['timeout_s'] + 60:.0f} s (killed); "
                                              f"stderr tail: {_tail(stderr)}"}
    for line in done.stderr.splitlines():
        log.debug("%s: %s", side.backend, line)
    record = results.read_json(output)
    if record is None:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        return {"status": "failed", "reason": f"the {side.runtime} process ended ({how}) without a result; "
                                              f"stderr tail: {_tail(done.stderr)}"}
    return record


# --------------------------------------------------------------------------------------------- the Python side
class _PythonRvf:
    """The rvf module through wasmtime, behind the runner's side interface (the C ABI the Node side calls)."""

    package = "@ruvector/rvf-wasm"
    memory_measure = "wasm linear memory growth"
    algorithm = "exact"

    def __init__(self) -> None:
        from ..wasm.rvf import RvfModule

        self.module = RvfModule()
        self.store: Any = None
        self.metric = "euclidean"

    def build(self, train: np.ndarray, metric: str) -> None:
        from ..wasm.rvf import RvfStore

        self.metric = metric
        self.store = RvfStore.create(self.module, train.shape[1], metric)
        chunk = 1024
        for start in range(0, len(train), chunk):
            block = train[start : start + chunk]
            self.store.ingest(np.arange(start, start + len(block), dtype=np.int64), block)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.store.query(query, k, self.metric)[0]

    def memory_bytes(self) -> int:
        return int(self.module.memory_bytes)


def _latency_ms(samples_s: np.ndarray) -> dict[str, float]:
    """The runner's latency figures (``percentilesMs`` in protocol.mjs) from per-query seconds."""
    s = summarize(samples_s)
    return {"p50": s.p50_ms, "p95": s.p95_ms, "p99": s.p99_ms, "mean": s.mean_ms, "count": s.count}


def _identity_probe(search: Callable[[np.ndarray, int], np.ndarray], train: np.ndarray, k: int, package: str,
                    version: str, min_share: float) -> None:
    """drift.mjs's check: at least ``min_share`` of the probed stored vectors find themselves among their k
    nearest."""
    n = len(train)
    probes = min(20, n)
    step = max(1, n // probes)
    found = sum(1 for p in range(probes) if p * step in list(search(train[p * step], min(k, n))))
    if found < min_share * probes:
        raise PeerDriftError(f"{package} {version}: API differs from what the runner expects (only {found} of "
                             f"{probes} stored vectors found themselves among their {k} nearest)")


def measure_python(spec: dict[str, Any]) -> dict[str, Any]:
    """The protocol of ``peers/protocol.mjs`` in Python, on the rvf module under wasmtime: one build, the identity
    check, then per ef_search (none: the store is exact) a warm-up, each query timed alone and the query set timed
    as one batch loop ``repeats`` times. Returns the runner's result record."""
    from importlib.metadata import version as dist_version

    from ..wasm.loader import RVF_WASM

    meta, query = spec["meta"], spec["query"]
    d = int(meta["dimensions"])
    data_dir = Path(spec["data_dir"])
    train = np.fromfile(data_dir / "train.f32", dtype="<f4").reshape(int(meta["n_train"]), d)
    test = np.fromfile(data_dir / "test.f32", dtype="<f4").reshape(int(meta["n_test"]), d)
    side = _PythonRvf()
    version = Tools(Path(spec["root"]), None, None).package_version(side.package) or "unknown"
    k, nq = int(query["k"]), min(int(query["n_queries"]), len(test))
    before = side.memory_bytes()
    with CpuMeter() as build:
        side.build(train, meta["metric"])
    after = side.memory_bytes()
    if meta["metric"] != "dot_product":
        _identity_probe(side.search, train, k, side.package, version, float(spec["probe_min_share"]))
    for i in range(min(int(query["warmup"]), nq)):
        side.search(test[i % nq], k)
    ids = np.full((nq, k), -1, dtype=np.int64)
    lat = np.empty(nq)
    for i in range(nq):
        a = time.perf_counter()
        got = side.search(test[i], k)
        lat[i] = time.perf_counter() - a
        ids[i, : len(got)] = got[:k]
    qps, cpu = [], []
    for _ in range(int(query["repeats"])):
        with CpuMeter() as batch:
            for i in range(nq):
                side.search(test[i], k)
        qps.append(nq / batch.wall_s)
        cpu.append(batch.utilization)
    grown = after - before if after > before else None  # no growth: the store fit in the module's initial pages
    return {
        "side": spec["side"], "runtime": "python", "status": "ok", "package": side.package, "version": version,
        "algorithm": side.algorithm, "memory_measure": side.memory_measure, "info": {"module": str(RVF_WASM)},
        "engine": {"name": "wasmtime", "version": dist_version("wasmtime"),
                   "python": sys.version.split()[0]},
        "threads": {"env": {key: os.environ.get(key) for key in PINNED_ENV},
                    "process_threads": len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task")
                    else None},
        "measured": {
            "build_time_s": build.wall_s, "build_cpu_utilization": build.utilization,
            "memory": {"bytes": grown, "bytes_per_vector": None if grown is None else grown / len(train),
                       "before": before, "after": after},
            "n_queries": nq, "k": k, "clock_resolution_ms": time.get_clock_info("perf_counter").resolution * 1e3,
            "sweep": [{"ef_search": None, "latency_ms": _latency_ms(lat), "qps": qps, "cpu_utilization": cpu,
                       "ids": ids.reshape(-1).tolist()}],
        },
    }


# -------------------------------------------------------------------------------------------------- scoring
def score_run(raw: dict[str, Any], ds: Dataset) -> dict[str, Any]:
    """One process's result with recall@10 of every sweep point computed from its ids against the dataset's ground
    truth (the ids themselves are dropped from the record). A result that does not hold what the protocol returns
    (ids of the wrong count, ids past the stored vectors) is a failed run saying so, never a figure."""
    if raw.get("status") != "ok":
        return {"status": raw.get("status", "failed"), "reason": str(raw.get("reason") or "no reason given")}
    try:
        return _scored(raw, ds)
    except (KeyError, TypeError, ValueError) as exc:
        return {"status": "failed", "reason": f"{raw.get('package')} {raw.get('version')}: the side's result does "
                                              f"not hold what the protocol returns ({type(exc).__name__}: {exc})"}


def _scored(raw: dict[str, Any], ds: Dataset) -> dict[str, Any]:
    m = raw["measured"]
    k, nq = int(m["k"]), int(m["n_queries"])
    if ds.distances is None or ds.distances.shape[1] < RECALL_K or k < RECALL_K:
        raise ValueError(f"recall@{RECALL_K} needs k >= {RECALL_K} and ground truth that deep")
    queries = ds.test[:nq]
    points = []
    for point in m["sweep"]:
        ids = np.asarray(point["ids"], dtype=np.int64).reshape(nq, k)
        if ids.max(initial=-1) >= len(ds.train) or ids.min(initial=0) < -1:
            raise ValueError(f"ids from {int(ids.min())} to {int(ids.max())} for {len(ds.train)} stored vectors")
        got = true_distances(queries, ds.train, ids, ds.metric)
        qps = [float(v) for v in point["qps"]]
        points.append({
            "ef_search": point["ef_search"], "recall_at_10": mean_recall(ds.distances[:nq], got, RECALL_K),
            "latency_ms": {key: float(point["latency_ms"][key]) for key in ("p50", "p95", "p99", "mean")},
            "qps": float(np.median(qps)), "qps_repeats": qps,
            "cpu_utilization": _median_or_none(point.get("cpu_utilization") or []),
        })
    memory = m.get("memory") or {}
    return {"status": "ok", "build_time_s": float(m["build_time_s"]),
            "build_cpu_utilization": m.get("build_cpu_utilization"),
            "memory_bytes": memory.get("bytes"), "memory_bytes_per_vector": memory.get("bytes_per_vector"),
            "clock_resolution_ms": m.get("clock_resolution_ms"), "n_queries": nq, "k": k, "points": points}


def _median_or_none(values: Sequence[Any]) -> float | None:
    numbers = [float(v) for v in values if v is not None]
    return float(np.median(numbers)) if numbers else None


def summarize_side(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ef_search over the side's successful runs: median recall, latency percentiles (p50 with its spread)
    and QPS as a spread over every run's repeats."""
    ok = [run for run in runs if run["status"] == "ok"]
    if not ok:
        return []
    sweep = []
    for i, point in enumerate(ok[0]["points"]):
        at = [run["points"][i] for run in ok if len(run["points"]) > i]
        sweep.append({
            "ef_search": point["ef_search"],
            "recall_at_10": float(np.median([p["recall_at_10"] for p in at])),
            "latency_ms": {key: float(np.median([p["latency_ms"][key] for p in at]))
                           for key in ("p50", "p95", "p99", "mean")},
            "latency_p50": spread(p["latency_ms"]["p50"] for p in at).to_dict(),
            "qps": spread(v for p in at for v in p["qps_repeats"]).to_dict(),
            "cpu_utilization": _median_or_none([p["cpu_utilization"] for p in at]),
        })
    return sweep


# ------------------------------------------------------------------------------------------------------ a pair
@dataclass
class _SideState:
    side: Side
    missing: str | None
    runs: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)


def _side_record(state: _SideState, tools: Tools) -> dict[str, Any]:
    side = state.side
    base = {"backend": side.backend, "runtime": side.runtime, "tier": side.tier, "package": side.package,
            "version": tools.package_version(side.package)}
    if state.missing is not None:
        return {**base, "status": "not available", "reason": state.missing, "runs": []}
    ok = [run for run in state.runs if run["status"] == "ok"]
    if not ok:
        unavailable = [run for run in state.runs if run["status"] == "not available"]
        status, reason = ("not available", unavailable[0]["reason"]) if unavailable else (
            "failed", "; ".join(sorted({run["reason"] for run in state.runs})))
        return {**base, "status": status, "reason": reason, "runs": state.runs}
    last = state.last
    return {
        **base, "status": "ok", "version": last.get("version", base["version"]),
        "algorithm": last.get("algorithm"), "engine": last.get("engine") or {}, "threads": last.get("threads") or {},
        "memory_measure": last.get("memory_measure"), "info": last.get("info") or {},
        "runs": state.runs, "sweep": summarize_side(state.runs),
        "build_time_s": spread(run["build_time_s"] for run in ok).to_dict(),
        "memory_bytes_per_vector": (spread(run["memory_bytes_per_vector"] for run in ok).to_dict()
                                    if all(run["memory_bytes_per_vector"] is not None for run in ok) else None),
    }


#: a side's runs already made on this dataset, by (backend, queries, run number): a side in two pairs (the Node rvf
#: module: against rvf-node, and against wasmtime) runs once per run number, not once per pair
RunCache = dict[tuple[str, int, int], dict[str, Any]]


def run_pair(ds: Dataset, pair: Pair, settings: PeerSettings, tools: Tools, workdir: Path, meta: dict[str, Any],
             progress: Callable[[str], None] | None = None, cache: RunCache | None = None) -> dict[str, Any]:
    """Both sides of ``pair`` on ``ds``, ``settings.runs`` fresh processes each, alternating; the record body."""
    n_queries = min(settings.exact_queries if pair.exact else settings.n_queries, len(ds.test))
    states = [_SideState(side, tools.missing(side)) for side in pair.sides]
    cache = {} if cache is None else cache
    for run in range(settings.runs):
        for state in states:
            if state.missing is not None or (state.runs and state.runs[-1]["status"] == "not available"):
                continue
            if progress:
                progress(f"{pair.name}: {state.side.backend} run {run + 1}/{settings.runs}")
            key = (state.side.backend, n_queries, run)
            if key not in cache:
                output = workdir / f"{state.side.runtime}-{state.side.name}.result.json"
                spec = side_spec(state.side, settings, meta, workdir, output, tools, n_queries)
                cache[key] = run_process(state.side, spec, tools, workdir)
            raw = cache[key]
            scored = score_run(raw, ds)
            if raw.get("drift"):
                scored["drift"] = True
            state.runs.append(scored)
            if raw.get("status") == "ok":
                state.last = raw
            elif raw.get("drift") or raw.get("status") == "not available":
                break  # drift or absence does not change between runs
            log.info("%s %s run %d: %s", pair.name, state.side.backend, run + 1,
                     scored["status"] if scored["status"] == "ok" else f"{scored['status']}: {scored['reason']}")
    sides = [_side_record(state, tools) for state in states]
    return {
        "pair": {"name": pair.name, "first": pair.first.backend, "second": pair.second.backend,
                 "comparison": pair.comparison, "same": pair.same, "same_algorithm": pair.same_algorithm},
        "sides": sides, "n_queries": n_queries,
    }


def pair_path(root: str | os.PathLike[str], dataset: str, pair: str) -> Path:
    """Where one pair's record on one dataset lives: ``peers/<dataset>/<pair>.json``."""
    return (Path(root) / "peers" / results.check_component(dataset, "dataset")
            / f"{results.check_component(pair, 'pair')}.json")


def code_version(tools: Tools) -> str:
    """A hash of what the measurement runs through: the runner's JavaScript, this module, the installed versions
    of every package of :data:`SIDES`, Node.js and Chromium."""
    digest = hashlib.sha256()
    for path in [*sorted(PEERS_DIR.glob("*.*")), Path(__file__)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    versions = {side.package: tools.package_version(side.package) for side in SIDES.values()}
    digest.update(json.dumps([versions, tools.engine_versions()], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _measured_settings(settings: PeerSettings) -> dict[str, Any]:
    """The settings a pair's figures depend on: not which datasets and pairs the params list beside it."""
    return {k: v for k, v in asdict(settings).items() if k not in ("datasets", "pairs")}


#: ``progress(step, done, total)``: ``step`` names the side run starting now, ``done`` of ``total`` runs are over
Progress = Callable[[str, int, int], None]


def run_dataset(ds: Dataset, settings: PeerSettings, results_root: str | os.PathLike[str], force: bool = False,
                tools: Tools | None = None, progress: Progress | None = None) -> list[Path]:
    """Every pair of ``settings`` on ``ds``: one record per pair under ``results_root``; a pair already measured
    with the same fingerprint (settings, the dataset's contents, the code and package versions) is kept unless
    ``force``. Returns the record paths."""
    tools = tools or Tools.find()
    code = code_version(tools)
    written = []
    total = 2 * settings.runs * len(settings.pairs)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress:
            progress(what, done, total)
        done += 1

    with tempfile.TemporaryDirectory(prefix="ruvector-lab-peers-") as tmp:
        workdir = Path(tmp)
        meta: dict[str, Any] | None = None
        cache: RunCache = {}
        for name in settings.pairs:
            pair = PAIRS[name]
            path = pair_path(results_root, ds.name, name)
            fp = results.fingerprint({"pair": name, "settings": _measured_settings(settings),
                                      "dataset": ds.describe()}, code)
            if not force and results.is_done(path, fp):
                log.info("%s on %s: measured with the same fingerprint, kept", name, ds.name)
                written.append(path)
                done += 2 * settings.runs
                continue
            if meta is None:
                meta = export_dataset(ds, workdir)
            start = done
            body = run_pair(ds, pair, settings, tools, workdir, meta, step, cache)
            done = start + 2 * settings.runs  # sides skipped as absent count as done
            usable = [s for s in body["sides"] if s["status"] != "not available"]
            record = {"schema": SCHEMA_PEERS, "fingerprint": fp, "environment": env.environment(),
                      "dataset": ds.describe(), "settings": _measured_settings(settings), **body}
            if usable:
                record["status"] = "ok"
            else:
                record.update(status="not available",
                              reason="; ".join(f"{s['backend']}: {s['reason']}" for s in body["sides"]))
            written.append(results.write_json(path, record))
    if progress:
        progress("done", total, total)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ruvector_lab.bench.peers SPEC.json``: the Python side of a pair, run as its own process (the
    runner's exit rule: 0 with a result written, 3 with a failure written)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m ruvector_lab.bench.peers SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        record = measure_python(spec)
        code = 0
    except RuvectorLabError as exc:
        record = {"side": spec.get("side"), "runtime": "python", "status": "failed", "reason": str(exc),
                  "drift": isinstance(exc, PeerDriftError)}
        code = 3
    results.write_json(spec["output"], record)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
