"""EWC: the Fisher diagonal, the penalty and its gradient, EWC++ merging, consolidation, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from ruvector_lab.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    InvalidParameterError,
    NoTrainingDataError,
)
from ruvector_lab.learning import (
    EWCConfig,
    FisherDiagonal,
    LoRAConfig,
    LoRATrainer,
    LoRAWeights,
    Trajectory,
    apply,
    apply_ewc,
    ewc_penalty,
    fisher_diagonal,
    load_fisher,
    load_weights,
    merge_fisher,
    save_fisher,
    save_weights,
    train_lora,
)
from ruvector_lab.learning.ewc import ewc_gradient, penalty_arrays
from ruvector_lab.learning.objective import loss_and_gradients


def _weights(d=10, r=2, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return LoRAWeights(rng.standard_normal((d, r)), 0.3 * rng.standard_normal((r, d)), scale)


def _traj(n=20, d=10, seed=1):
    rng = np.random.default_rng(seed)
    return Trajectory.from_arrays(rng.standard_normal((n, d)), rng.standard_normal((n, d)), rng.uniform(0.5, 1.5, n))


def test_fisher_is_the_mean_of_squared_per_sample_gradients():
    w, traj = _weights(), _traj(n=13)
    cfg = LoRAConfig(rank=2, batch_size=5, temperature=0.3)
    fisher = fisher_diagonal(w, traj, cfg)
    q = np.stack([s.query for s in traj]).astype(np.float64)
    t = np.stack([s.target for s in traj]).astype(np.float64)
    r = np.array([s.reward for s in traj])
    down, up = w.down.astype(np.float64), w.up.astype(np.float64)
    acc_down, acc_up = np.zeros_like(down), np.zeros_like(up)
    for start in range(0, 13, 5):  # the same in-order batches: 5, 5 and 3 steps
        sl = slice(start, start + 5)
        qb, tb, rb = q[sl], t[sl], r[sl]
        for i in range(len(qb)):
            only = np.zeros(len(qb))
            only[i] = rb[i]
            g = loss_and_gradients(down, up, w.scale, qb, tb, only, 0.3)  # = grad of sample i's loss / r_i
            acc_down += (g.down * rb[i]) ** 2
            acc_up += (g.up * rb[i]) ** 2
    np.testing.assert_allclose(fisher.down, acc_down / 13, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(fisher.up, acc_up / 13, rtol=1e-5, atol=1e-10)
    assert fisher.n_samples == 13 and fisher.shape == (10, 2) and fisher.total() > 0
    assert (fisher.down >= 0).all() and (fisher.up >= 0).all()


def test_fisher_bad_input():
    w = _weights()
    with pytest.raises(NoTrainingDataError):
        fisher_diagonal(w, [])
    with pytest.raises(DimensionMismatchError):
        fisher_diagonal(w, _traj(d=6))
    with pytest.raises(DimensionMismatchError):
        FisherDiagonal(np.ones((10, 2)), np.ones((3, 10)))
    with pytest.raises(InvalidParameterError):
        FisherDiagonal(-np.ones((10, 2)), np.ones((2, 10)))
    with pytest.raises(InvalidParameterError):
        FisherDiagonal(np.full((10, 2), np.nan), np.ones((2, 10)))


def test_penalty_formula_and_gradient():
    anchor = _weights(seed=0)
    moved = _weights(seed=1)
    rng = np.random.default_rng(2)
    fisher = FisherDiagonal(rng.uniform(0, 1, (10, 2)), rng.uniform(0, 1, (2, 10)), 5)
    ewc = EWCConfig(250.0, fisher, anchor)
    expected = 125.0 * (np.sum(fisher.down * (moved.down - anchor.down) ** 2)
                        + np.sum(fisher.up * (moved.up - anchor.up) ** 2))
    assert ewc_penalty(moved, ewc) == pytest.approx(expected, rel=1e-5)
    assert ewc_penalty((moved.down, moved.up), ewc) == pytest.approx(expected, rel=1e-5)
    assert ewc_penalty(anchor, ewc) == 0.0
    down, up = moved.down.astype(np.float64), moved.up.astype(np.float64)
    g_down, g_up = ewc_gradient(down, up, ewc)
    eps = 1e-6
    for idx in [(0, 0), (3, 1), (9, 0)]:
        a, b = down.copy(), down.copy()
        a[idx] += eps
        b[idx] -= eps
        num = (penalty_arrays(a, up, ewc) - penalty_arrays(b, up, ewc)) / (2 * eps)
        assert num == pytest.approx(g_down[idx], rel=1e-5, abs=1e-7)
    for idx in [(0, 0), (1, 7)]:
        a, b = up.copy(), up.copy()
        a[idx] += eps
        b[idx] -= eps
        num = (penalty_arrays(down, a, ewc) - penalty_arrays(down, b, ewc)) / (2 * eps)
        assert num == pytest.approx(g_up[idx], rel=1e-5, abs=1e-7)
    with pytest.raises(DimensionMismatchError):
        ewc_penalty(_weights(r=3), ewc)


def test_ewc_config_validation():
    w = _weights()
    fisher = FisherDiagonal(np.ones((10, 2)), np.ones((2, 10)), 1)
    with pytest.raises(InvalidParameterError):
        EWCConfig(-1.0, fisher, w)
    with pytest.raises(InvalidParameterError):
        EWCConfig(float("inf"), fisher, w)
    with pytest.raises(InvalidParameterError):
        EWCConfig(1.0, "fisher", w)
    with pytest.raises(DimensionMismatchError):
        EWCConfig(1.0, fisher, _weights(r=3))
    ewc = EWCConfig(1.0, fisher, w)
    with pytest.raises(DimensionMismatchError):
        LoRATrainer(10, LoRAConfig(rank=3), ewc=ewc)


def test_merge_fisher_is_ewc_plus_plus():
    old = FisherDiagonal(np.full((4, 1), 2.0), np.full((1, 4), 4.0), 10)
    new = FisherDiagonal(np.full((4, 1), 1.0), np.zeros((1, 4)), 6)
    merged = merge_fisher(old, new, gamma=0.75)
    np.testing.assert_allclose(merged.down, 0.75 * 2 + 0.25 * 1)
    np.testing.assert_allclose(merged.up, 3.0)
    assert merged.n_samples == 16
    for gamma in (-0.1, 1.5, True):
        with pytest.raises(InvalidParameterError):
            merge_fisher(old, new, gamma)
    with pytest.raises(DimensionMismatchError):
        merge_fisher(old, FisherDiagonal(np.ones((5, 1)), np.ones((1, 5))))


def test_apply_ewc_consolidates_without_changing_outputs_and_merges_online():
    w = _weights()
    f1 = FisherDiagonal(np.full((10, 2), 1.0), np.full((2, 10), 1.0), 3)
    c1 = apply_ewc(w, f1, 500.0)
    x = np.random.default_rng(0).standard_normal((3, 10))
    np.testing.assert_array_equal(apply(c1, x), apply(w, x))
    assert c1.consolidation.lambda_ == 500.0 and c1.consolidation.fisher is f1
    np.testing.assert_array_equal(c1.consolidation.anchor.up, w.up)
    assert c1.consolidation.anchor.consolidation is None
    moved = LoRAWeights(w.down + 1.0, w.up, w.scale, consolidation=c1.consolidation)
    f2 = FisherDiagonal(np.full((10, 2), 3.0), np.zeros((2, 10)), 4)
    c2 = apply_ewc(moved, f2, 700.0, gamma=0.5)
    np.testing.assert_allclose(c2.consolidation.fisher.down, 2.0)  # 0.5 * 1 + 0.5 * 3
    np.testing.assert_allclose(c2.consolidation.fisher.up, 0.5)
    np.testing.assert_array_equal(c2.consolidation.anchor.down, moved.down)  # the anchor moves on
    assert c2.consolidation.lambda_ == 700.0
    with pytest.raises(InvalidParameterError):
        apply_ewc(w, "fisher", 1.0)
    with pytest.raises(InvalidParameterError):
        apply_ewc(w, f1, -5.0)


def test_ewc_holds_important_parameters_while_training_on_a_new_task():
    rng = np.random.default_rng(3)
    d = 12
    traj_a = Trajectory.from_arrays(rng.standard_normal((64, d)), rng.standard_normal((64, d)))
    traj_b = Trajectory.from_arrays(rng.standard_normal((64, d)), rng.standard_normal((64, d)))
    cfg = LoRAConfig(rank=2, epochs=10, learning_rate=1e-2, seed=0)
    w_a = train_lora(traj_a, cfg)
    fisher = fisher_diagonal(w_a, traj_a, cfg)
    ewc = EWCConfig(1e4, fisher, w_a)
    plain = train_lora(traj_b, cfg, base=w_a)
    held = train_lora(traj_b, cfg, base=w_a, ewc=ewc)
    carried = train_lora(traj_b, cfg, base=apply_ewc(w_a, fisher, 1e4))
    assert ewc_penalty(held, ewc) < 0.2 * ewc_penalty(plain, ewc)
    np.testing.assert_allclose(carried.up, held.up, rtol=1e-5, atol=1e-6)  # base's consolidation is used
    assert carried.consolidation is not None  # and carried on to the next task


def test_fisher_and_consolidated_weights_roundtrip_and_tamper(tmp_path):
    w = _weights()
    fisher = fisher_diagonal(w, _traj())
    path = tmp_path / "fisher.rvl"
    save_fisher(fisher, path)
    back = load_fisher(path)
    np.testing.assert_array_equal(back.down, fisher.down)
    np.testing.assert_array_equal(back.up, fisher.up)
    assert back.n_samples == fisher.n_samples
    blob = bytearray(path.read_bytes())
    blob[60] ^= 0x10
    with pytest.raises(CorruptIndexError):
        FisherDiagonal.from_bytes(bytes(blob))
    with pytest.raises(CorruptIndexError):
        FisherDiagonal.from_bytes(w.to_bytes())  # weights are not a Fisher
    consolidated = apply_ewc(w, fisher, 1234.0)
    wpath = tmp_path / "consolidated.rvl"
    save_weights(consolidated, wpath)
    loaded = load_weights(wpath)
    assert loaded.consolidation is not None and loaded.consolidation.lambda_ == 1234.0
    np.testing.assert_array_equal(loaded.consolidation.fisher.up, fisher.up)
    np.testing.assert_array_equal(loaded.consolidation.anchor.down, w.down)
    assert ewc_penalty(loaded, loaded.consolidation) == 0.0
