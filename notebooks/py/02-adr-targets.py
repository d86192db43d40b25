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
# # 02 · ADR-006 targets: measured against promised, per backend
#
# **Question.** Does each backend meet the latency targets of ADR-006 ("Decision Drivers: Performance
# Requirements"), with recall reported beside search latency? And is the native tier really 2-5x faster than
# the WASM tier, as the ADR claims?
#
# **Data.** The pipeline's ADR suite (stage `adr` in `dvc.yaml`, files `adr/<backend>.json` and `adr/common.json`
# under the results root, schema `ruvector-lab/adr@1`), on the ADR's own benchmark data (`adr-random-10k-384`:
# 10,000 x 384 uniform in [-1, 1]). Produce it with `make repro`. Each case is measured two ways:
#
# * **adr**: the ADR's own protocol, one input repeated (one query 1,000 times), judged on the mean, like its
#   `avgMs`;
# * **honest**: 1,000 distinct inputs, judged on p95, with recall@10 against exact ground truth for search.
#
# Cases that do not depend on the index backend (embedding, quantize, exact pattern match) are listed under
# `common`. The last sections turn to the pipeline's build sweeps on the same data (stage `build`, schemas
# `ruvector-lab/build@2` and `query@3`): every graph built several times, every query's answer kept, the memory
# of each index measured three ways, and batch throughput at 1 and more threads in two modes; and to the `node-peers`
# stage (schema `ruvector-lab/peers@1`): native and WASM builds of one library, run in Node.js, headless Chromium and
# Python's wasmtime, compared at equal recall. Timings vary from
# run to run; the cells assert verdicts, recall and the consistency of the records, never printed timings.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.ticker import FuncFormatter

import _nbdata as nd
from ruvector_lab.bench.targets import TARGETS, verdict

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
src = nd.source()
print(src.describe())
report = nd.report_path()
print("the pipeline's report:", nd.shown(report) if report else "not written yet (make repro)")
cases = nd.adr_cases()
have = not cases.empty
if not have:
    print(nd.NO_RESULTS)

# %% [markdown]
# ## The targets
#
# The ADR gives a latency bound per operation; HNSW insert and distance have none and are reported without a
# verdict. The verdict function is the library's own (`ruvector_lab.bench.targets`); it is checked here on
# values either side of each bound, so the table below cannot say "pass" for a miss.

# %%
targets = pd.DataFrame([{"case": t.case, "target (ms)": t.max_ms, "ADR text": t.adr_text} for t in TARGETS.values()])
for t in TARGETS.values():
    if t.max_ms is None:
        assert verdict(t.case, 1.0) == "no target"
    else:
        assert verdict(t.case, t.max_ms * 0.99) == "pass" and verdict(t.case, t.max_ms) == "fail"
    assert verdict(t.case, None) == "not available"
targets

# %% [markdown]
# ## Scorecard (honest protocol)
#
# One row per case and backend: the measured latency the verdict is taken on (p95 of 1,000 distinct inputs),
# the ADR target, the verdict, and for search the recall@10 obtained at that latency.

# %%
card = nd.adr_scorecard(cases, "honest")
card if have else print(nd.NO_RESULTS)

# %% [markdown]
# Verdicts at a glance, for both protocols. `common` applies to every backend.

# %%
if have:
    both = pd.concat({p: nd.adr_verdicts(cases, p) for p in ("adr", "honest")}, axis=1)
    display(both)

# %% [markdown]
# **What is asserted.** Every verdict agrees with its measurement and target. The targets with a wide margin on
# any machine are asserted to pass: HNSW search k=10 on every native backend, quantize and pattern match. The
# others are reported, not asserted: all-MiniLM-L6-v2 at one thread sits near the 100 ms batch bound on a shared
# 2-core machine, and the WASM tier searches by exact scan (RuVector's `rvf` store has no graph), so its search
# time grows with the data; a miss there is a finding, not a bug. Search recall: exact backends (graph `flat`)
# must find the true neighbours (recall@10 >= 0.999); graph backends must stay far above chance (>= 0.25; chance
# is 10 / 10,000). Uniform 384-d data is the hardest case for a graph, and the ADR's ef_search = 50 leaves most
# true neighbours behind on it: the number printed below is the finding.

