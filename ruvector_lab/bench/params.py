"""Read the pipeline's params.yaml (or a profile such as pipelines/params-tiny.yaml) into the harness' settings.

One place for every sweep: datasets and their maker arguments, the backends to try, build parameters (M,
ef_construction, quantization), query parameters (ef_search), codecs, the ADR suite's sizes. See params.yaml for
the keys and their meaning. The settings objects are read where they are defined (``runner.run_settings``,
``adr.adr_settings``), so reading params does not import the measuring code (and a stage that only reads params
does not depend on it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError


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


def ef_searches(params: dict[str, Any]) -> list[int]:
    """The query sweep's ef_search values, ascending."""
    values = section(params, "query").get("ef_search", [10, 20, 40, 80, 160, 320])
    if not isinstance(values, list) or not values:
        raise InvalidParameterError("params query.ef_search must be a non-empty list of integers")
    return sorted(int(v) for v in values)
