"""Fuzzing of :meth:`HnswIndex.deserialize`, per backend and codec, with checksum-recomputed mutations.

``python -m ruvector_lab.fuzz`` (or ``make fuzz``) builds a small real index per backend (float) and per
quantization kind the backend serves, serializes it, and derives mutated blobs from it: bit flips, byte edits,
native header words, float edits, truncation, extension and splices of the innermost payload bytes, and edits of
the JSON headers of the outer and of nested containers. Every container on the way is re-wrapped with a correct
sha256 (as :func:`ruvector_lab.container.dumps` computes it), so the checksum never hides what the loaders do
with the damage.

Each input runs in its own forked child under time and memory limits. Workers are fresh interpreters that import
and probe the backends once and then fork one child per input, so a crash or a hang costs one child, and
``ru_maxrss`` of that child is the input's peak memory. An input is classified as

- ``refused``: a :class:`~ruvector_lab.errors.RuvectorLabError` (good);
- ``ok``: accepted and consistent: searches return live ids, finite and sorted scores, the scores of the ids the
  original index returns agree with it (a changed float vector may move its own score, not most of them),
  ``stats()`` agrees with the header and the index re-serializes and loads again;
- ``crash``: the child died by a signal or exited non-zero;
- ``hang``: the child outlived the timeout;
- ``untyped``: any other exception, or a ``MemoryError`` (also one wrapped into a typed error);
- ``structural``: loaded, but what it holds disagrees with its header (counts, dimensions, metric) or a stored
  vector is non-finite.

The run exits non-zero if any input is a crash, hang, untyped error or structural acceptance.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import json
import logging
import math
import multiprocessing
import os
import resource
import select
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from . import container

logger = logging.getLogger(__name__)

#: outcome classes, in table order; the last four (and crash) fail a run
OUTCOMES = ("refused", "ok", "crash", "hang", "untyped", "structural")
BAD_OUTCOMES = frozenset({"crash", "hang", "untyped", "structural"})

#: mutation operators, drawn uniformly (a few inputs stack two or three)
OPERATORS = ("bitflip", "byte", "word", "float", "truncate", "extend", "splice", "json", "ids")

#: the values a JSON leaf is replaced with: boundaries of the integer types the loaders parse into, wrong types
_JSON_VALUES: tuple[Any, ...] = (
    0, 1, -1, 2, 3, 7, 9, 16, 64, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**64,
    -(2**63), 0.5, 1e308, -1e308, "", "x", None, True, False, [], {}, [0], "cosine", "euclidean", "dot_product",
    "faiss", "hnswlib", "numpy", "scalar", "product", "rabitq", "<f4", "|u1", "<f8", "<i8", "|b1",
)
#: 32- and 64-bit words written over native header fields (counts, sizes, offsets)
_WORDS32 = (0, 1, 2, 0x7F, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE)
_WORDS64 = (*_WORDS32, 2**32, 2**48, 2**62, 2**63 - 1, 2**63, 2**64 - 1)
_FLOATS = (float("nan"), float("inf"), float("-inf"), 3.0e38, -3.0e38, 1e-45, -0.0, 0.0, 1.0, -1.0, 1e30)
#: bytes of a native payload that count as its header for the word operator
_NATIVE_HEADER = 256

_DIGEST = 32
_PREFIX = struct.Struct("<8sHH")


# ------------------------------------------------------------------------------------------------ containers
@dataclass
class Box:
    """A parsed container: prefix fields, JSON header, and each array's table entry with its bytes."""

    version: int
    kind: bytes
    header: Any
    arrays: list[tuple[dict[str, Any], bytearray]]

    @staticmethod
    def parse(blob: bytes) -> Box | None:
        """The container ``blob`` holds, or None if it is not one (then it is a native payload)."""
        if len(blob) < _PREFIX.size + 4 + _DIGEST or not blob.startswith(container.MAGIC):
            return None
        try:
            _, version, kind_len = _PREFIX.unpack_from(blob, 0)
            pos = _PREFIX.size
            kind = blob[pos : pos + kind_len]
            pos += kind_len
            (header_len,) = struct.unpack_from("<I", blob, pos)
            pos += 4
            header = json.loads(blob[pos : pos + header_len])
            pos += header_len
            arrays = []
            for entry in header["arrays"]:
                nbytes = int(entry["nbytes"])
                arrays.append((entry, bytearray(blob[pos : pos + nbytes])))
                pos += nbytes
        except (ValueError, KeyError, TypeError, struct.error):
            return None
        return Box(version, kind, header, arrays)

    def pack(self) -> bytes:
        """Bytes again, with the array table as it now stands and a fresh sha256 (container's own layout)."""
        if isinstance(self.header, dict) and "arrays" in self.header:
            self.header["arrays"] = [entry for entry, _ in self.arrays]
        head = json.dumps(self.header, separators=(",", ":")).encode()
        body = b"".join([_PREFIX.pack(container.MAGIC, self.version, len(self.kind)), self.kind,
                         struct.pack("<I", len(head)), head, *(bytes(data) for _, data in self.arrays)])
        return body + hashlib.sha256(body).digest()


