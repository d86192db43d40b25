"""The ONNX models an Embedder runs, built from pinned files and kept in the ModelCache.

Two graphs per precision. ``plain`` is the graph :mod:`.onnx_graph` writes: fp32 rebuilt from the safetensors
weights (exact), int8 its SmoothQuant-balanced (:mod:`.smoothing`) dynamic per-channel quantization. ``fused`` is
the same after onnxruntime's transformer optimizer (:mod:`.fusion`: fused attention, bias + GELU); its int8 is
quantized from the fused fp32 graph. :func:`load_model` runs the fused graph where it builds and passes its checks
and falls back to the plain one, saying why. Each build is cached under a key naming its inputs (weights sha256,
graph version, fusion recipe, quantization recipe, onnxruntime version where its tools made it), so a changed
input never reuses an old build.

A cache entry's checksum only proves that the file is the one its writer stored, so a build is also checked
against what it must compute (:func:`probe_problem`): the pinned probe text of its :class:`ModelSpec` is run
through it and the result compared with the sentence-transformers vector pinned in code, within a band per
precision. An entry that fails (an int8 graph under the fp32 key, another model, a stale build) is reported,
removed and rebuilt; a fresh build that fails raises :class:`~ruvector_lab.errors.CacheError`. The check runs
when an entry is first loaded or built in a process (an onnxruntime session on one thread, about 0.2 s).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import CacheError, ModelError
from . import fusion, onnx_graph, smoothing
from .cache import ModelCache
from .calibration import CALIBRATION_TEXTS
from .models import ModelSpec
from .safetensors import read_safetensors

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: the graphs a model is built as; ``auto`` (for :func:`load_model`) is fused where possible, else plain
GRAPHS = ("fused", "plain")

#: how far the probe's pinned components may be from the reference (largest absolute difference), per precision,
#: as (exclusive low, inclusive high). fp32 reproduces sentence-transformers (measured 2e-7 plain and fused; 1e-4
#: leaves room for other CPUs and onnxruntime versions). int8 is near it (measured 0.005-0.006 with SmoothQuant,
#: 0.011 without) but never inside the fp32 band: an output that close is the fp32 graph stored under the int8 key.
PROBE_BANDS: dict[str, tuple[float, float]] = {"fp32": (0.0, 1e-4), "int8": (1e-4, 0.05)}


def _feed(token_ids: list[list[int]] | list[tuple[int, ...]], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-padded model inputs for a few token id lists (build-time use; the Embedder has its tokenizer's)."""
    seq = max(len(ids) for ids in token_ids)
    ids = np.full((len(token_ids), seq), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, row_ids in enumerate(token_ids):
        ids[row, : len(row_ids)] = row_ids
        mask[row, : len(row_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def probe_problem(spec: ModelSpec, precision: str, blob: bytes) -> str | None:
    """Run the pinned probe of ``spec`` through the ONNX model ``blob``; None if it computes what a ``precision``
    build must, else a sentence saying how it differs. A spec without a pinned probe is not checked (None).

    The probe runs padded, in one batch behind a text of twice its length, so a graph that lets padding leak into
    attention or pooling (a fused attention given the wrong mask) fails the check as well."""
    probe = spec.probe
    if probe is None:
        return None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # two short texts: threads would cost more to start than they save
    opts.log_severity_level = 3
    longer = tuple(probe.token_ids[:-1]) * 2 + (probe.token_ids[-1],)
    try:
        session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        out = session.run([onnx_graph.OUTPUT], _feed([longer, probe.token_ids]))[0]
    except Exception as exc:  # onnxruntime raises its own types for a graph it cannot load or run
        return f"onnxruntime cannot run it: {str(exc)[:200]}"
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (2, spec.dimensions) or not np.isfinite(out).all():
        return f"its output has shape {np.shape(out)} or is not finite; {spec.name} gives {spec.dimensions} numbers"
    vector = out[1]
    head = np.asarray(probe.head, dtype=np.float64)
    error = float(np.abs(vector[: head.size] - head).max())
    low, high = PROBE_BANDS[precision]
    if low < error <= high or (low == 0.0 and error <= high):
        return None
    looks = next((f" (what the {p} build computes)" for p, (lo, hi) in PROBE_BANDS.items()
                  if p != precision and lo < error <= hi), "")
    return (f"its vector of the probe text {probe.text!r}, padded in a batch, is {error:.2g} from the pinned "
            f"reference, outside the {precision} band ({low:g}, {high:g}]{looks}")


def model_key(spec: ModelSpec, precision: str, graph: str = "plain") -> str:
    """The cache key of the built ONNX model of ``spec`` at ``precision`` as ``graph`` (``fused`` or ``plain``)."""
    _check_choice(precision, graph)
    key = f"built:{spec.name}/{precision}.onnx?weights={spec.weights.sha256[:16]}&graph={onnx_graph.GRAPH_VERSION}"
    if graph == "fused" or precision == "int8":
        import onnxruntime  # its optimizer and quantizer made the bytes

        if graph == "fused":
            key += f"&fusion={fusion.FUSION_VERSION}"
        if precision == "int8":
            key += f"&quant={onnx_graph.QUANT_VERSION}"
        key += f"&onnxruntime={onnxruntime.__version__}"
    return key


def model_bytes(spec: ModelSpec, precision: str, cache: ModelCache, *, graph: str = "plain",
                keep_in_memory: bool = True) -> bytes:
    """Return the serialized ONNX model of ``spec`` at ``precision`` as ``graph``, building and caching it on first
    use. Raise :class:`ModelError` when the fused graph cannot be made here (:func:`load_model` falls back)."""
    _check_choice(precision, graph)
    if precision == "fp32" and graph == "plain":
        def build() -> bytes:
            # the 90 MB of weights are an input only: read them without keeping them in the memory cache
            weights = read_safetensors(cache.fetch(spec.weights, keep_in_memory=False))
            return onnx_graph.build_fp32_model(weights, spec.bert)
    elif precision == "fp32":
        def build() -> bytes:
            return fusion.fuse(model_bytes(spec, "fp32", cache, keep_in_memory=False), spec.bert)[0]
    else:
        def build() -> bytes:
            fp32 = model_bytes(spec, "fp32", cache, graph=graph, keep_in_memory=False)
            return onnx_graph.quantize_int8(smoothing.smooth(fp32, _calibration_feeds(spec, cache),
                                                             skip=onnx_graph.keeps_fp32))
    return cache.get_or_build(model_key(spec, precision, graph), build, keep_in_memory=keep_in_memory,
                              check=functools.partial(probe_problem, spec, precision))


@dataclass(frozen=True)
class BuiltModel:
    """The ONNX model an Embedder runs and how it was chosen."""

    blob: bytes
    precision: str
    #: ``fused`` or ``plain``: the graph in ``blob``
    graph: str
    #: the graph that was asked for (``auto``, ``fused`` or ``plain``)
    requested: str
    #: why the fused graph is not the one running, when ``auto`` fell back to plain (else None)
    fallback_reason: str | None = None
    #: operators onnxruntime's optimizer fused, by type (empty for the plain graph)
    fused_ops: dict[str, int] = field(default_factory=dict)


def load_model(spec: ModelSpec, precision: str, cache: ModelCache, graph: str = "auto") -> BuiltModel:
    """The model of ``spec`` at ``precision``: ``graph='auto'`` is the fused graph if it builds and passes its
    probe here, else the plain graph with the reason recorded; ``'fused'`` raises instead of falling back."""
    if graph != "auto":
        _check_choice(precision, graph)
    if graph in ("auto", "fused"):
        try:
            blob = model_bytes(spec, precision, cache, graph="fused")
            return BuiltModel(blob, precision, "fused", graph, None, fused_operators(blob))
        except (ModelError, CacheError) as exc:
            if graph == "fused":
                raise
            log.warning("the fused %s graph of %s is not used, the plain one runs: %s", precision, spec.name, exc)
            reason = str(exc)
    else:
        reason = None
    return BuiltModel(model_bytes(spec, precision, cache, graph="plain"), precision, "plain", graph, reason)


def fused_operators(blob: bytes) -> dict[str, int]:
    """Count the onnxruntime contrib (``com.microsoft``) operators of the serialized model ``blob`` by type."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load_from_string(blob).graph.node:
        if node.domain == "com.microsoft":
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@functools.lru_cache(maxsize=4)
def _calibration_tokens(tokenizer_json: bytes, max_length: int) -> tuple[tuple[int, ...], ...]:
    from .tokenizer import BertTokenizer

    return tuple(tuple(ids) for ids in BertTokenizer(tokenizer_json, max_length).token_ids(list(CALIBRATION_TEXTS)))


def _calibration_feeds(spec: ModelSpec, cache: ModelCache) -> list[dict[str, np.ndarray]]:
    """The calibration texts as model inputs: one text per feed, so no padding enters the activation ranges."""
    tokens = _calibration_tokens(cache.fetch(spec.tokenizer), spec.max_seq_length)
    return [_feed([ids]) for ids in tokens]


def _check_choice(precision: str, graph: str) -> None:
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if graph not in GRAPHS:
        raise ModelError(f"unknown graph {graph!r}; choose one of {list(GRAPHS)} (or 'auto')")