# %%
MUST_PASS = {"quantize": "any", "pattern_match": "any", "hnsw_search_k10": "native"}  # case -> tiers
if have:
    ok = cases[cases["judged_ms"].notna()]
    for _, r in ok.iterrows():
        assert r["verdict"] == verdict(r["case"], r["judged_ms"]), f"{r['backend']} {r['case']}: inconsistent verdict"
        if MUST_PASS.get(r["case"]) in {"any", r["tier"]}:
            assert r["verdict"] == "pass", f"{r['backend']} {r['case']} {r['protocol']} misses its ADR target"
    search = ok[(ok["case"] == "hnsw_search_k10") & (ok["protocol"] == "honest")]
    assert not search.empty, "the ADR suite measured no search"
    for _, r in search.iterrows():
        floor = 0.999 if "graph=flat" in r["info"] else 0.25
        assert r["recall_at_10"] >= floor, f"{r['backend']}: recall@10 {r['recall_at_10']:.3f} < {floor}"
    graph = search[~search["info"].str.contains("graph=flat")]
    print(f"{len(ok)} measurements checked against their targets")
    if not graph.empty:
        print(f"at the ADR's settings the graph backends return recall@10 of {graph['recall_at_10'].min():.2f}-"
              f"{graph['recall_at_10'].max():.2f}; exact backends 1.00")
    missed = card[card["verdict"] == "fail"]
    print("targets missed (honest protocol):",
          ", ".join(f"{c} on {b}" for c, b in zip(missed["case"], missed["backend"], strict=True)) or "none")

# %% [markdown]
# ## Chart: latency against target
#
# Every case that has an ADR target, per backend, as the share of the budget it uses: measured latency divided
# by the target (honest protocol, p95 per call). Left of the dashed line is a pass. For search the recall@10
# reached is written beside the bar: a fast search that misses neighbours is no win.

