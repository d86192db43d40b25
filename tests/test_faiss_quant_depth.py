"""faiss HNSW over codes in depth: graphs built from the float vectors (graph='float'), extended RaBitQ bits,
rotations (RaBitQ random, PQ OPQ), 4-bit PQ, their payloads and memory figures, and the backends that refuse them."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

import ruvector_lab as rl
from ruvector_lab import container
from ruvector_lab.errors import CorruptIndexError, QuantizationError
from ruvector_lab.index import CONTAINER_KIND
from ruvector_lab.quantization import QuantizationConfig

faiss = pytest.importorskip("faiss")
from ruvector_lab.backends import faiss_format  # noqa: E402 - needs faiss
from ruvector_lab.backends.faiss_quantized import PAYLOAD_KIND, FaissQuantizedBackend  # noqa: E402
from ruvector_lab.quantization.base import random_rotation  # noqa: E402

D = 32
N = 400
#: (kind, bits, rotation) served through faiss, defaults and variants
VARIANTS = [("scalar", None, None), ("int4", None, None), ("product", None, None), ("product", 4, "opq"),
            ("binary", None, None), ("rabitq", None, None), ("rabitq", 4, None), ("rabitq", 3, "none")]


@pytest.fixture(autouse=True)
def _one_thread():
    """One OpenMP thread: faiss' HNSW build is then deterministic, so graphs can be compared."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def embedding_like(n: int, dim: int, clusters: int = 10, seed: int = 4) -> np.ndarray:
    """Clusters with a power-law spread along a random basis, as sentence embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    sigma = np.arange(1, dim + 1) ** -0.5
    sigma *= 0.5 * np.sqrt(dim) / np.linalg.norm(sigma)
    offsets = (rng.standard_normal((n, dim)) * sigma) @ basis.T
    return (centres[rng.integers(0, clusters, n)] + offsets).astype(np.float32)


def qconfig(kind: str, bits: int | None = None, rotation: str | None = None, graph: str = "codes",
            m: int = 8, train_size: int = N) -> QuantizationConfig:
    return QuantizationConfig(kind=kind, m=m, bits=bits, rotation=rotation, graph=graph, train_size=train_size)


def hnsw(q: QuantizationConfig, dimensions: int = D, metric: str = "cosine", rerank: int = 0,
         m: int = 8, ef_construction: int = 40) -> rl.HnswConfig:
    return rl.HnswConfig(dimensions=dimensions, m=m, ef_construction=ef_construction, ef_search=40, metric=metric,
                         quantization=q, rerank=rerank)


def built(config: rl.HnswConfig, data: np.ndarray, batches: int = 1) -> rl.HnswIndex:
    index = rl.HnswIndex(config, backend="faiss")
    for part in np.array_split(np.arange(len(data)), batches):
        index.insert_batch([str(i) for i in part], data[part])
    return index


def neighbours(index: rl.HnswIndex) -> np.ndarray:
    return faiss.vector_to_array(index.raw_backend.index.hnsw.neighbors)


def recall(index: rl.HnswIndex, queries: np.ndarray, truth: np.ndarray, ef: int) -> float:
    ids = index.search_batch(queries, k=10, ef_search=ef).ids
    return float(np.mean([len({int(i) for i in row} & set(want.tolist())) / 10 for row, want in zip(ids, truth,
                                                                                                      strict=True)]))


def top_ids(index: rl.HnswIndex, queries: np.ndarray, k: int = 5) -> list[list[str]]:
    return [list(row) for row in index.search_batch(queries, k=k).ids]


def payload_parts(blob: bytes) -> tuple[dict, dict, dict, dict]:
    """(index meta, index arrays, backend meta, backend arrays) of a serialized index."""
    meta, arrays = container.loads(blob, CONTAINER_KIND)
    inner_meta, inner_arrays = container.loads(arrays["payload"].tobytes(), PAYLOAD_KIND)
    return meta, arrays, dict(inner_meta), dict(inner_arrays)


def reblob(meta: dict, arrays: dict, inner_meta: dict, inner_arrays: dict) -> bytes:
    """The index container again with the edited backend payload (checksums recomputed, as a user could)."""
    arrays = dict(arrays)
    arrays["payload"] = np.frombuffer(container.dumps(PAYLOAD_KIND, inner_meta, inner_arrays), dtype=np.uint8)
    return container.dumps(CONTAINER_KIND, meta, arrays)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return embedding_like(N + 20, D, seed=7)


# ------------------------------------------------------------------ the graph a float build makes
def test_float_graph_differs_from_the_codes_graph_and_finds_more_neighbours() -> None:
    """PQ codes at 8 dimensions per subspace: the graph linked by code distances loses true neighbours that the
    graph linked by float distances keeps, so at a small ef the float-built graph finds more."""
    points = embedding_like(3100, 256)
    base, queries = points[:3000], points[3000:]
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ unit.T), axis=1, kind="stable")[:, :10]
    got = {}
    graphs = {}
    for graph in ("codes", "float"):
        config = hnsw(qconfig("product", m=32, graph=graph, train_size=1000), dimensions=256, rerank=40, m=16,
                      ef_construction=100)
        with built(config, base) as index:
            got[graph] = recall(index, queries, truth, ef=40)
            graphs[graph] = neighbours(index)
            wide = recall(index, queries, truth, ef=400)
    assert not np.array_equal(graphs["codes"], graphs["float"])
    assert got["float"] >= got["codes"] + 0.03, got
    assert got["float"] >= wide - 0.01  # the float-built graph is near what a wide search of it finds


@pytest.mark.parametrize("kind", ["scalar", "product", "rabitq"])
def test_float_graph_is_the_graph_faiss_builds_over_the_float_vectors(data: np.ndarray, kind: str) -> None:
    """The code index's graph is link for link the IndexHNSWFlat graph of the same (unit) rows."""
    base = data[:N]
    with built(hnsw(qconfig(kind, graph="float")), base, batches=2) as index:
        reference = faiss.IndexHNSWFlat(D, 8)
        reference.hnsw.efConstruction = 40
        unit = np.ascontiguousarray(base / np.linalg.norm(base, axis=1, keepdims=True), dtype=np.float32)
        half = len(unit) // 2
        reference.add(unit[:half])
        reference.add(unit[half:])
        assert np.array_equal(neighbours(index), faiss.vector_to_array(reference.hnsw.neighbors))


