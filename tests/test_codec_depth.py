"""Codec depth: extended (multi-bit) RaBitQ, RaBitQ without rotation, 4-bit PQ in faiss' layout, OPQ, and their
serialized state (round trips and damaged payloads)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import ruvector_lab as rl
from ruvector_lab import container
from ruvector_lab.errors import CorruptIndexError, QuantizationError
from ruvector_lab.quantization import Codec, QuantizationConfig, QuantizedVectors, make_codec
from ruvector_lab.quantization.base import CODEC_KIND
from ruvector_lab.quantization.kmeans import faiss_available, kmeans
from ruvector_lab.quantization.product import pack_codes, unpack_codes
from ruvector_lab.quantization.rabitq import _grid_cosines, best_scales

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


def embedding_like(n: int, dim: int, seed: int, clusters: int = 10) -> np.ndarray:
    """Unit rows in clusters whose members vary along a power-law spectrum, as sentence embeddings do."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    sigma = np.arange(1, dim + 1) ** -0.5
    sigma *= 0.5 * np.sqrt(dim) / np.linalg.norm(sigma)
    x = centres[rng.integers(0, clusters, n)] + (rng.standard_normal((n, dim)) * sigma) @ basis.T
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def points() -> tuple[np.ndarray, np.ndarray]:
    """3,000 base rows and 100 queries, 128-d."""
    p = embedding_like(3100, 128, seed=3)
    return p[:3000], p[3000:]


def codec(kind: str, dims: int, metric: str = "cosine", engine: str = "numpy", **kw: object) -> Codec:
    return make_codec(QuantizationConfig(kind=kind, **kw), dims, metric=metric, engine=engine)  # type: ignore[arg-type]


def damaged(c: Codec, **arrays: np.ndarray | None) -> bytes:
    """``c``'s serialized form with some state arrays replaced (None drops one)."""
    state = {**c._state(), **arrays}
    return container.dumps(CODEC_KIND, c._meta(), {k: v for k, v in state.items() if v is not None})


# ---- code sizes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dims", "bits", "size"), [(384, 1, 60), (384, 4, 204), (384, 7, 348), (100, 3, 50),
                                                    (10, 5, 19)])
def test_rabitq_code_size_is_packed_levels_plus_three_factors(dims, bits, size):
    c = codec("rabitq", dims, bits=bits)
    assert c.code_size == size == (dims * bits + 7) // 8 + 12
    assert c.codebook_bytes == 4 * (dims + dims * dims)
    assert codec("rabitq", dims, bits=bits, rotation="none").codebook_bytes == 4 * dims


@pytest.mark.parametrize(("m", "bits", "size"), [(8, 8, 8), (8, 4, 4), (7, 4, 4), (96, 4, 48)])
def test_product_code_size_is_m_codes_of_bits_each(m, bits, size):
    dims = 2 * m
    c = codec("product", dims, m=m, bits=bits)
    assert c.code_size == size
    assert c.ksub == 2**bits and c.codebook_bytes == m * 2**bits * 2 * 4
    assert codec("product", dims, m=m, bits=bits, rotation="opq").codebook_bytes == c.codebook_bytes + 4 * dims**2


# ---- bit layout -------------------------------------------------------------------------------------------
def test_pack_codes_writes_least_significant_bits_first():
    assert pack_codes(np.array([[1, 2, 3]]), 4).tolist() == [[0x21, 0x03]]
    # 3-bit codes 5, 6, 7 at bit offsets 0, 3, 6: the third straddles the byte boundary
    assert pack_codes(np.array([[5, 6, 7]]), 3).tolist() == [[(5 | 6 << 3 | 7 << 6) & 0xFF, 7 >> 2]]
    rng = np.random.default_rng(0)
    for bits in range(1, 9):
        values = rng.integers(0, 2**bits, (4, 13))
        assert np.array_equal(unpack_codes(pack_codes(values, bits), 13, bits), values)