# %%
if have:
    judged = card[card["target_ms"].notna() & card["judged_ms"].notna()].copy()
    judged["share"] = judged["judged_ms"] / judged["target_ms"]
    judged = judged.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(judged) + 1.5))
    colors = ["tab:green" if v == "pass" else "tab:red" for v in judged["verdict"]]
    labels = [f"{c} · {b}" for c, b in zip(judged["case"], judged["backend"], strict=True)]
    ax.barh(labels, judged["share"], color=colors)
    for y, (_, r) in enumerate(judged.iterrows()):
        note = f"{r['judged_ms']:.3g} ms of {r['target_ms']:g} ms"
        if r["case"] == "hnsw_search_k10" and pd.notna(r["recall_at_10"]):
            note += f", recall@10 {r['recall_at_10']:.3f}"
        ax.annotate(note, (r["share"], y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.axvline(1.0, ls="--", color="black", lw=1, label="ADR target")
    ax.set_xscale("log")
    ax.set_xlim(right=max(10.0, float(judged["share"].max()) * 20))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("share of the ADR budget used: p95 latency / target latency (log scale; < 1 is a pass)")
    ax.set_ylabel("ADR case · backend")
    ax.set_title("ADR-006 latency targets, honest protocol (green pass, red fail)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Recall beside latency
#
# The ADR's own search benchmark repeats one query and measures no recall. Here both protocols' latencies sit
# next to the recall@10 the backend returned for 1,000 distinct queries.

# %%
if have:
    s = cases[(cases["case"] == "hnsw_search_k10") & cases["judged_ms"].notna()]
    table = s.pivot_table(index="backend", columns="protocol", values="judged_ms", aggfunc="first")
    table = table.rename(columns={"adr": "adr mean (ms)", "honest": "honest p95 (ms)"})
    table["recall@10"] = s.groupby("backend")["recall_at_10"].first()
    table["graph"] = s.groupby("backend")["info"].first().str.replace("graph=", "")
    display(table)
    fig, ax = plt.subplots(figsize=(6, 4))
    hs = s[s["protocol"] == "honest"]
    ax.scatter(hs["recall_at_10"], hs["judged_ms"])
    for _, r in hs.iterrows():
        ax.annotate(r["backend"], (r["recall_at_10"], r["judged_ms"]), textcoords="offset points", xytext=(4, 4))
    ax.axhline(TARGETS["hnsw_search_k10"].max_ms, ls="--", color="black", lw=1, label="ADR target (5 ms)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("recall@10 (fraction of true neighbours found)")
    ax.set_ylabel("p95 latency per query (ms, log scale)")
    ax.set_title("HNSW search k=10 on the ADR's data: latency vs recall")
    ax.legend()
    plt.show()

# %% [markdown]
# ## Embedding: precision x threads x texts
#
# The ADR times embedding at one setting (the canonical cases above: fp32, one thread, short sentences). Users
# choose a precision and a thread count, and send batches whose texts differ in length, so the suite measures
# every precision x thread count on distinct short sentences and on batches of 30 short sentences with 2 long
# paragraphs, each judged against its ADR target under both protocols. `mixed_over_apart` is a mixed batch's p50
# over the same texts embedded as two batches (short, long): 1.0 means the long texts cost only their own tokens
# (the Embedder plans its runs by a budget of padded tokens; a fixed chunk of 32 padded every text to 256 tokens
# and cost ~4x). Asserted: every cell was measured or says why not, and each verdict follows from its figure and
# target; the figures themselves are findings.

# %%
matrix = nd.embedding_matrix()
if matrix.empty:
    print(nd.NO_RESULTS)
else:
    measured = matrix[matrix["status"] == "ok"]
    for _, r in measured.iterrows():
        assert r["verdict"] == verdict(r["case"], r["judged_ms"]), f"{r['case']} {r['precision']}: verdict"
        assert r["graph"] in ("fused", "plain"), "every measurement says which graph ran"
    cells = measured.groupby(["precision", "threads"]).size()
    print(f"{len(cells)} precision x thread settings measured, {len(measured)} rows")
    honest = measured[measured["protocol"] == "honest"]
    display(honest.pivot_table(index=["case", "texts"], columns=["precision", "threads"], values="p95_ms")
            .round(2))
    mixed = honest[honest["texts"] == "mixed"][["precision", "threads", "graph", "p50_ms", "mixed_over_apart"]]
    display(mixed.round(2).reset_index(drop=True))

# %% [markdown]
# ## Native vs WASM: the ADR's "2-5x faster"
#
# For every case both tiers ran, the WASM backend's latency divided by a native backend's (honest protocol; a
# ratio of 3 means native is 3x faster). Read the cases differently: `batch_distance_10k` does the same work on
# both sides (one query against 10,000 rows in a SIMD kernel vs the WASM module's kernel), so it is the
# like-for-like comparison. For search and insert the WASM backend is RuVector's `rvf` store, an exact (flat)
# scan, while the native backends run HNSW graphs: that ratio is what a user gets by tier, not the same algorithm.

# %%
ratios = nd.native_wasm_ratios(cases, "honest")
if ratios.empty:
    print(nd.NO_RESULTS if not have else "the WASM backend or no native backend was measured here")
else:
    lo, hi = nd.ADR_NATIVE_SPEEDUP
    assert (ratios["ratio"] > 0).all()
    summary = ratios.groupby("case")["ratio"].agg(["min", "median", "max"])
    summary["within 2-5x"] = summary["median"].between(lo, hi)
    display(ratios.round(3))
    display(summary.round(2))
    for case, r in summary.iterrows():
        if r["median"] >= 1:
            print(f"{case}: native is {r['min']:.1f}-{r['max']:.1f}x faster than WASM (median {r['median']:.1f}x; "
                  f"ADR claim {lo:g}-{hi:g}x)")
        else:  # e.g. inserts: the WASM store appends rows while a graph links each new node
            print(f"{case}: WASM is {1 / r['max']:.1f}-{1 / r['min']:.1f}x faster than native "
                  f"(median {1 / r['median']:.1f}x)")
    fig, ax = plt.subplots(figsize=(7, 4))
    order = list(summary.index)
    natives = sorted(ratios["native"].unique(), key=nd.backend_rank)
    width = 0.8 / len(natives)  # one bar per native backend, side by side within each case's slot
    for i, native in enumerate(natives):
        sub = ratios[ratios["native"] == native].set_index("case").reindex(order)
        ax.bar(np.arange(len(order)) + (i - (len(natives) - 1) / 2) * width, sub["ratio"], width=width,
               label=native)
    ax.axhspan(lo, hi, color="tab:green", alpha=0.15, label="ADR claim: 2-5x")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(order)), order, rotation=20)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("ADR case")
    ax.set_ylabel("WASM latency / native latency (x, log scale)")
    ax.set_title("How much faster native is than WASM (honest protocol, p95)")
    ax.legend(fontsize=8)
    plt.show()

# %% [markdown]
# ## Native vs WASM, same algorithm
#
# The ratios above compare tiers, not algorithms. The pipeline's `node-peers` stage (schema `ruvector-lab/peers@1`)
# runs the published npm builds of one library both ways, in the runtimes the ADR targets: `hnswlib-node` (N-API)
# against `hnswlib-wasm` (emscripten, a web-only build run in a local page in headless Chromium, no network),
# `@ruvector/rvf-node` against `@ruvector/rvf-wasm`, `@ruvector/core` against `@ruvector/wasm`, and the rvf module
# in Node's V8 against the same module in Python's wasmtime (this project's WASM tier). Each side builds the same
# index and runs the same queries, in fresh processes, and is compared at equal recall: the lower of the two sides'
# best recall@10, each side at its fastest ef_search within 0.005 of it. The `same` column says whether both sides
# really run one algorithm (checked, not assumed from the names); only those pairs speak to the ADR's claim.
#
# **Asserted:** every pair either has figures on both sides or says why not; both sides reach the common recall;
# exact sides find every neighbour; each ratio lies within its min-max over run pairs and follows from the
# per-side figures; batch CPU use stays near one core (pools pinned to 1). The ratios themselves are findings.

# %%
peers = nd.peer_comparison()
peer_sides = nd.peer_sides()
if peers.empty:
    print(nd.NO_RESULTS + " (stage node-peers)")
else:
    tol = 0.005
    for _, r in peers.iterrows():
        if r["status"] != "ok":
            assert isinstance(r["reason"], str) and r["reason"], f"{r['pair']} on {r['dataset']}: no reason"
            continue
        for side in ("first", "second"):
            assert r[f"{side}_recall"] >= r["target_recall"] - tol - 1e-12, f"{r['pair']} {side} below the target"
        for name in ("latency_ratio", "qps_ratio", "build_ratio"):
            assert r[f"{name}_min"] <= r[name] <= r[f"{name}_max"], f"{r['pair']} {name} outside its spread"
        assert r["second_p50_ms"] > 0 and r["first_p50_ms"] > 0 and r["first_qps"] > 0 and r["second_qps"] > 0
    measured = peer_sides[peer_sides["status"] == "ok"]
    exact = measured[measured["algorithm"] == "exact"]
    assert (exact["recall_at_10"] >= 0.999).all(), "an exact side missed a neighbour"
    native_cpu = measured[measured["runtime"] != "browser"]["cpu"].dropna()
    assert (native_cpu < 1.5).all(), "a side used more than one core with its pools pinned to 1"
    absent = peer_sides[peer_sides["status"] != "ok"].drop_duplicates(["dataset", "pair", "backend"])
    assert (absent["reason"].str.len() > 0).all()
    print(nd.peer_verdict(peers))
    cols = {"dataset": "dataset", "pair": "pair", "first": "first", "second": "second", "same": "same algorithm",
            "target_recall": "recall@10", "first_p50_ms": "p50 ms first", "second_p50_ms": "p50 ms second",
            "latency_ratio": "p50 ratio", "qps_ratio": "QPS ratio", "qps_ratio_min": "min", "qps_ratio_max": "max",
            "build_ratio": "build ratio", "first_bytes": "B/vec first", "second_bytes": "B/vec second",
            "run_pairs": "run pairs", "status": "status"}
    display(peers[list(cols)].rename(columns=cols).round(4))
    for text in peers["verdict"]:
        print("-", text)
    for r in absent.itertuples():
        print(f"{r.dataset}/{r.pair} {r.backend}: {r.status}: {r.reason}")

# %% [markdown]
# Each side's sweep as it ran (recall@10 and batch QPS per ef_search; sides without ef_search scan exactly), and
# the ratio at equal recall per pair and dataset with its range over run pairs against the ADR's band. Bars above
# 1 mean the second side (WASM; wasmtime for the engines pair) is slower.

# %%
if not peers.empty:
    ok = peers[peers["status"] == "ok"].reset_index(drop=True)
    sweep_cols = ["dataset", "pair", "backend", "algorithm", "engine", "ef_search", "recall_at_10", "p50_ms",
                  "p99_ms", "qps", "qps_min", "qps_max", "cpu", "build_s", "bytes_per_vector", "memory_measure"]
    display(peer_sides[peer_sides["status"] == "ok"][sweep_cols].round(4).reset_index(drop=True))
    if not ok.empty:
        lo, hi = nd.ADR_NATIVE_SPEEDUP
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(ok) + 1.8))
        labels = [f"{p} · {d}\n{c}, {'same algorithm' if same else 'different algorithms'}, recall {t:.3f}"
                  for p, d, c, same, t in zip(ok["pair"], ok["dataset"], ok["comparison"], ok["same"],
                                              ok["target_recall"], strict=True)]
        err = [ok["qps_ratio"] - ok["qps_ratio_min"], ok["qps_ratio_max"] - ok["qps_ratio"]]
        colors = ["tab:blue" if same else "tab:gray" for same in ok["same"]]
        ax.barh(range(len(ok)), ok["qps_ratio"], xerr=err, capsize=3, color=colors)
        ax.axvspan(lo, hi, color="tab:green", alpha=0.15, label="ADR claim: native 2-5x faster")
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_yticks(range(len(ok)), labels, fontsize=7)
        ax.set_ylabel("pair · dataset")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v in (2, 3, 5) else ""))
        ax.set_xlabel("batch QPS of the first side / of the second, at equal recall (log; > 1: second is slower)")
        ax.set_title("Native vs WASM builds of one library (blue: same algorithm; bars: range over run pairs)")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        plt.show()

