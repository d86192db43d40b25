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
# # 04 · Quantization: bytes per vector against recall
#
# **Question.** How much recall does each codec give up for the memory it saves, and how much of it does exact
# re-ranking buy back?
#
# **Data.** Two sources, always labelled:
#
# * **pipeline**: the codec sweep (stage `quantize` in `dvc.yaml`, files `quant/<dataset>/<codec>.json` under the
#   results root, schema `ruvector-lab/quant@1`; `make repro`), and the quantized index builds it runs where a
#   backend supports them (`qhnsw/<dataset>/...`);
# * **live**: the same sweep function (`ruvector_lab.bench.quant.sweep_codec`) run here on every codec the library
#   has, on a small seeded set (5,000 clustered 128-d vectors, 200 queries), so every codec appears even when the
#   pipeline's grid lists only some.
#
# A sweep scores each query against every code (no graph, so the codec alone is measured), keeps the best
# `factor x k` candidates and re-scores them with the float vectors: factor 1 is no re-ranking. Bytes per vector
# include each codec's share of its trained codebooks; re-ranking also reads the float vectors, which then live
# outside the searched memory (on disk or a slower tier). Recall is recall@10 against exact ground truth.

# %%
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.ticker import FuncFormatter

import _nbdata as nd
from ruvector_lab.bench import datasets as bds
from ruvector_lab.bench import groundtruth
from ruvector_lab.bench.quant import sweep_codec
from ruvector_lab.bench.quant_findings import RECALL_MARGIN
from ruvector_lab.quantization import KINDS

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
print(nd.source().describe())
piped = nd.quant_runs()
if piped.empty:
    print(f"{nd.NO_RESULTS} (codec sweep); the live comparison below still runs")

