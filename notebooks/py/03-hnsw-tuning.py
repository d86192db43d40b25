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
# # 03 · HNSW tuning: recall against speed
#
# **Question.** For each backend and dataset, how much speed does each step of recall cost, and which settings
# should a user pick? How do M, ef_construction and ef_search move the trade-off, how much do the figures move
# from one build of the same graph to the next, which queries are badly served, what does an index cost in
# memory, and what do more threads buy?
#
# **Data.** The pipeline's build and query-sweep results (stage `build` in `dvc.yaml`: files
# `runs/<dataset>/<backend>/<M>-<efc>-<quantization>/build.json` and `query-ef<ef>-k<k>.json` under the results
# root, schemas `ruvector-lab/build@2` and `query@3`, with every query's returned ids in
# `perquery/query-ef<ef>-k<k>-b<build>.h5` beside them; `make repro`). Each graph configuration is built
# `bench.build_repeats` times, each build inserting the base set in another seeded order, and the whole ef_search
# sweep runs on every build. Recall is recall@10 against exact ground truth (distance ties tolerated) of the
# **median build** (the build whose mean recall over the sweep is the median); QPS is batch queries per second on
# one thread, the median over builds of each build's median over timing repeats. "One thread" is one: every
# library pool (faiss' OpenMP, BLAS, hnswlib) is pinned to 1 inside the thread that searches. When the pipeline's
# grid has a single M and ef_construction (the default `params.yaml`), the effect of those two is shown by a
# small live sweep run here with the same harness, clearly labelled.
#
# Timings vary from run to run and machine to machine: the cells assert recall, consistency and structure, never
# a timing.

# %%
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.ticker import FuncFormatter

import _nbdata as nd
from ruvector_lab.bench import perquery

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


def float_only(frame):
    """The rows of float (unquantized) indexes."""
    return frame[frame["quantization"] == "none"] if not frame.empty else frame


BACKENDS = sorted(nd.build_runs()["backend"].dropna().unique(), key=nd.backend_rank)


def backend_color(backend):
    """One colour per backend in every chart."""
    return f"C{BACKENDS.index(backend) % 10}" if backend in BACKENDS else "C9"

# %% [markdown]
# ## What was built
#
# One row per build configuration: how many times it was built, its build time (median, min and max over the
# builds, seconds), insert rate at the median time and serialized size per vector. Backends or settings not
# available on this machine are listed with the reason (never faked).

# %%
if builds.empty:
    print(nd.NO_RESULTS)
else:
    display(builds.drop(columns=["serialized_bytes", "tier"]).round(3))
    ok_builds = builds[builds["status"] == "ok"]
    have_queries = runs.groupby(["dataset", "backend", "m", "ef_construction", "quantization"]).size()
    for _, b in ok_builds.iterrows():
        key = (b["dataset"], b["backend"], b["m"], b["ef_construction"], b["quantization"])
        assert key in have_queries.index, f"build {key} has no query results"
    assert (ok_builds["bytes_per_vector"] > 0).all()
    assert (ok_builds["n_builds"] >= 1).all() and (ok_builds[ok_builds["graph"] == "flat"]["n_builds"] == 1).all()
    assert ((ok_builds["build_time_min"] <= ok_builds["build_time_s"])
            & (ok_builds["build_time_s"] <= ok_builds["build_time_max"])).all()

