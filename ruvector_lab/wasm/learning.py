"""RuVector's MicroLoRA from ``@ruvector/learning-wasm``, callable from Python, and a NumPy reference of it.

What the module computes (crate ``ruvector-learning-wasm``, ``lora.rs``; rank 2, ``dim <= 256``):

* forward: ``out = x + alpha * (x @ down) @ up`` with ``down`` (dim, 2) and ``up`` (2, dim);
* ``down`` is fixed at construction by a deterministic xorshift: ``down[i] = (r(i), r(i + 1000)) * s - s / 2``
  with ``s = sqrt(2 / dim) * 0.1`` and ``r(seed)`` the 32-bit xorshift (13, 17, 5) of ``seed`` over
  ``u32::MAX``; ``up`` starts at zero;
* adapt(gradient): ``up += lr * outer(down.sum(axis=0), gradient / |gradient|)``, where ``|g|`` is the
  module's fast square root (bit-trick seed and one Newton step), and nothing happens when ``|g|^2 < 1e-16``;
  ``adapt_with_reward(gradient, improvement)`` scales ``lr`` by ``min(improvement, 2)`` and skips
  ``improvement <= 0``.

Calling convention (wasm-bindgen, from the package's ``.js`` glue and ``.d.ts``): objects are addresses;
``__wbindgen_export(size, align)`` is malloc and ``__wbindgen_export2(ptr, size, align)`` free; a slice
argument is malloc'd by the caller and freed by the module; a returned ``Vec<f32>`` comes back as
``(ptr, len)`` written at a return area carved with ``__wbindgen_add_to_stack_pointer(-16)`` and is freed by
the caller; optional numbers travel as f64. The one import, ``__wbindgen_throw(ptr, len)``, raises.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import wasmtime

from ..errors import BackendError, DimensionMismatchError, InvalidParameterError, InvalidVectorError
from .instance import ModuleThrew, WasmInstance
from .loader import LEARNING_WASM, compiled
from .memory import to_address, to_i32

MAX_DIM = 256
RANK = 2


def _throw_import(instance: WasmInstance, store: wasmtime.Store) -> list[wasmtime.Func]:
    """Host functions for the module's imports: only wasm-bindgen's throw, which becomes an exception."""
    module = compiled(LEARNING_WASM)
    funcs = []
    for item in module.imports:
        if item.module != "wbg" or "__wbindgen_throw" not in (item.name or ""):
            raise BackendError(f"{LEARNING_WASM} imports {item.module}.{item.name}, which ruvector-lab cannot supply")

        def throw(caller: wasmtime.Caller, ptr: int, length: int) -> None:
            memory = caller.get("memory")
            message = "unknown error"
            if isinstance(memory, wasmtime.Memory):
                start = to_address(ptr)
                message = bytes(memory.read(caller, start, start + max(0, min(length, 4096)))).decode(
                    "utf-8", "replace"
                )
            raise ModuleThrew(message)

        funcs.append(wasmtime.Func(store, item.type, throw, access_caller=True))  # type: ignore[arg-type]
    return funcs


class LearningModule(WasmInstance):
    """An instance of learning-wasm."""

    artifact = LEARNING_WASM
    alloc_export = "__wbindgen_export"
    free_export = "__wbindgen_export2"
    alloc_align = 4

    def __init__(self) -> None:
        super().__init__(imports=_throw_import)


def _finite_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameterError(f"{name} must be a number, got {type(value).__name__}")
    out = float(np.float32(value))
    if not np.isfinite(out):
        raise InvalidParameterError(f"{name} must be finite in float32, got {value!r}")
    return out


class MicroLoRA:
    """RuVector's rank-2 MicroLoRA (``WasmMicroLoRA``) running in learning-wasm.

    >>> lora = MicroLoRA(dim=4, alpha=0.1, learning_rate=0.01)   # doctest: +SKIP
    >>> lora.forward(np.ones(4, np.float32))                      # doctest: +SKIP
    """

    def __init__(self, dim: int = MAX_DIM, alpha: float = 0.1, learning_rate: float = 0.01) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= int(dim) <= MAX_DIM:
            raise InvalidParameterError(f"MicroLoRA dim must be an integer in 1 .. {MAX_DIM}, got {dim!r}")
        self._dim = int(dim)
        self._alpha = _finite_float("alpha", alpha)
        self._lr = _finite_float("learning_rate", learning_rate)
        self._module = LearningModule()
        self._closed = False
        try:
            ptr = int(self._module.call("wasmmicrolora_new", float(self._dim), self._alpha, self._lr))  # type: ignore[arg-type]
            self._ptr = to_address(ptr)
            if self._ptr == 0:
                raise BackendError("wasmmicrolora_new returned a null object")
            reported = int(self._module.call("wasmmicrolora_dim", to_i32(self._ptr)))  # type: ignore[arg-type]
            if reported != self._dim:
                raise BackendError(f"learning-wasm built a MicroLoRA of dim {reported}, asked for {self._dim}")
        except BaseException:
            self._module.close()
            raise

    # ------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._dim

    @property
    def alpha(self) -> float:
        """Scale of the low-rank update (as float32 inside the module)."""
        return self._alpha

    @property
    def learning_rate(self) -> float:
        """Step size of :meth:`adapt` (as float32 inside the module)."""
        return self._lr

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this MicroLoRA was closed")

    def _vector(self, value: object, name: str) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise InvalidVectorError(f"{name} must be real numbers, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.shape[-1:] != (self._dim,) or arr.ndim not in (1, 2):
            raise DimensionMismatchError(f"{name} must have shape ({self._dim},) or (n, {self._dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InvalidVectorError(f"{name} holds NaN or inf")
        return arr

    def _call(self, name: str, *args: int | float) -> Any:
        return self._module.call(name, to_i32(self._ptr), *args)

    def _pass_slice(self, vector: np.ndarray) -> int:
        """Copy one vector into a block the module will own and free (wasm-bindgen's slice argument)."""
        memory = self._module.memory
        at = memory.alloc(vector.nbytes)
        memory.write(at, vector)
        memory.hand_over(at)
        return at

    # ------------------------------------------------------------ the module's operations
    def forward(self, x: object) -> np.ndarray:
        """``x + alpha * (x @ down) @ up`` for one vector (dim,) or each row of (n, dim); float32."""
        arr = self._vector(x, "x")
        rows = arr.reshape(-1, self._dim)
        out = np.empty_like(rows)
        module, memory = self._module, self._module.memory
        with module.lock:
            self._check_open()
            for i, row in enumerate(rows):
                retptr = to_address(int(module.call("__wbindgen_add_to_stack_pointer", -16)))  # type: ignore[arg-type]
                try:
                    at = self._pass_slice(row)
                    module.call("wasmmicrolora_forward_array", to_i32(retptr), to_i32(self._ptr), to_i32(at), self._dim)
                    result_ptr, length = struct.unpack("<ii", memory.read_bytes(retptr, 8))
                finally:
                    if module.poisoned is None:
                        module.call("__wbindgen_add_to_stack_pointer", 16)
                result_at = to_address(result_ptr)
                if length != self._dim:
                    raise BackendError(f"wasmmicrolora_forward_array returned {length} values for dim {self._dim}")
                memory.adopt(result_at, 4 * length)
                try:
                    out[i] = memory.read(result_at, "<f4", length)
                finally:
                    memory.free(result_at)
        return out.reshape(arr.shape)

    def forward_buffered(self, x: object) -> np.ndarray:
        """The module's zero-allocation path: write ``x`` to its input buffer, ``forward()``, read the output.

        Same result as :meth:`forward` for one vector (dim,).
        """
        arr = self._vector(x, "x")
        if arr.ndim != 1:
            raise DimensionMismatchError(f"forward_buffered takes one vector of shape ({self._dim},)")
        memory = self._module.memory
        with self._module.lock:
            self._check_open()
            src = to_address(int(self._call("wasmmicrolora_get_input_ptr")))
            dst = to_address(int(self._call("wasmmicrolora_get_output_ptr")))
            memory.write(src, arr)
            self._call("wasmmicrolora_forward")
            return memory.read(dst, "<f4", self._dim)

    def adapt(self, gradient: object) -> None:
        """One adaptation step of ``up`` from ``gradient`` (dim,) (the module's ``adapt_array``)."""
        grad = self._vector(gradient, "gradient")
        if grad.ndim != 1:
            raise DimensionMismatchError(f"gradient must be one vector of shape ({self._dim},)")
        with self._module.lock:
            self._check_open()
            at = self._pass_slice(grad)
            self._call("wasmmicrolora_adapt_array", to_i32(at), self._dim)

    def adapt_with_reward(self, gradient: object, improvement: float) -> None:
        """Adaptation scaled by ``min(improvement, 2)``; no-op for ``improvement <= 0`` (module semantics)."""
        grad = self._vector(gradient, "gradient")
        if grad.ndim != 1:
            raise DimensionMismatchError(f"gradient must be one vector of shape ({self._dim},)")
        reward = _finite_float("improvement", improvement)
        with self._module.lock:
            self._check_open()
            src = to_address(int(self._call("wasmmicrolora_get_input_ptr")))
            self._module.memory.write(src, grad)
            self._call("wasmmicrolora_adapt_with_reward", reward)

    def reset(self) -> None:
        """Zero ``up`` and the counters (``down`` stays: it is fixed by construction)."""
        with self._module.lock:
            self._check_open()
            self._call("wasmmicrolora_reset")

    @property
    def forward_count(self) -> int:
        """Forward passes since construction or :meth:`reset`."""
        with self._module.lock:
            self._check_open()
            return int(self._call("wasmmicrolora_forward_count")) & ((1 << 64) - 1)

    @property
    def adapt_count(self) -> int:
        """Adaptation steps since construction or :meth:`reset`."""
        with self._module.lock:
            self._check_open()
            return int(self._call("wasmmicrolora_adapt_count")) & ((1 << 64) - 1)

    @property
    def delta_norm(self) -> float:
        """``alpha * |up|`` (Frobenius) as the module reports it."""
        with self._module.lock:
            self._check_open()
            return float(self._call("wasmmicrolora_delta_norm"))

    @property
    def param_count(self) -> int:
        """Parameters the module holds: ``2 * dim`` for ``down`` plus ``2 * 256`` for ``up``'s fixed storage."""
        with self._module.lock:
            self._check_open()
            return int(self._call("wasmmicrolora_param_count")) & 0xFFFFFFFF

    @property
    def memory_bytes(self) -> int:
        """Size of this adapter's wasm linear memory."""
        return self._module.memory_bytes

    def close(self) -> None:
        """Free the adapter and its module instance; idempotent."""
        with self._module.lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._module.poisoned is None:
                    self._module.call("__wbg_wasmmicrolora_free", to_i32(self._ptr), 0)
            finally:
                self._module.close()

    def __enter__(self) -> MicroLoRA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- NumPy reference of the same formulas
def _xorshift_unit(seeds: np.ndarray) -> np.ndarray:
    """The crate's ``pseudo_random``: xorshift32 (13, 17, 5) of each seed, over ``u32::MAX``, in float32."""
    x = seeds.astype(np.uint32)
    x = x ^ (x << np.uint32(13))
    x = x ^ (x >> np.uint32(17))
    x = x ^ (x << np.uint32(5))
    return x.astype(np.float32) / np.float32(4294967295.0)


def reference_down(dim: int) -> np.ndarray:
    """The (dim, 2) down-projection learning-wasm builds for ``dim`` (deterministic; float32)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= int(dim) <= MAX_DIM:
        raise InvalidParameterError(f"dim must be an integer in 1 .. {MAX_DIM}, got {dim!r}")
    scale = np.sqrt(np.float32(2.0) / np.float32(dim)) * np.float32(0.1)
    seeds = np.arange(int(dim), dtype=np.uint32)
    half = scale / np.float32(2.0)
    first = _xorshift_unit(seeds) * scale - half
    second = _xorshift_unit(seeds + np.uint32(1000)) * scale - half
    return np.stack([first, second], axis=1).astype(np.float32)


def reference_forward(x: np.ndarray, down: np.ndarray, up: np.ndarray, alpha: float) -> np.ndarray:
    """``x + alpha * (x @ down) @ up`` in float64, returned as float32 (rows or one vector)."""
    xs = np.asarray(x, dtype=np.float64)
    return (xs + float(alpha) * (xs @ np.asarray(down, np.float64)) @ np.asarray(up, np.float64)).astype(np.float32)


def fast_sqrt(value: float) -> np.float32:
    """The crate's square root: the 0x5f3759df inverse-sqrt seed and one Newton step, in float32."""
    x = np.float32(value)
    if x <= 0:
        return np.float32(0.0)
    bits = np.array([x], dtype=np.float32).view(np.uint32)[0]
    y = np.array([np.uint32(0x5F3759DF) - (bits >> np.uint32(1))], dtype=np.uint32).view(np.float32)[0]
    return np.float32(x * y * (np.float32(1.5) - np.float32(0.5) * x * y * y))


def reference_adapt(
    down: np.ndarray, up: np.ndarray, gradient: np.ndarray, learning_rate: float, improvement: float | None = None
) -> np.ndarray:
    """``up`` after one module adaptation step (``adapt`` or, with ``improvement``, ``adapt_with_reward``)."""
    g = np.asarray(gradient, dtype=np.float32)
    new_up = np.array(up, dtype=np.float32, copy=True)
    lr = np.float32(learning_rate)
    if improvement is not None:
        if improvement <= 0:
            return new_up
        lr = lr * np.float32(min(float(improvement), 2.0))
    norm_sq = np.float32(np.dot(g.astype(np.float64), g.astype(np.float64)))
    if norm_sq < np.float32(1e-16):
        return new_up
    inv = np.float32(1.0) / fast_sqrt(norm_sq)
    col_sum = np.asarray(down, dtype=np.float32).sum(axis=0, dtype=np.float64).astype(np.float32)
    new_up += lr * np.outer(col_sum, g * inv).astype(np.float32)
    return new_up
