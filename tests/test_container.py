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


def _forge(header: bytes | str, arrays: bytes = b"", kind: str = "thing") -> bytes:
    """A container with the given raw header and array bytes and a correct checksum: what a forger writes."""
    import hashlib
    import struct

    raw = header.encode() if isinstance(header, str) else header
    body = (struct.pack("<8sHH", container.MAGIC, container.FORMAT_VERSION, len(kind)) + kind.encode()
            + struct.pack("<I", len(raw)) + raw + arrays)
    return body + hashlib.sha256(body).digest()


def _one_array(shape: str, nbytes: str = "0", dtype: str = '"<f4"', name: str = '"a"') -> str:
    return f'{{"meta":{{}},"arrays":[{{"name":{name},"dtype":{dtype},"shape":{shape},"nbytes":{nbytes}}}]}}'


@pytest.mark.parametrize("header", [
    _one_array("[Infinity]"),
    _one_array("[-Infinity]"),
    _one_array("[NaN]"),
    _one_array("[1e999]"),  # parses to inf
    _one_array("[2.0]", "8"),  # a float where an int belongs
    _one_array("[2]", "8.0"),
    _one_array("[true]", "4"),
    _one_array('"2"', "8"),
    _one_array('["2"]', "8"),
    _one_array("[-1]", "-4"),
    _one_array("[-2, -3]", "24"),  # two negatives whose product matches
    _one_array("[4611686018427387904]", "18446744073709551616"),  # sizes that agree but no blob holds
    _one_array("[0, 99999999999999999999999]"),  # zero-size, yet numpy could not make the shape
    _one_array("[" + ",".join(["1"] * 40) + "]", "4"),  # more dimensions than numpy allows
    _one_array("[1]", "4", dtype='"|O"'),
    _one_array("[1]", "4", dtype='["<f4"]'),
    _one_array("[1]", "4", name="[1]"),
    '{"meta":{},"arrays":[[1, 2]]}',
    '{"meta":{},"arrays":[{"name":"a","dtype":"<f4","shape":[1]}]}',
    '{"meta":{},"arrays":{"a":1}}',
    '{"meta":[],"arrays":[]}',
    '{"meta":{}}',
    "[]",
    '"x"',
    '{"meta":{"x":NaN},"arrays":[]}',
    '{"meta":{"x":' + "1" * 5000 + '},"arrays":[]}',
    '{"meta":{"x":' + "[" * 100_000 + "]" * 100_000 + '},"arrays":[]}',  # JSON nested 100,000 deep
    "[" * 100_000,
    b'{"meta":{"x":"\xff"},"arrays":[]}',  # not UTF-8
    b'\xff\xfe{\x00}\x00',  # UTF-16, which json.loads would otherwise sniff and accept
])
def test_forged_headers_are_corrupt_index_errors(header):
    with pytest.raises(rl.CorruptIndexError):
        container.loads(_forge(header), "thing")


def test_header_sizes_are_bounded_by_the_blob():
    # an array table claiming 2**40 bytes in a blob of a few hundred: refused before numpy allocates anything
    with pytest.raises(rl.CorruptIndexError, match="runs past the end"):
        container.loads(_forge(_one_array("[274877906944]", "1099511627776")), "thing")
    with pytest.raises(rl.CorruptIndexError, match="appears twice"):
        header = '{"meta":{},"arrays":[' + ",".join(['{"name":"a","dtype":"|u1","shape":[1],"nbytes":1}'] * 2) + "]}"
        container.loads(_forge(header, b"xy"), "thing")
    blob = bytearray(_forge(_one_array("[1]", "4"), b"\x00" * 4))
    blob[14:18] = (2**32 - 1).to_bytes(4, "little")  # header_len far past the end (checksum fails first anyway)
    with pytest.raises(rl.CorruptIndexError):
        container.loads(bytes(blob), "thing")


def test_a_forged_header_that_is_well_formed_still_loads():
    meta, arrays = container.loads(_forge(_one_array("[2]", "8"), b"\x00" * 8), "thing")
    assert meta == {} and arrays["a"].shape == (2,)


@pytest.mark.parametrize("bad", ["\ud800", "a\udfffb", "id-\udc80"])
def test_ids_that_utf8_cannot_encode_are_refused_and_save_keeps_working(tmp_path, bad):
    index = rl.HnswIndex(rl.HnswConfig(dimensions=2, metric="euclidean"), backend="numpy")
    with pytest.raises(rl.InvalidIdError, match="UTF-8"):
        index.insert(bad, [1.0, 0.0])
    with pytest.raises(rl.InvalidIdError, match="UTF-8"):
        index.insert_batch(["ok", bad], [[1.0, 0.0], [0.0, 1.0]])
    index.insert("ü-ok", [1.0, 0.0])  # non-ASCII that encodes is fine
    assert rl.HnswIndex.load(index.save(tmp_path / "i.rvlab")).ids() == ["ü-ok"]
