"""Datasets, the ann-benchmarks HDF5 layout and blockwise ground truth."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ruvector_lab.bench import datasets, groundtruth
from ruvector_lab.bench.hdf5 import Dataset, link_hdf5, read_hdf5, write_hdf5
from ruvector_lab.distances import pairwise_float64
from ruvector_lab.errors import DatasetError, InvalidParameterError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_ground_truth_matches_brute_force(metric):
    rng = np.random.default_rng(1)
    train = rng.standard_normal((700, 16)).astype(np.float32)
    queries = rng.standard_normal((37, 16)).astype(np.float32)
    # tiny blocks force the merge across train blocks and query blocks
    nb, db = groundtruth.knn_ground_truth(queries, train, 25, metric, query_block=8, train_block=64)
    nr, dr = groundtruth.brute_force(queries, train, 25, metric)
    assert np.array_equal(nb, nr)
    np.testing.assert_allclose(db, dr, rtol=1e-6, atol=1e-6)
    assert (np.diff(db, axis=1) >= 0).all()


def test_ground_truth_breaks_ties_by_index():
    train = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    nb, db = groundtruth.knn_ground_truth(np.array([[1, 0]], dtype=np.float32), train, 3, "euclidean")
    assert nb[0].tolist() == [0, 1, 3]
    assert db[0].tolist() == [0.0, 0.0, 0.0]


def test_ground_truth_rejects_bad_input():
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(InvalidParameterError):
        groundtruth.knn_ground_truth(x, x, 6, "euclidean")
    with pytest.raises(InvalidParameterError):
        groundtruth.knn_ground_truth(np.zeros((2, 4), np.float32), x, 2, "euclidean")


def test_float64_distance_conventions():
    q = np.array([[3.0, 4.0]], np.float32)
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], np.float32)
    assert pairwise_float64(q, x, "euclidean")[0].tolist() == pytest.approx([5.0, 0.0, 5.0])
    assert pairwise_float64(q, x, "dot_product")[0].tolist() == pytest.approx([0.0, -25.0, -50.0])
    assert pairwise_float64(q, x[1:], "cosine")[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


def test_hdf5_round_trip_keeps_the_ann_benchmarks_layout(tmp_path):
    ds = datasets.adr_random(n=300, n_queries=20, dimensions=8)
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 10, ds.metric)
    ds.attrs["license"] = "keep me"
    path = write_hdf5(tmp_path / "x.hdf5", ds)
    with h5py.File(path, "r") as f:
        assert f.attrs["distance"] == "angular"
        assert {"train", "test", "neighbors", "distances"} <= set(f)
        assert f["neighbors"].dtype == np.int32
    back = read_hdf5(path, require_groundtruth=True)
    assert back.metric == "cosine" and back.name == "adr-random-10k-384"
    assert np.array_equal(back.train, ds.train) and np.array_equal(back.neighbors, ds.neighbors)
    assert back.attrs["license"] == "keep me"
    assert back.describe()["gt_k"] == 10


def test_hdf5_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no HDF5 file"):
        read_hdf5(tmp_path / "missing.hdf5")
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("train", data=np.zeros((3, 2), np.float32))
    with pytest.raises(DatasetError, match="test"):
        read_hdf5(bad)
    odd = tmp_path / "odd.hdf5"
    with h5py.File(odd, "w") as f:
        f.attrs["distance"] = "jaccard"
        f.create_dataset("train", data=np.zeros((3, 2), np.float32))
        f.create_dataset("test", data=np.zeros((1, 2), np.float32))
    with pytest.raises(DatasetError, match="jaccard"):
        read_hdf5(odd)
    plain = Dataset("p", np.zeros((3, 2), np.float32), np.zeros((1, 2), np.float32), "euclidean")
    write_hdf5(tmp_path / "plain.hdf5", plain)
    with pytest.raises(DatasetError, match="ground truth"):
        read_hdf5(tmp_path / "plain.hdf5", require_groundtruth=True)


def test_synthetic_sets_are_seeded_and_shaped():
    a, b = datasets.adr_random(n=100, n_queries=10, seed=3), datasets.adr_random(n=100, n_queries=10, seed=3)
    assert np.array_equal(a.train, b.train) and a.train.shape == (100, 384) and a.test.shape == (10, 384)
    assert a.train.min() >= -1 and a.train.max() <= 1
    assert not np.array_equal(a.train[:10], a.test)  # queries are separate draws
    c = datasets.clustered(n=500, n_queries=20, dimensions=32, clusters=5)
    np.testing.assert_allclose(np.linalg.norm(c.train, axis=1), 1.0, rtol=1e-5)
    # clustered: a point's nearest neighbour is much closer than a random pair
    sims = c.test @ c.train.T
    assert np.median(sims.max(axis=1)) > np.median(sims) + 0.3


def test_parse_gloss_splits_definition_and_examples():
    definition, examples = datasets.parse_gloss('on the back of a horse; "he rode horseback to town"; "ahorse"')
    assert definition == "on the back of a horse"
    assert examples == ["he rode horseback to town", "ahorse"]
    assert datasets.parse_gloss('a thing; "quoted" - Shakespeare')[1] == ["quoted"]


def _fake_wordnet(directory: Path) -> None:
    directory.mkdir()
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton  \n"
    for i, pos in enumerate(datasets.WORDNET_POS):
        lines = [header]
        for j in range(30):
            lines.append(f"{i:02d}{j:06d} 03 n 01 w{j} 0 000 | meaning {pos} {j}; \"example {pos} {j}\"; "
                         f"\"shared sentence\"  \n")
        (directory / f"data.{pos}").write_text("".join(lines))


def test_read_and_split_wordnet_hold_queries_out_of_the_base(tmp_path):
    _fake_wordnet(tmp_path / "wn")
    texts = datasets.read_wordnet(tmp_path / "wn")
    assert len(texts.glosses) == 120 and "Princeton" in texts.license
    base, queries = datasets.split_wordnet(texts, None, 40, seed=1)
    assert len(queries) == 40 and len(set(queries)) == 40
    assert not set(queries) & set(base)
    assert set(queries) <= set(texts.examples)
    small, _ = datasets.split_wordnet(texts, 50, 40, seed=1)
    assert len(small) == 50
    with pytest.raises(InvalidParameterError):
        datasets.split_wordnet(texts, None, 10_000)


def test_missing_debian_data_says_what_to_install(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install -y wordnet-base"):
        datasets.read_wordnet(tmp_path)
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        datasets.fashion_mnist(tmp_path)


def _idx(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    head = b"".join(int(v).to_bytes(4, "big") for v in (2051, n, rows, cols))
    with gzip.open(path, "wb") as f:
        f.write(head + images.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_on_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    _idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    ds = datasets.fashion_mnist(tmp_path)
    assert ds.train.shape == (12, 784) and ds.metric == "euclidean"
    assert np.array_equal(ds.train[0], train[0].reshape(-1).astype(np.float32))
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00" * 20))
    with pytest.raises(DatasetError, match="magic"):
        datasets.read_idx_images(tmp_path / "bad.gz")


def test_make_dataset_dispatches_and_validates(tmp_path):
    ds = datasets.make_dataset({"name": "r", "source": "adr-random", "n": 50, "n_queries": 5, "dimensions": 4})
    assert ds.name == "r" and ds.train.shape == (50, 4)
    write_hdf5(tmp_path / "e.hdf5", ds)
    again = datasets.make_dataset({"name": "ext", "source": "hdf5", "path": str(tmp_path / "e.hdf5")})
    assert again.name == "ext" and np.array_equal(again.train, ds.train)
    with pytest.raises(InvalidParameterError, match="unknown source"):
        datasets.make_dataset({"name": "x", "source": "nope"})
    with pytest.raises(InvalidParameterError, match="bad arguments"):
        datasets.make_dataset({"name": "x", "source": "adr-random", "colour": 3})
    with pytest.raises(DatasetError, match="path"):
        datasets.make_dataset({"name": "x", "source": "hdf5"})


def test_wordnet_minilm_embeds_held_out_queries(tmp_path):
    embeddings = pytest.importorskip("ruvector_lab.embeddings")
    try:
        embeddings.Embedder(precision="int8").close()
    except Exception as exc:  # the model files come from `make setup-models`
        pytest.skip(f"Embedder unavailable here: {exc}")
    _fake_wordnet(tmp_path / "wn")
    seen = []
    ds = datasets.wordnet_minilm(n_base=60, n_queries=10, directory=tmp_path / "wn", progress=seen.append)
    assert ds.train.shape == (60, 384) and ds.test.shape == (10, 384) and ds.metric == "cosine"
    np.testing.assert_allclose(np.linalg.norm(ds.train, axis=1), 1.0, rtol=1e-4)
    assert sum(seen) == 60
    assert ds.attrs["texts_kept"] == 60 and ds.attrs["texts_total"] > 60 and "Princeton" in ds.attrs["license"]


# ------------------------------------------------------------------------------------------- dataset content hash
def _with_truth(ds: Dataset, k: int = 10) -> Dataset:
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, k, ds.metric)
    return ds


def test_content_hash_survives_the_disk_and_follows_every_array(tmp_path):
    ds = _with_truth(datasets.adr_random(n=300, n_queries=20, dimensions=8))
    h = ds.content_hash()
    assert len(h) == 16 and int(h, 16) >= 0 and h == ds.content_hash()
    back = read_hdf5(write_hdf5(tmp_path / "x.hdf5", ds))
    assert back.neighbors.dtype != ds.neighbors.dtype  # int32 written, int64 read: the hash does not care
    assert back.content_hash() == h
    assert ds.describe()["content_hash"] == h and back.describe()["content_hash"] == h
    seen = {h}
    for key, index in (("train", (5, 3)), ("test", (7, 0)), ("neighbors", (2, 4)), ("distances", (0, 9))):
        changed = read_hdf5(tmp_path / "x.hdf5")
        arr = getattr(changed, key)
        arr[index] = arr[index] + 1
        assert changed.content_hash() not in seen, key
        seen.add(changed.content_hash())
    changed = read_hdf5(tmp_path / "x.hdf5")
    changed.metric = "euclidean"
    assert changed.content_hash() not in seen
    no_truth = Dataset(ds.name, ds.train, ds.test, ds.metric)
    assert no_truth.content_hash() not in seen and no_truth.describe()["content_hash"] == no_truth.content_hash()
    # the name and attrs (e.g. make_seconds) do not change what is measured
    renamed = read_hdf5(tmp_path / "x.hdf5", name="other")
    renamed.attrs["make_seconds"] = 1.5
    assert renamed.content_hash() == h


def test_read_hdf5_refuses_ground_truth_of_the_wrong_shape(tmp_path):
    for name, nb_shape, d_shape in (("rows", (3, 5), (3, 5)), ("mismatch", (4, 5), (4, 6)), ("flat", (4,), (4,))):
        path = tmp_path / f"{name}.hdf5"
        with h5py.File(path, "w") as f:
            f.attrs["distance"] = "euclidean"
            f.create_dataset("train", data=np.zeros((10, 2), np.float32))
            f.create_dataset("test", data=np.zeros((4, 2), np.float32))
            f.create_dataset("neighbors", data=np.zeros(nb_shape, np.int32))
            f.create_dataset("distances", data=np.zeros(d_shape, np.float32))
        with pytest.raises(DatasetError, match=r"neighbors|distances"):
            read_hdf5(path)


# ------------------------------------------------------------------------------------ verifying given ground truth
def _tied_dataset() -> Dataset:
    """Euclidean data where each query's nearest rows are three identical copies (exact distance ties)."""
    rng = np.random.default_rng(3)
    train = rng.standard_normal((400, 8)).astype(np.float32)
    for base in range(0, 30, 3):  # rows 100+i, 200+i, 300+i repeat row i for i in 0, 3, ..., 27
        train[100 + base] = train[200 + base] = train[300 + base] = train[base]
    test = train[0:30:3] + rng.standard_normal((10, 8)).astype(np.float32) * 0.01
    return _with_truth(Dataset("tied", train, test, "euclidean"), k=20)


