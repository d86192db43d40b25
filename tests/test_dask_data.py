"""Exact ground truth and corpus embedding through the executor: a Dask cluster gives the arrays this process gives.

The cluster is the session's 2-worker LocalCluster (``dask_scheduler`` in conftest.py); each worker holds one
single-threaded task at a time and fetches datasets into its own cache, as on a real cluster.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ruvector_lab import cli
from ruvector_lab.bench import groundtruth, sources
from ruvector_lab.bench.executor import ExecutorSettings, LocalExecutor, open_executor
from ruvector_lab.bench.hdf5 import Dataset, read_hdf5, write_hdf5
from ruvector_lab.bench.threads import pinned_threads
from ruvector_lab.errors import DatasetError, RuvectorLabError

runner = CliRunner()


def tied_dataset(name: str, metric: str, seed: int = 3) -> Dataset:
    """400 x 12 train rows of which 60 are repeated (exact ties at every distance), 45 queries of which 9 copy a
    repeated train row (ties at distance 0); small enough for blocks of 8 queries x 64 rows to make many blocks."""
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((400, 12)).astype(np.float32)
    train[300:360] = train[:60]
    test = rng.standard_normal((45, 12)).astype(np.float32)
    test[:45:5] = train[:54:6]
    return Dataset(name, train, test, metric)


@pytest.fixture
def dask_settings(dask_scheduler: str) -> ExecutorSettings:
    """The executor settings of the session's cluster."""
    return ExecutorSettings("dask", dask_scheduler)


# ------------------------------------------------------------------------------------------------ ground truth
@pytest.mark.slow
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_distributed_ground_truth_equals_the_local_one_ties_included(tmp_path, dask_settings, metric):
    path = write_hdf5(tmp_path / f"ties-{metric}.hdf5", tied_dataset(f"ties-{metric}", metric))
    ds = read_hdf5(path)
    local = groundtruth.knn_ground_truth(ds.test, ds.train, 20, metric, query_block=8, train_block=64)
    assert (np.diff(local[1], axis=1) == 0).any(), "the data should give exact ties"
    with open_executor(dask_settings) as pool:
        ref = pool.dataset_ref(path, ds)
        spread = groundtruth.knn_ground_truth_on(pool, ref, ds, 20, query_block=8, train_block=64)
    assert np.array_equal(spread[0], local[0]) and np.array_equal(spread[1], local[1])
    assert spread[0].dtype == np.int32 and spread[1].dtype == np.float32
    # the in-process executor runs the same tasks
    pool = LocalExecutor()
    assert all(np.array_equal(a, b) for a, b in
               zip(groundtruth.knn_ground_truth_on(pool, pool.dataset_ref(path, ds), ds, 20, 8, 64), local,
                   strict=True))


def test_block_functions_give_the_brute_force_answer_with_ties_by_index():
    ds = tied_dataset("ties", "euclidean")
    keep = 20 + groundtruth.MARGIN
    q = ds.test[:8]
    parts = [groundtruth.block_candidates(q, ds.train[ts : ts + 64], ts, keep, "euclidean") for ts in range(0, 400, 64)]
    candidates = groundtruth.merge_candidates(parts, keep)
    assert candidates.shape == (8, keep) and (np.diff(candidates, axis=1) > 0).all()  # ascending ids
    nb, dist = groundtruth.exact_top_k(q, ds.train, candidates, 20, "euclidean")
    ref_nb, ref_dist = groundtruth.brute_force(q, ds.train, 20, "euclidean")
    assert np.array_equal(nb, ref_nb)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_a_dataset_changed_after_its_reference_is_refused(tmp_path, dask_settings):
    path = write_hdf5(tmp_path / "moving.hdf5", tied_dataset("moving", "euclidean", seed=11))
    ds = read_hdf5(path)
    with open_executor(dask_settings) as pool:
        # the file changes between the read and the reference: the workers get bytes that do not match the hash
        write_hdf5(path, tied_dataset("moving", "euclidean", seed=12))
        ref = pool.dataset_ref(path, ds)
        with pytest.raises(RuvectorLabError, match="content hash"):
            groundtruth.knn_ground_truth_on(pool, ref, ds, 10, query_block=16, train_block=128)
        # the data in memory changes after the reference was made: refused before any task runs
        fresh = read_hdf5(path)
        ref = pool.dataset_ref(path, fresh)
        fresh.train[0, 0] += 1.0
        with pytest.raises(DatasetError, match="changed after the reference was made"):
            groundtruth.knn_ground_truth_on(pool, ref, fresh, 10)


