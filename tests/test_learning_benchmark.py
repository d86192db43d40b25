"""The learning benchmark runs end to end at a tiny size (timings are reported, never asserted)."""

from __future__ import annotations

import json

import pytest

from ruvector_lab.errors import InvalidParameterError
from ruvector_lab.learning.benchmark import TARGETS, main, run_benchmarks, time_calls


def test_run_benchmarks_measures_every_operation():
    timings = run_benchmarks(patterns=200, dimensions=16, runs=8, backend="numpy")
    assert [t.name for t in timings] == list(TARGETS)
    for t in timings:
        assert 0 < t.p50 <= t.p95 and t.runs >= 5 and t.target == TARGETS[t.name]
        assert t.meets_target == (t.p50 < t.target)


def test_time_calls_counts_calls_and_checks_runs():
    calls = []
    p50, p95 = time_calls(lambda: calls.append(1), runs=10, warmup=2)
    assert len(calls) == 12 and 0 <= p50 <= p95
    with pytest.raises(InvalidParameterError):
        time_calls(lambda: None, runs=0)


def test_main_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--patterns", "100", "--dimensions", "8", "--runs", "5", "--backend", "numpy",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {d["name"] for d in data} == set(TARGETS)
    assert "apply_rank8_one_vector" in capsys.readouterr().out
