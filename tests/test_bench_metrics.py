"""Harness metrics: recall with distance ties, percentiles, spreads, Pareto sets, operating points, ADR verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from ruvector_lab.bench import metrics, report, targets
from ruvector_lab.bench.timer import Stopwatch, summarize, time_repeats
from ruvector_lab.errors import InvalidParameterError


def test_recall_counts_exact_hits():
    gt = np.array([[0.1, 0.2, 0.3, 0.4]])
    run = np.array([[0.1, 0.2, 0.9, 1.0]])
    assert metrics.recall_at_k(gt, run, 4)[0] == pytest.approx(0.5)
    assert metrics.recall_at_k(gt, run, 2)[0] == pytest.approx(1.0)
    assert metrics.recall_at_k(gt, run, 1)[0] == pytest.approx(1.0)


def test_recall_tolerates_ties_at_the_boundary():
    # the k-th ground-truth distance is shared by several points; returning any of them is a hit
    gt = np.array([[0.1, 0.5, 0.5, 0.5]])
    run_other_tied_point = np.array([[0.1, 0.5]])
    assert metrics.recall_at_k(gt, run_other_tied_point, 2)[0] == 1.0
    # float noise below the tolerance still counts, a clearly farther point does not
    assert metrics.recall_at_k(gt, np.array([[0.1, 0.5 + 1e-7]]), 2)[0] == 1.0
    assert metrics.recall_at_k(gt, np.array([[0.1, 0.51]]), 2)[0] == 0.5


def test_recall_missing_results_are_misses_and_capped():
    gt = np.zeros((1, 3))
    assert metrics.recall_at_k(gt, np.array([[0.0, np.inf, np.inf]]), 3)[0] == pytest.approx(1 / 3)
    assert metrics.recall_at_k(gt, np.zeros((1, 5)), 3)[0] == 1.0


def test_recall_rejects_bad_shapes():
    with pytest.raises(InvalidParameterError):
        metrics.recall_at_k(np.zeros((2, 3)), np.zeros((2, 3)), 4)
    with pytest.raises(InvalidParameterError):
        metrics.recall_at_k(np.zeros((2, 3)), np.zeros((3, 3)), 2)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_true_distances_match_numpy_and_mark_missing(metric):
    rng = np.random.default_rng(0)
    train = rng.standard_normal((20, 5)).astype(np.float32)
    queries = rng.standard_normal((3, 5)).astype(np.float32)
    ids = np.array([[0, 1], [2, -1], [19, 3]])
    out = metrics.true_distances(queries, train, ids, metric)
    q, v = queries[0].astype(np.float64), train[1].astype(np.float64)
    expected = {"euclidean": np.linalg.norm(q - v), "dot_product": -(q @ v),
                "cosine": 1 - q @ v / np.linalg.norm(q) / np.linalg.norm(v)}[metric]
    assert out[0, 1] == pytest.approx(expected)
    assert np.isinf(out[1, 1])
    with pytest.raises(InvalidParameterError):
        metrics.true_distances(queries, train, ids, "hamming")


def test_mean_recall_averages_queries():
    gt = np.array([[0.1, 0.2], [0.1, 0.2]])
    run = np.array([[0.1, 0.2], [0.9, 0.9]])
    assert metrics.mean_recall(gt, run, 2) == pytest.approx(0.5)


def test_percentiles_and_summarize_agree():
    samples = np.arange(1, 101) / 1000.0  # 1..100 ms
    p = metrics.percentiles_ms(samples)
    assert p["p50"] == pytest.approx(50.5)
    assert p["p99"] == pytest.approx(99.01)
    s = summarize(samples)
    assert s.p95_ms == pytest.approx(p["p95"]) and s.count == 100
    with pytest.raises(InvalidParameterError):
        metrics.percentiles_ms([])


def test_spread_median_and_relative_range():
    s = metrics.spread([10.0, 12.0, 8.0])
    assert (s.median, s.min, s.max) == (10.0, 8.0, 12.0)
    assert s.rel_spread == pytest.approx(0.4)
    assert s.to_dict()["values"] == [10.0, 12.0, 8.0]
    with pytest.raises(InvalidParameterError):
        metrics.spread([])


def test_pareto_frontier_drops_dominated_points():
    pts = [{"recall": 0.5, "qps": 1000, "id": "a"}, {"recall": 0.7, "qps": 900, "id": "b"},
           {"recall": 0.6, "qps": 800, "id": "dominated"}, {"recall": 0.99, "qps": 100, "id": "c"},
           {"recall": 0.4, "qps": 500, "id": "dominated2"}]
    front = metrics.pareto_frontier(pts)
    assert [p["id"] for p in front] == ["a", "b", "c"]


def test_operating_points_pick_the_smallest_ef_reaching_each_target():
    runs = [{"ef_search": 10, "recall_at_10": 0.85, "qps": 9000}, {"ef_search": 20, "recall_at_10": 0.93, "qps": 6000},
            {"ef_search": 40, "recall_at_10": 0.97, "qps": 4000}, {"ef_search": 80, "recall_at_10": 0.985, "qps": 2500}]
    ops = metrics.operating_points(runs)
    assert ops["0.90"]["ef_search"] == 20
    assert ops["0.95"]["ef_search"] == 40
    assert ops["0.99"] is None


def test_verdicts_follow_the_adr_targets():
    assert targets.TARGETS["hnsw_search_k10"].max_ms == 5.0
    assert targets.verdict("hnsw_search_k10", 4.9) == "pass"
    assert targets.verdict("hnsw_search_k10", 5.0) == "fail"
    assert targets.verdict("embed_batch_32", 99.0) == "pass"
    assert targets.verdict("hnsw_insert", 3.0) == "no target"
    assert targets.verdict("quantize", None) == "not available"
    with pytest.raises(InvalidParameterError):
        targets.verdict("teleport", 1.0)


def test_time_repeats_and_stopwatch_measure_elapsed_time():
    calls = []
    times = time_repeats(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(times) == 4 and len(calls) == 6 and (times >= 0).all()
    with pytest.raises(ValueError):
        time_repeats(lambda: None, repeats=0)
    with Stopwatch() as sw:
        sum(range(1000))
    assert sw.seconds > 0


def test_build_labels_name_exact_and_quantized_flat_scans():
    assert report.build_label("M16-efc100-none", "hnsw") == "M16-efc100-none"
    assert report.build_label("M16-efc100-none", "flat") == "exact"
    assert "flat code scan" in report.build_label("M16-efc100-scalar-r40", "flat")
