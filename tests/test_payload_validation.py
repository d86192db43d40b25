"""Issue 18, part A: every backend payload is parsed and checked before a native reader sees it.

The crafted files here edit real payloads and recompute the container's checksum, as a user editing a file on
purpose would. Cases that used to crash the process run in a child process, which must exit 0 having seen a
typed :class:`CorruptIndexError` for every one of them.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ruvector_lab as rl
from ruvector_lab import container
from ruvector_lab.errors import CorruptIndexError, RuvectorLabError
from ruvector_lab.index import CONTAINER_KIND

N = 120


def _config(metric: str = "euclidean", dimensions: int = 16, **extra: object) -> rl.HnswConfig:
    return rl.HnswConfig(dimensions=dimensions, m=8, ef_construction=64, ef_search=200, metric=metric, **extra)


def _built(backend: str, config: rl.HnswConfig, n: int = N, seed: int = 5) -> tuple[rl.HnswIndex, np.ndarray]:
    data = np.random.default_rng(seed).standard_normal((n, config.dimensions)).astype(np.float32)
    index = rl.HnswIndex(config, backend=backend)
    index.insert_batch([f"v{i}" for i in range(n)], data)
    for i in range(0, n, 11):
        index.delete(f"v{i}")
    index.insert("v1", 0.5 * (data[2] + data[3]))  # a replace: one more tombstone
    return index, data


def _parts(blob: bytes) -> tuple[dict, dict]:
    meta, arrays = container.loads(blob, CONTAINER_KIND)
    return meta, arrays


def _reblob(meta: dict, arrays: dict, payload: bytes | None = None, config: dict | None = None) -> bytes:
    """The index container rebuilt with a new payload or config, checksum recomputed."""
    meta = dict(meta)
    arrays = dict(arrays)
    if payload is not None:
        arrays["payload"] = np.frombuffer(payload, dtype=np.uint8)
    if config is not None:
        meta["config"] = config
    return container.dumps(CONTAINER_KIND, meta, arrays)


def _with_config(blob: bytes, **changes: object) -> bytes:
    meta, arrays = _parts(blob)
    return _reblob(meta, arrays, config={**meta["config"], **changes})


def _with_payload(blob: bytes, payload: bytes) -> bytes:
    meta, arrays = _parts(blob)
    return _reblob(meta, arrays, payload=payload)


def _payload(blob: bytes) -> bytearray:
    return bytearray(_parts(blob)[1]["payload"].tobytes())


def _ids(results: list) -> list[tuple[float, str]]:
    """Results as (score, id), ties in id order (the replaced id shares its vector with another)."""
    return sorted((round(r.score, 4), r.id) for r in results)


# ------------------------------------------------------------------ trust_native=False on good files
@pytest.mark.parametrize("backend", ["faiss", "hnswlib", "usearch", "numpy", "ruvector"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_untrusted_load_answers_like_the_default(backend: str, metric: str) -> None:
    index, data = _built(backend, _config(metric))
    blob = index.serialize()
    trusted = rl.HnswIndex.deserialize(blob)
    rebuilt = rl.HnswIndex.deserialize(blob, trust_native=False)
    assert len(trusted) == len(rebuilt) == len(index)
    for q in data[:10]:
        assert _ids(rebuilt.search(q, k=5)) == _ids(trusted.search(q, k=5)) == _ids(index.search(q, k=5))
    rebuilt.insert("new", data[3])  # the rebuilt index keeps working
    assert {r.id for r in rebuilt.search(data[3], k=2)} == {"new", "v3"}


@pytest.mark.parametrize("kind", ["scalar", "int4", "product", "binary"])
def test_untrusted_load_of_faiss_codes(kind: str) -> None:
    q = rl.QuantizationConfig(kind=kind, m=4) if kind == "product" else rl.QuantizationConfig(kind=kind)
    index, data = _built("faiss", _config("cosine", quantization=q), n=300)
    blob = index.serialize()
    rebuilt = rl.HnswIndex.deserialize(blob, trust_native=False)
    trusted = rl.HnswIndex.deserialize(blob)
    hits = [len(set(_ids(rebuilt.search(x, k=5))) & set(_ids(trusted.search(x, k=5)))) for x in data[:20]]
    assert np.mean(hits) >= 4.0


def test_hnswlib_load_needs_no_temporary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    index, data = _built("hnswlib", _config())
    blob = index.serialize()
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("from_bytes made a temporary file")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    again = rl.HnswIndex.deserialize(blob)
    assert _ids(again.search(data[4], k=3)) == _ids(index.search(data[4], k=3))


# ------------------------------------------------------------------ header against payload
_METRICS = ("euclidean", "cosine", "dot_product")
_SERVING = [(backend, None) for backend in ("faiss", "hnswlib", "usearch", "numpy", "ruvector", "wasm")] + [
    ("faiss", kind) for kind in ("scalar", "int4", "product", "binary", "rabitq")] + [
    ("usearch", "scalar"), ("usearch", "binary"), ("numpy", "int4"), ("numpy", "product"), ("wasm", "scalar"),
    ("ruvector", "rabitq")]


@pytest.mark.parametrize(("backend", "kind"), _SERVING)
@pytest.mark.parametrize(("written", "claimed"), [(a, b) for a in _METRICS for b in _METRICS if a != b])
def test_header_metric_that_disagrees_with_the_payload_is_refused(backend: str, kind: str | None, written: str,
                                                                  claimed: str) -> None:
    """Every payload knows the metric it was written under: a header edited to another one is refused (or,
    where the codec cannot serve the claimed metric at all, refused as a quantization error)."""
    q = None if kind is None else (rl.QuantizationConfig(kind=kind, m=4) if kind == "product"
                                   else rl.QuantizationConfig(kind=kind))
    try:
        index, _ = _built(backend, _config(written, quantization=q))
    except RuvectorLabError:
        pytest.skip(f"{backend} {kind} does not serve {written}")
    with pytest.raises(RuvectorLabError, match=r"metric|serve"):
        rl.HnswIndex.deserialize(_with_config(index.serialize(), metric=claimed))


@pytest.mark.parametrize(("backend", "kind"), [("faiss", "scalar"), ("faiss", "rabitq"), ("usearch", "binary"),
                                               ("numpy", "int4"), ("wasm", "product")])
@pytest.mark.parametrize(("written", "claimed"), [(4, 0), (0, 4), (4, 9)])
def test_header_rerank_that_disagrees_with_the_payload_is_refused(backend: str, kind: str, written: int,
                                                                  claimed: int) -> None:
    """The rerank depth decides whether float rows were kept and whether scores are exact: a header edited to
    another depth would change every score without an error."""
    q = rl.QuantizationConfig(kind=kind, m=4) if kind == "product" else rl.QuantizationConfig(kind=kind)
    metric = "euclidean" if kind == "rabitq" else "cosine"
    index, _ = _built(backend, _config(metric, quantization=q, rerank=written))
    with pytest.raises(CorruptIndexError, match=f"rerank {written}, the index header says {claimed}"):
        rl.HnswIndex.deserialize(_with_config(index.serialize(), rerank=claimed))


@pytest.mark.parametrize("backend", ["faiss", "hnswlib", "wasm"])
def test_bare_library_payload_written_before_the_metric_was_kept_still_loads(backend: str) -> None:
    """Files saved before the payload recorded its metric hold the library's bytes alone: nothing is lost."""
    index, data = _built(backend, _config("dot_product"))
    blob = index.serialize()
    bare = container.loads(bytes(_payload(blob)), f"{backend}-backend")[1]["native"].tobytes()
    old = rl.HnswIndex.deserialize(_with_payload(blob, bare))
    assert _ids(old.search(data[9], k=5)) == _ids(index.search(data[9], k=5))


