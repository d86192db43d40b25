"""Bring your own data: vector files (.npy, TEXMEX .fvecs/.bvecs/.ivecs) and text corpora (lines, JSON Lines) as
benchmark datasets, every malformed input refused with a typed error, and the data -> groundtruth stages on them."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ruvector_lab.bench import datasets, groundtruth, params, sources
from ruvector_lab.bench.hdf5 import read_hdf5
from ruvector_lab.errors import DatasetError, InvalidParameterError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_vecs(path: Path, rows: np.ndarray, dtype: str, dims: list[int] | None = None) -> Path:
    """A TEXMEX file: each row as its int32 dimension (``dims`` overrides the written ones) then its values."""
    with open(path, "wb") as f:
        for i, row in enumerate(rows):
            f.write(np.int32(len(row) if dims is None else dims[i]).astype("<i4").tobytes())
            f.write(np.asarray(row, dtype=dtype).tobytes())
    return path


def make(**spec) -> datasets.Dataset:
    return datasets.make_dataset({"name": "mine", **spec})


def row_index(rows: np.ndarray) -> dict[bytes, int]:
    """Row bytes -> row number (the test data has no repeated rows)."""
    return {r.tobytes(): i for i, r in enumerate(np.asarray(rows, np.float32))}


# -------------------------------------------------------------------------------------------------- .npy files
def test_npy_holds_queries_out_of_the_base_seeded_and_disjoint(tmp_path):
    x = np.random.default_rng(0).standard_normal((200, 8))  # float64 on disk: converted to float32
    np.save(tmp_path / "base.npy", x)
    ds = make(source="npy", path=str(tmp_path / "base.npy"), metric="euclidean", n_queries=20)
    assert ds.train.dtype == ds.test.dtype == np.float32
    assert ds.train.shape == (180, 8) and ds.test.shape == (20, 8) and ds.metric == "euclidean"
    where = row_index(x)
    test_rows = [where[r.tobytes()] for r in ds.test]
    train_rows = [where[r.tobytes()] for r in ds.train]
    assert not set(test_rows) & set(train_rows) and sorted(test_rows + train_rows) == list(range(200))
    assert train_rows == sorted(train_rows) and test_rows == sorted(test_rows)  # file order kept
    again = make(source="npy", path=str(tmp_path / "base.npy"), metric="euclidean", n_queries=20)
    assert np.array_equal(again.test, ds.test)
    other = make(source="npy", path=str(tmp_path / "base.npy"), metric="euclidean", n_queries=20, seed=7)
    assert not np.array_equal(other.test, ds.test)
    assert ds.attrs["queries_from"] == "held-out" and ds.attrs["rows_in_file"] == 200
    assert ds.attrs["dtype_in_file"] == "float64" and ds.attrs["path"] == str((tmp_path / "base.npy").resolve())
    # n_base: the first rows of the base once the queries are held out
    small = make(source="npy", path=str(tmp_path / "base.npy"), metric="euclidean", n_queries=20,
                 n_base=50)
    assert np.array_equal(small.train, ds.train[:50]) and np.array_equal(small.test, ds.test)


def test_npy_with_a_query_file_takes_first_rows_and_refuses_too_many(tmp_path):
    rng = np.random.default_rng(1)
    base, queries = rng.integers(-100, 100, (60, 5)), rng.standard_normal((10, 5)).astype(np.float16)
    np.save(tmp_path / "b.npy", base)
    np.save(tmp_path / "q.npy", queries)
    spec = {"source": "npy", "path": str(tmp_path / "b.npy"), "queries": str(tmp_path / "q.npy"), "metric": "cosine"}
    ds = make(**spec)
    assert np.array_equal(ds.train, base.astype(np.float32)) and np.array_equal(ds.test, queries.astype(np.float32))
    cut = make(**spec, n_queries=4, n_base=25)
    assert np.array_equal(cut.train, ds.train[:25]) and np.array_equal(cut.test, ds.test[:4])
    with pytest.raises(InvalidParameterError, match=r"n_queries=11 asks for more rows than the 10 that .*q.npy"):
        make(**spec, n_queries=11)
    with pytest.raises(InvalidParameterError, match=r"n_base=61 asks for more rows than the 60 that .*b.npy"):
        make(**spec, n_base=61)
    held = {"source": "npy", "path": str(tmp_path / "b.npy"), "metric": "euclidean"}
    with pytest.raises(InvalidParameterError, match=r"n_queries=60 asks to hold out 60 queries, but .* has 60 rows"):
        make(**held, n_queries=60)
    too_many = r"n_base=51 asks for more rows than the 50 that .*b.npy \(less the 10 held-out queries\)"
    with pytest.raises(InvalidParameterError, match=too_many):
        make(**held, n_queries=10, n_base=51)
    with pytest.raises(InvalidParameterError, match="give n_queries"):
        make(**held)
    np.save(tmp_path / "q3.npy", np.ones((2, 3), np.float32))
    with pytest.raises(DatasetError, match=r"3 dimensions, the base vectors in .* 5"):
        make(**{**spec, "queries": str(tmp_path / "q3.npy")})


@pytest.mark.parametrize(("content", "problem"), [
    (np.array([{"a": 1}, None], dtype=object).reshape(2, 1), "Python objects"),
    (np.zeros(5, np.float32), r"shape \(5,\)"),
    (np.zeros((2, 3, 4), np.float32), r"shape \(2, 3, 4\)"),
    (np.zeros((4, 3), bool), "bool values"),
    (np.zeros((4, 3), np.complex64), "complex64 values"),
    (np.zeros((0, 3), np.float32), r"no vectors \(shape \(0, 3\)\)"),
    (np.array([[1.0, 2.0], [np.nan, 0.0]]), "vector 1 holds nan"),
    (np.array([[1.0, np.inf]], np.float32), "vector 0 holds inf"),
    (np.array([[1.0, 1e300]]), r"vector 0 holds 1e\+300, beyond the range of float32 \(the file holds float64"),
    (np.array([[1, 2**24 + 1]], np.int64), "vector 0 holds the integer 16777217, beyond 2\\*\\*24"),
])
def test_npy_content_that_cannot_be_a_float32_dataset_is_refused(tmp_path, content, problem):
    path = tmp_path / "bad.npy"
    np.save(path, content, allow_pickle=True)
    # queries from a good file, so a bad value is found wherever it sits in the base
    np.save(tmp_path / "q.npy", np.ones((1, content.shape[-1] if content.ndim else 1), np.float32))
    with pytest.raises(DatasetError, match=problem) as err:
        make(source="npy", path=str(path), queries=str(tmp_path / "q.npy"), metric="euclidean")
    assert str(path) in str(err.value)


def test_npy_files_that_are_not_arrays_are_refused(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.ones((50, 4), np.float32))
    cases = {"empty.npy": b"", "cut.npy": good.read_bytes()[:-7], "pickle.npy": pickle.dumps([[1.0, 2.0]]),
             "text.npy": b"1 2 3\n4 5 6\n"}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    np.savez(tmp_path / "arch.npz", a=np.ones((3, 2)))
    os.replace(tmp_path / "arch.npz", tmp_path / "arch.npy")
    for name, problem in (("empty.npy", "is empty"), ("cut.npy", "not a readable .npy"),
                          ("pickle.npy", r"not a .npy file \(a pickle, which is never loaded\)"),
                          ("text.npy", r"not a .npy file \(no numpy.save header\)"),
                          ("arch.npy", r"an \.npz archive of the arrays \['a'\]")):
        with pytest.raises(DatasetError, match=problem) as err:
            make(source="npy", path=str(tmp_path / name), metric="euclidean", n_queries=1)
        assert name in str(err.value)


def test_vector_parameters_are_checked(tmp_path):
    np.save(tmp_path / "b.npy", np.ones((5, 2), np.float32))
    path = str(tmp_path / "b.npy")
    with pytest.raises(InvalidParameterError, match=r"needs 'metric'.*cosine, euclidean, dot_product"):
        make(source="npy", path=path, n_queries=1)
    with pytest.raises(InvalidParameterError, match="unknown metric 'angular'; expected one of cosine"):
        make(source="npy", path=path, metric="angular", n_queries=1)
    with pytest.raises(InvalidParameterError, match="needs 'path'"):
        make(source="fvecs", metric="euclidean", n_queries=1)
    with pytest.raises(DatasetError, match=r"missing.npy is not a file"):
        make(source="npy", path=str(tmp_path / "missing.npy"), metric="euclidean", n_queries=1)
    with pytest.raises(InvalidParameterError, match=r"looks like a .npy file, but the source is 'fvecs'.*source: npy"):
        make(source="fvecs", path=path, metric="euclidean", n_queries=1)
    with pytest.raises(InvalidParameterError, match=r"bad arguments for source 'npy'.*colour"):
        make(source="npy", path=path, metric="euclidean", n_queries=1, colour="red")
    with pytest.raises(InvalidParameterError, match="n_queries must be >= 1"):
        make(source="npy", path=path, metric="euclidean", n_queries=0)
    with pytest.raises(InvalidParameterError, match=r"unknown source 'csv'; known sources: .*npy, fvecs, bvecs"):
        make(source="csv", path=path)


def test_zero_vectors_are_refused_under_cosine_only(tmp_path):
    x = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    x[17] = 0.0
    np.save(tmp_path / "z.npy", x)
    np.save(tmp_path / "q.npy", x[:3] + 1)
    spec = {"source": "npy", "path": str(tmp_path / "z.npy"), "queries": str(tmp_path / "q.npy")}
    with pytest.raises(DatasetError, match=r"z.npy: vector 17 is zero, and cosine distance is undefined"):
        make(**spec, metric="cosine")
    assert make(**spec, metric="euclidean").train.shape == (30, 4)


# ------------------------------------------------------------------------------------------ TEXMEX .fvecs etc.
@pytest.mark.parametrize(("fmt", "dtype"), [("fvecs", "<f4"), ("bvecs", "u1"), ("ivecs", "<i4")])
def test_texmex_files_read_back_their_known_content(tmp_path, fmt, dtype):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 6)).astype(dtype)
    if fmt == "fvecs":
        base = base + rng.random((40, 6)).astype(dtype)
    queries = rng.integers(0, 256, (7, 6)).astype(dtype)
    write_vecs(tmp_path / f"b.{fmt}", base, dtype)
    write_vecs(tmp_path / f"q.{fmt}", queries, dtype)
    ds = make(source=fmt, path=str(tmp_path / f"b.{fmt}"), queries=str(tmp_path / f"q.{fmt}"),
              metric="euclidean")
    assert np.array_equal(ds.train, base.astype(np.float32)) and np.array_equal(ds.test, queries.astype(np.float32))
    assert ds.attrs["source"] == fmt and ds.attrs["queries_from"] == "file"
    held = make(source=fmt, path=str(tmp_path / f"b.{fmt}"), metric="euclidean", n_queries=5, n_base=20)
    where = row_index(base)
    test_rows = {where[r.tobytes()] for r in held.test}
    train_rows = [where[r.tobytes()] for r in held.train]
    assert len(test_rows) == 5 and not test_rows & set(train_rows)
    assert train_rows == [i for i in range(40) if i not in test_rows][:20]  # the first rows not held out


def test_texmex_files_that_are_malformed_are_refused_naming_file_and_problem(tmp_path):
    good = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_vecs(tmp_path / "good.fvecs", good, "<f4")
    blob = (tmp_path / "good.fvecs").read_bytes()  # 4 records of 4 + 3 * 4 = 16 bytes
    cases = {
        "empty.fvecs": (b"", "is empty"),
        "tiny.fvecs": (b"\x03\x00", "truncated: 2 bytes, less than the 4-byte dimension"),
        "zero.fvecs": (np.int32(0).tobytes() + b"\x00" * 12, "starts with dimension 0"),
        "negative.fvecs": (np.int32(-3).tobytes() + b"\x00" * 12, "starts with dimension -3"),
        "short.fvecs": (blob[:10], r"truncated: 10 bytes, less than one vector of its first dimension 3 \(16 bytes"),
        "odd.fvecs": (blob[:-5], r"is 59 bytes, not a whole number of 3-dimensional fvecs vectors of 16 bytes \(3 "
                                 r"vectors and 11 bytes over\)"),
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DatasetError, match=problem) as err:
            make(source="fvecs", path=str(tmp_path / name), metric="euclidean", n_queries=1)
        assert name in str(err.value)
    # a record whose header lies about its width, in a file of whole records: found when that row is read
    write_vecs(tmp_path / "mixed.fvecs", good, "<f4", dims=[3, 3, 5, 3])
    with pytest.raises(DatasetError, match=r"mixed.fvecs: vector 2 has dimension 5, but the first has 3"):
        make(source="fvecs", path=str(tmp_path / "mixed.fvecs"), metric="euclidean", n_queries=1)
    bad = good.copy()
    bad[3, 1] = np.nan
    write_vecs(tmp_path / "nan.fvecs", bad, "<f4")
    with pytest.raises(DatasetError, match=r"nan.fvecs: vector 3 holds nan; vectors must be finite"):
        make(source="fvecs", path=str(tmp_path / "nan.fvecs"), metric="euclidean", n_queries=1)
    big = np.array([[1, 2**24 + 3]], dtype="<i4")
    write_vecs(tmp_path / "big.ivecs", big, "<i4")
    write_vecs(tmp_path / "q.ivecs", np.ones((1, 2), "<i4"), "<i4")
    with pytest.raises(DatasetError, match=r"big.ivecs: vector 0 holds the integer 16777219"):
        make(source="ivecs", path=str(tmp_path / "big.ivecs"), queries=str(tmp_path / "q.ivecs"),
             metric="euclidean")


def test_texmex_reads_only_the_rows_it_needs_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK_BYTES", 64)  # a few rows a block: the block loop and its row numbers
    x = np.random.default_rng(4).integers(0, 256, (50, 5)).astype("u1")
    write_vecs(tmp_path / "b.bvecs", x, "u1")
    vf = sources.open_vectors(tmp_path / "b.bvecs", "bvecs")
    assert (vf.n, vf.d) == (50, 5) and isinstance(vf.raw, np.memmap)
    rows = np.array([3, 9, 10, 11, 40, 49])
    assert np.array_equal(vf.read(rows, "euclidean"), x[rows].astype(np.float32))


# ---------------------------------------------------------------------------------------------- text corpora
def test_read_texts_skips_empty_lines_and_repeats(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeffthe first text\n\n  padded text  \n   \nthe first text\nlast, no newline".encode())
    texts = sources.read_texts(path)
    assert texts.texts == ["the first text", "padded text", "last, no newline"]
    assert (texts.lines, texts.empty_skipped, texts.duplicates_dropped) == (6, 2, 1)
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"body": " one "}\n\n{"body": "two", "id": 2}\n{"body": ""}\n{"body": "one"}\n', encoding="utf-8")
    texts = sources.read_texts(jl, "jsonl", field="body")
    assert texts.texts == ["one", "two"] and (texts.empty_skipped, texts.duplicates_dropped) == (2, 1)


@pytest.mark.parametrize(("line", "problem"), [
    ('{"text": "fine"', "line 2: not valid JSON"),
    ('["text", "a list"]', "line 2: a JSON array, where an object with the field 'text' was expected"),
    ('{"body": "x"}', "line 2: no field 'text' \\(it has 'body'\\); name the text's field with field: NAME"),
    ('{"text": 3}', "line 2: field 'text' is a JSON number, not a string"),
    ('{"text": null}', "line 2: field 'text' is a JSON null, not a string"),
])
def test_bad_jsonl_lines_are_refused_naming_the_line(tmp_path, line, problem):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n' + line + '\n{"text": "after"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=problem) as err:
        sources.read_texts(path, "jsonl")
    assert str(path) in str(err.value)


def test_unreadable_corpora_and_text_parameters_are_refused(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DatasetError, match=r"latin1.txt, line 2: not UTF-8"):
        sources.read_texts(tmp_path / "latin1.txt")
    (tmp_path / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"blank.txt holds no texts \(3 lines, 3 of them empty\)"):
        make(source="text", path=str(tmp_path / "blank.txt"), n_queries=1)
    (tmp_path / "c.txt").write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="takes no 'field'"):
        make(source="text", path=str(tmp_path / "c.txt"), n_queries=1, field="text")
    with pytest.raises(InvalidParameterError, match=r"n_queries=3 asks to hold out 3 queries, .* has 3 distinct texts"):
        make(source="text", path=str(tmp_path / "c.txt"), n_queries=3)
    with pytest.raises(InvalidParameterError, match=r"looks like a .txt file, but the source is 'jsonl'"):
        make(source="jsonl", path=str(tmp_path / "c.txt"), n_queries=1)
    with pytest.raises(InvalidParameterError, match="n_base=3 asks for more rows than the 2"):
        make(source="text", path=str(tmp_path / "c.txt"), n_queries=1, n_base=3)


SENTENCES = [
    "The cat sleeps on the warm windowsill.", "A dog chases the ball across the park.",
    "Interest rates rose again this quarter.", "The central bank held its policy meeting.",
    "Fresh bread is baked every morning.", "She planted tomatoes in the garden.",
    "The train to the coast was delayed.", "Heavy rain flooded the old bridge.",
    "He tuned the guitar before the concert.", "The museum opens a new exhibition today.",
    "Quantum computers use qubits.", "The river freezes in deep winter.",
]


@pytest.fixture(scope="module")
def embedder():
    embeddings = pytest.importorskip("ruvector_lab.embeddings")
    try:
        emb = embeddings.Embedder(precision="int8", threads=1)
    except Exception as exc:  # the model files come from `make setup-models`
        pytest.skip(f"Embedder unavailable here: {exc}")
    yield emb
    emb.close()


def matches(rows: np.ndarray, reference: np.ndarray) -> list[int]:
    """For each row, the index of the reference row embedding the same text, else -1. int8 activations are quantized
    per batch, so the same text in another batch differs a little: near 1 is the same text (these sentences are far
    apart)."""
    sims = rows @ reference.T
    return [int(np.argmax(s)) if s.max() > 0.98 else -1 for s in sims]


def test_text_corpus_is_embedded_with_held_out_queries(tmp_path, embedder):
    lines = [*SENTENCES[:6], "", "   ", SENTENCES[0], *SENTENCES[6:]]  # empty lines and one repeat
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen: list[int] = []
    ds = datasets.make_dataset({"name": "docs", "source": "text", "path": str(tmp_path / "corpus.txt"),
                                "n_queries": 3, "precision": "int8", "seed": 5}, progress=seen.append)
    assert ds.metric == "cosine" and ds.train.shape == (9, 384) and ds.test.shape == (3, 384)
    assert sum(seen) == 9
    np.testing.assert_allclose(np.linalg.norm(ds.train, axis=1), 1.0, rtol=1e-4)
    reference = embedder.embed_batch(SENTENCES)
    test_ids, train_ids = matches(ds.test, reference), matches(ds.train, reference)
    assert -1 not in test_ids + train_ids
    assert sorted(test_ids + train_ids) == list(range(12))  # every distinct text once: queries held out, repeat gone
    assert ds.attrs["duplicates_dropped"] == 1 and ds.attrs["empty_skipped"] == 2 and ds.attrs["texts_kept"] == 9
    sample = datasets.make_dataset({"name": "docs", "source": "text", "path": str(tmp_path / "corpus.txt"),
                                    "n_queries": 3, "n_base": 4, "seed": 5})
    assert sample.train.shape == (4, 384) and matches(sample.test, reference) == test_ids
    assert set(matches(sample.train, reference)) <= set(train_ids)


def test_jsonl_corpus_with_a_query_file(tmp_path, embedder):
    base = tmp_path / "c.jsonl"
    base.write_text("".join(json.dumps({"id": i, "body": s}) + "\n" for i, s in enumerate(SENTENCES[:8])),
                    encoding="utf-8")
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"body": SENTENCES[9]}) + "\n" + json.dumps({"body": SENTENCES[2]}) + "\n",
                       encoding="utf-8")
    ds = datasets.make_dataset({"name": "j", "source": "jsonl", "path": str(base), "field": "body",
                                "queries": str(queries)})
    reference = embedder.embed_batch(SENTENCES)
    assert matches(ds.train, reference) == list(range(8)) and matches(ds.test, reference) == [9, 2]
    assert ds.attrs["queries_in_base"] == 1 and ds.attrs["field"] == "body" and ds.attrs["queries_from"] == "file"
    with pytest.raises(InvalidParameterError, match="unknown precision"):
        datasets.make_dataset({"name": "j", "source": "jsonl", "path": str(base), "field": "body",
                               "queries": str(queries), "precision": "fp7"})


# ------------------------------------------------------------------------------------------ the pipeline stages
def test_unknown_dataset_error_lists_datasets_sources_and_stage_order(tmp_path, monkeypatch):
    from ruvector_lab.cli import app

    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("datasets:\n  mine: {source: npy, path: b.npy, metric: euclidean}\n"
                                   "  other: {source: adr-random, n: 10}\n")
    res = CliRunner().invoke(app, ["data", "nope"])
    assert res.exit_code == 2
    out = " ".join(res.output.split())  # the terminal may wrap the message
    for part in ("dataset 'nope' is not in params 'datasets'; known: mine, other", "list it in bench.datasets",
                 "npy, fvecs, bvecs, ivecs, text, jsonl", "`ruvector-lab data nope` -> `ruvector-lab groundtruth "
                 "nope` -> `ruvector-lab build nope BACKEND`", "-> `ruvector-lab report`", "`dvc repro`"):
        assert part in out, part
    with pytest.raises(InvalidParameterError, match="known: none"):
        params.dataset_spec({}, "x")


def test_cli_data_and_groundtruth_on_an_npy_dataset(tmp_path, monkeypatch):
    from ruvector_lab.cli import app

    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(6).standard_normal((300, 8)).astype(np.float32)
    (tmp_path / "ext").mkdir()
    np.save(tmp_path / "ext" / "base.npy", x)
    Path("params.yaml").write_text(
        f"datasets:\n  mine: {{source: npy, path: {tmp_path / 'ext' / 'base.npy'}, metric: euclidean, "
        "n_queries: 30}\n  syn: {source: adr-random, n: 50, n_queries: 5, dimensions: 4}\ngroundtruth: {k: 20}\n")
    cli = CliRunner()
    for args in (["data", "mine"], ["groundtruth", "mine"], ["data", "syn"]):
        res = cli.invoke(app, args)
        assert res.exit_code == 0, res.output
    assert "270 x 8 base, 30 queries, euclidean" in cli.invoke(app, ["data", "mine"]).output
    ds = read_hdf5("data/datasets/mine.hdf5", require_groundtruth=True)
    assert ds.train.shape == (270, 8) and ds.neighbors.shape == (30, 20)
    nb, _ = groundtruth.brute_force(ds.test, ds.train, 20, "euclidean")
    assert np.array_equal(ds.neighbors, nb)
    summary = json.loads(Path("data/datasets/mine.json").read_text())
    assert summary["content_hash"] == ds.content_hash() and summary["attrs"]["source"] == "npy"
    link = Path("data/raw/mine.source/base.npy")
    assert link.is_symlink() and Path(os.readlink(link)) == tmp_path / "ext" / "base.npy"
    assert Path("data/raw/syn.source").is_dir() and not any(Path("data/raw/syn.source").iterdir())


def test_link_sources_replaces_links_and_never_the_files(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    dest = tmp_path / "raw" / "x.source"
    sources.link_sources({"base.npy": a, "queries.npy": b}, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["base.npy", "queries.npy"]
    sources.link_sources({"base.npy": b}, dest)
    assert [p.name for p in dest.iterdir()] == ["base.npy"] and (dest / "base.npy").read_bytes() == b"b"
    sources.link_sources({}, dest)
    assert dest.is_dir() and not any(dest.iterdir()) and a.read_bytes() == b"a" and b.read_bytes() == b"b"
    with pytest.raises(DatasetError, match="no file at"):
        sources.link_sources({"base.npy": tmp_path / "gone.npy"}, dest)


def test_source_files_name_what_each_source_reads(tmp_path):
    spec = {"name": "m", "source": "fvecs", "path": "data/b.fvecs", "queries": "q.fvecs"}
    assert datasets.source_files(spec) == {"base.fvecs": Path("data/b.fvecs"), "queries.fvecs": Path("q.fvecs")}
    assert datasets.source_files({"name": "w", "source": "wordnet", "directory": str(tmp_path)}) == {
        f"data.{pos}": tmp_path / f"data.{pos}" for pos in datasets.WORDNET_POS}
    assert datasets.source_files({"name": "r", "source": "adr-random"}) == {}
    assert datasets.source_files({"name": "h", "source": "hdf5", "path": "x.hdf5"}) == {}


# ------------------------------------------------------------------------------------- a changed source in DVC
def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def _with_source_outputs(stages: dict) -> dict:
    """dvc.yaml's data stage with the ``data/raw/${item}.source`` output (and sources.py dependency) it needs for a
    converted file's changes to show; a no-op once dvc.yaml declares them."""
    body = stages["data"]["do"]
    if "ruvector_lab/bench/sources.py" not in body["deps"]:
        body["deps"].append("ruvector_lab/bench/sources.py")
    if not any("data/raw/${item}.source" in out for out in body["outs"]):
        body["outs"].append({"data/raw/${item}.source": {"cache": False}})
    return stages