@needs_faiss
@pytest.mark.parametrize("m", [8, 7])
def test_pq4_codes_are_faiss_product_quantizer_codes(points, m):
    import faiss

    x = np.ascontiguousarray(points[0][:, : 8 * m])
    fa = codec("product", 8 * m, engine="faiss", m=m, bits=4).train(x[:1000])
    np_codec = codec("product", 8 * m, engine="numpy", m=m, bits=4)
    np_codec.set_codebooks(fa.codebooks)
    pq = faiss.ProductQuantizer(8 * m, m, 4)
    faiss.copy_array_to_vector(fa.codebooks.ravel(), pq.centroids)
    want = pq.compute_codes(x)
    assert want.shape[1] == fa.code_size
    assert np.array_equal(np_codec.encode(x), want) and np.array_equal(fa.encode(x), want)
    np.testing.assert_allclose(np_codec.decode(want), pq.decode(want), rtol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_pq4_lookup_scores_equal_scores_of_decoded_vectors(points, metric):
    from ruvector_lab.distances import pairwise_float32

    x, q = points
    c = codec("product", 128, metric=metric, m=16, bits=4).train(x[:1000])
    codes = c.encode(x[:500])
    np.testing.assert_allclose(c.distance(q[:5], codes), pairwise_float32(q[:5], c.decode(codes), metric),
                               rtol=1e-4, atol=1e-5)


# ---- extended RaBitQ ---------------------------------------------------------------------------------------
def test_rabitq_levels_carry_the_signs_of_the_rotated_residual(points):
    x = points[0]
    c = codec("rabitq", 128, bits=3).train(x)
    y = (x - c.centre) @ c.rotation
    levels = unpack_codes(c.encode(x)[:, : 48], 128, 3)
    assert np.array_equal(levels >= 4, y >= 0)  # u in [4, 7] means v = u - 3.5 > 0


def exact_best_cosine(a: np.ndarray, top: int) -> float:
    """Best cosine over every scale, by scanning all critical points ``j / a_i`` (the reference search)."""
    j = np.arange(1, top + 1)
    t = (j[None, :] / a[:, None]).ravel()
    order = np.argsort(t)
    num = 0.5 * a.sum() + np.cumsum(np.repeat(a, top)[order])
    den = 0.25 * a.size + np.cumsum(np.tile(2.0 * j, a.size)[order])
    return max(float(np.max(num / np.sqrt(den))), float(0.5 * a.sum() / np.sqrt(0.25 * a.size)))


@pytest.mark.parametrize("bits", [2, 4, 7])
def test_scale_search_comes_within_1e_4_of_the_exact_optimum(points, bits):
    x = points[0][:40]
    y = np.abs((x - points[0].mean(0)) / np.linalg.norm(x - points[0].mean(0), axis=1, keepdims=True))
    top = 2 ** (bits - 1) - 1
    found = _grid_cosines(y, top, best_scales(y, bits)[:, None])[:, 0]
    exact = np.array([exact_best_cosine(row.astype(np.float64), top) for row in y])
    assert np.all(found <= exact + 1e-5)
    assert np.all(exact - found < 1e-4)


def test_estimates_and_recall_improve_with_every_bit(points):
    x, q = points
    true = q @ x.T
    truth = np.argsort(-true, axis=1)[:, :10]
    errors, recalls = [], []
    for bits in (1, 2, 3, 4, 5, 7):
        c = codec("rabitq", 128, bits=bits).train(x)
        est = c.estimate_dots(q, c.encode(x))
        errors.append(float(np.sqrt(np.mean((est - true) ** 2))))
        top = np.argsort(-est, axis=1)[:, :10]
        recalls.append(np.mean([len(set(a) & set(b)) for a, b in zip(top, truth, strict=True)]) / 10)
    # each extra bit roughly halves the error (the grid is twice as fine); two extra bits at least quarter it
    assert all(b < 0.6 * a for a, b in itertools.pairwise(errors[:-1]))  # 1 -> 2 -> ... -> 5 bits
    assert errors[-1] < 0.3 * errors[-2]
    assert recalls == sorted(recalls) and recalls[3] >= 0.8 and recalls[-1] >= 0.95
    assert abs(float(np.mean(est - true))) < 0.01 * float(np.abs(true).mean())  # unbiased at 7 bits too


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
@pytest.mark.parametrize("bits", [2, 5, 8])
def test_multibit_scores_equal_scores_of_decoded_vectors_for_dots(points, metric, bits):
    x, q = points
    c = codec("rabitq", 128, metric=metric, bits=bits).train(x)
    codes = c.encode(x[:300])
    # decode gives the vector whose inner products are the estimator's
    np.testing.assert_allclose(c.estimate_dots(q[:4], codes), q[:4] @ c.decode(codes).T, rtol=1e-4, atol=1e-4)
    assert np.isfinite(c.distance(q[:4], codes)).all()


def test_rabitq_vector_at_the_centre_is_estimated_exactly_at_every_width():
    x = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [3, 2, 1, 0, -1, -2, -3, -4]], dtype=np.float32)
    q = np.arange(8, dtype=np.float32)
    for bits, rotation in ((3, "random"), (8, "none")):
        c = codec("rabitq", 8, metric="dot_product", bits=bits, rotation=rotation).train(x)
        centre = c.centre.reshape(1, -1)
        assert c.distance(q, c.encode(centre))[0] == pytest.approx(-(centre[0] @ q), rel=1e-5)


