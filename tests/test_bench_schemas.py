"""The result schemas (ruvector_lab/bench/schemas.py): every kind of record the pipeline writes is accepted (synthetic
records, and every real file under data/results when the pipeline has run), and what is not a record of a known
schema is refused with ResultSchemaError naming the file and the tag: unknown or missing tags, malformed records,
per-query HDF5 files of the wrong layout."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from result_records import adr_record, build_record, quant_record, query_record

from ruvector_lab.bench import perquery, results, schemas
from ruvector_lab.errors import DatasetError, ResultSchemaError, RuvectorLabError

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "data" / "results"

GOOD = {
    "build ok": build_record(),
    "build flat": build_record("numpy", graph="flat", times=(0.02,)),
    "build skipped": build_record("wasm", status="skipped"),
    "build not available": build_record("ruvector", quantization="scalar-r40", status="not available"),
    "query": query_record(),
    "query flat": query_record("numpy", 10, 1.0, (200.0,), graph="flat", pool2=None, qps2=None),
    "query quantized": query_record("faiss", quantization="product-m4-r40"),
    "quant ok": quant_record(),
    "quant not available": quant_record("binary", status="not available"),
    "adr common": adr_record("common"),
    "adr backend": adr_record("faiss"),
    "adr not available": adr_record("wasm", "not available"),
}
TAG = {"build": results.SCHEMA_BUILD, "query": results.SCHEMA_QUERY, "quant": results.SCHEMA_QUANT,
       "adr": results.SCHEMA_ADR}


def _refusal(record, path="runs/x/y/M8-efc40-none/build.json", **kw) -> ResultSchemaError:
    with pytest.raises(ResultSchemaError) as info:
        schemas.validate(record, path, **kw)
    return info.value


# ------------------------------------------------------------------------------------------------- acceptance
def test_the_schemas_are_valid_draft_2020_12():
    schemas.check_schemas()
    for tag, schema in schemas.SCHEMAS.items():
        assert schema["$schema"] == schemas.DRAFT and schema["properties"]["schema"] == {"const": tag}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_synthetic_records_of_every_kind_and_status_are_accepted(name):
    assert schemas.validate(GOOD[name], "somewhere.json") == TAG[name.split()[0]]


def test_a_record_written_and_read_back_is_accepted(tmp_path):
    path = results.write_json(tmp_path / "build.json", build_record())  # adds the code hash
    assert schemas.validate(results.read_json(path), path) == results.SCHEMA_BUILD


@pytest.mark.skipif(not REAL.is_dir(), reason="no pipeline results under data/results (make repro)")
def test_every_real_result_file_matches_its_schema():
    # the autotuner's evaluation caches (tune/<dataset>/evals/) are its working files, not result records
    files = sorted(p for p in REAL.rglob("*.json") if not (p.parent.name == "evals" and "tune" in p.parts))
    tags = {schemas.validate(json.loads(p.read_text()), p) for p in files}
    assert tags <= set(schemas.SCHEMAS) and files
    h5 = sorted(REAL.rglob("*.h5"))
    assert {schemas.validate_hdf5(p) for p in h5} <= {perquery.SCHEMA_PERQUERY}


# ---------------------------------------------------------------------------------------------------- refusals
def test_unknown_or_missing_tags_are_refused_naming_file_and_tag():
    rec = build_record() | {"schema": "ruvector-lab/build@9"}
    err = _refusal(rec)
    assert isinstance(err, RuvectorLabError) and isinstance(err, ValueError)
    assert "build.json" in str(err) and "ruvector-lab/build@9" in str(err) and "known tags" in str(err)
    assert (err.path, err.tag) == ("runs/x/y/M8-efc40-none/build.json", "ruvector-lab/build@9")
    missing = {k: v for k, v in build_record().items() if k != "schema"}
    err = _refusal(missing)
    assert "no schema tag" in str(err) and err.tag is None
    assert "ruvector-lab/perquery@1" in str(_refusal({"schema": perquery.SCHEMA_PERQUERY, "status": "ok"}))
    assert "JSON object" in str(_refusal([1, 2, 3]))


def test_the_file_named_is_the_path_else_the_records_own():
    rec = build_record() | {"schema": "nope", "_path": "/results/runs/a/b/c/build.json"}
    assert str(_refusal(rec, path=None)).startswith("/results/runs/a/b/c/build.json:")
    assert "not read from a file" in str(_refusal({"schema": "nope"}, path=None))


def test_a_tag_of_another_kind_is_refused_where_one_kind_is_expected():
    err = _refusal(query_record(), expect=results.SCHEMA_BUILD)
    assert "ruvector-lab/query@3" in str(err) and "ruvector-lab/build@2 is expected" in str(err)
    assert schemas.validate(query_record(), expect=[results.SCHEMA_BUILD, results.SCHEMA_QUERY])


@pytest.mark.parametrize(("name", "mutate", "message"), [
    ("query", lambda r: r.pop("recall"), "'recall' is a required property"),
    ("query", lambda r: r["query"].update(k="10"), "'10' is not of type 'integer'"),
    ("query", lambda r: r["qps"].pop("1"), "'1' is a required property"),
    ("query", lambda r: r["qps"]["1"].update(median=None), "None is not of type 'number'"),
    ("query", lambda r: r["builds"].clear(), "should be non-empty"),
    ("build ok", lambda r: r.update(graph="tree"), "'tree' is not one of"),
    ("build ok", lambda r: r["build"].update(quantization="../up"), "does not match"),
    ("build ok", lambda r: r["bytes_per_vector"].update(analytic={"vectors": 1.0}), "is not valid under any"),
    ("build skipped", lambda r: r.pop("reason"), "'reason' is a required property"),
    ("build ok", lambda r: r.update(status="done"), "status 'done'"),
    ("quant ok", lambda r: r["rerank"][0].update(factor=0), "less than the minimum"),
    ("quant not available", lambda r: r.pop("spec"), "'spec' is a required property"),
    ("adr backend", lambda r: r.pop("tier"), "'tier' is a required property"),
    ("adr backend", lambda r: r["cases"]["hnsw_insert"]["protocols"]["adr"].update(verdict="meh"), "'meh'"),
    ("adr common", lambda r: r["cases"]["embed_single"].pop("reason"), "'reason' is a required property"),
])
def test_malformed_records_are_refused_with_the_jsonschema_message(name, mutate, message):
    rec = copy.deepcopy(GOOD[name])
    mutate(rec)
    err = _refusal(rec)
    assert message in str(err), str(err)
    assert err.tag == TAG[name.split()[0]] and "build.json" in str(err)


def test_a_refusal_says_where_in_the_record():
    rec = copy.deepcopy(GOOD["query"])
    rec["latency_ms"]["p99"] = "slow"
    assert "$.latency_ms.p99" in str(_refusal(rec))


# ------------------------------------------------------------------------------------------- perquery@1 (HDF5)
def _perquery_file(path: Path) -> Path:
    ids = np.arange(20, dtype=np.int64).reshape(4, 5)
    return perquery.write_query_results(path, ids, np.ones((4, 5), dtype=np.float32), np.ones(4), {"k": 5})


def test_a_per_query_file_of_the_writer_matches_its_layout(tmp_path):
    assert schemas.validate_hdf5(_perquery_file(tmp_path / "q.h5")) == perquery.SCHEMA_PERQUERY
    assert schemas.PERQUERY.tag == perquery.SCHEMA_PERQUERY
    assert {a.name for a in schemas.PERQUERY.arrays if a.required} == {"neighbors", "distances"}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.attrs.__setitem__("schema", "ruvector-lab/perquery@7"), "unknown schema tag"),
    (lambda f: f.attrs.__delitem__("schema"), "no schema tag"),
    (lambda f: f.attrs.__delitem__("run"), "lacks the root attribute"),
    (lambda f: f.__delitem__("distances"), "lacks the dataset 'distances'"),
    (lambda f: (f.__delitem__("distances"), f.create_dataset("distances", data=np.ones((4, 3)))), "does not match"),
    (lambda f: (f.__delitem__("neighbors"), f.create_dataset("neighbors", data=np.ones((4, 5)))), "kind 'i'"),
    (lambda f: (f.__delitem__("times"), f.create_dataset("times", data=np.ones(3))), "one value per row"),
])
def test_per_query_files_of_another_layout_are_refused(tmp_path, edit, message):
    path = _perquery_file(tmp_path / "q.h5")
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(ResultSchemaError, match=message) as info:
        schemas.validate_hdf5(path)
    assert str(path) in str(info.value)


def test_a_truncated_or_missing_per_query_file_is_not_readable(tmp_path):
    path = _perquery_file(tmp_path / "q.h5")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        schemas.validate_hdf5(path)
    with pytest.raises(DatasetError, match="no HDF5 result file"):
        schemas.validate_hdf5(tmp_path / "absent.h5")


# ------------------------------------------------------------------------------------------------------- tune@1
#: a study the autotuner wrote (ruvector_lab.bench.tune.write_result: 3 builds on wordnet-minilm-384, the grid)
TUNE_EXAMPLE = Path(__file__).resolve().parent / "fixtures" / "tune-recall-0.95.json"


def test_a_study_of_the_autotuner_is_accepted():
    from ruvector_lab.bench import tables, tune
    from ruvector_lab.bench.tune import SCHEMA_TUNE

    assert schemas.SCHEMA_TUNE == SCHEMA_TUNE and tuple(tune.OBJECTIVES) == tables.TUNE_OBJECTIVES  # kept in step
    record = json.loads(TUNE_EXAMPLE.read_text())
    assert schemas.validate(record, TUNE_EXAMPLE, expect=SCHEMA_TUNE) == SCHEMA_TUNE == "ruvector-lab/tune@1"
    # without the grid, without a recommendation, without a replay: still a study
    bare = copy.deepcopy(record) | {"grid": None}
    bare["recommended"]["memory"] = None
    assert schemas.validate(bare) == SCHEMA_TUNE
    record["grid"]["replay"] = {}
    assert schemas.validate(record) == SCHEMA_TUNE


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["recommended"]["qps"].pop("ef_search"), "'ef_search' is a required property"),
    (lambda r: r["recommended"].pop("memory"), "'memory' is a required property"),
    (lambda r: r["recommended"]["qps"]["verification"].pop("meets_target"), "'meets_target' is a required"),
    (lambda r: r["trials"][0].update(qps="fast"), "'fast' is not of type"),
    (lambda r: r["grid"].pop("qps_ratio"), "'qps_ratio' is a required property"),
    (lambda r: r["grid"]["replay"].pop("median_qps_ratio"), "is not valid under any"),
    (lambda r: r.update(target=1.5), "maximum"),
    (lambda r: r.update(objective="speed"), "'speed' is not one of"),
])
def test_a_broken_study_is_refused(mutate, message):
    record = json.loads(TUNE_EXAMPLE.read_text())
    mutate(record)
    err = _refusal(record, path="tune/d/recall-0.95.json")
    assert message in str(err), str(err)
    assert err.tag == "ruvector-lab/tune@1" and "recall-0.95.json" in str(err)
