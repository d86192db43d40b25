"""The facade benchmark runs end to end on a small problem and reports sane figures."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest

from ruvector_lab import fastpath
from ruvector_lab.bench import facade
from ruvector_lab.bench.timer import alternating, interleaved, summarize


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


def test_alternating_deals_every_arg_to_every_function_once_and_never_twice_in_a_row():
    seen: list[tuple[str, int]] = []

    def make(name):
        def f(arg):
            seen.append((name, arg))
        return f

    out = alternating({"a": make("a"), "b": make("b"), "c": make("c")}, list(range(10)), warmup=2)
    timed = seen[6:]  # 3 functions x 2 warm-up args first
    assert {k: len(v) for k, v in out.items()} == {"a": 10, "b": 10, "c": 10}
    assert sorted(timed) == sorted((n, i) for n in "abc" for i in range(10))
    assert all(x[1] != y[1] for x, y in pairwise(timed))  # no arg run twice back to back
    assert alternating({"only": make("x")}, [1, 2, 3], warmup=0)["only"].shape == (3,)


def test_facade_benchmark_small_run(tmp_path, capsys):
    natives = facade.native_backends()
    assert natives and "numpy" not in natives and "wasm" not in natives
    results = facade.run(dims=(8, 16), n=400, n_queries=40, rounds=2)
    assert [(r.dimensions, r.backend) for r in results] == [(d, b) for d in (8, 16) for b in natives]
    for r in results:
        assert r.facade_p50_us > 0 and r.direct_p50_us > 0 and 0.0 <= r.recall_at_10 <= 1.0
        # two rounds: the median of the rounds' differences is the difference of the medians
        assert r.cost_us == pytest.approx(r.facade_p50_us - r.direct_p50_us, abs=1e-9) and r.ratio > 0
        assert r.meets_ratio_target == (r.ratio <= facade.FACADE_TARGET_RATIO)
        assert r.hot_path is (fastpath.hotpath is not None)
        assert np.isfinite(r.batch_cost_us_per_query) and r.batch_facade_ms > 0 and r.batch_direct_ms > 0
    assert max(r.recall_at_10 for r in results) > 0.9  # 400 points, ef 50: the graphs find their neighbours
    table = facade.format_table(results)
    assert table.count("\n") == len(results) + 1
    facade.main(["--dims", "8", "--n", "300", "--queries", "30", "--rounds", "1", "--backend", natives[0],
                 "--json", str(tmp_path / "f.json")])
    out = capsys.readouterr().out
    assert f"| {natives[0]} | 8 |" in out and "the facade's C hot path: " in out
    assert json.loads((tmp_path / "f.json").read_text())[0]["backend"] == natives[0]


def test_facade_benchmark_refuses_a_backend_without_a_library_call():
    with pytest.raises(ValueError, match="no direct library call"):
        facade.run(dims=(8,), n=100, n_queries=10, rounds=1, backends=["numpy"])


def test_exact_neighbours_are_the_cosine_top_k():
    rng = np.random.default_rng(3)
    base, queries = rng.standard_normal((50, 6)), rng.standard_normal((4, 6))
    top = facade.exact_neighbours(base, queries, 3)
    cos = (queries @ base.T) / np.linalg.norm(queries, axis=1)[:, None] / np.linalg.norm(base, axis=1)[None, :]
    assert top.tolist() == np.argsort(-cos, axis=1)[:, :3].astype(str).tolist()
