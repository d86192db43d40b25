"""Read the pipeline's params.yaml (or a profile such as pipelines/params-tiny.yaml) into the harness' settings.

One place for every sweep: datasets and their maker arguments, the backends to try, build parameters (M,
ef_construction, quantization), query parameters (ef_search), codecs, the ADR suite's sizes. See params.yaml for
the keys and their meaning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError
from .adr import AdrSettings
from .runner import RunSettings, auto_threads


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """The parsed YAML file; :class:`InvalidParameterError` if it is missing or not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"no params file at {path}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise InvalidParameterError(f"{path} must hold a mapping at the top level")
    return data


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """``params[name]`` as a dict ({} when absent); anything else is refused."""
    value = params.get(name) or {}
    if not isinstance(value, dict):
        raise InvalidParameterError(f"params section {name!r} must be a mapping, got {type(value).__name__}")
    return value


def dataset_spec(params: dict[str, Any], name: str) -> dict[str, Any]:
    """The maker arguments of dataset ``name`` with its name filled in."""
    specs = section(params, "datasets")
    if name not in specs:
        from .datasets import SOURCES  # here only: the readers are not needed to parse params

        raise InvalidParameterError(
            f"dataset {name!r} is not in params 'datasets'; known: {', '.join(specs) or 'none'}. To add it, put "
            f"`{name}: {{source: SOURCE, ...}}` under datasets (SOURCE one of {', '.join(SOURCES)}; README, "
            f"Benchmarks) and list it in bench.datasets. Then run the stages in this order: `ruvector-lab data "
            f"{name}` -> `ruvector-lab groundtruth {name}` -> `ruvector-lab build {name} BACKEND` / `ruvector-lab "
            f"quantize {name}` / `ruvector-lab adr` -> `ruvector-lab report`; or all of them with `dvc repro`"
        )
    return {"name": name, **(specs[name] or {})}


def run_settings(params: dict[str, Any], force: bool = False) -> RunSettings:
    """The measurement settings of the build and query stages (section ``bench`` plus ``query.k``)."""
    bench = section(params, "bench")
    query = section(params, "query")
    defaults = RunSettings()
    cap = bench.get("build_repeats_max_train")
    return RunSettings(
        n_queries=int(bench.get("n_queries", defaults.n_queries)),
        repeats=int(bench.get("repeats", defaults.repeats)),
        warmup=int(bench.get("warmup", defaults.warmup)),
        threads=thread_counts(bench.get("threads", list(defaults.threads))),
        build_threads=int(bench.get("build_threads", defaults.build_threads)),
        insert_chunk=int(bench.get("insert_chunk", defaults.insert_chunk)),
        k=int(query.get("k", defaults.k)),
        force=force or bool(bench.get("force", False)),
        flat_repeats=int(bench["flat_repeats"]) if bench.get("flat_repeats") is not None else None,
        max_train={str(k): int(v) for k, v in (bench.get("max_train") or {}).items()},
        build_repeats=int(bench.get("build_repeats", defaults.build_repeats)),
        build_repeats_max_train=int(cap) if cap is not None else None,
        memory=bool(bench.get("memory", defaults.memory)),
        noise_threshold=float(bench.get("noise_threshold", defaults.noise_threshold)),
    )


def thread_counts(value: Any) -> tuple[int, ...]:
    """``bench.threads``: a list of counts, or ``auto`` (1, powers of two, and every usable core)."""
    if value == "auto":
        return auto_threads()
    if not isinstance(value, list) or not value:
        raise InvalidParameterError(f"params bench.threads must be 'auto' or a non-empty list of integers: {value!r}")
    counts = tuple(sorted({int(t) for t in value}))
    if counts[0] < 1:
        raise InvalidParameterError(f"params bench.threads must be >= 1, got {value!r}")
    return counts


def ef_searches(params: dict[str, Any]) -> list[int]:
    """The query sweep's ef_search values, ascending."""
    values = section(params, "query").get("ef_search", [10, 20, 40, 80, 160, 320])
    if not isinstance(values, list) or not values:
        raise InvalidParameterError("params query.ef_search must be a non-empty list of integers")
    return sorted(int(v) for v in values)


def adr_settings(params: dict[str, Any]) -> AdrSettings:
    """The ADR suite's settings (section ``adr``; unknown keys refused, 'dataset' is read separately)."""
    adr = dict(section(params, "adr"))
    adr.pop("dataset", None)
    known = set(AdrSettings.__dataclass_fields__)
    unknown = set(adr) - known
    if unknown:
        raise InvalidParameterError(f"unknown params adr keys {sorted(unknown)}; known: {sorted(known)}")
    return AdrSettings(**adr)
