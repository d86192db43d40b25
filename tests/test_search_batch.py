"""SearchBatch on its own: arrays in, rows of SearchResult out, list-like comparisons."""

from __future__ import annotations

import numpy as np
import pytest

import ruvector_lab as rl


def make() -> rl.SearchBatch:
    ids = np.array([["a", "b", None], ["c", None, None]], dtype=object)
    scores = np.array([[0.1, 0.2, np.inf], [0.3, np.inf, np.inf]], dtype=np.float32)
    return rl.SearchBatch(ids, scores)


def test_rows_drop_padding_and_keep_the_result_type():
    batch = make()
    assert len(batch) == 2 and batch.counts().tolist() == [2, 1]
    assert batch[0] == [rl.SearchResult("a", pytest.approx(0.1)), rl.SearchResult("b", pytest.approx(0.2))]
    assert [r.id for r in batch[1]] == ["c"] and type(batch[1][0]) is rl.SearchResult
    assert batch[-1] == batch[1] and batch[:1] == [batch[0]] and list(batch) == batch.to_lists()
    assert repr(batch) == "SearchBatch(2 queries, k=3)"
    assert batch.index(batch[1]) == 1 and batch[0] in batch  # the Sequence mixins work


def test_equality_is_with_sequences_of_rows_only():
    batch = make()
    assert batch == batch.to_lists() and batch == tuple(batch.to_lists())
    assert batch != [[], []] and batch != batch.to_lists()[:1]
    assert (batch == "ab") is False and (batch == 3) is False
    with pytest.raises(TypeError):
        hash(batch)


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        rl.SearchBatch(np.empty((2, 3), dtype=object), np.empty((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="matrices"):
        rl.SearchBatch(np.empty(3, dtype=object), np.empty(3, dtype=np.float32))


def test_search_hits_read_as_a_sequence_of_search_results():
    hits = rl.SearchHits(("a", "b", "c"), [0.1, 0.2, 0.3])
    assert len(hits) == 3 and hits[0] == rl.SearchResult("a", 0.1) and type(hits[-1]) is rl.SearchResult
    assert [r.id for r in hits] == list(hits.ids) and [r.score for r in hits] == hits.scores
    assert hits == [("a", 0.1), ("b", 0.2), ("c", 0.3)] and hits != [("a", 0.1)] and hits == rl.SearchHits(
        ["a", "b", "c"], (0.1, 0.2, 0.3))
    assert isinstance(hits[1:], rl.SearchHits) and hits[1:] == [("b", 0.2), ("c", 0.3)]
    assert next(reversed(hits)).id == "c" and hits.index(("b", 0.2)) == 1 and ("c", 0.3) in hits
    assert repr(hits) == repr(list(hits)) and bool(rl.SearchHits((), [])) is False
    (first_id, first_score), *_ = hits  # unpacks like a list of pairs
    assert (first_id, first_score) == ("a", 0.1)
    with pytest.raises(TypeError):
        hash(hits)
    with pytest.raises(ValueError, match="pair up"):
        rl.SearchHits(("a",), [])
    assert (hits == "abc") is False
