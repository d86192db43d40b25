"""The deserialize fuzzer (ruvector_lab/fuzz.py): its classifier, its checksum-recomputing mutator, and a short
bounded run per backend that must find no crash, hang, untyped error or structural acceptance."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from helpers import available_backends

from ruvector_lab import container, fuzz
from ruvector_lab.backends import names

#: inputs per backend in the bounded run (issue 18: a few hundred per backend): ~10 s a backend on 2 cores
PER_BACKEND = 300


@pytest.fixture(scope="module")
def numpy_target() -> fuzz.Target:
    targets, skipped = fuzz.build_targets(["numpy"], seed=0)
    assert not skipped
    return targets[0]


def test_classifier_counts_each_deliberate_failure(numpy_target):
    """os.abort is a crash, a sleeper a hang, a RuntimeError or a MemoryError untyped; garbage is refused and the
    original blob loads as ok."""
    tasks = [fuzz.Task(i, "self-test", name, self_test=name) for i, name in enumerate(fuzz.SELF_TESTS)]
    n = len(tasks)
    tasks.append(fuzz.Task(n, "numpy", "garbage", b"not a container at all", numpy_target.queries,
                           numpy_target.baseline))
    tasks.append(fuzz.Task(n + 1, "numpy", "original", numpy_target.blob, numpy_target.queries,
                           numpy_target.baseline))
    results = fuzz.run_tasks(tasks, ["numpy"], workers=2, memory_mb=512, timeout=2.0)
    got = {r.op: r.outcome for r in results}
    assert got == {**{name: want for name, (_, want) in fuzz.SELF_TESTS.items()}, "garbage": "refused",
                   "original": "ok"}, results
    assert "SIGABRT" in next(r.detail for r in results if r.op == "abort")
    assert all(r.maxrss_kb > 0 for r in results)
    table = fuzz.summarize(results)
    assert table["self-test"]["crash"] == 2 and table["self-test"]["hang"] == 1
    assert table["self-test"]["untyped"] == 2 and table["numpy"]["refused"] == 1 and table["numpy"]["ok"] == 1


def _valid_digest(blob: bytes) -> bool:
    return hashlib.sha256(blob[:-32]).digest() == blob[-32:]


def test_mutations_keep_every_checksum_valid(numpy_target):
    """What the loaders see is the damage itself: the outer container's sha256, and a nested payload container's,
    always match (unless an operator cut into the nested container's own bytes on purpose)."""
    tasks = fuzz.make_tasks([numpy_target], 300, seed=3)
    ops = set()
    nested_checked = 0
    for task in tasks:
        ops.update(task.op.split("+"))
        assert _valid_digest(task.blob), task.op
        box = fuzz.Box.parse(task.blob)
        if box is None:
            continue
        payload = dict((e.get("name"), d) for e, d in box.arrays).get("payload")
        if payload is not None and fuzz.Box.parse(bytes(payload)) is not None:
            nested_checked += 1
            if task.op in ("json", "ids"):
                assert _valid_digest(bytes(payload)), task.op
    assert ops == set(fuzz.OPERATORS)
    assert nested_checked > 100
    assert len({t.blob for t in tasks}) > 250  # mutations differ from one another
    # and the unmutated blob round-trips through the parser byte for byte
    assert fuzz.Box.parse(numpy_target.blob).pack() == numpy_target.blob
    container.loads(fuzz.Box.parse(numpy_target.blob).pack(), "hnsw-index")


@pytest.mark.parametrize("backend", names())
def test_short_fuzz_run_finds_nothing_bad(backend):
    if backend not in available_backends():
        pytest.skip(f"backend {backend} is unavailable here")
    report = fuzz.fuzz([backend], per_backend=PER_BACKEND, seed=0, workers=2, memory_mb=1024, timeout=10.0)
    assert report["inputs"] == PER_BACKEND and not report["skipped"]
    counts = {c: sum(row[c] for row in report["table"].values()) for c in fuzz.OUTCOMES}
    assert counts["refused"] > 0
    failures = "\n".join(f"{f['label']} [{f['op']}] {f['outcome']}: {f['detail']}" for f in report["failures"])
    assert all(counts[c] == 0 for c in fuzz.BAD_OUTCOMES), f"{counts}\n{failures}"


def test_cli_writes_json_and_exits_by_the_bad_count():
    result = subprocess.run(
        [sys.executable, "-m", "ruvector_lab.fuzz", "--backend", "numpy", "--per-backend", "20", "--seed", "1",
         "--workers", "1", "--json", "-"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(result.stdout)
    assert report["inputs"] == 20 and set(report["table"]) <= {"numpy", "numpy/scalar", "numpy/int4",
                                                               "numpy/binary", "numpy/product"}
    assert result.returncode == (1 if report["bad"] else 0), result.stderr[-2000:]
    assert "refused" in result.stderr  # the table goes to the log


def test_cli_self_test_passes():
    result = subprocess.run([sys.executable, "-m", "ruvector_lab.fuzz", "--self-test", "--timeout", "2"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "abort    -> crash" in result.stderr