# ------------------------------------------------------------------ every kind: round trip, adds after load
@pytest.mark.parametrize(("kind", "bits", "rotation"), VARIANTS, ids=lambda v: str(v))
def test_float_graph_round_trips_and_keeps_building_from_floats(data: np.ndarray, kind: str, bits: int | None,
                                                                rotation: str | None) -> None:
    base, extra = data[:N], data[N:]
    config = hnsw(qconfig(kind, bits, rotation, graph="float"))
    index = built(config, base, batches=2)
    blob = index.serialize()
    assert index.raw_backend._float_rows().shape == (N, D)  # kept without rerank: the graph is built from them
    for trust in (True, False):
        loaded = rl.HnswIndex.deserialize(blob, trust_native=trust)
        if trust:
            assert top_ids(loaded, data[:10]) == top_ids(index, data[:10])
            assert np.array_equal(neighbours(loaded), neighbours(index))
        loaded.insert_batch([str(i) for i in range(N, len(data))], extra)
        backend = loaded.raw_backend
        assert backend._float_rows().shape == (len(data), D)
        # without rerank the scores are code estimates (1-bit RaBitQ at 32-d is coarse): found, not always first
        assert all(str(N + i) in row for i, row in enumerate(top_ids(loaded, extra[:5])))
        again = rl.HnswIndex.deserialize(loaded.serialize(), trust_native=trust)
        if trust:
            assert top_ids(again, data[:10]) == top_ids(loaded, data[:10])
        else:  # rebuilt from all the kept floats in one batch: the graph of one float build of them
            with built(config, data) as whole:
                assert np.array_equal(neighbours(again), neighbours(whole))


def test_untrusted_load_rebuilds_the_float_graph_exactly(data: np.ndarray) -> None:
    """faiss reads nothing with trust_native=False: the index is rebuilt from the kept floats, and the graph is
    the one a build from those floats makes (the codes graph, rebuilt from decoded codes, is not kept)."""
    for kind in ("product", "binary", "rabitq"):
        with built(hnsw(qconfig(kind, graph="float")), data[:N]) as index:
            rebuilt = rl.HnswIndex.deserialize(index.serialize(), trust_native=False)
            assert np.array_equal(neighbours(rebuilt), neighbours(index)), kind


def test_binary_float_graph_keeps_one_graph_at_rest(data: np.ndarray) -> None:
    with built(hnsw(qconfig("binary", graph="float")), data[:N], batches=3) as index:
        backend = index.raw_backend
        assert backend.index.ntotal == N and backend.index.hnsw.levels.size() == N
        assert backend._float_hnsw.hnsw.levels.size() == 0  # the float HNSW's copy is dropped after each add


