"""WasmBackend: exact search in rvf-wasm's store, its export as the payload, and the checks at the boundary."""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import pytest
from helpers import requires_wasm

import ruvector_lab as rl
from ruvector_lab import container
from ruvector_lab.backends import wasm_backend
from ruvector_lab.distances import pairwise_float32
from ruvector_lab.errors import (
    BackendError,
    BackendUnavailableError,
    CorruptIndexError,
    DimensionMismatchError,
    IndexClosedError,
    InvalidParameterError,
    InvalidVectorError,
)
from ruvector_lab.wasm import rvf_format
from ruvector_lab.wasm.rvf import MAX_DIMENSIONS, MAX_ID, RvfModule

pytestmark = requires_wasm()
METRICS = list(rl.METRICS)


def make(dim: int, metric: str = "euclidean") -> wasm_backend.WasmBackend:
    return wasm_backend.WasmBackend(rl.HnswConfig(dimensions=dim, metric=metric))


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((400, 12)).astype(np.float32), rng.standard_normal((7, 12)).astype(np.float32)


def _expected(queries: np.ndarray, base: np.ndarray, labels: np.ndarray, metric: str, k: int):
    ref = pairwise_float32(queries, base, metric)
    order = np.lexsort((np.broadcast_to(labels, ref.shape), ref), axis=1)[:, :k]
    return np.take_along_axis(ref, order, 1), labels[order]


@pytest.mark.parametrize("metric", METRICS)
def test_search_is_exact_under_every_metric(metric, data):
    base, queries = data
    backend = make(base.shape[1], metric)
    try:
        backend.add(np.arange(len(base), dtype=np.int64), base)
        dist, lab = backend.search(queries, 10, 50)
        want_d, want_l = _expected(queries, base, np.arange(len(base)), metric, 10)
        assert dist.dtype == np.float32 and lab.dtype == np.int64 and lab.shape == (7, 10)
        np.testing.assert_array_equal(lab, want_l)
        np.testing.assert_allclose(dist, want_d, atol=1e-4, rtol=1e-5)
    finally:
        backend.close()


def test_k_beyond_the_live_count_is_padded(data):
    base, queries = data
    backend = make(base.shape[1])
    backend.add(np.arange(3, dtype=np.int64), base[:3])
    dist, lab = backend.search(queries[:2], 5, 10)
    assert (lab[:, 3:] == -1).all() and np.isinf(dist[:, 3:]).all()
    assert sorted(lab[0, :3].tolist()) == [0, 1, 2]
    empty = make(base.shape[1])
    dist, lab = empty.search(queries[:1], 4, 10)
    assert (lab == -1).all() and np.isinf(dist).all()
    backend.close()
    empty.close()


def test_ties_keep_insertion_order():
    backend = make(4)
    v = np.ones((5, 4), dtype=np.float32)
    backend.add(np.arange(10, 15, dtype=np.int64), v)
    _, lab = backend.search(v[:1], 5, 5)
    assert lab[0].tolist() == [10, 11, 12, 13, 14]
    backend.close()


def test_removed_labels_never_return_and_compaction_bounds_slots(data):
    base, queries = data
    backend = make(base.shape[1], "cosine")
    backend.add(np.arange(len(base), dtype=np.int64), base)
    removed = np.arange(0, 350, dtype=np.int64)
    for chunk in np.array_split(removed, 7):
        backend.remove(chunk)
    extra = backend.stats_extra()
    assert extra["wasm_compactions"] >= 1
    assert extra["wasm_slots"] - extra["wasm_deleted_slots"] == 50
    assert extra["wasm_slots"] <= 50 + max(wasm_backend.WasmBackend.compact_min_deleted, 50)
    _, lab = backend.search(queries, 50, 50)
    assert set(lab.ravel().tolist()) == set(range(350, 400))
    want_d, want_l = _expected(queries, base[350:], np.arange(350, 400), "cosine", 10)
    dist, lab = backend.search(queries, 10, 50)
    np.testing.assert_array_equal(lab, want_l)
    np.testing.assert_allclose(dist, want_d, atol=1e-4)
    with pytest.raises(BackendError, match="held 0 of the 1"):
        backend.remove(np.array([5], dtype=np.int64))
    backend.close()


