"""Backend registry: names in detection order, each imported lazily so a missing library disables only
its own backend."""

from __future__ import annotations

import importlib

from ..errors import BackendUnavailableError
from .base import IndexBackend

#: detection order of ADR-006: native first, then WASM, then the fallback that always works
BACKENDS: dict[str, tuple[str, str]] = {
    "faiss": ("ruvector_lab.backends.faiss_backend", "FaissBackend"),
    "hnswlib": ("ruvector_lab.backends.hnswlib_backend", "HnswlibBackend"),
    "ruvector": ("ruvector_lab.backends.ruvector_backend", "RuvectorBackend"),
    "wasm": ("ruvector_lab.backends.wasm_backend", "WasmBackend"),
    "numpy": ("ruvector_lab.backends.numpy_backend", "NumpyBackend"),
}

TIERS: dict[str, str] = {"faiss": "native", "hnswlib": "native", "ruvector": "native", "wasm": "wasm",
                         "numpy": "fallback"}


def backend_class(name: str) -> type[IndexBackend]:
    """Import and return the backend class called ``name``; raise :class:`BackendUnavailableError` if its
    module or library cannot be imported (the message carries the import error)."""
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendUnavailableError(
                f"backend {name!r} is not part of this ruvector-lab version ({module_name} does not exist)"
            ) from None
        raise BackendUnavailableError(f"backend {name!r} needs the Python package {exc.name!r}: {exc}") from None
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {name!r} failed to import: {exc}") from None
    return getattr(module, class_name)


__all__ = ["BACKENDS", "TIERS", "IndexBackend", "backend_class"]
