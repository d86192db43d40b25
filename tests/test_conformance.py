"""The backend conformance suite: every backend that works here must pass all of it, with every metric."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from helpers import available_backends, clustered

import ruvector_lab as rl
from ruvector_lab import container

BACKENDS = available_backends()
METRICS = list(rl.METRICS)
DIM = 24
N = 2000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    base = clustered(N, DIM, clusters=25, seed=1)
    queries = clustered(60, DIM, clusters=25, seed=1)[:60] + 0.05
    return base, queries.astype(np.float32)


def ids_for(n: int, start: int = 0) -> list[str]:
    return [f"doc-{i}" for i in range(start, start + n)]


def build(backend: str, metric: str, base: np.ndarray, **config) -> rl.HnswIndex:
    cfg = rl.HnswConfig(dimensions=base.shape[1], metric=metric, **{"m": 16, "ef_construction": 200, **config})
    index = rl.HnswIndex(cfg, backend=backend)
    index.insert_batch(ids_for(len(base)), base)
    return index


def snapshot(index: rl.HnswIndex, query: np.ndarray) -> tuple[int, list[tuple[str, float]]]:
    return len(index), [(r.id, round(r.score, 5)) for r in index.search(query, k=5, ef_search=200)]


@pytest.fixture(scope="module", params=[(b, m) for b in BACKENDS for m in METRICS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def built(request, data):
    backend, metric = request.param
    base, _ = data
    index = build(backend, metric, base)
    reference = build("numpy", metric, base)
    yield backend, metric, index, reference
    index.close()
    reference.close()


def test_top10_matches_exact_search(built, data):
    backend, metric, index, reference = built
    _, queries = data
    hits = 0
    for q in queries:
        got = {r.id for r in index.search(q, k=10, ef_search=200)}
        want = {r.id for r in reference.search(q, k=10)}
        hits += len(got & want)
    recall = hits / (10 * len(queries))
    assert recall >= 0.99, f"{backend}/{metric} recall@10 {recall:.3f} against exact search"


def test_scores_agree_with_batch_distance(built, data):
    _, metric, index, _ = built
    base, queries = data
    row_of = {f"doc-{i}": i for i in range(N)}
    for q in queries[:10]:
        results = index.search(q, k=10, ef_search=100)
        assert [r.score for r in results] == sorted(r.score for r in results)
        expected = rl.batch_distance(q, base[[row_of[r.id] for r in results]], metric)
        np.testing.assert_allclose([r.score for r in results], expected, atol=1e-4, rtol=1e-5)


def test_stats_describe_the_index(built):
    backend, metric, index, _ = built
    stats = index.stats()
    assert stats.vector_count == N == len(index)
    assert (stats.dimensions, stats.metric, stats.backend) == (DIM, metric, backend)
    assert (stats.m, stats.ef_construction, stats.ef_search) == (16, 200, 50)
    assert stats.tier == rl.Runtime.tier_of(backend)
    assert stats.graph in {"hnsw", "flat"}
    assert stats.bytes == len(index.serialize()) > 0
    assert stats.deleted_count == 0 and stats.bytes_per_vector == stats.bytes / N


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_delete_replace_and_k_beyond_live_count(backend, metric, data):
    base, _ = data
    small = base[:300]
    index = build(backend, metric, small)
    doomed = ids_for(100)
    assert all(index.delete(i) for i in doomed)
    assert not index.delete("doc-0") and not index.delete("never-inserted")
    assert len(index) == 200
    for row in range(0, 100, 7):
        found = {r.id for r in index.search(small[row], k=50, ef_search=200)}
        assert not found & set(doomed), "a deleted id came back"
    # k larger than the live count returns the live count, deleted ids excluded
    everything = index.search(small[150], k=1000, ef_search=1000)
    assert len(everything) == 200 and len({r.id for r in everything}) == 200
    # re-insert replaces: the id now sits at the new vector
    new_vector = small[250] * -1.0 + 0.01
    index.insert("doc-150", new_vector)
    assert len(index) == 200
    around_new = index.search(new_vector, k=200, ef_search=400)
    if metric != "dot_product":  # under dot product a vector need not be its own nearest neighbour
        assert around_new[0].id == "doc-150"
    [own] = [r for r in around_new if r.id == "doc-150"]
    assert own.score == pytest.approx(float(rl.distance(new_vector, new_vector, metric)), abs=1e-4)
    hits = [r for r in index.search(small[150], k=200, ef_search=400) if r.id == "doc-150"]
    for hit in hits:  # if it is found at all, it is found with its new vector's distance
        assert hit.score == pytest.approx(float(rl.distance(small[150], new_vector, metric)), abs=1e-4)
    # deleting everything leaves an empty index that refuses searches
    for i in index.ids():
        index.delete(i)
    with pytest.raises(rl.EmptyIndexError):
        index.search(small[0], k=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_serialize_round_trip_keeps_ids_tombstones_and_results(backend, metric, data):
    base, queries = data
    index = build(backend, metric, base[:500])
    for i in range(0, 500, 5):
        index.delete(f"doc-{i}")
    index.insert("doc-1", base[600])
    blob = index.serialize()
    copy = rl.HnswIndex.deserialize(blob)
    assert copy.backend == backend and len(copy) == len(index) == 400
    assert copy.stats().deleted_count == index.stats().deleted_count
    for q in queries[:10]:
        a = [(r.id, round(r.score, 4)) for r in index.search(q, k=10, ef_search=300)]
        b = [(r.id, round(r.score, 4)) for r in copy.search(q, k=10, ef_search=300)]
        assert [x[0] for x in a] == [x[0] for x in b] or len(set(a) & set(b)) >= 9
    assert "doc-5" not in copy and "doc-1" in copy
    # the copy stays a working index
    copy.insert("late", base[700])
    assert copy.search(base[700], k=1, ef_search=200)[0].id == "late"
    assert copy.delete("late") and "late" not in copy


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_query_ef_search_is_honoured(backend):
    cls = rl.Runtime.require(backend)
    if cls.graph != "hnsw":
        pytest.skip(f"{backend} is exact; ef_search does not apply")
    rng = np.random.default_rng(3)
    base = rng.uniform(-1, 1, (4000, 48)).astype(np.float32)
    queries = rng.uniform(-1, 1, (100, 48)).astype(np.float32)
    cfg = rl.HnswConfig(dimensions=48, m=4, ef_construction=16, ef_search=10, metric="euclidean")
    index = rl.HnswIndex(cfg, backend=backend)
    index.insert_batch(ids_for(4000), base)
    exact = rl.HnswIndex(cfg, backend="numpy")
    exact.insert_batch(ids_for(4000), base)

    def recall(ef: int | None) -> float:
        hits = 0
        for q in queries:
            truth = {r.id for r in exact.search(q, k=10)}
            hits += len(truth & {r.id for r in index.search(q, k=10, ef_search=ef)})
        return hits / 1000

    low, default, high = recall(10), recall(None), recall(400)
    assert high > low + 0.05, f"ef_search=400 gave {high:.3f}, ef_search=10 gave {low:.3f}"
    assert default == pytest.approx(low, abs=0.02), "the config's ef_search is the default"


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_raises_typed_errors_and_changes_nothing(backend, data):
    base, _ = data
    index = build(backend, "cosine", base[:200])
    before = snapshot(index, base[3])
    bad_calls = [
        (rl.DimensionMismatchError, lambda: index.insert("x", base[0][:-1])),
        (rl.DimensionMismatchError, lambda: index.insert_batch(["x", "y"], base[:2, :-1])),
        (rl.DimensionMismatchError, lambda: index.search(base[0][:-1], k=3)),
        (rl.DimensionMismatchError, lambda: index.insert("x", base[:2])),
        (rl.InvalidVectorError, lambda: index.insert("x", np.full(DIM, np.nan))),
        (rl.InvalidVectorError, lambda: index.insert("x", np.full(DIM, np.inf))),
        (rl.InvalidVectorError, lambda: index.insert_batch(["x", "y"], np.vstack([base[0], np.full(DIM, np.nan)]))),
        (rl.InvalidVectorError, lambda: index.insert("x", ["a"] * DIM)),
        (rl.InvalidVectorError, lambda: index.insert_batch(["x", "y"], [list(base[0]), list(base[0][:5])])),
        (rl.InvalidVectorError, lambda: index.insert("x", np.zeros(DIM))),
        (rl.InvalidVectorError, lambda: index.search(np.zeros(DIM), k=3)),
        (rl.InvalidVectorError, lambda: index.search(np.full(DIM, np.nan), k=3)),
        (rl.InvalidVectorError, lambda: index.insert("x", np.full(DIM, 1e300))),
        (rl.InvalidIdError, lambda: index.insert("", base[0])),
        (rl.InvalidIdError, lambda: index.insert(7, base[0])),
        (rl.InvalidIdError, lambda: index.insert(None, base[0])),
        (rl.InvalidIdError, lambda: index.insert_batch(["x"], base[:2])),
        (rl.InvalidIdError, lambda: index.insert_batch("xy", base[:2])),
        (rl.DuplicateIdError, lambda: index.insert_batch(["x", "x"], base[:2])),
        (rl.InvalidIdError, lambda: index.delete(3)),
        (rl.InvalidParameterError, lambda: index.search(base[0], k=0)),
        (rl.InvalidParameterError, lambda: index.search(base[0], k=-2)),
        (rl.InvalidParameterError, lambda: index.search(base[0], k=2.5)),
        (rl.InvalidParameterError, lambda: index.search(base[0], k=True)),
        (rl.InvalidParameterError, lambda: index.search(base[0], k=3, ef_search=0)),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
        assert isinstance(error("x"), rl.RuvectorLabError)
    assert snapshot(index, base[3]) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_damaged_blobs_raise_corrupt_index_error(backend, data):
    base, _ = data
    index = build(backend, "euclidean", base[:100])
    blob = index.serialize()
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    newer = bytearray(blob)
    struct.pack_into("<H", newer, 8, container.FORMAT_VERSION + 1)
    damaged = {
        "truncated": blob[: len(blob) // 3],
        "truncated to the header": blob[:20],
        "empty": b"",
        "flipped byte": bytes(flipped),
        "wrong magic": b"NOTMAGIC" + blob[8:],
        "newer version": bytes(newer),
        "other kind": container.dumps("lora-weights", {}, {}),
        "trailing garbage": blob + b"\x00",
    }
    for what, bad in damaged.items():
        with pytest.raises(rl.CorruptIndexError):
            rl.HnswIndex.deserialize(bad)
            pytest.fail(f"{what} blob was accepted")
    with pytest.raises(rl.CorruptIndexError, match="newer"):
        rl.HnswIndex.deserialize(bytes(newer))
    with pytest.raises(rl.CorruptIndexError):
        rl.HnswIndex.deserialize("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_index_close_and_use_after_close(backend, data):
    base, _ = data
    index = rl.HnswIndex(rl.HnswConfig(dimensions=DIM), backend=backend)
    assert len(index) == 0
    with pytest.raises(rl.EmptyIndexError):
        index.search(base[0], k=5)
    index.insert_batch([], np.empty((0, DIM), dtype=np.float32))
    assert len(index) == 0
    index.insert("only", base[0])
    assert [r.id for r in index.search(base[1], k=5)] == ["only"]
    index.close()
    index.close()  # idempotent
    assert index.closed
    for call in (lambda: index.search(base[0], k=1), lambda: index.insert("x", base[0]),
                 lambda: index.delete("only"), index.serialize, index.stats, lambda: len(index)):
        with pytest.raises(rl.IndexClosedError):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_searches_agree_with_serial_ones(backend, data):
    base, queries = data
    index = build(backend, "cosine", base[:1000])
    serial = [[r.id for r in index.search(q, k=10)] for q in queries]
    results: dict[int, list[str]] = {}

    def worker(offset: int) -> None:
        for i in range(offset, len(queries), 2):
            results[i] = [r.id for r in index.search(queries[i], k=10)]

    threads = [threading.Thread(target=worker, args=(o,)) for o in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(queries))] == serial
    batch = index.search_batch(queries, k=10)
    assert sum(len(set(a) & {r.id for r in b}) for a, b in zip(serial, batch, strict=True)) >= 0.99 * 10 * len(queries)


@pytest.mark.parametrize("backend", BACKENDS)
def test_searches_during_inserts_replacements_and_deletes_see_only_live_ids(backend, data):
    """Searches (single and batch, hot path or not) in two threads while a third inserts, replaces and deletes:
    no error, every result well-formed (k distinct ids, scores ascending), and every id one the writer had made
    live at some moment; afterwards the index holds exactly what the writer left."""
    base, queries = data
    index = build(backend, "euclidean", base[:400])
    ever = set(ids_for(400)) | set(ids_for(300, start=1000))
    stop = threading.Event()
    problems: list[str] = []

    def searcher(offset: int) -> None:
        i = offset
        while not stop.is_set():
            i += 1
            q = queries[i % len(queries)]
            rows = [index.search(q, k=8)] if i % 3 else list(index.search_batch(queries[i % 7 : i % 7 + 3], k=8))
            for hits in rows:
                ids, scores = list(hits.ids), list(hits.scores)
                if not isinstance(hits, rl.SearchHits) or len(ids) != 8 or len(set(ids)) != 8:
                    problems.append(f"malformed {ids}")
                elif not set(ids) <= ever or scores != sorted(scores):
                    problems.append(f"unknown ids or unsorted scores {ids} {scores}")

    def writer() -> None:
        try:
            for step in range(30):
                start = 1000 + 10 * step
                index.insert_batch(ids_for(10, start=start), base[400 + 10 * step : 410 + 10 * step])
                index.insert_batch(ids_for(3, start=step * 3), base[700 + step * 3 : 703 + step * 3])  # replaces
                index.delete(f"doc-{399 - step}")
        finally:
            stop.set()

    threads = [threading.Thread(target=searcher, args=(o,)) for o in (0, 1)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not problems, problems[:3]
    assert len(index) == 400 + 300 - 30
    assert "doc-399" not in index and "doc-1299" in index
    assert [r.id for r in index.search(base[700], k=1)] == ["doc-0"]  # the replaced vector answers under its id
    index.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_searches_with_different_ef_each_get_their_own(backend, data):
    base, queries = data
    index = build(backend, "euclidean", base[:1500], m=4, ef_construction=16)
    efs = (10, 300)
    serial = {ef: [[r.id for r in index.search(q, k=10, ef_search=ef)] for q in queries] for ef in efs}
    results: dict[int, list[list[str]]] = {}

    def worker(ef: int) -> None:
        out = []
        for _ in range(3):
            out = [[r.id for r in index.search(q, k=10, ef_search=ef)] for q in queries]
        results[ef] = out

    threads = [threading.Thread(target=worker, args=(ef,)) for ef in efs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ef in efs:
        assert results[ef] == serial[ef], f"a search at ef_search={ef} ran with another thread's ef"


# ------------------------------------------------------------- result types: single search and SearchBatch
def test_search_batch_rows_are_the_single_searches(built, data):
    _, _, index, _ = built
    _, queries = data
    batch = index.search_batch(queries[:20], k=7, ef_search=200)
    assert isinstance(batch, rl.SearchBatch) and len(batch) == 20 and batch.ids.shape == batch.scores.shape == (20, 7)
    assert batch.scores.dtype == np.float32 and batch.counts().tolist() == [7] * 20
    for i, q in enumerate(queries[:20]):
        single = index.search(q, k=7, ef_search=200)
        assert isinstance(single, rl.SearchHits) and isinstance(batch[i], rl.SearchHits)
        assert list(single.ids) == [r.id for r in single] and list(single.scores) == [r.score for r in single]
        assert all(type(r) is rl.SearchResult for r in single) and all(type(r) is rl.SearchResult for r in batch[i])
        assert [r.id for r in batch[i]] == [r.id for r in single] == batch.ids[i].tolist()
        assert np.allclose([r.score for r in batch[i]], [r.score for r in single], atol=1e-4)
    assert [[r.id for r in row] for row in batch] == [[r.id for r in row] for row in batch.to_lists()]
    assert batch[-1] == batch[19] and batch[2:4] == [batch[2], batch[3]] and batch == batch.to_lists()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_the_c_hot_path_and_the_python_path_give_identical_results(backend, metric, data):
    """Where the C hot path serves a backend (ruvector_lab.fastpath), a search gives what the Python path gives
    (the same ids in the same order, the same scores to float32 precision, the same result type), also after
    deletions and replacements, at the default ef and another, with k above the live count. (A search at an ef
    the index is not running at goes through the batch path on either side, whose scores are float32 values.)"""
    base, queries = data
    index = build(backend, metric, base[:300])
    for label in range(0, 300, 7):
        index.delete(f"doc-{label}")
    index.insert_batch(ids_for(20, start=100), base[300:320])  # replaces 20 live ids
    index.insert_batch(ids_for(5, start=900), base[320:325])

    def searches() -> list[tuple[tuple[str, ...], tuple[float, ...], type]]:
        out = []
        for q in queries[:25]:
            for k, ef in ((10, None), (3, 120), (400, None)):
                hits = index.search(q, k=k, ef_search=ef)
                out.append((tuple(hits.ids), tuple(hits.scores), type(hits)))
        return out

    hot = searches()
    index._hot = False  # the Python path: search_one and the facade's own id mapping
    general = searches()
    index.close()
    assert [ids for ids, _, _ in hot] == [ids for ids, _, _ in general]
    for (_, mine, _), (_, theirs, _) in zip(hot, general, strict=True):
        assert np.allclose(mine, theirs, rtol=1e-6, atol=1e-6)
        assert all(type(score) is float for score in mine)
    assert all(kind is rl.SearchHits for _, _, kind in hot + general)
    assert all(len(ids) == len(set(ids)) and "doc-0" not in ids for ids, _, _ in hot)


def test_search_takes_the_general_checks_for_any_other_query_form(built, data):
    _, metric, index, _ = built
    _, queries = data
    q = queries[3]
    fast = [r.id for r in index.search(q, k=5, ef_search=200)]
    assert [r.id for r in index.search(q.tolist(), k=5, ef_search=200)] == fast  # a list
    assert [r.id for r in index.search(q.astype(np.float64), k=5, ef_search=200)] == fast  # another dtype
    assert [r.id for r in index.search(np.asfortranarray(q[None, :])[0], k=np.int64(5), ef_search=200)] == fast
    for bad in (np.full(DIM, np.nan, dtype=np.float32), np.full(DIM, np.inf, dtype=np.float32),
                np.where(np.arange(DIM) == 5, np.float32(np.nan), q).astype(np.float32)):
        with pytest.raises(rl.InvalidVectorError):
            index.search(bad, k=5)
    zero = np.zeros(DIM, dtype=np.float32)
    if metric == "cosine":
        with pytest.raises(rl.InvalidVectorError, match="zero vector"):
            index.search(zero, k=5)
    else:
        assert len(index.search(zero, k=5)) == 5
    with pytest.raises(rl.DimensionMismatchError):
        index.search(q[:-1], k=5)
    with pytest.raises(rl.InvalidParameterError):
        index.search(q, k=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_batch_pads_past_the_live_count_and_skips_removed_ids(backend, data):
    base, queries = data
    index = build(backend, "euclidean", base[:30])
    for i in range(0, 30, 3):
        index.delete(f"doc-{i}")
    index.insert("doc-1", base[40])  # replaced: its old label is gone
    batch = index.search_batch(queries[:5], k=50)
    assert batch.ids.shape == (5, 20) and batch.counts().tolist() == [20] * 5  # k clamped to the 20 live ids
    live = set(index.ids())
    for i, row in enumerate(batch):
        assert {r.id for r in row} == live and [r.id for r in row] == [r.id for r in index.search(queries[i], 50)]
    empty = index.search_batch(np.empty((0, DIM), dtype=np.float32), k=3)
    assert len(empty) == 0 and empty == [] and list(empty) == []
    index.close()
    with pytest.raises(rl.IndexClosedError):
        index.ids()


class _Panic(BaseException):
    """Stands for pyo3's PanicException, which derives from BaseException, not Exception."""


