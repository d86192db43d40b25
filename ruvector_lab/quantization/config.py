"""The configuration of a quantization codec: which kind, and the few numbers each kind needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import InvalidParameterError
from ..validation import MAX_PQ_M, MAX_SEED, MAX_TRAIN_SIZE, check_positive_int

Kind = Literal["scalar", "int4", "binary", "product", "rabitq"]
KINDS: tuple[str, ...] = get_args(Kind)

#: bits per dimension (scalar, int4, binary) or per subspace code (product: 256-centroid codebooks)
KIND_BITS: dict[str, int] = {"scalar": 8, "int4": 4, "binary": 1, "product": 8, "rabitq": 1}


@dataclass(frozen=True)
class QuantizationConfig:
    """How to compress vectors.

    ``kind``: ``'scalar'`` (uint8 per dimension with a per-vector min and scale, about 4x),
    ``'int4'`` (4 bits per dimension, per-vector min and scale, about 8x), ``'binary'`` (one sign bit per
    dimension, 32x), ``'product'`` (``m`` subspaces, each coded by one byte into a 256-centroid k-means
    codebook) or ``'rabitq'`` (RaBitQ: one bit per dimension after a random rotation, plus per-vector
    correction factors).
    ``m`` is used by ``'product'`` only and must divide the dimension. ``bits`` is fixed by the kind
    (8, 4, 1, 8, 1); leave it ``None`` or give that value. ``train_size`` caps the rows sampled to train
    codebooks (PQ, and the faiss indexes' quantizers) and ``seed`` makes sampling, k-means and RaBitQ's
    rotation reproducible. Upper bounds: ``m`` <= ``MAX_PQ_M``, ``train_size`` <= ``MAX_TRAIN_SIZE``, ``seed`` <=
    ``MAX_SEED`` (:mod:`ruvector_lab.validation`); a rabitq index also caps its width at ``MAX_RABITQ_DIMENSIONS``.
    """

    kind: Kind = "scalar"
    m: int = 8
    bits: int | None = None
    train_size: int = 25_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise InvalidParameterError(f"unknown quantization kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        # bounds from ruvector_lab.validation, the one place they are defined with their reasons
        check_positive_int("m", self.m, maximum=MAX_PQ_M)
        expected = KIND_BITS[self.kind]
        if self.bits is None:
            object.__setattr__(self, "bits", expected)  # frozen: fill the kind's fixed value once
        elif check_positive_int("bits", self.bits) != expected:
            raise InvalidParameterError(
                f"{self.kind} quantization uses {expected} bits, got bits={self.bits}"
            )
        object.__setattr__(self, "bits", int(self.bits))  # type: ignore[arg-type]
        check_positive_int("train_size", self.train_size, maximum=MAX_TRAIN_SIZE)
        check_positive_int("seed", self.seed, minimum=0, maximum=MAX_SEED)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return {"kind": self.kind, "m": int(self.m), "bits": int(self.bits),  # type: ignore[arg-type]
                "train_size": int(self.train_size), "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantizationConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are refused."""
        if not isinstance(values, dict):
            raise InvalidParameterError(f"a QuantizationConfig is rebuilt from a dict, got {type(values).__name__}")
        known = {"kind", "m", "bits", "train_size", "seed"}
        unknown = set(values) - known
        if unknown:
            raise InvalidParameterError(f"unknown QuantizationConfig fields: {sorted(unknown)}")
        return cls(**values)
