"""Per-query results: the HDF5 file (round trip, atomic write, refusals), strict vs tie-tolerant recall, recall
distributions, per-query difficulty (LID, relative contrast) and recall per difficulty bin."""

from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest

from ruvector_lab.bench import perquery
from ruvector_lab.bench.groundtruth import knn_ground_truth
from ruvector_lab.bench.hdf5 import Dataset, write_hdf5
from ruvector_lab.bench.metrics import recall_at_k, true_distances
from ruvector_lab.errors import DatasetError, InvalidParameterError


def _run_arrays(m: int = 30, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 10_000, size=(m, k), dtype=np.int64)
    ids[0, -1] = -1
    dist = np.sort(rng.random((m, k)), axis=1)
    dist[0, -1] = np.inf
    times = rng.random(m) * 1e-3
    return ids, dist, times


ATTRS = {"backend": "numpy", "ef_search": 50, "recall_target": 0.95, "exact": True,
         "build": {"m": 16, "ef_construction": 100, "quantization": "none"}, "threads": [1, 2, 4], "note": None}


# --- the file -------------------------------------------------------------------------------------------------


def test_round_trip_keeps_arrays_and_attributes(tmp_path):
    ids, dist, times = _run_arrays()
    path = perquery.write_query_results(tmp_path / "run.hdf5", ids, dist, times, ATTRS)
    back = perquery.read_query_results(path)
    np.testing.assert_array_equal(back.ids, ids)
    assert back.ids.dtype == np.int64
    np.testing.assert_array_equal(back.distances, dist)
    assert back.distances.dtype == np.float64
    np.testing.assert_array_equal(back.times, times)
    assert back.attrs == ATTRS
    assert (back.n_queries, back.k) == ids.shape
    with h5py.File(path, "r") as f:  # the layout other tools read: named datasets, schema tag, JSON run attribute
        assert f.attrs["schema"] == perquery.SCHEMA_PERQUERY
        assert set(f) == {"neighbors", "distances", "times"}
        assert json.loads(f.attrs["run"])["build"]["m"] == 16
        assert f.attrs["ef_search"] == 50


def test_round_trip_without_times_and_float32_distances(tmp_path):
    ids, dist, _ = _run_arrays(m=5, k=3)
    path = perquery.write_query_results(tmp_path / "sub" / "run.hdf5", ids, dist.astype(np.float32), None, {})
    back = perquery.read_query_results(path)
    assert back.times is None
    assert back.distances.dtype == np.float32
    np.testing.assert_array_equal(back.distances, dist.astype(np.float32))
    assert back.attrs == {}


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    ids, dist, times = _run_arrays()
    target = tmp_path / "run.hdf5"
    perquery.write_query_results(target, ids, dist, times, ATTRS)
    assert [p.name for p in tmp_path.iterdir()] == ["run.hdf5"]
    # a second write replaces the file in one step, still without leftovers
    perquery.write_query_results(target, ids[:3], dist[:3], times[:3], {"backend": "faiss"})
    assert [p.name for p in tmp_path.iterdir()] == ["run.hdf5"]
    assert perquery.read_query_results(target).n_queries == 3


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    ids, dist, times = _run_arrays()
    target = tmp_path / "run.hdf5"
    perquery.write_query_results(target, ids, dist, times, ATTRS)
    before = target.read_bytes()
    with pytest.raises(InvalidParameterError):
        perquery.write_query_results(target, ids, dist, times, {"callback": object()})
    with pytest.raises(InvalidParameterError):
        perquery.write_query_results(target, ids, dist[:, :5], times, {})
    with pytest.raises(InvalidParameterError):
        perquery.write_query_results(target, ids, dist, times, {"schema": "mine"})
    assert [p.name for p in tmp_path.iterdir()] == ["run.hdf5"]
    assert target.read_bytes() == before


def test_missing_and_non_hdf5_files_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="no per-query result file"):
        perquery.read_query_results(tmp_path / "absent.hdf5")
    text = tmp_path / "notes.hdf5"
    text.write_text("recall was fine\n")
    with pytest.raises(DatasetError, match=r"notes\.hdf5"):
        perquery.read_query_results(text)


