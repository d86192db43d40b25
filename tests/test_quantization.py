"""The quantization codecs: config, round-trip error bounds, asymmetric scores, serialization, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruvector_lab import container
from ruvector_lab.distances import pairwise_float32
from ruvector_lab.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
    NotTrainedError,
    QuantizationError,
)
from ruvector_lab.quantization import (
    KINDS,
    BinaryCodec,
    Codec,
    Int4Codec,
    ProductCodec,
    QuantizationConfig,
    QuantizedVectors,
    RabitqCodec,
    ScalarCodec,
    dequantize,
    load_codec,
    make_codec,
    quantize,
)
from ruvector_lab.quantization.binary import hamming

ENGINES = ["numpy", "faiss"]
CODEC_KINDS = list(KINDS)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """300 x 64 vectors of mixed scales, so per-vector ranges differ row by row."""
    rng = np.random.default_rng(11)
    return (rng.standard_normal((300, 64)) * rng.uniform(0.01, 50, size=(300, 1))).astype(np.float32)


def trained(kind: str, dims: int, sample: np.ndarray, metric: str = "cosine", engine: str = "numpy",
            m: int = 8) -> Codec:
    """A codec of ``kind`` ready to encode (PQ trained on ``sample``)."""
    return make_codec(QuantizationConfig(kind=kind, m=m), dims, metric=metric, engine=engine).train(sample)


# ---- config -------------------------------------------------------------------------------------------------
def test_config_fills_bits_per_kind_and_round_trips_through_json():
    for kind, bits in {"scalar": 8, "int4": 4, "binary": 1, "product": 8, "rabitq": 1}.items():
        cfg = QuantizationConfig(kind=kind, m=4, train_size=500, seed=3)
        assert cfg.bits == bits
        again = QuantizationConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg


@pytest.mark.parametrize("kwargs", [
    {"kind": "float16"}, {"kind": 4}, {"m": 0}, {"m": 2.5}, {"bits": 8, "kind": "int4"}, {"bits": 2},
    {"train_size": 0}, {"seed": -1}, {"seed": True},
])
def test_config_refuses_bad_fields(kwargs):
    with pytest.raises(InvalidParameterError):
        QuantizationConfig(**kwargs)


def test_config_from_dict_refuses_unknown_fields():
    with pytest.raises(InvalidParameterError, match="unknown"):
        QuantizationConfig.from_dict({"kind": "scalar", "levels": 7})


def test_make_codec_returns_the_kind_class_with_analytic_code_size():
    expected = {"scalar": (ScalarCodec, 100 + 8), "int4": (Int4Codec, 50 + 8), "binary": (BinaryCodec, 13),
                "product": (ProductCodec, 10), "rabitq": (RabitqCodec, 13 + 12)}
    for kind, (cls, size) in expected.items():
        codec = make_codec(QuantizationConfig(kind=kind, m=10), 100)
        assert type(codec) is cls
        assert codec.code_size == size
        assert codec.compression_ratio == pytest.approx(400 / size)


# ---- round trips --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "levels"), [("scalar", 255), ("int4", 15)])
def test_per_vector_codecs_stay_within_one_step_of_each_vectors_range(data, kind, levels):
    q = quantize(data, QuantizationConfig(kind=kind))
    back = dequantize(q, QuantizationConfig(kind=kind))
    span = data.max(axis=1) - data.min(axis=1)
    err = np.abs(back - data).max(axis=1)
    assert np.all(err <= span / levels)
    assert np.all(err > 0)  # it really is lossy: the bound is not met by copying floats
    assert q.codes.shape == (300, q.codec.code_size)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 40)),
                  elements=st.floats(-1e6, 1e6, width=32)),
       st.sampled_from([("scalar", 255), ("int4", 15)]))
def test_per_vector_bound_holds_for_any_finite_input(x, kind_levels):
    kind, levels = kind_levels
    back = dequantize(quantize(x, QuantizationConfig(kind=kind)))
    span = x.max(axis=1).astype(np.float64) - x.min(axis=1)
    # float32 rounding of the stored min and step adds a few ulps of the magnitude on top of the bound, and a
    # step below float32's smallest subnormal cannot be stored at all
    f32 = np.finfo(np.float32)
    slack = 4 * f32.eps * np.abs(x).max(axis=1) + levels * f32.smallest_subnormal
    assert np.all(np.abs(back.astype(np.float64) - x).max(axis=1) <= span / levels + slack)


def test_constant_vector_decodes_exactly():
    v = np.full(17, -3.25, dtype=np.float32)
    for kind in ("scalar", "int4"):
        assert np.array_equal(dequantize(quantize(v, QuantizationConfig(kind=kind))), v)


@pytest.mark.parametrize("engine", ENGINES)
def test_binary_keeps_every_sign_exactly(engine):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 13)).astype(np.float32)  # 13: not a multiple of 8, the last byte is partial
    x[0, 3] = 0.0
    codec = make_codec(QuantizationConfig(kind="binary"), 13, engine=engine)
    codes = codec.encode(x)
    assert codes.shape == (50, 2)
    back = codec.decode(codes)
    assert np.array_equal(back, np.where(x >= 0, 1.0, -1.0).astype(np.float32))


@pytest.mark.parametrize("engine", ENGINES)
def test_product_with_one_dimension_per_subspace_reconstructs_256_points_exactly(engine):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((256, 16)).astype(np.float32)
    codec = trained("product", 16, x, metric="euclidean", engine=engine, m=16)
    assert np.array_equal(codec.decode(codec.encode(x)), x)


def test_product_reduces_error_against_a_random_codebook(data):
    codec = trained("product", 64, data, metric="euclidean", m=16)
    err = np.linalg.norm(codec.decode(codec.encode(data)) - data, axis=1).mean()
    assert err < 0.5 * np.linalg.norm(data - data.mean(axis=0), axis=1).mean()


def test_one_vector_gives_one_code_row_and_back(data):
    for kind in CODEC_KINDS:
        codec = trained(kind, 64, data)
        code = codec.encode(data[7])
        assert code.shape == (codec.code_size,) and code.dtype == np.uint8
        assert np.array_equal(codec.decode(code), codec.decode(codec.encode(data[7:8]))[0])


# ---- asymmetric distance ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "metric"), [
    (k, m) for k in ("scalar", "int4", "product") for m in ("cosine", "euclidean", "dot_product")
] + [("binary", "cosine"), ("rabitq", "dot_product")])
def test_asymmetric_distance_equals_distance_to_decoded_vectors(data, kind, metric):
    codec = trained(kind, 64, data, metric=metric, m=16)
    codes = codec.encode(data)
    queries = data[:5] + 0.01
    got = codec.distance(queries, codes)
    want = pairwise_float32(queries, codec.decode(codes), metric)
    assert got.shape == (5, 300) and got.dtype == np.float32
    tol = 2e-4 * np.abs(want).max()  # float32 sums in another order: error relative to the largest term
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=tol)
    np.testing.assert_allclose(codec.distance(queries[0], codes), got[0], rtol=2e-4, atol=tol)


def test_scalar_scores_rank_like_exact_scores(data):
    codec = trained("scalar", 64, data, metric="euclidean")
    exact = pairwise_float32(data[:20], data, "euclidean")
    approx = codec.distance(data[:20], codec.encode(data))
    assert (np.argsort(exact, axis=1)[:, :5] == np.argsort(approx, axis=1)[:, :5]).mean() > 0.95


def test_score_convention_matches_the_library(data):
    codec = trained("scalar", 64, data, metric="dot_product")
    codes = codec.encode(data[:3])
    want = -(data[:1] @ codec.decode(codes).T)[0]
    np.testing.assert_allclose(codec.distance(data[0], codes), want, rtol=1e-5)


def test_cosine_of_a_zero_decoded_vector_is_one_not_nan():
    codec = make_codec(QuantizationConfig(kind="scalar"), 4)
    codes = codec.encode(np.zeros((1, 4), dtype=np.float32))
    assert codec.distance(np.ones(4, dtype=np.float32), codes).tolist() == [1.0]


def test_binary_hamming_counts_differing_signs():
    codec = make_codec(QuantizationConfig(kind="binary"), 10)
    a = np.ones((1, 10), dtype=np.float32)
    b = np.ones((2, 10), dtype=np.float32)
    b[0, [0, 9]] = -1
    b[1, :] = -1
    assert codec.hamming(codec.encode(a), codec.encode(b)).tolist() == [[2, 10]]


def test_rabitq_bits_are_signs_of_the_rotated_residual(data):
    codec = trained("rabitq", 64, data, metric="euclidean")
    rotation = codec.rotation
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(64), atol=1e-5)
    residual = data - codec.centre
    y = (residual / np.linalg.norm(residual, axis=1, keepdims=True)) @ rotation
    codes = codec.encode(data)
    bits = np.unpackbits(codes[:, :8], axis=1, bitorder="little")
    assert np.array_equal(bits.astype(bool), y >= 0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_rabitq_estimates_track_exact_distances(metric):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2000, 128)).astype(np.float32)
    q = rng.standard_normal((20, 128)).astype(np.float32)
    codec = make_codec(QuantizationConfig(kind="rabitq"), 128, metric=metric).train(x)
    estimate = codec.distance(q, codec.encode(x))
    exact = pairwise_float32(q, x, metric)
    # the estimator is unbiased with error O(1/sqrt(d)): strongly correlated, and right on average
    assert np.corrcoef(estimate.ravel(), exact.ravel())[0, 1] > 0.7
    assert abs(np.mean(estimate - exact)) < 0.05 * np.abs(exact).mean()


def test_rabitq_vector_at_the_centre_is_estimated_exactly():
    codec = make_codec(QuantizationConfig(kind="rabitq"), 8, metric="dot_product")
    x = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [3, 2, 1, 0, -1, -2, -3, -4]], dtype=np.float32)
    codec.train(x)
    centre = codec.centre.reshape(1, -1)
    q = np.arange(8, dtype=np.float32)
    assert codec.distance(q, codec.encode(centre))[0] == pytest.approx(-(centre[0] @ q), rel=1e-5)


# ---- serialization ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CODEC_KINDS)
def test_codec_round_trips_through_the_container(data, kind):
    codec = trained(kind, 64, data, metric="euclidean" if kind != "binary" else "cosine", m=16)
    blob = codec.to_bytes()
    assert blob.startswith(container.MAGIC)
    again = load_codec(blob)
    assert type(again) is type(codec) and again.config == codec.config and again.metric == codec.metric
    codes = codec.encode(data)
    assert np.array_equal(again.encode(data), codes)
    assert np.array_equal(again.decode(codes), codec.decode(codes))


def test_untrained_product_codec_round_trips_untrained():
    codec = make_codec(QuantizationConfig(kind="product", m=4), 8)
    again = Codec.from_bytes(codec.to_bytes())
    assert isinstance(again, ProductCodec) and not again.is_trained


def test_quantized_vectors_round_trip_with_their_codebooks(data):
    q = quantize(data, QuantizationConfig(kind="product", m=16), metric="euclidean")
    again = QuantizedVectors.from_bytes(q.to_bytes())
    assert again.kind == "product" and len(again) == 300
    assert np.array_equal(dequantize(again), dequantize(q))


def test_damaged_blobs_raise_corrupt_index_error(data):
    blob = trained("product", 64, data, m=16).to_bytes()
    with pytest.raises(CorruptIndexError):
        load_codec(blob[:-40])
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    with pytest.raises(CorruptIndexError):
        load_codec(bytes(flipped))
    with pytest.raises(CorruptIndexError, match="expected a 'quantized-vectors'"):
        QuantizedVectors.from_bytes(blob)
    bad_meta = container.dumps("quantization-codec", {"config": {"kind": "scalar"}, "dimensions": 0,
                                                      "metric": "cosine", "trained": True})
    with pytest.raises(CorruptIndexError, match="codec metadata"):
        load_codec(bad_meta)
    no_books = container.dumps("quantization-codec", {"config": {"kind": "product", "m": 4}, "dimensions": 8,
                                                      "metric": "cosine", "trained": True})
    with pytest.raises(CorruptIndexError, match="codebooks"):
        load_codec(no_books)


# ---- bad input ----------------------------------------------------------------------------------------------
def test_decoding_codes_of_the_wrong_length_or_dtype_is_refused(data):
    codec = trained("scalar", 64, data)
    codes = codec.encode(data[:3])
    with pytest.raises(QuantizationError, match="72-byte codes"):
        codec.decode(codes[:, :-1])
    with pytest.raises(QuantizationError, match="uint8"):
        codec.decode(codes.astype(np.int16))
    with pytest.raises(QuantizationError, match="numpy array"):
        codec.decode(codes.tolist())
    with pytest.raises(QuantizationError):
        codec.distance(data[0], codes[:, :10])


def test_decoding_codes_of_another_kind_is_refused(data):
    scalar = quantize(data[:4], QuantizationConfig(kind="scalar"))
    int4_codec = make_codec(QuantizationConfig(kind="int4"), 64)
    with pytest.raises(QuantizationError, match="scalar codes"):
        int4_codec.decode(scalar)
    with pytest.raises(QuantizationError, match="scalar codes"):
        dequantize(scalar, QuantizationConfig(kind="int4"))
    with pytest.raises(QuantizationError, match="codec="):
        dequantize(scalar.codes)
    other_dims = make_codec(QuantizationConfig(kind="scalar"), 32)
    with pytest.raises(QuantizationError, match="64-d"):
        other_dims.decode(scalar)


def test_product_m_must_divide_the_dimension():
    with pytest.raises(QuantizationError, match="m=5 does not divide 64"):
        make_codec(QuantizationConfig(kind="product", m=5), 64)


def test_untrained_product_codec_refuses_to_encode_decode_or_score(data):
    codec = make_codec(QuantizationConfig(kind="product", m=8), 64)
    for call in (lambda: codec.encode(data), lambda: codec.decode(np.zeros((1, 8), np.uint8)),
                 lambda: codec.distance(data[0], np.zeros((1, 8), np.uint8))):
        with pytest.raises(NotTrainedError, match="train"):
            call()
    with pytest.raises(NotTrainedError):
        quantize(data[0], QuantizationConfig(kind="product", m=8))


@pytest.mark.parametrize("metric", ["euclidean", "dot_product"])
def test_binary_refuses_metrics_that_need_magnitudes(metric):
    with pytest.raises(QuantizationError, match="binary codes cannot serve"):
        make_codec(QuantizationConfig(kind="binary"), 64, metric=metric)
    with pytest.raises(QuantizationError):
        quantize(np.ones(64, np.float32), QuantizationConfig(kind="binary"), metric=metric)


def test_int4_serves_every_metric(data):
    for metric in ("cosine", "euclidean", "dot_product"):
        codec = make_codec(QuantizationConfig(kind="int4"), 64, metric=metric)
        assert codec.distance(data[0], codec.encode(data[:2])).shape == (2,)


def test_bad_vectors_are_refused(data):
    codec = make_codec(QuantizationConfig(kind="scalar"), 64)
    with pytest.raises(DimensionMismatchError):
        codec.encode(data[:, :10])
    bad = data[:2].copy()
    bad[1, 1] = np.nan
    with pytest.raises(InvalidVectorError):
        codec.encode(bad)
    with pytest.raises(InvalidVectorError, match="zero"):
        codec.distance(np.zeros(64, np.float32), codec.encode(data[:2]))
    with pytest.raises(QuantizationError, match="overflows"):
        codec.encode(np.array([[-3e38, 3e38]], dtype=np.float32).repeat(32, axis=1))
    with pytest.raises(InvalidParameterError):
        make_codec({"kind": "scalar"}, 64)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        make_codec(QuantizationConfig(), 64, metric="manhattan")
    with pytest.raises(InvalidParameterError, match="engine"):
        make_codec(QuantizationConfig(), 64, engine="gpu")  # type: ignore[arg-type]


def test_quantize_refuses_a_codec_made_for_another_config(data):
    codec = trained("product", 64, data, m=8)
    with pytest.raises(QuantizationError, match="made for"):
        quantize(data, QuantizationConfig(kind="product", m=16), codec=codec)
    q = quantize(data[:3], QuantizationConfig(kind="product", m=8), codec=codec)
    assert q.codec is codec and q.nbytes == 3 * 8


def test_set_codebooks_checks_the_shape():
    codec = make_codec(QuantizationConfig(kind="product", m=4), 8)
    with pytest.raises(QuantizationError, match="4 x 256 x 2"):
        codec.set_codebooks(np.zeros((4, 16, 2), np.float32))


def test_hamming_helper_matches_a_bit_by_bit_count():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    bits = lambda c: np.unpackbits(c, axis=1)  # noqa: E731
    want = (bits(a)[:, None, :] != bits(b)[None, :, :]).sum(axis=2)
    assert np.array_equal(hamming(a, b), want)


def test_bit_dots_lookup_tables_match_unpacked_products():
    from ruvector_lab.quantization.binary import bit_dots

    rng = np.random.default_rng(12)
    packed = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    queries = rng.standard_normal((9, 21)).astype(np.float32)  # 21 bits: the last byte is partial
    bits = np.unpackbits(packed, axis=1, count=21, bitorder="little").astype(np.float32)
    want = queries @ bits.T
    np.testing.assert_allclose(bit_dots(queries, packed, 21), want, rtol=1e-5, atol=1e-5)  # unpacked path
    np.testing.assert_allclose(bit_dots(queries[:2], packed, 21), want[:2], rtol=1e-5, atol=1e-5)  # tables