# %% [markdown]
# ## The ADR's data in the pipeline's sweeps
#
# The suite above times one build at the ADR's settings. The pipeline's `build` stage runs the same data through
# every backend at the settings of `params.yaml` (`build`, `query.ef_search`), builds each graph several times
# (each build inserting the vectors in another seeded order), keeps every query's returned ids, and measures the
# memory of each index. Those records answer three questions the ADR's table leaves open: how far does recall
# move from one build to the next, how are the *worst* queries served, and what does an index cost in memory.

# %%
adr_ds = nd.adr_dataset()
sweeps = nd.query_runs()
sweeps = sweeps[(sweeps["dataset"] == adr_ds) & (sweeps["quantization"] == "none")]
have_sweeps = not sweeps.empty
print(f"the ADR's dataset: {adr_ds}; {len(sweeps)} query settings in the pipeline's sweeps")
if not have_sweeps:
    print(nd.NO_RESULTS)

# %% [markdown]
# ### Search recall over builds, and the queries a mean hides
#
# Per backend and ef_search: recall@10 of the median build (the build whose mean recall over the sweep is the
# median), with the min-max over all builds; strict recall (only the ground truth's exact ids count) beside the
# tolerant figure (a point at the same distance as the 10th neighbour counts too); the recall of the 5th-percentile
# query and the share of queries that find fewer than half of their true neighbours. Exact backends are built
# once and find every neighbour.
#
# **Asserted:** strict <= tolerant; the median build's recall lies within the min-max over builds and is that
# build's own entry; exact backends reach 0.999; every per-query file exists and the mean recall recomputed from
# it against the ground truth equals the record's.

