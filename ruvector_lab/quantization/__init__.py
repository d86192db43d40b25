"""Vector quantization: RuVector's codecs (scalar uint8, int4, binary sign bits, product quantization) and RaBitQ.

Usage::

    cfg = QuantizationConfig(kind="scalar")
    q = quantize(vectors, cfg); approx = dequantize(q)
    codec = make_codec(QuantizationConfig(kind="product", m=48), 384).train(sample)
    codes = codec.encode(vectors); scores = codec.distance(query, codes)

Quantized indexes: ``HnswConfig(..., quantization=QuantizationConfig(...), rerank=K)``.
"""

from __future__ import annotations

from .api import dequantize, quantize
from .base import Codec, QuantizedVectors, make_codec
from .binary import BinaryCodec
from .config import GRAPHS, KIND_BIT_CHOICES, KIND_BITS, KIND_ROTATIONS, KINDS, QuantizationConfig
from .int4 import Int4Codec
from .kmeans import kmeans
from .product import ProductCodec
from .rabitq import RabitqCodec
from .scalar import ScalarCodec


def load_codec(blob: bytes) -> Codec:
    """Rebuild a codec from :meth:`Codec.to_bytes` output (raises CorruptIndexError if damaged)."""
    return Codec.from_bytes(blob)


__all__ = [
    "GRAPHS",
    "KINDS",
    "KIND_BITS",
    "KIND_BIT_CHOICES",
    "KIND_ROTATIONS",
    "BinaryCodec",
    "Codec",
    "Int4Codec",
    "ProductCodec",
    "QuantizationConfig",
    "QuantizedVectors",
    "RabitqCodec",
    "ScalarCodec",
    "dequantize",
    "kmeans",
    "load_codec",
    "make_codec",
    "quantize",
]