@pytest.mark.parametrize("metric", METRICS)
def test_export_round_trip(metric, data):
    base, queries = data
    backend = make(base.shape[1], metric)
    backend.add(np.arange(len(base), dtype=np.int64), base)
    backend.remove(np.arange(0, 400, 3, dtype=np.int64))
    payload = backend.to_bytes()
    meta, _ = container.loads(payload, wasm_backend.PAYLOAD_KIND)
    assert meta == {"metric": metric}
    export = _export(payload)
    assert export[:4] == b"SFVR"
    live = np.setdiff1d(np.arange(400), np.arange(0, 400, 3))
    parsed = rvf_format.parse_export(export, base.shape[1])
    np.testing.assert_array_equal(parsed.ids.astype(np.int64), live)
    stored = base[live] / np.linalg.norm(base[live].astype(np.float64), axis=1, keepdims=True) if metric == "cosine" \
        else base[live]  # cosine keeps unit rows
    np.testing.assert_allclose(parsed.vectors, stored, rtol=1e-6, atol=1e-7)
    copy = wasm_backend.WasmBackend.from_bytes(backend.config, payload, live)
    a, b = backend.search(queries, 10, 10), copy.search(queries, 10, 10)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert copy.to_bytes() == payload
    legacy = wasm_backend.WasmBackend.from_bytes(backend.config, export, live)  # a bare export, as written before
    np.testing.assert_array_equal(legacy.search(queries, 10, 10)[1], a[1])
    other = "euclidean" if metric != "euclidean" else "cosine"
    with pytest.raises(CorruptIndexError, match=f"written under the '{metric}' metric"):
        wasm_backend.WasmBackend.from_bytes(replace(backend.config, metric=other), payload, live)
    legacy.close()
    copy.close()
    backend.close()
    copy.close()


def test_export_of_more_than_65535_vectors_round_trips():
    # the module's count field is 16 bits; the payload length still says how many vectors there are
    n = 70_000
    rng = np.random.default_rng(9)
    base = rng.standard_normal((n, 2)).astype(np.float32)
    backend = make(2)
    backend.add(np.arange(n, dtype=np.int64), base)
    payload = backend.to_bytes()
    assert struct.unpack_from("<H", _export(payload), 64)[0] == n % 65536
    copy = wasm_backend.WasmBackend.from_bytes(backend.config, payload, np.arange(n))
    q = base[:3] + 0.01
    np.testing.assert_array_equal(backend.search(q, 5, 5)[1], copy.search(q, 5, 5)[1])
    backend.close()
    copy.close()


def _export(payload: bytes) -> bytes:
    """The module's own export bytes inside a backend payload."""
    return container.loads(payload, wasm_backend.PAYLOAD_KIND)[1]["native"].tobytes()


def _payload(n: int = 5, dim: int = 4) -> bytes:
    """A bare rvf export (the loader takes one as it is), so its fields can be damaged at known offsets."""
    backend = make(dim)
    backend.add(np.arange(n, dtype=np.int64), np.arange(n * dim, dtype=np.float32).reshape(n, dim))
    try:
        return _export(backend.to_bytes())
    finally:
        backend.close()


def _with(payload: bytes, offset: int, data: bytes) -> bytes:
    return payload[:offset] + data + payload[offset + len(data) :]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda p: p[:-1], "bytes, expected"),
        (lambda p: p[:40], "truncated"),
        (lambda p: _with(p, 0, b"XXXX"), "magic"),
        (lambda p: _with(p, 5, b"\x05"), "segment type"),
        (lambda p: _with(p, 66, struct.pack("<I", 3)), "dimensions"),
        (lambda p: _with(p, 64, struct.pack("<H", 9)), "vectors of"),
        (lambda p: _with(p, 64 + 6 + 8, struct.pack("<f", float("nan"))), "NaN"),
        (lambda p: _with(p, 64 + 6 + 24, struct.pack("<Q", 0)), "same id twice"),
        (lambda p: _with(p, len(p) - 44 + 6, struct.pack("<Q", 4)), "manifest"),
    ],
)
def test_corrupt_payloads_are_refused(mangle, message):
    payload = _payload()
    config = rl.HnswConfig(dimensions=4, metric="euclidean")
    with pytest.raises(CorruptIndexError, match=message):
        wasm_backend.WasmBackend.from_bytes(config, mangle(payload), np.arange(5))


