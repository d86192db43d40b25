"""Index memory measured in a fresh child process, against the analytic layout of each backend.

Real libraries, real child processes, small data (20,000 x 64): each measurement takes a few seconds.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import ruvector_lab as rl
from ruvector_lab.bench.memory import (
    FACADE_IDS_PER_VECTOR,
    IndexMemory,
    MeasurementChildError,
    analytic_bytes_per_vector,
    analytic_fixed_bytes,
    measure_index_memory,
)
from ruvector_lab.errors import (
    BackendError,
    BackendUnavailableError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
    RuvectorLabError,
)

N, D, M = 20_000, 64, 16
CHUNK = 10_000  # n / chunk whole: the doubling containers end at exactly n rows
CONFIG = rl.HnswConfig(dimensions=D, m=M, ef_construction=40, metric="cosine")
SCALAR = rl.HnswConfig(dimensions=D, m=M, ef_construction=40, quantization=rl.QuantizationConfig(kind="scalar"))
#: held by the test process while the children measure: a figure taken from the parent (its RSS, or ru_maxrss,
#: which a child inherits at exec) would be at least this large
BALLAST_BYTES = 256 << 20


def _available(name: str) -> bool:
    return rl.Runtime.available().get(name) is True


def _require(name: str) -> None:
    if not _available(name):
        pytest.skip(f"backend {name} unavailable here: {rl.Runtime.available()[name]}")


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((N, D)).astype(np.float32)


@pytest.fixture(scope="module")
def measured(train: np.ndarray) -> dict[str, IndexMemory]:
    """One child measurement per backend, taken while this process holds a large ballast array."""
    ballast = np.ones(BALLAST_BYTES // 8)  # touched: resident in this (the parent) process
    out = {}
    for name in ("numpy", "hnswlib", "faiss"):
        if _available(name):
            out[name] = measure_index_memory(train, CONFIG, name, insert_chunk=CHUNK)
    if _available("faiss"):
        out["faiss-scalar"] = measure_index_memory(train, SCALAR, "faiss", insert_chunk=CHUNK)
    assert ballast.sum() == len(ballast)  # keep it alive (and resident) until all children are done
    return out


def _measurement(measured: dict[str, IndexMemory], name: str) -> IndexMemory:
    _require(name)
    return measured[name]


# ------------------------------------------------------------------------------------------- measured figures
@pytest.mark.parametrize("name", ["numpy", "hnswlib", "faiss"])
def test_growth_is_the_index_and_matches_its_layout(measured: dict[str, IndexMemory], name: str) -> None:
    r = _measurement(measured, name)
    assert r.backend == name and r.n == N and r.dimensions == D
    assert r.rss_growth_bytes == r.rss_after_bytes - r.rss_before_bytes
    assert r.rss_growth_per_vector == pytest.approx(r.rss_growth_bytes / N)
    expected = N * r.analytic_per_vector["total"] + r.analytic_fixed_bytes
    assert r.analytic_growth_bytes == pytest.approx(expected)
    # the layout explains the growth (measured here: numpy ~0.95, hnswlib ~1.05, faiss ~0.99)
    assert 0.75 <= r.growth_over_analytic <= 1.3, r.to_dict()
    # the float vectors the child loaded are not the index's: counting them would add loaded_bytes
    assert r.loaded_bytes == N * D * 4
    assert r.rss_before_bytes - r.rss_baseline_bytes >= 0.8 * r.loaded_bytes  # they were loaded before
    assert r.rss_growth_bytes < expected + r.loaded_bytes / 2
    # ...but an index keeps its own copy of them: growth is above the float rows alone
    assert r.rss_growth_per_vector > 4 * D


@pytest.mark.parametrize("name", ["numpy", "hnswlib", "faiss"])
def test_figures_are_the_childs_not_the_parents(measured: dict[str, IndexMemory], name: str) -> None:
    r = _measurement(measured, name)
    # the parent held BALLAST_BYTES throughout; a fresh child is far smaller, and so is its peak
    assert r.rss_after_bytes < BALLAST_BYTES
    assert r.peak_rss_bytes < BALLAST_BYTES, "peak taken from ru_maxrss inherited from the parent?"
    assert r.peak_source.startswith("VmHWM")
    assert r.peak_rss_bytes >= r.rss_after_bytes
    assert r.peak_growth_bytes == r.peak_rss_bytes - r.rss_before_bytes
    assert r.rss_after_untrimmed_bytes >= r.rss_after_bytes - (1 << 20)
    assert r.build_time_s > 0


@pytest.mark.parametrize("name", ["numpy", "hnswlib", "faiss"])
def test_serialized_size(measured: dict[str, IndexMemory], name: str) -> None:
    r = _measurement(measured, name)
    assert r.serialized_per_vector == pytest.approx(r.serialized_bytes / N)
    assert r.serialized_per_vector >= 4 * D  # float indexes store every component
    if name != "numpy":  # HNSW files hold at least the level-0 link slots too
        assert r.serialized_per_vector >= 4 * D + 4 * 2 * M
    assert r.serialized_per_vector < r.analytic_per_vector["total"] * 2


def test_quantized_index_grows_by_its_codes(measured: dict[str, IndexMemory]) -> None:
    _require("faiss")
    plain, scalar = measured["faiss"], measured["faiss-scalar"]
    assert scalar.analytic_per_vector["vectors"] == D  # faiss SQ8: one byte per dimension
    assert 0.75 <= scalar.growth_over_analytic <= 1.3, scalar.to_dict()  # measured: ~0.99
    # the float rows the plain index holds and the codes do not: 4d - d bytes a vector, give or take
    saved = plain.rss_growth_per_vector - scalar.rss_growth_per_vector
    assert 0.6 * 3 * D <= saved <= 1.4 * 3 * D
    assert scalar.serialized_per_vector < plain.serialized_per_vector - 2 * D


def test_to_dict_round_trips_as_json(measured: dict[str, IndexMemory]) -> None:
    r = _measurement(measured, "numpy")
    values = json.loads(json.dumps(r.to_dict()))
    for key in ("backend", "n", "rss_before_bytes", "rss_after_bytes", "rss_growth_bytes", "rss_growth_per_vector",
                "peak_rss_bytes", "serialized_bytes", "serialized_per_vector", "analytic_per_vector", "build_time_s",
                "analytic_growth_bytes", "growth_over_analytic", "config"):
        assert key in values
    assert values["config"] == CONFIG.to_dict()
    assert IndexMemory.from_dict(values) == r


# ------------------------------------------------------------------------------------------------ analytic
@pytest.mark.parametrize("name", ["numpy", "wasm", "faiss", "hnswlib"])
def test_analytic_float_vectors_are_4d(name: str) -> None:
    _require(name)
    for d in (8, 64, 384):
        a = analytic_bytes_per_vector(name, CONFIG, dimensions=d)
        assert a["vectors"] == 4 * d
        assert a["total"] == pytest.approx(a["vectors"] + a["graph"] + a["ids"] + a["other"], abs=0.05)
        assert a["ids"] >= FACADE_IDS_PER_VECTOR - 0.01  # the facade's id maps are counted


@pytest.mark.parametrize("name", ["numpy", "wasm"])
def test_analytic_flat_backends_have_no_graph(name: str) -> None:
    _require(name)
    small, big = (analytic_bytes_per_vector(name, rl.HnswConfig(dimensions=D, m=m)) for m in (4, 64))
    assert small["graph"] == big["graph"] == 0
    assert small == big


@pytest.mark.parametrize("name", ["faiss", "hnswlib", "ruvector"])
def test_analytic_graph_grows_with_m(name: str) -> None:
    _require(name)
    graphs = [analytic_bytes_per_vector(name, rl.HnswConfig(dimensions=D, m=m))["graph"] for m in (4, 8, 16, 32)]
    assert graphs == sorted(graphs) and len(set(graphs)) == 4
    assert graphs[0] > 0


def test_analytic_graph_formulas() -> None:
    _require("faiss")
    _require("hnswlib")
    for m in (4, 16, 48):
        cfg = rl.HnswConfig(dimensions=D, m=m)
        upper = 1 / (m - 1)  # expected upper levels with mult = 1/ln(M)
        # faiss: int32 slots, 2M on level 0 and M per upper level, plus offsets (8) and levels (4)
        assert analytic_bytes_per_vector("faiss", cfg)["graph"] == pytest.approx(4 * (2 * m + m * upper) + 12,
                                                                                abs=0.01)
        # hnswlib: level 0 = maxM0*4 + 4-byte count in the element; upper lists of M*4 + 4 each
        graph = analytic_bytes_per_vector("hnswlib", cfg)["graph"]
        assert graph >= 2 * m * 4 + 4 + (m * 4 + 4) * upper
        assert graph <= 2 * m * 4 + 4 + (m * 4 + 4) * upper + 32
    assert analytic_fixed_bytes("hnswlib", CONFIG) == 65536 * 40  # label_op_locks_
    assert analytic_fixed_bytes("numpy", CONFIG) == 0


@pytest.mark.parametrize("name", ["faiss", "numpy"])
def test_analytic_quantized_codes_are_smaller(name: str) -> None:
    _require(name)
    plain = analytic_bytes_per_vector(name, CONFIG)
    scalar = rl.HnswConfig(dimensions=D, m=M, quantization=rl.QuantizationConfig(kind="scalar"))
    codes = analytic_bytes_per_vector(name, scalar)
    assert codes["vectors"] < plain["vectors"] / 3  # uint8 codes (+ numpy's 8-byte per-vector min/scale)
    assert codes["vectors"] >= D
    assert codes["graph"] == plain["graph"]
    kept = analytic_bytes_per_vector(name, rl.HnswConfig(dimensions=D, m=M, quantization=scalar.quantization,
                                                         rerank=20))
    assert kept["vectors"] == codes["vectors"] + 4 * D  # the float rows kept for rerank
    binary = rl.HnswConfig(dimensions=D, m=M, quantization=rl.QuantizationConfig(kind="binary"))
    assert analytic_bytes_per_vector(name, binary)["vectors"] == D // 8


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_backend_is_refused_before_a_child_starts(train: np.ndarray) -> None:
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match="nope"):
        measure_index_memory(train, CONFIG, "nope")
    # checked first: even unusable vectors do not get as far as their own check
    with pytest.raises(BackendUnavailableError, match="nope"):
        measure_index_memory(None, CONFIG, "nope")  # type: ignore[arg-type]
    assert time.perf_counter() - started < 2.0  # no interpreter was started
    with pytest.raises(BackendUnavailableError):
        analytic_bytes_per_vector("nope", CONFIG)


def test_bad_arguments_are_refused_in_the_parent(train: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError):
        measure_index_memory(train, {"dimensions": D}, "numpy")  # type: ignore[arg-type]
    with pytest.raises(DimensionMismatchError):
        measure_index_memory(train[:, :10], CONFIG, "numpy")
    with pytest.raises(InvalidParameterError):
        measure_index_memory(train, CONFIG, "numpy", insert_chunk=0)
    with pytest.raises(InvalidParameterError):
        measure_index_memory(train, CONFIG, "numpy", timeout_s=0)
    rabitq = rl.HnswConfig(dimensions=D, quantization=rl.QuantizationConfig(kind="rabitq"))
    with pytest.raises(BackendUnavailableError, match="rabitq"):  # the flat scan does not serve rabitq
        measure_index_memory(train, rabitq, "numpy")


def test_a_library_error_in_the_child_comes_back_as_itself(train: np.ndarray) -> None:
    _require("hnswlib")
    rows = train[:2000].copy()
    rows[1234] = 0.0  # a zero vector has no cosine direction: the index refuses it, in the child
    with pytest.raises(InvalidVectorError, match=r"'hnswlib'.*exit code 3.*zero vector"):
        measure_index_memory(rows, CONFIG, "hnswlib")


def test_a_child_that_runs_too_long_is_killed_and_reported(train: np.ndarray) -> None:
    with pytest.raises(MeasurementChildError, match=r"'numpy'.*timed out") as info:
        measure_index_memory(train[:1000], CONFIG, "numpy", timeout_s=0.05)
    assert isinstance(info.value, BackendError) and isinstance(info.value, RuvectorLabError)
