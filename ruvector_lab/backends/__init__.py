"""The backend registry: one record per backend, the only place a backend is named.

A record says where the backend's classes live (imported lazily, so a missing library disables only its own
backend), its ADR-006 tier, which quantization kinds it serves in search and with which class, the installed
distributions whose versions a measurement of it records, and whether and in which order runtime detection may
choose it. Everything that needs to know about backends (the runtime, :class:`~ruvector_lab.HnswIndex`, the
benchmark runner, the report, the environment record, the facade benchmark, the CLI) reads these records.

Adding a backend is one file in this package (an :class:`IndexBackend` subclass) and one record in ``SPECS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import BackendUnavailableError
from .base import IndexBackend

if TYPE_CHECKING:
    from ..types import HnswConfig

Tier = Literal["native", "wasm", "fallback"]


@dataclass(frozen=True)
class BackendSpec:
    """What the library knows about one backend before importing it."""

    #: the name users pass (``HnswIndex(config, backend=name)``) and results are filed under
    name: str
    tier: Tier
    #: ``"package.module:Class"`` of the float-vector backend
    float_class: str
    #: ``"package.module:Class"`` of the backend serving ``HnswConfig(quantization=...)``, None if it has none
    quantized_class: str | None = None
    #: quantization kinds the quantized class serves in search (its own checks may refuse a metric or shape)
    codecs: frozenset[str] = frozenset()
    #: installed distributions whose versions change what this backend measures (recorded, and fingerprinted)
    distributions: tuple[str, ...] = ()
    #: position in runtime detection (lower first); None: used only when asked for by name
    detection_rank: int | None = None

    @property
    def modules(self) -> tuple[str, ...]:
        """Dotted names of the modules holding this backend's classes (float first)."""
        paths = [self.float_class] + ([self.quantized_class] if self.quantized_class else [])
        return tuple(dict.fromkeys(path.split(":", 1)[0] for path in paths))


_PKG = "ruvector_lab.backends"

#: every backend, in the order results and reports list them (natives, then wasm, then the fallback)
SPECS: tuple[BackendSpec, ...] = (
    BackendSpec("faiss", "native", f"{_PKG}.faiss_backend:FaissBackend",
                f"{_PKG}.faiss_quantized:FaissQuantizedBackend",
                frozenset({"scalar", "int4", "binary", "product", "rabitq"}), ("faiss-cpu",), detection_rank=0),
    BackendSpec("hnswlib", "native", f"{_PKG}.hnswlib_backend:HnswlibBackend", None, frozenset(), ("hnswlib",),
                detection_rank=1),
    BackendSpec("ruvector", "native", f"{_PKG}.ruvector_backend:RuvectorBackend",
                f"{_PKG}.ruvector_rabitq:RuvectorRabitqBackend", frozenset({"rabitq"}), ("ruvector",),
                detection_rank=2),
    BackendSpec("usearch", "native", f"{_PKG}.usearch_backend:UsearchBackend",
                f"{_PKG}.usearch_backend:UsearchBackend", frozenset({"scalar", "binary"}), ("usearch",),
                detection_rank=3),
    # the flat code scan serves RuVector's codecs; RaBitQ indexes are faiss' and ruvector's (the library's
    # RabitqCodec stays a standalone codec: adding "rabitq" to these two records would serve it here too)
    BackendSpec("wasm", "wasm", f"{_PKG}.wasm_backend:WasmBackend",
                f"{_PKG}.quantized_flat:WasmQuantizedFlatBackend",
                frozenset({"scalar", "int4", "binary", "product"}), ("wasmtime",), detection_rank=10),
    BackendSpec("numpy", "fallback", f"{_PKG}.numpy_backend:NumpyBackend",
                f"{_PKG}.quantized_flat:QuantizedFlatBackend",
                frozenset({"scalar", "int4", "binary", "product"}), (), detection_rank=20),
)

_BY_NAME = {spec.name: spec for spec in SPECS}


def names() -> list[str]:
    """Every backend name, in the registry's (report) order."""
    return [spec.name for spec in SPECS]


def detection_order() -> list[str]:
    """Names the runtime may choose by itself, in the order it tries them (native, then wasm, then fallback)."""
    ranked = [spec for spec in SPECS if spec.detection_rank is not None]
    return [spec.name for spec in sorted(ranked, key=lambda s: s.detection_rank)]


def spec(name: str) -> BackendSpec:
    """The record of backend ``name``; an unknown name raises :class:`BackendUnavailableError` listing the known."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise BackendUnavailableError(f"unknown backend {name!r}; known backends: {', '.join(names())}") from None


def _import(name: str, path: str) -> type[IndexBackend]:
    module_name, class_name = path.split(":", 1)
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


def backend_class(name: str) -> type[IndexBackend]:
    """Import and return the float-vector class of backend ``name``; raise :class:`BackendUnavailableError` if
    its module or library cannot be imported (the message carries the import error)."""
    return _import(name, spec(name).float_class)


def class_for(name: str, config: HnswConfig) -> type[IndexBackend]:
    """The class of backend ``name`` that serves ``config``: the float class, or for
    ``HnswConfig(quantization=...)`` the quantized class once the kind is one it serves and its own checks pass.

    A kind the backend does not serve raises :class:`BackendUnavailableError` naming the backends that do.
    """
    record = spec(name)
    quantization = getattr(config, "quantization", None)
    if quantization is None:
        return backend_class(name)
    kind = getattr(quantization, "kind", quantization)
    if kind not in record.codecs or record.quantized_class is None:
        serving = [s.name for s in SPECS if kind in s.codecs]
        served = ", ".join(sorted(record.codecs)) or "no quantized index"
        raise BackendUnavailableError(
            f"backend {name!r} does not serve {kind!r} quantization in search (it serves: {served}); "
            f"backends that do: {', '.join(serving) or 'none'}"
        )
    cls = _import(name, record.quantized_class)
    cls.check_config(config)
    return cls


def distributions() -> tuple[str, ...]:
    """Every distribution some backend's measurements depend on, in registry order."""
    return tuple(dict.fromkeys(d for spec in SPECS for d in spec.distributions))


__all__ = ["SPECS", "BackendSpec", "IndexBackend", "backend_class", "class_for", "detection_order",
           "distributions", "names", "spec"]
