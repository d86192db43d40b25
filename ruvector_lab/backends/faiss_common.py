"""What the float (:mod:`.faiss_backend`) and quantized (:mod:`.faiss_quantized`) faiss backends share: their
graph layout, and deletes for faiss indexes, which cannot drop graph nodes (a bitmap of live labels that every
search passes to the graph walk as its selector)."""

from __future__ import annotations

import faiss
import numpy as np

from .layout import expected_upper_levels


def graph_bytes_per_node(m: int) -> float:
    """Bytes of faiss' HNSW structures per node (IndexHNSWFlat and every IndexHNSW* over codes).

    faiss/impl/HNSW.h: one flat ``neighbors`` vector<storage_idx_t = int32>; a node of top level L has
    cum_nneighbor_per_level[L+1] slots = 2M on level 0 plus M per upper level; ``offsets`` vector<size_t>
    (8 bytes) and ``levels`` vector<int> (4 bytes) per node. faiss labels are row numbers: no id map.
    """
    return 4 * (2 * m + m * expected_upper_levels(m)) + 8 + 4


#: LiveBitmap keeps one bool per label
LIVE_FLAG_BYTES = 1.0


def live_selector(live: np.ndarray) -> tuple[np.ndarray, faiss.IDSelector]:
    """A faiss selector that passes the labels whose entry in ``live`` is true, with the bitmap it reads
    (keep both alive together: the selector holds a raw pointer into the bitmap)."""
    bitmap = np.packbits(live, bitorder="little")  # faiss reads bit i of byte i//8, least significant bit first
    return bitmap, faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bitmap))


class LiveBitmap:
    """Deletes for faiss indexes, which cannot drop graph nodes: a live bitmap every search passes as its selector.

    The class using it keeps ``_live`` (bool per label), ``_n_dead``, ``_selector`` and ``_bitmap``.
    """

    _live: np.ndarray
    _n_dead: int

    def _live_view(self) -> np.ndarray:
        """The live flags of the labels the index holds."""
        return self._live

    def remove(self, labels: np.ndarray) -> None:
        """Mark labels dead in the bitmap; the graph keeps the nodes as routing points."""
        self._live[labels] = False
        self._n_dead += len(labels)
        self._refresh_selector()

    def _refresh_selector(self) -> None:
        """Rebuild the live bitmap after a mutation (never during a search: concurrent searches share it)."""
        if not self._n_dead:
            self._selector = self._bitmap = None
            return
        self._bitmap, self._selector = live_selector(self._live_view())