def test_extended_rabitq_untrusted_load_without_floats_keeps_the_codes(data: np.ndarray) -> None:
    """A decoded extended-RaBitQ code keeps only its sign bits: the rebuilt index gets the stored codes back."""
    with built(hnsw(qconfig("rabitq", bits=4), metric="euclidean"), data[:N]) as index:
        blob = index.serialize()
    loaded = [rl.HnswIndex.deserialize(blob, trust_native=trust) for trust in (True, False)]  # alive while read
    codes = [faiss.vector_to_array(faiss.downcast_index(i.raw_backend.index.storage).codes) for i in loaded]
    assert np.array_equal(codes[0], codes[1])


# ------------------------------------------------------------------ bits and rotations
def test_rabitq_bits_set_the_code_size_and_the_rotation_is_the_librarys(data: np.ndarray) -> None:
    sizes = {}
    for bits in (1, 2, 4, 8):
        with built(hnsw(qconfig("rabitq", bits=bits), metric="euclidean"), data[:300]) as index:
            sizes[bits] = index.stats().extra["code_bytes_per_vector"]
            assert index.stats().extra["bits"] == bits
            assert np.array_equal(index.raw_backend.rotation, random_rotation(D, 0))
    assert sizes == {bits: faiss_format.rabitq_code_size(D, bits) for bits in sizes}
    with built(hnsw(qconfig("rabitq", rotation="none")), data[:300]) as index:
        assert index.raw_backend.rotation is None
        assert "rotation" not in payload_parts(index.serialize())[3]


def test_more_rabitq_bits_estimate_better(data: np.ndarray) -> None:
    """Without rerank the scores are faiss' estimates: 4 bits per dimension rank closer to the truth than 1."""
    base, queries = data[:N], data[N:]
    d2 = ((queries[:, None, :] - base[None]) ** 2).sum(-1)
    truth = np.argsort(d2, axis=1)[:, :10]
    got = {}
    for bits in (1, 4):
        with built(hnsw(qconfig("rabitq", bits=bits), metric="euclidean"), base) as index:
            got[bits] = recall(index, queries, truth, ef=200)
    assert got[4] > got[1] + 0.1, got