# %%
if have_sweeps:
    assert (sweeps["recall_strict_at_10"] <= sweeps["recall_at_10"] + 1e-12).all()
    assert ((sweeps["recall_at_10_min"] <= sweeps["recall_at_10"])
            & (sweeps["recall_at_10"] <= sweeps["recall_at_10_max"])).all()
    assert np.allclose(sweeps["recall_at_10_median_build"], sweeps["recall_at_10"], rtol=0, atol=1e-12)
    assert (sweeps.loc[sweeps["graph"] == "flat", "recall_at_10"] >= 0.999).all()
    files = nd.perquery_files()
    files = files[(files["dataset"] == adr_ds) & (files["quantization"] == "none")]
    assert not files.empty and files["exists"].all()
    checked = files[files["ground_truth"] == "found"]
    assert np.allclose(checked["recall_file"], checked["recall_record"], rtol=0, atol=1e-9)
    assert np.allclose(checked["recall_strict_file"], checked["recall_strict_record"], rtol=0, atol=1e-9)
    cols = {"backend": "backend", "graph": "graph", "ef_search": "ef_search", "n_builds": "builds",
            "recall_at_10": "recall@10 (median build)", "recall_at_10_min": "min over builds",
            "recall_at_10_max": "max over builds", "recall_strict_at_10": "strict recall@10",
            "recall_p5": "p5 query", "share_below_0.5": "share < 0.5"}
    display(sweeps.sort_values(["backend", "ef_search"])[list(cols)].rename(columns=cols).round(4)
            .reset_index(drop=True))
    print(f"{len(files)} per-query files; mean recall recomputed from {len(checked)} of them equals the record's")
    graphs = sweeps[sweeps["graph"] == "hnsw"]
    for _, r in graphs[graphs["ef_search"] == graphs["ef_search"].max()].iterrows():
        print(f"{r['backend']} at ef_search {r['ef_search']}: mean recall@10 {r['recall_at_10']:.3f} "
              f"(builds {r['recall_at_10_min']:.3f}-{r['recall_at_10_max']:.3f}); "
              f"{r['share_below_0.5']:.0%} of queries find fewer than 5 of their 10 neighbours")

