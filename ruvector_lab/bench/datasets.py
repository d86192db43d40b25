"""The benchmark datasets, each made reproducibly and returned as a :class:`~ruvector_lab.bench.hdf5.Dataset`.

- ``adr-random-10k-384``: ADR-006's own benchmark, uniform in [-1, 1], with separate seeded queries.
- ``clustered-100k-384``: normalised Gaussian clusters (embedding-like structure), seeded.
- ``wordnet-minilm-384``: WordNet 3.0 glosses and example sentences (Debian ``wordnet-base``) embedded with the
  project's :class:`~ruvector_lab.embeddings.Embedder`; queries are held-out example sentences that never occur in
  the base set. WordNet's license notice travels with the data (HDF5 attribute ``license``).
- ``fashion-mnist-784-euclidean``: Debian ``dataset-fashion-mnist`` (60,000 train + 10,000 test), the same data as
  ann-benchmarks' set of that name.
- ``hdf5``: any ann-benchmarks HDF5 file given by path.
- ``npy``, ``fvecs``, ``bvecs``, ``ivecs``: your own vector file (and optionally a query file) in the metric you
  name; ``text``, ``jsonl``: your own text corpus embedded like WordNet (both in :mod:`ruvector_lab.bench.sources`).

Missing system data raises :class:`~ruvector_lab.errors.DatasetError` saying what to install or which file to pass.
:func:`source_files` names the files outside the project a dataset is read from, which the data stage links into
``data/raw/NAME.source/`` so that DVC sees when they change.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError, InvalidParameterError
from .hdf5 import Dataset, read_hdf5
from .sources import TEXT_SOURCES, VECTOR_SOURCES, embed_texts, first_rows, text_dataset, vector_dataset

if TYPE_CHECKING:
    from .executor import Executor

log = logging.getLogger(__name__)

WORDNET_DIR = Path(os.environ.get("RUVECTOR_LAB_WORDNET_DIR", "/usr/share/wordnet"))
FASHION_DIR = Path(os.environ.get("RUVECTOR_LAB_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
WORDNET_POS = ("noun", "verb", "adj", "adv")


def _install_hint(package: str, name: str) -> str:
    sudo = "" if shutil.which("sudo") is None or os.geteuid() == 0 else "sudo "
    return (f"dataset {name!r} needs the Debian package {package}: run `{sudo}apt-get install -y {package}` "
            f"(or `make setup-data`), or drop {name!r} from params.yaml `datasets`, or benchmark an ann-benchmarks "
            f"file instead with a params entry datasets: {{NAME: {{source: hdf5, path: /path/to/NAME.hdf5}}}}")


# --------------------------------------------------------------------------------------------- synthetic sets
def adr_random(n: int = 10_000, n_queries: int = 1_000, dimensions: int = 384, seed: int = 42,
               name: str = "adr-random-10k-384") -> Dataset:
    """ADR-006's benchmark data: ``n`` base and ``n_queries`` separate query vectors, uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    train = rng.uniform(-1.0, 1.0, (n, dimensions)).astype(np.float32)
    test = rng.uniform(-1.0, 1.0, (n_queries, dimensions)).astype(np.float32)
    return Dataset(name, train, test, "cosine", attrs={"source": "adr-random", "seed": seed})


def clustered(n: int = 100_000, n_queries: int = 1_000, dimensions: int = 384, clusters: int = 100,
              spread: float = 0.35, seed: int = 42, name: str = "clustered-100k-384") -> Dataset:
    """Unit-norm points around ``clusters`` random centres (isotropic Gaussian of ``spread`` per centre, then
    normalised); queries are fresh draws from the same mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimensions)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scale = spread / np.sqrt(dimensions)

    def draw(count: int) -> np.ndarray:
        which = rng.integers(0, clusters, count)
        pts = centres[which] + rng.standard_normal((count, dimensions)).astype(np.float32) * scale
        return (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)

    train, test = draw(n), draw(n_queries)
    return Dataset(name, train, test, "cosine",
                   attrs={"source": "clustered", "seed": seed, "clusters": clusters, "spread": spread})


# ------------------------------------------------------------------------------------------------ Fashion-MNIST
def read_idx_images(path: Path) -> np.ndarray:
    """Images of an IDX file (gzip or not) as an (n, rows*cols) float32 matrix of 0..255 pixel values."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 16 or int.from_bytes(raw[:4], "big") != 2051:
        raise DatasetError(f"{path} is not an IDX image file (magic 2051)")
    n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)
    if pixels.size != n * rows * cols:
        raise DatasetError(f"{path} holds {pixels.size} pixels, expected {n}x{rows}x{cols}")
    return pixels.reshape(n, rows * cols).astype(np.float32)


