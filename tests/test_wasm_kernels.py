"""The wasm tier's vector kernels (rvf-wasm's distances, int8 dequantize, CRC-32C) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_wasm

import ruvector_lab as rl
from ruvector_lab.backends import backend_class
from ruvector_lab.distances import pairwise_float32
from ruvector_lab.errors import (
    BackendError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
)
from ruvector_lab.wasm import kernels

pytestmark = requires_wasm()
METRICS = list(rl.METRICS)


def f16_toward_zero(values: np.ndarray) -> np.ndarray:
    """float32 -> float16 by dropping mantissa bits (the module's conversion), for finite inputs."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)
    sign = (bits >> 16) & 0x8000
    exp = ((bits >> 23) & 0xFF) - 127 + 15
    mant = bits & 0x7FFFFF
    normal = sign | (np.clip(exp, 0, 31) << 10) | (mant >> 13)
    shift = np.clip(14 - exp, 0, 63)
    subnormal = sign | ((mant | 0x800000) >> shift)
    out = np.where(exp >= 31, sign | 0x7C00, np.where(exp > 0, normal, np.where(exp >= -10, subnormal, sign)))
    return out.astype(np.uint16).view(np.float16)


@pytest.mark.parametrize("metric", METRICS)
def test_batch_distances_agree_with_numpy(metric):
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((6, 33)).astype(np.float32)
    vectors = (rng.standard_normal((500, 33)) * 3).astype(np.float32)
    got = kernels.batch_distances(queries, vectors, metric)
    assert got.shape == (6, 500) and got.dtype == np.float32
    np.testing.assert_allclose(got, pairwise_float32(queries, vectors, metric), atol=1e-4, rtol=1e-5)


def test_batch_distances_shapes_and_checks():
    q = np.ones((2, 4), np.float32)
    assert kernels.batch_distances(q, np.empty((0, 4), np.float32), "cosine").shape == (2, 0)
    assert kernels.batch_distances(np.empty((0, 4), np.float32), q, "cosine").shape == (0, 2)
    with pytest.raises(DimensionMismatchError):
        kernels.batch_distances(q, np.ones((3, 5), np.float32), "euclidean")
    with pytest.raises(InvalidParameterError):
        kernels.batch_distances(q, q, "manhattan")
    with pytest.raises(InvalidVectorError, match="overflow"):
        kernels.batch_distances(q, np.full((1, 4), 2e38, np.float32), "dot_product")


@pytest.mark.parametrize("metric", METRICS)
def test_ops_on_the_wasm_tier_use_the_module_kernel(metric):
    assert backend_class("wasm").distance_kernel is kernels.batch_distances
    rl.Runtime.initialize(backend="wasm")
    rng = np.random.default_rng(6)
    q, x = rng.standard_normal(16).astype(np.float32), rng.standard_normal((200, 16)).astype(np.float32)
    got = rl.batch_distance(q, x, metric)
    assert got.shape == (200,)
    np.testing.assert_allclose(got, pairwise_float32(q[None], x, metric)[0], atol=1e-4, rtol=1e-5)


def test_to_library_scores():
    raw = np.array([4.0, 0.0, -1e-9], np.float32)
    np.testing.assert_array_equal(kernels.to_library_scores(raw, "euclidean"), [2.0, 0.0, 0.0])
    np.testing.assert_array_equal(kernels.to_library_scores(raw, "dot_product"), raw)


@pytest.mark.parametrize("metric", ["euclidean", "dot_product", "cosine"])
def test_fp16_tile_kernel_agrees_with_numpy(metric):
    rng = np.random.default_rng(7)
    block = rng.standard_normal((700, 48)).astype(np.float16)  # 700 x 96 bytes spans three 32 KiB tiles
    query = rng.standard_normal(48).astype(np.float16)
    got = kernels.tile_distances(query, block, metric)
    q, b = query.astype(np.float32), block.astype(np.float32)
    if metric == "euclidean":
        want = ((b - q) ** 2).sum(axis=1)
    elif metric == "dot_product":
        want = -(b @ q)
    else:
        want = 1 - (b @ q) / (np.linalg.norm(b, axis=1) * np.linalg.norm(q))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_hamming_and_int8_tile_kernels():
    rng = np.random.default_rng(8)
    block = rng.integers(-128, 128, (300, 40)).astype(np.int8)
    query = rng.integers(-128, 128, 40).astype(np.int8)
    l2 = kernels.tile_distances(query, block, "euclidean")
    np.testing.assert_array_equal(l2, ((block.astype(np.int64) - query) ** 2).sum(axis=1))
    bits = np.unpackbits((block.view(np.uint8) ^ query.view(np.uint8)), axis=1).sum(axis=1)
    np.testing.assert_array_equal(kernels.tile_distances(query, block, "hamming"), bits)
    half = rng.standard_normal((10, 8)).astype(np.float16)
    xor = half.view(np.uint16) ^ half[0].view(np.uint16)
    want = np.unpackbits(xor.view(np.uint8), axis=1).sum(axis=1)
    np.testing.assert_array_equal(kernels.tile_distances(half[0], half, "hamming"), want)
    with pytest.raises(InvalidParameterError, match="euclidean and hamming"):
        kernels.tile_distances(query, block, "cosine")
    with pytest.raises(InvalidParameterError, match=r"1 \.\. 96"):
        kernels.tile_distances(np.zeros(97, np.float16), np.zeros((2, 97), np.float16), "euclidean")
    with pytest.raises(InvalidParameterError, match="float16 or int8"):
        kernels.tile_distances(np.zeros(4, np.float32), np.zeros((2, 4), np.float32), "euclidean")


def test_dequantize_i8_per_dimension_matches_the_formula():
    rng = np.random.default_rng(9)
    codes = rng.integers(-128, 128, (50, 32)).astype(np.int8)
    lo = rng.uniform(-2, 0, 32).astype(np.float32)
    hi = (lo + rng.uniform(0.1, 3, 32)).astype(np.float32)
    got = kernels.dequantize_i8(codes, lo, hi)
    # the module's arithmetic, step by step in float32, then its float32 -> float16 conversion
    normalized = (codes.astype(np.float32) + np.float32(128)) / np.float32(255)
    exact = lo + normalized * (hi - lo)
    np.testing.assert_array_equal(got, f16_toward_zero(exact).astype(np.float32))
    np.testing.assert_allclose(got, exact, rtol=2.0**-10, atol=1e-4)


def test_dequantize_scalar_u8_is_the_per_vector_formula():
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, (20, 300)).astype(np.float32)
    mins, maxs = x.min(axis=1), x.max(axis=1)
    codes = np.rint((x - mins[:, None]) / ((maxs - mins) / 255)[:, None]).astype(np.uint8)
    got = kernels.dequantize_scalar_u8(codes, mins, maxs)
    want = mins[:, None] + codes.astype(np.float32) / np.float32(255) * (maxs - mins)[:, None]
    # fp16 output: within 1e-4 plus half-precision rounding of values in [-1, 1]
    np.testing.assert_allclose(got, want, atol=1e-4 + 2.0**-10)
    np.testing.assert_allclose(got, x, atol=(maxs - mins).max() / 255)
    with pytest.raises(InvalidParameterError, match="uint8"):
        kernels.dequantize_scalar_u8(codes.astype(np.int16), mins, maxs)
    with pytest.raises(DimensionMismatchError):
        kernels.dequantize_scalar_u8(codes, mins[:3], maxs)


