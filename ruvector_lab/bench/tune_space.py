"""What the autotuner searches: index configurations (backend, M, ef_construction, codec, re-rank depth).

A :class:`TuneSpace` is the discretised space (lists of values, so the same space can be swept as a full grid);
:func:`candidates` expands it into every :class:`Candidate` that this machine can build for a dataset's width and
metric, using the backend registry's record of which codecs each backend serves in search and the backends' own
checks (a codec that cannot serve the metric, a product m that does not divide the width). ef_search is not part
of the space: the tuner finds it for every built index by bisection (:mod:`ruvector_lab.bench.trial`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..backends import names as backend_names
from ..backends import spec
from ..errors import InvalidParameterError, RuvectorLabError
from ..quantization import KINDS
from ..runtime import Runtime
from ..types import HnswConfig
from ..validation import MAX_EF, MAX_M, check_positive_int
from . import results

log = logging.getLogger(__name__)

#: the graph backends the tuner searches by default: the native tier (exact scans have no parameters to tune)
DEFAULT_BACKENDS: tuple[str, ...] = ("faiss", "hnswlib", "ruvector", "usearch")


@dataclass(frozen=True)
class Candidate:
    """One index configuration the tuner can build: ``quantization`` is ``'none'`` or a codec spec without its
    re-rank part (``'scalar'``, ``'product-m48'``); ``rerank`` is the number of graph candidates re-scored with
    the float vectors (0: none; quantized indexes only)."""

    backend: str
    m: int
    ef_construction: int
    quantization: str = "none"
    rerank: int = 0

    @property
    def spec(self) -> str:
        """The pipeline's quantization spec of this configuration: ``none``, ``scalar``, ``scalar-r40``."""
        if self.quantization == "none":
            return "none"
        return f"{self.quantization}-r{self.rerank}" if self.rerank else self.quantization

    @property
    def label(self) -> str:
        """A short human name: ``faiss M16 efc128 scalar-r40``."""
        return f"{self.backend} M{self.m} efc{self.ef_construction} {self.spec}"

    def config(self, dimensions: int, metric: str, ef_search: int = 50) -> HnswConfig:
        """The :class:`HnswConfig` that builds this configuration (``ef_search`` as given)."""
        from .runner import parse_quantization

        kwargs: dict[str, Any] = {"dimensions": dimensions, "metric": metric, "m": self.m,
                                  "ef_construction": self.ef_construction, "ef_search": ef_search}
        if self.quantization != "none":
            kwargs["quantization"] = parse_quantization(self.quantization, dimensions)
            kwargs["rerank"] = self.rerank or None
        return HnswConfig(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain values: backend, m, ef_construction, quantization, rerank."""
        return {"backend": self.backend, "m": int(self.m), "ef_construction": int(self.ef_construction),
                "quantization": self.quantization, "rerank": int(self.rerank)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Candidate:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(str(values["backend"]), int(values["m"]), int(values["ef_construction"]),
                       str(values.get("quantization", "none")), int(values.get("rerank", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"not a tuner candidate: {values!r} ({exc})") from None


@dataclass(frozen=True)
class TuneSpace:
    """The discretised search space. ``quantization`` lists codec kinds (``none`` and any of the quantization
    package's kinds); each backend is offered only those it serves in search. ``pq_m`` lists product-quantization
    subspace counts (empty: d/8); ``rerank`` the re-rank depths offered to quantized indexes (0: none)."""

    backends: tuple[str, ...] = DEFAULT_BACKENDS
    m: tuple[int, ...] = (8, 16, 32)
    ef_construction: tuple[int, ...] = (64, 128, 256)
    quantization: tuple[str, ...] = ("none",)
    pq_m: tuple[int, ...] = ()
    rerank: tuple[int, ...] = (40,)
    excluded: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("backends", "m", "ef_construction", "quantization", "pq_m", "rerank"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise InvalidParameterError(f"TuneSpace.{name} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.backends or not self.m or not self.ef_construction or not self.quantization:
            raise InvalidParameterError("TuneSpace needs at least one backend, M, ef_construction and quantization")
        known = backend_names()
        for backend in self.backends:
            if backend not in known:
                raise InvalidParameterError(f"unknown backend {backend!r}; known: {', '.join(known)}")
        for kind in self.quantization:
            if kind != "none" and kind not in KINDS:
                raise InvalidParameterError(f"unknown quantization {kind!r}; expected none or one of "
                                            f"{', '.join(KINDS)}")
        for m in self.m:
            check_positive_int("M", m, minimum=2, maximum=MAX_M)
        for efc in self.ef_construction:
            check_positive_int("ef_construction", efc, maximum=MAX_EF)
        for pq_m in self.pq_m:
            check_positive_int("pq_m", pq_m)
        for rerank in self.rerank:
            check_positive_int("rerank", rerank, minimum=0, maximum=MAX_EF)
        if not self.rerank and any(kind != "none" for kind in self.quantization):
            raise InvalidParameterError("TuneSpace.rerank is empty but quantized codecs are searched: list the "
                                        "re-rank depths (0 for none)")

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (the study's identity and the result's record of what was searched)."""
        return {"backends": list(self.backends), "m": [int(v) for v in self.m],
                "ef_construction": [int(v) for v in self.ef_construction], "quantization": list(self.quantization),
                "pq_m": [int(v) for v in self.pq_m], "rerank": [int(v) for v in self.rerank]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TuneSpace:
        """A space from a params.yaml ``tune.space`` mapping (missing keys take the defaults)."""
        if not isinstance(values, dict):
            raise InvalidParameterError(f"tune.space must be a mapping, got {values!r}")
        unknown = set(values) - {"backends", "m", "ef_construction", "quantization", "pq_m", "rerank"}
        if unknown:
            raise InvalidParameterError(f"unknown tune.space keys: {sorted(unknown)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


def codec_specs(space: TuneSpace, backend: str, dimensions: int) -> list[str]:
    """The codec specs (no re-rank part) of ``space`` that ``backend`` serves in search, ``none`` first."""
    served = spec(backend).codecs
    out = []
    for kind in space.quantization:
        if kind == "none":
            out.append("none")
        elif kind in served:
            if kind == "product":
                for m in space.pq_m or (max(1, dimensions // 8),):
                    out.append(f"product-m{m}")
            else:
                out.append(kind)
    return list(dict.fromkeys(out))


def candidates(space: TuneSpace, dimensions: int, metric: str) -> tuple[list[Candidate], dict[str, str]]:
    """Every configuration of ``space`` this machine can build for vectors of ``dimensions`` under ``metric``,
    and, for each backend or codec left out, why (backend unavailable, codec refused for this metric or width)."""
    out: list[Candidate] = []
    excluded: dict[str, str] = {}
    for backend in space.backends:
        try:
            Runtime.require(backend)
        except RuvectorLabError as exc:
            excluded[backend] = str(exc)
            continue
        for codec in codec_specs(space, backend, dimensions):
            probe = Candidate(backend, space.m[0], space.ef_construction[0], codec,
                              space.rerank[0] if codec != "none" else 0)
            try:
                Runtime.serving_class(backend, probe.config(dimensions, metric))
            except RuvectorLabError as exc:
                excluded[f"{backend}/{codec}"] = str(exc)
                continue
            reranks = (0,) if codec == "none" else tuple(dict.fromkeys(space.rerank))
            out += [Candidate(backend, m, efc, codec, rerank) for m in dict.fromkeys(space.m)
                    for efc in dict.fromkeys(space.ef_construction) for rerank in reranks]
    for key, reason in excluded.items():
        log.info("tuner: %s left out: %s", key, reason)
    return out, excluded


def spec_key(candidate: Candidate) -> str:
    """A file-safe key of a candidate: ``faiss-M16-efc128-scalar-r40``."""
    key = results.build_key(candidate.m, candidate.ef_construction, candidate.spec)
    return results.check_component(f"{candidate.backend}-{key}", "candidate")
