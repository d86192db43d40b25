"""The container format and atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ruvector_lab as rl
from ruvector_lab import container


def test_round_trip_of_meta_and_arrays():
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, -2], dtype=np.int64),
              "empty": np.empty((0, 5), dtype=np.uint8)}
    blob = container.dumps("thing", {"x": 1, "name": "ü"}, arrays)
    meta, back = container.loads(blob, "thing")
    assert meta == {"x": 1, "name": "ü"}
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype and np.array_equal(back[name], arr)


def test_object_arrays_are_refused():
    with pytest.raises(rl.InvalidParameterError, match="cannot store"):
        container.dumps("thing", {}, {"o": np.array([object()])})


def test_every_single_byte_flip_is_detected():
    blob = container.dumps("thing", {"k": [1, 2]}, {"a": np.ones(4, dtype=np.float32)})
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x10
        with pytest.raises(rl.CorruptIndexError):
            container.loads(bytes(bad), "thing")


def test_every_truncation_is_detected():
    blob = container.dumps("thing", {}, {"a": np.ones(4, dtype=np.float32)})
    for cut in range(len(blob)):
        with pytest.raises(rl.CorruptIndexError):
            container.loads(blob[:cut], "thing")


def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "index.rvlab"
    container.write_atomic(target, b"first")
    container.write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["index.rvlab"]


def test_index_save_and_load(tmp_path):
    index = rl.HnswIndex(rl.HnswConfig(dimensions=3, metric="euclidean"), backend="numpy")
    index.insert_batch(["a", "b"], [[1, 0, 0], [0, 1, 0]])
    path = index.save(tmp_path / "idx.rvlab")
    loaded = rl.HnswIndex.load(path)
    assert loaded.ids() == ["a", "b"]
    assert loaded.search([0.9, 0, 0], k=1)[0].id == "a"
