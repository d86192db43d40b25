"""Embedding throughput beyond the ADR suite: corpus throughput, batching and graph choices, busy cores, and the
sentence-transformers anchor.

Protocol. Corpus: a seeded sample of WordNet glosses and examples (the texts of ``wordnet-minilm-384``), embedded
:data:`~ruvector_lab.bench.sources.EMBED_BLOCK` texts per ``embed_batch`` call as the pipeline does; each
configuration is run ``rounds`` times, interleaved round by round, and reported as the median texts/s. The
configurations: the default Embedder (fused graph, token-budget chunks) and the same with one thing changed (the
plain graph; fixed chunks of 64 texts, the batching before token budgets; other budgets). Busy cores: a batch of
32 short texts at 2 threads, timed with a second process spinning on one core, with onnxruntime's thread spinning
on and off. Anchor: ``--workload FILE`` writes the texts this module uses for ``scripts/st_anchor.py`` (run in its
own environment with torch), and ``--anchor FILE`` reads its output and reports our figure over theirs.

Run: ``python -m ruvector_lab.bench.embedding [--corpus 4000] [--rounds 3] [--json out.json] [--workload F]
[--anchor F]``
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ..container import write_atomic
from .adr import MIXED_LONG, distinct_sentences, mixed_batches
from .sources import EMBED_BLOCK
from .timer import summarize, time_calls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusConfig:
    """One way to embed a corpus: Embedder settings and the ``embed_batch`` chunking."""

    name: str
    precision: str = "int8"
    threads: int = 2
    graph: str = "auto"
    token_budget: int | None = None  # None: the Embedder's default
    chunk_size: int | None = None


#: the default, then one change at a time
CORPUS_CONFIGS: tuple[CorpusConfig, ...] = (
    CorpusConfig("default (fused graph, token budget)"),
    CorpusConfig("plain graph", graph="plain"),
    CorpusConfig("fixed chunks of 64 texts", chunk_size=64, token_budget=64 * 256),
    CorpusConfig("token budget 512", token_budget=512),
    CorpusConfig("token budget 1024", token_budget=1024),
    CorpusConfig("token budget 4096", token_budget=4096),
)


@dataclass
class CorpusResult:
    """Texts per second of one configuration: median over rounds, and each round's figure."""

    config: CorpusConfig
    texts: int
    texts_per_s: float
    rounds: list[float] = field(default_factory=list)
    graph: str = ""


def wordnet_sample(n: int, seed: int = 42) -> list[str]:
    """``n`` distinct WordNet texts (glosses and examples), a seeded sample in file order."""
    from .datasets import read_wordnet

    texts = read_wordnet()
    pool = list(dict.fromkeys((*texts.glosses, *texts.examples)))
    if n >= len(pool):
        return pool
    keep = np.sort(np.random.default_rng(seed).choice(len(pool), size=n, replace=False))
    return [pool[i] for i in keep]


def corpus_throughput(texts: Sequence[str], configs: Sequence[CorpusConfig] = CORPUS_CONFIGS,
                      rounds: int = 3) -> list[CorpusResult]:
    """Texts/s of each configuration on ``texts`` (embedded in blocks, as the pipeline does), interleaved over
    ``rounds``: every round runs each configuration once, so a slow spell of a shared machine hits them alike."""
    from ..embeddings import Embedder

    embedders = {c.name: Embedder(precision=c.precision, threads=c.threads, graph=c.graph) for c in configs}
    results = {c.name: CorpusResult(c, len(texts), 0.0, graph=embedders[c.name].info()["graph"]["running"])
               for c in configs}
    try:
        for _ in tqdm(range(rounds), desc="corpus rounds", unit="round"):
            for c in configs:
                embedder = embedders[c.name]
                kwargs: dict[str, Any] = {"chunk_size": c.chunk_size}
                if c.token_budget is not None:
                    kwargs["token_budget"] = c.token_budget
                start = time.perf_counter()
                for at in range(0, len(texts), EMBED_BLOCK):
                    embedder.embed_batch(texts[at : at + EMBED_BLOCK], **kwargs)
                results[c.name].rounds.append(len(texts) / (time.perf_counter() - start))
    finally:
        for embedder in embedders.values():
            embedder.close()
    for r in results.values():
        r.texts_per_s = float(np.median(r.rounds))
    return list(results.values())


