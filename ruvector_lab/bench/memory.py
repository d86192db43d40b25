"""Memory that means the index: build it alone in a fresh process, and compare with what its layout predicts.

Measuring RSS before and after a build inside the benchmark process says little: that process already holds
datasets, other indexes, imported libraries and allocator caches, and its peak RSS is the peak of everything it
ever did. :func:`measure_index_memory` builds the index in a **fresh child process** (``python -m
ruvector_lab.bench.memory``: fork+exec, so nothing of the parent's heap is inherited) and records, in the child:

1. ``rss_baseline``: after importing numpy, ruvector_lab and the backend *and* building, searching and closing a
   small warm-up index of the same backend and config (library imports, lazily built tables, thread pools and the
   allocator's first arenas are not the index's memory);
2. ``rss_before``: after loading the vectors (``np.load`` of a temporary ``.npy`` file, ``allow_pickle=False``):
   the float vectors the child holds are the *caller's* data, counted before the build. An index that copies
   them into its own storage does own that copy, and it is counted;
3. the build: ``HnswIndex(config, backend=...)`` and ``insert_batch`` in chunks, ids ``str(i)`` (created during
   the build: the index keeps them, so they are its memory);
4. ``peak_rss``: the high-water mark *of the build*: ``VmHWM`` from ``/proc/self/status``, reset with
   ``/proc/self/clear_refs`` just before the build. Not ``ru_maxrss``: at ``exec`` the kernel folds the
   parent's high-water mark into the child's ``ru_maxrss`` (a child of a 400 MB process reports >= 400 MB), so
   in a subprocess it measures the parent. ``ru_maxrss`` is the fallback only where ``/proc`` does not exist;
5. ``rss_after``: after ``gc.collect()`` and glibc's ``malloc_trim(0)``, so heap pages freed by the build's
   temporaries (normalised copies, candidate lists) are not charged to the index; ``rss_after_untrimmed`` keeps
   the figure before that, for transparency;
6. ``serialized_bytes``: ``len(index.serialize())``, after the RSS figures.

The figures come back as JSON in a result file; a child that raises a library error makes the parent raise the
same :mod:`ruvector_lab.errors` class, and a child that crashes, is killed or times out raises
:class:`MeasurementChildError` (a :class:`~ruvector_lab.errors.BackendError`) naming the backend, the exit
code and the tail of its stderr.

:func:`analytic_bytes_per_vector` gives the memory per vector that each backend's data structure should take
(vectors or codes, graph links, id maps, other per-vector bookkeeping), from the libraries' layouts: each
backend states its own (``memory_layout`` in its file, whose comments name the source of each formula). It
assumes containers sized to exactly ``n``: arrays that grow by doubling can hold up to twice that, touched
(``np.full``) or not (``malloc`` without a write), so a measured growth of about 1x-1.5x the estimate is what a
correct layout gives.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from ..backends.base import MemoryLayout
from ..backends.layout import FACADE_IDS_PER_VECTOR
from ..errors import (
    BackendError,
    BackendUnavailableError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
)
from ..runtime import Runtime
from ..types import HnswConfig, check_positive_int
from . import env

#: rows of the warm-up index the child builds and closes before measuring (enough to train PQ codebooks)
WARMUP_ROWS = 512
#: characters of the child's stderr kept in an error message
STDERR_TAIL = 3000
#: exit code of a child that caught an exception and wrote it to the result file
_EXIT_RAISED = 3


class MeasurementChildError(BackendError):
    """The child process that builds an index for a memory measurement crashed, was killed, timed out or
    failed with an error that is not one of the library's; the message names the backend, the exit code and the
    tail of the child's stderr."""