def test_verify_ground_truth_accepts_exact_truth_with_ties_in_another_order():
    ds = _tied_dataset()
    assert (ds.distances[:, 1] == ds.distances[:, 2]).all()  # the three copies tie at ranks 1..3
    groundtruth.verify_ground_truth(ds, 20, sample=10)
    # list the tied ids in reverse order (as another tool may), and store float32 distances as files do
    ds.neighbors[:, [1, 2, 3]] = ds.neighbors[:, [3, 2, 1]]
    ds.distances = ds.distances.astype(np.float32)
    groundtruth.verify_ground_truth(ds, 20, sample=10)
    groundtruth.verify_ground_truth(ds, 5, sample=3, seed=1)  # a prefix of the truth is checked as top-5


def test_verify_ground_truth_refuses_one_wrong_neighbour_naming_the_query():
    ds = _tied_dataset()
    far = int(np.setdiff1d(np.arange(len(ds.train)), ds.neighbors[6])[-1])
    ds.neighbors[6, 4] = far  # distance left as it was: only the id is wrong
    with pytest.raises(DatasetError, match=r"query 6, rank 4: the file says train id \d+ at") as err:
        groundtruth.verify_ground_truth(ds, 20, sample=10)
    assert "1 of 10 sampled queries" in str(err.value)
    ds = _tied_dataset()
    ds.distances[2, 0] += 0.5  # a distance that is not the exact one
    with pytest.raises(DatasetError, match=r"query 2, rank 0: the file says train id \d+ at distance 0\.5"):
        groundtruth.verify_ground_truth(ds, 20, sample=10)


