"""The configuration of a quantization codec: which kind, and the few numbers each kind needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import InvalidParameterError, QuantizationError
from ..validation import MAX_PQ_M, MAX_SEED, MAX_TRAIN_SIZE, check_positive_int

Kind = Literal["scalar", "int4", "binary", "product", "rabitq"]
KINDS: tuple[str, ...] = get_args(Kind)

#: the default bits per dimension (scalar, int4, binary, rabitq) or per subspace code (product)
KIND_BITS: dict[str, int] = {"scalar": 8, "int4": 4, "binary": 1, "product": 8, "rabitq": 1}
#: every bit width a kind accepts: PQ sub-codes index 16- or 256-centroid codebooks; RaBitQ's extended codes
#: (Gao et al., SIGMOD 2025) take 1 (the sign bit) to 8 bits per dimension
KIND_BIT_CHOICES: dict[str, tuple[int, ...]] = {
    "scalar": (8,), "int4": (4,), "binary": (1,), "product": (4, 8), "rabitq": tuple(range(1, 9)),
}
#: rotations each kind accepts, its default first: RaBitQ rotates at random (its estimator's guarantee needs
#: it; ``none`` is the variant that shows what the rotation does on data whose axes matter), PQ may learn one (OPQ)
KIND_ROTATIONS: dict[str, tuple[str, ...]] = {
    "scalar": ("none",), "int4": ("none",), "binary": ("none",), "product": ("none", "opq"),
    "rabitq": ("random", "none"),
}
Graph = Literal["codes", "float"]
#: what an HNSW graph over codes is built from: the codes' own distances, or the float vectors
GRAPHS: tuple[str, ...] = get_args(Graph)


@dataclass(frozen=True)
class QuantizationConfig:
    """How to compress vectors.

    ``kind``: ``'scalar'`` (uint8 per dimension with a per-vector min and scale, about 4x),
    ``'int4'`` (4 bits per dimension, per-vector min and scale, about 8x), ``'binary'`` (one sign bit per
    dimension, 32x), ``'product'`` (``m`` subspaces, each coded into a k-means codebook of ``2**bits``
    centroids: ``bits`` 8 (one byte per subspace, the default) or 4) or ``'rabitq'`` (RaBitQ: ``bits`` per
    dimension, 1 to 8, after a random rotation, plus per-vector correction factors; ``bits > 1`` is extended
    RaBitQ).
    ``m`` is used by ``'product'`` only and must divide the dimension. ``bits`` defaults to the kind's
    (:data:`KIND_BITS`); only product and rabitq accept others (:data:`KIND_BIT_CHOICES`).
    ``rotation``: ``None`` takes the kind's default; rabitq takes ``'random'`` (default) or ``'none'``, product
    ``'none'`` (default) or ``'opq'`` (a learned rotation, optimized product quantization); others ``'none'``.
    ``graph``: what an HNSW index over these codes builds its graph from, ``'codes'`` (the code distances,
    default) or ``'float'`` (the float vectors; the search still traverses code distances). Codecs and flat
    scans ignore it; a backend that cannot build from floats refuses it.
    ``train_size`` caps the rows sampled to train codebooks (PQ, OPQ, and the faiss indexes' quantizers) and
    ``seed`` makes sampling, k-means and rotations reproducible. Upper bounds: ``m`` <= ``MAX_PQ_M``,
    ``train_size`` <= ``MAX_TRAIN_SIZE``, ``seed`` <= ``MAX_SEED`` (:mod:`ruvector_lab.validation`); a rabitq index
    also caps its width at ``MAX_RABITQ_DIMENSIONS``.
    """

    kind: Kind = "scalar"
    m: int = 8
    bits: int | None = None
    train_size: int = 25_000
    seed: int = 0
    rotation: str | None = None
    graph: Graph = "codes"

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise InvalidParameterError(f"unknown quantization kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        # bounds from ruvector_lab.validation, the one place they are defined with their reasons
        check_positive_int("m", self.m, maximum=MAX_PQ_M)
        choices = KIND_BIT_CHOICES[self.kind]
        if self.bits is None:
            object.__setattr__(self, "bits", KIND_BITS[self.kind])  # frozen: fill the kind's default once
        elif check_positive_int("bits", self.bits) not in choices:
            raise InvalidParameterError(
                f"{self.kind} quantization takes bits in {{{', '.join(map(str, choices))}}}, got bits={self.bits}"
            )
        object.__setattr__(self, "bits", int(self.bits))  # type: ignore[arg-type]
        rotations = KIND_ROTATIONS[self.kind]
        if self.rotation is None:
            object.__setattr__(self, "rotation", rotations[0])
        elif not isinstance(self.rotation, str) or self.rotation not in rotations:
            raise InvalidParameterError(
                f"{self.kind} quantization takes rotation in {{{', '.join(rotations)}}}, got {self.rotation!r}"
            )
        if not isinstance(self.graph, str) or self.graph not in GRAPHS:
            raise InvalidParameterError(f"graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}")
        check_positive_int("train_size", self.train_size, maximum=MAX_TRAIN_SIZE)
        check_positive_int("seed", self.seed, minimum=0, maximum=MAX_SEED)

    @property
    def is_plain(self) -> bool:
        """True when bits and rotation are the kind's defaults (what a backend serving only the kind holds)."""
        return self.bits == KIND_BITS[self.kind] and self.rotation == KIND_ROTATIONS[self.kind][0]

    def variant(self) -> str:
        """The non-default codec settings as text (``'4 bits'``, ``'rotation opq'``; ``''`` when plain)."""
        parts = []
        if self.bits != KIND_BITS[self.kind]:
            parts.append(f"{self.bits} bits")
        if self.rotation != KIND_ROTATIONS[self.kind][0]:
            parts.append(f"rotation {self.rotation}")
        return ", ".join(parts)

    def check_served(self, backend: str, why: str, *, float_graph: str | None = None) -> None:
        """Raise :class:`QuantizationError` naming ``backend`` unless it can serve this config: a backend that
        holds only the kind's default codes (``why`` says why) refuses other bits or rotations; one that cannot
        build its graph from floats passes ``float_graph`` (the reason) and refuses ``graph='float'``."""
        if not self.is_plain:
            raise QuantizationError(f"{backend} serves {self.kind} codes with the default bits and rotation "
                                    f"only, not {self.variant()}: {why}")
        if self.graph == "float" and float_graph is not None:
            raise QuantizationError(f"{backend} cannot build its graph from the float vectors (graph='float'): "
                                    f"{float_graph}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return {"kind": self.kind, "m": int(self.m), "bits": int(self.bits),  # type: ignore[arg-type]
                "train_size": int(self.train_size), "seed": int(self.seed), "rotation": self.rotation,
                "graph": self.graph}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantizationConfig:
        """Rebuild a config from :meth:`to_dict` output (files written before rotation and graph existed lack
        them: the defaults, which is what they held); unknown keys are refused."""
        if not isinstance(values, dict):
            raise InvalidParameterError(f"a QuantizationConfig is rebuilt from a dict, got {type(values).__name__}")
        known = {"kind", "m", "bits", "train_size", "seed", "rotation", "graph"}
        unknown = set(values) - known
        if unknown:
            raise InvalidParameterError(f"unknown QuantizationConfig fields: {sorted(unknown)}")
        return cls(**values)
