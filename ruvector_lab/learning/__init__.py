"""Online learning for retrieval (the ADR's ``learning`` module): patterns, trajectories, LoRA, EWC.

>>> from ruvector_lab import learning
>>> weights = learning.train_lora(trajectories, learning.LoRAConfig(rank=8))      # doctest: +SKIP
>>> adapted = learning.apply(weights, queries)                                   # doctest: +SKIP

NumPy only. The experiment that measures what the adapters buy is :mod:`ruvector_lab.learning.experiment`.
"""

from __future__ import annotations

from .ewc import (
    EWCConfig,
    FisherDiagonal,
    apply_ewc,
    ewc_penalty,
    fisher_diagonal,
    load_fisher,
    merge_fisher,
    save_fisher,
)
from .lora import LoRAConfig, LoRATrainer, LoRAWeights, apply, init_weights, load_weights, save_weights, train_lora
from .patterns import Pattern, PatternMatch, PatternSet, PatternStore, create_pattern, match_patterns
from .trajectory import Trajectory, TrajectoryBuffer, TrajectoryStep, stack_steps

__all__ = [
    "EWCConfig",
    "FisherDiagonal",
    "LoRAConfig",
    "LoRATrainer",
    "LoRAWeights",
    "Pattern",
    "PatternMatch",
    "PatternSet",
    "PatternStore",
    "Trajectory",
    "TrajectoryBuffer",
    "TrajectoryStep",
    "apply",
    "apply_ewc",
    "create_pattern",
    "ewc_penalty",
    "fisher_diagonal",
    "init_weights",
    "load_fisher",
    "load_weights",
    "match_patterns",
    "merge_fisher",
    "save_fisher",
    "save_weights",
    "stack_steps",
    "train_lora",
]