def test_faiss_euclidean_header_over_inner_product_payload_is_refused() -> None:
    index, _ = _built("faiss", _config("dot_product"))
    with pytest.raises(CorruptIndexError, match="metric"):
        rl.HnswIndex.deserialize(_with_config(index.serialize(), metric="euclidean"))


@pytest.mark.parametrize("backend", ["faiss", "hnswlib", "usearch", "numpy", "ruvector"])
def test_dimension_header_that_disagrees_is_refused(backend: str) -> None:
    index, _ = _built(backend, _config(dimensions=32))
    with pytest.raises(CorruptIndexError):
        rl.HnswIndex.deserialize(_with_config(index.serialize(), dimensions=64))


@pytest.mark.parametrize("backend", ["faiss", "hnswlib"])
@pytest.mark.parametrize("field", ["m", "ef_construction"])
def test_graph_parameters_that_disagree_are_refused(backend: str, field: str) -> None:
    index, _ = _built(backend, _config())
    with pytest.raises(CorruptIndexError):
        rl.HnswIndex.deserialize(_with_config(index.serialize(), **{field: 12}))


@pytest.mark.parametrize("backend", ["faiss", "hnswlib", "usearch", "numpy"])
def test_payload_of_another_count_is_refused(backend: str) -> None:
    big, _ = _built(backend, _config(), n=N)
    small, _ = _built(backend, _config(), n=N - 20)
    with pytest.raises(CorruptIndexError):
        rl.HnswIndex.deserialize(_with_payload(big.serialize(), bytes(_payload(small.serialize()))))


# ------------------------------------------------------------------ non-finite stored vectors
def _in_native(kind: str, edit: object) -> object:
    """A payload edit applied to the library's own bytes inside a ``dump_native`` payload."""
    def mangle(payload: bytearray) -> None:
        meta, arrays = container.loads(bytes(payload), kind)
        raw = bytearray(arrays["native"].tobytes())
        edit(raw)  # type: ignore[operator]
        arrays["native"] = np.frombuffer(bytes(raw), dtype=np.uint8)
        payload[:] = container.dumps(kind, meta, arrays)
    return mangle


def _nan_at_first_hnswlib_vector(raw: bytearray) -> None:
    # after the 96-byte header, the level-0 links (4 + 2M*4 bytes)
    struct.pack_into("<f", raw, 96 + 4 + 2 * 8 * 4 + 4 * 3, float("nan"))


_nan_in_hnswlib = _in_native("hnswlib-backend", _nan_at_first_hnswlib_vector)


