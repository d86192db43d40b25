"""Shared fixtures: the backends that work here, clustered data, a fresh runtime per test, the MiniLM reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ruvector_lab as rl


@pytest.fixture(autouse=True)
def _fresh_runtime(monkeypatch: pytest.MonkeyPatch):
    """Each test starts without a chosen backend and without a forced one from the environment."""
    monkeypatch.delenv("RUVECTOR_LAB_BACKEND", raising=False)
    rl.Runtime.reset()
    yield
    rl.Runtime.reset()


#: sentence-transformers' vectors of the test texts (scripts/make_minilm_fixture.py)
MINILM_FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="session")
def reference() -> dict:
    """The MiniLM reference: texts, the token ids sentence-transformers feeds, and its vectors (float32 array)."""
    data = json.loads(MINILM_FIXTURE.read_text(encoding="utf-8"))
    data["vectors"] = np.asarray(data["vectors"], dtype=np.float32)
    return data


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory):
    """The address of a LocalCluster of 2 single-threaded worker processes, each offering one ``measure`` resource
    (as ``bench.executor: dask`` with ``local:2`` starts), shared by the tests of a session; each worker keeps its
    datasets in a fresh cache folder (not the user's), so data travels to the workers as on a cluster."""
    distributed = pytest.importorskip("distributed")
    cache = tmp_path_factory.mktemp("dask-data-cache")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, resources={"measure": 1},
                                       dashboard_address=":0",
                                       env={"RUVECTOR_LAB_DATA_CACHE": str(cache)})
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