@dataclass(frozen=True)
class IndexMemory:
    """What building one index cost in memory, measured in a fresh child process (see the module docstring).

    ``rss_growth_bytes = rss_after_bytes - rss_before_bytes``: the index's resident memory (vectors loaded by the
    child are in ``rss_before``). ``peak_rss_bytes`` is the child's high-water mark during the build (from
    ``peak_source``), ``peak_growth_bytes`` its excess over ``rss_before``: the build's transient cost on top.
    ``analytic_per_vector`` is :func:`analytic_bytes_per_vector` for the same backend and config, and
    ``analytic_fixed_bytes`` :func:`analytic_fixed_bytes`; :attr:`analytic_growth_bytes` combines them for ``n``.
    """

    backend: str
    n: int
    dimensions: int
    rss_before_bytes: int
    rss_after_bytes: int
    rss_growth_bytes: int
    rss_growth_per_vector: float
    peak_rss_bytes: int
    serialized_bytes: int
    serialized_per_vector: float
    analytic_per_vector: dict[str, float]
    build_time_s: float
    analytic_fixed_bytes: int = 0
    peak_growth_bytes: int = 0
    peak_source: str = "VmHWM"
    rss_baseline_bytes: int = 0
    rss_after_untrimmed_bytes: int = 0
    loaded_bytes: int = 0
    threads: int = 1
    insert_chunk: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def analytic_growth_bytes(self) -> float:
        """What the layout predicts the build adds: ``n * analytic_per_vector['total'] + analytic_fixed_bytes``."""
        return self.n * self.analytic_per_vector["total"] + self.analytic_fixed_bytes

    @property
    def growth_over_analytic(self) -> float:
        """Measured RSS growth divided by :attr:`analytic_growth_bytes` (about 1 when the layout explains it)."""
        expected = self.analytic_growth_bytes
        return self.rss_growth_bytes / expected if expected else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, with the two derived figures."""
        out = dataclasses.asdict(self)
        out["analytic_growth_bytes"] = self.analytic_growth_bytes
        out["growth_over_analytic"] = self.growth_over_analytic
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IndexMemory:
        """Rebuild from :meth:`to_dict` output (derived figures are recomputed, unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


# --------------------------------------------------------------------------------------------------- analytic
def _checked_config(config: object, dimensions: int | None) -> HnswConfig:
    if not isinstance(config, HnswConfig):
        raise InvalidParameterError(f"config must be an HnswConfig, got {type(config).__name__}")
    if dimensions is not None and check_positive_int("dimensions", dimensions) != config.dimensions:
        config = dataclasses.replace(config, dimensions=dimensions)
    return config


def _layout(backend: str, config: HnswConfig) -> MemoryLayout:
    layout = Runtime.serving_class(backend, config).memory_layout(config)
    if layout is None:
        raise BackendUnavailableError(f"backend {backend!r} states no memory layout for this config")
    return layout


def analytic_bytes_per_vector(backend: str, config: HnswConfig, dimensions: int | None = None) -> dict[str, float]:
    """Expected memory per stored vector of ``backend`` under ``config``, from its data structure's layout.

    Each backend states its own layout (:meth:`~ruvector_lab.backends.base.IndexBackend.memory_layout`, with the
    source of each formula); this adds the facade's id maps. Keys: ``vectors`` (float32 rows, ``4*d``; or, with
    ``config.quantization``, the backend's code bytes plus ``4*d`` when it keeps the float vectors for rerank),
    ``graph`` (HNSW links and per-node graph bookkeeping; 0 for flat backends), ``ids`` (label maps: the
    facade's id list and id -> label dict, and the backend's own), ``other`` (per-vector bookkeeping: live
    flags, cached norms, locks, the wasm store's slot record) and ``total`` (their sum). ``dimensions``
    overrides ``config.dimensions``.

    Costs that do not grow with n are in :func:`analytic_fixed_bytes`, not here. Containers are assumed sized to
    exactly n. The ruvector HNSW figures are an estimate from RuVector's Rust sources (its Python binding's exact
    layout is not published), and so are the Python object sizes (amortised dict/set load factors).
    An unknown or unavailable backend raises :class:`~ruvector_lab.errors.BackendUnavailableError`; a
    quantization the backend does not serve raises what ``HnswIndex`` would.
    """
    cfg = _checked_config(config, dimensions)
    layout = _layout(backend, cfg)
    parts = {"vectors": layout.vectors, "graph": layout.graph, "ids": layout.ids + FACADE_IDS_PER_VECTOR,
             "other": layout.other}
    return {k: round(v, 2) for k, v in parts.items()} | {"total": round(sum(parts.values()), 2)}


def analytic_fixed_bytes(backend: str, config: HnswConfig, dimensions: int | None = None) -> int:
    """Memory an index of ``backend`` takes whatever its size (not in :func:`analytic_bytes_per_vector`), as the
    backend's layout states it: e.g. hnswlib's table of 65536 label-operation mutexes, quantized indexes' trained
    state (PQ codebooks, SQ ranges, RaBitQ's centre) and faiss PQ's symmetric distance table. The wasm module
    instance's own linear memory is not counted."""
    return int(_layout(backend, _checked_config(config, dimensions)).fixed)


# ------------------------------------------------------------------------------------------------ measurement
def _check_train(train: object, config: HnswConfig) -> np.ndarray:
    if not isinstance(train, np.ndarray):
        raise InvalidVectorError(f"train must be a numpy array, got {type(train).__name__}")
    if train.ndim != 2:
        raise DimensionMismatchError(f"train must be a matrix of row vectors (2-D), got shape {train.shape}")
    if train.shape[1] != config.dimensions:
        raise DimensionMismatchError(f"train has {train.shape[1]} dimensions, expected {config.dimensions}")
    if len(train) == 0:
        raise InvalidParameterError("train holds no vectors; a memory measurement needs at least one")
    if not np.issubdtype(train.dtype, np.number) or np.issubdtype(train.dtype, np.complexfloating):
        raise InvalidVectorError(f"train must hold real numbers, got dtype {train.dtype}")
    return np.ascontiguousarray(train, dtype=np.float32)


def _library_error(kind: str) -> type[errors.RuvectorLabError] | None:
    cls = getattr(errors, kind, None)
    return cls if isinstance(cls, type) and issubclass(cls, errors.RuvectorLabError) else None


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def measure_index_memory(
    train: np.ndarray,
    config: HnswConfig,
    backend: str,
    insert_chunk: int = 10_000,
    timeout_s: float = 1800,
    threads: int = 1,
) -> IndexMemory:
    """Build ``HnswIndex(config, backend=backend)`` over ``train`` in a fresh child process and measure it.

    Rows are inserted in the given order (permute them first for another order), ``insert_chunk`` at a time,
    under ids ``str(i)``, with the child's thread pools pinned to ``threads``. The vectors reach the child as a
    temporary ``.npy`` file (``np.load(..., allow_pickle=False)``), the figures come back as JSON.

    Raises, before any child starts: :class:`~ruvector_lab.errors.BackendUnavailableError` for an unknown or
    unavailable backend or a quantization it does not serve, :class:`~ruvector_lab.errors.InvalidParameterError`
    for a bad config or argument, :class:`~ruvector_lab.errors.DimensionMismatchError` /
    :class:`~ruvector_lab.errors.InvalidVectorError` for ``train`` of the wrong shape or kind. After: the
    library error the child raised (same class, message naming the backend), or
    :class:`MeasurementChildError` when the child crashed, was killed or ran past ``timeout_s``.
    """
    if not isinstance(config, HnswConfig):
        raise InvalidParameterError(f"config must be an HnswConfig, got {type(config).__name__}")
    insert_chunk = check_positive_int("insert_chunk", insert_chunk)
    threads = check_positive_int("threads", threads)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise InvalidParameterError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    Runtime.serving_class(backend, config)  # the library's own refusal, before a child is spawned
    matrix = _check_train(train, config)
    analytic = analytic_bytes_per_vector(backend, config)
    fixed = analytic_fixed_bytes(backend, config)

    with tempfile.TemporaryDirectory(prefix="ruvector-lab-memory-") as folder:
        work = Path(folder)
        np.save(work / "train.npy", matrix, allow_pickle=False)
        del matrix
        spec = {"vectors": str(work / "train.npy"), "config": config.to_dict(), "backend": backend,
                "insert_chunk": insert_chunk, "threads": threads, "result": str(work / "result.json")}
        (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        child_env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very ruvector_lab
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH")) if p)
        child_env["RAYON_NUM_THREADS"] = str(threads)  # ruvector's Rust pool is sized from it at first use
        # -P: `-m` would otherwise put the working directory first on sys.path, and a ruvector_lab copy there
        # (a scratch pipeline folder) would shadow the package this parent runs
        command = [sys.executable, "-P", "-X", "faulthandler", "-m", "ruvector_lab.bench.memory",
                   str(work / "spec.json")]
        try:
            done = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired as exc:  # run() has killed and reaped the child
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise MeasurementChildError(
                f"memory measurement of backend {backend!r} timed out after {timeout_s:g} s; child stderr: "
                f"{_tail(stderr) or '(empty)'}"
            ) from None
        result_path = work / "result.json"
        payload = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None

    if done.returncode != 0 or payload is None or "error" in payload:
        failure = (payload or {}).get("error") or {}
        message = f"memory measurement of backend {backend!r} failed in its child process " \
                  f"({_describe_exit(done.returncode)})"
        library_cls = _library_error(str(failure.get("type", "")))
        if library_cls is not None:
            raise library_cls(f"{message}: {failure.get('message', '')}")
        detail = f"{failure.get('type')}: {failure.get('message')}; " if failure else ""
        raise MeasurementChildError(f"{message}: {detail}stderr: {_tail(done.stderr) or '(empty)'}")

    n = int(payload["n"])
    growth = int(payload["rss_after_bytes"]) - int(payload["rss_before_bytes"])
    return IndexMemory(
        backend=backend,
        n=n,
        dimensions=config.dimensions,
        rss_before_bytes=int(payload["rss_before_bytes"]),
        rss_after_bytes=int(payload["rss_after_bytes"]),
        rss_growth_bytes=growth,
        rss_growth_per_vector=growth / n,
        peak_rss_bytes=int(payload["peak_rss_bytes"]),
        serialized_bytes=int(payload["serialized_bytes"]),
        serialized_per_vector=int(payload["serialized_bytes"]) / n,
        analytic_per_vector=analytic,
        build_time_s=float(payload["build_time_s"]),
        analytic_fixed_bytes=fixed,
        peak_growth_bytes=max(0, int(payload["peak_rss_bytes"]) - int(payload["rss_before_bytes"])),
        peak_source=str(payload["peak_source"]),
        rss_baseline_bytes=int(payload["rss_baseline_bytes"]),
        rss_after_untrimmed_bytes=int(payload["rss_after_untrimmed_bytes"]),
        loaded_bytes=int(payload["loaded_bytes"]),
        threads=threads,
        insert_chunk=insert_chunk,
        config=config.to_dict(),
    )


# ------------------------------------------------------------------------------------------------------ child
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _trim() -> None:
    """Collect garbage and hand freed heap pages back to the kernel (glibc ``malloc_trim``; a no-op elsewhere)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0); False if not possible."""
    try:
        _CLEAR_REFS.write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def _peak() -> tuple[int, str]:
    """This process's RSS high-water mark: VmHWM where /proc exists, else ru_maxrss (see the module docstring)."""
    try:
        for line in _STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "VmHWM"
    except OSError:
        pass
    return env.peak_rss_bytes(), "ru_maxrss"


def _warm_up(config: HnswConfig, backend: str) -> None:
    """Import the backend's library and exercise it once (build, search, serialize, close) on random rows."""
    from ..index import HnswIndex

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((WARMUP_ROWS, config.dimensions)).astype(np.float32)
    index = HnswIndex(config, backend=backend)
    try:
        index.insert_batch([f"w{i}" for i in range(len(rows))], rows)
        index.search(rows[0], k=10)
        index.serialize()
    finally:
        index.close()
    del index, rows


def _child_measure(spec: dict[str, Any]) -> dict[str, Any]:
    from ..index import HnswIndex
    from .threads import pinned_threads

    config = HnswConfig.from_dict(spec["config"])
    backend = str(spec["backend"])
    chunk = int(spec["insert_chunk"])
    with pinned_threads(int(spec["threads"])):
        _warm_up(config, backend)
        _trim()
        rss_baseline = env.current_rss_bytes()
        train = np.load(spec["vectors"], allow_pickle=False)
        n = len(train)
        _trim()
        rss_before = env.current_rss_bytes()
        peak_reset = _reset_peak()
        start = time.perf_counter()
        index = HnswIndex(config, backend=backend)
        for begin in range(0, n, chunk):
            stop = min(n, begin + chunk)
            index.insert_batch([str(i) for i in range(begin, stop)], train[begin:stop])
        build_time = time.perf_counter() - start
        peak, source = _peak()
        if not peak_reset or source != "VmHWM":
            source += " (whole child process)"
        rss_untrimmed = env.current_rss_bytes()
        _trim()
        rss_after = env.current_rss_bytes()
        serialized = len(index.serialize())
        index.close()
    return {"n": n, "loaded_bytes": int(train.nbytes), "rss_baseline_bytes": rss_baseline,
            "rss_before_bytes": rss_before, "rss_after_untrimmed_bytes": rss_untrimmed, "rss_after_bytes": rss_after,
            "peak_rss_bytes": peak, "peak_source": source, "serialized_bytes": serialized,
            "build_time_s": build_time}


def _write_json(path: Path, values: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(values), encoding="utf-8")
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Child entry point: ``python -m ruvector_lab.bench.memory SPEC.json`` (written by the parent)."""
    parser = argparse.ArgumentParser(description="Build one index and write its memory figures (internal).")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    result = Path(spec["result"])
    try:
        figures = _child_measure(spec)
    except Exception as exc:  # reported to the parent, which re-raises library errors as their own class
        import traceback

        traceback.print_exc()
        _write_json(result, {"error": {"type": type(exc).__name__, "message": str(exc)}})
        return _EXIT_RAISED
    _write_json(result, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