def _nan_at_last_faiss_vector(raw: bytearray) -> None:
    # the flat storage's rows are the payload's last ntotal * d floats
    struct.pack_into("<f", raw, len(raw) - 4 * 7, float("nan"))


_nan_in_faiss = _in_native("faiss-backend", _nan_at_last_faiss_vector)


def _nan_in_usearch(payload: bytearray) -> None:
    meta, arrays = container.loads(bytes(payload), "usearch-backend")
    raw = bytearray(arrays["usearch"].tobytes())
    struct.pack_into("<f", raw, 8 + 4 * 5, float("nan"))
    arrays["usearch"] = np.frombuffer(bytes(raw), dtype=np.uint8)
    payload[:] = container.dumps("usearch-backend", meta, arrays)


def _nan_in_rows(kind: str) -> object:
    def mangle(payload: bytearray) -> None:
        meta, arrays = container.loads(bytes(payload), kind)
        vectors = arrays["vectors"].copy()
        vectors[3, 5] = np.nan
        arrays["vectors"] = vectors
        payload[:] = container.dumps(kind, meta, arrays)
    return mangle


@pytest.mark.parametrize(("backend", "mangle"), [
    ("hnswlib", _nan_in_hnswlib), ("faiss", _nan_in_faiss), ("usearch", _nan_in_usearch),
    ("numpy", _nan_in_rows("numpy-backend")), ("ruvector", _nan_in_rows("ruvector-backend")),
])
def test_nan_in_a_stored_vector_is_refused(backend: str, mangle: object) -> None:
    index, _ = _built(backend, _config())
    blob = index.serialize()
    payload = _payload(blob)
    mangle(payload)  # type: ignore[operator]
    for trust in (True, False):
        with pytest.raises(CorruptIndexError, match=r"NaN|non-finite"):
            rl.HnswIndex.deserialize(_with_payload(blob, bytes(payload)), trust_native=trust)


# ------------------------------------------------------------------ faiss length fields
def test_faiss_length_field_past_the_end_never_reaches_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config("cosine", quantization=rl.QuantizationConfig(kind="binary"))
    index, _ = _built("faiss", config)
    blob = index.serialize()
    meta, arrays = container.loads(bytes(_payload(blob)), "faiss-quantized-backend")
    raw = bytearray(arrays["faiss"].tobytes())
    # IBHf, binary header (4 + 4 + 8 + 1 + 4 bytes), then assign_probas' u64 length: flip a high bit
    raw[4 + 21 + 4] ^= 0x10
    arrays["faiss"] = np.frombuffer(bytes(raw), dtype=np.uint8)
    crafted = _with_payload(blob, container.dumps("faiss-quantized-backend", meta, arrays))
    import faiss

    def never(*args: object) -> None:
        raise AssertionError("faiss' reader saw a payload with a length past its end")

    monkeypatch.setattr(faiss, "deserialize_index_binary", never)
    with pytest.raises(CorruptIndexError, match="length field"):
        rl.HnswIndex.deserialize(crafted)


def _faiss_rabitq_with_factors(row: int, factors: tuple[float, float]) -> bytes:
    """A faiss RaBitQ index whose code ``row`` ends in the given f32 correction factors."""
    from ruvector_lab.backends import faiss_format

    index, _ = _built("faiss", _config("euclidean", quantization=rl.QuantizationConfig(kind="rabitq")))
    blob = index.serialize()
    meta, arrays = container.loads(bytes(_payload(blob)), "faiss-quantized-backend")
    raw = bytearray(arrays["faiss"].tobytes())
    parsed = faiss_format.parse_index(bytes(raw), fourcc=b"IHNr", d=16, metric=1, m=8, ef_construction=64)
    codes = parsed.parts["codes"]
    start = bytes(raw).find(codes.tobytes())  # the codes array, as parsed out of this very payload
    at = start + (row + 1) * parsed.fields["code_size"] - faiss_format.RABITQ_FACTOR_BYTES
    struct.pack_into("<ff", raw, at, *factors)
    arrays["faiss"] = np.frombuffer(bytes(raw), dtype=np.uint8)
    return _with_payload(blob, container.dumps("faiss-quantized-backend", meta, arrays))


@pytest.mark.parametrize(("factors", "message"), [
    ((float("nan"), 1.0), "correction factors"),
    ((1.0, float("inf")), "correction factors"),
    ((-4.0, 1.0), "correction factors"),
    ((3.0e38, 3.0e38), "decode to a vector no insert accepts"),  # finite factors, rows past float32
])
def test_faiss_rabitq_codes_whose_factors_decode_non_finite_are_refused(factors: tuple[float, float],
                                                                        message: str) -> None:
    """A RaBitQ code carries its own scale: spliced or edited factors decoded to NaN rows that then loaded."""
    crafted = _faiss_rabitq_with_factors(7, factors)
    for trust in (True, False):
        with pytest.raises(CorruptIndexError, match=message):
            rl.HnswIndex.deserialize(crafted, trust_native=trust)


# ------------------------------------------------------------------ the backend boundary
class _Panic(BaseException):
    """Stands for pyo3's PanicException, which derives from BaseException."""