def _burn(stop: Any) -> None:
    """Keep one core busy until ``stop`` is set (the second process of the busy-core measurement)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def busy_cores(precision: str = "fp32", threads: int = 2, batches: int = 20, seed: int = 7) -> dict[str, Any]:
    """Batch-of-32 latency (short texts) with onnxruntime's thread spinning on and off, on idle cores and with a
    second process burning one core: p50/p95 ms per setting, and each setting's busy/idle p50 ratio."""
    from ..embeddings import Embedder

    texts = distinct_sentences(32 * batches, seed)
    inputs = [texts[32 * i : 32 * (i + 1)] for i in range(batches)]
    out: dict[str, Any] = {"precision": precision, "threads": threads, "batches": batches}
    ctx = multiprocessing.get_context("spawn")
    for load in ("idle", "one core busy"):
        stop = ctx.Event()
        burner = ctx.Process(target=_burn, args=(stop,), daemon=True) if load != "idle" else None
        if burner:
            burner.start()
            time.sleep(0.5)
        try:
            for spin in (True, False):
                with Embedder(precision=precision, threads=threads, spin=spin) as embedder:
                    s = summarize(time_calls(embedder.embed_batch, inputs, warmup=3))
                out.setdefault(f"spin={spin}", {})[load] = {"p50_ms": s.p50_ms, "p95_ms": s.p95_ms}
        finally:
            if burner:
                stop.set()
                burner.join(5)
    for spin in (True, False):
        row = out[f"spin={spin}"]
        row["busy_over_idle"] = row["one core busy"]["p50_ms"] / row["idle"]["p50_ms"]
    return out


def workload(corpus: Sequence[str], seed: int = 7, batches: int = 20, singles: int = 100) -> dict[str, Any]:
    """The texts for ``scripts/st_anchor.py``: the ADR suite's short and mixed batches, and the corpus sample."""
    texts = distinct_sentences(singles + 32 * batches, seed)
    mixed = mixed_batches(batches, seed)
    return {"threads": [1, 2], "corpus_batch_size": 64,
            "cases": {"single_short": texts[:singles],
                      "batch32_short": [texts[singles + 32 * i : singles + 32 * (i + 1)] for i in range(batches)],
                      "batch32_mixed": mixed,
                      "mixed_parts": [{"short": sorted(b, key=len)[:-MIXED_LONG],
                                       "long": sorted(b, key=len)[-MIXED_LONG:]} for b in mixed],
                      "corpus": list(corpus)}}


def anchor_ratios(ours: dict[str, Any], anchor: dict[str, Any]) -> list[dict[str, Any]]:
    """Our figure over sentence-transformers' (torch) per case and thread count: p50 latency ratios (below 1:
    we are faster) and corpus texts/s ratio (above 1: we are faster)."""
    rows = []
    for threads, cases in sorted(anchor.get("threads", {}).items()):
        for case, theirs in cases.items():
            mine = ours.get(threads, {}).get(case)
            if not mine:
                continue
            if "texts_per_s" in theirs:
                rows.append({"threads": int(threads), "case": case, "ours": mine["texts_per_s"],
                             "sentence_transformers": theirs["texts_per_s"],
                             "ratio": mine["texts_per_s"] / theirs["texts_per_s"], "unit": "texts/s"})
            else:
                rows.append({"threads": int(threads), "case": case, "ours": mine["p50_ms"],
                             "sentence_transformers": theirs["p50_ms"], "ratio": mine["p50_ms"] / theirs["p50_ms"],
                             "unit": "p50 ms"})
    return rows