@pytest.mark.slow
def test_dvc_status_sees_a_changed_npy_source_file(tmp_path):
    import yaml

    if not (BIN / "dvc").exists() or not (BIN / "ruvector-lab").exists():
        pytest.skip("dvc and the ruvector-lab script come with the bench extra (pip install -e '.[bench]')")
    repo, src = tmp_path / "repo", tmp_path / "outside" / "base.npy"
    repo.mkdir()
    src.parent.mkdir()
    np.save(src, np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32))
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline["stages"] = _with_source_outputs(pipeline["stages"])
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(ROOT / "ruvector_lab", repo / "ruvector_lab", ignore=shutil.ignore_patterns("__pycache__"))
    p = yaml.safe_load((ROOT / "pipelines" / "params-tiny.yaml").read_text())
    p["datasets"]["mine"] = {"source": "npy", "path": str(src), "metric": "euclidean", "n_queries": 20}
    p["bench"]["datasets"].append("mine")
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    assert _dvc("init", "--no-scm", "-q", cwd=repo).returncode == 0
    for key in ("core.analytics", "core.check_update"):  # no network
        _dvc("config", key, "false", cwd=repo)
    synthetic = p["bench"]["datasets"][0]
    targets = ("data@mine", "groundtruth@mine", f"data@{synthetic}")

    run = _dvc("repro", "groundtruth@mine", f"data@{synthetic}", cwd=repo)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (repo / "data/raw/mine.source/base.npy").is_symlink()
    assert (repo / f"data/raw/{synthetic}.source").is_dir()  # empty: made from params alone
    status = _dvc("status", "--json", *targets, cwd=repo)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
    before = json.loads((repo / "data/datasets/mine.json").read_text())["content_hash"]

    np.save(src, np.random.default_rng(2).standard_normal((300, 8)).astype(np.float32))  # same path, new vectors
    status = _dvc("status", "--json", *targets, cwd=repo)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {"changed outs": {"data/raw/mine.source": "modified"}} in report["data@mine"], report
    assert set(report) == {"data@mine"}  # the ground truth follows once the data stage has run again

    run = _dvc("repro", "groundtruth@mine", cwd=repo)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert src.is_file() and not src.is_symlink()  # re-running the data stage removed only the link
    after = json.loads((repo / "data/datasets/mine.json").read_text())["content_hash"]
    assert after != before
    assert json.loads(_dvc("status", "--json", *targets, cwd=repo).stdout) == {}
