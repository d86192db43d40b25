"""Shared fixtures: the backends that work here, clustered data, a fresh runtime per test."""

from __future__ import annotations

import pytest

import ruvector_lab as rl


@pytest.fixture(autouse=True)
def _fresh_runtime(monkeypatch: pytest.MonkeyPatch):
    """Each test starts without a chosen backend and without a forced one from the environment."""
    monkeypatch.delenv("RUVECTOR_LAB_BACKEND", raising=False)
    rl.Runtime.reset()
    yield
    rl.Runtime.reset()