def test_truncated_file_is_refused(tmp_path):
    ids, dist, times = _run_arrays(m=200, k=50)
    path = perquery.write_query_results(tmp_path / "run.hdf5", ids, dist, times, ATTRS)
    data = path.read_bytes()
    for keep in (len(data) // 2, 1000, 100):
        path.write_bytes(data[:keep])
        with pytest.raises(DatasetError, match=r"run\.hdf5"):
            perquery.read_query_results(path)


def test_wrong_or_missing_schema_tag_is_refused(tmp_path):
    ids, dist, times = _run_arrays()
    path = perquery.write_query_results(tmp_path / "run.hdf5", ids, dist, times, ATTRS)
    with h5py.File(path, "a") as f:
        f.attrs["schema"] = "ruvector-lab/perquery@99"
    with pytest.raises(DatasetError, match="perquery@99"):
        perquery.read_query_results(path)
    # an ann-benchmarks dataset file is HDF5 with neighbors/distances too, but not a run
    rng = np.random.default_rng(1)
    ds = Dataset("toy", rng.random((20, 4), dtype=np.float32), rng.random((3, 4), dtype=np.float32), "euclidean",
                 np.zeros((3, 2), np.int32), np.zeros((3, 2), np.float32))
    with pytest.raises(DatasetError, match="no schema tag"):
        perquery.read_query_results(write_hdf5(tmp_path / "toy.hdf5", ds))


def test_mismatched_shapes_and_bad_run_json_are_refused(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = perquery.SCHEMA_PERQUERY
        f.create_dataset("neighbors", data=np.zeros((5, 10), np.int64))
        f.create_dataset("distances", data=np.zeros((5, 9)))
    with pytest.raises(DatasetError, match="do not match"):
        perquery.read_query_results(path)
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = perquery.SCHEMA_PERQUERY
        f.create_dataset("neighbors", data=np.zeros((5, 10), np.int64))
        f.create_dataset("distances", data=np.zeros((5, 10)))
        f.create_dataset("times", data=np.zeros(4))
    with pytest.raises(DatasetError, match="times"):
        perquery.read_query_results(path)
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = perquery.SCHEMA_PERQUERY
        f.attrs["run"] = "{not json"
        f.create_dataset("neighbors", data=np.zeros((5, 10), np.int64))
        f.create_dataset("distances", data=np.zeros((5, 10)))
    with pytest.raises(DatasetError, match="JSON"):
        perquery.read_query_results(path)
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = perquery.SCHEMA_PERQUERY
        f.create_dataset("neighbors", data=np.zeros((5, 10), np.int64))
    with pytest.raises(DatasetError, match="distances"):
        perquery.read_query_results(path)


# --- recall ---------------------------------------------------------------------------------------------------


def test_strict_and_tolerant_recall_differ_exactly_on_a_distance_tie():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((6, 8)).astype(np.float32)
    k = 10
    ids0, _ = knn_ground_truth(queries, base, k=k, metric="euclidean")
    # duplicate query 0's k-th neighbour: now two points share the k-th distance
    tied = int(ids0[0, k - 1])
    train = np.vstack([base, base[tied : tied + 1]])
    twin = len(base)
    gt_ids, gt_d = knn_ground_truth(queries, train, k=k + 5, metric="euclidean")
    assert gt_d[0, k - 1] == pytest.approx(gt_d[0, k], rel=1e-6)  # the tie is real
    assert {int(gt_ids[0, k - 1]), int(gt_ids[0, k])} == {tied, twin}
    run_ids = gt_ids[:, :k].astype(np.int64).copy()
    run_ids[0, k - 1] = int(gt_ids[0, k])  # the other tied point, which the ground truth ranked k+1-th
    run_d = true_distances(queries, train, run_ids, "euclidean")

    strict = perquery.strict_recall(gt_ids, run_ids, k)
    tolerant = recall_at_k(gt_d, run_d, k)
    assert tolerant[0] == 1.0
    assert strict[0] == pytest.approx(0.9)
    np.testing.assert_array_equal(strict[1:], 1.0)
    np.testing.assert_array_equal(tolerant[1:], 1.0)

    summary = perquery.summarize_run(gt_ids, gt_d, run_ids, run_d, k, None)
    assert summary["recall_tolerant_mean"] == 1.0
    assert summary["recall_strict_mean"] == pytest.approx(1 - 0.1 / len(queries))


def test_strict_recall_ignores_missing_and_repeated_ids():
    gt = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    run = np.array([[0, 0, 0, -1], [7, 6, 9, 8]])
    np.testing.assert_allclose(perquery.strict_recall(gt, run, 4), [0.25, 0.5])
    np.testing.assert_allclose(perquery.strict_recall(gt, run, 2), [0.5, 0.0])
    with pytest.raises(InvalidParameterError):
        perquery.strict_recall(gt, run[:, :2], 3)


def test_recall_distribution_on_a_known_vector():
    r = np.arange(101) / 100.0  # 0.00, 0.01, ..., 1.00: linear percentiles land on the values themselves
    dist = perquery.recall_distribution(r)
    assert dist["n"] == 101
    assert dist["mean"] == pytest.approx(0.5)
    assert dist["min"] == 0.0
    assert dist["p1"] == pytest.approx(0.01)
    assert dist["p5"] == pytest.approx(0.05)
    assert dist["p50"] == pytest.approx(0.5)
    assert dist["share_below_0.5"] == pytest.approx(50 / 101)
    # interpolation between order statistics: 4 values, p50 is the mean of the middle two
    assert perquery.recall_distribution(np.array([0.0, 0.2, 0.6, 1.0]))["p50"] == pytest.approx(0.4)
    with pytest.raises(InvalidParameterError):
        perquery.recall_distribution(np.array([]))


# --- difficulty -----------------------------------------------------------------------------------------------


def _subspace_gt(d: int, n: int = 20_000, width: int = 32, m: int = 200, k: int = 100, seed: int = 0):
    """Gaussian points in a random d-dimensional subspace of R^width; exact ground truth of m more such points."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((width, d)))
    points = (rng.standard_normal((n + m, d)) @ basis.T).astype(np.float32)
    _, gt_d = knn_ground_truth(points[n:], points[:n], k=k, metric="euclidean")
    return gt_d


def test_lid_recovers_the_intrinsic_dimension_and_grows_with_it():
    lid4 = perquery.lid_mle(_subspace_gt(4))
    lid8 = perquery.lid_mle(_subspace_gt(8))
    assert not np.isnan(lid4).any()
    assert 2.5 < np.median(lid4) < 6.0
    assert np.median(lid8) > np.median(lid4) + 2.0
    # the default neighbourhood is min(100, K)
    np.testing.assert_allclose(perquery.lid_mle(_subspace_gt(4)[:, :50]), perquery.lid_mle(_subspace_gt(4), k=50))


def test_lid_skips_duplicates_and_refuses_negative_distances():
    rng = np.random.default_rng(5)
    d = np.sort(rng.random((4, 20)) + 0.1, axis=1)
    with_dupes = d.copy()
    with_dupes[1, :3] = 0.0  # three exact duplicates of the query
    with_dupes[1, 3] = 1e-9 * d[1, -1]  # a "duplicate" left at float-rounding distance
    with_dupes[2, :] = 0.0  # nothing but duplicates
    with_dupes[3, :18] = 0.0  # only one positive distance below the k-th
    lid = perquery.lid_mle(with_dupes)
    ref = perquery.lid_mle(d)
    assert lid[0] == pytest.approx(ref[0])
    rest = d[1, 4:]
    assert lid[1] == pytest.approx(-(len(rest) - 1) / np.log(rest[:-1] / rest[-1]).sum())
    assert np.isnan(lid[2]) and np.isnan(lid[3])
    # dot_product "distances" can be negative: LID is NaN, by metric and by value
    assert np.isnan(perquery.lid_mle(d, metric="dot_product")).all()
    assert np.isnan(perquery.lid_mle(d - 0.5)[0])
    with pytest.raises(InvalidParameterError):
        perquery.lid_mle(d, k=21)


def _clusters(seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, 32)) * 3.0
    train = (centers[rng.integers(0, 20, 4000)] + 0.1 * rng.standard_normal((4000, 32))).astype(np.float32)
    near = (centers[rng.integers(0, 20, 100)] + 0.1 * rng.standard_normal((100, 32))).astype(np.float32)
    lo, hi = train.min(axis=0), train.max(axis=0)
    noise = rng.uniform(lo, hi, size=(100, 32)).astype(np.float32)
    return train, near, noise


def test_relative_contrast_is_higher_near_clusters_than_for_noise():
    train, near, noise = _clusters()
    queries = np.vstack([near, noise])
    _, gt_d = knn_ground_truth(queries, train, k=20, metric="euclidean")
    rc = perquery.relative_contrast(queries, train, gt_d, "euclidean", k=10, sample=500, seed=1)
    assert not np.isnan(rc).any()
    assert np.median(rc[:100]) > 3 * np.median(rc[100:])
    assert np.all(rc[100:] > 0.9)  # a far-away query: its k-th neighbour is about as far as the average point
    # seeded: same seed, same values; blocks do not change the result
    again = perquery.relative_contrast(queries, train, gt_d, "euclidean", k=10, sample=500, seed=1, block=7)
    np.testing.assert_allclose(rc, again)
    # a zero k-th distance (the query sits on 10 duplicates) is NaN, not inf
    zero = gt_d.astype(np.float64).copy()
    zero[0, :10] = 0.0
    assert np.isnan(perquery.relative_contrast(queries, train, zero, "euclidean", k=10)[0])


def test_query_difficulty_per_metric():
    train, near, noise = _clusters(seed=2)
    queries = np.vstack([near[:20], noise[:20]])
    for metric in ("euclidean", "cosine"):
        _, gt_d = knn_ground_truth(queries, train, k=30, metric=metric)
        diff = perquery.query_difficulty(queries, train, gt_d, metric, rc_sample=300)
        assert set(diff) == {"lid", "rc"}
        assert diff["lid"].shape == diff["rc"].shape == (40,)
        assert np.isfinite(diff["lid"]).all() and np.isfinite(diff["rc"]).all()
    _, gt_d = knn_ground_truth(queries, train, k=30, metric="dot_product")
    diff = perquery.query_difficulty(queries, train, gt_d, "dot_product", rc_sample=300)
    assert np.isnan(diff["lid"]).all()


def test_recall_by_difficulty_partitions_the_queries():
    rng = np.random.default_rng(7)
    recall = rng.random(103)
    difficulty = rng.standard_normal(103)
    difficulty[[3, 50, 99]] = np.nan
    bins = perquery.recall_by_difficulty(recall, difficulty)
    assert len(bins) == 5
    assert sum(b["n_queries"] for b in bins) == 100
    assert all(b["n_nan_excluded"] == 3 for b in bins)
    assert [b["bin"] for b in bins] == list(range(5))
    for b, nxt in itertools.pairwise(bins):
        assert b["difficulty_min"] <= b["difficulty_max"] <= nxt["difficulty_min"]
    assert max(b["n_queries"] for b in bins) - min(b["n_queries"] for b in bins) <= 1
    # known case: recall falls as difficulty rises
    d = np.arange(10, dtype=np.float64)
    known = perquery.recall_by_difficulty(1.0 - d / 10, d, n_bins=5)
    assert [b["mean_recall"] for b in known] == pytest.approx([0.95, 0.75, 0.55, 0.35, 0.15])
    assert [(b["difficulty_min"], b["difficulty_max"]) for b in known] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert known[0]["p5_recall"] == pytest.approx(0.905)
    assert perquery.recall_by_difficulty(recall[:3], difficulty[:3], n_bins=5)[-1]["bin"] == 2
    assert perquery.recall_by_difficulty(recall[:2], np.full(2, np.nan)) == []


def test_summarize_run_is_json_and_holds_the_tables(tmp_path):
    train, near, noise = _clusters(seed=4)
    queries = np.vstack([near[:50], noise[:50]])
    k = 10
    gt_ids, gt_d = knn_ground_truth(queries, train, k=100, metric="euclidean")
    # a deliberately poor "index": the true top-k with some answers replaced by random points
    rng = np.random.default_rng(9)
    run_ids = gt_ids[:, :k].astype(np.int64).copy()
    wrong = rng.random(run_ids.shape) < 0.3
    run_ids[wrong] = rng.integers(0, len(train), wrong.sum())
    run_d = true_distances(queries, train, run_ids, "euclidean")
    times = rng.random(len(queries)) * 1e-3
    path = perquery.write_query_results(tmp_path / "q.hdf5", run_ids, run_d, times, {"k": k})
    stored = perquery.read_query_results(path)

    diff = perquery.query_difficulty(queries, train, gt_d, "euclidean")
    summary = perquery.summarize_run(gt_ids, gt_d, stored.ids, stored.distances, k, diff)
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    assert set(summary) == {"k", "n_queries", "recall_strict_mean", "recall_tolerant_mean", "recall_tolerant",
                            "recall_strict", "percentile_method", "difficulty"}
    assert summary["n_queries"] == 100
    assert summary["recall_tolerant_mean"] == pytest.approx(recall_at_k(gt_d, run_d, k).mean())
    assert summary["recall_strict"]["mean"] == summary["recall_strict_mean"]
    assert summary["recall_strict_mean"] <= summary["recall_tolerant_mean"] < 0.9
    assert set(summary["recall_tolerant"]) == {"n", "mean", "min", "p1", "p5", "p50", "share_below_0.5"}
    assert summary["difficulty"]["lid"]["direction"] == "higher is harder"
    assert summary["difficulty"]["rc"]["direction"] == "lower is harder"
    assert sum(b["n_queries"] for b in summary["difficulty"]["rc"]["bins"]) == 100
    assert summary["difficulty"]["rc"]["n_nan"] == 0
    with pytest.raises(InvalidParameterError):
        perquery.summarize_run(gt_ids, gt_d, run_ids, run_d, k, {"lid": diff["lid"][:5]})
