"""bench.embedding: the anchor's workload, the ratios to sentence-transformers, corpus throughput and busy cores
(real Embedders, tiny sizes: the figures themselves belong to the benchmark run, never to a test)."""

from __future__ import annotations

import pytest

from ruvector_lab.bench import embedding
from ruvector_lab.bench.adr import MIXED_LONG, distinct_sentences, long_paragraph, mixed_batches


def test_mixed_batches_hold_short_texts_and_long_paragraphs():
    from ruvector_lab.embeddings import Embedder

    batches = mixed_batches(3, seed=5)
    assert len(batches) == 3 and all(len(b) == 32 for b in batches)
    assert batches == mixed_batches(3, seed=5) and batches != mixed_batches(3, seed=6)
    with Embedder(threads=1) as emb:
        for batch in batches:
            lengths = sorted(len(emb.token_ids(t)) for t in batch)
            assert lengths[-MIXED_LONG:] == [256] * MIXED_LONG  # long enough to be cut at the model's 256 tokens
            assert lengths[-MIXED_LONG - 1] < 30
    assert len({t for b in batches for t in b}) == 3 * 32  # every text distinct
    assert long_paragraph(1) != long_paragraph(2)


def test_workload_has_the_anchor_scripts_schema():
    corpus = distinct_sentences(50, 3)
    work = embedding.workload(corpus, batches=2, singles=5)
    cases = work["cases"]
    assert work["threads"] == [1, 2] and work["corpus_batch_size"] == 64
    assert len(cases["single_short"]) == 5 and [len(b) for b in cases["batch32_short"]] == [32, 32]
    assert cases["batch32_mixed"] == mixed_batches(2, 7)
    for parts, batch in zip(cases["mixed_parts"], cases["batch32_mixed"], strict=True):
        assert len(parts["long"]) == MIXED_LONG and sorted(parts["short"] + parts["long"]) == sorted(batch)
    assert cases["corpus"] == corpus


def test_anchor_ratios_are_ours_over_theirs():
    ours = {"1": {"batch32_short": {"p50_ms": 50.0}, "corpus": {"texts_per_s": 900.0}}}
    theirs = {"threads": {"1": {"batch32_short": {"p50_ms": 200.0}, "corpus": {"texts_per_s": 300.0},
                                "mixed_parts": {"p50_ms": 10.0}}}}
    rows = {r["case"]: r for r in embedding.anchor_ratios(ours, theirs)}
    assert set(rows) == {"batch32_short", "corpus"}  # a case we did not measure is left out
    assert rows["batch32_short"]["ratio"] == pytest.approx(0.25) and rows["batch32_short"]["unit"] == "p50 ms"
    assert rows["corpus"]["ratio"] == pytest.approx(3.0) and rows["corpus"]["unit"] == "texts/s"


def test_corpus_throughput_runs_every_configuration_in_every_round():
    configs = (embedding.CorpusConfig("default", threads=1), embedding.CorpusConfig("plain", threads=1, graph="plain"))
    got = embedding.corpus_throughput(distinct_sentences(40, 1), configs, rounds=2)
    assert [r.config.name for r in got] == ["default", "plain"]
    assert [r.graph for r in got] == ["fused", "plain"]
    for r in got:
        assert len(r.rounds) == 2 and r.texts == 40 and min(r.rounds) <= r.texts_per_s <= max(r.rounds)


def test_busy_cores_measures_spinning_on_and_off_idle_and_busy():
    got = embedding.busy_cores(precision="int8", threads=2, batches=2)
    for spin in (True, False):
        row = got[f"spin={spin}"]
        assert row["idle"]["p50_ms"] > 0 and row["one core busy"]["p50_ms"] > 0
        assert row["busy_over_idle"] == pytest.approx(row["one core busy"]["p50_ms"] / row["idle"]["p50_ms"])


def test_wordnet_sample_is_seeded_and_distinct():
    from ruvector_lab.errors import DatasetError

    try:
        first = embedding.wordnet_sample(200, seed=1)
    except DatasetError as exc:  # WordNet is a Debian data package: `make setup` installs it where apt-get exists
        pytest.skip(str(exc))
    assert first == embedding.wordnet_sample(200, seed=1) and first != embedding.wordnet_sample(200, seed=2)
    assert len(first) == 200 == len(set(first))


def test_measure_workload_times_every_case_at_every_thread_count():
    work = embedding.workload(distinct_sentences(30, 4), batches=1, singles=4)
    work["threads"] = [1]
    got = embedding.measure_workload(work)
    assert set(got) == {"1"}
    assert set(got["1"]) == {"single_short", "batch32_short", "batch32_mixed", "corpus"}
    for case in ("single_short", "batch32_short", "batch32_mixed"):
        assert 0 < got["1"][case]["p50_ms"] <= got["1"][case]["p95_ms"]
    assert got["1"]["corpus"]["texts_per_s"] > 0


def test_main_writes_the_anchor_workload(tmp_path):
    import json

    from ruvector_lab.errors import DatasetError

    out = tmp_path / "workload.json"
    try:
        assert embedding.main(["--corpus", "50", "--workload", str(out)]) == 0
    except DatasetError as exc:  # WordNet missing: `make setup` installs it where apt-get exists
        pytest.skip(str(exc))
    work = json.loads(out.read_text())
    assert len(work["cases"]["corpus"]) == 50 and work["cases"]["batch32_mixed"] == mixed_batches(20, 7)
