"""One instantiated WebAssembly module: its own wasmtime store, exports called under a lock, traps made errors.

A trap (out-of-bounds access, ``unreachable`` after a Rust panic, a failed ``memory.grow``) stops the call
but can leave the module's heap half-updated, so after one trap the instance refuses further calls: every
later call raises :class:`BackendError` saying so, never a crash and never a silently wrong answer. Closing
the owner (index, adapter) and building a new one gets a fresh instance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import wasmtime

from ..errors import BackendError
from .loader import WasmArtifact, compiled, engine
from .memory import LinearMemory, Scratch

#: wasm32 cannot address more than 4 GiB; the store refuses to grow past it with a clean failure
MAX_MEMORY_BYTES = 1 << 32


class ModuleThrew(Exception):
    """Raised by a host import when the module reports an error through it (e.g. ``__wbindgen_throw``)."""


ImportsFactory = Callable[["WasmInstance", wasmtime.Store], Sequence[wasmtime.Func]]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class WasmInstance:
    """An instance of ``artifact`` with typed helpers; subclasses add the module's own functions.

    ``alloc_export``/``free_export`` name the module's allocator; ``alloc_align`` is passed as a third
    argument when the allocator takes an alignment (wasm-bindgen's malloc/free do, rvf's do not).
    """

    artifact: WasmArtifact
    alloc_export: str
    free_export: str
    alloc_align: int | None = None

    def __init__(self, imports: ImportsFactory | None = None) -> None:
        module = compiled(self.artifact)  # raises BackendUnavailableError with the reason
        self._store = wasmtime.Store(engine())
        self._store.set_limits(memory_size=MAX_MEMORY_BYTES)
        self.lock = threading.RLock()
        self._poisoned: str | None = None
        self._closed = False
        try:
            externs = list(imports(self, self._store)) if imports else []
            instance = wasmtime.Instance(self._store, module, externs)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise BackendError(f"{self.artifact}: instantiation failed: {_first_line(exc)}") from None
        exports = instance.exports(self._store)
        self._funcs: dict[str, wasmtime.Func] = {}
        for item in module.exports:
            value = exports[item.name]
            if isinstance(value, wasmtime.Func):
                self._funcs[item.name] = value
        memory = exports["memory"]
        if not isinstance(memory, wasmtime.Memory):
            raise BackendError(f"{self.artifact}: export 'memory' is not a memory")
        self.memory = LinearMemory(self._store, memory, self._raw_alloc, self._raw_free, str(self.artifact))
        self.scratch = Scratch(self.memory)

    # ------------------------------------------------------------------ calls
    @property
    def exports(self) -> list[str]:
        """Names of the module's exported functions."""
        return sorted(self._funcs)

    @property
    def poisoned(self) -> str | None:
        """Why this instance refuses calls (an earlier trap), or None while it is healthy."""
        return self._poisoned

    def call(self, name: str, *args: int | float) -> int | float | None:
        """Call export ``name``; a trap becomes :class:`BackendError` and retires the instance."""
        if self._closed:
            raise BackendError(f"{self.artifact}: instance is closed")
        if self._poisoned is not None:
            raise BackendError(
                f"{self.artifact}: instance is unusable after an earlier trap ({self._poisoned}); "
                "close it and build a new one"
            )
        func = self._funcs.get(name)
        if func is None:
            raise BackendError(f"{self.artifact} has no export {name!r}")
        try:
            return func(self._store, *args)
        except ModuleThrew as exc:
            self._poisoned = f"{name}: {exc}"
            raise BackendError(f"{self.artifact}: {name} raised inside the module: {exc}") from None
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            self._poisoned = f"{name}: {_first_line(exc)}"
            raise BackendError(f"{self.artifact}: {name} trapped: {_first_line(exc)}") from None

    def _raw_alloc(self, nbytes: int) -> int:
        if self.alloc_align is None:
            return int(self.call(self.alloc_export, nbytes))  # type: ignore[arg-type]
        return int(self.call(self.alloc_export, nbytes, self.alloc_align))  # type: ignore[arg-type]

    def _raw_free(self, address: int, nbytes: int) -> None:
        if self.alloc_align is None:
            self.call(self.free_export, address, nbytes)
        else:
            self.call(self.free_export, address, nbytes, self.alloc_align)

    # --------------------------------------------------------------- lifetime
    @property
    def memory_bytes(self) -> int:
        """Current size of the instance's linear memory in bytes."""
        return self.memory.size

    def close(self) -> None:
        """Drop the instance and its linear memory; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._funcs.clear()
        self._store.close()
