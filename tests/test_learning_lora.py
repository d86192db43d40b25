"""Trajectories, the contrastive objective (against finite differences), LoRA / MicroLoRA training and I/O."""

from __future__ import annotations

import numpy as np
import pytest

from ruvector_lab import learning
from ruvector_lab.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
    NoTrainingDataError,
)
from ruvector_lab.learning import (
    LoRAConfig,
    LoRATrainer,
    LoRAWeights,
    Trajectory,
    TrajectoryBuffer,
    apply,
    init_weights,
    load_weights,
    save_weights,
    stack_steps,
    train_lora,
)
from ruvector_lab.learning.objective import loss_and_gradients, squared_sample_gradients, unit_rows
from ruvector_lab.learning.tasks import recall_at_k


def _rotation_task(n: int = 240, d: int = 16, seed: int = 0):
    """Targets in clusters; queries are the targets rotated inside a 4-d subspace (a rank-4 fix undoes it)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, 4)))
    centres = rng.standard_normal((6, d))
    targets = centres[rng.integers(0, 6, n)] * 0.3 + rng.standard_normal((n, 4)) @ basis.T
    c, s = np.cos(1.3), np.sin(1.3)
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, c, -s], [0, 0, s, c]])
    within = targets @ basis
    queries = targets + (within @ rot.T - within) @ basis.T + 0.01 * rng.standard_normal((n, d))
    return queries.astype(np.float32), targets.astype(np.float32)


# ------------------------------------------------------------------ trajectories
def test_trajectory_steps_and_stacking():
    traj = Trajectory()
    traj.add([1.0, 0.0], [0.0, 1.0], 0.5)
    traj.add(np.array([1.0, 1.0]), [1.0, 0.0])
    assert len(traj) == 2 and traj.dimensions == 2 and traj.steps[1].reward == 1.0
    other = Trajectory.from_arrays(np.eye(2), np.eye(2)[::-1], [2.0, 3.0])
    q, t, r = stack_steps([traj, other])
    assert q.shape == (4, 2) and t.shape == (4, 2) and q.dtype == np.float32
    np.testing.assert_array_equal(r, [0.5, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t[2], [0.0, 1.0])
    assert [s.reward for s in traj] == [0.5, 1.0]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: Trajectory().add([1.0, 0.0], [1.0, 0.0, 0.0]), DimensionMismatchError),
        (lambda: Trajectory().add([1.0, 0.0], [1.0, 0.0], float("nan")), InvalidVectorError),
        (lambda: Trajectory().add([1.0, 0.0], [1.0, 0.0], "high"), InvalidParameterError),
        (lambda: Trajectory().add([0.0, 0.0], [1.0, 0.0]), InvalidVectorError),
        (lambda: Trajectory.from_arrays(np.eye(2), np.eye(2), [1.0, np.nan]), InvalidVectorError),
        (lambda: Trajectory.from_arrays(np.eye(2), np.eye(2), [1.0]), DimensionMismatchError),
        (lambda: Trajectory.from_arrays(np.eye(2), np.eye(3)[:2, :2][:1]), DimensionMismatchError),
        (lambda: Trajectory(["not a step"]), InvalidParameterError),
        (lambda: stack_steps([]), NoTrainingDataError),
        (lambda: stack_steps([Trajectory()]), NoTrainingDataError),
        (lambda: stack_steps(42), InvalidParameterError),
        (lambda: stack_steps([Trajectory.from_arrays(np.eye(2), np.eye(2)),
                              Trajectory.from_arrays(np.eye(3), np.eye(3))]), DimensionMismatchError),
    ],
)
def test_trajectory_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_trajectory_step_rejects_mixed_dimensions():
    traj = Trajectory.from_arrays(np.eye(2), np.eye(2))
    with pytest.raises(DimensionMismatchError):
        traj.add([1.0, 0.0, 0.0], [1.0, 0.0, 0.0])


def test_buffer_is_bounded_fifo_and_samples():
    buf = TrajectoryBuffer(capacity=3)
    for i in range(5):
        buf.add(Trajectory.from_arrays(np.full((2, 4), i + 1.0), np.ones((2, 4)), [i, i]))
    assert len(buf) == 3 and buf.step_count == 6
    q, _, r = buf.arrays()
    np.testing.assert_array_equal(r, [2, 2, 3, 3, 4, 4])  # the two oldest were dropped
    np.testing.assert_array_equal(q[:, 0], [3, 3, 4, 4, 5, 5])
    sq, st, sr = buf.sample(4, seed=1)
    assert sq.shape == (4, 4) and st.shape == (4, 4)
    assert len({tuple(row) for row in sq}) <= 3 and set(sr) <= {2.0, 3.0, 4.0}
    assert buf.sample(100, seed=1)[0].shape[0] == 6
    with pytest.raises(NoTrainingDataError):
        buf.add(Trajectory())
    with pytest.raises(DimensionMismatchError):
        buf.add(Trajectory.from_arrays(np.eye(3), np.eye(3)))
    with pytest.raises(InvalidParameterError):
        TrajectoryBuffer(capacity=0)
    buf.clear()
    assert len(buf) == 0
    with pytest.raises(NoTrainingDataError):
        buf.arrays()


# ------------------------------------------------------------------ objective
def _numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, dn = x.copy(), x.copy()
        up[idx] += eps
        dn[idx] -= eps
        g[idx] = (f(up) - f(dn)) / (2 * eps)
    return g


@pytest.mark.parametrize("scale", [2.0, 1 / np.sqrt(2)])
def test_analytic_gradients_match_finite_differences(scale):
    rng = np.random.default_rng(4)
    d, r, b = 10, 2, 7
    down, up = rng.standard_normal((d, r)), 0.4 * rng.standard_normal((r, d))
    queries, targets = rng.standard_normal((b, d)), rng.standard_normal((b, d))
    targets[5] = 3 * targets[2]  # a repeated target: masked, not a negative
    rewards = rng.uniform(0.1, 2.0, b)
    rewards[0] = -1.0  # a negative reward: the step only serves as a negative
    grads = loss_and_gradients(down, up, scale, queries, targets, rewards, 0.2)
    num_down = _numeric_grad(lambda x: loss_and_gradients(x, up, scale, queries, targets, rewards, 0.2).loss, down)
    num_up = _numeric_grad(lambda x: loss_and_gradients(down, x, scale, queries, targets, rewards, 0.2).loss, up)
    np.testing.assert_allclose(grads.down, num_down, atol=1e-7, rtol=1e-5)
    np.testing.assert_allclose(grads.up, num_up, atol=1e-7, rtol=1e-5)
    assert np.abs(grads.up).max() > 1e-3  # not trivially zero


def test_per_sample_squared_gradients_equal_a_loop_over_samples():
    rng = np.random.default_rng(5)
    d, r, b = 8, 3, 6
    down, up = rng.standard_normal((d, r)), rng.standard_normal((r, d))
    queries, targets = rng.standard_normal((b, d)), rng.standard_normal((b, d))
    rewards = rng.uniform(0.5, 1.5, b)
    sq_down, sq_up = squared_sample_gradients(down, up, 0.5, queries, targets, rewards, 0.1)
    loop_down, loop_up = np.zeros_like(down), np.zeros_like(up)
    for i in range(b):
        only = np.zeros(b)
        only[i] = rewards[i]
        g = loss_and_gradients(down, up, 0.5, queries, targets, only, 0.1)  # mean over one sample = its loss
        loop_down += (g.down * rewards[i]) ** 2
        loop_up += (g.up * rewards[i]) ** 2
    np.testing.assert_allclose(sq_down, loop_down, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(sq_up, loop_up, rtol=1e-9, atol=1e-14)


def test_objective_zero_when_no_positive_reward_and_unit_rows():
    rng = np.random.default_rng(6)
    g = loss_and_gradients(rng.standard_normal((4, 2)), rng.standard_normal((2, 4)), 1.0,
                           rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), np.array([0.0, -1.0, 0.0]), 0.1)
    assert g.loss == 0.0 and not g.down.any() and not g.up.any()
    sd, su = squared_sample_gradients(np.ones((4, 2)), np.ones((2, 4)), 1.0, np.eye(4)[:3], np.eye(4)[:3],
                                      np.zeros(3), 0.1)
    assert not sd.any() and not su.any()
    np.testing.assert_allclose(np.linalg.norm(unit_rows(np.array([[3.0, 4.0], [0.0, 2.0]])), axis=1), 1.0)


def test_loss_prefers_the_rewarded_target():
    q = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    good, bad = np.array([[1.0, 0.1, 0.0], [0.1, 1.0, 0.0]]), np.array([[0.1, 1.0, 0.0], [1.0, 0.1, 0.0]])
    zeros = (np.zeros((3, 1)), np.zeros((1, 3)))
    low = loss_and_gradients(*zeros, 1.0, q, good, np.ones(2), 0.1).loss
    high = loss_and_gradients(*zeros, 1.0, q, bad, np.ones(2), 0.1).loss
    assert low < 0.01 < high


# ------------------------------------------------------------------ config and weights
def test_config_scales_and_validation():
    assert LoRAConfig(rank=8, alpha=16).scale == 2.0
    assert LoRAConfig(rank=2, variant="micro").scale == pytest.approx(1 / np.sqrt(2))
    for bad in [dict(rank=0), dict(rank=3, variant="micro"), dict(variant="huge"), dict(batch_size=1),
                dict(learning_rate=0.0), dict(learning_rate=float("nan")), dict(alpha=-1.0), dict(epochs=0),
                dict(temperature=0), dict(rank=2.5), dict(seed=-1)]:
        with pytest.raises(InvalidParameterError):
            LoRAConfig(**bad)
    with pytest.raises(InvalidParameterError, match="larger than the embedding dimension"):
        LoRAConfig(rank=9).check_dimensions(8)


def test_fresh_adapter_is_identity_and_apply_matches_formula():
    w = init_weights(16, LoRAConfig(rank=4, seed=3))
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    np.testing.assert_array_equal(apply(w, x), x)  # up starts at zero
    assert not w.up.any() and w.down.std() > 0.1
    rng = np.random.default_rng(1)
    w = LoRAWeights(rng.standard_normal((16, 4)), rng.standard_normal((4, 16)), 0.5)
    expected = x + 0.5 * (x @ w.down) @ w.up
    np.testing.assert_allclose(apply(w, x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply(w, x[0]), expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x @ (np.eye(16) + w.delta()), expected, rtol=1e-4, atol=1e-4)  # W' = I + s A B
    assert apply(w, x[0]).shape == (16,) and w.rank == 4 and w.dimensions == 16
    with pytest.raises(DimensionMismatchError):
        apply(w, np.ones(15))
    with pytest.raises(InvalidVectorError):
        apply(w, np.full(16, np.nan))
    with pytest.raises(DimensionMismatchError):
        LoRAWeights(np.ones((16, 4)), np.ones((3, 16)), 1.0)
    with pytest.raises(InvalidParameterError):
        LoRAWeights(np.full((4, 1), np.inf), np.ones((1, 4)), 1.0)
    with pytest.raises(InvalidParameterError):
        init_weights(4, LoRAConfig(rank=8))


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("config", [LoRAConfig(rank=4, epochs=25, seed=1),
                                    LoRAConfig(rank=2, variant="micro", epochs=25, learning_rate=1e-2, seed=1)])
def test_training_raises_recall_of_held_out_queries(config):
    queries, targets = _rotation_task()
    train, test = slice(0, 160), slice(160, 240)
    weights = train_lora(Trajectory.from_arrays(queries[train], targets[train]), config)
    answers = np.arange(80)
    before = recall_at_k(queries[test], answers, targets[test], k=1)
    after = recall_at_k(apply(weights, queries[test]), answers, targets[test], k=1)
    assert after >= before + 0.15, (before, after)
    assert weights.variant == config.variant and weights.rank == config.rank


def test_rewards_decide_which_target_is_learned():
    """Each query comes with two candidate targets; the rewarded one is where training pulls it."""
    queries, targets = _rotation_task(n=160)
    others = 2 * queries - targets  # a competing answer, also a low-rank linear map of the query
    q2 = np.r_[queries, queries]
    t2 = np.r_[targets, others]
    cfg = LoRAConfig(rank=4, epochs=15, seed=2)

    def margin(rewards):
        w = train_lora(Trajectory.from_arrays(q2, t2, rewards), cfg)
        a = apply(w, queries)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        cos = lambda t: np.sum(a * t / np.linalg.norm(t, axis=1, keepdims=True), axis=1)  # noqa: E731
        return float(np.mean(cos(targets) - cos(others)))

    assert margin(np.r_[np.ones(160), np.zeros(160)]) > 0.5
    assert margin(np.r_[np.zeros(160), np.ones(160)]) < -0.5


def test_trainer_online_updates_lower_the_loss_and_continue_from_base():
    queries, targets = _rotation_task(n=64)
    trainer = LoRATrainer(16, LoRAConfig(rank=4, learning_rate=1e-2, seed=0))
    first = trainer.loss(queries[:32], targets[:32], np.ones(32))
    for _ in range(30):
        trainer.update(queries[:32], targets[:32])
    assert trainer.loss(queries[:32], targets[:32], np.ones(32)) < first * 0.8
    w = trainer.weights
    cont = LoRATrainer(16, LoRAConfig(rank=4), base=w)
    np.testing.assert_array_equal(cont.weights.up, w.up)
    history = LoRATrainer(16, LoRAConfig(rank=4, epochs=3, seed=0)).fit(queries, targets)
    assert len(history) == 3 and history[-1] < history[0]
    with pytest.raises(NoTrainingDataError):
        trainer.update(queries[:1], targets[:1])
    with pytest.raises(DimensionMismatchError):
        trainer.update(queries[:4], targets[:3])
    with pytest.raises(DimensionMismatchError):
        LoRATrainer(8, base=w)
    with pytest.raises(InvalidParameterError):
        LoRATrainer(16, base="weights")


def test_train_lora_bad_input():
    queries, targets = _rotation_task(n=32)
    traj = Trajectory.from_arrays(queries, targets)
    with pytest.raises(NoTrainingDataError):
        train_lora([], LoRAConfig(rank=2))
    with pytest.raises(NoTrainingDataError):
        train_lora(Trajectory(), LoRAConfig(rank=2))
    with pytest.raises(InvalidParameterError, match="rank 32 is larger"):
        train_lora(traj, LoRAConfig(rank=32))
    with pytest.raises(NoTrainingDataError, match="positive reward"):
        train_lora(Trajectory.from_arrays(queries, targets, np.zeros(32)), LoRAConfig(rank=2))
    with pytest.raises(DimensionMismatchError):
        train_lora(traj, LoRAConfig(rank=2), base=init_weights(8, LoRAConfig(rank=2)))


def test_training_is_deterministic_for_a_seed():
    queries, targets = _rotation_task(n=64)
    traj = Trajectory.from_arrays(queries, targets)
    a = train_lora(traj, LoRAConfig(rank=2, epochs=2, seed=7))
    b = train_lora(traj, LoRAConfig(rank=2, epochs=2, seed=7))
    c = train_lora(traj, LoRAConfig(rank=2, epochs=2, seed=8))
    np.testing.assert_array_equal(a.up, b.up)
    assert not np.array_equal(a.up, c.up)


# ------------------------------------------------------------------ persistence
def test_weights_roundtrip_and_tamper(tmp_path):
    rng = np.random.default_rng(2)
    w = LoRAWeights(rng.standard_normal((12, 3)), rng.standard_normal((3, 12)), 0.7, "base")
    path = tmp_path / "adapter.rvl"
    save_weights(w, path)
    back = load_weights(path)
    np.testing.assert_array_equal(back.down, w.down)
    np.testing.assert_array_equal(back.up, w.up)
    assert back.scale == pytest.approx(0.7) and back.variant == "base" and back.consolidation is None
    blob = bytearray(path.read_bytes())
    blob[-40] ^= 0x01
    with pytest.raises(CorruptIndexError):
        LoRAWeights.from_bytes(bytes(blob))
    with pytest.raises(CorruptIndexError):
        LoRAWeights.from_bytes(bytes(blob[:30]))
    with pytest.raises(CorruptIndexError):
        LoRAWeights.from_bytes(learning.FisherDiagonal(np.ones((12, 3)), np.ones((3, 12)), 1).to_bytes())
    from ruvector_lab import container

    mangled = container.dumps("lora-weights", {"scale": 1.0, "variant": "base", "consolidated": False},
                              {"down": np.ones((12, 3), np.float32), "up": np.ones((2, 12), np.float32)})
    with pytest.raises(CorruptIndexError):
        LoRAWeights.from_bytes(mangled)
    assert b"pickle" not in path.read_bytes()
