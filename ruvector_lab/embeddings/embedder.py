"""Embedder: text in, L2-normalised sentence vectors out, all-MiniLM-L6-v2 on onnxruntime.

The pipeline is sentence-transformers' own (wordpiece tokens truncated at 256, BERT, mean pooling over the
attention mask, L2 normalisation); the pooling and normalisation run inside the ONNX graph. Model files come
from the :class:`~ruvector_lab.embeddings.cache.ModelCache`; the session's settings are explicit and reported
by :meth:`Embedder.info`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import EmbedderClosedError, InvalidParameterError, InvalidTextError, ModelError
from ..pools import pinned_pool_size
from . import onnx_graph
from .batching import DEFAULT_TOKEN_BUDGET, plan_chunks
from .builds import PRECISIONS, load_model
from .cache import ModelCache, default_cache
from .models import get_model
from .tokenizer import BertTokenizer

log = logging.getLogger(__name__)


def _check_encodable(text: str, what: str) -> None:
    """Refuse a str that UTF-8 cannot encode (a lone surrogate): the tokenizer works on UTF-8."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTextError(
            f"{what} cannot be encoded as UTF-8: {text[exc.start]!r} at character {exc.start} is a lone surrogate"
        ) from None


#: onnxruntime's own graph rewrites left out at session start: its SkipLayerNormFusion turns each residual Add +
#: LayerNorm into a SkipLayerNormalization whose CPU kernel measured 4x slower than the pair here (onnxruntime
#: 1.32, AVX2: 12 of 107 ms of an int8 batch of 32 at one thread; 3 ms for Add + LayerNormalization)
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def default_spin(threads: int) -> bool:
    """Whether idle intra-op threads spin by default: only with one thread (no idle worker exists to spin)."""
    return threads == 1


