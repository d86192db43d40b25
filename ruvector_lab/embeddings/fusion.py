"""The fused graph: onnxruntime's transformer optimizer run offline over the exact fp32 graph.

:func:`~.onnx_graph.build_fp32_model` writes its nodes in the order of a PyTorch export (mask unsqueezed before its
cast, attention scores divided by sqrt(head size), GELU dividing by sqrt(2)) so that the optimizer's BERT patterns
match: the six attention blocks become ``Attention`` (one packed QKV projection, softmax and context in one
kernel), each bias + GELU a ``BiasGelu``, and the LayerNorms onnxruntime's own. ``SkipLayerNormalization`` is left
out: its CPU kernel measured slower here than the Add + LayerNormalization it replaces (13 ms against 7 ms of a
124 ms batch of 32 at one thread).

The optimizer is part of onnxruntime but imports ``sympy`` for shape inference; without it, or when a pattern no
longer matches in another onnxruntime version, :func:`fuse` raises :class:`~ruvector_lab.errors.ModelError` and
the caller keeps the unfused graph (see :mod:`.builds`).
"""

from __future__ import annotations

import logging

from ..errors import ModelError
from .models import BertSpec

log = logging.getLogger(__name__)

#: bump when the fusion recipe changes: it is part of the cache key of every fused build
FUSION_VERSION = 1
#: the fused operators the recipe must produce, per encoder layer, for the fused graph to be worth running
EXPECTED_PER_LAYER = {"Attention": 1, "BiasGelu": 1}


def fuse(model_bytes: bytes, spec: BertSpec) -> tuple[bytes, dict[str, int]]:
    """Run onnxruntime's BERT fusions over the serialized fp32 ``model_bytes``; return the fused model and the
    count of each fused operator. Raise :class:`ModelError` if the optimizer is missing or fuses less than
    :data:`EXPECTED_PER_LAYER` per layer (a pattern that no longer matches)."""
    try:
        import onnx
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.onnx_model_bert import BertOnnxModel
    except Exception as exc:  # an onnxruntime without its transformers tools, or without sympy behind them
        raise ModelError(f"onnxruntime's transformer optimizer is not importable here: {exc}") from None
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_embed_layer_norm = False  # the embedding sum is 0.1% of the time; its fused op adds nothing
    try:
        bert = BertOnnxModel(onnx.load_from_string(model_bytes), num_heads=spec.heads, hidden_size=spec.hidden)
        bert.optimize(options)
        bert.topological_sort()
        counts = {op: n for op, n in bert.get_fused_operator_statistics().items() if n}
        if not any(entry.domain == "com.microsoft" for entry in bert.model.opset_import):
            bert.model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))  # the fused ops' domain
        fused = bert.model.SerializeToString()
    except ImportError as exc:  # sympy, needed by the optimizer's shape inference
        raise ModelError(f"onnxruntime's transformer optimizer cannot run here: {exc}") from None
    except Exception as exc:  # the optimizer raises whatever its passes raise
        raise ModelError(f"onnxruntime's transformer optimizer failed: {type(exc).__name__}: {exc}") from None
    short = {op: n for op, n in EXPECTED_PER_LAYER.items() if counts.get(op, 0) < n * spec.layers}
    if short:
        raise ModelError(f"onnxruntime's optimizer fused {counts}, fewer than {EXPECTED_PER_LAYER} per layer x "
                         f"{spec.layers} layers: the graph's patterns no longer match this onnxruntime")
    log.info("fused graph: %s", counts)
    return fused, counts