# %% [markdown]
# ## Checks on every query setting
#
# * recall is a fraction, and exact (flat) backends find the true neighbours (recall@10 >= 0.999);
# * for a fixed graph, a larger ef_search never loses recall (a 0.02 tolerance for ties between runs);
# * every graph backend is far above chance (recall@10 >= 0.3; chance is k/n): a broken graph fails here;
# * strict recall (the returned ids among the first k true ids) never exceeds tolerant recall (an equidistant
#   point counts as a hit);
# * the recall reported is the median build's: it lies within the min-max over builds, and equals that build's
#   entry in the record's list of builds;
# * a graph search runs at least k candidates: the record's effective ef is max(ef_search, k) (the libraries raise
#   a smaller ef silently, so a sweep point below k is the same search as ef = k).

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
    assert (runs["recall_strict_at_10"] <= runs["recall_at_10"] + 1e-12).all(), "strict recall above tolerant"
    assert ((runs["recall_at_10_min"] <= runs["recall_at_10"]) & (runs["recall_at_10"] <= runs["recall_at_10_max"])
            ).all(), "the median build's recall lies outside the min-max over builds"
    assert np.allclose(runs["recall_at_10_median_build"], runs["recall_at_10"], rtol=0, atol=1e-12)
    assert (graphs["ef_effective"] == np.maximum(graphs["ef_search"], graphs["k"])).all()
    below_k = graphs[graphs["ef_search"] < graphs["k"]]
    print(f"{len(runs)} query settings checked ({len(graphs)} on graphs, {len(flat)} exact)"
          + (f"; {len(below_k)} ran with ef_search below k and really searched with ef = k" if len(below_k) else ""))

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
# ## Build spread: one graph is one sample
#
# An HNSW graph depends on the order its points were inserted in and on the random level each point draws, so two
# builds of the same configuration give different recall and speed. The band is the min-max over builds, the line
# the median over builds; exact (flat) indexes are built once and have no band. A band wider than the gap between
# two backends means the ranking is not settled by one build. (QPS also moves with the machine: see *Noise* below.)

# %%
spread = nd.build_spread(runs)
if spread.empty:
    print(nd.NO_RESULTS)
else:
    flat_spread = spread[spread["graph"] == "flat"]
    assert (flat_spread["n_builds"] == 1).all() and (flat_spread["recall_range"] == 0).all()
    assert ((spread["recall_at_10_min"] <= spread["recall_at_10_median"])
            & (spread["recall_at_10_median"] <= spread["recall_at_10_max"])).all()
    assert ((spread["qps_1_min"] <= spread["qps_1"]) & (spread["qps_1"] <= spread["qps_1_max"])).all()
    graph_spread = spread[spread["graph"] == "hnsw"].drop(columns=["graph", "quantization"])
    display(graph_spread.round({"recall_at_10": 4, "recall_at_10_median": 4, "recall_at_10_min": 4,
                                "recall_at_10_max": 4, "recall_range": 4, "qps_1": 0, "qps_1_min": 0, "qps_1_max": 0,
                                "qps_rel_spread": 3}))
    if not graph_spread.empty:
        w = graph_spread.loc[graph_spread["recall_range"].idxmax()]
        print(f"largest recall@10 range over builds: {w['recall_range']:.4f} ({w['backend']} on {w['dataset']}, "
              f"ef_search {w['ef_search']}, {w['n_builds']} builds)")

# %%
g = spread[spread["graph"] == "hnsw"] if not spread.empty else spread
if g.empty:
    print(nd.NO_RESULTS if not have else "no graph index in the results")
