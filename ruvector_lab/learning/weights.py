"""The adapter's data types, shared by :mod:`.lora` (which trains them) and :mod:`.ewc` (which constrains them).

:class:`LoRAWeights` may carry an :class:`EWCConfig`, whose anchor is itself a :class:`LoRAWeights` and whose
importance is a :class:`FisherDiagonal`: the types refer to each other, so they live together here, below both
modules that use them. :class:`LoRAConfig` holds the hyper-parameters both need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .. import container
from ..errors import CorruptIndexError, DimensionMismatchError, InvalidParameterError
from ..validation import check_positive_int

Variant = Literal["base", "micro"]
#: container kind of serialized :class:`LoRAWeights`
LORA_KIND = "lora-weights"
#: container kind of a serialized :class:`FisherDiagonal`
FISHER_KIND = "ewc-fisher"


@dataclass(frozen=True)
class FisherDiagonal:
    """The Fisher diagonal of an adapter: one non-negative float32 entry per parameter of ``down`` and ``up``.

    ``n_samples`` is the number of steps it was estimated from (kept for reporting and merging).
    """

    down: np.ndarray
    up: np.ndarray
    n_samples: int = 0

    def __post_init__(self) -> None:
        down = np.ascontiguousarray(self.down, dtype=np.float32)
        up = np.ascontiguousarray(self.up, dtype=np.float32)
        if down.ndim != 2 or up.ndim != 2 or down.shape[::-1] != up.shape:
            raise DimensionMismatchError(f"Fisher shapes do not fit an adapter: down {down.shape}, up {up.shape}")
        if not (np.isfinite(down).all() and np.isfinite(up).all()) or (down < 0).any() or (up < 0).any():
            raise InvalidParameterError("a Fisher diagonal must be finite and non-negative")
        object.__setattr__(self, "down", down)
        object.__setattr__(self, "up", up)
        object.__setattr__(self, "n_samples", check_positive_int("n_samples", self.n_samples, minimum=0))

    @property
    def shape(self) -> tuple[int, int]:
        """``(dimensions, rank)`` of the adapter it belongs to."""
        return int(self.down.shape[0]), int(self.down.shape[1])

    def total(self) -> float:
        """Sum of all entries (a scalar measure of how constrained the adapter is)."""
        return float(self.down.sum(dtype=np.float64) + self.up.sum(dtype=np.float64))

    def to_bytes(self) -> bytes:
        """Serialize into the library's checksummed container (kind ``ewc-fisher``)."""
        return container.dumps(FISHER_KIND, {"n_samples": int(self.n_samples)}, {"down": self.down, "up": self.up})

    @classmethod
    def from_bytes(cls, blob: bytes) -> FisherDiagonal:
        """Inverse of :meth:`to_bytes`; a truncated, tampered or inconsistent blob raises CorruptIndexError."""
        meta, arrays = container.loads(blob, FISHER_KIND)
        try:
            return cls(arrays["down"], arrays["up"], int(meta["n_samples"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptIndexError(f"Fisher blob is not consistent: {exc}") from None


@dataclass(frozen=True)
class EWCConfig:
    """The EWC constraint: strength ``lambda_``, importance ``fisher`` and the weights ``anchor`` to stay near."""

    lambda_: float
    fisher: FisherDiagonal
    anchor: LoRAWeights

    def __post_init__(self) -> None:
        lam = self.lambda_
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise InvalidParameterError(f"lambda_ must be a finite number >= 0, got {lam!r}")
        if not isinstance(self.fisher, FisherDiagonal):
            raise InvalidParameterError(f"fisher must be a FisherDiagonal, got {type(self.fisher).__name__}")
        if self.fisher.shape != (self.anchor.dimensions, self.anchor.rank):
            raise DimensionMismatchError(
                f"Fisher is for a (d, r) = {self.fisher.shape} adapter, the anchor is "
                f"{(self.anchor.dimensions, self.anchor.rank)}"
            )
        object.__setattr__(self, "lambda_", float(lam))

    def check_matches(self, dimensions: int, rank: int) -> None:
        """Refuse to constrain an adapter of another shape than the anchor's."""
        if (dimensions, rank) != self.fisher.shape:
            raise DimensionMismatchError(
                f"EWC anchor is a (d, r) = {self.fisher.shape} adapter, the trained one is {(dimensions, rank)}"
            )


@dataclass(frozen=True)
class LoRAConfig:
    """Hyper-parameters of :func:`train_lora`.

    ``alpha`` sets the base variant's scale ``alpha / rank`` (ignored by ``micro``); ``temperature`` is the
    contrastive softmax temperature over cosine similarities; ``init_std`` the standard deviation of the
    random ``down`` matrix (``up`` starts at zero).
    """

    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 5e-3
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    temperature: float = 0.05
    variant: Variant = "base"
    init_std: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int("rank", self.rank)
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size, minimum=2)  # in-batch negatives need a second step
        check_positive_int("seed", self.seed, minimum=0)
        for name in ("alpha", "learning_rate", "temperature", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise InvalidParameterError(f"{name} must be a finite number > 0, got {value!r}")
        if self.variant not in ("base", "micro"):
            raise InvalidParameterError(f"variant must be 'base' or 'micro', got {self.variant!r}")
        if self.variant == "micro" and self.rank > 2:
            raise InvalidParameterError(f"MicroLoRA has rank 1 or 2, got rank {self.rank}; use variant='base'")

    @property
    def scale(self) -> float:
        """The factor in front of ``(x @ down) @ up``."""
        return 1.0 / math.sqrt(self.rank) if self.variant == "micro" else float(self.alpha) / self.rank

    def check_dimensions(self, dimensions: int) -> None:
        """Refuse a rank larger than the embedding dimension (a low-rank adapter needs r <= d)."""
        if self.rank > dimensions:
            raise InvalidParameterError(
                f"LoRA rank {self.rank} is larger than the embedding dimension {dimensions}"
            )


@dataclass(frozen=True)
class LoRAWeights:
    """A trained adapter: ``down`` (d, r), ``up`` (r, d) float32 and ``scale``.

    ``consolidation`` is set by :func:`~.ewc.apply_ewc`: the EWC anchor and Fisher diagonal that later
    training (``train_lora(..., base=these)``) must respect.
    """

    down: np.ndarray
    up: np.ndarray
    scale: float
    variant: Variant = "base"
    consolidation: EWCConfig | None = None

    def __post_init__(self) -> None:
        down = np.ascontiguousarray(self.down, dtype=np.float32)
        up = np.ascontiguousarray(self.up, dtype=np.float32)
        if down.ndim != 2 or up.ndim != 2 or down.shape[1] != up.shape[0] or down.shape[0] != up.shape[1]:
            raise DimensionMismatchError(
                f"LoRA matrices do not fit together: down {down.shape}, up {up.shape} (expected (d, r) and (r, d))"
            )
        if not (np.isfinite(down).all() and np.isfinite(up).all()):
            raise InvalidParameterError("LoRA weights hold NaN or inf")
        object.__setattr__(self, "down", down)
        object.__setattr__(self, "up", up)
        object.__setattr__(self, "scale", float(self.scale))

    @property
    def dimensions(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.down.shape[0])

    @property
    def rank(self) -> int:
        """Adapter rank ``r``."""
        return int(self.down.shape[1])

    def delta(self) -> np.ndarray:
        """The dense (d, d) update ``scale * down @ up`` (so ``W' = I + delta()``)."""
        return self.scale * (self.down @ self.up)

    def to_bytes(self) -> bytes:
        """Serialize into the library's checksummed container (kind ``lora-weights``)."""
        meta: dict[str, Any] = {"scale": self.scale, "variant": self.variant, "dimensions": self.dimensions,
                                "rank": self.rank, "consolidated": self.consolidation is not None}
        arrays = {"down": self.down, "up": self.up}
        if self.consolidation is not None:
            c = self.consolidation
            meta.update(lambda_=float(c.lambda_), fisher_samples=int(c.fisher.n_samples))
            arrays.update(fisher_down=c.fisher.down, fisher_up=c.fisher.up,
                          anchor_down=c.anchor.down, anchor_up=c.anchor.up)
        return container.dumps(LORA_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> LoRAWeights:
        """Inverse of :meth:`to_bytes`; a truncated, tampered or inconsistent blob raises CorruptIndexError."""
        meta, arrays = container.loads(blob, LORA_KIND)
        try:
            weights = cls(arrays["down"], arrays["up"], float(meta["scale"]), meta["variant"])
            if weights.variant not in ("base", "micro"):
                raise ValueError(f"unknown variant {weights.variant!r}")
            if meta["consolidated"]:
                anchor = cls(arrays["anchor_down"], arrays["anchor_up"], weights.scale, weights.variant)
                fisher = FisherDiagonal(arrays["fisher_down"], arrays["fisher_up"], int(meta["fisher_samples"]))
                weights = replace(weights, consolidation=EWCConfig(float(meta["lambda_"]), fisher, anchor))
        except (KeyError, TypeError, ValueError) as exc:  # our own errors derive from ValueError too
            raise CorruptIndexError(f"LoRA weights blob is not consistent: {exc}") from None
        return weights