@pytest.mark.parametrize(("raised", "expected"), [(_Panic("boom"), CorruptIndexError),
                                                  (MemoryError("huge"), CorruptIndexError),
                                                  (KeyboardInterrupt(), KeyboardInterrupt)])
def test_library_base_exceptions_become_corrupt_index(monkeypatch: pytest.MonkeyPatch, raised: BaseException,
                                                      expected: type[BaseException]) -> None:
    index, _ = _built("numpy", _config())
    blob = index.serialize()
    from ruvector_lab.backends.numpy_backend import NumpyBackend

    def explode(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(NumpyBackend, "from_bytes", classmethod(explode))
    with pytest.raises(expected):
        rl.HnswIndex.deserialize(blob)


# ------------------------------------------------------------------ crafted files, in a child process
_CHILD = textwrap.dedent("""
    import json, struct, sys
    import numpy as np
    import ruvector_lab as rl
    from ruvector_lab import container
    from ruvector_lab.errors import CorruptIndexError
    from ruvector_lab.index import CONTAINER_KIND

    def reblob(blob, payload):
        meta, arrays = container.loads(blob, CONTAINER_KIND)
        arrays["payload"] = np.frombuffer(bytes(payload), dtype=np.uint8)
        return container.dumps(CONTAINER_KIND, meta, arrays)

    def built(backend, config, n=150):
        data = np.random.default_rng(1).standard_normal((n, config.dimensions)).astype(np.float32)
        index = rl.HnswIndex(config, backend=backend)
        index.insert_batch([f"v{i}" for i in range(n)], data)
        index.delete("v7")
        return index, data

    outcomes = {}
    def attempt(name, blob, data):
        try:
            index = rl.HnswIndex.deserialize(blob)
            index.search(data[0], k=5)  # the first search is where a bad entry point used to crash
            outcomes[name] = "loaded"
        except CorruptIndexError:
            outcomes[name] = "CorruptIndexError"
        except BaseException as exc:
            outcomes[name] = type(exc).__name__
""")

_HNSWLIB_CASES = textwrap.dedent("""
    config = rl.HnswConfig(dimensions=8, m=4, ef_construction=32, ef_search=32, metric="euclidean")
    index, data = built("hnswlib", config)
    blob = index.serialize()
    meta, arrays = container.loads(blob, CONTAINER_KIND)
    from ruvector_lab.backends.base import dump_native
    good = bytearray(container.loads(arrays["payload"].tobytes(), "hnswlib-backend")[1]["native"].tobytes())
    wrap = lambda raw: dump_native("hnswlib-backend", bytes(raw), "euclidean")
    per = 4 + 8 * 4 + 8 * 4 + 8      # level-0 record: header, 2M links, 8 floats, label
    count = struct.unpack_from("<Q", good, 16)[0]
    links_at = 96 + count * per
    fields = {"offsetLevel0": (0, "<Q"), "max_elements": (8, "<Q"), "cur_element_count": (16, "<Q"),
              "size_data_per_element": (24, "<Q"), "label_offset": (32, "<Q"), "offsetData": (40, "<Q"),
              "maxlevel": (48, "<i"), "enterpoint": (52, "<I"), "maxM": (56, "<Q"), "maxM0": (64, "<Q"),
              "M": (72, "<Q"), "mult": (80, "<d"), "ef_construction": (88, "<Q")}
    for name, (at, fmt) in fields.items():
        for value in ((1 << 40) if fmt != "<d" else 1e300, 3 if fmt != "<d" else float("nan"), 0):
            payload = bytearray(good)
            try:
                struct.pack_into(fmt, payload, at, value if fmt not in ("<i",) else int(value) & 0x7FFFFFFF)
            except struct.error:
                struct.pack_into(fmt, payload, at, 7)
            if payload != good:
                attempt(f"{name}={value}", reblob(blob, wrap(payload)), data)
    # a level-0 neighbour that does not exist, a count beyond capacity, a stray flag byte
    for name, at, fmt, value in [("link0", 96 + 4, "<I", 10**6), ("count0", 96, "<H", 9),
                                 ("flag", 96 + 2, "<B", 7), ("unused", 96 + 3, "<B", 1)]:
        payload = bytearray(good)
        struct.pack_into(fmt, payload, at, value)
        attempt(name, reblob(blob, wrap(payload)), data)
    # the first element with upper levels: its link-list size, and a link to a node below its level
    pos = links_at
    for i in range(count):
        size = struct.unpack_from("<I", good, pos)[0]
        if size:
            for name, at, fmt, value in [("linksize", pos, "<I", size + 4), ("linksize-huge", pos, "<I", 1 << 31),
                                         ("upper-count", pos + 4, "<H", 99), ("upper-link", pos + 8, "<I", 7)]:
                payload = bytearray(good)
                struct.pack_into("<H", payload, pos + 4, max(1, struct.unpack_from("<H", good, pos + 4)[0]))
                struct.pack_into(fmt, payload, at, value)
                attempt(name, reblob(blob, wrap(payload)), data)
            break
        pos += 4
    attempt("truncated", reblob(blob, wrap(good[:-3])), data)
    attempt("extended", reblob(blob, wrap(good + b"\\0" * 4)), data)
""")

_FAISS_CASES = textwrap.dedent("""
    config = rl.HnswConfig(dimensions=8, m=4, ef_construction=32, ef_search=32, metric="euclidean")
    index, data = built("faiss", config)
    blob = index.serialize()
    meta, arrays = container.loads(blob, CONTAINER_KIND)
    from ruvector_lab.backends.base import dump_native
    good = container.loads(arrays["payload"].tobytes(), "faiss-backend")[1]["native"].tobytes()
    rng = np.random.default_rng(0)
    for trial in range(300):   # single bit flips anywhere in the graph and headers
        payload = bytearray(good)
        at = int(rng.integers(0, len(good) - 150 * 8 * 4))
        payload[at] ^= 1 << int(rng.integers(0, 8))
        attempt(f"flip{trial}@{at}", reblob(blob, dump_native("faiss-backend", bytes(payload), "euclidean")), data)
""")

_USEARCH_CASES = textwrap.dedent("""
    config = rl.HnswConfig(dimensions=8, m=4, ef_construction=32, ef_search=32, metric="euclidean")
    index, data = built("usearch", config)
    blob = index.serialize()
    meta, arrays = container.loads(blob, CONTAINER_KIND)
    inner_meta, inner = container.loads(arrays["payload"].tobytes(), "usearch-backend")
    good = bytes(inner["usearch"].tobytes())
    rng = np.random.default_rng(0)
    for trial in range(200):
        raw = bytearray(good)
        at = int(rng.integers(8 + 150 * 32, len(good)))    # past the rows: headers, levels, node tapes
        raw[at] ^= 1 << int(rng.integers(0, 8))
        inner["usearch"] = np.frombuffer(bytes(raw), dtype=np.uint8)
        attempt(f"flip{trial}@{at}", reblob(blob, container.dumps("usearch-backend", inner_meta, inner)), data)
""")


def _run_child(cases: str) -> dict[str, str]:
    code = _CHILD + cases + "\nprint(json.dumps(outcomes))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"child died with {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_crafted_hnswlib_headers_and_links_are_refused_without_a_crash() -> None:
    outcomes = _run_child(_HNSWLIB_CASES)
    assert len(outcomes) > 30
    # max_elements is only a capacity hint: the loader sizes the index from the content, so a huge one loads
    refused = {name: kind for name, kind in outcomes.items() if not name.startswith("max_elements=")}
    assert {name: kind for name, kind in refused.items() if kind != "CorruptIndexError"} == {}
    assert set(outcomes.values()) <= {"CorruptIndexError", "loaded"}


@pytest.mark.parametrize("cases", [_FAISS_CASES, _USEARCH_CASES], ids=["faiss", "usearch"])
def test_bit_flips_in_native_payloads_never_crash(cases: str) -> None:
    outcomes = _run_child(cases)
    # a flip in an unused slot or a float's low bits may be harmless; nothing may raise untyped or crash
    assert set(outcomes.values()) <= {"CorruptIndexError", "loaded"}
    assert list(outcomes.values()).count("CorruptIndexError") > len(outcomes) // 3


# ------------------------------------------------------------------ issue 18, fuzz findings: ruvector RaBitQ
_RABITQ = "ruvector-rabitq-backend"


def _rabitq(metric: str = "euclidean") -> tuple[rl.HnswIndex, np.ndarray]:
    return _built("ruvector", _config(metric, quantization=rl.QuantizationConfig(kind="rabitq", seed=3), rerank=8))


def _rbpx_payload(index: rl.HnswIndex, edit: object = None) -> bytes:
    """The payload as ruvector-lab wrote it before (format 1: ruvector's own .rbpx file), optionally edited."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "index.rbpx")
        index._backend.index.save(str(path))
        raw = bytearray(path.read_bytes())
    if edit is not None:
        edit(raw)  # type: ignore[operator]
    count = len(index._backend.index)
    return container.dumps(_RABITQ, {"count": count}, {"rbpx": np.frombuffer(bytes(raw), dtype=np.uint8),
                                                        "dead": np.zeros(0, np.int64)})


def _rows_payload(blob: bytes, edit: object) -> bytes:
    meta, arrays = container.loads(bytes(_payload(blob)), _RABITQ)
    arrays = {name: array.copy() for name, array in arrays.items()}
    edit(meta, arrays)  # type: ignore[operator]
    return _with_payload(blob, container.dumps(_RABITQ, meta, arrays))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rabitq_loads_without_ruvectors_reader_and_answers_identically(monkeypatch: pytest.MonkeyPatch,
                                                                       metric: str) -> None:
    """The payload holds rows and the index is rebuilt from them: bit for bit the saved index, trusted or not,
    and ruvector's own file reader (which aborted the process on a crafted row count) is never called."""
    import ruvector

    index, data = _rabitq(metric)
    blob = index.serialize()

    def never(*args: object) -> None:
        raise AssertionError("ruvector's .rbpx reader saw a stored file")

    monkeypatch.setattr(ruvector.RabitqIndex, "load", never)
    for trust in (True, False):
        again = rl.HnswIndex.deserialize(blob, trust_native=trust)
        assert len(again) == len(index)
        for q in data[:10]:
            assert [(r.id, r.score) for r in again.search(q, k=7)] == [(r.id, r.score) for r in index.search(q, k=7)]
        assert again.serialize() == blob
        again.insert("new", data[3])
        assert {r.id for r in again.search(data[3], k=2)} == {"new", "v3"}


def test_rabitq_format_1_payload_is_parsed_not_handed_to_ruvector() -> None:
    """A payload of the old format (an .rbpx file) still loads, parsed in NumPy, deleted rows kept dead."""
    index, data = _rabitq()
    old = _with_payload(index.serialize(), _rbpx_payload(index))
    for trust in (True, False):
        again = rl.HnswIndex.deserialize(old, trust_native=trust)
        for q in data[:10]:
            assert [(r.id, r.score) for r in again.search(q, k=7)] == [(r.id, r.score) for r in index.search(q, k=7)]


def _put(fmt: str, at: int, value: object) -> object:
    return lambda raw: struct.pack_into(fmt, raw, at, value)


@pytest.mark.parametrize(("name", "edit"), [
    ("count-huge", _put("<I", 28, 0x7FFFFFFF)),     # the 2 GiB allocation that aborted the process
    ("count-one-more", lambda raw: struct.pack_into("<I", raw, 28, struct.unpack_from("<I", raw, 28)[0] + 1)),
    ("dimension", _put("<I", 12, 32)),
    ("magic", _put("<4s", 0, b"RBPX")),
    ("duplicate-id", _put("<I", 32 + 1 * (4 + 16 * 4), 0)),   # row 1 claims row 0's id
    ("live-id-out-of-range", _put("<I", 32 + 2 * (4 + 16 * 4), 10**6)),   # row 2 is live (0 and 1 are dead)
    ("nan", _put("<f", 32 + 4 + 8, float("nan"))),
    ("huge-norm", _put("<f", 32 + 4, 3.0e38)),
    ("truncated", lambda raw: raw.__delitem__(slice(-3, None))),
])
def test_crafted_rabitq_format_1_files_are_refused(name: str, edit: object) -> None:
    index, _ = _rabitq()
    crafted = _with_payload(index.serialize(), _rbpx_payload(index, edit))
    for trust in (True, False):
        with pytest.raises(CorruptIndexError):
            rl.HnswIndex.deserialize(crafted, trust_native=trust)


def _set_row(row: int, col: int, value: float) -> object:
    def edit(meta: dict, arrays: dict) -> None:
        arrays["vectors"][row, col] = value
    return edit


def _set_label(row: int, value: int) -> object:
    def edit(meta: dict, arrays: dict) -> None:
        arrays["labels"][row] = value
    return edit


@pytest.mark.parametrize(("name", "edit"), [
    ("nan", _set_row(3, 5, float("nan"))),
    ("inf", _set_row(3, 5, float("inf"))),
    ("norm-overflows-float32", _set_row(3, 5, 3.0e38)),    # finite, but no float32 distance to it is
    ("duplicate-label", _set_label(1, 0)),                 # search returned an id twice
    ("label-past-u32", _set_label(1, 1 << 40)),
    ("negative-label", _set_label(1, -1)),
    ("live-label-missing", lambda meta, arrays: arrays.update(labels=np.delete(arrays["labels"], 2),
                                                             vectors=np.delete(arrays["vectors"], 2, axis=0))),
    ("float-labels", lambda meta, arrays: arrays.update(labels=arrays["labels"].astype(np.float64))),
    ("unknown-format", lambda meta, arrays: meta.update(format=3)),
])
def test_crafted_rabitq_rows_are_refused(name: str, edit: object) -> None:
    index, _ = _rabitq()
    crafted = _rows_payload(index.serialize(), edit)
    for trust in (True, False):
        with pytest.raises(CorruptIndexError):
            rl.HnswIndex.deserialize(crafted, trust_native=trust)


_RABITQ_CASES = textwrap.dedent("""
    import tempfile, os
    config = rl.HnswConfig(dimensions=8, m=4, ef_construction=32, ef_search=32, metric="euclidean",
                           quantization=rl.QuantizationConfig(kind="rabitq", seed=1), rerank=4)
    index, data = built("ruvector", config)
    blob = index.serialize()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "i.rbpx")
        index._backend.index.save(path)
        good = open(path, "rb").read()
    def old(raw):
        return container.dumps("ruvector-rabitq-backend", {"count": 150},
                               {"rbpx": np.frombuffer(bytes(raw), dtype=np.uint8), "dead": np.zeros(0, np.int64)})
    attempt("format-1", reblob(blob, old(good)), data)
    for at, fmt, value in [(28, "<I", 0x7FFFFFFF), (28, "<I", 0xFFFFFFFF), (12, "<I", 0xFFFFFFFF),
                           (12, "<I", 0), (16, "<Q", 2**64 - 1), (24, "<I", 0xFFFFFFFF)]:
        raw = bytearray(good)
        struct.pack_into(fmt, raw, at, value)
        attempt(f"rbpx@{at}={value}", reblob(blob, old(raw)), data)
    rng = np.random.default_rng(0)
    for trial in range(100):
        raw = bytearray(good)
        at = int(rng.integers(0, len(raw)))
        raw[at] ^= 1 << int(rng.integers(0, 8))
        attempt(f"flip{trial}@{at}", reblob(blob, old(raw)), data)
""")


def test_crafted_rabitq_files_never_crash() -> None:
    """Run in a child: the old reader aborted the whole process on a crafted row count."""
    outcomes = _run_child(_RABITQ_CASES)
    assert outcomes.pop("format-1") == "loaded"
    # a row count or dimension that disagrees with the file is refused; the seed and rerank fields are not used
    assert all(outcomes[name] == "CorruptIndexError" for name in outcomes
               if name.startswith(("rbpx@28=", "rbpx@12="))), outcomes
    assert set(outcomes.values()) <= {"CorruptIndexError", "loaded"}


def test_rabitq_rows_past_the_headers_labels_never_shadow_a_new_row() -> None:
    """A file may hold a deleted row past the labels its header knows (the backend cannot tell); a later insert
    that would reuse that label is refused, typed, instead of being filtered out of every search as dead."""
    index, data = _rabitq()

    def extra(meta: dict, arrays: dict) -> None:
        arrays["labels"] = np.append(arrays["labels"], len(arrays["labels"]))
        arrays["vectors"] = np.vstack([arrays["vectors"], arrays["vectors"][:1]])

    again = rl.HnswIndex.deserialize(_rows_payload(index.serialize(), extra))
    assert len(again) == len(index)
    with pytest.raises(rl.RuvectorLabError, match="already among"):
        again.insert("new", data[3])


# ------------------------------------------------------------------ issue 18, fuzz findings: quantized codes
_QFLAT = "quantized-flat-backend"


def _quantized(backend: str, kind: str, rerank: int = 0) -> tuple[rl.HnswIndex, np.ndarray]:
    q = rl.QuantizationConfig(kind=kind, m=4) if kind == "product" else rl.QuantizationConfig(kind=kind)
    return _built(backend, _config("cosine", quantization=q, rerank=rerank))


def _qflat_payload(blob: bytes, edit: object) -> bytes:
    meta, arrays = container.loads(bytes(_payload(blob)), _QFLAT)
    arrays = {name: array.copy() for name, array in arrays.items()}
    edit(arrays)  # type: ignore[operator]
    return _with_payload(blob, container.dumps(_QFLAT, meta, arrays))


def _header(row: int, mn: float, scale: float, levels: int | None = None) -> object:
    """Set code ``row``'s min/scale header (its last 8 bytes) and, optionally, every level byte."""
    def edit(arrays: dict) -> None:
        codes = arrays["codes"]
        codes[row, -8:] = np.array([mn, scale], dtype="<f4").view(np.uint8)
        if levels is not None:
            codes[row, :-8] = levels
    return edit


@pytest.mark.parametrize("backend", ["numpy", "wasm"])
@pytest.mark.parametrize("kind", ["scalar", "int4"])
@pytest.mark.parametrize(("name", "edit"), [
    ("nan-min", _header(3, float("nan"), 0.01)),
    ("inf-scale", _header(3, 0.0, float("inf"))),
    ("negative-scale", _header(3, 0.0, -0.01)),
    ("decodes-to-inf", _header(3, 3.0e38, 1.0e37, 0xFF)),          # finite header, min + 255 * scale overflows
    ("norm-overflows", _header(3, 1.0e37, 0.0)),                    # finite rows, squared norm past float32
    ("score-terms-overflow", _header(3, -1.0e19, 1.0e19 / 15, 0xFF)),  # rows near 0, but d * min^2 overflows
])
def test_per_vector_code_headers_that_decode_non_finite_are_refused(backend: str, kind: str, name: str,
                                                                    edit: object) -> None:
    index, _ = _quantized(backend, kind)
    crafted = _qflat_payload(index.serialize(), edit)
    with pytest.raises(CorruptIndexError, match="no insert accepts"):
        rl.HnswIndex.deserialize(crafted)


@pytest.mark.parametrize("backend", ["numpy", "wasm"])
def test_product_codebooks_that_decode_past_float32_are_refused(backend: str) -> None:
    from ruvector_lab.quantization.base import CODEC_KIND

    index, _ = _quantized(backend, "product")

    def edit(arrays: dict) -> None:
        meta, inner = container.loads(arrays["codec"].tobytes(), CODEC_KIND)
        books = inner["codebooks"].copy()
        books[0, int(arrays["codes"][3, 0])] = 3.0e38  # finite, but the rows that use it have no finite norm
        inner["codebooks"] = books
        arrays["codec"] = np.frombuffer(container.dumps(CODEC_KIND, meta, inner), dtype=np.uint8)

    with pytest.raises(CorruptIndexError, match="no insert accepts"):
        rl.HnswIndex.deserialize(_qflat_payload(index.serialize(), edit))


@pytest.mark.parametrize("value", [float("nan"), 3.0e38])
def test_quantized_rerank_rows_are_checked_like_inserts(value: float) -> None:
    index, _ = _quantized("numpy", "scalar", rerank=4)

    def edit(arrays: dict) -> None:
        arrays["vectors"][3, 2] = value

    with pytest.raises(CorruptIndexError, match="no insert accepts"):
        rl.HnswIndex.deserialize(_qflat_payload(index.serialize(), edit))


def test_quantized_codes_of_another_dtype_are_refused() -> None:
    index, _ = _quantized("numpy", "scalar")

    def edit(arrays: dict) -> None:
        arrays["codes"] = arrays["codes"].astype(np.int16)

    with pytest.raises(CorruptIndexError, match="dtypes"):
        rl.HnswIndex.deserialize(_qflat_payload(index.serialize(), edit))


# ------------------------------------------------------------------ issue 18, fuzz findings: huge finite rows
def _huge_at_first_rvf_vector(raw: bytearray) -> None:
    from ruvector_lab.wasm.rvf_format import SEGMENT_HEADER_SIZE

    # vector segment payload: u16 count, u32 dim, then records of (u64 id, d float32)
    struct.pack_into("<f", raw, SEGMENT_HEADER_SIZE + 6 + 8 + 4 * 2, 1.0e30)


_huge_in_wasm = _in_native("wasm-backend", _huge_at_first_rvf_vector)


def _huge_in_rows(kind: str) -> object:
    def mangle(payload: bytearray) -> None:
        meta, arrays = container.loads(bytes(payload), kind)
        vectors = arrays["vectors"].copy()
        vectors[3, 5] = 3.0e38
        arrays["vectors"] = vectors
        payload[:] = container.dumps(kind, meta, arrays)
    return mangle


@pytest.mark.parametrize(("backend", "mangle"), [
    ("wasm", _huge_in_wasm), ("numpy", _huge_in_rows("numpy-backend")), ("ruvector", _huge_in_rows("ruvector-backend")),
])
def test_finite_row_whose_norm_overflows_float32_is_refused(backend: str, mangle: object) -> None:
    """A finite stored row past the insert bound loaded and then scored inf (wasm: the module's float32
    distances; rows: its squared norm is past float32, so no distance to it is finite)."""
    index, _ = _built(backend, _config())
    blob = index.serialize()
    payload = _payload(blob)
    mangle(payload)  # type: ignore[operator]
    for trust in (True, False):
        with pytest.raises(CorruptIndexError, match="no insert accepts"):
            rl.HnswIndex.deserialize(_with_payload(blob, bytes(payload)), trust_native=trust)


@pytest.mark.parametrize("backend", ["numpy", "ruvector", "hnswlib", "faiss", "usearch", "wasm"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_insert_refuses_what_the_loaders_refuse(backend: str, metric: str) -> None:
    """The loaders' row rule is the inserts' rule, so every index that could be built loads again."""
    index = rl.HnswIndex(_config(metric), backend=backend)
    row = np.zeros(16, dtype=np.float32)
    row[0] = 2.0e19  # squared norm 4e38: past float32
    with pytest.raises(rl.InvalidVectorError, match="squared norm"):
        index.insert_batch(["a", "b"], np.stack([np.ones(16, dtype=np.float32), row]))
    assert len(index) == 0
    big = np.full(16, 1.0e17, dtype=np.float32)  # large, but inside the bound: builds, saves and loads
    index.insert_batch(["a", "b"], np.stack([np.ones(16, dtype=np.float32), big]))
    again = rl.HnswIndex.deserialize(index.serialize())
    assert {r.id for r in again.search(np.ones(16, dtype=np.float32), k=2)} == {"a", "b"}


# ------------------------------------------------------------------ issue 18, confirmation run findings
@pytest.mark.parametrize(("backend", "quantization"), [
    ("numpy", None), ("ruvector", None), ("ruvector", rl.QuantizationConfig(kind="rabitq", seed=3)),
])
def test_row_payloads_refuse_a_header_whose_metric_was_changed(backend: str, quantization: object) -> None:
    """Row payloads keep the metric they were written under, as the native formats do (the rows themselves
    cannot tell a euclidean index from a cosine one)."""
    index, _ = _built(backend, _config("euclidean", quantization=quantization, rerank=4 if quantization else 0))
    with pytest.raises(CorruptIndexError, match="metric"):
        rl.HnswIndex.deserialize(_with_config(index.serialize(), metric="cosine"))


@pytest.mark.parametrize("field", ["live", "tombstones", "id_offsets"])
@pytest.mark.parametrize("bad", ["scalar", "float"])
def test_index_container_arrays_of_another_shape_or_dtype_are_refused(field: str, bad: str) -> None:
    index, _ = _built("numpy", _config())
    meta, arrays = _parts(index.serialize())
    arrays = dict(arrays)
    arrays[field] = np.array(arrays[field][0]) if bad == "scalar" else arrays[field].astype(np.float64)
    with pytest.raises(CorruptIndexError):
        rl.HnswIndex.deserialize(container.dumps(CONTAINER_KIND, meta, arrays))


def test_load_passes_trust_native_on(tmp_path) -> None:
    index, data = _built("hnswlib", _config("cosine"))
    path = index.save(tmp_path / "i.idx")
    for trust in (True, False):
        loaded = rl.HnswIndex.load(path, trust_native=trust)
        assert _ids(loaded.search(data[2], k=3)) == _ids(index.search(data[2], k=3))
