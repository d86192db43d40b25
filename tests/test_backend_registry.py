"""The backend registry: one record per backend, and every reader of backends goes through it."""

from __future__ import annotations

import importlib
from importlib import metadata

import numpy as np
import pytest
from helpers import available_backends

import ruvector_lab as rl
from ruvector_lab.backends import SPECS, BackendSpec, class_for, detection_order, distributions, names, spec
from ruvector_lab.backends.base import IndexBackend, MemoryLayout
from ruvector_lab.bench import env
from ruvector_lab.errors import BackendUnavailableError, QuantizationError
from ruvector_lab.quantization.config import QuantizationConfig

AVAILABLE = rl.Runtime.available()
KINDS = ("scalar", "int4", "binary", "product", "rabitq")


def test_names_are_unique_and_every_record_is_well_formed():
    assert len(names()) == len(set(names()))
    for record in SPECS:
        assert record.tier in ("native", "wasm", "fallback")
        assert ":" in record.float_class and (record.quantized_class is None or ":" in record.quantized_class)
        assert bool(record.codecs) == (record.quantized_class is not None), record.name
        assert set(record.codecs) <= set(KINDS), record.name
        assert all(m.startswith("ruvector_lab.backends.") for m in record.modules)


def test_detection_order_is_explicit_and_follows_the_adr_tiers():
    order = detection_order()
    assert order[:3] == ["faiss", "hnswlib", "ruvector"], "measured default order of the native tier"
    assert order[-2:] == ["wasm", "numpy"]
    ranks = [spec(n).detection_rank for n in order]
    assert ranks == sorted(ranks)
    tiers = [spec(n).tier for n in order]
    assert tiers == sorted(tiers, key=["native", "wasm", "fallback"].index)


def test_a_record_not_in_detection_is_still_known_but_never_chosen(monkeypatch):
    import ruvector_lab.backends as registry

    extra = BackendSpec("numpy-explicit", "fallback", "ruvector_lab.backends.numpy_backend:NumpyBackend")
    monkeypatch.setattr(registry, "SPECS", (*registry.SPECS, extra))
    monkeypatch.setitem(registry._BY_NAME, extra.name, extra)
    assert "numpy-explicit" in registry.names()
    assert "numpy-explicit" not in registry.detection_order()


def test_unknown_names_raise_listing_the_known():
    with pytest.raises(BackendUnavailableError, match="known backends: faiss, hnswlib"):
        spec("no-such")
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        class_for("no-such", rl.HnswConfig(dimensions=4))


@pytest.mark.parametrize("name", available_backends())
def test_each_available_record_names_classes_that_match_it(name):
    record = spec(name)
    float_cls = class_for(name, rl.HnswConfig(dimensions=8))
    assert issubclass(float_cls, IndexBackend)
    assert float_cls.name == name and float_cls.graph in ("hnsw", "flat")
    assert rl.Runtime.tier_of(name) == record.tier
    for module in record.modules:
        importlib.import_module(module)
    for dist in record.distributions:
        assert metadata.version(dist), dist


@pytest.mark.parametrize("name", available_backends())
@pytest.mark.parametrize("kind", KINDS)
def test_quantized_dispatch_follows_the_record(name, kind):
    record = spec(name)
    config = rl.HnswConfig(dimensions=16, metric="cosine", quantization=QuantizationConfig(kind=kind, m=4)
                           if kind == "product" else QuantizationConfig(kind=kind))
    if kind not in record.codecs:
        with pytest.raises(BackendUnavailableError, match=f"does not serve '{kind}'") as info:
            class_for(name, config)
        for other in SPECS:
            assert (other.name in str(info.value).split("backends that do:")[1]) == (kind in other.codecs)
        return
    try:
        cls = class_for(name, config)
    except QuantizationError:  # the class's own limit for this metric or shape, not the registry's
        return
    assert cls.name == name
    index = rl.HnswIndex(config, backend=name)
    try:
        x = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
        index.insert_batch([str(i) for i in range(300)], x)
        assert index.stats().vector_count == 300
    finally:
        index.close()


@pytest.mark.parametrize("name", available_backends())
def test_every_backend_states_its_memory_layout(name):
    layout = class_for(name, rl.HnswConfig(dimensions=32, m=16)).memory_layout(rl.HnswConfig(dimensions=32, m=16))
    assert isinstance(layout, MemoryLayout)
    assert layout.vectors >= 4 * 32
    assert (layout.graph > 0) == (class_for(name, rl.HnswConfig(dimensions=32)).graph == "hnsw")


@pytest.mark.parametrize("name", [n for n in available_backends() if spec(n).tier == "native"])
def test_native_backends_give_the_raw_library_call_for_the_facade_benchmark(name):
    x = np.random.default_rng(3).standard_normal((200, 8)).astype(np.float32)
    index = rl.HnswIndex(rl.HnswConfig(dimensions=8, ef_search=64), backend=name)
    try:
        index.insert_batch([str(i) for i in range(200)], x)
        direct = index.raw_backend.direct_search(5, 64)
        assert direct is not None
        assert direct(x[7]) is not None  # the library's own return value, whatever its shape
    finally:
        index.close()


def test_environment_records_every_backend_distribution():
    assert set(distributions()) <= set(env.LIBRARIES)
    assert set(env.library_versions()) == set(env.LIBRARIES)


@pytest.mark.parametrize("profile", ["params.yaml", "pipelines/params-full.yaml", "pipelines/params-tiny.yaml"])
def test_every_params_profile_measures_every_backend(profile):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    listed = yaml.safe_load((root / profile).read_text(encoding="utf-8"))["bench"]["backends"]
    assert listed == names(), f"{profile}: bench.backends must list the registry's backends in its order"
