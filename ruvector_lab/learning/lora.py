"""Low-rank query adapters (LoRA and SONA's MicroLoRA) and their trainer.

An adapter maps a query embedding ``x`` (d,) to ``x + scale * (x @ down) @ up`` with ``down`` (d, r) and
``up`` (r, d). That is RuVector's two forms with the frozen base map being the identity on embeddings:

* base LoRA, ``W' = W + (alpha / r) * A @ B``: ``variant='base'``, ``scale = alpha / rank``, rank 8-64;
* MicroLoRA, ``out = x + (1/sqrt(r)) * (x @ down) @ up``: ``variant='micro'``, ``scale = 1/sqrt(rank)``,
  rank 1 or 2.

``up`` starts at zero, so a fresh adapter is exactly the identity and training starts from the base
embeddings. Training minimises the reward-weighted contrastive loss of :mod:`.objective` with Adam, plus
the EWC penalty when an :class:`~.ewc.EWCConfig` is given (or carried by ``base``). The types
(:class:`LoRAConfig`, :class:`LoRAWeights`) live in :mod:`.weights`, shared with :mod:`.ewc`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable

import numpy as np

from .. import container
from ..errors import DimensionMismatchError, InvalidParameterError, NoTrainingDataError
from ..validation import as_matrix, check_nonzero, check_positive_int
from .ewc import ewc_gradient, penalty_arrays
from .objective import loss_and_gradients
from .trajectory import Trajectory, TrajectoryBuffer, _check_rewards, stack_steps
from .weights import EWCConfig, LoRAConfig, LoRAWeights, Variant

__all__ = [
    "LoRAConfig",
    "LoRATrainer",
    "LoRAWeights",
    "Variant",
    "apply",
    "init_weights",
    "load_weights",
    "save_weights",
    "train_lora",
]

log = logging.getLogger(__name__)


def init_weights(dimensions: int, config: LoRAConfig) -> LoRAWeights:
    """A fresh adapter: ``down`` ~ N(0, init_std^2 / rank) per entry (seeded), ``up`` zero, i.e. the identity."""
    dimensions = check_positive_int("dimensions", dimensions)
    config.check_dimensions(dimensions)
    rng = np.random.default_rng(config.seed)
    # variance 1/rank keeps |x @ down| near |x| for any rank, so one learning rate suits every rank
    down = rng.standard_normal((dimensions, config.rank)) * (config.init_std / math.sqrt(config.rank))
    return LoRAWeights(down, np.zeros((config.rank, dimensions)), config.scale, config.variant)


def apply(weights: LoRAWeights, vectors: object) -> np.ndarray:
    """Adapt one vector (d,) or a matrix (n, d): ``x + scale * (x @ down) @ up``, float32, same shape."""
    x = np.asarray(vectors)
    single = x.ndim == 1
    m = as_matrix(x, weights.dimensions, name="vectors")
    out = m + weights.scale * ((m @ weights.down) @ weights.up)
    return out[0] if single else out


class LoRATrainer:
    """Adam on the contrastive loss, one :meth:`update` per batch: the online form of :func:`train_lora`.

    ``base`` continues from an existing adapter (its rank and scale win over the config's); ``ewc`` adds the
    penalty ``lambda/2 * sum F (w - w*)^2``; when ``ewc`` is None the consolidation carried by ``base``
    (from :func:`~.ewc.apply_ewc`) is used.
    """

    def __init__(self, dimensions: int, config: LoRAConfig | None = None, base: LoRAWeights | None = None,
                 ewc: EWCConfig | None = None) -> None:
        self.config = config or LoRAConfig()
        dimensions = check_positive_int("dimensions", dimensions)
        if base is None:
            base = init_weights(dimensions, self.config)
        elif not isinstance(base, LoRAWeights):
            raise InvalidParameterError(f"base must be LoRAWeights, got {type(base).__name__}")
        elif base.dimensions != dimensions:
            raise DimensionMismatchError(f"base adapter has {base.dimensions} dimensions, the data has {dimensions}")
        self.dimensions = dimensions
        self.scale = base.scale
        self.variant = base.variant
        self.ewc = ewc if ewc is not None else base.consolidation
        if self.ewc is not None:
            self.ewc.check_matches(base.dimensions, base.rank)
        self._carry = base.consolidation
        self._down = base.down.astype(np.float64)
        self._up = base.up.astype(np.float64)
        self._m = [np.zeros_like(self._down), np.zeros_like(self._up)]
        self._v = [np.zeros_like(self._down), np.zeros_like(self._up)]
        self._t = 0
        self.rng = np.random.default_rng(self.config.seed)

    @property
    def weights(self) -> LoRAWeights:
        """The current adapter as float32 :class:`LoRAWeights` (keeps the base's consolidation)."""
        return LoRAWeights(self._down, self._up, self.scale, self.variant, self._carry)

    def loss(self, queries: np.ndarray, targets: np.ndarray, rewards: np.ndarray) -> float:
        """Contrastive loss (plus EWC penalty) of the current adapter on one batch, without updating."""
        q, t, r = self._check_batch(queries, targets, rewards)
        grads = loss_and_gradients(self._down, self._up, self.scale, q, t, r, self.config.temperature)
        return grads.loss + (penalty_arrays(self._down, self._up, self.ewc) if self.ewc else 0.0)

    def update(self, queries: object, targets: object, rewards: object | None = None) -> float:
        """One Adam step on one batch (n >= 2 steps); returns the batch loss before the step."""
        q, t, r = self._check_batch(queries, targets, rewards)
        return self._step(q, t, r)

    def _check_batch(self, queries: object, targets: object, rewards: object | None) -> tuple[np.ndarray, ...]:
        q = as_matrix(queries, self.dimensions, name="queries")
        t = as_matrix(targets, self.dimensions, name="targets")
        if q.shape[0] != t.shape[0]:
            raise DimensionMismatchError(f"got {q.shape[0]} queries but {t.shape[0]} targets")
        if q.shape[0] < 2:
            raise NoTrainingDataError("a contrastive update needs at least 2 steps (in-batch negatives)")
        check_nonzero(q, "queries")
        check_nonzero(t, "targets")
        r = np.ones(q.shape[0]) if rewards is None else _check_rewards(rewards, q.shape[0])
        return q, t, r

    def _step(self, q: np.ndarray, t: np.ndarray, r: np.ndarray) -> float:
        cfg = self.config
        grads = loss_and_gradients(self._down, self._up, self.scale, q, t, r, cfg.temperature)
        loss = grads.loss
        g = [grads.down, grads.up]
        if self.ewc is not None:
            loss += penalty_arrays(self._down, self._up, self.ewc)
            pd, pu = ewc_gradient(self._down, self._up, self.ewc)
            g = [g[0] + pd, g[1] + pu]
        self._t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for i, param in enumerate((self._down, self._up)):
            self._m[i] = b1 * self._m[i] + (1 - b1) * g[i]
            self._v[i] = b2 * self._v[i] + (1 - b2) * g[i] ** 2
            m_hat = self._m[i] / (1 - b1**self._t)
            v_hat = self._v[i] / (1 - b2**self._t)
            param -= cfg.learning_rate * m_hat / (np.sqrt(v_hat) + eps)
        return float(loss)

    def fit(self, queries: np.ndarray, targets: np.ndarray, rewards: np.ndarray | None = None) -> list[float]:
        """``config.epochs`` shuffled passes in batches of ``config.batch_size``; returns the mean loss per epoch."""
        q, t, r = self._check_batch(queries, targets, rewards)
        n, bs = q.shape[0], self.config.batch_size
        history = []
        for epoch in range(self.config.epochs):
            order = self.rng.permutation(n)
            losses = []
            for start in range(0, n, bs):
                pick = order[start : start + bs]
                if pick.shape[0] < 2:  # a lone leftover step has no in-batch negative
                    continue
                losses.append(self._step(q[pick], t[pick], r[pick]))
            history.append(float(np.mean(losses)))
            log.debug("lora epoch %d: loss %.4f", epoch, history[-1])
        return history


def train_lora(
    trajectories: Trajectory | TrajectoryBuffer | Iterable[Trajectory],
    config: LoRAConfig | None = None,
    base: LoRAWeights | None = None,
    ewc: EWCConfig | None = None,
) -> LoRAWeights:
    """Train a query adapter on the steps of ``trajectories`` so rewarded targets rank higher.

    ``base`` continues from an earlier adapter (e.g. the previous task's); ``ewc`` (or the consolidation
    that ``base`` carries) keeps the parameters that mattered for earlier tasks near their anchor.
    Raises :class:`NoTrainingDataError` for empty trajectories, :class:`InvalidParameterError` for a rank
    larger than the dimension, :class:`DimensionMismatchError` for mismatched embeddings or base.
    """
    config = config or LoRAConfig()
    q, t, r = stack_steps(trajectories)
    config.check_dimensions(q.shape[1])
    if not (r > 0).any():
        raise NoTrainingDataError("no step has a positive reward, so there is nothing to pull towards")
    trainer = LoRATrainer(q.shape[1], config, base=base, ewc=ewc)
    history = trainer.fit(q, t, r)
    log.info("trained LoRA rank %d on %d steps: loss %.4f -> %.4f", trainer.weights.rank, q.shape[0],
             history[0], history[-1])
    return trainer.weights


def save_weights(weights: LoRAWeights, path: str | os.PathLike[str]) -> None:
    """Write ``weights`` (with any consolidation) to ``path`` atomically, in the container format."""
    container.write_atomic(path, weights.to_bytes())


def load_weights(path: str | os.PathLike[str]) -> LoRAWeights:
    """Read weights written by :func:`save_weights`; a damaged file raises CorruptIndexError."""
    with open(path, "rb") as handle:
        return LoRAWeights.from_bytes(handle.read())