else:
    datasets = sorted(g["dataset"].unique())
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 7.5), squeeze=False)
    for col, ds in enumerate(datasets):
        for backend, d in g[g["dataset"] == ds].groupby("backend"):
            d = d.sort_values("ef_search")
            axes[0][col].plot(d["ef_search"], d["recall_at_10_median"], marker="o", ms=3, color=backend_color(backend),
                              label=f"{backend} ({int(d['n_builds'].max())} builds)")
            axes[0][col].fill_between(d["ef_search"], d["recall_at_10_min"], d["recall_at_10_max"],
                                      color=backend_color(backend), alpha=0.2)
            err = [d["qps_1"] - d["qps_1_min"], d["qps_1_max"] - d["qps_1"]]
            axes[1][col].errorbar(d["ef_search"], d["qps_1"], yerr=err, marker="o", ms=3, capsize=3,
                                  color=backend_color(backend), label=backend)
        axes[0][col].set_title(f"{ds}: recall@10 over builds")
        axes[0][col].set_ylabel("recall@10: median, band min-max over builds")
        axes[1][col].set_title(f"{ds}: QPS over builds")
        axes[1][col].set_ylabel("queries per second, 1 thread (median, bars min-max)")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("ef_search (log scale)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("How much one build differs from the next (seeded insertion orders)")
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
        axes[0][col].set_ylabel("recall@10 (fraction, median build)")
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
# For each build and recall floor, the cheapest ef_search whose recall@10 (median build) reaches it, with the
# latency and QPS there, the worst build's recall at that ef_search, strict recall, and the recall of the 5th
# percentile query. An empty row means no ef_search of the sweep reached that floor: widen the sweep or raise M.
#
# **Asserted.** The median build reaches the recall the operating point claims (its own entry in the record, not
# only the summary), nothing cheaper in the sweep reaches the floor, and strict recall stays at or below tolerant
# recall. Whether the *worst* build reaches the floor too is reported, not asserted: that is the build spread.

# %%
ops = nd.operating_table(runs)
if ops.empty:
    print(nd.NO_RESULTS)
else:
    reached = ops.dropna(subset=["ef_search"])
    assert (reached["recall_at_10"] >= reached["floor"]).all()
    assert (reached["recall_at_10_median_build"] >= reached["floor"]).all(), "the median build misses its floor"
    assert (reached["recall_strict_at_10"] <= reached["recall_at_10"] + 1e-12).all()
    for (ds, backend, m, efc, _qz), o in reached.groupby(["dataset", "backend", "m", "ef_construction",
                                                          "quantization"]):
        sweep = runs[(runs["dataset"] == ds) & (runs["backend"] == backend) & (runs["m"] == m)
                     & (runs["ef_construction"] == efc)]
        for _, r in o.iterrows():  # nothing cheaper in the sweep reaches the floor
            cheaper = sweep[(sweep["ef_search"] < r["ef_search"]) & (sweep["recall_at_10"] >= r["floor"])]
            assert cheaper.empty, f"{ds} {backend}: a cheaper ef_search reaches {r['floor']}"
    table = ops.pivot_table(index=["dataset", "backend", "m", "ef_construction"], columns="floor",
                            values="ef_search", aggfunc="first")
    table.columns = [f"ef for recall >= {c:.2f}" for c in table.columns]
    display(table)
    display(reached.drop(columns=["quantization", "recall_at_10_median_build"]).round(4))
    shaky = reached[reached["recall_at_10_min"] < reached["floor"]]
    print("operating points the worst build misses:",
          "; ".join(f"{r.backend} on {r.dataset} at recall >= {r.floor:.2f} (worst build {r.recall_at_10_min:.3f} "
                    f"of {int(r.n_builds)})" for r in shaky.itertuples()) or "none")

# %% [markdown]
# ## Per-query recall: the tail behind the mean
#
# A mean recall@10 of 0.95 can be every query finding 9-10 of its neighbours, or a few queries finding almost
# none. The table gives, per query setting (median build), the worst query, the 1st, 5th and 50th percentiles of
# recall over queries (linear interpolation) and the share of queries that found fewer than half their
# neighbours; strict recall counts only the ground truth's exact ids, tolerant recall (the figure used everywhere
# else) also accepts a point at the same distance as the k-th neighbour.
#
# The per-query results are kept: every query's returned ids and their true distances, per build, in HDF5 beside
# the record. **Asserted:** every file the records name exists, and the mean recall recomputed from it against the
# dataset's ground truth equals the record's, for every build (tolerant and strict).

# %%
tail = nd.recall_tail(runs)
if tail.empty:
    print(nd.NO_RESULTS)
else:
    assert ((tail["recall_min"] <= tail["recall_p1"]) & (tail["recall_p1"] <= tail["recall_p5"])
            & (tail["recall_p5"] <= tail["recall_p50"]) & (tail["recall_p50"] <= 1)).all()
    assert tail["share_below_0.5"].between(0, 1).all()
    assert (tail.loc[tail["recall_min"] >= 0.5, "share_below_0.5"] == 0).all()
    display(tail.drop(columns=["quantization"]).round(4))

# %%
files = float_only(nd.perquery_files())
if files.empty:
    print(nd.NO_RESULTS)
else:
    assert files["exists"].all(), files[~files["exists"]][["dataset", "backend", "ef_search", "file"]]
    checked = files[files["ground_truth"] == "found"]
    assert np.allclose(checked["recall_file"], checked["recall_record"], rtol=0, atol=1e-9)
    assert np.allclose(checked["recall_strict_file"], checked["recall_strict_record"], rtol=0, atol=1e-9)
    print(f"{len(files)} per-query files ({files['median_build'].sum()} of median builds); mean recall recomputed "
          f"from {len(checked)} of them equals the record's")
    if len(checked) < len(files):
        print("not recomputed (ground truth not found):", ", ".join(sorted(set(files["ground_truth"]) - {"found"})))

# %% [markdown]
# The distribution itself, per dataset: each backend at its operating point for recall@10 >= 0.90 (or its widest
# ef_search when no setting reaches it), read from the median build's per-query file. The curve is the share of
# queries (y) whose recall is at most x: a curve that rises early has badly served queries.

# %%
def focus(runs, ops, floor=0.90):
    """Per (dataset, backend): the ef_search of its operating point for ``floor``, else its widest ef_search."""
    picks = {}
    for (ds, backend), d in runs.groupby(["dataset", "backend"]):
        hit = ops[(ops["dataset"] == ds) & (ops["backend"] == backend) & (ops["floor"] == floor)].dropna(
            subset=["ef_search"])
        picks[(ds, backend)] = int(hit["ef_search"].iloc[0]) if not hit.empty else int(d["ef_search"].max())
    return picks


picks = focus(runs, ops) if have else {}
queries, unread = {}, {}
for (ds, backend), ef in picks.items():
    try:
        queries[(ds, backend)] = nd.per_query(dataset=ds, backend=backend, ef_search=ef)
    except (LookupError, FileNotFoundError) as exc:
        unread.setdefault(str(exc), []).append(f"{ds} {backend}")
for why, which in unread.items():
    print(f"per-query results not read for {', '.join(which)}: {why}")
if not queries:
    print(nd.NO_RESULTS if not have else "no per-query results could be read")
else:
    datasets = sorted({ds for ds, _ in queries})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for (d, backend), q in sorted(queries.items()):
            if d != ds:
                continue
            r = np.sort(q["recall"].to_numpy())
            ax.step(r, np.arange(1, len(r) + 1) / len(r), where="post", color=backend_color(backend),
                    label=f"{backend} ef {picks[(d, backend)]} (mean {r.mean():.3f})")
        ax.axvline(0.5, ls=":", color="black", lw=0.8)
        ax.set_xlabel("recall@10 of one query")
        ax.set_ylabel("share of queries with at most that recall")
        ax.set_title(f"{ds}: per-query recall (median build)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# The worst queries of one setting (the first graph backend above), with their difficulty: LID (local intrinsic
# dimensionality of the query's neighbourhood, from its ground-truth distances; higher is harder) and RC (relative
# contrast: mean distance to the data over distance to the 10th neighbour; lower is harder), and the quintile each
# falls in (1 easiest, 5 hardest).

# %%
graph_picks = [key for key in queries if not runs[(runs["dataset"] == key[0]) & (runs["backend"] == key[1])
                                                  & (runs["graph"] == "hnsw")].empty]
if not graph_picks:
    print(nd.NO_RESULTS if not have else "no graph index with per-query results")
else:
    ds, backend = sorted(graph_picks)[0]
    q = queries[(ds, backend)]
    assert (q["recall_strict"] <= q["recall"] + 1e-12).all()
    print(f"{ds}, {backend}, ef_search {picks[(ds, backend)]}: {len(q)} queries, {int((q['recall'] < 0.5).sum())} "
          f"below recall 0.5")
    display(q.nsmallest(10, "recall").round(3).reset_index(drop=True))

# %% [markdown]
# ## Recall by difficulty quintile
#
# The queries of a setting sorted by a difficulty measure and cut into five groups of equal size: mean recall@10
# per group, easiest (1) to hardest (5). LID is higher for harder queries, RC lower, so the quintiles are turned
# to read the same way for both. A graph that serves hard queries as well as easy ones gives a flat line; most
# fall to the right. Queries whose difficulty is undefined (LID under dot_product) are in no quintile.
#
# **Asserted:** the quintiles partition the queries (their counts plus the excluded ones are all the queries),
# their difficulty ranges follow each other, their count-weighted mean recall is the setting's recall, and for
# the settings shown above, the quintiles recomputed from the per-query file equal the record's.

# %%
bins = float_only(nd.difficulty_bins())
if bins.empty:
    print(nd.NO_RESULTS)
else:
    for key, b in bins.groupby([*nd.SETTING_KEY, "measure"]):
        b = b.sort_values("bin")
        total = int(b["n_queries_total"].iloc[0])
        assert b["n_queries"].sum() + int(b["n_nan_excluded"].iloc[0]) == total, f"{key}: bins miss queries"
        assert len(b) <= 5 and list(b["bin"]) == list(range(len(b)))
        assert (b["difficulty_min"].to_numpy()[1:] >= b["difficulty_max"].to_numpy()[:-1]).all(), key
        if int(b["n_nan_excluded"].iloc[0]) == 0:
            weighted = float((b["n_queries"] * b["mean_recall"]).sum() / b["n_queries"].sum())
            assert abs(weighted - float(b["recall_at_10"].iloc[0])) < 1e-9, f"{key}: {weighted} != record"
    for (ds, backend), q in queries.items():
        recorded = bins[(bins["dataset"] == ds) & (bins["backend"] == backend)
                        & (bins["ef_search"] == picks[(ds, backend)])]
        for measure in ("lid", "rc"):
            mine = perquery.recall_by_difficulty(q["recall"].to_numpy(), q[measure].to_numpy())
            theirs = recorded[recorded["measure"] == measure].sort_values("bin")
            assert [b["n_queries"] for b in mine] == list(theirs["n_queries"]), (ds, backend, measure)
            assert np.allclose([b["mean_recall"] for b in mine], theirs["mean_recall"], rtol=0, atol=1e-9)
    print(f"{bins.groupby([*nd.SETTING_KEY, 'measure']).ngroups} quintile tables checked; "
          f"{len(queries)} recomputed from per-query files")

# %%
if bins.empty or not picks:
    print(nd.NO_RESULTS)
else:
    datasets = sorted({ds for ds, _ in picks})
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.8 * len(datasets)), squeeze=False)
    for row, ds in enumerate(datasets):
        for col, measure in enumerate(("lid", "rc")):
            ax = axes[row][col]
            for (d, backend), ef in sorted(picks.items()):
                b = bins[(bins["dataset"] == d) & (bins["backend"] == backend) & (bins["ef_search"] == ef)
                         & (bins["measure"] == measure)].sort_values("hardness")
                if d != ds or b.empty:
                    continue
                ax.plot(b["hardness"], b["mean_recall"], marker="o", ms=4, color=backend_color(backend),
                        label=f"{backend} ef {ef}")
            direction = perquery.DIFFICULTY_DIRECTION[measure]
            ax.set_xticks(range(1, 6))
            ax.set_xlabel(f"{measure.upper()} quintile, 1 easiest .. 5 hardest ({direction})")
            ax.set_ylabel("mean recall@10 in the quintile")
            ax.set_title(f"{ds}: recall by {measure.upper()} quintile")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Memory per index