def test_product_four_bits_and_opq(data: np.ndarray) -> None:
    for bits, rotation in ((4, "none"), (8, "opq"), (4, "opq")):
        with built(hnsw(qconfig("product", bits=bits, rotation=rotation, m=8)), data[:N]) as index:
            extra = index.stats().extra
            storage = faiss.downcast_index(index.raw_backend.index.storage)
            assert (storage.pq.nbits, storage.pq.ksub, extra["code_bytes_per_vector"]) == (bits, 1 << bits,
                                                                                            8 * bits // 8)
            rot = index.raw_backend.rotation
            if rotation == "opq":
                assert rot is not None and np.allclose(rot.T @ rot, np.eye(D), atol=1e-4)
                assert extra["fixed_bytes"] >= 4 * D * D
            else:
                assert rot is None


# ------------------------------------------------------------------ memory figures
@pytest.mark.parametrize(("graph", "rerank", "rerank_bytes", "build_bytes"),
                         [("codes", 0, 0, 0), ("float", 0, 0, 4 * D), ("codes", 20, 4 * D, 0),
                          ("float", 20, 4 * D, 0)])
def test_memory_figures_state_codes_graph_and_floats_apart(data: np.ndarray, graph: str, rerank: int,
                                                           rerank_bytes: int, build_bytes: int) -> None:
    config = hnsw(qconfig("product", graph=graph), rerank=rerank)
    with built(config, data[:N]) as index:
        extra = index.stats().extra
    assert extra["code_bytes_per_vector"] == 8
    assert (extra["rerank_float_bytes_per_vector"], extra["build_float_bytes_per_vector"]) == (rerank_bytes,
                                                                                              build_bytes)
    assert extra["float_bytes_per_vector"] == rerank_bytes + build_bytes  # one copy serves both
    assert extra["graph_bytes_per_vector"] > 4 * 2 * 8  # at least the level-0 links of M=8
    assert extra["graph_bytes_per_vector_measured"] == pytest.approx(extra["graph_bytes_per_vector"], rel=0.1)
    assert extra["payload_bytes"] >= N * (8 + rerank_bytes + build_bytes)
    layout = FaissQuantizedBackend.memory_layout(config)
    assert layout.vectors == 8 + rerank_bytes + build_bytes
    assert layout.graph == pytest.approx(extra["graph_bytes_per_vector"], abs=0.01)


# ------------------------------------------------------------------ damaged payloads
@pytest.fixture(scope="module")
def rabitq_blob(data: np.ndarray) -> bytes:
    with built(hnsw(qconfig("rabitq", bits=4), metric="euclidean", rerank=10), data[:200]) as index:
        return index.serialize()


@pytest.fixture(scope="module")
def opq_blob(data: np.ndarray) -> bytes:
    with built(hnsw(qconfig("product", bits=4, rotation="opq", graph="float")), data[:N]) as index:
        return index.serialize()


@pytest.mark.parametrize("trust", [True, False])
def test_payload_claiming_other_bits_is_refused(rabitq_blob: bytes, trust: bool) -> None:
    meta, arrays, inner_meta, inner_arrays = payload_parts(rabitq_blob)
    # the backend's record of its bits
    crafted = reblob(meta, arrays, {**inner_meta, "bits": 2}, inner_arrays)
    with pytest.raises(CorruptIndexError, match="bits"):
        rl.HnswIndex.deserialize(crafted, trust_native=trust)
    # header and record agree on 2 bits; faiss' storage holds 4-bit codes
    config = {**meta["config"], "quantization": {**meta["config"]["quantization"], "bits": 2}}
    crafted = reblob({**meta, "config": config}, arrays, {**inner_meta, "bits": 2}, inner_arrays)
    with pytest.raises(CorruptIndexError, match="4-bit codes"):
        rl.HnswIndex.deserialize(crafted, trust_native=trust)
    # faiss' own nb_bits field edited (4 -> 3): the code size no longer adds up
    raw = bytearray(inner_arrays["faiss"].tobytes())
    at = raw.index(b"Ixrr") + 4 + struct.calcsize("<iqqqBi") + struct.calcsize("<QQi")
    assert int.from_bytes(raw[at : at + 8], "little") == 4
    raw[at : at + 8] = (3).to_bytes(8, "little")
    crafted = reblob(meta, arrays, inner_meta, {**inner_arrays, "faiss": np.frombuffer(bytes(raw), np.uint8)})
    with pytest.raises(CorruptIndexError, match="RaBitQ storage"):
        rl.HnswIndex.deserialize(crafted, trust_native=trust)


@pytest.mark.parametrize("trust", [True, False])
def test_pq_nbits_field_edited_is_refused(opq_blob: bytes, trust: bool) -> None:
    meta, arrays, inner_meta, inner_arrays = payload_parts(opq_blob)
    raw = bytearray(inner_arrays["faiss"].tobytes())
    at = raw.index(b"IxPq") + 4 + struct.calcsize("<iqqqBi") + 16
    assert int.from_bytes(raw[at : at + 8], "little") == 4
    for nbits in (8, 5):
        raw[at : at + 8] = nbits.to_bytes(8, "little")
        crafted = reblob(meta, arrays, inner_meta, {**inner_arrays, "faiss": np.frombuffer(bytes(raw), np.uint8)})
        with pytest.raises(CorruptIndexError, match="product quantizer"):
            rl.HnswIndex.deserialize(crafted, trust_native=trust)


def _bad_rotations(rotation: np.ndarray) -> dict[str, object]:
    nan = rotation.copy()
    nan[3, 4] = np.nan
    return {"scaled": 2 * rotation, "skewed": rotation + 0.05 * np.triu(np.ones_like(rotation)), "nan": nan,
            "shape": rotation[:, :-1].copy(), "missing": None}


@pytest.mark.parametrize("trust", [True, False])
@pytest.mark.parametrize("damage", ["scaled", "skewed", "nan", "shape", "missing"])
def test_damaged_rotation_is_refused(opq_blob: bytes, rabitq_blob: bytes, trust: bool, damage: str) -> None:
    for blob in (opq_blob, rabitq_blob):
        meta, arrays, inner_meta, inner_arrays = payload_parts(blob)
        bad = _bad_rotations(inner_arrays["rotation"])[damage]
        edited = {k: v for k, v in inner_arrays.items() if k != "rotation"}
        if bad is not None:
            edited["rotation"] = bad
        with pytest.raises(CorruptIndexError, match="rotation"):
            rl.HnswIndex.deserialize(reblob(meta, arrays, inner_meta, edited), trust_native=trust)


def test_rotation_the_configuration_does_not_apply_is_refused(data: np.ndarray) -> None:
    with built(hnsw(qconfig("rabitq", rotation="none"), metric="euclidean"), data[:200]) as index:
        meta, arrays, inner_meta, inner_arrays = payload_parts(index.serialize())
    crafted = reblob(meta, arrays, inner_meta, {**inner_arrays, "rotation": random_rotation(D, 0)})
    with pytest.raises(CorruptIndexError, match="rotation"):
        rl.HnswIndex.deserialize(crafted)
    # a header edited to the other rotation disagrees with what the payload recorded
    config = {**meta["config"], "quantization": {**meta["config"]["quantization"], "rotation": "random"}}
    with pytest.raises(CorruptIndexError, match="rotation"):
        rl.HnswIndex.deserialize(reblob({**meta, "config": config}, arrays, inner_meta, inner_arrays))


def test_graph_record_must_match_the_header(data: np.ndarray) -> None:
    with built(hnsw(qconfig("scalar", graph="float")), data[:200]) as index:
        meta, arrays, inner_meta, inner_arrays = payload_parts(index.serialize())
    config = {**meta["config"], "quantization": {**meta["config"]["quantization"], "graph": "codes"}}
    with pytest.raises(CorruptIndexError, match="graph"):
        rl.HnswIndex.deserialize(reblob({**meta, "config": config}, arrays, inner_meta, inner_arrays))
    no_floats = {k: v for k, v in inner_arrays.items() if k != "vectors"}
    with pytest.raises(CorruptIndexError, match="float vectors"):
        rl.HnswIndex.deserialize(reblob(meta, arrays, inner_meta, no_floats))


@pytest.mark.parametrize("trust", [True, False])
def test_rabitq_payload_from_before_rotations_is_served_unrotated(data: np.ndarray, caplog: pytest.LogCaptureFixture,
                                                                  trust: bool) -> None:
    """A faiss rabitq payload written before rotations records none and holds unrotated codes: under today's
    default header (rotation 'random') it is served as written, unrotated, with a warning."""
    with built(hnsw(qconfig("rabitq", rotation="none"), metric="euclidean"), data[:200]) as index:
        blob = index.serialize()
        want = top_ids(index, data[:10])
    meta, arrays, inner_meta, inner_arrays = payload_parts(blob)
    old_meta = {k: v for k, v in inner_meta.items() if k not in ("rotation", "bits", "graph")}
    config = {**meta["config"], "quantization": {k: v for k, v in meta["config"]["quantization"].items()
                                                 if k not in ("rotation", "graph")}}
    with caplog.at_level(logging.WARNING, logger="ruvector_lab.backends.faiss_quantized"):
        old = rl.HnswIndex.deserialize(reblob({**meta, "config": config}, arrays, old_meta, inner_arrays),
                                       trust_native=trust)
    assert old.config.quantization.rotation == "random" and old.raw_backend.rotation is None
    assert "served unrotated" in caplog.text
    assert top_ids(old, data[:10]) == want
    again = payload_parts(old.serialize())[2]
    assert "rotation" not in again  # re-saved as it was: still a payload of before rotations


def test_parse_index_checks_bits_of_pq_and_rabitq(data: np.ndarray) -> None:
    with built(hnsw(qconfig("product", bits=4), metric="euclidean"), data[:N]) as index:
        raw = payload_parts(index.serialize())[3]["faiss"].tobytes()
    args = {"fourcc": b"IHNp", "d": D, "metric": faiss_format.METRIC_L2, "m": 8, "ef_construction": 40}
    parsed = faiss_format.parse_index(raw, **args, nbits=4)
    assert (parsed.fields["nbits"], parsed.fields["code_size"], len(parsed.parts["centroids"])) == (4, 4, D * 16)
    with pytest.raises(CorruptIndexError, match="4-bit codes"):
        faiss_format.parse_index(raw, **args, nbits=8)


# ------------------------------------------------------------------ backends that refuse
def test_usearch_refuses_a_float_graph_and_says_why() -> None:
    pytest.importorskip("usearch")
    for kind in ("scalar", "binary"):
        with pytest.raises(QuantizationError, match="quantizes each row as it is inserted"):
            rl.HnswIndex(hnsw(qconfig(kind, graph="float")), backend="usearch")
        rl.HnswIndex(hnsw(qconfig(kind)), backend="usearch").close()


def test_ruvector_rabitq_refuses_other_bits_and_rotations_but_not_a_float_graph() -> None:
    pytest.importorskip("ruvector")
    for q, what in ((qconfig("rabitq", bits=4), "4 bits"), (qconfig("rabitq", rotation="none"), "rotation none")):
        with pytest.raises(QuantizationError, match=f"{what}: RabitqIndex codes one sign bit"):
            rl.HnswIndex(hnsw(q, metric="euclidean"), backend="ruvector")
    rl.HnswIndex(hnsw(qconfig("rabitq", graph="float"), metric="euclidean"), backend="ruvector").close()