# ---- rotation none -----------------------------------------------------------------------------------------
def test_rabitq_without_rotation_codes_the_signs_of_the_residual_itself(points):
    x = points[0]
    c = codec("rabitq", 128, rotation="none").train(x)
    assert c.rotation is None and "rotation" not in c._state()
    bits = np.unpackbits(c.encode(x)[:, :16], axis=1, bitorder="little").astype(bool)
    assert np.array_equal(bits, x - c.centre >= 0)
    rotated = codec("rabitq", 128).train(x)
    assert not np.array_equal(rotated.encode(x)[:, :16], c.encode(x)[:, :16])


def test_one_bit_payload_written_before_bits_and_rotation_existed_still_loads(points):
    """A codec blob as the 1-bit codec wrote it: config without bits or rotation, centre and rotation arrays."""
    x, q = points
    new = codec("rabitq", 128, metric="euclidean").train(x)
    meta = {"config": {"kind": "rabitq", "m": 8, "train_size": 25_000, "seed": 0}, "dimensions": 128,
            "metric": "euclidean", "trained": True}
    old = Codec.from_bytes(container.dumps(CODEC_KIND, meta, {"centre": new.centre, "rotation": new.rotation}))
    assert old.config == new.config and old.bits == 1
    codes = new.encode(x[:50])
    assert np.array_equal(old.encode(x[:50]), codes)
    assert np.array_equal(old.distance(q[:3], codes), new.distance(q[:3], codes))


# ---- OPQ ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def opq_pair(points) -> tuple[Codec, Codec]:
    """Plain and OPQ 4-bit PQ (m=16) trained on the same 3,000 rows."""
    x = points[0]
    return (codec("product", 128, engine="auto", m=16, bits=4).train(x),
            codec("product", 128, engine="auto", m=16, bits=4, rotation="opq").train(x))


def test_opq_rotation_is_orthogonal_float32_and_lowers_the_error(points, opq_pair):
    x = points[0]
    plain, opq = opq_pair
    assert plain.rotation is None
    r = opq.rotation
    assert r.dtype == np.float32 and r.shape == (128, 128)
    np.testing.assert_allclose(r.T @ r, np.eye(128), atol=1e-4)
    assert not np.allclose(r, np.eye(128), atol=1e-2)  # it learned something

    def mse(c: Codec) -> float:
        return float(np.mean((c.decode(c.encode(x)) - x) ** 2))

    assert mse(opq) < 0.8 * mse(plain)  # about 0.55 here: the spread lies along a random basis


def test_opq_codes_are_plain_pq_codes_of_the_rotated_vectors(points, opq_pair):
    x = points[0][:200]
    opq = opq_pair[1]
    inner = codec("product", 128, m=16, bits=4)
    inner.set_codebooks(opq.codebooks)
    rotated = x @ opq.rotation
    assert np.array_equal(opq.encode(x), inner.encode(rotated))
    np.testing.assert_allclose(opq.decode(opq.encode(x)), inner.decode(inner.encode(rotated)) @ opq.rotation.T,
                               atol=1e-5)


def test_set_codebooks_takes_the_rotation_only_for_opq(opq_pair):
    plain, opq = opq_pair
    fresh = codec("product", 128, m=16, bits=4, rotation="opq")
    with pytest.raises(QuantizationError, match="needs the rotation"):
        fresh.set_codebooks(opq.codebooks)
    with pytest.raises(QuantizationError, match="not orthogonal"):
        fresh.set_codebooks(opq.codebooks, rotation=2 * opq.rotation)
    fresh.set_codebooks(opq.codebooks, rotation=opq.rotation)
    with pytest.raises(QuantizationError, match="takes no rotation"):
        codec("product", 128, m=16, bits=4).set_codebooks(plain.codebooks, rotation=opq.rotation)


def test_kmeans_warm_start_begins_at_the_given_centroids():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = (centres[rng.integers(0, 3, 300)] + 0.1 * rng.standard_normal((300, 2))).astype(np.float32)
    found = kmeans(x, 3, niter=1, engine="numpy", init=centres + 1)
    np.testing.assert_allclose(found, centres, atol=0.1)  # one step from a start next to each centre


# ---- serialization -----------------------------------------------------------------------------------------
VARIANTS = [("rabitq", {"bits": 4}), ("rabitq", {"bits": 3, "rotation": "none"}), ("product", {"m": 16, "bits": 4}),
            ("product", {"m": 16, "bits": 4, "rotation": "opq"}), ("product", {"m": 7, "bits": 4})]


@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=str)
def test_variants_round_trip_through_the_container(points, kind, kw):
    x, q = points
    dims = 112 if kw.get("m") == 7 else 128
    c = codec(kind, dims, metric="euclidean", **kw).train(x[:1000, :dims])
    again = Codec.from_bytes(c.to_bytes())
    assert again.config == c.config and again.code_size == c.code_size
    codes = c.encode(x[:100, :dims])
    assert np.array_equal(again.encode(x[:100, :dims]), codes)
    assert np.array_equal(again.distance(q[:3, :dims], codes), c.distance(q[:3, :dims], codes))
    assert (again.rotation is None) == (c.rotation is None)
    stored = QuantizedVectors.from_bytes(QuantizedVectors(c, codes).to_bytes())
    assert np.array_equal(stored.codes, codes) and stored.codec.config == c.config


