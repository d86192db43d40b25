"""Build the exact fp32 ONNX graph of a sentence-transformers BERT model, and its int8 quantized twin.

The graph is written node by node with ``onnx.helper`` from the safetensors weights, so no torch is needed at
run time. It is the full sentence-transformers pipeline: BERT encoder, mean pooling over the attention mask and
L2 normalisation, with the same constants (LayerNorm eps, masking with float32's lowest value, pooling clamp
1e-9, normalisation eps 1e-12) so its output matches sentence-transformers to float32 rounding.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .models import BertSpec

log = logging.getLogger(__name__)

#: bump when the graph changes: the cache key of a built model includes it, so an old build is never reused
GRAPH_VERSION = 2
#: bump when the int8 recipe changes (which MatMuls are quantized, how, the smoothing before it)
QUANT_VERSION = 2
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"


class _Graph:
    """Collects nodes and initializers, naming intermediate values uniquely."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._n}", **attrs))
        return out


def _linear(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
    # torch Linear keeps weight as [out, in]; MatMul wants [in, out]
    weight = g.const(f"{prefix}.weight_t", w[f"{prefix}.weight"].astype(np.float32).T)
    bias = g.const(f"{prefix}.bias", w[f"{prefix}.bias"].astype(np.float32))
    return g.op("Add", [g.op("MatMul", [x, weight]), bias])


def _layer_norm(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str, eps: float) -> str:
    scale = g.const(f"{prefix}.weight", w[f"{prefix}.weight"].astype(np.float32))
    bias = g.const(f"{prefix}.bias", w[f"{prefix}.bias"].astype(np.float32))
    return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def build_fp32_model(weights: dict[str, np.ndarray], spec: BertSpec) -> bytes:
    """Return the serialized fp32 ONNX model (inputs ``INPUTS``, output ``sentence_embedding`` [batch, hidden])."""
    from onnx import TensorProto, checker, helper

    needed = ("embeddings.word_embeddings.weight", f"encoder.layer.{spec.layers - 1}.output.dense.weight")
    missing = [k for k in needed if k not in weights]
    if missing:
        raise ModelError(f"weights lack {missing}: not a BERT checkpoint this builder knows")
    if spec.hidden % spec.heads:
        raise ModelError(f"hidden size {spec.hidden} is not a multiple of {spec.heads} heads")
    head_dim = spec.hidden // spec.heads
    g = _Graph()
    ids, mask, types = INPUTS

    # embeddings: word + position (0..seq-1) + token type, then LayerNorm
    word = g.op("Gather", [g.const("word_embeddings", weights["embeddings.word_embeddings.weight"]), ids], axis=0)
    # positions 0..seq-1 are the first seq rows of the position table (a Slice, no index tensor needed)
    seq_len = g.op("Shape", [ids], start=1, end=2)
    zero = g.const("zero_1d", np.array([0], np.int64))
    pos = g.op("Slice", [g.const("position_embeddings", weights["embeddings.position_embeddings.weight"]),
                         zero, seq_len, zero])
    tok = g.op("Gather", [g.const("token_type_embeddings", weights["embeddings.token_type_embeddings.weight"]),
                          types], axis=0)
    hidden = _layer_norm(g, g.op("Add", [g.op("Add", [word, pos]), tok]), weights, "embeddings.LayerNorm",
                         spec.layer_norm_eps)

    # additive attention mask as transformers makes it: (1 - mask) * float32 lowest, shape [batch, 1, 1, seq], in
    # the node order of a PyTorch export (unsqueeze, cast, sub, mul), which onnxruntime's attention fusion matches
    mask_4d = g.op("Unsqueeze", [g.op("Unsqueeze", [mask, g.const("axes_1", np.array([1], np.int64))]),
                                 g.const("axes_2", np.array([2], np.int64))])
    lowest = g.const("f32_lowest", np.array(np.finfo(np.float32).min, np.float32))
    inverted = g.op("Sub", [g.const("one_f32", np.array(1.0, np.float32)),
                            g.op("Cast", [mask_4d], to=TensorProto.FLOAT)])
    additive = g.op("Mul", [inverted, lowest])

    split_heads = g.const("split_heads_shape", np.array([0, 0, spec.heads, head_dim], np.int64))
    merge_heads = g.const("merge_heads_shape", np.array([0, 0, spec.hidden], np.int64))
    scale = g.const("attention_scale", np.array(math.sqrt(head_dim), np.float32))
    sqrt_two = g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    half = g.const("half_f32", np.array(0.5, np.float32))

    for i in range(spec.layers):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [_linear(g, hidden, weights, f"{p}.attention.self.query"),
                                                split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [_linear(g, hidden, weights, f"{p}.attention.self.key"),
                                                split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [_linear(g, hidden, weights, f"{p}.attention.self.value"),
                                                split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), additive])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attn = _linear(g, context, weights, f"{p}.attention.output.dense")
        attn = _layer_norm(g, g.op("Add", [attn, hidden]), weights, f"{p}.attention.output.LayerNorm",
                           spec.layer_norm_eps)
        inter = _linear(g, attn, weights, f"{p}.intermediate.dense")
        # exact GELU (erf form), as BERT's "gelu" and in an export's node order (onnxruntime's GELU fusion)
        gelu = g.op("Mul", [g.op("Mul", [inter, g.op("Add", [g.op("Erf", [g.op("Div", [inter, sqrt_two])]),
                                                              "one_f32"])]), half])
        out = _linear(g, gelu, weights, f"{p}.output.dense")
        hidden = _layer_norm(g, g.op("Add", [out, attn]), weights, f"{p}.output.LayerNorm", spec.layer_norm_eps)

    # mean pooling over real tokens: sum(h * mask) / clamp(sum(mask), 1e-9), then x / max(||x||, 1e-12)
    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)
    mask_3d = g.op("Unsqueeze", [mask_f, "axes_2"])
    axis_1 = "axes_1"
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, mask_3d]), axis_1], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [mask_3d, axis_1], keepdims=0),
                          g.const("pool_eps", np.array(1e-9, np.float32))])
    pooled = g.op("Div", [summed, counts])
    norm = g.op("Max", [g.op("ReduceL2", [pooled], axes=[-1], keepdims=1),
                        g.const("norm_eps", np.array(1e-12, np.float32))])
    g.nodes.append(helper.make_node("Div", [pooled, norm], [OUTPUT], name="normalize"))

    graph = helper.make_graph(
        g.nodes, "sentence_embedding",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in INPUTS],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", spec.hidden])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ruvector-lab", producer_version=str(GRAPH_VERSION))
    model.ir_version = 8  # the lowest IR that opset 17 needs: readable by any recent onnxruntime
    checker.check_model(model)
    return model.SerializeToString()