#
# Bytes per stored vector, three ways:
#
# * **serialized**: `len(index.serialize())` / n, what a saved index takes;
# * **analytic**: what the data structure's layout predicts (vectors, graph links, id maps, bookkeeping; from each
#   library's sources, `ruvector_lab.bench.memory`);
# * **RSS growth**: the resident-memory growth of a build of the index in a fresh child process, / n (nothing of
#   the benchmark process's heap is inherited; the child's imports and a warm-up index are excluded). Missing when
#   `bench.memory` is off or the child failed: the reason is listed.
#
# A float32 vector alone is 4 x d bytes (the dashed line): a float index stores at least that. RSS growth close to
# the analytic figure (1-1.5x, containers grown by doubling) means the layout explains the memory; far above it,
# something else holds memory. Build time beside it: median and min-max over the builds.

# %%
memory = float_only(nd.memory_table())
if memory.empty:
    print(nd.NO_RESULTS)
else:
    assert (memory["serialized"] > 0).all()
    assert (memory["serialized"] >= memory["float_bytes"]).all(), "a float index smaller than its float32 vectors"
    analytic_ok = memory["analytic_status"] == "ok"
    assert (memory.loc[analytic_ok, "analytic"] > 0).all()
    assert (memory.loc[analytic_ok, "analytic_vectors"] >= memory.loc[analytic_ok, "float_bytes"]).all()
    measured = memory["rss_status"] == "measured"
    assert (memory.loc[measured, "rss_growth"] > 0).all()
    assert (memory.loc[~measured | ~analytic_ok, "reason"].str.len() > 0).all(), "a missing figure without a reason"
    cols = ["dataset", "backend", "graph", "n_train", "dimensions", "float_bytes", "serialized", "analytic",
            "rss_growth", "rss_over_analytic", "analytic_vectors", "analytic_graph", "analytic_ids",
            "analytic_other", "n_builds", "build_time_s", "build_time_min", "build_time_max"]
    display(memory[cols].round(2).reset_index(drop=True))
    missing = memory[~measured | ~analytic_ok]
    for r in missing.itertuples():
        print(f"{r.dataset} {r.backend}: {r.reason[:160]}")

