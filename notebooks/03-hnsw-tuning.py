# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # 03 · HNSW tuning: recall against speed
#
# **Question.** For each backend and dataset, how much speed does each step of recall cost, and which settings
# should a user pick? How do M, ef_construction and ef_search move the trade-off?
#
# **Data.** The pipeline's build and query-sweep results (stage `build` in `dvc.yaml`: files
# `runs/<dataset>/<backend>/<M>-<efc>-<quantization>/build.json` and `query-ef<ef>-k<k>.json` under the results
# root, schemas `ruvector-lab/build@1` and `query@1`; `make repro`). Recall is recall@10 against exact ground truth
# (distance ties tolerated); QPS is batch queries per second on one thread (median over repeats). When the
# pipeline's grid has a single M and ef_construction (the default `params.yaml`), the effect of those two is shown
# by a small live sweep run here with the same harness, clearly labelled.

# %%
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.ticker import FuncFormatter

import _nbdata as nd

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 24)
src = nd.source()
print(src.describe())
runs = nd.query_runs()
runs = runs[runs["quantization"] == "none"]  # float indexes here; quantized ones are in 04-quantization
builds = nd.build_runs()
builds = builds[builds["quantization"] == "none"]
have = not runs.empty
if not have:
    print(nd.NO_RESULTS)