def test_verify_ground_truth_refuses_bad_ids_distances_and_shapes():
    ds = _tied_dataset()
    ds.neighbors[4, 0] = len(ds.train)
    with pytest.raises(DatasetError, match=r"query 4 lists neighbour id 400 at rank 0, outside the train rows \[0, 4"):
        groundtruth.verify_ground_truth(ds, 20)
    ds.neighbors[4, 0] = -1
    with pytest.raises(DatasetError, match="query 4 lists neighbour id -1"):
        groundtruth.verify_ground_truth(ds, 20)
    ds = _tied_dataset()
    ds.distances[8, 3] = np.nan
    with pytest.raises(DatasetError, match="query 8 has distance nan at rank 3; distances must be finite"):
        groundtruth.verify_ground_truth(ds, 20)
    ds = _tied_dataset()
    ds.neighbors[1, 5] = ds.neighbors[1, 6]
    with pytest.raises(DatasetError, match=r"query 1 lists train id \d+ more than once"):
        groundtruth.verify_ground_truth(ds, 20)
    ds = _tied_dataset()
    ds.neighbors, ds.distances = ds.neighbors[:9], ds.distances[:9]
    with pytest.raises(DatasetError, match=r"one row per query \(10 test rows\)"):
        groundtruth.verify_ground_truth(ds, 20)
    ds = _tied_dataset()
    with pytest.raises(DatasetError, match="fewer than the k=30"):
        groundtruth.verify_ground_truth(ds, 30)
    with pytest.raises(DatasetError, match="no ground truth"):
        groundtruth.verify_ground_truth(Dataset("n", ds.train, ds.test, "euclidean"), 5)


