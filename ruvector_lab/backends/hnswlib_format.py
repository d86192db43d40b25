"""A NumPy parser and checker for hnswlib's ``saveIndex`` file, so a crafted file never reaches hnswlib's loader.

Layout (hnswlib 0.8 ``hnswalg.h`` ``HierarchicalNSW::saveIndex``; all little-endian)::

    u64 offsetLevel0_, u64 max_elements_, u64 cur_element_count, u64 size_data_per_element_,
    u64 label_offset_, u64 offsetData_, i32 maxlevel_, u32 enterpoint_node_, u64 maxM_, u64 maxM0_, u64 M_,
    f64 mult_, u64 ef_construction_                                      (96 bytes)
    cur_element_count x size_data_per_element_ bytes of level-0 records:
        u32 header (u16 neighbour count, u8 deleted mark, u8 unused), maxM0_ x u32 neighbours,
        the vector (dim x f32), u64 label
    per element: u32 linkListSize, then linkListSize bytes = level x (u32 count header, maxM_ x u32 neighbours)

hnswlib's loader trusts every one of these fields (a bad label offset or entry point crashes the process), so
:func:`parse` checks each against the payload's length and the configuration before anything is allocated, and
checks the graph itself: neighbour counts within capacity, neighbours that exist and, on an upper level, reach
that level, an entry point on the top level, finite vectors (unit length under cosine: hnswlib stores them so).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptIndexError
from ..types import HnswConfig
from ..validation import stored_row_flaw

_HEADER = struct.Struct("<6QiI3QdQ")
HEADER_BYTES = _HEADER.size  # 96
_U32 = struct.Struct("<I")
#: hnswlib's DELETE_MARK, in byte 2 of an element's level-0 header
DELETE_MARK = 0x01
#: the most levels a node of a sane graph has (P(level >= L) = M^-L: 64 levels is never reached by chance)
MAX_LEVELS = 64
_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class HnswlibPayload:
    """What :func:`parse` found in a checked hnswlib file (arrays are read-only views or copies of it)."""

    count: int
    dimensions: int
    m: int
    ef_construction: int
    max_elements: int
    max_level: int
    entry_point: int
    mult: float
    size_data_per_element: int
    #: (count, size_data_per_element) uint8: the level-0 records exactly as stored
    level0: np.ndarray
    #: (count, dimensions) float32
    vectors: np.ndarray
    #: (count,) uint64
    labels: np.ndarray
    #: (count,) bool
    deleted: np.ndarray
    #: (count,) int32, levels above 0
    element_levels: np.ndarray
    #: the upper-level link lists of every element, concatenated in element order
    link_lists: bytes

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """``(labels (n,) int64, vectors (n, d) float32)`` of the elements not marked deleted, in element order."""
        keep = ~self.deleted
        return self.labels[keep].astype(np.int64), np.array(self.vectors[keep], dtype=np.float32)


def _fail(message: str) -> CorruptIndexError:
    return CorruptIndexError(f"hnswlib payload: {message}")


def parse(payload: bytes, config: HnswConfig) -> HnswlibPayload:
    """Parse and check an hnswlib file against ``config``; raise :class:`CorruptIndexError` on any disagreement.

    Nothing larger than the payload itself is allocated: every count is checked against the bytes that remain
    before it is used to size an array.
    """
    data = memoryview(payload)
    total = len(data)
    if total < HEADER_BYTES:
        raise _fail(f"{total} bytes is shorter than its {HEADER_BYTES}-byte header")
    (offset_level0, max_elements, count, size_per, label_offset, offset_data, max_level, entry, max_m, max_m0, m,
     mult, ef_construction) = _HEADER.unpack_from(data, 0)
    d = config.dimensions
    # the facade's config built this index: hnswlib's own derived sizes must be exactly what it makes of it
    links0 = 4 + 4 * max_m0
    expected = {
        "offsetLevel0_": (offset_level0, 0),
        "M_": (m, config.m),
        "maxM_": (max_m, config.m),
        "maxM0_": (max_m0, 2 * config.m),
        "offsetData_": (offset_data, links0),
        "label_offset_": (label_offset, links0 + 4 * d),
        "size_data_per_element_": (size_per, links0 + 4 * d + 8),
        "ef_construction_": (ef_construction, config.ef_construction),
    }
    for name, (found, want) in expected.items():
        if found != want:
            raise _fail(f"header field {name} is {found}, the configuration (dimensions={d}, m={config.m}, "
                        f"ef_construction={config.ef_construction}) gives {want}")
    if not (math.isfinite(mult) and math.isclose(mult, 1.0 / math.log(config.m), rel_tol=1e-9)):
        raise _fail(f"level multiplier {mult!r} is not 1/ln(M) for M={config.m}")
    body = total - HEADER_BYTES
    if count > body // (size_per + 4):  # each element costs its record and a 4-byte link-list size at least
        raise _fail(f"claims {count} elements, more than its {total} bytes can hold")
    if max_elements < count:
        raise _fail(f"capacity {max_elements} is below its element count {count}")
    level0_end = HEADER_BYTES + count * size_per
    level0 = np.frombuffer(data, dtype=np.uint8, count=count * size_per, offset=HEADER_BYTES).reshape(count, size_per)

    # upper-level link lists: variable-length, walked once with every size checked against what remains
    size_links = 4 + 4 * max_m
    levels = np.zeros(count, dtype=np.int32)
    starts = np.zeros(count, dtype=np.int64)
    pos = level0_end
    for i in range(count):
        if pos + 4 > total:
            raise _fail(f"ends inside the link-list size of element {i}")
        (size,) = _U32.unpack_from(data, pos)
        pos += 4
        if size % size_links or size // size_links > MAX_LEVELS or size > total - pos:
            raise _fail(f"element {i} has a link-list size of {size} bytes (lists are {size_links} bytes each)")
        levels[i] = size // size_links
        starts[i] = pos
        pos += size
    if pos != total:
        raise _fail(f"{total - pos} bytes follow the last link list")
    # hnswlib's in-memory state keeps the lists without their size prefixes
    links_blob = b"".join(data[int(s): int(s) + int(n) * size_links]
                          for s, n in zip(starts[levels > 0], levels[levels > 0], strict=True))

    if count == 0:
        if max_level != -1:
            raise _fail(f"an empty index has top level {max_level}")
        return HnswlibPayload(0, d, m, ef_construction, max_elements, -1, entry, mult, size_per, level0,
                              np.empty((0, d), np.float32), np.empty(0, np.uint64), np.empty(0, bool),
                              levels, b"")
    if max_level != int(levels.max()) or entry >= count or levels[entry] != max_level:
        raise _fail(f"top level {max_level} and entry point {entry} do not agree with the elements' levels "
                    f"(highest {int(levels.max())})")

    headers = level0[:, :4]
    marks = headers[:, 2]
    if (marks > DELETE_MARK).any() or headers[:, 3].any():
        raise _fail("an element's level-0 header holds flags hnswlib does not write")
    deleted = marks == DELETE_MARK
    counts0 = headers[:, :2].copy().view("<u2")[:, 0]
    _check_lists(counts0, level0[:, 4:links0].copy().view("<u4"), max_m0, levels, 0, count)

    # upper levels: element i's list on level l starts at starts[i] + (l - 1) * size_links (relative to the file)
    raw = np.frombuffer(data, dtype=np.uint8)
    for level in range(1, max_level + 1):
        at = starts[levels >= level] + (level - 1) * size_links
        lists = raw[at[:, None] + np.arange(size_links)]
        counts = lists[:, :2].copy().view("<u2")[:, 0]
        _check_lists(counts, lists[:, 4:].copy().view("<u4"), max_m, levels, level, count)

    vectors = level0[:, offset_data:label_offset].copy().view("<f4")
    flaw = stored_row_flaw(vectors)  # the insert rule: finite, with a finite float32 squared norm
    if flaw is not None:
        raise _fail(f"a stored vector no insert accepts: {flaw}")
    if config.metric == "cosine":
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        if (np.abs(norms - 1.0) > _NORM_TOLERANCE).any():
            raise _fail("stored vectors are not unit length, so they were not written under the cosine metric")
    labels = level0[:, label_offset:].copy().view("<u8")[:, 0]
    if (labels >= np.uint64(1 << 63)).any() or len(np.unique(labels)) != count:
        raise _fail("element labels repeat or do not fit an int64")
    return HnswlibPayload(count, d, m, ef_construction, max_elements, max_level, entry, mult, size_per, level0,
                          vectors, labels, deleted, levels, links_blob)


def _check_lists(counts: np.ndarray, slots: np.ndarray, capacity: int, levels: np.ndarray, level: int,
                 count: int) -> None:
    """Neighbour lists of the nodes on ``level``: each count within ``capacity``, each listed neighbour a node that
    exists and has this level (a search on level L reads the neighbours' own level-L lists)."""
    if (counts > capacity).any():
        raise _fail(f"a level-{level} list holds more than its {capacity} neighbours")
    used = slots[np.arange(capacity)[None, :] < counts[:, None]]
    if (used >= count).any():
        raise _fail(f"a level-{level} list links to an element that does not exist")
    if level and (levels[used] < level).any():
        raise _fail(f"a level-{level} list links to an element below that level")


def check_labels(parsed: HnswlibPayload, live_labels: np.ndarray) -> None:
    """The elements not marked deleted must carry exactly the facade's live labels."""
    live = np.sort(parsed.labels[~parsed.deleted].astype(np.int64))
    if not np.array_equal(live, np.sort(np.asarray(live_labels, dtype=np.int64))):
        raise CorruptIndexError(
            f"hnswlib payload holds {len(live)} live labels that do not match the index's {len(live_labels)}")


def index_state(parsed: HnswlibPayload, space: str, ef: int, capacity: int) -> dict[str, object]:
    """The state dict hnswlib's ``Index(params)`` constructor takes (python_bindings ``createFromParams``), built
    from a checked payload: the native side allocates ``capacity`` records and copies these arrays, nothing more."""
    element_levels = np.zeros(capacity, dtype=np.int32)
    element_levels[: parsed.count] = parsed.element_levels
    return {
        "ser_version": 1, "space": space, "dim": parsed.dimensions, "index_inited": True,
        "ep_added": parsed.count > 0, "normalize": space == "cosine", "num_threads": 1, "seed": 100,
        "offset_level0": 0, "max_elements": capacity, "cur_element_count": parsed.count,
        "size_data_per_element": parsed.size_data_per_element, "label_offset": parsed.size_data_per_element - 8,
        "offset_data": 4 + 8 * parsed.m, "max_level": parsed.max_level, "enterpoint_node": parsed.entry_point,
        "max_M": parsed.m, "max_M0": 2 * parsed.m, "M": parsed.m, "mult": parsed.mult,
        "ef_construction": parsed.ef_construction, "ef": ef, "has_deletions": bool(parsed.deleted.any()),
        "size_links_per_element": 4 + 4 * parsed.m, "allow_replace_deleted": False,
        "label_lookup_external": parsed.labels.astype(np.uint64),
        "label_lookup_internal": np.arange(parsed.count, dtype=np.uint32),
        "element_levels": element_levels,
        "data_level0": np.ascontiguousarray(parsed.level0).view(np.int8).reshape(-1),
        "link_lists": np.frombuffer(parsed.link_lists, dtype=np.int8),
    }