def plain(ax):
    """Log-scale y ticks as plain numbers."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))

# %% [markdown]
# ## What was built
#
# One row per index build: its time, insert rate and serialized size. Backends or settings not available on this
# machine are listed with the reason (never faked).

# %%
if builds.empty:
    print(nd.NO_RESULTS)
else:
    display(builds.drop(columns=["serialized_bytes"]).round(3))
    ok_builds = builds[builds["status"] == "ok"]
    have_queries = runs.groupby(["dataset", "backend", "m", "ef_construction", "quantization"]).size()
    for _, b in ok_builds.iterrows():
        key = (b["dataset"], b["backend"], b["m"], b["ef_construction"], b["quantization"])
        assert key in have_queries.index, f"build {key} has no query results"
    assert (ok_builds["bytes_per_vector"] > 0).all()

# %% [markdown]
# ## Checks on every query setting
#
# * recall is a fraction, and exact (flat) backends find the true neighbours (recall@10 >= 0.999);
# * for a fixed graph, a larger ef_search never loses recall (a 0.02 tolerance for ties between runs);
# * every graph backend is far above chance (recall@10 >= 0.3; chance is k/n): a broken graph fails here.

# %%
if have:
    assert runs["recall_at_10"].between(0, 1).all() and runs["recall_at_1"].between(0, 1).all()
    flat = runs[runs["graph"] == "flat"]
    assert (flat["recall_at_10"] >= 0.999).all(), flat[flat["recall_at_10"] < 0.999]
    graphs = runs[runs["graph"] == "hnsw"]
    for key, g in graphs.groupby(["dataset", "backend", "m", "ef_construction", "quantization"]):
        r = g.sort_values("ef_search")["recall_at_10"].to_numpy()
        assert (np.diff(r) >= -0.02).all(), f"{key}: recall falls as ef_search grows: {r}"
        assert r.max() >= 0.3, f"{key}: best recall@10 {r.max():.3f} is near chance"
    print(f"{len(runs)} query settings checked ({len(graphs)} on graphs, {len(flat)} exact)")

# %% [markdown]
# ## Pareto curves: recall@10 vs QPS, per dataset
#
# Every query setting is a dot; the line joins each backend's Pareto frontier (no other setting of that backend is
# both faster and more accurate). Up and to the right is better. Exact backends are a single point at recall 1.

# %%
if have:
    front = nd.pareto(runs)
    datasets = sorted(runs["dataset"].unique())
    ncols = min(2, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.6 * nrows), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    colors = {b: f"C{i}" for i, b in enumerate(sorted(runs["backend"].unique()))}
    for ax, ds in zip(axes.flat, datasets, strict=False):
        for backend, color in colors.items():
            pts = runs[(runs["dataset"] == ds) & (runs["backend"] == backend)]
            f = front[(front["dataset"] == ds) & (front["backend"] == backend)]
            if pts.empty:
                continue
            ax.scatter(pts["recall_at_10"], pts["qps_1"], s=12, alpha=0.35, color=color)
            ax.plot(f["recall_at_10"], f["qps_1"], marker="o", ms=4, color=color, label=backend)
        ax.set_yscale("log")
        plain(ax)
        ax.set_xlabel("recall@10 (fraction of true neighbours)")
        ax.set_ylabel("queries per second, 1 thread (log scale)")
        n = runs[runs["dataset"] == ds]["n_train"].iloc[0]
        ax.set_title(f"{ds} ({n:,} vectors)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Recall vs throughput: Pareto frontier per backend")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## The effect of ef_search
#
# ef_search is the query-time knob: the candidate list a search keeps. Recall climbs and single-query latency
# grows with it; one built index serves every value.

# %%
if have:
    g = runs[runs["graph"] == "hnsw"]
    datasets = sorted(g["dataset"].unique())
    fig, axes = plt.subplots(2, max(1, len(datasets)), figsize=(5 * max(1, len(datasets)), 7), squeeze=False)
    for col, ds in enumerate(datasets):
        for (backend, m, efc, qz), d in g[g["dataset"] == ds].groupby(["backend", "m", "ef_construction",
                                                                       "quantization"]):
            d = d.sort_values("ef_search")
            label = f"{backend} M{m} efc{efc}" + ("" if qz == "none" else f" {qz}")
            axes[0][col].plot(d["ef_search"], d["recall_at_10"], marker="o", ms=3, label=label)
            axes[1][col].plot(d["ef_search"], d["p50_ms"], marker="o", ms=3, label=label)
        axes[0][col].set_title(f"{ds}: recall@10 vs ef_search")
        axes[0][col].set_ylabel("recall@10 (fraction)")
        axes[1][col].set_title(f"{ds}: latency vs ef_search")
        axes[1][col].set_ylabel("single-query latency p50 (ms)")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("ef_search (candidates kept, log scale)")
            ax.grid(alpha=0.3)
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Operating points
#
# For each build and recall floor, the cheapest ef_search whose recall@10 reaches it, with the latency and QPS
# there. An empty row means no ef_search of the sweep reached that floor: widen the sweep or raise M.

# %%
ops = nd.operating_table(runs)
if ops.empty:
    print(nd.NO_RESULTS)
else:
    reached = ops.dropna(subset=["ef_search"])
    assert (reached["recall_at_10"] >= reached["floor"]).all()
    for (ds, backend, m, efc), o in reached.groupby(["dataset", "backend", "m", "ef_construction"]):
        sweep = runs[(runs["dataset"] == ds) & (runs["backend"] == backend) & (runs["m"] == m)
                     & (runs["ef_construction"] == efc)]
        for _, r in o.iterrows():  # nothing cheaper in the sweep reaches the floor
            cheaper = sweep[(sweep["ef_search"] < r["ef_search"]) & (sweep["recall_at_10"] >= r["floor"])]
            assert cheaper.empty, f"{ds} {backend}: a cheaper ef_search reaches {r['floor']}"
    table = ops.pivot_table(index=["dataset", "backend", "m", "ef_construction"], columns="floor",
                            values="ef_search", aggfunc="first")
    table.columns = [f"ef for recall >= {c:.2f}" for c in table.columns]
    display(table)
    display(ops.dropna(subset=["ef_search"]).round(4))

# %% [markdown]
# ## The effect of M and ef_construction
#
# M (links per node) and ef_construction (candidates kept while inserting) are build-time knobs: more of either
# builds a better graph, slower and bigger. If the pipeline's grid varies them, its results are used; otherwise a
# small **live sweep** runs here (hnswlib, 5,000 clustered 64-d vectors, 200 queries, one repeat) through the
# same harness the pipeline uses (`ruvector_lab.bench.runner.run_build`), written to a temporary folder.

# %%
grid = runs[runs["graph"] == "hnsw"][["m", "ef_construction"]].drop_duplicates() if have else pd.DataFrame()
varies = (not grid.empty and grid.groupby("ef_construction")["m"].nunique().max() > 1
          and grid.groupby("m")["ef_construction"].nunique().max() > 1)
if varies:
    sweep, sweep_builds, label = runs[runs["graph"] == "hnsw"], builds[builds["graph"] == "hnsw"], "pipeline results"
else:
    from ruvector_lab.bench import datasets as bds
    from ruvector_lab.bench import groundtruth, runner
    from ruvector_lab.runtime import Runtime

    backend = "hnswlib" if Runtime.available().get("hnswlib") is True else "faiss"
    ds = bds.clustered(n=5_000, n_queries=200, dimensions=64, clusters=20, name="live-clustered-5k-64")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 10, ds.metric)
    settings = runner.RunSettings(n_queries=200, repeats=1, warmup=10, threads=(1,), build_threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        for m, efc in [(4, 100), (8, 100), (16, 100), (32, 100), (16, 16), (16, 40), (16, 200)]:
            runner.run_build(ds, backend, runner.BuildParams(m, efc), [10, 20, 40, 80, 160], settings, tmp)
        sweep, sweep_builds = nd.query_runs(tmp), nd.build_runs(tmp)
    label = f"live sweep ({backend}, 5,000 x 64 clustered): not pipeline results"
print("source:", label)
assert not sweep.empty

# %%
# vary one knob at a time: M at the ef_construction with the most M values, and the other way round
keys = sweep[["m", "ef_construction"]].drop_duplicates()
sweep_m = sweep[sweep["ef_construction"] == keys.groupby("ef_construction")["m"].nunique().idxmax()]
sweep_e = sweep[sweep["m"] == keys.groupby("m")["ef_construction"].nunique().idxmax()]
fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
for (_ds, _b, m), d in sweep_m.groupby(["dataset", "backend", "m"]):
    d = d.sort_values("ef_search")
    axes[0].plot(d["ef_search"], d["recall_at_10"], marker="o", ms=3, label=f"M={m}")
for (_ds, _b, efc), d in sweep_e.groupby(["dataset", "backend", "ef_construction"]):
    d = d.sort_values("ef_search")
    axes[1].plot(d["ef_search"], d["recall_at_10"], marker="o", ms=3, label=f"ef_construction={efc}")
cost = sweep_builds.sort_values(["m", "ef_construction"])
cost_labels = [f"{b} M{m} efc{e}" for b, m, e in zip(cost["backend"], cost["m"], cost["ef_construction"],
                                                      strict=True)]
axes[2].barh(cost_labels, cost["build_time_s"], color="tab:gray")
for y, (t, bpv) in enumerate(zip(cost["build_time_s"], cost["bytes_per_vector"], strict=True)):
    axes[2].annotate(f"{bpv:.0f} B/vector", (t, y), xytext=(3, 0), textcoords="offset points", va="center",
                     fontsize=7)
axes[0].set_title(f"M (ef_construction {sweep_m['ef_construction'].iloc[0]})")
axes[1].set_title(f"ef_construction (M {sweep_e['m'].iloc[0]})")
axes[2].set_title("what a build costs: time and serialized size")
for ax in axes[:2]:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("ef_search (log scale)")
    ax.set_ylabel("recall@10 (fraction)")
axes[2].set_xlabel("build time (s)")
axes[2].set_ylabel("build")
axes[2].set_xlim(right=float(cost["build_time_s"].max()) * 1.4)
for ax in axes:
    ax.grid(alpha=0.3)
for ax in axes[:2]:
    ax.legend(fontsize=7)
fig.suptitle(f"Build parameters: {label}")
fig.tight_layout()
plt.show()

# %% [markdown]
# More links buy recall at every ef_search, and cost build time and bytes: the sweep's largest M must reach at
# least the recall of its smallest at the widest search (a 0.02 tolerance), and store more bytes per vector.

# %%
widest = sweep_m[sweep_m["ef_search"] == sweep_m["ef_search"].max()].groupby("m")["recall_at_10"].max()
assert len(widest) > 1 and widest.iloc[-1] >= widest.iloc[0] - 0.02, widest
size = sweep_builds[sweep_builds["ef_construction"] == sweep_m["ef_construction"].iloc[0]].groupby("m")[
    "bytes_per_vector"].max()
assert size.iloc[-1] > size.iloc[0], size
widest.rename("recall@10 at the widest ef_search").to_frame()

# %% [markdown]
# ## How to add a sweep
#
# Every number comes from `params.yaml`; each combination of the `build` lists is one DVC stage, and the
# `query.ef_search` list is run on every built index. Two ways:
#
# 1. **Edit `params.yaml`** and run `make repro` (or `dvc repro`): only the new combinations run, finished ones
#    are kept (results are stored per parameters).
#    ```yaml
#    build:
#      m: [8, 16, 32]
#      ef_construction: [50, 100, 200]
#    query:
#      ef_search: [10, 20, 40, 80, 160, 320, 640]
#    ```
# 2. **One experiment without editing**:
#    `dvc exp run -S 'build.m=[8,16,32]' -S 'build.ef_construction=[50,100,200]'`, then `dvc exp show`; queue
#    several with `dvc exp run --queue -S ...` and `dvc queue start -j 1`.
#
# Then re-run this notebook (`make notebooks`): it reads whatever the results folder holds.