@pytest.mark.slow
def test_cli_groundtruth_on_dask_writes_the_local_file(tmp_path, dask_scheduler, monkeypatch):
    spread: list[str] = []
    fan_out = groundtruth.knn_ground_truth_on
    monkeypatch.setattr(groundtruth, "knn_ground_truth_on",
                        lambda pool, *a, **kw: spread.append(pool.kind) or fan_out(pool, *a, **kw))
    rng = np.random.default_rng(8)
    train = rng.standard_normal((1200, 8)).astype(np.float32)
    train[600:700] = train[:100]  # exact ties
    ds = Dataset("cli-gt", train, rng.standard_normal((600, 8)).astype(np.float32), "euclidean")
    write_hdf5(tmp_path / "raw" / "cli-gt.hdf5", ds)
    (tmp_path / "params.yaml").write_text("datasets:\n  cli-gt: {source: adr-random}\ngroundtruth: {k: 15}\n")
    base = ["groundtruth", "cli-gt", "--params", str(tmp_path / "params.yaml"), "--raw-dir", str(tmp_path / "raw")]
    written = {}
    for out, extra in (("local", []), ("dask", ["--executor", "dask", "--scheduler", dask_scheduler])):
        result = runner.invoke(cli.app, [*base, "--datasets-dir", str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        written[out] = read_hdf5(tmp_path / out / "cli-gt.hdf5", require_groundtruth=True)
    # 600 queries in blocks of 256: three block tasks on the cluster (the local run stays in this process)
    assert spread == ["dask"] and written["local"].neighbors.shape == (600, 15)
    assert np.array_equal(written["dask"].neighbors, written["local"].neighbors)
    assert np.array_equal(written["dask"].distances, written["local"].distances)


# --------------------------------------------------------------------------------------------------- embedding
#: 40 short distinct texts of different lengths (so each block's length-sorted batches differ)
TEXTS = [f"Note {i}: the {w} " + "rather " * (i % 6) + f"{w}s were seen near the {place}."
         for i, (w, place) in enumerate(zip(["cat", "dog", "train", "river", "bank", "bread", "guitar", "storm"] * 5,
                                            ["station", "park", "bridge", "museum", "garden"] * 8, strict=True))]
QUERIES = ["A cat sleeps in the sun.", "Interest rates rose again.", "The bridge was flooded."]


@pytest.fixture(scope="module")
def embedder_available() -> None:
    """Skips when the Embedder cannot start here (its model files come from `make setup-models`)."""
    embeddings = pytest.importorskip("ruvector_lab.embeddings")
    try:
        embeddings.Embedder(precision="int8", threads=1).close()
    except Exception as exc:
        pytest.skip(f"Embedder unavailable here (model cache missing? run `make setup-models`): {exc}")


@pytest.mark.slow
def test_embedding_fan_out_equals_the_local_embedding(dask_settings, embedder_available):
    seen: list[int] = []
    with open_executor(dask_settings) as pool:
        # blocks of 4 texts, a few blocks per task (3 on 2 workers: tasks of 12, 12, 12 and 4 texts)
        spread = sources.embed_texts(TEXTS, QUERIES, "int8", chunk_size=3, block=4, progress=seen.append,
                                     executor=pool)
    assert sum(seen) == len(TEXTS) and len(seen) > 1 and all(count % 4 == 0 for count in seen)
    # with the workers' thread count (1) here too, the very same computation: equal bit for bit
    with pinned_threads(1):
        same_threads = sources.embed_texts(TEXTS, QUERIES, "int8", chunk_size=3, block=4)
    assert np.array_equal(spread[0], same_threads[0]) and np.array_equal(spread[1], same_threads[1])
    # with every core here onnxruntime may sum in another order: last bits only (another batching would move the
    # int8 vectors by up to about 1e-2, so this still shows the batches are the same)
    local = sources.embed_texts(TEXTS, QUERIES, "int8", chunk_size=3, block=4)
    np.testing.assert_allclose(spread[0], local[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(spread[1], local[1], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cli_data_embeds_a_text_corpus_on_dask(tmp_path, dask_scheduler, embedder_available, monkeypatch):
    spread: list[str] = []
    fan_out = sources._embed_on
    monkeypatch.setattr(sources, "_embed_on", lambda pool, *a: spread.append(pool.kind) or fan_out(pool, *a))
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    (tmp_path / "params.yaml").write_text(
        f"datasets:\n  notes: {{source: text, path: {tmp_path / 'corpus.txt'}, n_queries: 5, seed: 2}}\n")
    base = ["data", "notes", "--params", str(tmp_path / "params.yaml")]
    made = {}
    for out, extra in (("local", []), ("dask", ["--executor", "dask", "--scheduler", dask_scheduler])):
        result = runner.invoke(cli.app, [*base, "--out-dir", str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        made[out] = read_hdf5(tmp_path / out / "notes.hdf5")
    assert spread == ["dask"] and made["dask"].train.shape == (35, 384)
    np.testing.assert_allclose(made["dask"].train, made["local"].train, rtol=0, atol=1e-6)  # thread counts, as above
    np.testing.assert_allclose(made["dask"].test, made["local"].test, rtol=0, atol=1e-6)
