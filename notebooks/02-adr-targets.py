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
# `common`. Timings vary from run to run; the cells assert verdicts and recall, never printed timings.

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
    for i, native in enumerate(sorted(ratios["native"].unique())):
        sub = ratios[ratios["native"] == native].set_index("case").reindex(order)
        ax.bar(np.arange(len(order)) + (i - 1) * 0.25, sub["ratio"], width=0.25, label=native)
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