# %% [markdown]
# Recall by difficulty quintile on the ADR's data, at the widest ef_search: the queries cut into five equal groups
# by LID (local intrinsic dimensionality of the neighbourhood; higher is harder) and by RC (relative contrast,
# how much nearer the neighbours are than the rest; lower is harder), easiest (1) to hardest (5). Uniform random
# data has almost no structure, so every query is hard and the quintiles differ little: the finding is the level,
# not the slope. Asserted: the quintiles partition the queries.

# %%
bins = nd.difficulty_bins()
bins = bins[(bins["dataset"] == adr_ds) & (bins["quantization"] == "none")] if not bins.empty else bins
if bins.empty:
    print(nd.NO_RESULTS)
else:
    for key, b in bins.groupby(["backend", "ef_search", "measure"]):
        assert b["n_queries"].sum() + int(b["n_nan_excluded"].iloc[0]) == int(b["n_queries_total"].iloc[0]), key
    wide = bins[bins["ef_search"] == bins.groupby("backend")["ef_search"].transform("max")]
    table = wide.pivot_table(index=["backend", "ef_search"], columns=["measure", "hardness"], values="mean_recall")
    display(table.round(3))

# %% [markdown]
# ### Memory per index on the ADR's data
#
# ADR-006 wants memory-efficient storage. Bytes per stored vector three ways: **serialized** (the saved index over
# n), **analytic** (what the structure's layout predicts: vectors, graph links, id maps) and **RSS growth** (the
# resident memory a build adds in a fresh child process, over n); a float32 vector alone is 4 x 384 = 1,536
# bytes. A missing figure says why. Build time beside it: median and min-max over the builds.
#
# **Asserted:** every figure present is positive, and every float index stores at least its float32 vectors
# (serialized >= 4 x d).

# %%
memory = nd.memory_table()
memory = memory[(memory["dataset"] == adr_ds) & (memory["quantization"] == "none")] if not memory.empty else memory
if memory.empty:
    print(nd.NO_RESULTS)
else:
    assert (memory["serialized"] > 0).all() and (memory["serialized"] >= memory["float_bytes"]).all()
    assert (memory["analytic"].dropna() > 0).all() and (memory["rss_growth"].dropna() > 0).all()
    missing = memory[memory["analytic"].isna() | memory["rss_growth"].isna()]
    assert (missing["reason"].str.len() > 0).all(), "a memory figure is missing without a reason"
    cols = {"backend": "backend", "graph": "graph", "serialized": "serialized B/vector",
            "analytic": "analytic B/vector", "rss_growth": "RSS growth B/vector", "rss_over_analytic": "RSS / analytic",
            "build_time_s": "build s (median)", "build_time_min": "min", "build_time_max": "max", "n_builds": "builds"}
    display(memory[list(cols)].rename(columns=cols).round(3).reset_index(drop=True))
    for r in missing.itertuples():
        print(f"{r.backend}: {r.reason[:160]}")
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(memory) + 1.8))
    nd.plot_memory(ax, memory, f"{adr_ds}: memory per index, three ways")
    plt.show()

