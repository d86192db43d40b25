"""The runtime of ADR-006: detect the backends, keep the first that really works.

Detection order (the registry's ``detection_rank``, :mod:`ruvector_lab.backends`): native (faiss, hnswlib,
ruvector, usearch), then wasm, then numpy, which always works. A probe builds
a tiny index with every metric and searches it, so a library that imports but misbehaves is not chosen.
``RUVECTOR_LAB_BACKEND=<name>`` or ``Runtime.initialize(backend=<name>)`` forces one backend.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar

from .backends import IndexBackend, backend_class, class_for, detection_order, names, spec
from .errors import BackendUnavailableError

log = logging.getLogger(__name__)

ENV_BACKEND = "RUVECTOR_LAB_BACKEND"

_probe_lock = threading.Lock()
_probe_results: dict[str, type[IndexBackend] | str] = {}


def _probe(name: str) -> type[IndexBackend] | str:
    """The backend class if it imports and passes its probe, else the reason it does not (cached per process)."""
    with _probe_lock:
        if name not in _probe_results:
            try:
                cls = backend_class(name)
                cls.probe()
                _probe_results[name] = cls
            except BackendUnavailableError as exc:
                _probe_results[name] = str(exc)
            except Exception as exc:  # a probe that fails for any reason disables only that backend
                _probe_results[name] = f"backend {name!r} failed its probe: {type(exc).__name__}: {exc}"
        return _probe_results[name]


class Runtime:
    """The process-wide runtime: which backend serves indexes and vector ops.

    Use :meth:`initialize`; the constructor is internal.
    """

    _instance: ClassVar[Runtime | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, backend_cls: type[IndexBackend]) -> None:
        self._backend_cls = backend_cls

    @property
    def backend(self) -> str:
        """Name of the chosen backend (one of :func:`ruvector_lab.backends.names`)."""
        return self._backend_cls.name

    @property
    def tier(self) -> str:
        """ADR-006 tier of the chosen backend: 'native', 'wasm' or 'fallback'."""
        return spec(self._backend_cls.name).tier

    @property
    def backend_class(self) -> type[IndexBackend]:
        """The backend class the runtime hands to new indexes."""
        return self._backend_cls

    def __repr__(self) -> str:
        return f"Runtime(backend={self.backend!r}, tier={self.tier!r})"

    @classmethod
    def initialize(cls, backend: str | None = None) -> Runtime:
        """Return the runtime, detecting backends on first use.

        ``backend`` (or the ``RUVECTOR_LAB_BACKEND`` environment variable) forces one backend by name; an
        unknown or unavailable name raises :class:`BackendUnavailableError` with the reason and the list of
        available backends. Forcing a different backend than the current one replaces the singleton.
        """
        wanted = backend if backend is not None else (os.environ.get(ENV_BACKEND) or None)
        with cls._lock:
            current = cls._instance
            if current is not None and (wanted is None or wanted == current.backend):
                return current
            chosen = cls.require(wanted) if wanted is not None else cls._detect()
            cls._instance = Runtime(chosen)
            how = "forced" if wanted is not None else "detected"
            log.info("ruvector-lab: using backend %s (tier %s, %s)", chosen.name, spec(chosen.name).tier, how)
            return cls._instance

    @staticmethod
    def _detect() -> type[IndexBackend]:
        for name in detection_order():
            result = _probe(name)
            if not isinstance(result, str):
                return result
            log.debug("backend %s unavailable: %s", name, result)
        raise BackendUnavailableError("no backend works, not even numpy: " + "; ".join(
            f"{n}: {_probe(n)}" for n in detection_order()))

    @staticmethod
    def require(name: str) -> type[IndexBackend]:
        """The class of backend ``name`` if it works here, else :class:`BackendUnavailableError` saying why."""
        if not isinstance(name, str) or name not in names():
            raise BackendUnavailableError(
                f"unknown backend {name!r}; known backends: {', '.join(names())}; "
                f"available here: {', '.join(Runtime.available_names()) or 'none'}"
            )
        result = _probe(name)
        if isinstance(result, str):
            raise BackendUnavailableError(
                f"backend {name!r} is unavailable: {result}; available here: "
                f"{', '.join(Runtime.available_names()) or 'none'}"
            )
        return result

    @staticmethod
    def serving_class(name: str, config: object) -> type[IndexBackend]:
        """The class of backend ``name`` that serves ``config`` (float or quantized), once the backend is known
        to work here; an unavailable backend or a quantization it does not serve raises
        :class:`BackendUnavailableError` saying why (a metric or shape its codes refuse raises what they raise)."""
        Runtime.require(name)
        return class_for(name, config)  # type: ignore[arg-type]

    @staticmethod
    def available() -> dict[str, bool | str]:
        """Every known backend, in the registry's order: ``True`` if it works here, else the reason it does not."""
        return {name: (True if not isinstance(r := _probe(name), str) else r) for name in names()}

    @staticmethod
    def available_names() -> list[str]:
        """Names of the backends that work here, in the registry's order."""
        return [name for name, ok in Runtime.available().items() if ok is True]

    @staticmethod
    def tier_of(name: str) -> str:
        """The ADR-006 tier of a backend name ('native', 'wasm', 'fallback')."""
        return spec(name).tier

    @classmethod
    def current(cls) -> Runtime | None:
        """The runtime if it has been initialised, else None (never triggers detection)."""
        return cls._instance

    @classmethod
    def reset(cls) -> None:
        """Forget the chosen backend so the next :meth:`initialize` detects again (probe results are kept)."""
        with cls._lock:
            cls._instance = None
