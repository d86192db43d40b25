"""Token-budget batching: the plan (every row once, budget and row cap held, least cost) and what the Embedder does
with it (input order kept, fp32 vectors unchanged by any chunking, a mixed batch costs what its parts cost)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ruvector_lab.embeddings import Embedder
from ruvector_lab.embeddings.batching import plan_chunks
from ruvector_lab.errors import InvalidParameterError


def _cost(lengths: np.ndarray, chunks: list[np.ndarray], overhead: int) -> int:
    return sum(overhead + int(lengths[c].max()) * len(c) for c in chunks)


def _brute_force(lengths: list[int], budget: int, max_rows: int | None, overhead: int) -> int:
    """The least cost over every split of the length-sorted rows into contiguous feasible chunks."""
    ordered = sorted(lengths, reverse=True)
    n = len(ordered)
    best = None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], n]
        cost, ok = 0, True
        for a, b in itertools.pairwise(bounds):
            rows = b - a
            if (rows > 1 and ordered[a] * rows > budget) or (max_rows is not None and rows > max_rows):
                ok = False
                break
            cost += overhead + ordered[a] * rows
        if ok and (best is None or cost < best):
            best = cost
    return best


@pytest.mark.parametrize("seed", range(12))
def test_plan_is_a_least_cost_partition_within_the_budget(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=int(rng.integers(1, 9)))
    budget = int(rng.integers(30, 120))
    max_rows = None if seed % 3 == 0 else int(rng.integers(1, 5))
    overhead = int(rng.integers(0, 20))
    chunks = plan_chunks(lengths, budget, max_rows, overhead)
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # every row exactly once
    for chunk in chunks:
        assert len(chunk) == 1 or lengths[chunk].max() * len(chunk) <= budget
        assert max_rows is None or len(chunk) <= max_rows
        assert list(lengths[chunk]) == sorted(lengths[chunk], reverse=True)  # longest first
    assert _cost(lengths, chunks, overhead) == _brute_force(list(lengths), budget, max_rows, overhead)


def test_long_texts_do_not_pad_the_short_ones():
    lengths = [13] * 15 + [256] + [12] * 15 + [256]
    chunks = plan_chunks(lengths, token_budget=2048)
    long_chunk = next(c for c in chunks if 15 in c.tolist())
    assert sorted(long_chunk.tolist()) == [15, 31]  # the two paragraphs run together, apart from the rest
    assert all(np.asarray(lengths)[c].max() <= 13 for c in chunks if 15 not in c.tolist())


def test_a_text_longer_than_the_budget_runs_alone():
    chunks = plan_chunks([300, 5, 5], token_budget=100)
    assert next(c.tolist() for c in chunks) == [0]


def test_empty_input_plans_nothing():
    assert plan_chunks([]) == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"token_budget": 0}, "token_budget"), ({"token_budget": 2.5}, "token_budget"),
    ({"token_budget": True}, "token_budget"), ({"run_overhead": -1}, "run_overhead"),
    ({"max_rows": 0}, "max_rows"), ({"max_rows": 1.5}, "max_rows"),
])
def test_bad_plan_parameters_are_refused(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        plan_chunks([3, 4], **kwargs)


def test_zero_length_rows_are_refused():
    with pytest.raises(InvalidParameterError, match="length"):
        plan_chunks([3, 0])


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    with Embedder(precision="fp32", threads=1) as emb:
        yield emb


@pytest.mark.parametrize("chunking", [{}, {"token_budget": 64}, {"token_budget": 300, "chunk_size": 3},
                                      {"token_budget": 100_000}], ids=["default", "tiny", "capped", "one-run"])
def test_fp32_vectors_do_not_depend_on_the_chunking(fp32, reference, chunking):
    """Chunks of any budget (a 256-token text over a budget of 64 runs alone) give each text its own vector, in
    the order given, within 1e-5 of sentence-transformers."""
    got = fp32.embed_batch(reference["texts"], **chunking)
    assert np.abs(got - reference["vectors"]).max() <= 1e-5


def test_mixed_batch_is_embedded_as_its_parts(fp32, reference):
    """A batch of short texts with two long ones: the rows equal the texts embedded apart (the plan keeps the long
    texts in their own run, so nothing is padded to 256 tokens)."""
    texts = reference["texts"]
    long_texts = [t for t, ids in zip(texts, reference["token_ids"], strict=True) if len(ids) == 256][:2]
    short = [t for t, ids in zip(texts, reference["token_ids"], strict=True) if 3 < len(ids) < 20][:12]
    mixed = short[:6] + long_texts[:1] + short[6:] + long_texts[1:]
    together = fp32.embed_batch(mixed)
    apart = np.concatenate([fp32.embed_batch(short), fp32.embed_batch(long_texts)])
    order = [*range(6), 12, *range(6, 12), 13]
    np.testing.assert_allclose(together, apart[order], atol=1e-6)
