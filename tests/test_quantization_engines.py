"""The faiss and NumPy code paths of the codecs agree, and the codes are faiss' own formats."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ruvector_lab.errors import InvalidParameterError
from ruvector_lab.quantization import QuantizationConfig, kmeans, make_codec
from ruvector_lab.quantization.kmeans import nearest, resolve_engine


@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    """2,000 x 32 vectors around 20 centres."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((20, 32)) * 4
    return (centres[rng.integers(0, 20, 2000)] + rng.standard_normal((2000, 32)) * 0.3).astype(np.float32)


def test_auto_engine_is_faiss_when_installed():
    assert resolve_engine("auto") == "faiss"
    with pytest.raises(InvalidParameterError):
        resolve_engine("cuda")


def test_binary_codes_are_faiss_bit_vectors_on_both_paths(clustered):
    np_codec = make_codec(QuantizationConfig(kind="binary"), 32, engine="numpy")
    fa_codec = make_codec(QuantizationConfig(kind="binary"), 32, engine="faiss")
    codes = np_codec.encode(clustered)
    assert np.array_equal(codes, fa_codec.encode(clustered))
    index = faiss.IndexBinaryFlat(32)
    index.add(codes)
    dist, labels = index.search(codes[:10], 2000)
    ours = np_codec.hamming(codes[:10], codes)
    assert np.array_equal(np.take_along_axis(ours, labels, axis=1), dist)
    real = np.empty((1, 32), dtype=np.float32)
    faiss.binary_to_real(32, faiss.swig_ptr(codes[0]), faiss.swig_ptr(real))
    assert np.array_equal(np_codec.decode(codes[0]), real[0])


def test_product_codes_agree_between_faiss_and_numpy_given_the_same_codebooks(clustered):
    cfg = QuantizationConfig(kind="product", m=8)
    fa = make_codec(cfg, 32, metric="euclidean", engine="faiss").train(clustered)
    np_codec = make_codec(cfg, 32, metric="euclidean", engine="numpy")
    np_codec.set_codebooks(fa.codebooks)
    a, b = fa.encode(clustered), np_codec.encode(clustered)
    same = a == b
    assert same.mean() > 0.999
    # where they differ it is a tie in float rounding: both centroids are equally near
    for row, sub in zip(*np.nonzero(~same), strict=True):
        piece = clustered[row, sub * 4 : (sub + 1) * 4]
        da = np.sum((fa.codebooks[sub, a[row, sub]] - piece) ** 2)
        db = np.sum((fa.codebooks[sub, b[row, sub]] - piece) ** 2)
        assert da == pytest.approx(db, rel=1e-5, abs=1e-7)
    assert np.array_equal(fa.decode(a), np_codec.decode(a))
    np.testing.assert_allclose(fa.distance(clustered[:4], a), np_codec.distance(clustered[:4], a), rtol=1e-6)


def test_product_lookup_table_is_faiss_distance_table(clustered):
    codec = make_codec(QuantizationConfig(kind="product", m=8), 32, metric="euclidean").train(clustered)
    pq = faiss.ProductQuantizer(32, 8, 8)
    faiss.copy_array_to_vector(codec.codebooks.ravel(), pq.centroids)
    table = np.empty((8, 256), dtype=np.float32)
    pq.compute_distance_table(faiss.swig_ptr(clustered[0]), faiss.swig_ptr(table))
    np.testing.assert_allclose(codec.tables(clustered[0]), table, rtol=1e-5, atol=1e-5)


def test_product_training_on_both_engines_is_equally_good(clustered):
    cfg = QuantizationConfig(kind="product", m=8, seed=1)
    errors = {}
    for engine in ("faiss", "numpy"):
        codec = make_codec(cfg, 32, metric="euclidean", engine=engine).train(clustered)
        assert codec.codebooks.shape == (8, 256, 4) and codec.codebooks.dtype == np.float32
        errors[engine] = np.mean((codec.decode(codec.encode(clustered)) - clustered) ** 2)
    assert errors["numpy"] == pytest.approx(errors["faiss"], rel=0.15)


@pytest.mark.parametrize("engine", ["faiss", "numpy"])
def test_kmeans_finds_well_separated_centres(engine):
    rng = np.random.default_rng(8)
    centres = np.eye(6, dtype=np.float32) * 10
    x = (centres[np.repeat(np.arange(6), 100)] + rng.standard_normal((600, 6)) * 0.05).astype(np.float32)
    found = kmeans(x, 6, seed=2, engine=engine)
    assert found.shape == (6, 6) and found.dtype == np.float32
    labels, dist = nearest(centres, found)
    assert sorted(labels.tolist()) == list(range(6))
    assert dist.max() < 0.05


@pytest.mark.parametrize("engine", ["faiss", "numpy"])
def test_kmeans_with_no_more_rows_than_centroids_returns_the_rows(engine):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = kmeans(x, 5, engine=engine)
    assert np.array_equal(out, x[[0, 1, 2, 0, 1]])


def test_nearest_breaks_ties_to_the_lowest_index():
    centroids = np.array([[1.0], [1.0], [3.0]], dtype=np.float32)
    labels, dist = nearest(np.array([[1.0], [2.0]], dtype=np.float32), centroids)
    assert labels.tolist() == [0, 0] and dist.tolist() == [0.0, 1.0]
