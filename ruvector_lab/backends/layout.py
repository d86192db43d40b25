"""Sizes the backends' memory layouts are built from: CPython object costs and the HNSW level law.

Each backend states its own layout (:meth:`~ruvector_lab.backends.base.IndexBackend.memory_layout`) from these;
:mod:`ruvector_lab.bench.memory` compares the sum with what a build really adds to a fresh process.
"""

from __future__ import annotations

import sys
from typing import Any


# CPython object sizes (64-bit): pymalloc hands out blocks in multiples of 16 bytes.
def _block(size: int) -> int:
    return -(-size // 16) * 16


#: an int object above the small-int cache (28 bytes for one 30-bit digit)
PY_INT = _block(sys.getsizeof(1 << 20))
#: a compact ASCII str of up to 14 characters: every ``str(i)`` id below 10**14
PY_STR = _block(sys.getsizeof("12345678901234"))
#: a list slot: one pointer, with list over-allocation of about 1/8
PY_LIST_SLOT = 8 * 1.125
# dict: an entries array of 2/3 of the hash table, a table of index slots (4 bytes from 2**16 slots), and a
# table that grows to next_pow2(3 * used) when full (CPython Objects/dictobject.c GROWTH_RATE): on average
# about 1.5 entries and 2.25 index slots per item. Entries are 16 bytes in all-str-key dicts (3.11+), else 24.
DICT_PER_ITEM_STR = 1.5 * (16 if sys.version_info >= (3, 11) else 24) + 2.25 * 4
DICT_PER_ITEM = 1.5 * 24 + 2.25 * 4
#: set: 16-byte (key, hash) slots, at most 3/5 full, growing x4 (x2 beyond 50k items): about 3 slots per item
SET_PER_ITEM = 3 * 16
#: a backend's ``dict[int, int]`` label -> row map (numpy, quantized flat): entry plus two int objects
ROW_MAP_PER_VECTOR = DICT_PER_ITEM + 2 * PY_INT
#: the facade (ruvector_lab/index.py): ``_ids`` list slot -> the id str, ``_labels`` str -> int dict, whose
#: int values come from ``labels.tolist()`` (new int objects), and ``_id_table`` (an object array of the same str
#: pointers for batch searches, one 8-byte slot); the str objects are shared by all three maps
FACADE_IDS_PER_VECTOR = PY_LIST_SLOT + PY_STR + DICT_PER_ITEM_STR + PY_INT + 8
#: glibc malloc's per-chunk cost rounded: what one separately malloc'd block adds
MALLOC_OVERHEAD = 16


def expected_upper_levels(m: int) -> float:
    """Expected number of levels above 0 per node with the usual ``mult = 1/ln(M)`` level distribution.

    A node's level is ``floor(-ln(U) * mult)``, so ``P(level >= l) = M**-l``, and the expected level is
    ``sum_{l >= 1} M**-l = 1/(M-1)`` (hnswlib ``getRandomLevel``, faiss ``HNSW::set_default_probas``, hnsw_rs
    ``LayerGenerator`` and usearch all use this law).
    """
    return 1.0 / (m - 1)


def empty_stats(cls: type, config: Any) -> dict[str, Any]:
    """A quantized backend's own memory figures (``stats_extra``) read from an empty instance: code and float
    bytes per vector, trained state."""
    backend = cls(config)
    try:
        return dict(backend.stats_extra())
    finally:
        backend.close()