# %%
if memory.empty:
    print(nd.NO_RESULTS)
else:
    datasets = sorted(memory["dataset"].unique())
    per = int(memory.groupby("dataset").size().max())
    fig, axes = plt.subplots(len(datasets), 2, figsize=(13, (1.6 + 0.6 * per) * len(datasets)), squeeze=False)
    for row, ds in enumerate(datasets):
        m = memory[memory["dataset"] == ds].sort_values("backend").reset_index(drop=True)
        y = np.arange(len(m))
        nd.plot_memory(axes[row][0], m, f"{ds} ({int(m['n_train'].iloc[0]):,} x {int(m['dimensions'].iloc[0])}): "
                       "memory per index")
        ax = axes[row][1]
        err = [m["build_time_s"] - m["build_time_min"], m["build_time_max"] - m["build_time_s"]]
        ax.barh(y, m["build_time_s"], xerr=err, capsize=3, color="tab:gray")
        ax.set_yticks(y, [f"{b} ({n} builds)" for b, n in zip(m["backend"], m["n_builds"], strict=True)])
        ax.set_xlabel("build time (s): median, bars min-max over builds")
        ax.set_ylabel("backend")
        ax.set_title(f"{ds}: build time")
        for a in axes[row]:
            a.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Thread scaling: two modes
