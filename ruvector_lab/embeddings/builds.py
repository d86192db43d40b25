"""The ONNX models an Embedder runs, built from pinned files and kept in the ModelCache.

fp32 is rebuilt from the safetensors weights (exact); int8 is onnxruntime's dynamic per-channel quantization of
the fp32 model. Each build is cached under a key naming its inputs (weights sha256, graph version, and for int8
the quantization recipe and onnxruntime version), so a changed input never reuses an old build.
"""

from __future__ import annotations

from ..errors import ModelError
from . import onnx_graph
from .cache import ModelCache
from .models import ModelSpec
from .safetensors import read_safetensors

PRECISIONS = ("fp32", "int8")


def model_key(spec: ModelSpec, precision: str) -> str:
    """The cache key of the built ONNX model of ``spec`` at ``precision``."""
    key = f"built:{spec.name}/{precision}.onnx?weights={spec.weights.sha256[:16]}&graph={onnx_graph.GRAPH_VERSION}"
    if precision == "int8":
        import onnxruntime

        key += f"&quant={onnx_graph.QUANT_VERSION}&onnxruntime={onnxruntime.__version__}"
    return key


def model_bytes(spec: ModelSpec, precision: str, cache: ModelCache, *, keep_in_memory: bool = True) -> bytes:
    """Return the serialized ONNX model of ``spec`` at ``precision``, building and caching it on first use."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if precision == "fp32":
        def build() -> bytes:
            # the 90 MB of weights are an input only: read them without keeping them in the memory cache
            weights = read_safetensors(cache.fetch(spec.weights, keep_in_memory=False))
            return onnx_graph.build_fp32_model(weights, spec.bert)
    else:
        def build() -> bytes:
            return onnx_graph.quantize_int8(model_bytes(spec, "fp32", cache, keep_in_memory=False))
    return cache.get_or_build(model_key(spec, precision), build, keep_in_memory=keep_in_memory)