def fashion_mnist_files(directory: Path, name: str = "fashion-mnist-784-euclidean") -> dict[str, Path]:
    """The train and test image files in ``directory`` (gzipped or not); a missing one says what to install."""
    files = {}
    for part, stem in (("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")):
        found = [directory / f"{stem}.gz", directory / stem]
        hit = next((p for p in found if p.is_file()), None)
        if hit is None:
            raise DatasetError(f"{found[0]} is missing. " + _install_hint("dataset-fashion-mnist", name))
        files[part] = hit
    return files


def fashion_mnist(directory: Path | None = None, n_train: int | None = None, n_queries: int | None = None,
                  name: str = "fashion-mnist-784-euclidean") -> Dataset:
    """Fashion-MNIST from the Debian package: 60,000 train and 10,000 test images as 784-d float vectors (L2).

    ``n_train`` / ``n_queries`` keep the first rows of each file (None: all); more than a file holds raises
    :class:`InvalidParameterError`.
    """
    directory = directory or FASHION_DIR
    files = fashion_mnist_files(directory, name)
    train, test = read_idx_images(files["train"]), read_idx_images(files["test"])
    # a subset is the first rows; asking for more than the files hold is refused, never quietly shortened
    train = first_rows(train, n_train, "n_train", f"{name}: {files['train']}")
    test = first_rows(test, n_queries, "n_queries", f"{name}: {files['test']}")
    return Dataset(name, train, test, "euclidean", attrs={"source": "fashion-mnist", "files": str(directory)})


# ------------------------------------------------------------------------------------------------------ WordNet
@dataclass(frozen=True)
class WordnetTexts:
    """Definitions and example sentences of WordNet, with its license notice."""

    glosses: list[str]
    examples: list[str]
    license: str


def parse_gloss(gloss: str) -> tuple[str, list[str]]:
    """Split a WordNet gloss into its definition and its quoted example sentences.

    ``'on the back of a horse; "he rode horseback to town"'`` -> ``('on the back of a horse',
    ['he rode horseback to town'])``.
    """
    definition: list[str] = []
    examples: list[str] = []
    for part in (p.strip() for p in gloss.split("; ")):
        if part.startswith('"'):
            end = part.rfind('"')
            text = part[1:end] if end > 0 else part[1:]
            if text.strip():
                examples.append(text.strip())
        elif part:
            definition.append(part)
    return "; ".join(definition), examples


def read_wordnet(directory: Path | None = None) -> WordnetTexts:
    """Glosses and examples of ``data.{noun,verb,adj,adv}``, in file order, with the license header of data.noun."""
    directory = directory or WORDNET_DIR
    glosses: list[str] = []
    examples: list[str] = []
    license_lines: list[str] = []
    for pos in WORDNET_POS:
        path = directory / f"data.{pos}"
        if not path.is_file():
            raise DatasetError(f"{path} is missing. " + _install_hint("wordnet-base", "wordnet-minilm-384"))
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # the license header: lines start with two spaces and a number
                    if pos == "noun":
                        license_lines.append(line.strip().split(" ", 1)[-1] if line.strip() else "")
                    continue
                _, sep, gloss = line.partition(" | ")
                if not sep:
                    continue
                definition, exs = parse_gloss(gloss.strip())
                if definition:
                    glosses.append(definition)
                examples.extend(exs)
    return WordnetTexts(glosses, examples, "\n".join(s.rstrip() for s in license_lines).strip())


def split_wordnet(texts: WordnetTexts, n_base: int | None, n_queries: int,
                  seed: int = 42) -> tuple[list[str], list[str]]:
    """Base texts and held-out query texts: queries are distinct example sentences, and no base text equals any
    query (every copy of a held-out sentence is removed from the base). ``n_base`` None keeps every base text; more
    queries or base texts than WordNet has raise :class:`InvalidParameterError`."""
    rng = np.random.default_rng(seed)
    unique_examples = sorted(set(texts.examples))
    if n_queries > len(unique_examples):
        raise InvalidParameterError(f"asked for {n_queries} queries but WordNet has {len(unique_examples)} examples")
    held = set(rng.choice(len(unique_examples), n_queries, replace=False).tolist())
    queries = [unique_examples[i] for i in sorted(held)]
    held_texts = set(queries)
    base = list(dict.fromkeys(t for t in (*texts.glosses, *texts.examples) if t not in held_texts))
    if n_base is not None and n_base > len(base):  # keeping all of them would be a smaller set than asked for
        raise InvalidParameterError(f"asked for n_base={n_base} base texts but WordNet has {len(base)} once the "
                                    f"{n_queries} queries are held out; use n_base: null for all of them")
    if n_base is not None and n_base < len(base):
        pick = np.sort(rng.choice(len(base), n_base, replace=False))
        base = [base[i] for i in pick]
    return base, queries