#
# Batch QPS at each thread count of `bench.threads`, measured two ways:
#
# * **caller threads**: the batch is split across t threads of the caller, and inside each of them every library
#   pool (faiss' OpenMP, BLAS, hnswlib's `num_threads`) is pinned to 1. This is t independent searchers, the way a
#   server with t request threads runs.
# * **library pool**: one caller thread hands the whole batch to the library with its own pool set to t threads
#   (faiss' OpenMP, hnswlib's `num_threads`, BLAS for the exact backends). A backend without a pool for batch
#   search (ruvector, which the backend searches query by query; the WASM tier) stays at one busy thread.
#
# The 1-thread point is one measurement shared by both modes, and it really is one thread: OpenMP thread counts
# are *per thread*, so pinning faiss in the main thread used to leave each caller thread's OpenMP at the core
# count; each worker now pins its own pools, and the pools it read back are listed (asserted: every per-thread
# pool ran at the count its mode means). `cpu` is CPU time over wall time, the parallelism that really ran (about
# t when t threads are busy); speedup is QPS over the 1-thread QPS. On a shared or small machine these figures are
# noisy (see *Noise*): they are shown, never asserted.

# %%
scaling = float_only(nd.thread_scaling())
if scaling.empty:
    print(nd.NO_RESULTS)
else:
    assert scaling["pinned"].all(), scaling[~scaling["pinned"].astype(bool)][["backend", "mode", "threads", "pools"]]
    base = scaling[scaling["baseline"]]
    assert (base.groupby(nd.SETTING_KEY)["qps"].nunique() == 1).all(), "the 1-thread point differs between modes"
    widest = scaling[scaling["ef_search"] == scaling.groupby(["dataset", "backend"])["ef_search"].transform("max")]
    table = widest.pivot_table(index=["dataset", "backend", "ef_search"], columns=["mode", "threads"],
                               values=["qps", "cpu_utilization", "speedup"], aggfunc="first")
    display(table.round(2))
    print("pools read back per mode and thread count:")
    display(widest[["mode", "threads", "pools"]].drop_duplicates().sort_values(["mode", "threads"])
            .reset_index(drop=True))

# %%
if scaling.empty or scaling["threads"].nunique() < 2:
    print(nd.NO_RESULTS if scaling.empty else "only one thread count was measured (bench.threads)")
