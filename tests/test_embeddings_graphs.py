"""The graphs an Embedder runs: onnxruntime's fused graph (and the plain fallback, with its reason), the
SmoothQuant step of the int8 build, and the session settings info() reports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ruvector_lab.embeddings import Embedder, ModelCache, builds, default_cache, onnx_graph, smoothing
from ruvector_lab.embeddings.embedder import DISABLED_OPTIMIZERS, default_spin
from ruvector_lab.embeddings.models import MINILM_L6_V2
from ruvector_lab.errors import InvalidParameterError, ModelError


def _cosines(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.sum(got * ref, axis=1) / np.linalg.norm(got, axis=1)


@pytest.mark.parametrize("graph", ["fused", "plain"])
def test_both_fp32_graphs_match_sentence_transformers(reference, graph):
    with Embedder(precision="fp32", threads=1, graph=graph) as emb:
        info = emb.info()["graph"]
        assert info["running"] == graph and info["requested"] == graph and info["fallback_reason"] is None
        got = emb.embed_batch(reference["texts"])
    assert np.abs(got - reference["vectors"]).max() <= 1e-5


@pytest.mark.parametrize("graph", ["fused", "plain"])
def test_both_int8_graphs_meet_the_parity_bar(reference, graph):
    with Embedder(precision="int8", threads=1, graph=graph) as emb:
        cos = _cosines(emb.embed_batch(reference["texts"]), reference["vectors"])
    assert cos.mean() >= 0.995 and cos.min() >= 0.99


def test_fused_graph_holds_the_fused_operators():
    fp32 = builds.model_bytes(MINILM_L6_V2, "fp32", default_cache(), graph="fused")
    int8 = builds.model_bytes(MINILM_L6_V2, "int8", default_cache(), graph="fused")
    layers = MINILM_L6_V2.bert.layers
    assert builds.fused_operators(fp32) == {"Attention": layers, "BiasGelu": layers}
    assert builds.fused_operators(int8) == {"BiasGelu": layers, "QAttention": layers}
    assert builds.fused_operators(builds.model_bytes(MINILM_L6_V2, "fp32", default_cache())) == {}


def test_auto_runs_the_fused_graph_and_says_so():
    with Embedder(precision="fp32", threads=1) as emb:
        info = emb.info()
    assert info["graph"] == {"running": "fused", "requested": "auto",
                             "fused_operators": {"Attention": 6, "BiasGelu": 6}, "fallback_reason": None}


def test_without_the_optimizer_auto_falls_back_to_plain_and_fused_raises(tmp_path):
    """Where onnxruntime's transformer tools cannot run (here: sympy, which they import, is missing), 'auto' runs
    the plain graph and records why; 'fused' raises ModelError. Real builds, in a child process."""
    cache = ModelCache(tmp_path / "cache")
    for pin in (MINILM_L6_V2.tokenizer, MINILM_L6_V2.weights):
        cache.set(pin.key, default_cache().fetch(pin, keep_in_memory=False), keep_in_memory=False)
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["sympy"] = None  # import sympy now raises ImportError, as where it is not installed
        from ruvector_lab.embeddings import Embedder, ModelCache
        from ruvector_lab.errors import ModelError
        cache = ModelCache({str(tmp_path / "cache")!r})
        with Embedder(precision="fp32", threads=1, cache=cache) as emb:
            info = emb.info()["graph"]
            vector = emb.embed("The quick brown fox jumps over the lazy dog.")
        try:
            Embedder(precision="fp32", threads=1, cache=cache, graph="fused")
            fused = "built"
        except ModelError as exc:
            fused = str(exc)
        print(json.dumps({{"info": info, "fused": fused, "head": [float(x) for x in vector[:4]]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["info"]["running"] == "plain" and got["info"]["requested"] == "auto"
    assert "optimizer" in got["info"]["fallback_reason"] and "sympy" in got["info"]["fallback_reason"]
    assert "sympy" in got["fused"]
    np.testing.assert_allclose(got["head"], MINILM_L6_V2.probe.head[:4], atol=1e-5)


def test_smoothing_keeps_the_function_of_the_graph(reference):
    """SmoothQuant rescales activations and weights against each other: the fp32 graph it returns computes the same
    vectors (to float rounding); only its int8 quantization changes."""
    import onnxruntime as ort

    cache = default_cache()
    plain = builds.model_bytes(MINILM_L6_V2, "fp32", cache)
    smoothed = smoothing.smooth(plain, builds._calibration_feeds(MINILM_L6_V2, cache), skip=onnx_graph.keeps_fp32)
    assert smoothed != plain
    runs = []
    for blob in (plain, smoothed):
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        runs.append(session.run([onnx_graph.OUTPUT], builds._feed(reference["token_ids"][:12]))[0])
    assert np.abs(runs[0] - runs[1]).max() <= 1e-5


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5, 2.0])
def test_smoothing_alpha_outside_the_open_interval_is_refused(alpha):
    with pytest.raises(ModelError, match="alpha"):
        smoothing.smooth(b"unused", [], alpha=alpha)


def test_down_projections_are_the_weights_kept_in_fp32():
    assert onnx_graph.keeps_fp32("encoder.layer.3.output.dense.weight_t")
    assert not onnx_graph.keeps_fp32("encoder.layer.3.attention.output.dense.weight_t")
    assert not onnx_graph.keeps_fp32("encoder.layer.3.intermediate.dense.weight_t")


def test_session_settings_are_reported():
    with Embedder(precision="int8", threads=2) as two, Embedder(precision="int8", threads=1) as one:
        assert two.info()["session_options"]["intra_op_allow_spinning"] == "0"
        assert one.info()["session_options"]["intra_op_allow_spinning"] == "1"
        assert two.info()["session_options"]["disabled_optimizers"] == list(DISABLED_OPTIMIZERS)
    with Embedder(precision="int8", threads=2, spin=True) as spinning:
        assert spinning.spin and spinning.info()["session_options"]["intra_op_allow_spinning"] == "1"
    assert default_spin(1) and not default_spin(2)


@pytest.mark.parametrize(("kwargs", "match"), [({"graph": "fast"}, "graph"), ({"graph": None}, "graph"),
                                               ({"spin": 1}, "spin"), ({"spin": "yes"}, "spin")])
def test_bad_graph_and_spin_are_refused(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        Embedder(threads=1, **kwargs)


def test_model_key_names_graph_and_tools():
    fused = builds.model_key(MINILM_L6_V2, "fp32", "fused")
    assert "fusion=" in fused and "onnxruntime=" in fused
    assert fused != builds.model_key(MINILM_L6_V2, "fp32", "plain")
    assert "quant=" in builds.model_key(MINILM_L6_V2, "int8", "plain")
    with pytest.raises(ModelError, match="graph"):
        builds.model_key(MINILM_L6_V2, "fp32", "auto")


def test_padded_probe_accepts_the_build_and_names_a_wrong_one():
    """The probe runs padded in a batch behind a longer text; the fp32 build passes it, the int8 build stored under
    the fp32 key fails it with a sentence that says how the probe was run."""
    cache = default_cache()
    assert builds.probe_problem(MINILM_L6_V2, "fp32", builds.model_bytes(MINILM_L6_V2, "fp32", cache)) is None
    problem = builds.probe_problem(MINILM_L6_V2, "fp32", builds.model_bytes(MINILM_L6_V2, "int8", cache))
    assert problem is not None and "padded in a batch" in problem and "int8" in problem
