"""Datasets, the ann-benchmarks HDF5 layout and blockwise ground truth."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest

from ruvector_lab.bench import datasets, groundtruth
from ruvector_lab.bench.hdf5 import Dataset, read_hdf5, write_hdf5
from ruvector_lab.errors import DatasetError, InvalidParameterError


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


def test_exact_distances_conventions():
    q = np.array([[3.0, 4.0]], np.float32)
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], np.float32)
    assert groundtruth.exact_distances(q, x, "euclidean")[0].tolist() == pytest.approx([5.0, 0.0, 5.0])
    assert groundtruth.exact_distances(q, x, "dot_product")[0].tolist() == pytest.approx([0.0, -25.0, -50.0])
    assert groundtruth.exact_distances(q, x[1:], "cosine")[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


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
