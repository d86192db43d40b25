"""``quantize`` and ``dequantize``: the vector ops of ADR-006's ``vectorOps``, on one vector or a matrix."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError, NotTrainedError, QuantizationError
from .base import Codec, QuantizedVectors, make_codec
from .config import QuantizationConfig
from .kmeans import Engine


def quantize(x: object, config: QuantizationConfig, *, metric: str = "cosine", codec: Codec | None = None,
             engine: Engine = "auto") -> QuantizedVectors:
    """Compress one vector ``(d,)`` or a matrix ``(n, d)`` as ``config`` says; return codes with their codec.

    Scalar, int4 and binary need nothing else. Product quantization needs codebooks: pass a trained
    ``codec``, or give a matrix and the codebooks are trained on (a sample of) it. A ``codec`` that was
    made for another config is refused.

    An empty matrix ``(0, d)`` gives empty codes ``(0, code_size)`` from every codec that can encode without
    it (scalar, int4, binary, or any trained ``codec``); product and rabitq asked to train on it raise
    :class:`QuantizationError`, since there is nothing to fit codebooks or a centre to.
    """
    if not isinstance(config, QuantizationConfig):
        raise InvalidParameterError(f"config must be a QuantizationConfig, got {type(config).__name__}")
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if codec is not None:
        if not isinstance(codec, Codec):
            raise InvalidParameterError(f"codec must be a Codec, got {type(codec).__name__}")
        if codec.config != config:
            raise QuantizationError(f"the codec was made for {codec.config}, not {config}")
    else:
        dimensions = arr.shape[-1] if arr.ndim in (1, 2) else 0
        if dimensions == 0:
            raise QuantizationError(f"quantize takes one vector or a matrix of rows, got shape {arr.shape}")
        codec = make_codec(config, dimensions, metric=metric, engine=engine)
        if codec.needs_training:
            if arr.ndim == 1:
                raise NotTrainedError(
                    "product quantization of one vector needs trained codebooks: pass "
                    "codec=make_codec(config, d).train(sample)"
                )
            codec.train(arr)
    return QuantizedVectors(codec, codec.encode(arr))


def dequantize(codes: QuantizedVectors | np.ndarray, config: QuantizationConfig | None = None, *,
               codec: Codec | None = None) -> np.ndarray:
    """Float32 vectors back from :func:`quantize` output (one vector or a matrix, as it was given).

    ``config``, if given, must match the codes' kind and parameters. Raw uint8 code arrays need the
    ``codec`` that wrote them.
    """
    if config is not None and not isinstance(config, QuantizationConfig):
        raise InvalidParameterError(f"config must be a QuantizationConfig, got {type(config).__name__}")
    if isinstance(codes, QuantizedVectors):
        if config is not None and codes.codec.config != config:
            raise QuantizationError(f"these are {codes.kind} codes made with {codes.codec.config}, not {config}")
        return (codec or codes.codec).decode(codes)
    if codec is None:
        raise QuantizationError(
            "dequantize needs the QuantizedVectors that quantize returned, or codec= for raw code arrays"
        )
    if config is not None and codec.config != config:
        raise QuantizationError(f"the codec was made for {codec.config}, not {config}")
    return codec.decode(codes)
