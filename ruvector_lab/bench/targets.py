"""ADR-006's performance targets ("Decision Drivers: Performance Requirements") and the verdict on a measurement.

The ADR gives a target latency per operation; HNSW insert and distance have none and are reported without a
verdict. A case whose capability is not available here gets no verdict either: it is "not available", never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameterError


@dataclass(frozen=True)
class Target:
    """One ADR target: ``case`` name, the latency bound in ms (per call), and the ADR's wording."""

    case: str
    max_ms: float | None
    adr_text: str


#: the ADR's cases (the seed's ``WasmBenchmarks`` plus pattern match), in report order
TARGETS: dict[str, Target] = {
    t.case: t
    for t in (
        Target("embed_single", 10.0, "Embed single text < 10ms"),
        Target("embed_batch_32", 100.0, "Embed batch (32) < 100ms"),
        Target("hnsw_insert", None, "HNSW insert (no ADR target)"),
        Target("hnsw_search_k10", 5.0, "HNSW search k=10 < 5ms"),
        Target("distance", None, "distance (no ADR target)"),
        Target("batch_distance_10k", None, "batch distance, 1 query x 10k rows (no ADR target)"),
        Target("quantize", 1.0, "Quantize vector < 1ms"),
        Target("pattern_match", 20.0, "Pattern match < 20ms"),
    )
}


#: ADR-006 "Prefers native bindings when available (2-5x faster)": WASM's slowdown against native, low and high
NATIVE_SPEEDUP: tuple[float, float] = (2.0, 5.0)
NATIVE_SPEEDUP_TEXT = "Prefers native bindings when available (2-5x faster)"

#: separates an ADR case from the conditions of a variant of it (``embed_batch_32:int8:2t:mixed``)
VARIANT_SEP = ":"


def variant_case(case: str, *conditions: object) -> str:
    """The name of ``case`` measured under other ``conditions`` (precision, threads, texts): judged against the
    same ADR target, reported beside the canonical case, never counted in a backend's verdicts."""
    if case not in TARGETS:
        raise InvalidParameterError(f"unknown ADR case {case!r}; known: {', '.join(TARGETS)}")
    return VARIANT_SEP.join([case, *(str(c) for c in conditions)])


def base_case(case: str) -> str:
    """The ADR case a (variant) case name is judged against (``embed_batch_32:int8:2t:mixed``: embed_batch_32)."""
    return case.split(VARIANT_SEP, 1)[0]


def is_variant(case: str) -> bool:
    """True for a variant name made by :func:`variant_case`."""
    return VARIANT_SEP in case


def verdict(case: str, latency_ms: float | None) -> str:
    """'pass' if ``latency_ms`` is under the case's target, 'fail' if not, 'no target' for cases without one,
    'not available' when there is no measurement. A variant is judged against its base case's target."""
    case = base_case(case)
    if case not in TARGETS:
        raise InvalidParameterError(f"unknown ADR case {case!r}; known: {', '.join(TARGETS)}")
    if latency_ms is None:
        return "not available"
    bound = TARGETS[case].max_ms
    if bound is None:
        return "no target"
    return "pass" if latency_ms < bound else "fail"
