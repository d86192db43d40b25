# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: ruvector-lab (.venv)
#     language: python
#     name: ruvector-lab
# ---

# %% [markdown]
# # 01 · Quickstart: the runtime, an index, a few sentences
#
# **Question.** What does ruvector-lab pick on this machine, and does the public API do what ADR-006 promises:
# build an HNSW index, search it, delete from it, serialize it, and recall sentences by meaning?
#
# **Data.** Nothing from the pipeline: 2,000 seeded random 384-d vectors made here, and eight sentences embedded
# live with `Embedder` (all-MiniLM-L6-v2 on onnxruntime; the model files come from `make setup-models`).
#
# Every check is an `assert`; the printed numbers are for reading, not for comparing.

# %%
import itertools

import numpy as np
import pandas as pd

import ruvector_lab as rl

pd.set_option("display.width", 140)

# %% [markdown]
# ## The runtime and its backends
#
# `Runtime.available()` probes every known backend (a tiny index per metric) and says, for each, `True` or why it
# cannot be used here. `Runtime.initialize()` keeps the first that works in ADR-006's order (the backend registry's
# `detection_rank`): native (`faiss`, `hnswlib`, `ruvector`, `usearch`), then `wasm` (RuVector's own WebAssembly
# modules run by wasmtime), then the `numpy` fallback that always works.

# %%
available = rl.Runtime.available()
backends = pd.DataFrame(
    [{"backend": name, "tier": rl.Runtime.tier_of(name), "available": ok is True,
      "why not": "" if ok is True else ok} for name, ok in available.items()]
)
backends

# %%
rt = rl.Runtime.initialize()
print(f"the runtime chose {rt.backend!r} (tier {rt.tier!r})")
assert available["numpy"] is True, "the fallback must always be available"
assert available[rt.backend] is True
first_working = next(name for name, ok in available.items() if ok is True)
assert rt.backend == first_working, "the runtime keeps the first working backend in ADR order"

# %% [markdown]
# ## An index: build, search, delete, serialize
#
# The ADR's configuration: M = 16, ef_construction = 100, ef_search = 50, cosine. Scores are distances (cosine:
# `1 - cos`), smaller is closer, so a stored vector finds itself first with a score of about 0.

# %%
rng = np.random.default_rng(0)
X = rng.uniform(-1.0, 1.0, (2_000, 384)).astype(np.float32)
ids = [f"vec_{i}" for i in range(len(X))]
config = rl.HnswConfig(dimensions=384, m=16, ef_construction=100, ef_search=50, metric="cosine")
index = rl.HnswIndex(config)
index.insert_batch(ids, X)
hits = index.search(X[42], k=10)
assert len(index) == 2_000 and len(hits) == 10
assert hits[0].id == "vec_42" and abs(hits[0].score) < 1e-4
assert all(a.score <= b.score for a, b in itertools.pairwise(hits)), "results sorted, closest first"

# %%
# NBVAL_CHECK_OUTPUT
print("top hit of vec_42's own vector:", hits[0].id)

# %% [markdown]
# How good is the graph? Recall@10 of 100 fresh queries against exact neighbours from `batch_distance` (the same
# metric, computed exhaustively).

# %%
queries = rng.uniform(-1.0, 1.0, (100, 384)).astype(np.float32)
recalls = []
for q in queries:
    exact = {ids[i] for i in np.argsort(rl.batch_distance(q, X, "cosine"), kind="stable")[:10]}
    found = {h.id for h in index.search(q, k=10, ef_search=100)}
    recalls.append(len(exact & found) / 10)
recall_at_10 = float(np.mean(recalls))
print(f"recall@10 at ef_search=100 on {rt.backend}: {recall_at_10:.3f}")
assert recall_at_10 >= 0.8, "uniform 384-d data is hard for graphs, but 2,000 points at ef 100 must be well served"

# %% [markdown]
# Deleting returns whether the id was there; a deleted vector is never returned again.

# %%
assert index.delete("vec_42") is True
assert index.delete("vec_42") is False
assert "vec_42" not in {h.id for h in index.search(X[42], k=10)}
assert len(index) == 1_999

