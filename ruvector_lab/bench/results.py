"""Where results live and what they hold: one JSON file per run under a path derived from its parameters.

The notebooks and the report read these files; their schemas are stable (a change bumps the ``schema`` tag).

Layout under the results root (``data/results`` in the pipeline)::

    runs/<dataset>/<backend>/<build-key>/build.json            one build configuration (schema ruvector-lab/build@2)
    runs/<dataset>/<backend>/<build-key>/query-ef<ef>-k<k>.json one query setting     (schema ruvector-lab/query@3)
    runs/<dataset>/<backend>/<build-key>/perquery/query-ef<ef>-k<k>-b<build>.h5
                                                     every query's ids and true distances (ruvector-lab/perquery@1)
    quant/<dataset>/<codec-key>.json                            one codec sweep   (schema ruvector-lab/quant@1)
    adr/<backend>.json, adr/common.json                         the ADR-006 suite (schema ruvector-lab/adr@1)

``<build-key>`` is ``M<m>-efc<ef_construction>-<quantization>`` (quantization ``none`` or a spec
``kind[-m<M>][-r<R>]``: ``scalar``, ``int4``, ``binary``, ``rabitq``, ``product-m48``, ``scalar-r40`` with 40
candidates re-scored exactly); ``<codec-key>`` is the spec alone. Quantized HNSW builds of the quantize stage live
under ``qhnsw/<dataset>/runs/...`` with the same schemas.

Every file holds ``schema``, ``status`` (``'ok'``; ``'not available'`` with a ``reason``: a backend or codec that
is absent here is recorded as absent, never faked; or ``'skipped'`` with a ``reason``, for a build the params'
``bench.max_train`` budget leaves out), ``fingerprint`` (parameters, the dataset's content hash, library versions
and a hash of the source files the measurement runs through: a finished run with the same fingerprint is skipped
unless forced, so an edit to one backend repeats only that backend's runs, and new vectors under an old name
repeat every run on them), ``code`` (a hash of the whole library, for provenance) and ``environment`` (library
versions, CPU model, cores, memory; see :func:`ruvector_lab.bench.env.environment`).

The fields of each schema are declared as data (JSON Schema) in :mod:`ruvector_lab.bench.schemas`, which every
reader validates against; :mod:`ruvector_lab.bench.tables` reads the files into polars frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import container
from ..errors import InvalidParameterError

SCHEMA_BUILD = "ruvector-lab/build@2"
SCHEMA_QUERY = "ruvector-lab/query@3"
SCHEMA_QUANT = "ruvector-lab/quant@1"
SCHEMA_ADR = "ruvector-lab/adr@1"

_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_component(value: str, what: str) -> str:
    """A path component made only of letters, digits, '-', '_' and '.', and not '.' or '..'."""
    if not isinstance(value, str) or not value or set(value) - _SAFE or value in {".", ".."}:
        raise InvalidParameterError(f"{what} {value!r} must be letters, digits, '-', '_' or '.'")
    return value


def build_key(m: int, ef_construction: int, quantization: str = "none") -> str:
    """``M16-efc100-none``: the folder of one build's results."""
    return f"M{int(m)}-efc{int(ef_construction)}-{check_component(quantization, 'quantization')}"


#: spec words that set a codec's rotation or graph (``product-m48-opq``, ``rabitq-norot``, ``scalar-gfloat-r40``)
SPEC_WORDS: dict[str, tuple[str, str]] = {"opq": ("rotation", "opq"), "norot": ("rotation", "none"),
                                          "gfloat": ("graph", "float")}


@dataclass(frozen=True)
class SpecFields:
    """The parts of a quantization spec: kind, PQ subspaces or subspace width and bits (None: the defaults),
    rotation (None: the kind's default), graph and the HNSW re-rank count."""

    kind: str
    m: int | None = None
    width: int | None = None
    bits: int | None = None
    rotation: str | None = None
    graph: str = "codes"
    rerank: int = 0


