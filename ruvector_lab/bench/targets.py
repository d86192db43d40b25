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


def verdict(case: str, latency_ms: float | None) -> str:
    """'pass' if ``latency_ms`` is under the case's target, 'fail' if not, 'no target' for cases without one,
    'not available' when there is no measurement."""
    if case not in TARGETS:
        raise InvalidParameterError(f"unknown ADR case {case!r}; known: {', '.join(TARGETS)}")
    if latency_ms is None:
        return "not available"
    bound = TARGETS[case].max_ms
    if bound is None:
        return "no target"
    return "pass" if latency_ms < bound else "fail"