def measure_workload(work: dict[str, Any], precision: str = "fp32") -> dict[str, Any]:
    """Our Embedder on the anchor's workload, the same cases and threads as ``scripts/st_anchor.py`` measures."""
    from ..embeddings import Embedder

    out: dict[str, Any] = {}
    cases = work["cases"]
    for threads in work["threads"]:
        got: dict[str, Any] = {}
        with Embedder(precision=precision, threads=threads) as e:
            for name, func, inputs in (("single_short", e.embed, cases["single_short"]),
                                       ("batch32_short", e.embed_batch, cases["batch32_short"]),
                                       ("batch32_mixed", e.embed_batch, cases["batch32_mixed"])):
                s = summarize(time_calls(func, inputs, warmup=3))
                got[name] = {"p50_ms": s.p50_ms, "p95_ms": s.p95_ms, "mean_ms": s.mean_ms}
            start = time.perf_counter()
            e.embed_batch(cases["corpus"])
            got["corpus"] = {"texts_per_s": len(cases["corpus"]) / (time.perf_counter() - start)}
        out[str(threads)] = got
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a table and optionally write JSON. Exit code 0."""
    parser = argparse.ArgumentParser(prog="python -m ruvector_lab.bench.embedding", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=int, default=4000, help="WordNet texts in the corpus sample")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the results here (JSON)")
    parser.add_argument("--workload", default=None, help="write the anchor's workload here (JSON) and stop")
    parser.add_argument("--anchor", default=None, help="scripts/st_anchor.py's output: report ratios to it")
    parser.add_argument("--skip-busy", action="store_true", help="leave out the busy-core measurement")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    corpus = wordnet_sample(args.corpus)
    if args.workload:
        write_atomic(args.workload, json.dumps(workload(corpus)).encode())
        print(f"workload written to {args.workload}")
        return 0
    report: dict[str, Any] = {"machine": {"processor": platform.processor() or platform.machine(),
                                          "python": platform.python_version()}}
    corpus_rows = corpus_throughput(corpus, rounds=args.rounds)
    report["corpus"] = [asdict(r) for r in corpus_rows]
    print(f"\nCorpus: {len(corpus):,} WordNet texts, median of {args.rounds} interleaved rounds")
    print("| configuration | graph | texts/s | vs default |\n|---|---|---:|---:|")
    base = corpus_rows[0].texts_per_s
    for r in corpus_rows:
        print(f"| {r.config.name} | {r.graph} | {r.texts_per_s:,.0f} | {r.texts_per_s / base:.2f} |")
    if not args.skip_busy:
        busy = busy_cores()
        report["busy_cores"] = busy
        print(f"\nBusy cores: batch of 32 short texts, {busy['precision']}, {busy['threads']} threads (p50 ms)")
        print("| spinning | idle | one core busy | busy / idle |\n|---|---:|---:|---:|")
        for spin in (True, False):
            row = busy[f"spin={spin}"]
            print(f"| {'on' if spin else 'off'} | {row['idle']['p50_ms']:.1f} | {row['one core busy']['p50_ms']:.1f} "
                  f"| {row['busy_over_idle']:.2f} |")
    if args.anchor:
        with open(args.anchor, encoding="utf-8") as f:
            anchor = json.load(f)
        ours = measure_workload(workload(corpus))
        rows = anchor_ratios(ours, anchor)
        report["anchor"] = {"made_with": anchor.get("made_with"), "rows": rows}
        print(f"\nAnchor: sentence-transformers {anchor.get('made_with', {})} on the same texts (fp32)")
        print("| threads | case | ours | sentence-transformers | ours / theirs |\n|---:|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['threads']} | {r['case']} ({r['unit']}) | {r['ours']:,.1f} | {r['sentence_transformers']:,.1f}"
                  f" | {r['ratio']:.2f} |")
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=1, default=str).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