def spec_fields(spec: str) -> SpecFields:
    """Parse ``kind[-m<M>|-w<W>][-b<B>][-opq|-norot][-gfloat][-r<R>]``: ``'product-m96-b4-opq-r40'`` is PQ with
    96 subspaces of 4-bit codes under a learned rotation, 40 candidates re-ranked; ``'product-w4'`` PQ with
    subspaces 4 dimensions wide (m = d/4 on any data set); ``'rabitq-b4-gfloat'`` 4-bit RaBitQ whose HNSW graph
    is built from the float vectors. The one reader of the spec grammar."""
    kind, *parts = spec.split("-")
    values: dict[str, Any] = {}
    for part in parts:
        if part in SPEC_WORDS:
            field, value = SPEC_WORDS[part]
        elif part[:1] in ("m", "w", "b", "r") and part[1:].isdigit():
            field, value = {"m": "m", "w": "width", "b": "bits", "r": "rerank"}[part[0]], int(part[1:])
        else:
            raise InvalidParameterError(
                f"quantization spec {spec!r}: expected kind[-m<M>|-w<W>][-b<B>][-opq|-norot][-gfloat][-r<R>], "
                f"got part {part!r}")
        if field in values:
            raise InvalidParameterError(f"quantization spec {spec!r} sets {field} twice")
        values[field] = value
    if "m" in values and "width" in values:
        raise InvalidParameterError(f"quantization spec {spec!r}: give -m<M> or -w<W>, not both")
    return SpecFields(kind=kind, **values)


def split_spec(spec: str) -> tuple[str, int | None, int]:
    """``'product-m48-r40'`` -> ``('product', 48, 40)``: kind, PQ subspaces (None: default) and re-rank count."""
    fields = spec_fields(spec)
    return fields.kind, fields.m, fields.rerank


def run_dir(root: str | os.PathLike[str], dataset: str, backend: str, key: str) -> Path:
    """The folder holding one build's build.json and its query runs."""
    return Path(root) / "runs" / check_component(dataset, "dataset") / check_component(backend, "backend") / key


def query_file(directory: Path, ef_search: int, k: int) -> Path:
    """The JSON of one query setting inside a build folder."""
    return directory / f"query-ef{int(ef_search)}-k{int(k)}.json"


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the library's source files except the report and CLI (which do not change measurements)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel in {"bench/report.py", "cli.py"}:
            continue
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def measured_code_hash(backend: str | None = None, quantized: bool = False) -> str:
    """The code part of a run's fingerprint: a hash of the package files the measurement runs through, as
    :func:`ruvector_lab.bench.codedeps.measured_files` computes them from the import graph (a build and query sweep
    on ``backend``'s float class, and its quantized class when ``quantized``; ``backend=None``: a codec sweep).
    An edit elsewhere (another backend, the report) leaves it unchanged, so unrelated finished runs are not
    repeated; the same computation gives each dvc.yaml stage its deps. Computed once a process per argument pair:
    the code a process measures is the code it imported."""
    return _measured_code_hash(backend, bool(quantized))


@lru_cache(maxsize=32)
def _measured_code_hash(backend: str | None, quantized: bool) -> str:
    from . import codedeps

    return codedeps.measured_hash(backend, quantized)


def fingerprint(params: dict[str, Any], code: str = "") -> str:
    """Parameters, the versions of the measured libraries, whether the facade's C hot path is built and ``code``
    (a :func:`measured_code_hash`), as one short hex string: a finished run with the same fingerprint is not
    repeated unless forced."""
    from .env import facade_hot_path, library_versions

    blob = json.dumps({"params": params, "libraries": library_versions(), "hot_path": facade_hot_path(),
                       "code": code}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_json(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write ``record`` as indented JSON, atomically."""
    record = {**record, "code": code_hash()} if "schema" in record else record
    data = json.dumps(record, indent=1, sort_keys=True, default=_jsonable, allow_nan=True).encode()
    out = container.write_atomic(path, data + b"\n")
    os.chmod(out, 0o644)  # results are for reading by notebooks and other users, not secrets
    return out


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot store {type(value).__name__} in a result")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record at ``path``, or None if it is missing or unreadable (an interrupted run counts as not done)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(path: str | os.PathLike[str], fp: str) -> bool:
    """True when ``path`` holds a finished (status ok) run with fingerprint ``fp``."""
    record = read_json(path)
    return bool(record) and record.get("status") == "ok" and record.get("fingerprint") == fp


def collect(root: str | os.PathLike[str], pattern: str) -> list[dict[str, Any]]:
    """Every readable record under ``root`` matching the glob ``pattern``, each with its ``_path``."""
    out = []
    for path in sorted(Path(root).glob(pattern)):
        record = read_json(path)
        if record is not None:
            record["_path"] = str(path)
            out.append(record)
    return out
