"""The ONNX models an Embedder runs, built from pinned files and kept in the ModelCache.

fp32 is rebuilt from the safetensors weights (exact); int8 is onnxruntime's dynamic per-channel quantization of
the fp32 model. Each build is cached under a key naming its inputs (weights sha256, graph version, and for int8
the quantization recipe and onnxruntime version), so a changed input never reuses an old build.

A cache entry's checksum only proves that the file is the one its writer stored, so a build is also checked
against what it must compute (:func:`probe_problem`): the pinned probe text of its :class:`ModelSpec` is run
through it and the result compared with the sentence-transformers vector pinned in code, within a band per
precision. An entry that fails (an int8 graph under the fp32 key, another model, a stale build) is reported,
removed and rebuilt; a fresh build that fails raises :class:`~ruvector_lab.errors.CacheError`. The check runs
when an entry is first loaded or built in a process (an onnxruntime session on one thread, about 0.2 s).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import ModelError
from . import onnx_graph
from .cache import ModelCache
from .models import ModelSpec
from .safetensors import read_safetensors

PRECISIONS = ("fp32", "int8")

#: how far the probe's pinned components may be from the reference (largest absolute difference), per precision,
#: as (exclusive low, inclusive high). fp32 reproduces sentence-transformers (measured 1.0e-7; 1e-4 leaves room
#: for other CPUs and onnxruntime versions). int8 is near it (measured 0.011) but never inside the fp32 band: an
#: output that close is the fp32 graph stored under the int8 key.
PROBE_BANDS: dict[str, tuple[float, float]] = {"fp32": (0.0, 1e-4), "int8": (1e-4, 0.05)}


def probe_problem(spec: ModelSpec, precision: str, blob: bytes) -> str | None:
    """Run the pinned probe of ``spec`` through the ONNX model ``blob``; None if it computes what a ``precision``
    build must, else a sentence saying how it differs. A spec without a pinned probe is not checked (None)."""
    probe = spec.probe
    if probe is None:
        return None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one short text: threads would cost more to start than they save
    opts.log_severity_level = 3
    ids = np.asarray([probe.token_ids], dtype=np.int64)
    try:
        session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        out = session.run([onnx_graph.OUTPUT], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                                "token_type_ids": np.zeros_like(ids)})[0]
    except Exception as exc:  # onnxruntime raises its own types for a graph it cannot load or run
        return f"onnxruntime cannot run it: {str(exc)[:200]}"
    vector = np.asarray(out, dtype=np.float64).reshape(-1)
    if vector.shape != (spec.dimensions,) or not np.isfinite(vector).all():
        return f"its output has shape {np.shape(out)} or is not finite; {spec.name} gives {spec.dimensions} numbers"
    head = np.asarray(probe.head, dtype=np.float64)
    error = float(np.abs(vector[: head.size] - head).max())
    low, high = PROBE_BANDS[precision]
    if low < error <= high or (low == 0.0 and error <= high):
        return None
    looks = next((f" (what the {p} build computes)" for p, (lo, hi) in PROBE_BANDS.items()
                  if p != precision and lo < error <= hi), "")
    return (f"its vector of the probe text {probe.text!r} is {error:.2g} from the pinned reference, outside the "
            f"{precision} band ({low:g}, {high:g}]{looks}")


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
    return cache.get_or_build(model_key(spec, precision), build, keep_in_memory=keep_in_memory,
                              check=functools.partial(probe_problem, spec, precision))
