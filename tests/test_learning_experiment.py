"""The A-then-B experiment on a small synthetic size, and the task helpers it is built from."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ruvector_lab.errors import DimensionMismatchError, InvalidParameterError, InvalidVectorError
from ruvector_lab.learning import LoRAConfig
from ruvector_lab.learning.experiment import (
    ExperimentConfig,
    main,
    pairs_experiment,
    run_experiment,
    synthetic_experiment,
    synthetic_tasks,
)
from ruvector_lab.learning.tasks import SyntheticSpec, recall_at_k, synthetic_pairs, task_from_pairs

SMALL = SyntheticSpec(dimensions=64, clusters=20, per_cluster=40)


@pytest.fixture(scope="module")
def small_result():
    config = ExperimentConfig(lora=LoRAConfig(rank=8, epochs=15), sweep=(0.0, 300.0, 3000.0))
    return synthetic_experiment(SMALL, config)


def test_experiment_meets_the_issue_goals_on_a_small_size(small_result):
    r = small_result
    base_a, base_b = r.recall["base"]
    assert r.recall["after_a"][0] >= base_a + 0.05  # LoRA lifts the trained task by >= 5 points
    assert r.recall["after_b_plain"][1] >= base_b + 0.05
    assert r.retention_ewc >= 0.8  # with EWC, A keeps >= 80% of its gain after B
    assert r.retention_plain <= r.retention_ewc - 0.2  # without, clearly less
    assert all(r.goals.values()), r.goals


def test_experiment_result_is_consistent(small_result):
    r = small_result
    assert set(r.recall) == {"base", "after_a", "after_b_plain", "after_b_ewc", "joint"}
    assert all(0.0 <= v <= 1.0 for pair in r.recall.values() for v in pair)
    assert r.lift_a == pytest.approx(r.recall["after_a"][0] - r.recall["base"][0])
    gain = r.recall["after_a"][0] - r.recall["base"][0]
    assert r.retention_ewc == pytest.approx((r.recall["after_b_ewc"][0] - r.recall["base"][0]) / gain)
    assert [lam for lam, _, _ in r.sweep] == [0.0, 300.0, 3000.0]
    # lambda 0 is plain fine-tuning: the same numbers as the no-EWC stage
    assert r.sweep[0][1:] == pytest.approx(r.recall["after_b_plain"])
    # a stronger lambda never keeps less of A here (the trade-off the sweep shows)
    assert r.sweep[2][1] >= r.sweep[1][1] - 0.02
    assert r.dimensions == 64 and r.rank == 8 and r.k == 10
    text = r.table()
    assert "after_b_ewc" in text and "goals:" in text
    assert json.loads(json.dumps(r.to_dict()))["recall"]["base"] == list(r.recall["base"])


def test_run_experiment_takes_tasks_from_any_pairs_and_checks_dimensions():
    (qa, ta), (qb, tb) = synthetic_pairs(SyntheticSpec(dimensions=32, clusters=5, per_cluster=20, subspace=4,
                                                       overlap=4))
    a = task_from_pairs("A", qa, ta)
    b = task_from_pairs("B", qb[:, :16], tb[:, :16])
    with pytest.raises(DimensionMismatchError):
        run_experiment(a, b)
    with pytest.raises(InvalidParameterError):
        ExperimentConfig(lambda_=-1.0)
    with pytest.raises(InvalidParameterError):
        ExperimentConfig(sweep=(float("nan"),))


def test_pairs_experiment_is_the_plug_for_other_data():
    small = SyntheticSpec(dimensions=32, clusters=10, per_cluster=30, seed=5)
    config = ExperimentConfig(lora=LoRAConfig(rank=8, epochs=8), sweep=(0.0,))
    via_pairs = pairs_experiment(*synthetic_pairs(small), config, seed=5)
    via_synthetic = synthetic_experiment(small, config)
    assert via_pairs.recall == via_synthetic.recall


def test_task_from_pairs_holds_out_whole_targets():
    rng = np.random.default_rng(0)
    targets = rng.standard_normal((30, 8)).astype(np.float32)
    queries = np.repeat(targets, 2, axis=0) + 0.01 * rng.standard_normal((60, 8)).astype(np.float32)
    task = task_from_pairs("t", queries, np.repeat(targets, 2, axis=0), test_fraction=0.3, seed=1)
    assert task.corpus.shape == (30, 8) and task.dimensions == 8
    assert task.test_queries.shape[0] == 18 and task.train_queries.shape[0] == 42  # 9 of 30 targets held out
    train_rows = {tuple(r) for r in task.train_targets}
    assert all(tuple(task.corpus[i]) not in train_rows for i in task.test_answers)
    assert len(task.trajectory()) == 42
    with pytest.raises(DimensionMismatchError):
        task_from_pairs("t", queries, targets)
    with pytest.raises(InvalidParameterError):
        task_from_pairs("t", queries, np.repeat(targets, 2, axis=0), test_fraction=1.0)
    with pytest.raises(InvalidParameterError):
        task_from_pairs("t", queries[:2], np.ones((2, 8)))
    with pytest.raises(InvalidVectorError):
        task_from_pairs("t", np.zeros((2, 8)), targets[:2])


def test_recall_at_k_counts_the_answer_rank():
    corpus = np.eye(4, dtype=np.float32)
    queries = np.array([[1.0, 0.2, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 0.1, 1.0]])
    answers = np.array([0, 0, 2])  # ranks 0, 1, 1
    assert recall_at_k(queries, answers, corpus, k=1) == pytest.approx(1 / 3)
    assert recall_at_k(queries, answers, corpus, k=2) == 1.0
    with pytest.raises(InvalidParameterError):
        recall_at_k(queries, answers, corpus, k=0)


def test_synthetic_tasks_are_hard_for_the_base_embeddings_and_seeded():
    a, b = synthetic_tasks(SMALL)
    base_a = recall_at_k(a.test_queries, a.test_answers, a.corpus)
    assert base_a < 0.7  # the task-specific rotation hurts retrieval ...
    assert recall_at_k(b.test_queries, b.test_answers, b.corpus) < 0.7
    assert recall_at_k(a.corpus[a.test_answers], a.test_answers, a.corpus) == 1.0  # ... the targets themselves don't
    a2, _ = synthetic_tasks(SMALL)
    np.testing.assert_array_equal(a.test_queries, a2.test_queries)
    for bad in [dict(overlap=9), dict(dimensions=10, subspace=8, overlap=0), dict(clusters=0)]:
        with pytest.raises(InvalidParameterError):
            SyntheticSpec(**bad)


def test_main_writes_json_and_returns_goal_status(tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(["--dimensions", "32", "--clusters", "10", "--per-cluster", "30", "--epochs", "10",
                 "--json", str(out)])
    data = json.loads(out.read_text())
    assert code == (0 if all(data["goals"].values()) else 1)
    assert set(data["recall"]) >= {"base", "after_a", "after_b_plain", "after_b_ewc"}
    assert not math.isnan(data["lift_a"])
    assert "recall@10" in capsys.readouterr().out
