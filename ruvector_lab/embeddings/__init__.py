"""Text embeddings: :class:`Embedder` (all-MiniLM-L6-v2 on onnxruntime) and the ADR's :class:`ModelCache`."""

from .cache import CacheStats, ModelCache, default_cache, default_root
from .embedder import Embedder
from .models import MODELS, ModelSpec, PinnedFile, get_model

__all__ = ["MODELS", "CacheStats", "Embedder", "ModelCache", "ModelSpec", "PinnedFile", "default_cache",
           "default_root", "get_model"]
