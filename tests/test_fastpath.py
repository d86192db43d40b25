"""The facade's C hot path (ruvector_lab/_hotpath.c) against its Python definitions in ruvector_lab.fastpath."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruvector_lab import SearchHits, fastpath
from ruvector_lab.fastpath import (
    ROW_PAIRS,
    SCORE_MINUS_ONE,
    SCORE_NEGATE,
    SCORE_ONE_MINUS,
    SCORE_SAME,
    SCORE_SQRT,
    convert_scores,
    query_ok_python,
)

MODES = (SCORE_SAME, SCORE_SQRT, SCORE_MINUS_ONE, SCORE_ONE_MINUS, SCORE_NEGATE)
IDS = [f"id-{i}" for i in range(50)]


@pytest.fixture(scope="module")
def c():
    if fastpath.hotpath is None:
        if shutil.which("cc") is None:
            pytest.skip("no C compiler here, so `make setup` could not build the hot path")
        pytest.fail("ruvector_lab._hotpath is not built though a C compiler is installed: run `make setup`")
    return fastpath.hotpath


def test_the_facade_uses_the_c_module_where_it_is_built(c):
    assert fastpath.query_ok is c.query_ok
    in_c = (c.SCORE_SAME, c.SCORE_SQRT, c.SCORE_MINUS_ONE, c.SCORE_ONE_MINUS, c.SCORE_NEGATE, c.ROW_PAIRS)
    assert in_c == (*MODES, ROW_PAIRS)


@settings(max_examples=300, deadline=None)
@given(vector=hnp.arrays(np.float32, st.integers(1, 12),
                         elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       dimensions=st.integers(1, 12), cosine=st.booleans())
def test_query_ok_in_c_is_the_python_rule(c, vector, dimensions, cosine):
    assert c.query_ok(vector, dimensions, cosine) is query_ok_python(vector, dimensions, cosine)


def test_query_ok_refuses_every_other_form(c):
    q = np.arange(1, 9, dtype=np.float32)
    assert c.query_ok(q, 8, True) and query_ok_python(q, 8, True)
    unaligned = np.frombuffer(b"\0" + q.tobytes(), dtype=np.float32, count=8, offset=1)
    others = [q.tolist(), q.astype(np.float64), q.astype(">f4"), q[::2], q[None, :], q[:-1], unaligned,
              np.zeros(8, dtype=np.float32), np.where(np.arange(8) == 3, np.float32(np.nan), q),
              np.where(np.arange(8) == 7, np.float32(-np.inf), q), np.ma.masked_array(q)]
    for other in others:
        assert not c.query_ok(other, 8, True)
        assert not query_ok_python(other, 8, True)
    assert c.query_ok(np.zeros(8, dtype=np.float32), 8, False)  # zero is a fine query but under cosine
    huge = np.full(8, np.finfo(np.float32).max, dtype=np.float32)  # finite, its float32 sum of squares is not
    assert c.query_ok(huge, 8, True) and query_ok_python(huge, 8, True)
    with pytest.raises(TypeError):
        c.query_ok(q, 8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label_dtype", [np.int64, np.uint64, np.int32, np.uint32])
@pytest.mark.parametrize("distance_dtype", [np.float32, np.float64])
def test_hits_maps_labels_and_converts_scores_as_python_does(c, mode, label_dtype, distance_dtype):
    rng = np.random.default_rng(mode)
    labels = rng.permutation(len(IDS))[:10].astype(label_dtype)
    distances = np.sort(rng.uniform(-0.5, 3.0, 10)).astype(distance_dtype)
    for shape in ((10,), (1, 10)):
        hits = c.hits(SearchHits, distances.reshape(shape), labels.reshape(shape), IDS, mode)
        assert type(hits) is SearchHits
        assert hits.ids == tuple(IDS[label] for label in labels.tolist())
        assert hits.scores == convert_scores(distances.tolist(), mode)
        assert [r.id for r in hits] == list(hits.ids) and len(hits) == 10


def test_hits_declines_what_the_python_path_must_handle(c):
    distances = np.linspace(0, 1, 4, dtype=np.float32)[None, :]
    ids = [*IDS[:5], None]
    ok = np.array([[0, 1, 2, 3]], dtype=np.int64)
    assert c.hits(SearchHits, distances, ok, ids, SCORE_SAME).ids == tuple(IDS[:4])
    declined = {
        "padding": np.array([[0, 1, 2, -1]], dtype=np.int64),
        "a removed label": np.array([[0, 5, 1, 2]], dtype=np.int64),
        "a label beyond the ids": np.array([[0, 1, 2, 6]], dtype=np.int64),
        "a uint64 beyond int64": np.array([[0, 1, 2, 2**64 - 1]], dtype=np.uint64),
        "labels of another dtype": ok.astype(np.int8),
        "another length": ok[:, :3],
        "two rows": np.vstack([ok, ok]),
        "a list": ok.tolist(),
    }
    for why, labels in declined.items():
        assert c.hits(SearchHits, distances, labels, ids, SCORE_SAME) is None, why
    assert c.hits(SearchHits, distances.astype(np.float16), ok, ids, SCORE_SAME) is None
    assert c.hits(SearchHits, distances.astype(">f4"), ok, ids, SCORE_SAME) is None
    with pytest.raises(ValueError, match="unknown score conversion"):
        c.hits(SearchHits, distances, ok, ids, 17)
    with pytest.raises(TypeError):
        c.hits(SearchHits, distances, ok, tuple(ids), SCORE_SAME)  # the facade's id list, not another sequence


def test_hits_reads_ruvectors_result_tuples(c):
    results = [("3", 0.25, None), ("0", 0.5, {"m": 1}), ("12", 0.75, None), ("7", 1.0, None)]
    hits = c.hits(SearchHits, results, 3, IDS, ROW_PAIRS)
    assert hits.ids == ("id-3", "id-0", "id-12") and hits.scores == [0.25, 0.5, 0.75]
    assert c.hits(SearchHits, results, 10, IDS, ROW_PAIRS).ids == ("id-3", "id-0", "id-12", "id-7")
    assert len(c.hits(SearchHits, [], 5, IDS, ROW_PAIRS)) == 0
    for bad in ([("x3", 0.1, None)], [("-3", 0.1, None)], [("", 0.1, None)], [("٣", 0.1, None)],
                [(3, 0.1, None)], [("3", 1, None)], [("3",)], [["3", 0.1, None]], [("99", 0.1, None)],
                [("1234567890123456789", 0.1, None)]):
        assert c.hits(SearchHits, bad, 5, IDS, ROW_PAIRS) is None, bad
    assert c.hits(SearchHits, [("2", 0.1, None)], 5, [*IDS[:2], None], ROW_PAIRS) is None  # removed


def test_pairs_rows_is_the_protocols_two_arrays(c):
    rows = [[(str(i + j), float(i) / 10 + j, None) for j in range(5)] for i in range(4)]
    scores, labels = c.pairs_rows(rows, 3)
    assert scores.dtype == np.float32 and labels.dtype == np.int64 and scores.shape == labels.shape == (4, 3)
    assert labels.tolist() == [[i + j for j in range(3)] for i in range(4)]
    assert np.array_equal(scores, np.array([[i / 10 + j for j in range(3)] for i in range(4)], dtype=np.float32))
    assert c.pairs_rows([*rows, rows[0][:2]], 3) is None  # a short row: the caller pads
    assert c.pairs_rows([[("a", 0.1, None)] * 3], 3) is None
    empty_scores, empty_labels = c.pairs_rows([], 3)
    assert empty_scores.shape == empty_labels.shape == (0, 3)


@pytest.mark.parametrize("mode", MODES)
def test_convert_scores_is_each_conversion(mode):
    raw = [-0.25, 0.0, 0.5, 4.0]
    expected = {SCORE_SAME: raw, SCORE_SQRT: [0.0, 0.0, math.sqrt(0.5), 2.0],
                SCORE_MINUS_ONE: [-1.25, -1.0, -0.5, 3.0], SCORE_ONE_MINUS: [1.25, 1.0, 0.5, -3.0],
                SCORE_NEGATE: [0.25, -0.0, -0.5, -4.0]}[mode]
    assert convert_scores(raw, mode) == expected
    with pytest.raises(ValueError):
        convert_scores(raw, 9)
