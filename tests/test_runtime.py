"""Runtime detection, forcing and reporting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import available_backends

import ruvector_lab as rl
from ruvector_lab.backends import detection_order, names, spec


def test_available_lists_every_backend_with_true_or_a_reason():
    available = rl.Runtime.available()
    assert list(available) == names()
    assert available["numpy"] is True
    for name, state in available.items():
        assert state is True or (isinstance(state, str) and name in state), (name, state)


def test_detection_keeps_the_first_working_backend_in_adr_order():
    rt = rl.Runtime.initialize()
    available = rl.Runtime.available()
    first = next(name for name in detection_order() if available[name] is True)
    assert rt.backend == first
    assert rt.tier == spec(first).tier
    tiers = [spec(name).tier for name in detection_order()]
    assert tiers == sorted(tiers, key=["native", "wasm", "fallback"].index), "ADR-006: native, then wasm, then fallback"
    assert rl.Runtime.initialize() is rt, "the runtime is a singleton"


@pytest.mark.parametrize("backend", available_backends())
def test_forcing_by_argument_replaces_the_singleton(backend):
    rt = rl.Runtime.initialize(backend=backend)
    assert rt.backend == backend and rl.Runtime.current() is rt
    index = rl.HnswIndex(rl.HnswConfig(dimensions=4))
    assert index.backend == backend


def test_unknown_backend_names_what_is_available():
    with pytest.raises(rl.BackendUnavailableError, match=r"unknown backend 'annoy'.*available here: .*numpy"):
        rl.Runtime.initialize(backend="annoy")
    with pytest.raises(rl.BackendUnavailableError, match="unknown backend"):
        rl.HnswIndex(rl.HnswConfig(dimensions=4), backend="annoy")


def test_unavailable_backend_says_why(monkeypatch):
    from ruvector_lab import runtime

    monkeypatch.setitem(runtime._probe_results, "hnswlib", "backend 'hnswlib' needs the Python package 'hnswlib'")
    with pytest.raises(rl.BackendUnavailableError, match=r"'hnswlib' is unavailable: .*needs the Python package"):
        rl.Runtime.initialize(backend="hnswlib")
    assert rl.Runtime.available()["hnswlib"].startswith("backend 'hnswlib' needs")


def test_a_backend_whose_probe_fails_is_skipped(monkeypatch):
    from ruvector_lab import runtime

    for name in detection_order()[:-1]:  # every backend but the fallback
        monkeypatch.setitem(runtime._probe_results, name, f"backend {name!r} failed its probe: test")
    assert rl.Runtime.initialize().backend == "numpy"
    assert rl.Runtime.initialize().tier == "fallback"


def _run_forced(env_value: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, ruvector_lab as rl\n"
        "try:\n"
        "    rt = rl.Runtime.initialize()\n"
        "    print(json.dumps({'backend': rt.backend, 'tier': rt.tier}))\n"
        "except rl.BackendUnavailableError as exc:\n"
        "    print(json.dumps({'error': str(exc)}))\n"
    )
    env = {**os.environ, "RUVECTOR_LAB_BACKEND": env_value}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=True)


@pytest.mark.parametrize("backend", available_backends())
def test_environment_variable_forces_each_backend_in_a_fresh_process(backend):
    out = json.loads(_run_forced(backend).stdout.strip().splitlines()[-1])
    assert out == {"backend": backend, "tier": rl.Runtime.tier_of(backend)}


def test_environment_variable_with_unknown_name_fails_clearly():
    out = json.loads(_run_forced("no-such-backend").stdout.strip().splitlines()[-1])
    assert "unknown backend 'no-such-backend'" in out["error"] and "numpy" in out["error"]


def test_choice_is_logged_once(caplog):
    caplog.set_level("INFO", logger="ruvector_lab.runtime")
    rl.Runtime.initialize()
    rl.Runtime.initialize()
    assert sum("using backend" in rec.getMessage() for rec in caplog.records) == 1


def test_tier_of_unknown_name():
    with pytest.raises(rl.BackendUnavailableError):
        rl.Runtime.tier_of("annoy")


def test_top_level_names_of_the_design_resolve_lazily():
    import ruvector_lab

    for name in ("Embedder", "ModelCache", "QuantizationConfig", "quantize", "dequantize"):
        assert callable(getattr(ruvector_lab, name)), name
    assert ruvector_lab.learning.__name__ == "ruvector_lab.learning"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ruvector_lab.nope  # noqa: B018
    cfg = rl.QuantizationConfig(kind="scalar")
    import numpy as np

    v = np.linspace(-1, 1, 16, dtype=np.float32)
    assert np.abs(rl.dequantize(rl.quantize(v, cfg), cfg) - v).max() <= 2 / 255 + 1e-6