@pytest.mark.parametrize("backend", BACKENDS)
def test_whatever_a_library_raises_reaches_the_caller_as_backend_error(backend, data, monkeypatch):
    base, queries = data
    index = build(backend, "euclidean", base[:50])
    raw = type(index.raw_backend)

    def panic(*_args, **_kwargs):
        raise _Panic("a Rust panic")

    # a single search goes through search_row (the C hot path) or search_one: both are patched
    for methods, call in ((("search_row", "search_one"), lambda: index.search(queries[0], k=3)),
                          (("search",), lambda: index.search_batch(queries[:2], k=3)),
                          (("add",), lambda: index.insert("new", base[60])),
                          (("remove",), lambda: index.delete("doc-3")),
                          (("to_bytes",), index.serialize)):
        with monkeypatch.context() as patched:
            for method in methods:
                patched.setattr(raw, method, panic)
            with pytest.raises(rl.BackendError, match=f"{backend} backend failed.*_Panic: a Rust panic"):
                call()
    assert "doc-3" in index and "new" not in index and len(index) == 50  # a failed call loses nothing
    assert [r.id for r in index.search(base[3], k=1)] == ["doc-3"]
    with monkeypatch.context() as patched:
        for method in ("search_row", "search_one"):
            patched.setattr(raw, method, lambda *_a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            index.search(queries[0], k=3)
    index.close()