def _cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ds: Dataset, k: int) -> None:
    monkeypatch.chdir(tmp_path)
    write_hdf5(Path("data/raw/given.hdf5"), ds)
    Path("params.yaml").write_text(f"groundtruth: {{k: {k}}}\n")


def test_groundtruth_command_refuses_a_tampered_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ruvector_lab.cli import app

    ds = _tied_dataset()
    ds.neighbors[3, 2] = int(np.setdiff1d(np.arange(len(ds.train)), ds.neighbors[3])[-1])
    _cli_project(tmp_path, monkeypatch, ds, 20)
    res = CliRunner().invoke(app, ["groundtruth", "given", "--verify-sample", "10"])
    assert res.exit_code == 2, res.output
    assert "error: dataset 'given'" in res.output and "query 3, rank 2: the file says train id" in res.output
    assert not Path("data/datasets/given.hdf5").exists()


def test_groundtruth_command_keeps_verified_truth_cut_to_k(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ruvector_lab.cli import app

    ds = _tied_dataset()
    _cli_project(tmp_path, monkeypatch, ds, 12)
    res = CliRunner().invoke(app, ["groundtruth", "given"])
    assert res.exit_code == 0, res.output
    kept = read_hdf5("data/datasets/given.hdf5", require_groundtruth=True)
    assert kept.neighbors.shape == (10, 12) and np.array_equal(kept.neighbors, ds.neighbors[:, :12])
    summary = json.loads(Path("data/datasets/given.json").read_text())
    assert summary["gt_k"] == 12 and summary["content_hash"] == kept.content_hash()


# --------------------------------------------------------------------------------------- no silent truncation
def test_fashion_mnist_refuses_more_rows_than_the_files_hold(tmp_path):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 28, 28)))
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28)))
    ds = datasets.fashion_mnist(tmp_path, n_train=10, n_queries=3)
    assert ds.train.shape == (10, 784) and ds.test.shape == (3, 784)
    with pytest.raises(InvalidParameterError, match="n_queries=4 asks for more rows than the 3"):
        datasets.fashion_mnist(tmp_path, n_queries=4)
    with pytest.raises(InvalidParameterError, match="n_train=13 asks for more rows than the 12"):
        datasets.fashion_mnist(tmp_path, n_train=13)
    with pytest.raises(InvalidParameterError):
        datasets.fashion_mnist(tmp_path, n_queries=0)