# %% [markdown]
# Serialization is a versioned, checksummed container (never pickle): the copy answers exactly like the
# original, and a damaged blob is refused with `CorruptIndexError`.

# %%
blob = index.serialize()
copy = rl.HnswIndex.deserialize(blob)
assert len(copy) == len(index) and copy.backend == index.backend
assert [h.id for h in copy.search(X[7], k=10)] == [h.id for h in index.search(X[7], k=10)]
damaged = bytearray(blob)
damaged[len(damaged) // 2] ^= 0xFF
try:
    rl.HnswIndex.deserialize(bytes(damaged))
except rl.CorruptIndexError as exc:
    print("damaged blob refused:", type(exc).__name__)
else:
    raise AssertionError("a damaged blob was accepted")
print(f"serialized: {len(blob) / len(index):.0f} bytes per vector")
copy.close()
index.close()

# %% [markdown]
# ## Sentences, embedded and recalled
#
# `Embedder` turns text into 384-d L2-normalised vectors. Stored sentences are recalled by questions that share
# their meaning, not their words.

# %%
facts = [
    "The cat is sleeping on the warm windowsill.",
    "Interest rates were raised by the central bank.",
    "The striker scored twice in the second half.",
    "Preheat the oven before baking the bread.",
    "The rocket reached orbit after a short delay.",
    "Heavy rain is expected over the weekend.",
    "She is learning to play the violin.",
    "The server crashed because its disk was full.",
]
questions = {
    "Where is the kitten napping?": 0,
    "What did the monetary authority do?": 1,
    "How did the football match go?": 2,
    "What should I do first when making a loaf?": 3,
    "Did the spacecraft launch succeed?": 4,
    "What will the weather be like on Saturday?": 5,
    "Which instrument is she studying?": 6,
    "Why did the machine go down?": 7,
}
with rl.Embedder() as embedder:
    F = embedder.embed_batch(facts)
    Q = embedder.embed_batch(list(questions))
    info = embedder.info()
assert F.shape == (len(facts), embedder.dimensions) and F.dtype == np.float32
assert np.allclose(np.linalg.norm(F, axis=1), 1.0, atol=1e-5), "embeddings are L2-normalised"
memory = rl.HnswIndex(rl.HnswConfig(dimensions=F.shape[1], metric="cosine"))
memory.insert_batch([str(i) for i in range(len(facts))], F)
recalled = [int(memory.search(q, k=1)[0].id) for q in Q]
memory.close()
print("model:", info.get("model"), info.get("precision"))

# %%
# NBVAL_CHECK_OUTPUT
for question, got in zip(questions, recalled, strict=True):
    print(f"{question:<45} -> {facts[got]}")
assert recalled == list(questions.values()), "every question recalls the sentence it paraphrases"

# %% [markdown]
# ## What each backend reports in `stats()`
#
# The same 500 vectors and one delete on every available backend. `bytes` is the measured size of `serialize()`,
# not an estimate; `deleted_count` counts slots a delete left behind (graphs cannot drop nodes); `extra` is
# backend-specific (the WASM backend reports its module and linear memory).

# %%
small = rng.standard_normal((500, 64)).astype(np.float32)
rows = []
for name in rl.Runtime.available_names():
    with rl.HnswIndex(rl.HnswConfig(dimensions=64), backend=name) as idx:
        idx.insert_batch([f"v{i}" for i in range(500)], small)
        idx.delete("v3")
        s = idx.stats()
    assert (s.backend, s.tier) == (name, rl.Runtime.tier_of(name))
    assert s.vector_count == 499 and s.deleted_count >= 1 and s.graph in {"hnsw", "flat"} and s.bytes > 0
    rows.append({"backend": s.backend, "tier": s.tier, "graph": s.graph, "vectors": s.vector_count,
                 "deleted slots": s.deleted_count, "bytes/vector": round(s.bytes_per_vector),
                 "extra": ", ".join(f"{k}={v}" for k, v in s.extra.items())})
pd.DataFrame(rows)