# %%
def bytes_recall_plot(frame: pd.DataFrame, dimensions: int, title: str) -> None:
    """Bytes per vector (log) against recall@10, one colour per codec, one marker per re-rank factor."""
    _, ax = plt.subplots(figsize=(8, 5))
    markers = {f: m for f, m in zip(sorted(frame["factor"].unique()), "os^Dv", strict=False)}
    for i, (codec, d) in enumerate(frame.groupby("codec")):
        d = d.sort_values("factor")
        ax.plot(d["bytes_per_vector"], d["recall_at_10"], color=f"C{i}", lw=0.8, alpha=0.6)
        for _, r in d.iterrows():
            ax.scatter(r["bytes_per_vector"], r["recall_at_10"], color=f"C{i}", marker=markers[r["factor"]], s=40,
                       label=codec if r["factor"] == d["factor"].min() else None)
    ax.scatter([nd.float_bytes_per_vector(dimensions)], [1.0], color="black", marker="*", s=120,
               label=f"float32 ({nd.float_bytes_per_vector(dimensions)} B)")
    for f, m in markers.items():
        ax.scatter([], [], color="gray", marker=m, label=f"re-rank x{f}" if f > 1 else "no re-rank")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("bytes per vector (code + share of codebooks; log scale)")
    ax.set_ylabel("recall@10 (fraction of true neighbours)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    plt.show()


def check_sweep(frame: pd.DataFrame, dimensions: int) -> None:
    """What every codec sweep must show: compression, and re-ranking that never loses recall."""
    assert (frame["bytes_per_vector"] < nd.float_bytes_per_vector(dimensions)).all(), "a codec larger than float32"
    for codec, d in frame.groupby("codec"):
        d = d.sort_values("factor")
        r = d["recall_at_10"].to_numpy()
        assert (np.diff(r) >= -0.01).all(), f"{codec}: re-ranking more candidates lost recall: {r}"
    scalar = frame[(frame["kind"] == "scalar") & (frame["factor"] == 1)]
    assert (scalar["recall_at_10"] >= 0.9).all(), "8-bit scalar codes should keep recall@10 >= 0.9 unaided"


# %% [markdown]
# ## Pipeline results

# %%
if piped.empty:
    print(nd.NO_RESULTS)
else:
    missing = nd.quant_unavailable()
    if not missing.empty:
        print("codecs the pipeline recorded as not available here:")
        display(missing)
    not_swept = sorted(set(KINDS) - set(piped["kind"]))
    if not_swept:
        print("library codecs not in the pipeline's sweep (add them to params.yaml quantization.codecs):",
              ", ".join(not_swept))
    for ds_name, frame in piped.groupby("dataset"):
        dims = round(frame["bytes_per_vector"].iloc[0] * frame["compression"].iloc[0] / 4)
        check_sweep(frame, dims)
        table = frame.pivot_table(index=["codec", "bytes_per_vector", "compression"], columns="factor",
                                  values="recall_at_10")
        table.columns = [f"recall@10 x{c}" if c > 1 else "recall@10 (codes only)" for c in table.columns]
        print(f"\n{ds_name} ({dims}-d)")
        display(table.round(3))
        bytes_recall_plot(frame, dims, f"{ds_name}: bytes per vector vs recall@10 (pipeline)")

# %% [markdown]
# ## Why a codec loses to a smaller one
#
# A codec that takes more bytes per vector than another, yet recalls less at recall@10 without re-ranking (by more
# than `quant_findings.RECALL_MARGIN`), loses to it. Each finding names the best-recalling smaller codec and the
# causes the sweep measured: RaBitQ's random rotation (the same bits with the rotation off, `rabitq-norot`, with
# both mean alignments <x̄, y>), the codec's reconstruction error against the spread of a query's 100 nearest
# neighbours, and how faithfully the codes order those neighbours. The rule and its sentences live in
# `ruvector_lab.bench.quant_findings`; the report lists the same sentences.

# %%
found = nd.quant_findings()
if piped.empty:
    print(nd.NO_RESULTS)
elif found.empty:
    print("no codec of the pipeline's sweep loses to a smaller one")
else:
    for text in found["text"]:
        print(textwrap.fill(text, 110), end="\n\n")
    # the rule, checked on what it returned: every loser takes more bytes and recalls less than its winner
    assert (found["loser_bytes"] > found["winner_bytes"]).all()
    assert (found["loser_recall"] < found["winner_recall"] - RECALL_MARGIN).all()
    display(found[["dataset", "loser", "winner", "loser_bytes", "winner_bytes", "loser_recall", "winner_recall",
                   "loser_order", "winner_order", "rotation", "rotation_off", "error_cause"]].round(3))

# %% [markdown]
# ## RaBitQ by bit width
#
# RaBitQ under its random rotation at each bit width of the sweep (1 bit is the sign code; more bits are extended
# RaBitQ, `rabitq-b<B>`): recall@10 of the codes alone and with the sweep's first re-ranking, the mean alignment
# <x̄, y> of a vector with its quantized direction (1 is exact) and the neighbourhood order (the mean Spearman
# correlation of the codes' distance estimates with the true ones over a query's 100 true neighbours).

# %%
bits = nd.rabitq_bits()
if bits.empty:
    print(nd.NO_RESULTS if piped.empty else "no RaBitQ codec under its random rotation in the pipeline's sweep")
else:
    display(bits.round(3))
    assert bits["rabitq_alignment"].dropna().between(0, 1 + 1e-9).all(), "<x̄, y> is a cosine: at most 1"
    names = sorted(bits["dataset"].unique())
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, ds_name in zip(axes.flat, names, strict=True):
        d = bits[bits["dataset"] == ds_name].sort_values("bits")
        ax.plot(d["bits"], d["recall_at_10"], marker="o", label="codes only")
        reranked = d.dropna(subset=["recall_at_10_rerank"])
        if not reranked.empty:
            ax.plot(reranked["bits"], reranked["recall_at_10_rerank"], marker="s",
                    label=f"re-rank x{int(reranked['rerank_factor'].iloc[0])}")
        ax.set_xlabel("bits per dimension")
        ax.set_ylabel("recall@10 (fraction of true neighbours)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{ds_name}: RaBitQ by bit width")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    plt.show()

# %% [markdown]
# ## RaBitQ's random rotation, on and off
#
# RaBitQ rotates the data at random before quantizing: its estimator's guarantee needs it, but on data whose own
# axes carry structure the rotation spreads that structure over every dimension. Below, each bit width the sweep
# measured both ways (`rotation` random and none, e.g. `rabitq` and `rabitq-norot`): recall@10 without
# re-ranking and the mean <x̄, y>. A higher alignment without the rotation means the quantized directions lie
# closer to the vectors on the data's own axes.

# %%
rotation = nd.rabitq_rotation()
if rotation.empty:
    measured = sorted(nd.codec_summary().query("kind == 'rabitq'")["codec"].unique())
    print(nd.NO_RESULTS if piped.empty else
          "the sweep measured no RaBitQ bit width both with and without the rotation (RaBitQ codecs swept: "
          f"{', '.join(measured) or 'none'}); add e.g. rabitq and rabitq-norot to params.yaml quantization.codecs")
else:
    display(rotation[["dataset", "codec", "bits", "rotation", "bytes_per_vector", "recall_at_10",
                      "recall_at_10_rerank", "rabitq_alignment"]].round(3))
    assert set(rotation["rotation"]) <= {"random", "none"}

# %% [markdown]
# ## Product quantization: subspace width, bits, OPQ
#
# PQ splits a vector into `m` subspaces (`width` dimensions each: `product-w<W>`, or `-m<M>`) and codes each with
# a `2**bits`-centroid codebook (`-b4`: 16 centroids); `-opq` learns a rotation first. Narrower subspaces or more
# bits spend more bytes; the neighbourhood columns say whether the bytes go where neighbours differ
# (`error_to_spread`: reconstruction error over the spread of a query's 100 nearest neighbours).

# %%
pq = nd.pq_variants()
if pq.empty:
    print(nd.NO_RESULTS if piped.empty else "no product quantizer in the pipeline's sweep")
else:
    display(pq.round(3))
    assert (pq["bytes_per_vector"] > 0).all()

# %% [markdown]
# ## Graph built from floats vs from codes
#
# The quantize stage's HNSW indexes over codes (params.yaml `quantization.hnsw`): `-gfloat` builds the graph from
# the float vectors and searches it over the codes; `-r<R>` re-scores R candidates exactly. Each build at the ef of
# its highest recall@10, beside the flat scan of the same codes with the same re-ranking (the sweep's factor R / k);
# `gap` = flat scan - HNSW, what the graph loses. Memory per vector in parts, from the index's stats: codes, graph
# links, float vectors kept to re-rank, float vectors kept only to build the graph (NaN where a record lacks them).

# %%
graphs = nd.qhnsw_vs_scan()
if graphs.empty:
    print(f"{nd.NO_RESULTS} (quantized HNSW builds: params.yaml quantization.hnsw and hnsw_datasets)")
else:
    display(graphs[["dataset", "backend", "codec", "graph", "rerank", "ef_best", "recall_at_10", "flat_recall_at_10",
                    "gap", "ef_max", "recall_at_ef_max", "qps_1", "code_bytes_per_vector", "graph_bytes_per_vector",
                    "rerank_float_bytes_per_vector", "build_float_bytes_per_vector", "bytes_per_vector",
                    "flat_note"]].round(3).reset_index(drop=True))
    compared = graphs.dropna(subset=["gap"])
    # a column with no figure at all reads as objects: compare as floats
    gaps = compared[["gap", "flat_recall_at_10", "recall_at_10"]].astype(float)
    assert np.allclose(gaps["gap"], gaps["flat_recall_at_10"] - gaps["recall_at_10"])
    for (ds_name, graph), d in compared.groupby(["dataset", "graph"]):
        worst = d.loc[d["gap"].idxmax()]
        verdict = f"lose at most {worst['gap']:.3f} recall@10 to" if worst["gap"] > 0 else "match or beat"
        print(f"{ds_name}: graphs built from the {'float vectors' if graph == 'float' else 'codes'} {verdict} the "
              f"flat scan of the same codes and re-ranking (closest call: {worst['backend']} {worst['spec']})")

# %% [markdown]
# ## Live: every codec of the library, same sweep, small seeded data
#
# Not pipeline results: computed now, on 5,000 unit-length vectors in 50 Gaussian clusters (128-d), with the
# library's own sweep function. Product quantization uses m = 16 sub-quantizers (8 dimensions each).

# %%
live_ds = bds.clustered(n=5_000, n_queries=200, dimensions=128, clusters=50, name="live-clustered-5k-128")
live_ds.neighbors, live_ds.distances = groundtruth.knn_ground_truth(live_ds.test, live_ds.train, 10, live_ds.metric)
specs = [f"product-m{live_ds.dimensions // 8}" if kind == "product" else kind for kind in KINDS]
records = [sweep_codec(live_ds, spec, factors=(1, 4, 10), n_queries=200) for spec in specs]
absent = {r["spec"]: r.get("reason") for r in records if r["status"] != "ok"}
assert not absent, f"library codecs that failed their own sweep: {absent}"
live = nd.quant_rows(records, "live")
check_sweep(live, live_ds.dimensions)
assert set(live["kind"]) == set(KINDS), "every codec of the library is in the live comparison"
table = live.pivot_table(index=["codec", "bytes_per_vector", "compression", "reconstruction_mse"], columns="factor",
                         values="recall_at_10")
table.columns = [f"recall@10 x{c}" if c > 1 else "recall@10 (codes only)" for c in table.columns]
table.round(4)

# %%
bytes_recall_plot(live, live_ds.dimensions, "Live (not pipeline): bytes per vector vs recall@10, 5,000 x 128")

# %% [markdown]
# ## Quantized indexes
#
# The same codecs inside an index: `HnswConfig(quantization=..., rerank=K)` stores codes instead of floats
# (faiss builds an HNSW graph over SQ/PQ/binary codes; the numpy and WASM tiers scan codes), and with `rerank`
# keeps the floats to re-score the K best candidates exactly. Pipeline results where the grid has them; below,
# a live check on the runtime's available backends with the live set above.

# %%
every = nd.query_runs()
qruns = every[every["quantization"] != "none"]
if qruns.empty:
    print(f"{nd.NO_RESULTS} (quantized index builds: params.yaml quantization.hnsw)")
else:
    qruns = qruns.sort_values(["dataset", "backend", "quantization", "ef_search"])
    display(qruns[["dataset", "backend", "graph", "quantization", "ef_search", "recall_at_10", "p50_ms",
                   "qps_1"]].round(4).reset_index(drop=True))
    assert qruns["recall_at_10"].between(0, 1).all()
    for ds_name in sorted(qruns["dataset"].unique()):
        both = every[(every["dataset"] == ds_name) & every["backend"].isin(qruns[qruns["dataset"] == ds_name]
                                                                             ["backend"])]
        fig, ax = plt.subplots(figsize=(8, 5))
        for (backend, qz), d in both.groupby(["backend", "quantization"]):
            d = d.sort_values("ef_search")
            ax.plot(d["recall_at_10"], d["qps_1"], marker="o" if qz == "none" else "s", ms=4,
                    ls="-" if qz == "none" else "--", color=f"C{sorted(both['backend'].unique()).index(backend)}",
                    label=f"{backend} {'float32' if qz == 'none' else qz}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel("recall@10 (fraction of true neighbours)")
        ax.set_ylabel("queries per second, 1 thread (log scale)")
        ax.set_title(f"{ds_name}: quantized index (dashed) vs float32 index (solid), over ef_search")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        plt.show()

# %%
import ruvector_lab as rl  # noqa: E402 - kept beside the cells that use it

rows = []
sample_q = live_ds.test[:100]
gt = live_ds.neighbors[:100, :10]
for backend in rl.Runtime.available_names():
    for kind in KINDS:
        qc = rl.QuantizationConfig(kind=kind, m=16) if kind == "product" else rl.QuantizationConfig(kind=kind)
        for rerank in (0, 40):
            try:
                idx = rl.HnswIndex(rl.HnswConfig(dimensions=live_ds.dimensions, quantization=qc, rerank=rerank),
                                   backend=backend)
            except (rl.RuvectorLabError, ImportError) as exc:  # a kind this backend does not serve
                rows.append({"backend": backend, "kind": kind, "rerank": rerank, "status": type(exc).__name__,
                             "reason": str(exc)[:100]})
                continue
            with idx:
                idx.insert_batch([str(i) for i in range(len(live_ds.train))], live_ds.train)
                hits = idx.search_batch(sample_q, 10, 100)
                found = np.array([[int(h.id) for h in row] for row in hits])
                recall = float(np.mean([len(set(f) & set(g)) / 10 for f, g in zip(found, gt, strict=True)]))
                s = idx.stats()
            rows.append({"backend": backend, "kind": kind, "rerank": rerank, "status": "ok", "graph": s.graph,
                         "recall@10": recall, "bytes/vector": s.bytes_per_vector})
qidx = pd.DataFrame(rows)
ok = qidx[qidx["status"] == "ok"]
no = qidx[qidx["status"] != "ok"]
if not no.empty:
    print("not served here (recorded, never faked):")
    display(no.groupby("backend").agg(kinds=("kind", lambda k: ", ".join(sorted(set(k)))),
                                      reason=("reason", "first")))
if ok.empty:
    print("no backend of this installation serves a quantized index yet")
else:
    for (backend, kind), d in ok.groupby(["backend", "kind"]):
        r = d.set_index("rerank")["recall@10"]
        if 0 in r and 40 in r:  # exact re-scoring of 40 candidates never loses recall against codes alone
            assert r[40] >= r[0] - 0.02, (backend, kind, r.to_dict())
    served = ok.pivot_table(index=["backend", "graph", "kind"], columns="rerank", values="recall@10")
    served.columns = [f"recall@10 rerank {c}" if c else "recall@10 codes only" for c in served.columns]
    served["bytes/vector (rerank 0)"] = ok[ok["rerank"] == 0].set_index(["backend", "graph", "kind"])["bytes/vector"]
    display(served.round(4))