def wordnet_minilm(n_base: int | None = 20_000, n_queries: int = 1_000, seed: int = 42, precision: str = "int8",
                   chunk_size: int | None = None, directory: Path | None = None, name: str = "wordnet-minilm-384",
                   progress: Callable[[int], None] | None = None, *, executor: Executor | None = None) -> Dataset:
    """WordNet texts embedded with the project's Embedder (cosine). ``n_base`` subsamples the ~200k base texts
    (None: all of them); the attrs record how many there were and how many were kept. ``executor`` embeds the base
    texts in chunks on its workers (:func:`~ruvector_lab.bench.sources.embed_texts`; None: in this process)."""
    texts = read_wordnet(directory)
    base, queries = split_wordnet(texts, n_base, n_queries, seed)
    total = len(dict.fromkeys((*texts.glosses, *texts.examples)))
    train, test = embed_texts(base, queries, precision=precision, chunk_size=chunk_size, name=name, progress=progress,
                              executor=executor)
    attrs: dict[str, Any] = {"source": "wordnet-3.0", "seed": seed, "precision": precision,
                             "texts_total": total, "texts_kept": len(base), "license": texts.license,
                             "model": "all-MiniLM-L6-v2"}
    return Dataset(name, train, test, "cosine", attrs=attrs)


# ------------------------------------------------------------------------------------------------ the registry
#: every source a params.yaml ``datasets`` entry may name
SOURCES: tuple[str, ...] = ("adr-random", "clustered", "wordnet", "fashion-mnist", "hdf5", *VECTOR_SOURCES,
                            *TEXT_SOURCES)
#: the sources embedded with the Embedder: their makers report progress in base texts embedded
EMBEDDED_SOURCES: tuple[str, ...] = ("wordnet", *TEXT_SOURCES)


def make_dataset(spec: dict[str, Any], progress: Callable[[int], None] | None = None, *,
                 executor: Executor | None = None) -> Dataset:
    """Build the dataset a params.yaml entry describes: ``{name, source, ...}`` where ``source`` is one of
    :data:`SOURCES` and the other keys are that maker's arguments. ``progress`` is called with the number of texts
    embedded, for the sources in :data:`EMBEDDED_SOURCES`; ``executor`` embeds their base texts in chunks on its
    workers (None: in this process; the other sources ignore it)."""
    if not isinstance(spec, dict) or "name" not in spec or "source" not in spec:
        raise InvalidParameterError(f"a dataset entry needs 'name' and 'source' (one of {', '.join(SOURCES)}), "
                                    f"got {spec!r}")
    args = {k: v for k, v in spec.items() if k not in {"source", "enabled"}}
    source = spec["source"]
    makers: dict[str, Callable[..., Dataset]] = {"adr-random": adr_random, "clustered": clustered,
                                                 "fashion-mnist": fashion_mnist}
    try:
        if source in makers:
            return makers[source](**args)
        if source == "wordnet":
            return wordnet_minilm(progress=progress, executor=executor, **args)
        if source in VECTOR_SOURCES:
            return vector_dataset(fmt=source, **args)
        if source in TEXT_SOURCES:
            return text_dataset(fmt=source, progress=progress, executor=executor, **args)
        if source == "hdf5":
            path = args.get("path")
            if not path:
                raise DatasetError(f"dataset {spec['name']!r}: source hdf5 needs a 'path' to an ann-benchmarks file")
            extra = sorted(set(args) - {"name", "path"})
            if extra:  # e.g. n_queries: the file is used whole, so such a key would be silently ignored
                raise InvalidParameterError(f"dataset {spec['name']!r}: bad arguments for source 'hdf5': {extra}; "
                                            "it takes only 'path' (the file is used whole)")
            return read_hdf5(path, name=spec["name"])
    except TypeError as exc:
        raise InvalidParameterError(f"dataset {spec['name']!r}: bad arguments for source {source!r}: {exc}") from None
    raise InvalidParameterError(
        f"dataset {spec['name']!r}: unknown source {source!r}; known sources: {', '.join(SOURCES)}"
    )


def source_files(spec: dict[str, Any]) -> dict[str, Path]:
    """The files outside the project that the dataset of ``spec`` is read from, by the name of their link in
    ``data/raw/NAME.source/`` (see :func:`ruvector_lab.bench.sources.link_sources`): ``base.EXT`` and
    ``queries.EXT`` for vector files and corpora, the Debian files of WordNet and Fashion-MNIST, none for the
    synthetic sets (made from params alone) nor for ``hdf5`` (its ``data/raw/NAME.hdf5`` is itself a link to the
    file). Call it after :func:`make_dataset` has accepted ``spec``."""
    source = spec.get("source")
    if source in VECTOR_SOURCES or source in TEXT_SOURCES:
        files = {}
        for role in ("path", "queries"):
            if spec.get(role) is not None:
                path = Path(spec[role]).expanduser()
                files[("base" if role == "path" else role) + path.suffix] = path
        return files
    if source == "wordnet":
        directory = Path(spec.get("directory") or WORDNET_DIR)
        return {f"data.{pos}": directory / f"data.{pos}" for pos in WORDNET_POS}
    if source == "fashion-mnist":
        directory = Path(spec.get("directory") or FASHION_DIR)
        return {path.name: path for path in fashion_mnist_files(directory, str(spec.get("name", ""))).values()}
    return {}