else:
    datasets = sorted(widest["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        d = widest[widest["dataset"] == ds]
        for backend in sorted(d["backend"].unique()):
            for mode, style in (("caller threads", "-"), ("library pool", "--")):
                s = d[(d["backend"] == backend) & (d["mode"] == mode)].sort_values("threads")
                ax.plot(s["threads"], s["speedup"], ls=style, marker="o", ms=4, color=backend_color(backend),
                        label=f"{backend}, {mode}")
                last = s.iloc[-1]
                ax.annotate(f"cpu {last['cpu_utilization']:.1f}", (last["threads"], last["speedup"]),
                            xytext=(4, 0), textcoords="offset points", fontsize=6, color=backend_color(backend))
        top = int(d["threads"].max())
        ax.plot([1, top], [1, top], ls=":", color="black", lw=1, label="ideal (speedup = threads)")
        ax.set_xticks(sorted(d["threads"].unique()))
        ax.set_xlabel("threads")
        ax.set_ylabel("speedup over 1 thread (QPS ratio)")
        ax.set_title(f"{ds}: caller threads (solid) vs library pool (dashed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("Thread scaling at each backend's widest ef_search (cpu = CPU time / wall time at the last point)")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## The libraries called directly
#
# Every figure above is `HnswIndex.search` / `search_batch`: the library plus the facade's validation, read lock,
# id mapping and result objects. To compare the libraries themselves, the runner also times each native
# backend's library called directly (the backend's `direct_search` / `direct_search_batch`: the same index,
# parameters and single thread, no facade) on the median build: single queries dealt out alternately between it
# and the facade, so drift hits both alike (the facade's half is the latency shown everywhere else), and its
# 1-thread batch QPS beside the build's own `search_batch` figure (one 0.2 s window a side: noisier).
# The overhead factors are facade p50 / direct p50 and direct QPS / facade QPS (1.00 = the facade costs nothing;
# the project's target is at most 1.10). Backends without a library call of their own (the NumPy fallback, the
# WASM tier) have none. Asserted: which rows carry direct figures, and that each overhead is the ratio of its own
# two figures (checks of the records); the ratios themselves are measurements, shown, never asserted.

# %%
direct = float_only(runs)
if direct.empty:
    print(nd.NO_RESULTS)
else:
    has = direct["direct_p50_ms"].notna()
    native = direct["tier"] == "native"
    assert (has == native).all(), direct.loc[has != native, ["dataset", "backend", "ef_search"]]
    paired = direct[has]
    if paired.empty:
        print("no native backend in these results")
    else:
        assert np.allclose(paired["facade_latency_ratio"], paired["facade_paired_p50_ms"] / paired["direct_p50_ms"])
        assert np.allclose(paired["facade_qps_ratio"], paired["direct_qps_1"] / paired["facade_paired_qps_1"])
        summary = paired.groupby("backend").agg(
            runs=("facade_latency_ratio", "size"),
            latency_overhead_median=("facade_latency_ratio", "median"),
            latency_overhead_max=("facade_latency_ratio", "max"),
            qps_overhead_median=("facade_qps_ratio", "median"),
            qps_overhead_max=("facade_qps_ratio", "max"))
        display(summary.loc[sorted(summary.index, key=nd.backend_rank)].round(3))
        display(paired[["dataset", "backend", "ef_search", "recall_at_10", "facade_paired_p50_ms", "direct_p50_ms",
                        "facade_latency_ratio", "facade_paired_qps_1", "direct_qps_1", "facade_qps_ratio"]]
                .sort_values(["dataset", "backend", "ef_search"]).reset_index(drop=True).round(4))

# %%
if direct.empty or not direct["direct_p50_ms"].notna().any():
    print(nd.NO_RESULTS if direct.empty else "no native backend in these results")
else:
    paired = direct[direct["direct_p50_ms"].notna()]
    datasets = sorted(paired["dataset"].unique())
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 8), squeeze=False)
    for col, ds in enumerate(datasets):
        d = paired[paired["dataset"] == ds]
        for backend in sorted(d["backend"].unique(), key=nd.backend_rank):
            s = d[d["backend"] == backend].sort_values("recall_at_10")
            axes[0][col].plot(s["recall_at_10"], s["direct_qps_1"], marker="o", ms=4, color=backend_color(backend),
                              label=f"{backend} direct")
            axes[0][col].plot(s["recall_at_10"], s["facade_paired_qps_1"], ls="--", marker="x", ms=4,
                              color=backend_color(backend), label=f"{backend} facade")
            axes[1][col].plot(s["ef_search"], s["facade_latency_ratio"], marker="o", ms=4,
                              color=backend_color(backend), label=backend)
        axes[0][col].set_yscale("log")
        plain(axes[0][col])
        axes[0][col].set_xlabel("recall@10 (median build)")
        axes[0][col].set_ylabel("1-thread batch QPS")
        axes[0][col].set_title(f"{ds}: the library itself (solid) and through the facade (dashed)")
        axes[1][col].axhline(1.10, ls=":", color="black", lw=1, label="target 1.10")
        axes[1][col].axhline(1.0, ls="-", color="grey", lw=0.5)
        axes[1][col].set_xscale("log", base=2)
        axes[1][col].set_xlabel("ef_search")
        axes[1][col].set_ylabel("facade p50 / direct p50")
        axes[1][col].set_title(f"{ds}: single-query overhead of the facade")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Noise
#
# Two signs that a run's timings should be read with care, recorded with every result:
#
# * **reference drift**: a fixed single-threaded workload (sorting seeded floats) timed before and after a build
#   configuration's whole run; their relative difference says how much the machine's speed moved meanwhile
#   (frequency scaling, other processes);
# * **noisy flags**: figures whose relative spread (max - min) / median over builds or timing repeats exceeds the
#   params' `bench.noise_threshold` (build time; QPS per mode and thread count; single-query p50).
#
# Recall is not timing and does not depend on them. Asserted: the flags name exactly the figures whose spread
# exceeds the threshold (a check of the records, not of the machine).

# %%
noise = float_only(nd.noise_table())
if noise.empty:
    print(nd.NO_RESULTS)
else:
    assert noise["flags_consistent"].all(), noise[~noise["flags_consistent"]]
    assert (noise["drift"].dropna() >= 0).all()
    per_build = noise.groupby(["dataset", "backend"]).agg(
        drift=("drift", "first"), threshold=("noise_threshold", "first"), settings=("kind", "size"),
        noisy_records=("n_noisy", lambda s: int((s > 0).sum())), worst_spread=("max_rel_spread", "max"),
        flagged=("noisy", lambda s: ", ".join(sorted({f for v in s for f in v.split(", ") if f}))))
    display(per_build.round(3))
    threshold = float(noise["noise_threshold"].dropna().iloc[0]) if noise["noise_threshold"].notna().any() else None
    drifting = per_build[per_build["drift"] > threshold] if threshold is not None else per_build.iloc[0:0]
    print(f"{int((noise['n_noisy'] > 0).sum())} of {len(noise)} records carry noisy flags; reference drift above "
          f"the threshold for: {', '.join(f'{d} {b}' for d, b in drifting.index) or 'none'}")

# %% [markdown]
# ## The effect of M and ef_construction
#
# M (links per node) and ef_construction (candidates kept while inserting) are build-time knobs: more of either
# builds a better graph, slower and bigger. If the pipeline's grid varies them, its results are used; otherwise a
# small **live sweep** runs here (hnswlib, 5,000 clustered 64-d vectors, 200 queries, one build and one timing
# repeat each, no memory child) through the same harness the pipeline uses (`ruvector_lab.bench.runner.run_build`),
# written to a temporary folder.

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
    settings = runner.RunSettings(n_queries=200, repeats=1, warmup=10, threads=(1,), build_threads=1, memory=False)
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
#    bench:
#      build_repeats: 3          # builds per graph configuration (the build spread above)
#      threads: auto             # 1, powers of two and the core count, in both thread-scaling modes
#    ```
# 2. **One experiment without editing**:
#    `dvc exp run -S 'build.m=[8,16,32]' -S 'build.ef_construction=[50,100,200]'`, then `dvc exp show`; queue
#    several with `dvc exp run --queue -S ...` and `dvc queue start -j 1`.
#
# Then re-run this notebook (`make notebooks`): it reads whatever the results folder holds.
