"""The one interface every codec implements, and the checks they share.

A codec turns float32 row vectors of a fixed dimension into fixed-length uint8 codes (one row of
``code_size`` bytes per vector) and back, and scores a float query against codes without decoding them
all into one float matrix (asymmetric distance). Scores follow the library's convention
(:mod:`ruvector_lab.distances`): cosine ``1 - cos``, euclidean L2 (not squared), dot_product ``-dot``; smaller
is closer. By default a codec scores decoded blocks with :func:`~ruvector_lab.distances.pairwise_float32`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .. import container
from ..distances import METRICS, check_metric, pairwise_float32
from ..errors import CorruptIndexError, InvalidParameterError, NotTrainedError, QuantizationError
from ..validation import MAX_DIMENSIONS, as_matrix, check_nonzero, check_positive_int, stored_row_flaw
from .config import QuantizationConfig
from .kmeans import Engine, resolve_engine

logger = logging.getLogger(__name__)

CODEC_KIND = "quantization-codec"
#: code rows scored per block, so scoring never builds a float matrix of the whole collection
SCORE_BLOCK = 8192
#: largest entry of ``R^T R - I`` a stored rotation may show: float32 rounding of an orthogonal matrix stays
#: near 1e-5 even at 4096 dimensions, while a damaged or non-orthogonal one is off by far more
ROTATION_TOLERANCE = 1e-3

_REGISTRY: dict[str, type[Codec]] = {}


class Codec(ABC):
    """Encode float32 vectors of ``dimensions`` to uint8 codes, decode them, score queries against them.

    ``metric`` is the metric :meth:`distance` scores with; a kind refuses metrics it cannot serve.
    ``engine`` picks the faiss or NumPy code path (``'auto'``: faiss if installed); both produce the same
    codes from the same codebooks.
    """

    kind: ClassVar[str]
    supported_metrics: ClassVar[tuple[str, ...]] = METRICS
    needs_training: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    def __init__(self, config: QuantizationConfig, dimensions: int, metric: str = "cosine",
                 engine: Engine = "auto") -> None:
        if not isinstance(config, QuantizationConfig):
            raise InvalidParameterError(f"config must be a QuantizationConfig, got {type(config).__name__}")
        if config.kind != self.kind:
            raise QuantizationError(f"a {type(self).__name__} cannot take a {config.kind!r} config")
        self.config = config
        self.dimensions = check_positive_int("dimensions", dimensions, maximum=MAX_DIMENSIONS)
        self.metric = check_metric(metric)
        if self.metric not in self.supported_metrics:
            raise QuantizationError(
                f"{self.kind} codes cannot serve the {self.metric!r} metric; they serve "
                f"{', '.join(self.supported_metrics)}"
            )
        self.engine = resolve_engine(engine)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dimensions={self.dimensions}, metric={self.metric!r}, "
                f"code_size={self.code_size}, trained={self.is_trained})")

    # ---- what each kind provides -------------------------------------------------------------------------
    @property
    @abstractmethod
    def code_size(self) -> int:
        """Bytes per encoded vector (analytic: what one code row holds, codebooks not counted)."""

    @abstractmethod
    def _encode(self, x: np.ndarray) -> np.ndarray:
        """Encode a checked ``(n, d)`` float32 matrix into ``(n, code_size)`` uint8."""

    @abstractmethod
    def _decode(self, codes: np.ndarray) -> np.ndarray:
        """Decode checked ``(n, code_size)`` uint8 codes into ``(n, d)`` float32."""

    def _score(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``(m, n)`` distances of checked queries to checked codes; by default through decoded blocks."""
        return pairwise_float32(queries, self._decode(codes), self.metric)

    def _state(self) -> dict[str, np.ndarray]:
        """Trained arrays to serialize (codebooks); none for the per-vector kinds."""
        return {}

    def _load_state(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 - only PQ has state
        """Restore what :meth:`_state` returned."""

    # ---- the public interface ----------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        """True once the codec can encode; per-vector kinds (scalar, int4, binary) always can."""
        return True

    @property
    def compression_ratio(self) -> float:
        """float32 bytes of one vector divided by :attr:`code_size`."""
        return 4.0 * self.dimensions / self.code_size

    def train(self, x: object) -> Codec:
        """Fit the codec to sample rows ``x`` (PQ: k-means codebooks); a no-op for per-vector kinds.

        Returns ``self`` so ``make_codec(...).train(X)`` reads as one step.
        """
        as_matrix(x, self.dimensions, name="training vectors")
        return self

    def encode(self, x: object) -> np.ndarray:
        """Codes of one vector ``(code_size,)`` or a matrix ``(n, code_size)``, uint8."""
        self._require_trained("encode")
        arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
        single = arr.ndim == 1
        matrix = as_matrix(arr, self.dimensions)
        codes = self._encode(matrix)
        return codes[0] if single else codes

    def decode(self, codes: object) -> np.ndarray:
        """Float32 vectors from codes of this codec: ``(code_size,)`` gives one vector, ``(n, code_size)`` a matrix.

        Also takes the :class:`QuantizedVectors` that :func:`~ruvector_lab.quantization.quantize` returns.
        """
        self._require_trained("decode")
        if isinstance(codes, QuantizedVectors):
            self._check_same(codes.codec)
            codes = codes.codes
        checked, single = self.check_codes(codes)
        out = self._decode(checked)
        return out[0] if single else out

    def distance(self, queries: object, codes: object) -> np.ndarray:
        """Asymmetric distances of float queries to codes under :attr:`metric`.

        One query ``(d,)`` gives ``(n,)``; a matrix ``(m, d)`` gives ``(m, n)``; float32 either way.
        """
        self._require_trained("score")
        arr = np.asarray(queries) if not isinstance(queries, np.ndarray) else queries
        single = arr.ndim == 1
        q = as_matrix(arr, self.dimensions, name="queries")
        if self.metric == "cosine":
            check_nonzero(q, "query")
        if isinstance(codes, QuantizedVectors):
            self._check_same(codes.codec)
            codes = codes.codes
        checked, _ = self.check_codes(codes)
        out = np.empty((q.shape[0], checked.shape[0]), dtype=np.float32)
        for start in range(0, checked.shape[0], SCORE_BLOCK):
            block = checked[start : start + SCORE_BLOCK]
            out[:, start : start + len(block)] = self._score(q, block)
        return out[0] if single else out

    def check_codes(self, codes: object) -> tuple[np.ndarray, bool]:
        """Return ``(codes as a C-contiguous (n, code_size) uint8 array, was_one_row)`` or raise
        :class:`QuantizationError` naming what is wrong (dtype, shape, length)."""
        if not isinstance(codes, np.ndarray):
            raise QuantizationError(f"codes must be a uint8 numpy array, got {type(codes).__name__}")
        if codes.dtype != np.uint8:
            raise QuantizationError(f"codes must be uint8, got dtype {codes.dtype}")
        single = codes.ndim == 1
        matrix = codes.reshape(1, -1) if single else codes
        if matrix.ndim != 2:
            raise QuantizationError(f"codes must be one row or a matrix of rows, got shape {codes.shape}")
        if matrix.shape[1] != self.code_size:
            raise QuantizationError(
                f"codes are {matrix.shape[1]} bytes long; this {self.kind} codec for {self.dimensions} "
                f"dimensions writes {self.code_size}-byte codes"
            )
        return np.ascontiguousarray(matrix), single

    def stored_flaw(self, codes: np.ndarray) -> str | None:
        """Why checked codes ``(n, code_size)`` read from a file could not have been written by :meth:`encode`,
        or None: each must decode to a row an insert accepts (finite, with a finite float32 squared norm:
        :func:`~ruvector_lab.validation.stored_row_flaw`), so every score over it is finite. The payload loaders
        call it before they hold the codes; kinds with per-code parameters check those first."""
        if not codes.shape[0]:
            return None  # an empty index of an untrained codec (PQ before its first batch) holds nothing
        self._require_trained("check codes")
        for start in range(0, codes.shape[0], SCORE_BLOCK):
            with np.errstate(all="ignore"):  # an overflow decodes to inf or NaN, which is the flaw reported
                decoded = self._decode(codes[start : start + SCORE_BLOCK])
            flaw = stored_row_flaw(decoded)
            if flaw is not None:
                return f"decoded {flaw}" + (f" (of the block from row {start})" if start else "")
        return None

    def to_bytes(self) -> bytes:
        """The codec (config, dimensions, metric, codebooks) in the library's checksummed container."""
        return container.dumps(CODEC_KIND, self._meta(), self._state() if self.is_trained else {})

    @staticmethod
    def from_bytes(blob: bytes, engine: Engine = "auto") -> Codec:
        """Rebuild any codec from :meth:`to_bytes` output; a damaged blob raises :class:`CorruptIndexError`."""
        meta, arrays = container.loads(blob, CODEC_KIND)
        return Codec._from_parts(meta, arrays, engine)

    # ---- helpers shared by the kinds ---------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "dimensions": self.dimensions, "metric": self.metric,
                "trained": self.is_trained}

    @staticmethod
    def _from_parts(meta: dict[str, Any], arrays: dict[str, np.ndarray], engine: Engine) -> Codec:
        try:
            config = QuantizationConfig.from_dict(meta["config"])
            codec = make_codec(config, int(meta["dimensions"]), metric=meta["metric"], engine=engine)
            if meta["trained"] and codec.needs_training:
                codec._load_state(arrays)
        except (KeyError, TypeError, ValueError) as exc:  # our input errors are ValueErrors too
            raise CorruptIndexError(f"codec metadata is not valid: {exc}") from None
        return codec

    def _training_rows(self, x: object) -> np.ndarray:
        """Checked training rows, at least one: a codec fitted to nothing has no centre or codebooks to encode
        with, so zero rows are refused (typed) rather than left to fail deep in k-means or a mean."""
        data = as_matrix(x, self.dimensions, name="training vectors")
        if data.shape[0] == 0:
            raise QuantizationError(f"the {self.kind} codec needs at least one training vector, got none")
        return data

    def _require_trained(self, action: str) -> None:
        if not self.is_trained:
            raise NotTrainedError(f"the {self.kind} codec must be trained before it can {action}: call train(X)")

    def _check_same(self, other: Codec) -> None:
        if other.kind != self.kind:
            raise QuantizationError(f"these are {other.kind} codes; a {self.kind} codec cannot read them")
        if other.dimensions != self.dimensions:
            raise QuantizationError(
                f"these codes hold {other.dimensions}-d vectors; this codec reads {self.dimensions}-d"
            )


