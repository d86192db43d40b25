"""Retrieval tasks for the learning experiment: query -> target pairs, split by target, scored by recall@k.

A task is built from two arrays, ``queries`` (n, d) and ``targets`` (n, d), row i asking for target i
(:func:`task_from_pairs`). Any source fits: the clustered synthetic stand-in below, or real text (WordNet
glosses -> words embedded with MiniLM) once the data and embedding issues provide it.

The synthetic stand-in (:func:`synthetic_task_pair`): targets lie in clusters, and inside a cluster they
differ mostly along a few task-specific directions (the task's subspace ``S``). A task's queries are its
targets *rotated inside S* by a fixed random rotation plus noise: the "phrasing" of the task moves exactly
the directions that tell neighbours apart, so the base embeddings retrieve poorly, and the inverse map
``x + (x @ S)(M^T - I) S^T`` is a rank-``dim S`` correction that a LoRA adapter of that rank can learn.
Tasks A and B share ``overlap`` of their subspace directions and rotate them differently: on those
directions the two tasks want different maps, which is where learning B can undo A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DimensionMismatchError, InvalidParameterError
from ..types import check_positive_int
from ..validation import as_matrix, check_nonzero
from .trajectory import Trajectory


@dataclass(frozen=True)
class RetrievalTask:
    """Train pairs, held-out test queries and the corpus they are retrieved from.

    ``corpus`` (m, d) holds every distinct target (train and test); ``test_answers[i]`` is the corpus row
    that ``test_queries[i]`` asks for.
    """

    name: str
    train_queries: np.ndarray
    train_targets: np.ndarray
    test_queries: np.ndarray
    test_answers: np.ndarray
    corpus: np.ndarray

    @property
    def dimensions(self) -> int:
        """Embedding dimension."""
        return int(self.corpus.shape[1])

    def trajectory(self) -> Trajectory:
        """The training pairs as one trajectory with reward 1 per step."""
        return Trajectory.from_arrays(self.train_queries, self.train_targets)


def task_from_pairs(name: str, queries: object, targets: object, test_fraction: float = 0.3,
                    seed: int = 0) -> RetrievalTask:
    """Split (query, target) pairs into a task: distinct targets form the corpus, and a ``test_fraction`` of
    the targets (with all their queries) is held out, so test queries ask for targets never trained on."""
    q = as_matrix(queries, name="queries")
    t = as_matrix(targets, q.shape[1], name="targets")
    if q.shape[0] != t.shape[0]:
        raise DimensionMismatchError(f"got {q.shape[0]} queries but {t.shape[0]} targets")
    check_nonzero(q, "queries")
    check_nonzero(t, "targets")
    if not 0.0 < test_fraction < 1.0:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    corpus, answer = np.unique(t, axis=0, return_inverse=True)
    answer = answer.reshape(-1)
    if corpus.shape[0] < 2:
        raise InvalidParameterError("a retrieval task needs at least 2 distinct targets")
    rng = np.random.default_rng(seed)
    held = rng.permutation(corpus.shape[0])[: max(1, round(test_fraction * corpus.shape[0]))]
    is_test = np.isin(answer, held)
    if is_test.all():
        raise InvalidParameterError("test_fraction leaves no training pairs")
    return RetrievalTask(name, q[~is_test], t[~is_test], q[is_test], answer[is_test], corpus)


def recall_at_k(queries: np.ndarray, answers: np.ndarray, corpus: np.ndarray, k: int = 10) -> float:
    """Fraction of queries whose answer row of ``corpus`` is among the ``k`` most cosine-similar rows."""
    k = check_positive_int("k", k)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    sims = qn @ cn.T
    own = sims[np.arange(len(answers)), answers]
    # rank = number of corpus rows strictly more similar than the answer (ties count in the query's favour)
    rank = (sims > own[:, None]).sum(axis=1)
    return float((rank < k).mean())


def _rotation(dim: int, angle: float, rng: np.random.Generator) -> np.ndarray:
    """A random rotation of R^dim turning each of dim//2 random planes by ``angle`` radians."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    block = np.eye(dim)
    c, s = np.cos(angle), np.sin(angle)
    for i in range(0, dim - 1, 2):
        block[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    return basis @ block @ basis.T


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of the synthetic task pair; the defaults are the experiment's 384-d setting."""

    dimensions: int = 384
    clusters: int = 40
    per_cluster: int = 50
    subspace: int = 8  # k: directions that tell a cluster's members apart, per task
    overlap: int = 8  # how many of them tasks A and B share (all: the tasks fully conflict)
    spread: float = 1.0  # within-cluster spread along the subspace, relative to the centre's norm
    angle: float = 1.3  # radians each plane of the subspace is turned by in the query "phrasing"
    noise: float = 0.05  # isotropic noise on targets and queries, relative to the centre's norm
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dimensions", "clusters", "per_cluster", "subspace"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("overlap", self.overlap, minimum=0)
        if self.overlap > self.subspace:
            raise InvalidParameterError(f"overlap {self.overlap} exceeds the subspace size {self.subspace}")
        if 2 * self.subspace - self.overlap > self.dimensions:
            raise InvalidParameterError("the two task subspaces do not fit in the dimensions")


def synthetic_pairs(spec: SyntheticSpec) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(queries, targets) for task A and task B as described in the module docstring (seeded)."""
    rng = np.random.default_rng(spec.seed)
    d, k = spec.dimensions, spec.subspace
    axes, _ = np.linalg.qr(rng.standard_normal((d, 2 * k - spec.overlap)))
    subspaces = (axes[:, :k], axes[:, k - spec.overlap :])  # share `overlap` columns
    out = []
    for basis in subspaces:
        centres = rng.standard_normal((spec.clusters, d)) / np.sqrt(d)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        n = spec.clusters * spec.per_cluster
        member = np.repeat(np.arange(spec.clusters), spec.per_cluster)
        coords = rng.standard_normal((n, k)) * (spec.spread / np.sqrt(k))
        targets = centres[member] + coords @ basis.T + rng.standard_normal((n, d)) * (spec.noise / np.sqrt(d))
        rotation = _rotation(k, spec.angle, rng)
        within = targets @ basis
        queries = targets + (within @ rotation.T - within) @ basis.T
        queries += rng.standard_normal((n, d)) * (spec.noise / np.sqrt(d))
        out.append((queries.astype(np.float32), targets.astype(np.float32)))
    return out[0], out[1]