def test_dequantize_i8_checks():
    codes = np.zeros((2, 100), np.int8)
    with pytest.raises(InvalidParameterError, match="at most 96"):
        kernels.dequantize_i8(codes, np.zeros(100), np.ones(100))
    with pytest.raises(DimensionMismatchError):
        kernels.dequantize_i8(codes, np.zeros(3), np.ones(3))
    with pytest.raises(InvalidVectorError):
        kernels.dequantize_i8(codes, np.nan, 1.0)
    shared = kernels.dequantize_i8(codes, -1.0, 1.0)  # one pair for every component works at any width
    np.testing.assert_allclose(shared, np.full((2, 100), 1 / 255, np.float32), atol=1e-3)


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c():
    assert kernels.crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert kernels.crc32c(b"") == 0
    data = np.random.default_rng(11).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    assert kernels.crc32c(data) == _crc32c(data)
    with pytest.raises(InvalidParameterError):
        kernels.crc32c("text")  # type: ignore[arg-type]


def test_shared_module_is_rebuilt_after_a_trap():
    module = kernels.shared_module()
    assert kernels.shared_module() is module
    with pytest.raises(BackendError, match="trapped"):
        module.call("rvf_crc32c", 0x7FFF_FFF0, 0x100)
    fresh = kernels.shared_module()
    assert fresh is not module and fresh.poisoned is None
    assert kernels.crc32c(b"123456789") == 0xE3069283


def test_pq_distances_agree_with_numpy():
    rng = np.random.default_rng(12)
    m, k, sub = 8, 16, 6
    query = rng.standard_normal(m * sub).astype(np.float16)
    codebook = rng.standard_normal((m, k, sub)).astype(np.float16)
    codes = rng.integers(0, k, (500, m)).astype(np.uint8)
    got = kernels.pq_distances(query, codebook, codes)
    q = query.astype(np.float32).reshape(m, sub)
    table = ((codebook.astype(np.float32) - q[:, None, :]) ** 2).sum(axis=2)  # (m, k)
    want = table[np.arange(m), codes].sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert kernels.pq_distances(query, codebook, codes[:0]).shape == (0,)
    with pytest.raises(InvalidParameterError, match="centroids"):
        kernels.pq_distances(query, codebook, np.full((2, m), k, np.uint8))
    with pytest.raises(DimensionMismatchError):
        kernels.pq_distances(query[:-1], codebook, codes)
    with pytest.raises(InvalidParameterError, match="float16"):
        kernels.pq_distances(query.astype(np.float32), codebook, codes)
    with pytest.raises(InvalidParameterError, match="3072"):
        kernels.pq_distances(np.zeros(96, np.float16), np.zeros((96, 256, 1), np.float16), np.zeros((1, 96), np.uint8))


def test_cosine_kernel_is_scale_free():
    rng = np.random.default_rng(13)
    q, x = rng.standard_normal((2, 8)).astype(np.float32), rng.standard_normal((30, 8)).astype(np.float32)
    want = pairwise_float32(q, x, "cosine")
    for scale in (1e-30, 1e25):
        got = kernels.batch_distances(q * np.float32(scale), x * np.float32(scale), "cosine")
        np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(InvalidVectorError, match="zero vector"):
        kernels.batch_distances(q, np.zeros((1, 8), np.float32), "cosine")