def random_rotation(dimensions: int, seed: int) -> np.ndarray:
    """A seeded ``(d, d)`` float32 orthogonal matrix (QR of a Gaussian matrix, signs fixed so it is unique)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dimensions, dimensions)))
    return np.ascontiguousarray(q * np.sign(np.diag(r)), dtype=np.float32)


def checked_rotation(value: object, dimensions: int, kind: str) -> np.ndarray:
    """A stored rotation as a C-contiguous ``(d, d)`` float32 array, or :class:`QuantizationError` if it has the
    wrong shape, a non-finite entry, or is not orthogonal within :data:`ROTATION_TOLERANCE` (codes scored
    through a non-orthogonal matrix would no longer estimate the distances of the vectors encoded)."""
    if not isinstance(value, np.ndarray) or value.shape != (dimensions, dimensions) or value.dtype.kind != "f":
        shape = getattr(value, "shape", None)
        raise QuantizationError(f"a {kind} codec's rotation must be a {dimensions} x {dimensions} float array, "
                                f"got {shape}")
    if not np.isfinite(value).all():
        raise QuantizationError(f"a {kind} codec's rotation holds non-finite entries")
    rotation = np.ascontiguousarray(value, dtype=np.float32)
    gram = rotation.T @ rotation
    gram[np.diag_indices(dimensions)] -= 1.0
    error = float(np.abs(gram).max())
    if not error <= ROTATION_TOLERANCE:  # also catches a NaN from an overflow
        raise QuantizationError(f"a {kind} codec's rotation is not orthogonal: R^T R is {error:.3g} from the identity")
    return rotation


def make_codec(config: QuantizationConfig, dimensions: int, metric: str = "cosine",
               engine: Engine = "auto") -> Codec:
    """The codec for ``config.kind`` over ``dimensions``-d vectors, scoring under ``metric``.

    Raises :class:`QuantizationError` if the kind cannot serve the metric or (PQ) ``m`` does not divide
    ``dimensions``.
    """
    if not isinstance(config, QuantizationConfig):
        raise InvalidParameterError(f"config must be a QuantizationConfig, got {type(config).__name__}")
    return _REGISTRY[config.kind](config, dimensions, metric=metric, engine=engine)


QUANTIZED_KIND = "quantized-vectors"


class QuantizedVectors:
    """Codes together with the codec that wrote them: what :func:`quantize` returns.

    ``codes`` is ``(code_size,)`` uint8 for one vector or ``(n, code_size)`` for a matrix; ``codec`` decodes
    and scores them. Serializes (codec state included) with :meth:`to_bytes`.
    """

    __slots__ = ("codec", "codes")

    def __init__(self, codec: Codec, codes: np.ndarray) -> None:
        codec.check_codes(codes)
        self.codec = codec
        self.codes = codes

    def __repr__(self) -> str:
        return f"QuantizedVectors(kind={self.kind!r}, shape={self.codes.shape}, dimensions={self.codec.dimensions})"

    def __len__(self) -> int:
        return 1 if self.codes.ndim == 1 else int(self.codes.shape[0])

    @property
    def kind(self) -> str:
        """The codec kind that wrote these codes."""
        return self.codec.kind

    @property
    def nbytes(self) -> int:
        """Bytes of the codes alone (codebooks not counted)."""
        return int(self.codes.nbytes)

    def to_bytes(self) -> bytes:
        """Codes and codec in one checksummed container (never pickle)."""
        arrays = dict(self.codec._state())
        arrays["codes"] = self.codes
        return container.dumps(QUANTIZED_KIND, self.codec._meta(), arrays)

    @staticmethod
    def from_bytes(blob: bytes, engine: Engine = "auto") -> QuantizedVectors:
        """Rebuild from :meth:`to_bytes` output; a damaged blob raises :class:`CorruptIndexError`."""
        meta, arrays = container.loads(blob, QUANTIZED_KIND)
        if "codes" not in arrays:
            raise CorruptIndexError("quantized-vectors container has no codes")
        codes = arrays.pop("codes")
        codec = Codec._from_parts(meta, arrays, engine)
        try:
            return QuantizedVectors(codec, codes)
        except QuantizationError as exc:
            raise CorruptIndexError(f"stored codes do not fit their codec: {exc}") from None