def keeps_fp32(weight: str) -> bool:
    """True for the weights whose MatMuls the int8 build leaves in fp32: the feed-forward down-projections. Their
    inputs (after GELU) are one-sided and long-tailed, so one uint8 scale per tensor costs most of the int8 error
    (mean cosine to sentence-transformers 0.992 with them quantized, 0.996 without), and SmoothQuant does not
    help them (it made their error larger)."""
    return weight.endswith(".output.dense.weight_t") and ".attention." not in weight


def quantize_int8(fp32_model: bytes) -> bytes:
    """Dynamic int8 quantization of ``fp32_model`` with onnxruntime's quantizer; return the serialized model.

    Weights of every MatMul (and fused Attention) by a constant weight are int8 per output channel, activations
    uint8 per tensor at run time, except the MatMuls :func:`keeps_fp32` names. The caller smooths the model first
    (:mod:`.smoothing`), which is what brings the per-tensor activation scales close to fp32's answers.

    Weights use 7 of their 8 bits (``reduce_range``): x86 CPUs without VNNI multiply uint8 by int8 with
    ``vpmaddubsw``, which saturates pairs of products at 16 bits; with full-range weights the smoothed build had
    mean cosine 0.986 to sentence-transformers (0.9986 with 7-bit weights), and uint8 weights were 7-17% slower
    here. A cached build runs on whatever CPU loads it, so the recipe must be safe on the oldest.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(fp32_model)
    keep_fp32 = [n.name for n in model.graph.node if n.op_type == "MatMul" and keeps_fp32(n.input[1])]
    with tempfile.TemporaryDirectory(prefix="ruvector-quant-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32_model)
        try:
            # DefaultTensorType: ONNX's shape inference cannot type the outputs of contrib ops (fused Attention)
            quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8, reduce_range=True,
                             op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=keep_fp32,
                             extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        except Exception as exc:  # the quantizer raises whatever its passes raise
            raise ModelError(f"onnxruntime's quantizer failed: {type(exc).__name__}: {exc}") from None
        log.info("quantized %d-byte fp32 model to %d bytes (int8 per-channel; %d MatMuls kept fp32)",
                 len(fp32_model), dst.stat().st_size, len(keep_fp32))
        return dst.read_bytes()