def test_damaged_rotations_and_state_raise_corrupt_index_error(points):
    x = points[0][:1000]
    rabitq = codec("rabitq", 128, bits=2).train(x)
    opq = codec("product", 128, m=16, bits=4, rotation="opq").train(x)
    plain = codec("product", 128, m=16, bits=4).train(x)
    sheared = opq.rotation.copy()
    sheared[0] += 0.05 * sheared[1]
    nan_centre = rabitq.centre.copy()
    nan_centre[3] = np.nan
    cases = [
        (damaged(rabitq, rotation=rabitq.rotation * 1.01), "not orthogonal"),
        (damaged(rabitq, rotation=rabitq.rotation[:64]), "rotation must be"),
        (damaged(rabitq, rotation=None), "centre and rotation"),
        (damaged(rabitq, centre=nan_centre), "centre"),
        (damaged(opq, rotation=sheared), "not orthogonal"),
        (damaged(opq, rotation=np.full((128, 128), np.inf, np.float32)), "non-finite"),
        (damaged(opq, rotation=None), "without its rotation"),
        (damaged(plain, rotation=opq.rotation), "stored with a rotation"),
        (damaged(opq, codebooks=opq.codebooks[:, :8]), "codebooks must be"),
        (damaged(codec("rabitq", 128, rotation="none").train(x), rotation=rabitq.rotation), "stored with a rotation"),
    ]
    for blob, message in cases:
        with pytest.raises(CorruptIndexError, match=message):
            Codec.from_bytes(blob)


def test_code_rows_of_the_wrong_width_are_refused(points):
    x = points[0][:500]
    c = codec("rabitq", 128, bits=5).train(x)
    codes = c.encode(x[:10])
    arrays = {**c._state(), "codes": codes[:, :-1]}
    with pytest.raises(CorruptIndexError, match="do not fit"):
        QuantizedVectors.from_bytes(container.dumps("quantized-vectors", c._meta(), arrays))
    with pytest.raises(QuantizationError, match="92-byte codes"):
        c.decode(codes[:, :-1])


def test_stored_flaw_names_bad_factors_and_set_padding_bits(points):
    x = points[0][:500]
    c = codec("rabitq", 100, bits=3).train(x[:, :100])  # 300 bits: the last byte has 4 spare bits
    codes = c.encode(x[:5, :100])
    assert c.stored_flaw(codes) is None
    for column, value in ((1, 0.0), (0, np.nan), (2, -1.0)):  # <x̄, y> = 0, |r| NaN, |x| < 0
        bad = codes.copy()
        bad[2, c.code_size - 12 :].view("<f4")[column] = value
        assert "code 2 has factors" in c.stored_flaw(bad)
    bad = codes.copy()
    bad[1, 37] |= 0x80
    assert "padding bits" in c.stored_flaw(bad)
    pq = codec("product", 112, m=7, bits=4).train(x[:, :112])
    pq_codes = pq.encode(x[:5, :112])
    assert pq.stored_flaw(pq_codes) is None
    pq_codes[4, -1] |= 0x10  # the high nibble of an odd m's last byte
    assert "code 4 sets padding bits" in pq.stored_flaw(pq_codes)


# ---- the flat scan -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "wasm"])
def test_flat_backends_serve_pq4_with_opq_and_round_trip(points, backend):
    if rl.Runtime.available().get(backend) is not True:
        pytest.skip(f"{backend} is not available here")
    x, q = points
    quant = QuantizationConfig(kind="product", m=16, bits=4, rotation="opq", train_size=1000)
    cfg = rl.HnswConfig(dimensions=128, metric="cosine", quantization=quant, rerank=0)
    with rl.HnswIndex(cfg, backend=backend) as index:
        index.insert_batch([str(i) for i in range(1000)], x[:1000])
        codec_ = index.raw_backend.codec  # type: ignore[attr-defined]
        assert codec_.rotation is not None and index.stats().extra["code_bytes_per_vector"] == 8
        hits = [[h.id for h in index.search(v, k=5)] for v in q[:5]]
        again = rl.HnswIndex.deserialize(index.serialize())
        assert [[h.id for h in again.search(v, k=5)] for v in q[:5]] == hits
        truth = np.argsort(-(q[:20] @ x[:1000].T), axis=1)[:, :10]
        found = [{int(h.id) for h in index.search(v, k=10)} for v in q[:20]]
        assert np.mean([len(f & set(t)) for f, t in zip(found, truth, strict=True)]) / 10 > 0.5
