"""RuVector's WebAssembly modules, run in-process by wasmtime: the ``wasm`` tier of ADR-006.

* :mod:`.loader` finds the pinned ``.wasm`` files (``node_modules`` or ``$RUVECTOR_LAB_WASM_DIR``), checks
  their sha256 and the npm lock, and compiles each once per process;
* :mod:`.memory` and :mod:`.instance` manage one instance's linear memory and turn traps into errors;
* :mod:`.rvf` wraps ``@ruvector/rvf-wasm`` (store, fp16/int8 and PQ kernels, int8 dequantize, CRC-32C) and
  :mod:`.kernels` exposes its kernels as functions;
* :mod:`.learning` wraps ``@ruvector/learning-wasm``'s MicroLoRA.

Importing this package needs the ``wasmtime`` Python package (the ``wasm`` extra); the modules themselves
are looked for only when first used.
"""

from __future__ import annotations

from .loader import ENV_WASM_DIR, LEARNING_WASM, RVF_WASM, WasmArtifact, compiled
from .rvf import RvfModule, RvfStore

__all__ = ["ENV_WASM_DIR", "LEARNING_WASM", "RVF_WASM", "RvfModule", "RvfStore", "WasmArtifact", "compiled"]