@pytest.mark.skipif(not (datasets.FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian dataset-fashion-mnist is not installed (make setup-data)")
def test_debian_fashion_mnist_refuses_too_many_queries():
    with pytest.raises(InvalidParameterError, match="n_queries=10001 asks for more rows than the 10000"):
        datasets.fashion_mnist(n_queries=10_001)


def test_wordnet_and_hdf5_sources_refuse_what_they_cannot_give(tmp_path):
    _fake_wordnet(tmp_path / "wn")
    texts = datasets.read_wordnet(tmp_path / "wn")
    base, _ = datasets.split_wordnet(texts, None, 40, seed=1)
    with pytest.raises(InvalidParameterError, match=f"n_base={len(base) + 1} base texts but WordNet has {len(base)}"):
        datasets.split_wordnet(texts, len(base) + 1, 40, seed=1)
    write_hdf5(tmp_path / "e.hdf5", datasets.adr_random(n=50, n_queries=5, dimensions=4))
    with pytest.raises(InvalidParameterError, match="n_queries"):  # the file is used whole, never cut
        datasets.make_dataset({"name": "e", "source": "hdf5", "path": str(tmp_path / "e.hdf5"), "n_queries": 2})


# --------------------------------------------------------------------------- an external file in the DVC pipeline
def test_link_hdf5_links_absolutely_and_leaves_the_file_itself_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_hdf5(Path("ext/e.hdf5"), datasets.adr_random(n=50, n_queries=5, dimensions=4))
    out = link_hdf5("ext/e.hdf5", Path("raw/e.hdf5"))
    assert out.is_symlink() and Path(os.readlink(out)) == tmp_path / "ext" / "e.hdf5"
    assert link_hdf5("ext/e.hdf5", out) == out and out.is_symlink()  # again: replaced in place
    assert link_hdf5(out, out) == out and out.resolve() == tmp_path / "ext" / "e.hdf5"  # never a link to itself
    assert link_hdf5("ext/e.hdf5", Path("ext/e.hdf5")) == Path("ext/e.hdf5")  # the file is its own output
    assert Path("ext/e.hdf5").is_file() and not Path("ext/e.hdf5").is_symlink()
    with pytest.raises(DatasetError, match="no HDF5 file"):
        link_hdf5("ext/missing.hdf5", Path("raw/m.hdf5"))


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _external(seed: int) -> Dataset:
    ds = datasets.clustered(n=400, n_queries=20, dimensions=8, clusters=4, seed=seed, name="ext")
    return _with_truth(ds, k=100)  # the file brings its own top-100, which the groundtruth stage verifies


@pytest.mark.slow
def test_dvc_status_sees_a_changed_external_hdf5_file(tmp_path):
    import yaml

    if not (BIN / "dvc").exists() or not (BIN / "ruvector-lab").exists():
        pytest.skip("dvc and the ruvector-lab script come with the bench extra (pip install -e '.[bench]')")
    repo, ext = tmp_path / "repo", tmp_path / "outside" / "ext.hdf5"
    repo.mkdir()
    write_hdf5(ext, _external(1))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(ROOT / "ruvector_lab", repo / "ruvector_lab", ignore=shutil.ignore_patterns("__pycache__"))
    p = yaml.safe_load((ROOT / "pipelines" / "params-tiny.yaml").read_text())
    p["datasets"]["ext"] = {"source": "hdf5", "path": str(ext)}
    p["bench"]["datasets"].append("ext")
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    assert _dvc("init", "--no-scm", "-q", cwd=repo).returncode == 0
    for key in ("core.analytics", "core.check_update"):  # no network
        _dvc("config", key, "false", cwd=repo)
    targets = ("data@ext", "groundtruth@ext")

    run = _dvc("repro", "groundtruth@ext", cwd=repo)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (repo / "data/raw/ext.hdf5").is_symlink()
    status = _dvc("status", "--json", *targets, cwd=repo)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr

    changed = _external(2)  # new vectors (and their true neighbours) at the same path
    write_hdf5(ext, changed)
    status = _dvc("status", "--json", *targets, cwd=repo)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {"changed outs": {"data/raw/ext.hdf5": "modified"}} in report["data@ext"]
    assert {"changed deps": {"data/raw/ext.hdf5": "modified"}} in report["groundtruth@ext"]

    run = _dvc("repro", "groundtruth@ext", cwd=repo)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert ext.is_file() and not ext.is_symlink()  # re-running the data stage removed only the link
    summary = json.loads((repo / "data/datasets/ext.json").read_text())
    assert summary["content_hash"] == changed.content_hash() != _external(1).content_hash()
    assert json.loads(_dvc("status", "--json", *targets, cwd=repo).stdout) == {}
