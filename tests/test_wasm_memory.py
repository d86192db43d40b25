"""Linear memory management of the wasm tier: bounded growth under churn, checked access, no leaks."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from helpers import requires_wasm

import ruvector_lab as rl
from ruvector_lab.errors import BackendError
from ruvector_lab.wasm.memory import Scratch, to_address, to_i32
from ruvector_lab.wasm.rvf import RvfModule, RvfStore

pytestmark = requires_wasm()


@pytest.mark.slow
def test_100k_insert_search_delete_calls_keep_memory_within_10_percent():
    dim, live, total_calls = 16, 300, 100_000
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((4096, dim)).astype(np.float32)
    index = rl.HnswIndex(rl.HnswConfig(dimensions=dim, metric="cosine"), backend="wasm")
    backend = index.raw_backend
    ids: deque[str] = deque()
    for i in range(live):
        index.insert(f"seed-{i}", pool[i])
        ids.append(f"seed-{i}")
    after_first_1000 = None
    inserted = searched = deleted = 0
    for call in range(total_calls):
        step = call % 3
        if step == 0:  # insert a new id
            inserted += 1
            ids.append(f"v-{inserted}")
            index.insert(ids[-1], pool[inserted % len(pool)])
        elif step == 1:  # search for it: the vector just inserted comes first
            hits = index.search(pool[inserted % len(pool)], k=10)
            assert hits[0].score < 1e-4
            searched += 1
        else:  # delete the oldest id
            assert index.delete(ids.popleft())
            deleted += 1
        if call + 1 == 1000:
            after_first_1000 = backend.memory_bytes
    final = backend.memory_bytes
    assert inserted + searched + deleted == total_calls and after_first_1000 is not None
    assert abs(final - after_first_1000) <= 0.10 * after_first_1000, (after_first_1000, final)
    assert len(index) == live + inserted - deleted == live + 1
    extra = index.stats().extra
    assert extra["wasm_compactions"] > 0
    # only the fixed scratch buffers stay allocated between calls
    assert backend._module.memory.allocated_blocks == len(backend._module.scratch._slots)
    index.close()


def test_memory_access_is_bounds_checked():
    module = RvfModule()
    memory = module.memory
    with pytest.raises(BackendError, match="outside linear memory"):
        memory.read(memory.size - 4, np.float32, 2)
    with pytest.raises(BackendError, match="outside linear memory"):
        memory.write_bytes(-1, b"x")
    with pytest.raises(BackendError, match="cannot allocate"):
        memory.alloc(0)
    at = memory.alloc(64)
    memory.write(at, np.arange(16, dtype=np.float32))
    np.testing.assert_array_equal(memory.read(at, np.float32, 16), np.arange(16, dtype=np.float32))
    assert memory.read_bytes(at, 4) == b"\0\0\0\0"
    assert (memory.allocated_blocks, memory.allocated_bytes) == (1, 64)
    memory.free(at)
    with pytest.raises(BackendError, match="freed twice"):
        memory.free(at)
    with pytest.raises(BackendError, match="not allocated"):
        memory.hand_over(at)
    assert memory.allocated_blocks == 0
    module.close()


def test_allocations_are_reused_not_leaked():
    module = RvfModule()
    memory = module.memory
    for _ in range(200):
        memory.free(memory.alloc(1 << 20))  # 200 MiB in total, 1 MiB at a time
    assert memory.size < 8 << 20
    module.close()


def test_scratch_grows_and_is_released():
    module = RvfModule()
    scratch = Scratch(module.memory)
    first = scratch.get("a", 100)
    assert scratch.get("a", 50) == first  # big enough: reused
    bigger = scratch.get("a", 1000)
    assert scratch.nbytes >= 1000 and module.memory.allocated_blocks == 1
    assert scratch.get("a", 1000) == bigger
    scratch.get("b", 10)
    scratch.release()
    assert scratch.nbytes == 0 and module.memory.allocated_blocks == 0
    module.close()


def test_address_conversions():
    for address in (0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1):
        assert to_address(to_i32(address)) == address
        assert -(1 << 31) <= to_i32(address) < 1 << 31


def test_closing_a_store_frees_its_vectors_for_reuse():
    module = RvfModule()
    data = np.random.default_rng(1).standard_normal((20_000, 32)).astype(np.float32)
    store = RvfStore.create(module, 32, "euclidean")
    store.ingest(np.arange(len(data), dtype=np.uint64), data)
    store.close()
    high_water = module.memory_bytes
    for _ in range(3):
        again = RvfStore.create(module, 32, "euclidean")
        again.ingest(np.arange(len(data), dtype=np.uint64), data)
        again.close()
    assert module.memory_bytes <= high_water * 1.1
    module.close()
    with pytest.raises(BackendError, match="closed"):
        module.call("rvf_store_count", 1)
