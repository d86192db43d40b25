"""ruvector_lab.distances: every kernel against a float64 brute-force definition of the metrics, the corners
(zero rows, NaN, inf), and the relations between the kernels (float32 vs float64, unit-row variants, paired rows)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ruvector_lab import distances as D
from ruvector_lab import types, validation
from ruvector_lab.errors import InvalidParameterError

METRICS = ("cosine", "euclidean", "dot_product")


def reference(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """The definitions, one pair at a time, with exactly rounded float64 sums (math.fsum)."""
    out = np.empty((len(queries), len(vectors)))
    for i, a in enumerate(queries.astype(np.float64)):
        for j, b in enumerate(vectors.astype(np.float64)):
            if metric == "euclidean":
                out[i, j] = math.sqrt(math.fsum((a - b) ** 2))
            elif metric == "dot_product":
                out[i, j] = -math.fsum(a * b)
            else:
                norms = math.sqrt(math.fsum(a * a)) * math.sqrt(math.fsum(b * b))
                out[i, j] = 1.0 - (math.fsum(a * b) / norms if norms else 0.0)
    return out


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    queries = (rng.standard_normal((7, 24)) * 3).astype(np.float32)
    vectors = (rng.standard_normal((40, 24)) * 3).astype(np.float32)
    vectors[4] = queries[1]  # a distance of exactly zero
    vectors[5] = -2 * queries[2]  # cosine distance 2
    return queries, vectors


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)


# ---- each kernel against the definition -----------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_float32_matches_the_definition(data, metric):
    q, x = data
    got = D.pairwise_float32(q, x, metric)
    assert got.dtype == np.float32 and got.shape == (7, 40)
    np.testing.assert_allclose(got, reference(q, x, metric), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_float64_matches_the_definition(data, metric):
    q, x = data
    got = D.pairwise_float64(q, x, metric)
    assert got.dtype == np.float64 and got.shape == (7, 40)
    # euclidean squares through the expansion: error ~1e-16 (|q|^2 + |x|^2) in the square, so absolute near zero
    np.testing.assert_allclose(got, reference(q, x, metric), rtol=1e-12, atol=1e-6 if metric == "euclidean" else 1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_query_to_rows_unit_matches_the_definition_on_stored_rows(data, metric):
    q, x = data
    if metric == "cosine":  # the stored form: unit rows
        q, x = D.normalize_rows(q), D.normalize_rows(x)
    want = reference(q, x, metric)
    for row in range(len(q)):
        got = D.query_to_rows_unit(q[row], x, metric)
        assert got.dtype == np.float32 and got.shape == (40,)
        np.testing.assert_allclose(got, want[row], rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_rows_match_the_definition(data, metric):
    x = data[1]
    a, b = x[:20], x[20:]
    want = np.diag(reference(a, b, metric))
    got32 = D.rows_to_rows_float32(a, b, metric)
    got64 = D.rows_to_rows_float64(a, b, metric)
    assert got32.dtype == np.float32 and got64.dtype == np.float64 and got32.shape == got64.shape == (20,)
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_rows_broadcast_like_the_true_distances_of_returned_ids(data, metric):
    q, x = data
    ids = np.random.default_rng(3).integers(0, len(x), (len(q), 5))
    got = D.rows_to_rows_float64(q[:, None, :], x[ids], metric)
    assert got.shape == (len(q), 5)
    np.testing.assert_allclose(got, np.take_along_axis(reference(q, x, metric), ids, axis=1), rtol=1e-12, atol=1e-12)


# ---- relations between the kernels ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_float32_and_float64_paths_agree(data, metric):
    q, x = data
    np.testing.assert_allclose(D.pairwise_float32(q, x, metric), D.pairwise_float64(q, x, metric),
                               rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_the_unit_row_variant_equals_the_general_kernel_on_unit_rows(data, metric):
    q, x = unit(data[0]), unit(data[1])
    general = D.pairwise_float32(q, x, metric)
    for row in range(len(q)):
        np.testing.assert_allclose(D.query_to_rows_unit(q[row], x, metric), general[row], rtol=1e-6, atol=1e-6)


def test_cosine_of_raw_rows_equals_one_minus_dot_of_unit_rows(data):
    q, x = data
    np.testing.assert_allclose(D.pairwise_float32(q, x, "cosine"),
                               np.stack([D.query_to_rows_unit(u, unit(x), "cosine") for u in unit(q)]),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_rows_are_the_diagonal_of_the_pairwise_distances(data, metric):
    a, b = data[1][:20], data[1][20:]
    np.testing.assert_allclose(D.rows_to_rows_float32(a, b, metric), np.diag(D.pairwise_float32(a, b, metric)),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(D.rows_to_rows_float64(a, b, metric), np.diag(D.pairwise_float64(a, b, metric)),
                               rtol=1e-12, atol=1e-6 if metric == "euclidean" else 1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_ranking_scores_rank_like_the_distances(data, metric):
    q, x = data
    if metric == "cosine":
        q, x = unit(q), unit(x)
    scores = D.ranking_scores(q, x, metric, D.squared_norms(x) if metric == "euclidean" else None)
    want = reference(q, x, metric)
    assert (np.argsort(scores, axis=1, kind="stable")[:, :10] == np.argsort(want, axis=1, kind="stable")[:, :10]).all()
    if metric == "euclidean":  # |x|^2 - 2 q.x is the squared distance less |q|^2; the norms default to computed
        sq = D.squared_norms(q.astype(np.float64))[:, None]
        np.testing.assert_allclose(scores + sq, want**2, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(D.ranking_scores(q, x, metric), scores)


def test_the_ground_truth_kernel_keeps_its_float64_formula(data):
    """Stored ground truth was computed with these exact operations: a change must be deliberate."""
    q, x = data
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    sq = (q64**2).sum(1)[:, None] + (x64**2).sum(1)[None, :] - 2.0 * q64 @ x64.T
    np.testing.assert_array_equal(D.pairwise_float64(q, x, "euclidean"), np.sqrt(np.maximum(sq, 0.0)))
    norms = np.linalg.norm(q64, axis=1)[:, None] * np.linalg.norm(x64, axis=1)[None, :]
    np.testing.assert_array_equal(D.pairwise_float64(q, x, "cosine"), 1.0 - (q64 @ x64.T) / norms)
    np.testing.assert_array_equal(D.pairwise_float64(q, x, "dot_product"), -(q64 @ x64.T))


# ---- conventions -----------------------------------------------------------------------------------------------
def test_score_conventions_on_a_small_example():
    q = np.array([[3.0, 4.0]], np.float32)
    x = np.array([[3.0, 4.0], [6.0, 8.0], [-3.0, -4.0], [4.0, -3.0]], np.float32)
    np.testing.assert_allclose(D.pairwise_float32(q, x, "euclidean")[0], [0.0, 5.0, 10.0, math.sqrt(50)], rtol=1e-6)
    np.testing.assert_allclose(D.pairwise_float32(q, x, "dot_product")[0], [-25.0, -50.0, 25.0, 0.0])
    np.testing.assert_allclose(D.pairwise_float32(q, x, "cosine")[0], [0.0, 0.0, 2.0, 1.0], atol=1e-7)


def test_conversions():
    sq = np.array([-1e-7, 0.0, 4.0, 9.0], np.float32)
    assert D.from_squared_l2(sq).tolist() == [0.0, 0.0, 2.0, 3.0]  # below zero (estimates) clamps to 0
    assert D.from_squared_l2(sq, "cosine").tolist() == [0.0, 0.0, 2.0, 4.5]  # 1 - cos = |q - x|^2 / 2 on unit rows
    assert D.from_squared_l2(sq).dtype == np.float32
    dots = np.array([1.0, 0.0, -1.0], np.float32)
    assert D.from_dots(dots, "cosine").tolist() == [0.0, 1.0, 2.0]
    assert D.from_dots(dots, "dot_product").tolist() == [-1.0, 0.0, 1.0]
    with pytest.raises(InvalidParameterError):
        D.from_dots(dots, "euclidean")
    with pytest.raises(InvalidParameterError):
        D.from_squared_l2(sq, "dot_product")
    got = D.cosine_from_dots(np.array([[2.0, 0.0]]), np.array([2.0]), np.array([1.0, 0.0]))
    assert got.dtype == np.float32 and got.tolist() == [[0.0, 1.0]]


def test_normalisations():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]], np.float32)
    out = D.normalize_rows(rows)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert out[1].tolist() == [0.0, 0.0]  # a zero row stays zero: no direction
    wide = D.normalize_rows_float64(np.array([[3e-30, 4e-30], [3e30, 4e30]], np.float32))
    assert wide.dtype == np.float32
    np.testing.assert_allclose(wide, [[0.6, 0.8], [0.6, 0.8]], rtol=1e-6)  # float64 norms: no under- or overflow


# ---- corners: zero rows, NaN, inf, unknown metrics ---------------------------------------------------------------
def test_a_zero_row_scores_one_under_cosine_without_warnings(data):
    q, x = data
    x = x.copy()
    x[3] = 0.0
    q0 = q.copy()
    q0[0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (D.pairwise_float32(q, x, "cosine")[:, 3] == 1.0).all()
        assert (D.pairwise_float64(q, x, "cosine")[:, 3] == 1.0).all()
        assert (D.pairwise_float32(q0, x, "cosine")[0] == 1.0).all()
        assert D.rows_to_rows_float32(q0[:1], x[:1], "cosine").tolist() == [1.0]
        assert D.rows_to_rows_float64(q0[:1], x[:1], "cosine").tolist() == [1.0]
        assert D.query_to_rows_unit(D.normalize_rows(q)[0], D.normalize_rows(x), "cosine")[3] == 1.0
    np.testing.assert_allclose(D.pairwise_float32(q0, x, "euclidean")[0], np.linalg.norm(x, axis=1), rtol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_nan_propagates_to_its_row_only(data, metric):
    q, x = data
    x = x.copy()
    x[2, 5] = np.nan
    for got in (D.pairwise_float32(q, x, metric), D.pairwise_float64(q, x, metric)):
        assert np.isnan(got[:, 2]).all()
        assert np.isfinite(np.delete(got, 2, axis=1)).all()
    assert np.isnan(D.rows_to_rows_float32(x[:3], x[:3], metric)[2])
    assert np.isnan(D.rows_to_rows_float64(x[:3], x[:3], metric)[2])
    assert np.isnan(D.query_to_rows_unit(q[0], x, metric)[2])


def test_inf_gives_inf_euclidean_and_nan_cosine(data):
    q, x = data
    x = x.copy()
    x[1, 0] = np.inf
    with np.errstate(invalid="ignore"):
        assert np.isposinf(D.pairwise_float32(q, x, "euclidean")[:, 1]).all()
        assert np.isnan(D.pairwise_float32(q, x, "cosine")[:, 1]).all()  # inf / inf
        assert np.isposinf(D.rows_to_rows_float64(q[:1], x[1:2], "euclidean")).all()


@pytest.mark.parametrize("kernel", [D.pairwise_float32, D.pairwise_float64, D.rows_to_rows_float32,
                                    D.rows_to_rows_float64, D.ranking_scores])
def test_an_unknown_metric_is_refused(data, kernel):
    q, x = data
    with pytest.raises(InvalidParameterError, match="unknown metric 'hamming'"):
        kernel(q, x[: len(q)], "hamming")
    with pytest.raises(InvalidParameterError):
        D.query_to_rows_unit(q[0], x, "hamming")


def test_one_definition_of_the_metrics():
    assert D.METRICS == ("cosine", "euclidean", "dot_product")
    assert types.METRICS is D.METRICS and types.check_metric is D.check_metric
    assert types.check_positive_int is validation.check_positive_int
    assert D.check_metric("euclidean") == "euclidean"
    for bad in ("Cosine", "hamming", None, 3):
        with pytest.raises(InvalidParameterError):
            D.check_metric(bad)


def test_check_positive_int():
    assert validation.check_positive_int("n", np.int64(3)) == 3
    assert validation.check_positive_int("n", 0, minimum=0) == 0
    for bad in (True, 2.0, "3", np.bool_(True), None):
        with pytest.raises(InvalidParameterError, match="n must be an integer"):
            validation.check_positive_int("n", bad)
    with pytest.raises(InvalidParameterError, match="n must be >= 1, got 0"):
        validation.check_positive_int("n", 0)
