"""Helpers shared by the test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import numpy as np

import ruvector_lab as rl


def available_backends() -> list[str]:
    """Every backend that works on this machine (numpy at least)."""
    return rl.Runtime.available_names()


def clustered(n: int, dim: int, clusters: int = 20, seed: int = 0, spread: float = 0.3) -> np.ndarray:
    """Gaussian clusters around random centres: embedding-like structure with real neighbourhoods."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    assign = rng.integers(0, clusters, n)
    return (centres[assign] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def requires_wasm(*modules: str):
    """A pytest mark that skips when RuVector's WASM modules cannot be compiled here (the reason is shown),
    except under CI, where a missing module is a set-up failure and raises."""
    import os

    import pytest

    from ruvector_lab.errors import BackendUnavailableError
    from ruvector_lab.wasm import loader

    try:
        for module in modules or (loader.RVF_WASM,):
            loader.compiled(module)
    except BackendUnavailableError as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI must have the wasm modules (make setup-npm): {exc}") from None
        return pytest.mark.skip(reason=f"wasm modules unavailable: {exc}")
    return pytest.mark.skipif(False, reason="wasm modules available")