def test_payload_must_hold_exactly_the_live_labels():
    config = rl.HnswConfig(dimensions=4, metric="euclidean")
    with pytest.raises(CorruptIndexError, match="live labels"):
        wasm_backend.WasmBackend.from_bytes(config, _payload(), np.arange(1, 6))
    with pytest.raises(CorruptIndexError, match="dimensions"):
        wasm_backend.WasmBackend.from_bytes(rl.HnswConfig(dimensions=3), _payload(), np.arange(5))


def test_bad_input_is_refused_before_the_module(data):
    base, queries = data
    backend = make(base.shape[1])
    labels = np.arange(3, dtype=np.int64)
    with pytest.raises(DimensionMismatchError):
        backend.add(labels, base[:3, :5])
    with pytest.raises(DimensionMismatchError):
        backend.add(labels[:2], base[:3])
    with pytest.raises(InvalidVectorError, match="float32"):
        backend.add(labels, base[:3].astype(np.float64))
    bad = base[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(InvalidVectorError, match="NaN"):
        backend.add(labels, bad)
    huge = base[:3].copy()
    huge[0, 0] = 3e38
    with pytest.raises(InvalidVectorError, match="overflow"):
        backend.add(labels, huge)
    with pytest.raises(InvalidParameterError, match="labels must lie"):
        backend.add(np.array([-1, 0, 1]), base[:3])
    with pytest.raises(InvalidParameterError, match="labels must lie"):
        backend.add(np.array([0, 1, MAX_ID + 1], dtype=np.uint64), base[:3])
    with pytest.raises(InvalidParameterError, match="integer array"):
        backend.add(np.array([0.0, 1.0, 2.0]), base[:3])
    backend.add(labels, base[:3])
    for k in (0, -1, True, 2.5, 1 << 31):
        with pytest.raises(InvalidParameterError, match="k must be"):
            backend.search(queries[:1], k, 10)
    with pytest.raises(InvalidVectorError, match="NaN"):
        backend.search(np.full((1, base.shape[1]), np.inf, dtype=np.float32), 1, 1)
    with pytest.raises(DimensionMismatchError):
        backend.search(queries[:1, :3], 1, 1)
    # nothing bad got in: the store still answers exactly
    assert backend.search(base[:1], 1, 1)[1][0, 0] == 0
    backend.close()


def test_dimension_limit():
    # the library-wide bound (validation.MAX_DIMENSIONS) is below the module's own, so it refuses first
    with pytest.raises(InvalidParameterError, match=r"dimensions must be <= \d+"):
        make(MAX_DIMENSIONS + 1)


def test_capacity_beyond_wasm32_is_refused(monkeypatch, data):
    base, _ = data
    monkeypatch.setattr(wasm_backend, "MEMORY_BUDGET", 10_000)
    backend = make(base.shape[1])
    with pytest.raises(BackendError, match="4 GiB"):
        backend.add(np.arange(len(base), dtype=np.int64), base)
    backend.close()


def test_a_trap_becomes_backend_error_and_retires_the_instance(data):
    base, queries = data
    backend = make(base.shape[1])
    backend.add(np.arange(10, dtype=np.int64), base[:10])
    module = backend._module
    with pytest.raises(BackendError, match="trapped"):
        module.call("rvf_crc32c", 0x7FFF_FFF0, 0x100)  # reads past the end of linear memory
    assert module.poisoned is not None
    with pytest.raises(BackendError, match="earlier trap"):
        backend.search(queries[:1], 3, 3)
    backend.close()  # still closes cleanly


def test_closed_backend_refuses_use(data):
    base, queries = data
    backend = make(base.shape[1])
    backend.close()
    backend.close()
    with pytest.raises(IndexClosedError):
        backend.search(queries[:1], 1, 1)
    with pytest.raises(IndexClosedError):
        backend.add(np.arange(1, dtype=np.int64), base[:1])


def test_facade_on_the_wasm_backend(data):
    base, queries = data
    index = rl.HnswIndex(rl.HnswConfig(dimensions=base.shape[1], metric="cosine"), backend="wasm")
    index.insert_batch([f"v{i}" for i in range(100)], base[:100])
    index.insert("v3", base[200])  # replace
    assert index.delete("v7") and not index.delete("v7")
    stats = index.stats()
    assert (stats.backend, stats.tier, stats.graph, stats.vector_count) == ("wasm", "wasm", "flat", 99)
    assert stats.extra["wasm_memory_bytes"] >= 1 << 20 and stats.extra["wasm_module"].startswith("@ruvector/rvf-wasm")
    hits = index.search(base[200], k=3)
    assert hits[0].id == "v3" and hits[0].score == pytest.approx(0.0, abs=1e-5)
    copy = rl.HnswIndex.deserialize(index.serialize())
    assert copy.backend == "wasm" and len(copy) == 99
    original = [(r.id, r.score) for r in index.search(queries[0], k=5)]
    assert [(r.id, r.score) for r in copy.search(queries[0], k=5)] == original
    index.close()
    copy.close()


def test_memory_bytes_reports_linear_memory(data):
    base, _ = data
    backend = make(base.shape[1])
    before = backend.memory_bytes
    backend.add(np.arange(len(base), dtype=np.int64), base)
    assert backend.memory_bytes >= before >= 1 << 20
    backend.close()


def test_export_size_and_module_exports():
    assert rvf_format.export_size(5, 4) == len(_payload(5, 4)) == 64 + 6 + 5 * 24 + 64 + 44
    module = RvfModule()
    assert {"rvf_store_create", "rvf_store_export", "rvf_dequant_i8", "rvf_crc32c"} <= set(module.exports)
    assert module.poisoned is None and module.memory_bytes >= 1 << 20
    module.close()


def test_cosine_is_scale_free_even_for_tiny_and_huge_norms():
    rows = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]], dtype=np.float32)
    for scale in (1e-30, 1e-6, 1.0, 1e30):
        backend = make(4, "cosine")
        backend.add(np.arange(3, dtype=np.int64), rows * np.float32(scale))
        dist, lab = backend.search(rows[:1] * np.float32(scale), 3, 3)
        assert lab[0].tolist() == [0, 2, 1]
        np.testing.assert_allclose(dist[0], [0.0, 1 - np.sqrt(0.5), 1.0], atol=1e-6)
        backend.close()
    backend = make(4, "cosine")
    with pytest.raises(InvalidVectorError, match="zero vector"):
        backend.add(np.arange(2, dtype=np.int64), np.zeros((2, 4), np.float32))
    backend.close()


def test_quantized_configs_get_the_wasm_tier_flat_code_scan():
    from ruvector_lab.backends import class_for
    from ruvector_lab.backends.quantized_flat import WasmQuantizedFlatBackend

    plain = rl.HnswConfig(dimensions=16)
    assert class_for("wasm", plain) is wasm_backend.WasmBackend
    scalar = rl.HnswConfig(dimensions=16, quantization=rl.QuantizationConfig(kind="scalar"), rerank=10)
    assert class_for("wasm", scalar) is WasmQuantizedFlatBackend
    x = np.random.default_rng(2).standard_normal((200, 16)).astype(np.float32)
    index = rl.HnswIndex(scalar, backend="wasm")
    index.insert_batch([f"q{i}" for i in range(200)], x)
    stats = index.stats()
    assert (stats.backend, stats.tier, stats.graph) == ("wasm", "wasm", "flat")
    assert index.search(x[17], k=1)[0].id == "q17"
    index.close()
    with pytest.raises(BackendUnavailableError, match="rabitq"):
        class_for("wasm", rl.HnswConfig(dimensions=16, quantization=rl.QuantizationConfig(kind="rabitq")))