# %% [markdown]
# ### Native vs WASM at one thread, and with more threads
#
# The same "2-5x" question from the sweeps: batch QPS at one thread, median over builds with min-max, and each
# backend's ratio to the WASM backend (the bars span the ratio's range over builds). One thread now truly is one:
# OpenMP thread counts are per thread, so faiss used to run its OpenMP pool at the core count inside each caller
# thread; every worker pins its own pools now, and the counts it read back are checked below. Read the graph
# backends with their recall: the WASM tier scans exactly (recall 1), the graphs trade recall for speed.
#
# More threads, two ways: **caller threads** splits the batch across t threads of the caller with every library
# pool pinned to 1 in each (t independent searchers, like a server's request threads); **library pool** hands the
# batch from one caller to the library's own pool at t threads (faiss' OpenMP, hnswlib, BLAS; a backend without
# one, ruvector or WASM, stays at one busy thread). `cpu` is CPU time over wall time: the parallelism that really ran.

# %%
if not have_sweeps:
    print(nd.NO_RESULTS)
else:
    wasm = sweeps[sweeps["backend"] == nd.WASM_BACKEND]
    rows = []
    for _, r in sweeps.iterrows():
        row = {"backend": r["backend"], "tier": r["tier"], "graph": r["graph"], "ef_search": r["ef_search"],
               "recall@10": r["recall_at_10"], "qps 1 thread": r["qps_1"], "min": r["qps_1_min"],
               "max": r["qps_1_max"], "cpu": r["cpu_1"]}
        if not wasm.empty and r["backend"] != nd.WASM_BACKEND:
            w = wasm.iloc[0]
            row |= {"x WASM": r["qps_1"] / w["qps_1"], "x WASM low": r["qps_1_min"] / w["qps_1_max"],
                    "x WASM high": r["qps_1_max"] / w["qps_1_min"]}
        rows.append(row)
    one = pd.DataFrame(rows).sort_values(["tier", "backend", "ef_search"]).reset_index(drop=True)
    display(one.round(3))
    scaling = nd.thread_scaling()
    scaling = scaling[(scaling["dataset"] == adr_ds) & (scaling["quantization"] == "none")]
    assert scaling["pinned"].all(), "a pool ran at another thread count than its mode means"
    display(scaling.pivot_table(index=["backend", "ef_search"], columns=["mode", "threads"],
                                values=["qps", "cpu_utilization"], aggfunc="first").round(2))
    if "x WASM" in one.columns:
        native = one[one["tier"] == nd.NATIVE_TIER].dropna(subset=["x WASM"])
        fig, ax = plt.subplots(figsize=(8, 4))
        labels = [f"{b}\nef {e}, recall {r:.2f}" for b, e, r in zip(native["backend"], native["ef_search"],
                                                                     native["recall@10"], strict=True)]
        err = [native["x WASM"] - native["x WASM low"], native["x WASM high"] - native["x WASM"]]
        ax.bar(range(len(native)), native["x WASM"], yerr=err, capsize=3, color="tab:blue")
        lo, hi = nd.ADR_NATIVE_SPEEDUP
        ax.axhspan(lo, hi, color="tab:green", alpha=0.15, label="ADR claim: 2-5x")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks(range(len(native)), labels, fontsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel("native backend at each ef_search of the sweep (recall@10 of the median build)")
        ax.set_ylabel("batch QPS, 1 thread: native / WASM (log)")
        ax.set_title(f"{adr_ds}: native vs WASM throughput at one thread (bars: range over builds)")
        ax.legend(fontsize=8)
        plt.show()

# %% [markdown]
# ### Noise
#
# A fixed workload is timed before and after each build configuration's run (reference drift), and any figure
# whose spread over builds or repeats exceeds `bench.noise_threshold` is flagged in its record. Flagged timings are
# still shown above; read them as rough. Asserted: each record's flags name exactly its figures above the
# threshold.

# %%
noise = nd.noise_table()
noise = noise[(noise["dataset"] == adr_ds) & (noise["quantization"] == "none")] if not noise.empty else noise
if noise.empty:
    print(nd.NO_RESULTS)
else:
    assert noise["flags_consistent"].all()
    display(noise.groupby("backend").agg(
        drift=("drift", "first"), records=("kind", "size"), noisy_records=("n_noisy", lambda s: int((s > 0).sum())),
        flagged=("noisy", lambda s: ", ".join(sorted({f for v in s for f in v.split(", ") if f})))).round(3))