def _resize(entry: dict[str, Any], data: bytearray) -> None:
    """Make a table entry describe ``data`` after a length change (whole rows kept 2-D; else 1-D, or, when the
    bytes are no whole number of items, left for the container to refuse)."""
    entry["nbytes"] = len(data)
    try:
        itemsize = np.dtype(entry["dtype"]).itemsize
        shape = list(entry["shape"])
    except (TypeError, KeyError, ValueError):
        return
    if not itemsize or len(data) % itemsize:
        return
    items = len(data) // itemsize
    # an earlier json edit may have left any value in the shape: only a positive int width is kept
    width = shape[1] if len(shape) == 2 and type(shape[1]) is int and shape[1] > 0 else None
    if width is not None and items % width == 0:
        entry["shape"] = [items // width, width]
    elif len(shape) <= 1:
        entry["shape"] = [items]


class Mutator:
    """Derives mutated blobs from one serialized index, deterministically from a seed."""

    def __init__(self, blob: bytes, rng: np.random.Generator) -> None:
        self.blob = blob
        self.rng = rng

    def mutate(self) -> tuple[bytes, str]:
        """One mutated blob and the operators applied, e.g. ``'bitflip'`` or ``'json+truncate'``."""
        stack = 1 + int(self.rng.random() < 0.15) + int(self.rng.random() < 0.05)
        blob, names = self.blob, []
        for _ in range(stack):
            op = OPERATORS[int(self.rng.integers(len(OPERATORS)))]
            blob = self._apply(blob, op)
            names.append(op)
        return blob, "+".join(names)

    # a path from the outer container down to a leaf array: [(box, array index), ...]
    def _descend(self, outer: Box) -> list[tuple[Box, int]]:
        path: list[tuple[Box, int]] = []
        box: Box | None = outer
        while box is not None and box.arrays and len(path) < 4:
            sizes = np.array([max(len(d), 1) for _, d in box.arrays], dtype=np.float64)
            names = [e.get("name") for e, _ in box.arrays]
            if "payload" in names and self.rng.random() < 0.8:
                i = names.index("payload")  # the native payload is what the fuzz is about
            else:
                i = int(self.rng.choice(len(sizes), p=sizes / sizes.sum()))
            path.append((box, i))
            box = Box.parse(bytes(box.arrays[i][1]))
            if box is not None and self.rng.random() < 0.15:
                break  # sometimes damage a nested container's bytes themselves
        return path

    def _apply(self, blob: bytes, op: str) -> bytes:
        outer = Box.parse(blob)
        if outer is None:  # an earlier operator broke the outer container: damage raw bytes
            return bytes(self._raw(bytearray(blob), "bitflip", {"dtype": "|u1", "shape": [len(blob)]}))
        if op == "json":
            boxes = [outer]
            for _box, i in self._descend(outer):
                inner = Box.parse(bytes(_box.arrays[i][1]))
                if inner is None:
                    break
                boxes.append(inner)
            return self._json_chain(outer, boxes[int(self.rng.integers(len(boxes)))])
        if op == "ids":
            names = [e.get("name") for e, _ in outer.arrays]
            choices = [n for n in ("live", "tombstones", "id_offsets", "id_bytes") if n in names]
            if choices:
                i = names.index(choices[int(self.rng.integers(len(choices)))])
                entry, data = outer.arrays[i]
                outer.arrays[i] = (entry, self._raw(data, "word" if entry.get("dtype") == "<i8" else "byte", entry))
                return outer.pack()
            op = "byte"
        path = self._descend(outer)
        if not path:
            return outer.pack()
        leaf_box, leaf_i = path[-1]
        entry, data = leaf_box.arrays[leaf_i]
        leaf_box.arrays[leaf_i] = (entry, self._raw(data, op, entry))
        return self._repack(path)

    @staticmethod
    def _repack(path: list[tuple[Box, int]]) -> bytes:
        """Re-wrap every container from the leaf's up to the outer one, each with its own new checksum."""
        packed = path[-1][0].pack()
        for box, i in reversed(path[:-1]):
            entry, _ = box.arrays[i]
            data = bytearray(packed)
            box.arrays[i] = (entry, data)
            _resize(entry, data)
            packed = box.pack()
        # the leaf's own length may have changed: its table entry was updated in _raw
        return packed

    def _json_chain(self, outer: Box, target: Box) -> bytes:
        self._json_edit(target)
        if target is outer:
            return outer.pack()
        # find target again along the nesting and repack from there (nested boxes were parsed fresh)
        path: list[tuple[Box, int]] = []
        box = outer
        packed_target = target.pack()
        while True:
            idx = next((i for i, (e, d) in enumerate(box.arrays) if Box.parse(bytes(d)) is not None), None)
            if idx is None:
                return outer.pack()
            path.append((box, idx))
            inner = Box.parse(bytes(box.arrays[idx][1]))
            if inner is not None and inner.kind == target.kind:
                entry, _ = box.arrays[idx]
                box.arrays[idx] = (entry, bytearray(packed_target))
                _resize(entry, box.arrays[idx][1])
                break
            box = inner  # type: ignore[assignment]
        packed = path[-1][0].pack()
        for parent, i in reversed(path[:-1]):
            entry, _ = parent.arrays[i]
            parent.arrays[i] = (entry, bytearray(packed))
            _resize(entry, parent.arrays[i][1])
            packed = parent.pack()
        return packed

    def _json_edit(self, box: Box) -> None:
        leaves: list[tuple[Any, Any]] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    leaves.append((node, key))
                    walk(value)
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    leaves.append((node, i))
                    walk(value)

        walk(box.header)
        if not leaves:
            return
        parent, key = leaves[int(self.rng.integers(len(leaves)))]
        current = parent[key]
        roll = self.rng.random()
        if roll < 0.1 and isinstance(parent, dict):
            del parent[key]
        elif roll < 0.35 and isinstance(current, int) and not isinstance(current, bool):
            parent[key] = current + int(self.rng.choice([-2, -1, 1, 2, 8]))
        else:
            parent[key] = _JSON_VALUES[int(self.rng.integers(len(_JSON_VALUES)))]

    def _raw(self, data: bytearray, op: str, entry: dict[str, Any]) -> bytearray:
        rng, n = self.rng, len(data)
        if op in ("bitflip", "byte", "word", "float", "splice") and n == 0:
            op = "extend"
        if op == "bitflip":
            for _ in range(int(rng.integers(1, 9))):
                bit = int(rng.integers(n * 8))
                data[bit // 8] ^= 1 << (bit % 8)
        elif op == "byte":
            for _ in range(int(rng.integers(1, 5))):
                data[int(rng.integers(n))] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFE, 0xFF, int(rng.integers(256))]))
        elif op == "word":
            width = 8 if rng.random() < 0.5 else 4
            span = max(1, min(n, _NATIVE_HEADER) - width + 1)
            pos = int(rng.integers(span)) // 4 * 4  # header fields sit on 4-byte boundaries
            word = int(rng.choice(_WORDS64 if width == 8 else _WORDS32))
            data[pos : pos + width] = (word % 2 ** (8 * width)).to_bytes(width, "little")[: max(0, n - pos)]
        elif op == "float":
            if n >= 4:
                pos = int(rng.integers(n // 4)) * 4
                data[pos : pos + 4] = struct.pack("<f", float(rng.choice(_FLOATS)))
        elif op == "truncate":
            cut = int(rng.integers(n)) if n else 0
            del data[cut if rng.random() < 0.5 else max(0, n - int(rng.integers(1, 17))) :]
        elif op == "extend":
            extra = int(rng.choice([1, 4, 8, 64, 1024]))
            fill = bytes(extra) if rng.random() < 0.5 else rng.integers(0, 256, extra, dtype=np.uint8).tobytes()
            data.extend(fill)
        elif op == "splice":
            length = int(rng.integers(1, min(n, 64) + 1))
            src, dst = int(rng.integers(n - length + 1)), int(rng.integers(n - length + 1))
            data[dst : dst + length] = data[src : src + length]
        _resize(entry, data)
        return data


# --------------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One serialized index to mutate, with what its faithful load answers (the consistency baseline)."""

    backend: str
    codec: str  # 'float' or a quantization kind
    blob: bytes
    queries: list[list[float]]
    #: per query, id -> score of the original index (k = every live vector)
    baseline: list[dict[str, float]]

    @property
    def label(self) -> str:
        """``backend`` for float indexes, ``backend/kind`` for quantized ones."""
        return self.backend if self.codec == "float" else f"{self.backend}/{self.codec}"


#: small enough to fork and check in milliseconds, large enough for a real graph and PQ codebooks
_N, _DIM = 24, 8


def _metric_for(codec: str) -> str:
    # rabitq serves euclidean everywhere (ruvector's refuses dot); binary and usearch's scalar serve cosine only
    return {"float": "euclidean", "rabitq": "euclidean"}.get(codec, "cosine")


def build_targets(backends: Iterable[str], seed: int = 0) -> tuple[list[Target], dict[str, str]]:
    """A target per available backend and per codec it serves; returns ``(targets, {skipped backend: why})``."""
    import ruvector_lab as rl
    from ruvector_lab.backends import spec

    available = rl.Runtime.available()
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((_N, _DIM)).astype(np.float32)
    ids = [f"id-{i}" for i in range(_N)]
    for name in backends:
        if available.get(name) is not True:
            skipped[name] = str(available.get(name, "unknown backend"))
            logger.warning("fuzz: skipping backend %s: %s", name, skipped[name])
            continue
        for codec in ("float", *sorted(spec(name).codecs)):
            quant = None if codec == "float" else rl.QuantizationConfig(kind=codec, m=2, seed=seed)  # type: ignore
            config = rl.HnswConfig(dimensions=_DIM, m=8, ef_construction=32, ef_search=32, metric=_metric_for(codec),
                                   quantization=quant, rerank=4 if quant is not None else 0)
            index = rl.HnswIndex(config, backend=name)
            try:
                index.insert_batch(ids, data)
                index.delete(ids[5])  # a tombstone, so the label tables are not trivial
                queries = [data[0], data[7], np.ones(_DIM, dtype=np.float32)]
                baseline = [{r.id: r.score for r in index.search(q, k=_N, ef_search=64)} for q in queries]
                targets.append(Target(name, codec, index.serialize(), [q.tolist() for q in queries], baseline))
            finally:
                index.close()
    return targets, skipped


# ------------------------------------------------------------------------------------------- the check (child)
def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def check_blob(blob: bytes, queries: Sequence[Sequence[float]], baseline: Sequence[dict[str, float]]) -> dict[str, str]:
    """Load ``blob`` and classify it (``refused`` / ``ok`` / ``untyped`` / ``structural``) with a detail line.

    Runs in the forked child; a crash or hang in here is classified by the parent.
    """
    from ruvector_lab import HnswIndex
    from ruvector_lab.errors import RuvectorLabError

    try:
        index = HnswIndex.deserialize(blob)
    except RuvectorLabError as exc:
        if any(isinstance(e, MemoryError) for e in _chain(exc)):
            return {"outcome": "untyped", "detail": f"MemoryError wrapped as {type(exc).__name__}: {exc}"[:300]}
        return {"outcome": "refused", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    except BaseException as exc:  # classifying every escape is the point
        return {"outcome": "untyped", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        problem = _consistency(index, blob, queries, baseline)
        index.close()
    except RuvectorLabError as exc:
        # a loaded index that then refuses its own search or stats accepted what it could not hold
        return {"outcome": "structural", "detail": f"loaded, then {type(exc).__name__}: {exc}"[:300]}
    except BaseException as exc:  # an error after a load is classified too
        return {"outcome": "untyped", "detail": f"after load {type(exc).__name__}: {exc}"[:300]}
    if problem:
        return {"outcome": "structural", "detail": problem[:300]}
    return {"outcome": "ok", "detail": ""}


def _consistency(index: Any, blob: bytes, queries: Sequence[Sequence[float]],
                 baseline: Sequence[dict[str, float]]) -> str:
    """An empty string if the loaded index agrees with its header and the original, else what disagrees."""
    from ruvector_lab import HnswConfig, HnswIndex

    meta, arrays = container.loads(blob, "hnsw-index")
    header = HnswConfig.from_dict(meta["config"]).to_dict()  # as the loader read it: absent keys take defaults
    live = len(arrays["live"])
    stats = index.stats()
    if stats.vector_count != live or len(index) != live:
        return f"stats count {stats.vector_count} != header's {live} live labels"
    if stats.dimensions != header["dimensions"] or stats.metric != header["metric"]:
        return f"stats {stats.dimensions}-d {stats.metric} != header {header['dimensions']}-d {header['metric']}"
    dims = int(header["dimensions"])
    live_ids = set(index._labels)  # the facade's own id map: what the header holds
    rows = _stored_rows(index._backend, dims)
    for part in rows:
        if part.size and not np.isfinite(part).all():
            return f"a stored vector is not finite ({int((~np.isfinite(part)).any(axis=-1).sum())} rows)"
    rows_finite = bool(rows)
    for query, expected in zip(queries, baseline, strict=True):
        q = np.zeros(dims, dtype=np.float32)
        q[: min(dims, len(query))] = np.asarray(query[:dims], dtype=np.float32)
        if not q.any():
            q[0] = 1.0
        hits = index.search(q, k=max(1, live), ef_search=max(64, 2 * live))
        found = [h.id for h in hits]
        scores = np.array([h.score for h in hits], dtype=np.float64)
        if len(found) > live or len(set(found)) != len(found) or not set(found) <= live_ids:
            return f"search returned {len(found)} hits ({len(set(found))} distinct) for {live} live ids"
        if index.stats().graph == "flat" and len(found) != live:
            return f"an exact search returned {len(found)} hits for {live} live vectors"
        if not np.isfinite(scores).all() and not rows_finite:
            # with every stored row known and finite, an inf is float32 overflow of huge values that insert
            # accepts too; otherwise it is a non-finite stored vector (or state we cannot see into)
            return "a search returned a non-finite score and the stored rows cannot be shown finite"
        if np.any(np.diff(scores) < -1e-4 * (1 + np.abs(scores[1:]))):
            return "search scores are not sorted ascending"
        same = [i for i in found if i in expected]
        if dims == _DIM and len(q) == len(query) and len(same) >= 2:
            diff = [abs(dict(zip(found, scores, strict=True))[i] - expected[i]) > 1e-3 * (1 + abs(expected[i]))
                    for i in same]
            if sum(diff) * 2 > len(same):
                return f"{sum(diff)} of {len(same)} scores differ from the original index: metric or scale changed"
    again = HnswIndex.deserialize(index.serialize())  # what was accepted must survive its own round trip
    again.close()
    return ""


def _stored_rows(backend: Any, dims: int) -> list[np.ndarray]:
    """The float rows a loaded backend holds, where they can be read: its own float arrays, decoded codes, and
    each library's export call. Empty when none can (then non-finite scores cannot be told from overflow)."""
    found: list[np.ndarray] = []

    def take(value: Any) -> None:
        if not isinstance(value, np.ndarray | list | tuple):
            return  # np.asarray on a library object may iterate it without end (usearch's Index does)
        with contextlib.suppress(Exception):
            arr = np.asarray(value)
            if arr.dtype.kind == "f" and arr.ndim == 2 and arr.shape[1] == dims:
                found.append(arr)

    for value in vars(backend).values():
        view = getattr(value, "view", None)  # the quantized backends' growable Rows
        take(view if isinstance(view, np.ndarray) else value)
    codec, codes = getattr(backend, "_codec", None), getattr(backend, "_codes", None)
    if codec is not None and isinstance(getattr(codes, "view", None), np.ndarray):
        with contextlib.suppress(Exception):
            take(codec.decode(codes.view))
    lib = getattr(backend, "_index", None)
    if lib is not None:
        calls: list[Callable[[], Any]] = [
            lambda: lib.reconstruct_n(0, lib.ntotal),  # faiss
            lambda: lib.get_items(sorted(backend._live)),  # hnswlib (deleted labels raise there)
            lambda: [v for _label, v, *_ in lib.export_items()],  # ruvector
            lambda: lib.get(np.asarray(lib.keys)),  # usearch
        ]
        for call in calls:
            with contextlib.suppress(Exception):
                take(call())
    return found


# ------------------------------------------------------------------------------------------------ self tests
def _self_abort() -> dict[str, str]:
    os.abort()


def _self_hang() -> dict[str, str]:
    while True:
        time.sleep(1)


def _self_untyped() -> dict[str, str]:
    raise RuntimeError("deliberate untyped error")


def _self_memory() -> dict[str, str]:
    np.ones(1 << 34, dtype=np.uint8)  # 16 GiB: past any memory limit the harness sets
    return {"outcome": "ok", "detail": "a 16 GiB allocation succeeded: no memory limit"}


def _self_exit() -> dict[str, str]:
    os._exit(3)


#: checks that prove the classifier (``--self-test``, tests/test_fuzz.py): the outcome each must get
SELF_TESTS: dict[str, tuple[Callable[[], dict[str, str]], str]] = {
    "abort": (_self_abort, "crash"),
    "exit": (_self_exit, "crash"),
    "hang": (_self_hang, "hang"),
    "untyped": (_self_untyped, "untyped"),
    "memory": (_self_memory, "untyped"),
}


# ------------------------------------------------------------------------------------------------- workers
@dataclass
class Task:
    """One input: a blob for :func:`check_blob`, or a self test by name."""

    key: int
    label: str
    op: str
    blob: bytes = b""
    queries: list[list[float]] = field(default_factory=list)
    baseline: list[dict[str, float]] = field(default_factory=list)
    self_test: str | None = None


@dataclass
class Result:
    """What one input did: its class, a detail line, the child's peak RSS and wall time."""

    key: int
    label: str
    op: str
    outcome: str
    detail: str
    maxrss_kb: int
    seconds: float


def _limit_child(memory_mb: int, timeout: float, reserve_wasm: bool) -> None:
    """Caps of the forked child: address space (current + budget; wasmtime reserves ~4 GiB a linear memory
    up front, so the wasm backend gets room for two reservations), CPU seconds, no core files."""
    budget = memory_mb << 20
    try:
        with open("/proc/self/statm") as handle:
            current = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        current = 0
    limit = current + budget + ((10 << 30) if reserve_wasm else 0)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = max(1, math.ceil(timeout) + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_forked(task: Task, memory_mb: int, timeout: float, log_path: str) -> Result:
    """Fork one child for ``task``, wait for it under ``timeout``, and classify how it ended."""
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: limits, the check, the verdict down the pipe, and out without cleanup handlers
        code = 0
        try:
            os.close(read_fd)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            # a hang leaves its Python stack in the log (most recent call first) for the report
            faulthandler.dump_traceback_later(max(0.2, timeout * 0.8), exit=False, file=log_fd)
            _limit_child(memory_mb, timeout, reserve_wasm=task.label.startswith("wasm"))
            if task.self_test is not None:
                verdict = SELF_TESTS[task.self_test][0]()
            else:
                verdict = check_blob(task.blob, task.queries, task.baseline)
            os.write(write_fd, json.dumps(verdict).encode())
        except BaseException as exc:  # a self test raising is an untyped error
            with contextlib.suppress(BaseException):
                os.write(write_fd, json.dumps({"outcome": "untyped", "detail": f"{type(exc).__name__}: {exc}"[:300]
                                               }).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = started + timeout
    status = rusage = None
    while True:
        waited, status, rusage = os.wait4(pid, os.WNOHANG)
        if waited:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            _, status, rusage = os.wait4(pid, 0)
            os.close(read_fd)
            return Result(task.key, task.label, task.op, "hang",
                          f"no answer within {timeout:g} s: {_head(log_path)}", rusage.ru_maxrss,
                          time.monotonic() - started)
        ready, _, _ = select.select([read_fd], [], [], min(left, 0.05))
        if ready:
            chunk = os.read(read_fd, 65536)
            if chunk:
                chunks.append(chunk)
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    seconds = time.monotonic() - started
    if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
        how = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit code {os.WEXITSTATUS(status)}")
        return Result(task.key, task.label, task.op, "crash", f"{how}: {_tail(log_path)}", rusage.ru_maxrss, seconds)
    try:
        verdict = json.loads(b"".join(chunks))
    except ValueError:
        return Result(task.key, task.label, task.op, "crash", f"no verdict: {_tail(log_path)}", rusage.ru_maxrss,
                      seconds)
    return Result(task.key, task.label, task.op, verdict["outcome"], verdict["detail"], rusage.ru_maxrss, seconds)


def _head(path: str, size: int = 400) -> str:
    try:
        data = Path(path).read_bytes()[:size]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip().replace("\n", " | ")


def _tail(path: str, size: int = 300) -> str:
    try:
        data = Path(path).read_bytes()[-size:]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip().replace("\n", " | ")


def _worker(conn: Connection, backends: list[str], memory_mb: int, timeout: float) -> None:
    """A fresh interpreter: import the backends' modules once, then fork a child per task it is sent.

    The worker runs no library code itself: a library that has started its thread pool (usearch's did) hangs in
    a forked child that waits on threads it does not have. So each child probes its backend itself (a few ms).
    """
    logging.basicConfig(level=logging.ERROR)
    from ruvector_lab.backends import SPECS, _import

    for record in SPECS:
        if record.name in backends:
            for path in filter(None, (record.float_class, record.quantized_class)):
                with contextlib.suppress(Exception):  # an unavailable backend is refused in the child, typed
                    _import(record.name, path)
    fd, log_path = tempfile.mkstemp(prefix="ruvector-fuzz-", suffix=".log")
    os.close(fd)
    try:
        conn.send("ready")
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            conn.send(_run_forked(task, memory_mb, timeout, log_path))
    finally:
        Path(log_path).unlink(missing_ok=True)


def run_tasks(tasks: Sequence[Task], backends: Sequence[str], workers: int = 2, memory_mb: int = 1024,
              timeout: float = 10.0) -> list[Result]:
    """Classify every task in forked children of ``workers`` fresh worker processes; results in task order."""
    ctx = multiprocessing.get_context("spawn")  # workers start clean: no threads, no state of the caller
    procs: list[tuple[Any, Connection]] = []

    def start() -> tuple[Any, Connection]:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, list(backends), memory_mb, timeout), daemon=True)
        proc.start()
        child.close()
        if parent.recv() != "ready":
            raise RuntimeError("fuzz worker did not start")
        return proc, parent

    queue = list(reversed(tasks))
    results: dict[int, Result] = {}
    busy: dict[Connection, Task] = {}
    try:
        procs = [start() for _ in range(max(1, min(workers, len(tasks))))]
        idle = [conn for _, conn in procs]
        while queue or busy:
            while queue and idle:
                conn = idle.pop()
                task = queue.pop()
                conn.send(task)
                busy[conn] = task
            for conn in wait(list(busy)):
                task = busy.pop(conn)  # type: ignore[arg-type]
                try:
                    result = conn.recv()  # type: ignore[union-attr]
                except EOFError:  # the worker itself died (never expected: children take the damage)
                    result = Result(task.key, task.label, task.op, "crash", "worker died", 0, 0.0)
                    i = next(j for j, (_, c) in enumerate(procs) if c is conn)
                    procs[i] = start()
                    conn = procs[i][1]
                results[result.key] = result
                idle.append(conn)  # type: ignore[arg-type]
    finally:
        for proc, conn in procs:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    return [results[t.key] for t in tasks]


# --------------------------------------------------------------------------------------------------- a run
def make_tasks(targets: Sequence[Target], per_backend: int, seed: int) -> list[Task]:
    """``per_backend`` mutated inputs per backend, shared out evenly over its targets (float and codecs)."""
    by_backend: dict[str, list[Target]] = {}
    for target in targets:
        by_backend.setdefault(target.backend, []).append(target)
    tasks: list[Task] = []
    for backend, group in by_backend.items():
        for j, target in enumerate(group):
            count = per_backend // len(group) + (1 if j < per_backend % len(group) else 0)
            digest = int.from_bytes(hashlib.sha256(target.label.encode()).digest()[:4], "little")
            mutator = Mutator(target.blob, np.random.default_rng([seed, digest]))
            for _ in range(count):
                blob, op = mutator.mutate()
                tasks.append(Task(len(tasks), target.label, op, blob, target.queries, target.baseline))
        logger.info("fuzz: %d inputs for %s over %d targets", per_backend, backend, len(group))
    return tasks


def summarize(results: Sequence[Result]) -> dict[str, dict[str, Any]]:
    """Per target label: a count per outcome class, inputs, peak child RSS (MiB) and the slowest input (s)."""
    table: dict[str, dict[str, Any]] = {}
    for r in results:
        row = table.setdefault(r.label, {"inputs": 0, **dict.fromkeys(OUTCOMES, 0), "max_rss_mib": 0.0,
                                         "max_seconds": 0.0})
        row["inputs"] += 1
        row[r.outcome] += 1
        row["max_rss_mib"] = max(row["max_rss_mib"], round(r.maxrss_kb / 1024, 1))
        row["max_seconds"] = max(row["max_seconds"], round(r.seconds, 3))
    return table


def format_table(table: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    """The summary as a text table, backends in registry order with their codecs beneath them."""
    cols = ("inputs", *OUTCOMES, "max_rss_mib", "max_seconds")
    width = max([len("target"), *(len(k) for k in table)]) + 2
    lines = ["target".ljust(width) + "".join(c.rjust(12) for c in cols)]
    for label, row in table.items():
        lines.append(label.ljust(width) + "".join(str(row[c]).rjust(12) for c in cols))
    total = Counter()
    for row in table.values():
        total.update({c: row[c] for c in ("inputs", *OUTCOMES)})
    lines.append("total".ljust(width) + "".join(str(total.get(c, "")).rjust(12) for c in cols))
    lines.extend(f"skipped {name}: {why}" for name, why in skipped.items())
    return "\n".join(lines)


def fuzz(backends: Sequence[str] | None = None, per_backend: int = 200, seed: int = 0, workers: int = 2,
         memory_mb: int = 1024, timeout: float = 10.0) -> dict[str, Any]:
    """Build targets, mutate, classify; the report as a JSON-able dict (``table``, ``failures``, ``skipped``)."""
    from ruvector_lab.backends import names

    chosen = list(backends or names())
    started = time.monotonic()
    targets, skipped = build_targets(chosen, seed)
    tasks = make_tasks(targets, per_backend, seed)
    results = run_tasks(tasks, [t for t in chosen if t not in skipped], workers, memory_mb, timeout)
    table = summarize(results)
    failures = [vars(r) for r in results if r.outcome in BAD_OUTCOMES]
    return {"seed": seed, "per_backend": per_backend, "inputs": len(results),
            "wall_seconds": round(time.monotonic() - started, 1), "table": table, "skipped": skipped,
            "failures": failures, "bad": sum(1 for r in results if r.outcome in BAD_OUTCOMES)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ruvector_lab.fuzz``: fuzz the loaders; exit 1 if any input crashed, hung, escaped untyped or
    was accepted inconsistent."""
    from ruvector_lab.backends import names

    parser = argparse.ArgumentParser(prog="python -m ruvector_lab.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=names(), help="backend to fuzz (repeatable; "
                        "default: every backend; unavailable ones are skipped, saying why)")
    parser.add_argument("--per-backend", type=int, default=200, help="mutated inputs per backend (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and mutations (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input before it is a hang")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space a child may add (MiB)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' for stdout)")
    parser.add_argument("--self-test", action="store_true", help="check the classifier on deliberate failures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.self_test:
        tasks = [Task(i, "self-test", name, self_test=name) for i, name in enumerate(SELF_TESTS)]
        results = run_tasks(tasks, [], args.workers, args.memory_mb, min(args.timeout, 3.0))
        wrong = [r for r in results if r.outcome != SELF_TESTS[r.op][1]]
        for r in results:
            logger.info("self-test %-8s -> %-8s %s", r.op, r.outcome, r.detail[:120])
        return 1 if wrong else 0
    report = fuzz(args.backend, args.per_backend, args.seed, args.workers, args.memory_mb, args.timeout)
    logger.info("%s", format_table(report["table"], report["skipped"]))
    logger.info("%d inputs in %.1f s; %d bad", report["inputs"], report["wall_seconds"], report["bad"])
    for failure in report["failures"][:20]:
        logger.info("%s [%s] %s: %s", failure["label"], failure["op"], failure["outcome"], failure["detail"])
    if args.json:
        text = json.dumps(report, indent=1)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(args.json).write_text(text)
    return 1 if report["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
