"""The training objective of the query adapters: a reward-weighted contrastive loss with in-batch negatives.

The adapter maps a query ``x`` to ``y = x + scale * (x @ down) @ up``. Its output is L2-normalised, scored
against every L2-normalised target of the batch by cosine over a temperature, and the loss is the
reward-weighted cross-entropy of picking the step's own target::

    u_i = y_i / |y_i|          s_ij = u_i . t_j / tau          L = -sum_i w_i log softmax_j(s_ij)[i] / sum_i w_i

``w_i = max(reward_i, 0)``: a rewarded step pulls its query towards its target and away from the other
targets of the batch; a step with reward <= 0 only serves as a negative for the others. Another step that
has the *same* target is not a negative (it is masked out), so repeated targets do not fight each other.

Gradients are analytic (float64) and are checked against finite differences in the tests. The per-sample
variant gives what the Fisher diagonal needs without a Python loop: the gradient of one sample's loss
with respect to ``up`` is an outer product, so the mean of its square is a product of squared matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SAME_TARGET = 1.0 - 1e-9  # cosine above which two targets count as the same item


@dataclass
class Gradients:
    """Loss value and gradients with respect to ``down`` (d, r) and ``up`` (r, d)."""

    loss: float
    down: np.ndarray
    up: np.ndarray


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64 (zero rows stay zero)."""
    m = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(norms, 1e-300)


def _backward_to_y(
    down: np.ndarray, up: np.ndarray, scale: float, queries: np.ndarray, targets_unit: np.ndarray,
    weights: np.ndarray, temperature: float,
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Forward pass and the gradient of the *unnormalised* weighted loss sum with respect to ``y``.

    Returns ``(loss_sum, z, dy, weight_sum)`` where ``loss_sum = -sum_i w_i log p_ii``.
    """
    q = np.asarray(queries, dtype=np.float64)
    z = q @ down
    y = q + scale * (z @ up)
    norms = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    u = y / norms
    logits = (u @ targets_unit.T) / temperature
    n = logits.shape[0]
    same = targets_unit @ targets_unit.T > _SAME_TARGET
    np.fill_diagonal(same, False)
    logits = np.where(same, -np.inf, logits)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probs = exp / exp.sum(axis=1, keepdims=True)
    diag = np.clip(probs[np.arange(n), np.arange(n)], 1e-300, None)
    loss_sum = float(-(weights * np.log(diag)).sum())
    g_logits = weights[:, None] * (probs - np.eye(n))
    du = (g_logits @ targets_unit) / temperature
    dy = (du - u * np.einsum("ij,ij->i", du, u)[:, None]) / norms
    return loss_sum, z, dy, float(weights.sum())


def loss_and_gradients(
    down: np.ndarray, up: np.ndarray, scale: float, queries: np.ndarray, targets: np.ndarray,
    rewards: np.ndarray, temperature: float,
) -> Gradients:
    """The batch loss (mean over rewarded steps) and its gradients; zero when no step has a positive reward."""
    down = np.asarray(down, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    weights = np.clip(np.asarray(rewards, dtype=np.float64), 0.0, None)
    total = float(weights.sum())
    if total <= 0.0:
        return Gradients(0.0, np.zeros_like(down), np.zeros_like(up))
    loss_sum, z, dy, _ = _backward_to_y(down, up, scale, queries, unit_rows(targets), weights, temperature)
    dy /= total
    g_up = scale * (z.T @ dy)
    g_down = np.asarray(queries, dtype=np.float64).T @ (scale * (dy @ up.T))
    return Gradients(loss_sum / total, g_down, g_up)


def squared_sample_gradients(
    down: np.ndarray, up: np.ndarray, scale: float, queries: np.ndarray, targets: np.ndarray,
    rewards: np.ndarray, temperature: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum over the batch of the squared per-sample gradients ``(sum_i g_i(down)^2, sum_i g_i(up)^2)``.

    Sample ``i``'s loss is ``-w_i log p_ii`` with the rest of the batch as its negatives; it depends on
    ``y_i`` only, so its gradient is row ``i`` of the batch's ``dy`` and the squares factor exactly.
    """
    down = np.asarray(down, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    weights = np.clip(np.asarray(rewards, dtype=np.float64), 0.0, None)
    if float(weights.sum()) <= 0.0:
        return np.zeros_like(down), np.zeros_like(up)
    _, z, dy, _ = _backward_to_y(down, up, scale, queries, unit_rows(targets), weights, temperature)
    dz = scale * (dy @ up.T)
    q = np.asarray(queries, dtype=np.float64)
    sq_up = scale**2 * ((z**2).T @ (dy**2))
    sq_down = (q**2).T @ (dz**2)
    return sq_down, sq_up
