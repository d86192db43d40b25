"""Vector ops: values, properties (hypothesis), dispatch to backend kernels, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import available_backends
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import ruvector_lab as rl

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
DIM = 8


def vectors(n: int | None = None):
    shape = (DIM,) if n is None else (n, DIM)
    return arrays(np.float32, shape, elements=finite).filter(lambda v: np.all(np.linalg.norm(np.atleast_2d(v),
                                                                                         axis=-1) > 1e-3))


def test_known_values():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    assert rl.distance(a, b, "euclidean") == pytest.approx(np.sqrt(5))
    assert rl.distance(a, b, "cosine") == pytest.approx(1.0)
    assert rl.distance(a, a * 3, "cosine") == pytest.approx(0.0, abs=1e-7)
    assert rl.distance([1, 2], [3, 4], "dot_product") == pytest.approx(-11.0)
    np.testing.assert_allclose(rl.normalize([3.0, 4.0]), [0.6, 0.8])


@settings(max_examples=60, deadline=None)
@given(vectors(), vectors(), st.sampled_from(rl.METRICS))
def test_symmetry(a, b, metric):
    assert rl.distance(a, b, metric) == pytest.approx(rl.distance(b, a, metric), rel=1e-5, abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(vectors(), vectors(), vectors())
def test_triangle_inequality_for_euclidean(a, b, c):
    ab, bc, ac = (rl.distance(x, y, "euclidean") for x, y in ((a, b), (b, c), (a, c)))
    assert ac <= ab + bc + 1e-3 * (1 + ab + bc)


@settings(max_examples=60, deadline=None)
@given(vectors(5))
def test_normalize_is_idempotent_and_unit_length(x):
    once = rl.normalize(x)
    np.testing.assert_allclose(np.linalg.norm(once, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rl.normalize(once), once, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(vectors(), vectors(6), st.sampled_from(rl.METRICS))
def test_batch_distance_matches_pairwise_distance(q, X, metric):
    batch = rl.batch_distance(q, X, metric)
    assert batch.dtype == np.float32 and batch.shape == (6,)
    pairwise = [rl.distance(q, x, metric) for x in X]
    np.testing.assert_allclose(batch, pairwise, rtol=1e-4, atol=1e-3)


def test_matrix_forms():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 16)), rng.standard_normal((4, 16))
    rows = rl.distance(A, B, "euclidean")
    assert rows.shape == (4,)
    np.testing.assert_allclose(rows, np.linalg.norm(A - B, axis=1), rtol=1e-5)
    full = rl.batch_distance(A, B, "cosine")
    assert full.shape == (4, 4)
    np.testing.assert_allclose(np.diag(full), rl.distance(A, B, "cosine"), atol=1e-6)


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("metric", rl.METRICS)
def test_every_backend_kernel_agrees_with_numpy(backend, metric):
    rng = np.random.default_rng(1)
    q, X = rng.standard_normal(384).astype(np.float32), rng.standard_normal((2000, 384)).astype(np.float32)
    rl.Runtime.initialize(backend="numpy")
    reference = rl.batch_distance(q, X, metric)
    rl.Runtime.initialize(backend=backend)
    np.testing.assert_allclose(rl.batch_distance(q, X, metric), reference, atol=1e-4, rtol=1e-5)


def test_bad_input():
    with pytest.raises(rl.InvalidParameterError, match="unknown metric 'manhattan'"):
        rl.distance([1, 2], [3, 4], "manhattan")
    with pytest.raises(rl.DimensionMismatchError, match="batch_distance"):
        rl.distance([1, 2], [3, 4, 5])
    with pytest.raises(rl.DimensionMismatchError):
        rl.batch_distance([1, 2], [[1, 2, 3]])
    with pytest.raises(rl.InvalidVectorError, match="NaN"):
        rl.distance([1, np.nan], [3, 4])
    with pytest.raises(rl.InvalidVectorError, match="zero vector"):
        rl.distance([0, 0], [3, 4], "cosine")
    with pytest.raises(rl.InvalidVectorError, match="zero vector"):
        rl.normalize([[1, 2], [0, 0]])
    with pytest.raises(rl.InvalidVectorError):
        rl.normalize(["a", "b"])
    with pytest.raises(rl.InvalidVectorError):
        rl.batch_distance([1, 2], [[1, 2], [3]])
    assert rl.distance([0, 0], [3, 4], "euclidean") == pytest.approx(5.0)
