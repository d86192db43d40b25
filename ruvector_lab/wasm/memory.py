"""Typed, bounds-checked access to a WebAssembly instance's linear memory, and ownership of what we allocate.

The modules hand out raw 32-bit addresses. Every read and write here checks the address range against the
memory's current size before touching it, so a wrong pointer becomes a :class:`BackendError`, not a read of
the host's memory. :class:`LinearMemory` counts the blocks it allocated through the module's own allocator
(``rvf_alloc``/``rvf_free``, or wasm-bindgen's malloc/free) so tests can prove nothing leaks, and
:class:`Scratch` keeps a few grow-only buffers for the hot paths (one query, one result list) so a search
does not allocate at all.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import wasmtime

from ..errors import BackendError

#: wasm32 addresses are unsigned 32-bit; the C ABI passes them as signed i32
ADDRESS_SPACE = 1 << 32


def to_i32(address: int) -> int:
    """An unsigned 32-bit address as the signed i32 the C ABI takes."""
    return address - ADDRESS_SPACE if address >= 1 << 31 else address


def to_address(value: int) -> int:
    """A signed i32 returned by the module as the unsigned address it means."""
    return value & (ADDRESS_SPACE - 1)


class LinearMemory:
    """One instance's exported memory plus the allocator functions the module exports.

    ``alloc(nbytes) -> address`` and ``free(address, nbytes)`` are the module's; this class refuses sizes the
    module cannot take, turns a null result into :class:`BackendError`, and tracks what is still allocated.
    """

    def __init__(
        self,
        store: wasmtime.Store,
        memory: wasmtime.Memory,
        alloc: Callable[[int], int],
        free: Callable[[int, int], None],
        name: str,
    ) -> None:
        self._store = store
        self._memory = memory
        self._alloc = alloc
        self._free = free
        self._name = name
        self._live: dict[int, int] = {}

    @property
    def size(self) -> int:
        """Current size of the linear memory in bytes (it only ever grows)."""
        return self._memory.data_len(self._store)

    @property
    def allocated_blocks(self) -> int:
        """Blocks allocated through this object and not yet freed."""
        return len(self._live)

    @property
    def allocated_bytes(self) -> int:
        """Bytes allocated through this object and not yet freed."""
        return sum(self._live.values())

    def _base(self) -> int:
        # fetched on every access: memory.grow inside any call may move the host mapping
        return ctypes.addressof(self._memory.data_ptr(self._store).contents)

    def _check_range(self, address: int, nbytes: int) -> None:
        if address < 0 or nbytes < 0 or address + nbytes > self.size:
            raise BackendError(
                f"{self._name}: address range [{address}, {address + nbytes}) lies outside linear memory "
                f"of {self.size} bytes"
            )

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` (> 0) inside the module; return the address."""
        if nbytes <= 0 or nbytes >= 1 << 31:
            raise BackendError(f"{self._name}: cannot allocate {nbytes} bytes (the module takes 1 .. 2**31-1)")
        address = to_address(self._alloc(nbytes))
        if address == 0:
            raise BackendError(f"{self._name}: out of linear memory allocating {nbytes} bytes")
        self._live[address] = nbytes
        return address

    def free(self, address: int) -> None:
        """Return a block from :meth:`alloc` to the module's allocator."""
        nbytes = self._live.pop(address, None)
        if nbytes is None:
            raise BackendError(f"{self._name}: address {address} was not allocated here or was freed twice")
        self._free(to_i32(address), nbytes)

    def adopt(self, address: int, nbytes: int) -> None:
        """Take ownership of a block the module allocated itself (e.g. a returned Vec) so it gets freed."""
        self._check_range(address, nbytes)
        self._live[address] = nbytes

    def hand_over(self, address: int) -> None:
        """Stop tracking a block whose ownership passed into the module (it frees the block itself)."""
        if self._live.pop(address, None) is None:
            raise BackendError(f"{self._name}: address {address} was not allocated here")

    def write(self, address: int, array: np.ndarray) -> None:
        """Copy a C-contiguous numpy array's bytes to ``address``."""
        data = np.ascontiguousarray(array)
        self._check_range(address, data.nbytes)
        if data.nbytes:
            ctypes.memmove(self._base() + address, data.ctypes.data, data.nbytes)

    def write_bytes(self, address: int, data: bytes) -> None:
        """Copy raw bytes to ``address``."""
        self._check_range(address, len(data))
        if data:
            ctypes.memmove(self._base() + address, data, len(data))

    def read(self, address: int, dtype: np.dtype | type, count: int) -> np.ndarray:
        """A copy of ``count`` items of ``dtype`` stored at ``address``."""
        dt = np.dtype(dtype)
        out = np.empty(count, dtype=dt)
        self._check_range(address, out.nbytes)
        if out.nbytes:
            ctypes.memmove(out.ctypes.data, self._base() + address, out.nbytes)
        return out

    def read_bytes(self, address: int, nbytes: int) -> bytes:
        """A copy of ``nbytes`` raw bytes at ``address``."""
        self._check_range(address, nbytes)
        return ctypes.string_at(self._base() + address, nbytes) if nbytes else b""


class Scratch:
    """Named grow-only buffers inside one module, reused call after call (freed on :meth:`release`)."""

    def __init__(self, memory: LinearMemory) -> None:
        self._memory = memory
        self._slots: dict[str, tuple[int, int]] = {}

    def get(self, name: str, nbytes: int) -> int:
        """Address of buffer ``name`` with room for at least ``nbytes`` (grown by half again when too small)."""
        nbytes = max(int(nbytes), 8)
        slot = self._slots.get(name)
        if slot is not None and slot[1] >= nbytes:
            return slot[0]
        if slot is not None:
            self._memory.free(slot[0])
            del self._slots[name]
        grown = min((slot[1] * 3) // 2, (1 << 31) - 8) if slot else 0
        size = max(nbytes, grown)
        address = self._memory.alloc(size)
        self._slots[name] = (address, size)
        return address

    def release(self) -> None:
        """Free every buffer."""
        for address, _ in self._slots.values():
            self._memory.free(address)
        self._slots.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(size for _, size in self._slots.values())
