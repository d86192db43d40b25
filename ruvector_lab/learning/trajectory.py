"""Trajectories: what a retrieval session did (query, the target it settled on, how good that was).

A step is one query embedding, the embedding of the target that was chosen (or should have been), and a
scalar reward. The trainers only ever see stacked arrays, so :func:`stack_steps` is the single place where
trajectories are checked (dimensions agree, no NaN, at least one step).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import DimensionMismatchError, InvalidParameterError, InvalidVectorError, NoTrainingDataError
from ..types import check_positive_int
from ..validation import as_matrix, as_vector, check_nonzero


@dataclass(frozen=True)
class TrajectoryStep:
    """One step: ``query`` (d,) and ``target`` (d,) float32 embeddings and a finite ``reward``."""

    query: np.ndarray
    target: np.ndarray
    reward: float = 1.0

    def __post_init__(self) -> None:
        query = as_vector(self.query, name="step query")
        target = as_vector(self.target, name="step target")
        if query.shape != target.shape:
            raise DimensionMismatchError(
                f"step query has {query.shape[0]} dimensions but its target has {target.shape[0]}"
            )
        check_nonzero(query, "step query")
        check_nonzero(target, "step target")
        reward = _check_reward(self.reward)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "reward", reward)


@dataclass
class Trajectory:
    """An ordered list of :class:`TrajectoryStep` sharing one embedding dimension."""

    steps: list[TrajectoryStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        steps = list(self.steps)
        self.steps = []
        for step in steps:
            self._append(step)

    def add(self, query: object, target: object, reward: float = 1.0) -> TrajectoryStep:
        """Append a step built from ``query``, ``target`` and ``reward``; return it."""
        step = TrajectoryStep(np.asarray(query), np.asarray(target), reward)
        self._append(step)
        return step

    def _append(self, step: TrajectoryStep) -> None:
        if not isinstance(step, TrajectoryStep):
            raise InvalidParameterError(f"a trajectory holds TrajectorySteps, got {type(step).__name__}")
        if self.steps and step.query.shape != self.steps[0].query.shape:
            raise DimensionMismatchError(
                f"step has {step.query.shape[0]} dimensions but the trajectory's steps have "
                f"{self.steps[0].query.shape[0]}"
            )
        self.steps.append(step)

    @property
    def dimensions(self) -> int | None:
        """The embedding dimension of the steps, or None for an empty trajectory."""
        return int(self.steps[0].query.shape[0]) if self.steps else None

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[TrajectoryStep]:
        return iter(self.steps)

    @classmethod
    def from_arrays(cls, queries: object, targets: object, rewards: object | None = None) -> Trajectory:
        """Build a trajectory from (n, d) queries, (n, d) targets and (n,) rewards (default all 1)."""
        q = as_matrix(queries, name="queries")
        t = as_matrix(targets, q.shape[1], name="targets")
        if t.shape[0] != q.shape[0]:
            raise DimensionMismatchError(f"got {q.shape[0]} queries but {t.shape[0]} targets")
        r = np.ones(q.shape[0]) if rewards is None else _check_rewards(rewards, q.shape[0])
        return cls([TrajectoryStep(q[i], t[i], float(r[i])) for i in range(q.shape[0])])


class TrajectoryBuffer:
    """A bounded FIFO of trajectories: when full, adding one drops the oldest.

    ``capacity`` counts trajectories. Online trainers add what the application saw and draw batches of
    steps from :meth:`sample`; :meth:`arrays` gives everything currently held.
    """

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self._items: deque[Trajectory] = deque(maxlen=self.capacity)

    def add(self, trajectory: Trajectory) -> None:
        """Add one trajectory (an empty one is refused, a mismatched dimension too)."""
        if not isinstance(trajectory, Trajectory):
            raise InvalidParameterError(f"expected a Trajectory, got {type(trajectory).__name__}")
        if not len(trajectory):
            raise NoTrainingDataError("cannot buffer an empty trajectory")
        if self._items and trajectory.dimensions != self._items[0].dimensions:
            raise DimensionMismatchError(
                f"trajectory has {trajectory.dimensions} dimensions, the buffer holds {self._items[0].dimensions}"
            )
        self._items.append(trajectory)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(list(self._items))

    @property
    def step_count(self) -> int:
        """Total number of steps over the held trajectories."""
        return sum(len(t) for t in self._items)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All held steps as ``(queries, targets, rewards)``; see :func:`stack_steps`."""
        return stack_steps(list(self._items))

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
        """``n`` steps drawn uniformly without replacement (all of them if fewer are held)."""
        n = check_positive_int("n", n)
        q, t, r = self.arrays()
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        pick = rng.permutation(q.shape[0])[: min(n, q.shape[0])]
        return q[pick], t[pick], r[pick]

    def clear(self) -> None:
        """Drop every trajectory."""
        self._items.clear()


def stack_steps(
    trajectories: Trajectory | TrajectoryBuffer | Iterable[Trajectory],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack the steps of ``trajectories`` into ``(queries (n, d), targets (n, d), rewards (n,))`` float32/64.

    Raises :class:`NoTrainingDataError` when there is no step at all and :class:`DimensionMismatchError`
    when trajectories disagree on the dimension.
    """
    if isinstance(trajectories, Trajectory):
        items: Sequence[Trajectory] = [trajectories]
    elif isinstance(trajectories, TrajectoryBuffer):
        items = list(trajectories)
    else:
        try:
            items = list(trajectories)
        except TypeError:
            raise InvalidParameterError(
                f"expected trajectories (a Trajectory, a TrajectoryBuffer or a list of them), "
                f"got {type(trajectories).__name__}"
            ) from None
    steps: list[TrajectoryStep] = []
    for item in items:
        if not isinstance(item, Trajectory):
            raise InvalidParameterError(f"expected Trajectory objects, got {type(item).__name__}")
        steps.extend(item.steps)
    if not steps:
        raise NoTrainingDataError("no trajectory steps to learn from: the trajectories are empty")
    dims = {s.query.shape[0] for s in steps}
    if len(dims) > 1:
        raise DimensionMismatchError(f"trajectories mix embedding dimensions {sorted(dims)}")
    queries = np.stack([s.query for s in steps])
    targets = np.stack([s.target for s in steps])
    rewards = np.array([s.reward for s in steps], dtype=np.float64)
    return queries, targets, rewards


def _check_reward(value: object) -> float:
    try:
        reward = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidParameterError(f"reward must be a number, got {type(value).__name__}") from None
    if not math.isfinite(reward):
        raise InvalidVectorError(f"reward must be finite, got {reward}")
    return reward


def _check_rewards(value: object, count: int) -> np.ndarray:
    try:
        rewards = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidParameterError("rewards must be numbers") from None
    if rewards.shape[0] != count:
        raise DimensionMismatchError(f"got {rewards.shape[0]} rewards for {count} steps")
    if not np.isfinite(rewards).all():
        raise InvalidVectorError(f"rewards hold NaN or inf (first at step {int(np.argmin(np.isfinite(rewards)))})")
    return rewards
