"""The facade benchmark runs end to end on a small problem and reports sane figures."""

from __future__ import annotations

import numpy as np

from ruvector_lab.bench import facade
from ruvector_lab.bench.timer import interleaved, summarize


def test_summarize_percentiles():
    s = summarize(np.arange(1, 101) / 1000.0)
    assert s.count == 100 and s.min_ms == 1.0 and s.max_ms == 100.0
    assert s.p50_ms == 50.5 and 95 < s.p95_ms < 96 and 99 < s.p99_ms < 100


def test_interleaved_times_every_function_on_every_arg():
    calls: dict[str, int] = {"a": 0, "b": 0}

    def make(name):
        def f(_):
            calls[name] += 1
        return f

    out = interleaved({"a": make("a"), "b": make("b")}, list(range(30)), rounds=3, warmup=5)
    assert {k: len(v) for k, v in out.items()} == {"a": 90, "b": 90}
    assert calls == {"a": 95, "b": 95}
    assert all((v > 0).all() for v in out.values())


def test_facade_benchmark_small_run(tmp_path, capsys):
    results = facade.run(n=400, dim=16, n_queries=50)
    names = [r.backend for r in results]
    assert "numpy" in names
    for r in results:
        assert r.facade_p50_ms > 0 and 0.0 <= r.recall_at_10 <= 1.0
        if r.backend == "numpy":
            assert r.recall_at_10 == 1.0 and r.direct_p50_ms is None
        elif r.backend in {"faiss", "hnswlib", "ruvector"}:
            assert r.direct_p50_ms > 0 and r.ratio == r.facade_p50_ms / r.direct_p50_ms
    table = facade.format_table(results)
    assert table.count("\n") == len(results) + 1
    facade.main(["--n", "300", "--dim", "8", "--queries", "30", "--backend", "numpy", "--json",
                 str(tmp_path / "f.json")])
    assert "| numpy |" in capsys.readouterr().out and (tmp_path / "f.json").exists()
