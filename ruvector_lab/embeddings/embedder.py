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
from .builds import PRECISIONS, model_bytes
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


def available_cores() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Embedder:
    """Sentence embeddings with all-MiniLM-L6-v2 (384-d, L2-normalised, float32).

    ``precision`` is ``'fp32'`` (matches sentence-transformers to 1e-5) or ``'int8'`` (dynamic quantization,
    faster); ``threads`` is onnxruntime's intra-op thread count (None: the count pinned for library pools in this
    thread by :mod:`ruvector_lab.pools`, else every core this process may use);
    ``cache`` is the ModelCache to load from (None: the shared default cache).
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", precision: str = "fp32", threads: int | None = None, *,
                 cache: ModelCache | None = None) -> None:
        import onnxruntime as ort

        self._spec = get_model(model)
        if precision not in PRECISIONS:
            raise InvalidParameterError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidParameterError(f"threads must be None or an int >= 1, got {threads!r}")
        self.precision = precision
        # an explicit count wins; else the pin of the calling thread (a benchmark's), else every usable core
        self.threads = threads if threads is not None else (pinned_pool_size() or available_cores())
        self._cache = cache if cache is not None else default_cache()
        self._tokenizer = BertTokenizer(self._cache.fetch(self._spec.tokenizer), self._spec.max_seq_length)
        blob = model_bytes(self._spec, precision, self._cache)
        self._model_sha256 = hashlib.sha256(blob).hexdigest()

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1  # one chain of ops: a second pool would only compete for the same cores
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's default, set explicitly so info() reports it: idle workers spin briefly for low latency
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
        opts.log_severity_level = 3  # errors only: shape-merge notes on dynamic axes are not problems
        self._session_options = {
            "intra_op_num_threads": opts.intra_op_num_threads,
            "inter_op_num_threads": opts.inter_op_num_threads,
            "execution_mode": "sequential",
            "graph_optimization_level": "all",
            "enable_cpu_mem_arena": opts.enable_cpu_mem_arena,
            "enable_mem_pattern": opts.enable_mem_pattern,
            "intra_op_allow_spinning": opts.get_session_config_entry("session.intra_op.allow_spinning"),
        }
        try:
            self._session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a model it cannot load
            raise ModelError(f"onnxruntime cannot load the {precision} {self._spec.name} model: {exc}") from None
        self._ort_version = ort.__version__
        self._lock = threading.Lock()
        log.info("Embedder %s %s ready: %d intra-op threads, model sha256 %s", self._spec.name, precision,
                 self.threads, self._model_sha256[:12])

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

    def embed_batch(self, texts: Iterable[str], chunk_size: int = 32) -> np.ndarray:
        """Embed many texts; return (n, dims) float32 rows in the order given.

        Texts are run ``chunk_size`` at a time, grouped by token length as sentence-transformers groups them,
        each chunk padded to its longest text.
        """
        if isinstance(texts, (str, bytes)) or texts is None:
            raise InvalidTextError(f"embed_batch() takes a sequence of str, got {type(texts).__name__}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidParameterError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
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
        # like sentence-transformers, chunk texts of similar length together (longest first): less padding
        order = sorted(range(len(items)), key=lambda i: -len(token_ids[i]))
        for start in range(0, len(items), chunk_size):
            rows = order[start : start + chunk_size]
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
        """What runs: model, precision, dimensions, threads, session options, model and source sha256s."""
        return {
            "model": self._spec.name,
            "precision": self.precision,
            "dimensions": self.dimensions,
            "max_seq_length": self._spec.max_seq_length,
            "threads": self.threads,
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
