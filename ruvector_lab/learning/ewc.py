"""Elastic weight consolidation for the query adapters: Fisher diagonal, penalty, EWC++ merging.

After a task, :func:`fisher_diagonal` estimates how much each adapter parameter mattered (the mean of the
squared per-sample gradients of the training loss, the empirical Fisher diagonal). Training on a later
task then adds ``lambda/2 * sum F * (w - w*)^2`` with ``w*`` the earlier task's weights, so parameters the
earlier task relied on stay put while the others are free to move. EWC++ keeps one running Fisher across
many tasks instead of one per task: ``F = gamma * F_old + (1 - gamma) * F_new``.

The types (:class:`FisherDiagonal`, :class:`EWCConfig`, and the adapters they constrain) live in :mod:`.weights`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from .. import container
from ..errors import DimensionMismatchError, InvalidParameterError
from .objective import squared_sample_gradients
from .trajectory import Trajectory, TrajectoryBuffer, stack_steps
from .weights import EWCConfig, FisherDiagonal, LoRAConfig, LoRAWeights

__all__ = [
    "EWCConfig",
    "FisherDiagonal",
    "apply_ewc",
    "ewc_gradient",
    "ewc_penalty",
    "fisher_diagonal",
    "load_fisher",
    "merge_fisher",
    "penalty_arrays",
    "save_fisher",
]


def fisher_diagonal(
    weights: LoRAWeights,
    trajectories: Trajectory | TrajectoryBuffer | Iterable[Trajectory],
    config: LoRAConfig | None = None,
) -> FisherDiagonal:
    """Empirical Fisher diagonal of ``weights`` on ``trajectories``: the mean over steps of the squared
    per-sample gradient of the contrastive loss (negatives from batches of ``config.batch_size``, in order;
    the temperature is ``config.temperature``, the defaults of :class:`LoRAConfig` when None)."""
    config = config or LoRAConfig(rank=weights.rank)
    q, t, r = stack_steps(trajectories)
    if q.shape[1] != weights.dimensions:
        raise DimensionMismatchError(f"trajectories have {q.shape[1]} dimensions, the adapter {weights.dimensions}")
    down = weights.down.astype(np.float64)
    up = weights.up.astype(np.float64)
    sum_down, sum_up = np.zeros_like(down), np.zeros_like(up)
    bs = config.batch_size
    for start in range(0, q.shape[0], bs):
        sl = slice(start, start + bs)
        if q[sl].shape[0] < 2:
            continue
        sq_down, sq_up = squared_sample_gradients(down, up, weights.scale, q[sl], t[sl], r[sl], config.temperature)
        sum_down += sq_down
        sum_up += sq_up
    n = q.shape[0]
    return FisherDiagonal(sum_down / n, sum_up / n, n)


def penalty_arrays(down: np.ndarray, up: np.ndarray, ewc: EWCConfig) -> float:
    """``lambda/2 * sum F (w - w*)^2`` for raw ``down``/``up`` arrays (float64 arithmetic)."""
    d = down - ewc.anchor.down.astype(np.float64)
    u = up - ewc.anchor.up.astype(np.float64)
    return 0.5 * ewc.lambda_ * float((ewc.fisher.down * d * d).sum() + (ewc.fisher.up * u * u).sum())


def ewc_gradient(down: np.ndarray, up: np.ndarray, ewc: EWCConfig) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of :func:`penalty_arrays`: ``lambda * F * (w - w*)`` for ``down`` and ``up``."""
    g_down = ewc.lambda_ * ewc.fisher.down * (down - ewc.anchor.down.astype(np.float64))
    g_up = ewc.lambda_ * ewc.fisher.up * (up - ewc.anchor.up.astype(np.float64))
    return g_down, g_up


def ewc_penalty(weights: LoRAWeights | tuple[np.ndarray, np.ndarray], ewc: EWCConfig) -> float:
    """The EWC penalty ``lambda/2 * sum F * (w - w*)^2`` of ``weights`` (LoRAWeights or a ``(down, up)`` pair)."""
    down, up = (weights.down, weights.up) if hasattr(weights, "down") else weights  # type: ignore[union-attr]
    down = np.asarray(down, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    ewc.check_matches(down.shape[0], down.shape[1] if down.ndim == 2 else -1)
    if up.shape != down.shape[::-1]:
        raise DimensionMismatchError(f"up {up.shape} does not fit down {down.shape}")
    return penalty_arrays(down, up, ewc)


def merge_fisher(old: FisherDiagonal, new: FisherDiagonal, gamma: float = 0.9) -> FisherDiagonal:
    """EWC++ online merge: ``gamma * old + (1 - gamma) * new`` (``0 <= gamma <= 1``)."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise InvalidParameterError(f"gamma must be a number in [0, 1], got {gamma!r}")
    if old.shape != new.shape:
        raise DimensionMismatchError(f"cannot merge Fisher diagonals of shapes {old.shape} and {new.shape}")
    return FisherDiagonal(gamma * old.down.astype(np.float64) + (1 - gamma) * new.down,
                          gamma * old.up.astype(np.float64) + (1 - gamma) * new.up,
                          old.n_samples + new.n_samples)


def apply_ewc(weights: LoRAWeights, fisher: FisherDiagonal, lambda_: float, gamma: float = 0.9) -> LoRAWeights:
    """Consolidate ``weights`` (the ADR's ``applyEWC(weights, fisher, lambda) -> weights``).

    Returns the *same* adapter parameters (outputs unchanged) carrying an :class:`EWCConfig` whose anchor is
    these weights and whose Fisher is ``fisher``; training that starts from the result
    (``train_lora(..., base=result)``) is then held near it by ``lambda_/2 * sum F (w - w*)^2``.
    When ``weights`` already carry a consolidation (an earlier task's), the Fisher diagonals are merged
    the EWC++ way, ``gamma * F_old + (1 - gamma) * fisher``, and the anchor moves to the current weights.
    """
    if not isinstance(fisher, FisherDiagonal):
        raise InvalidParameterError(f"fisher must be a FisherDiagonal, got {type(fisher).__name__}")
    anchor = replace(weights, consolidation=None)
    previous = weights.consolidation
    merged = merge_fisher(previous.fisher, fisher, gamma) if previous is not None else fisher
    return replace(weights, consolidation=EWCConfig(lambda_, merged, anchor))


def save_fisher(fisher: FisherDiagonal, path: str | os.PathLike[str]) -> None:
    """Write ``fisher`` to ``path`` atomically, in the container format."""
    container.write_atomic(path, fisher.to_bytes())


def load_fisher(path: str | os.PathLike[str]) -> FisherDiagonal:
    """Read a Fisher diagonal written by :func:`save_fisher`; a damaged file raises CorruptIndexError."""
    with open(path, "rb") as handle:
        return FisherDiagonal.from_bytes(handle.read())
