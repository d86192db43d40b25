"""Patterns: create_pattern, match_patterns over a list, PatternStore on the index backends, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import available_backends

from ruvector_lab import learning
from ruvector_lab.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    InvalidIdError,
    InvalidParameterError,
    InvalidVectorError,
    UnknownIdError,
)
from ruvector_lab.learning import PatternStore, create_pattern, match_patterns


def _vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_create_pattern_normalises_copies_metadata_and_assigns_ids():
    meta = {"label": "greeting", "count": 3}
    p = create_pattern([3.0, 4.0], meta)
    np.testing.assert_allclose(p.embedding, [0.6, 0.8], rtol=1e-6)
    assert p.embedding.dtype == np.float32 and p.dimensions == 2
    meta["label"] = "changed"
    assert p.metadata == {"label": "greeting", "count": 3}
    q = create_pattern([1.0, 0.0])
    assert p.id != q.id and len(p.id) > 0
    assert create_pattern([1.0, 0.0], id="mine").id == "mine"


@pytest.mark.parametrize(
    ("embedding", "metadata", "error"),
    [
        ([0.0, 0.0], None, InvalidVectorError),
        ([np.nan, 1.0], None, InvalidVectorError),
        ([], None, DimensionMismatchError),
        ([1.0, 2.0], {"x": object()}, InvalidParameterError),
        ([1.0, 2.0], ["not", "a", "dict"], InvalidParameterError),
        ([1.0, 2.0], {"x": float("nan")}, InvalidParameterError),
    ],
)
def test_create_pattern_refuses_bad_input(embedding, metadata, error):
    with pytest.raises(error):
        create_pattern(embedding, metadata)


def test_create_pattern_refuses_empty_id():
    with pytest.raises(InvalidIdError):
        create_pattern([1.0, 0.0], id="")


def test_match_patterns_threshold_order_and_k_against_brute_force():
    vecs = _vectors(200)
    patterns = [create_pattern(v, {"i": i}, id=f"p{i}") for i, v in enumerate(vecs)]
    query = vecs[7] + 0.1 * _vectors(1, seed=9)[0]
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = unit @ (query / np.linalg.norm(query))
    matches = match_patterns(query, patterns, threshold=0.2)
    expected = [f"p{i}" for i in np.argsort(-sims) if sims[i] >= 0.2]
    assert [m.pattern.id for m in matches] == expected
    assert matches[0].pattern.id == "p7"
    np.testing.assert_allclose([m.similarity for m in matches], np.sort(sims[sims >= 0.2])[::-1], rtol=1e-5)
    assert [m.pattern.id for m in match_patterns(query, patterns, 0.2, k=3)] == expected[:3]
    assert 0 < len(matches) < len(patterns)  # the threshold really cut some


def test_match_patterns_empty_list_and_bad_arguments():
    assert match_patterns([1.0, 0.0], [], 0.5) == []
    patterns = [create_pattern([1.0, 0.0]), create_pattern([0.0, 1.0])]
    with pytest.raises(InvalidParameterError):
        match_patterns([1.0, 0.0], patterns, threshold=1.5)
    with pytest.raises(InvalidParameterError):
        match_patterns([1.0, 0.0], patterns, threshold=True)
    with pytest.raises(DimensionMismatchError):
        match_patterns([1.0, 0.0, 0.0], patterns, 0.0)
    with pytest.raises(DimensionMismatchError):
        match_patterns([1.0, 0.0], [*patterns, create_pattern([1.0, 2.0, 3.0])], 0.0)
    with pytest.raises(InvalidVectorError):
        match_patterns([0.0, 0.0], patterns, 0.0)
    with pytest.raises(InvalidParameterError):
        match_patterns([1.0, 0.0], ["not a pattern"], 0.0)
    with pytest.raises(InvalidParameterError):
        match_patterns([1.0, 0.0], patterns, 0.0, k=0)


@pytest.mark.parametrize("backend", available_backends())
def test_pattern_store_matches_like_exact_search(backend):
    vecs = _vectors(300, d=24, seed=1)
    store = PatternStore(24, backend=backend)
    store.add_many([create_pattern(v, {"i": i}, id=f"p{i}") for i, v in enumerate(vecs)])
    assert len(store) == 300 and "p5" in store and store.backend == backend
    query = vecs[42]
    exact = match_patterns(query, list(store), threshold=0.1, k=5)
    got = store.match(query, threshold=0.1, k=5)
    assert got[0].pattern.id == "p42" and got[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert [m.pattern.id for m in got] == [m.pattern.id for m in exact]
    np.testing.assert_allclose([m.similarity for m in got], [m.similarity for m in exact], atol=1e-5)
    # match_patterns delegates to the store
    assert [m.pattern.id for m in match_patterns(query, store, 0.1, k=5)] == [m.pattern.id for m in got]


def test_pattern_store_threshold_cuts_results_and_crud():
    store = PatternStore(3, backend="numpy")
    a = store.create([1.0, 0.0, 0.0], {"name": "a"}, id="a")
    store.create([0.9, 0.1, 0.0], id="b")
    store.create([0.0, 0.0, 1.0], id="c")
    assert store.get("a") is a
    assert [m.pattern.id for m in store.match([1.0, 0.0, 0.0], threshold=0.9)] == ["a", "b"]
    assert [m.pattern.id for m in store.match([1.0, 0.0, 0.0], threshold=-1.0)] == ["a", "b", "c"]
    assert store.remove("b") is True and store.remove("b") is False
    assert [m.pattern.id for m in store.match([1.0, 0.0, 0.0], threshold=0.5)] == ["a"]
    with pytest.raises(UnknownIdError):
        store.get("b")
    store.create([0.0, 1.0, 0.0], id="a")  # re-adding an id replaces it
    assert len(store) == 2 and store.match([0.0, 1.0, 0.0], 0.9)[0].pattern.id == "a"
    with pytest.raises(DimensionMismatchError):
        store.add(create_pattern([1.0, 2.0]))
    with pytest.raises(DimensionMismatchError):
        store.match([1.0, 0.0], 0.0)
    with pytest.raises(InvalidParameterError):
        store.match([1.0, 0.0, 0.0], threshold=2.0)
    assert PatternStore(3, backend="numpy").match([1.0, 0.0, 0.0]) == []


def test_pattern_store_save_load_roundtrip_and_tamper(tmp_path):
    vecs = _vectors(50, d=8, seed=3)
    store = PatternStore(8, backend="numpy")
    store.add_many([create_pattern(v, {"i": i, "tag": ["x", i]}, id=f"p{i}") for i, v in enumerate(vecs)])
    store.remove("p3")
    path = tmp_path / "patterns.rvl"
    store.save(path)
    loaded = PatternStore.load(path)
    assert len(loaded) == 49 and "p3" not in loaded
    assert loaded.get("p10").metadata == {"i": 10, "tag": ["x", 10]}
    q = vecs[10]
    assert [(m.pattern.id, round(m.similarity, 5)) for m in loaded.match(q, 0.0, k=5)] == [
        (m.pattern.id, round(m.similarity, 5)) for m in store.match(q, 0.0, k=5)
    ]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(CorruptIndexError):
        PatternStore.from_bytes(bytes(blob))
    with pytest.raises(CorruptIndexError):
        PatternStore.from_bytes(bytes(blob[:100]))
    with pytest.raises(CorruptIndexError):
        learning.LoRAWeights.from_bytes(path.read_bytes())  # a pattern store is not LoRA weights
    loaded.close()
    store.close()


def test_pattern_set_matches_like_a_list_and_top_k_is_the_sorted_prefix():
    vecs = _vectors(500, d=12, seed=4)
    items = [create_pattern(v, id=f"p{i}") for i, v in enumerate(vecs)]
    pset = learning.PatternSet(items)
    assert len(pset) == 500 and next(iter(pset)) is items[0]
    query = vecs[3]
    full = pset.match(query, threshold=-1.0)
    assert len(full) == 500
    sims = [m.similarity for m in full]
    assert sims == sorted(sims, reverse=True)
    for k in (1, 7, 499, 500, 600):
        assert [m.pattern.id for m in pset.match(query, -1.0, k=k)] == [m.pattern.id for m in full[:k]]
    assert [m.pattern.id for m in pset.match(query, 0.3, k=50)] == [m.pattern.id for m in full if m.similarity
                                                                     >= 0.3][:50]
    assert learning.PatternSet([]).match(query) == []
    with pytest.raises(DimensionMismatchError):
        learning.PatternSet([items[0], create_pattern([1.0, 2.0])])
    with pytest.raises(InvalidParameterError):
        learning.PatternSet([object()])
    assert [m.pattern.id for m in match_patterns(query, pset, 0.3, k=5)] == [m.pattern.id for m in full[:5]]