def available_cores() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Embedder:
    """Sentence embeddings with all-MiniLM-L6-v2 (384-d, L2-normalised, float32).

    ``precision`` is ``'fp32'`` (matches sentence-transformers to 1e-5) or ``'int8'`` (SmoothQuant-balanced dynamic
    quantization, faster; mean cosine 0.998, min 0.995 to sentence-transformers on the test texts); ``threads`` is
    onnxruntime's intra-op thread count (None: the count pinned for library pools in this thread by
    :mod:`ruvector_lab.pools`, else every core this process may use); ``cache`` is the ModelCache to load from
    (None: the shared default cache); ``graph`` is ``'auto'`` (onnxruntime's fused graph where it builds and passes
    its checks, else the plain one; ``info()`` says which runs and why), ``'fused'`` or ``'plain'``; ``spin`` lets
    idle onnxruntime threads spin between operators (lower latency on idle cores, lost throughput when the cores are
    shared; None: spin only when ``threads`` is 1, where there is no idle worker to spin).
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", precision: str = "fp32", threads: int | None = None, *,
                 cache: ModelCache | None = None, graph: str = "auto", spin: bool | None = None) -> None:
        import onnxruntime as ort

        self._spec = get_model(model)
        if precision not in PRECISIONS:
            raise InvalidParameterError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidParameterError(f"threads must be None or an int >= 1, got {threads!r}")
        if graph not in ("auto", "fused", "plain"):
            raise InvalidParameterError(f"unknown graph {graph!r}; choose 'auto', 'fused' or 'plain'")
        if spin is not None and not isinstance(spin, bool):
            raise InvalidParameterError(f"spin must be None, True or False, got {spin!r}")
        self.precision = precision
        # an explicit count wins; else the pin of the calling thread (a benchmark's), else every usable core
        self.threads = threads if threads is not None else (pinned_pool_size() or available_cores())
        self._cache = cache if cache is not None else default_cache()
        self._tokenizer = BertTokenizer(self._cache.fetch(self._spec.tokenizer), self._spec.max_seq_length)
        self._built = load_model(self._spec, precision, self._cache, graph)
        blob = self._built.blob
        self._model_sha256 = hashlib.sha256(blob).hexdigest()
        self.spin = spin if spin is not None else default_spin(self.threads)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1  # one chain of ops: a second pool would only compete for the same cores
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # spinning workers poll for the next operator: a little lower latency on idle cores, but on shared ones
        # they burn the time slices the working threads need (measured in the README's embedding section)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        opts.log_severity_level = 3  # errors only: shape-merge notes on dynamic axes are not problems
        self._session_options = {
            "intra_op_num_threads": opts.intra_op_num_threads,
            "inter_op_num_threads": opts.inter_op_num_threads,
            "execution_mode": "sequential",
            "graph_optimization_level": "all",
            "enable_cpu_mem_arena": opts.enable_cpu_mem_arena,
            "enable_mem_pattern": opts.enable_mem_pattern,
            "intra_op_allow_spinning": opts.get_session_config_entry("session.intra_op.allow_spinning"),
            "disabled_optimizers": list(DISABLED_OPTIMIZERS),
        }
        try:
            self._session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"],
                                                 disabled_optimizers=list(DISABLED_OPTIMIZERS))
        except Exception as exc:  # onnxruntime raises its own exception types for a model it cannot load
            raise ModelError(f"onnxruntime cannot load the {precision} {self._built.graph} {self._spec.name} model: "
                             f"{exc}") from None
        self._ort_version = ort.__version__
        self._lock = threading.Lock()
        log.info("Embedder %s %s (%s graph) ready: %d intra-op threads, model sha256 %s", self._spec.name,
                 precision, self._built.graph, self.threads, self._model_sha256[:12])

    @property
    def dimensions(self) -> int:
        """Length of every vector this embedder returns (384)."""
        return self._spec.dimensions

    @property
    def model(self) -> str:
        """Name of the model."""
        return self._spec.name

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._session is None

    def embed(self, text: str) -> np.ndarray:
        """Embed one text; return a float32 vector of shape (dimensions,), L2-normalised."""
        if not isinstance(text, str):
            raise InvalidTextError(f"embed() takes a str, got {type(text).__name__}")
        _check_encodable(text, "the text")
        return self.embed_batch([text])[0]

    def embed_batch(self, texts: Iterable[str], chunk_size: int | None = None, *,
                    token_budget: int = DEFAULT_TOKEN_BUDGET) -> np.ndarray:
        """Embed many texts; return (n, dims) float32 rows in the order given.

        Texts are sorted by token length and run in chunks of similar length chosen to minimise padding
        (:func:`~.batching.plan_chunks`): at most ``token_budget`` padded tokens per run (rows x longest row; a
        single longer text runs alone) and at most ``chunk_size`` texts if given. The chunking never changes an
        fp32 vector beyond float rounding (1e-6): each text's row depends only on its own tokens.
        """
        if isinstance(texts, (str, bytes)) or texts is None:
            raise InvalidTextError(f"embed_batch() takes a sequence of str, got {type(texts).__name__}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise InvalidParameterError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
        if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
            raise InvalidParameterError(f"token_budget must be an int >= 1, got {token_budget!r}")
        try:
            items = list(texts)
        except TypeError:
            raise InvalidTextError(f"embed_batch() takes a sequence of str, got {type(texts).__name__}") from None
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InvalidTextError(f"text {i} is a {type(text).__name__}, not a str")
            _check_encodable(text, f"text {i}")
        session = self._require_open()
        out = np.empty((len(items), self.dimensions), dtype=np.float32)
        if not items:
            return out
        token_ids = self._tokenizer.token_ids(items)
        for rows in plan_chunks([len(ids) for ids in token_ids], token_budget, chunk_size):
            batch = self._tokenizer.pad([token_ids[i] for i in rows])
            feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                    "token_type_ids": batch.token_type_ids}
            out[rows] = session.run([onnx_graph.OUTPUT], feed)[0]
        return out

    def token_ids(self, text: str) -> list[int]:
        """The token ids the model sees for ``text`` ([CLS] ... [SEP], truncated at 256 tokens)."""
        if not isinstance(text, str):
            raise InvalidTextError(f"token_ids() takes a str, got {type(text).__name__}")
        _check_encodable(text, "the text")
        return self._tokenizer.token_ids([text])[0]

    def info(self) -> dict[str, Any]:
        """What runs: model, precision, dimensions, threads, graph (fused or plain, and why), batching, session
        options, model and source sha256s."""
        return {
            "model": self._spec.name,
            "precision": self.precision,
            "dimensions": self.dimensions,
            "max_seq_length": self._spec.max_seq_length,
            "threads": self.threads,
            "graph": {"running": self._built.graph, "requested": self._built.requested,
                      "fused_operators": dict(self._built.fused_ops),
                      "fallback_reason": self._built.fallback_reason},
            "batching": {"token_budget_default": DEFAULT_TOKEN_BUDGET, "sorted_by_length": True},
            "session_options": dict(self._session_options),
            "providers": ["CPUExecutionProvider"],
            "onnxruntime": self._ort_version,
            "model_sha256": self._model_sha256,
            "source_files": {p.member: p.sha256 for p in (self._spec.tokenizer, self._spec.weights)},
            "cache_root": str(self._cache.root),
            "closed": self.closed,
        }

    def close(self) -> None:
        """Release the onnxruntime session. Calling it again does nothing; any other use afterwards raises."""
        with self._lock:
            self._session = None

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.threads} threads"
        return f"Embedder({self._spec.name!r}, precision={self.precision!r}, {state})"

    def _require_open(self) -> Any:
        session = self._session
        if session is None:
            raise EmbedderClosedError("this Embedder was closed; create a new one")
        return session
