"""Bring your own data: vector files and text corpora, each made into a :class:`~ruvector_lab.bench.hdf5.Dataset`
of float32 vectors, which the data stage writes in the ann-benchmarks layout like every other dataset.

**Vector files**, source ``npy``, ``fvecs``, ``bvecs`` or ``ivecs``. The source names the format (a path whose
extension names another known format is refused as a likely slip):

- ``npy``: one 2-D float or integer array saved with ``numpy.save``, opened with
  ``np.load(path, mmap_mode="r", allow_pickle=False)``: pickle is never loaded, so object arrays are refused.
- ``fvecs`` / ``bvecs`` / ``ivecs``: the TEXMEX format of SIFT1M, GIST1M and SIFT1B: each vector is its dimension d
  (little-endian int32) followed by d float32 / uint8 / int32 values; opened memory-mapped.

Values are converted to float32 (the layout every backend reads). The metric must be named (``metric: cosine |
euclidean | dot_product``): a guessed metric would silently change every result. Queries are the first
``n_queries`` rows of a ``queries:`` file in the same format (all of them when ``n_queries`` is absent), or, without
one, ``n_queries`` rows of the base file held out (chosen with ``seed``) and removed from the base. ``n_base`` keeps
the first rows of the base (the bigann convention: SIFT10M is the first 10M rows of SIFT1B), so only a prefix of a
huge memory-mapped file is read. Asking for more rows than a file holds is an error naming both numbers.

Every row that is used is checked: the dimension of the first row (TEXMEX), finite after conversion to float32,
integers no larger than 2**24 in magnitude (float32 holds those exactly), and non-zero under cosine (a zero vector
has no direction; the index would refuse it later). Rows are held out, not values: a file that repeats a row may hold
a query's exact copy in the base (a neighbour at distance 0 in the ground truth).

**Text corpora**, source ``text`` (one text a line) or ``jsonl`` (one JSON object a line, the text under ``field``,
default ``text``), embedded with the project's Embedder (all-MiniLM-L6-v2 at ``precision``, default int8; cosine):

- Surrounding whitespace is stripped; empty lines and empty texts are skipped (counted in attrs ``empty_skipped``).
- Repeated texts are dropped, the first kept (attrs ``duplicates_dropped``): identical texts embed to identical
  vectors, exact ties that make recall at the tie arbitrary, and a held-out query must leave no copy in the base.
- Queries are ``n_queries`` distinct texts held out with ``seed``, or the first ``n_queries`` distinct texts of a
  ``queries:`` file in the same format (all when absent); a base text equal to a given query is kept (the two files
  were chosen together) and counted in attrs ``queries_in_base``.
- ``n_base`` keeps a seeded sample of the base texts, as the WordNet set does (a corpus is often sorted by topic or
  date, so a prefix would not be representative).
- A line that is not UTF-8, not a JSON object, or lacks ``field`` as a string raises :class:`DatasetError` naming the
  file and the line number.

Relative paths are relative to the working directory (the project root, where ``dvc repro`` runs the stages). A
file that cannot be used raises :class:`DatasetError` naming it and the problem; a missing or bad parameter raises
:class:`InvalidParameterError`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..distances import METRICS
from ..errors import DatasetError, InvalidParameterError, InvalidVectorError
from ..validation import check_nonzero, check_positive_int
from .hdf5 import Dataset

if TYPE_CHECKING:
    from .executor import Executor

log = logging.getLogger(__name__)

#: TEXMEX formats: source -> dtype of one value (each vector on disk: int32 dimension d, then d values)
TEXMEX: dict[str, np.dtype] = {"fvecs": np.dtype("<f4"), "bvecs": np.dtype("u1"), "ivecs": np.dtype("<i4")}
#: sources read from vector files, each named after its format
VECTOR_SOURCES: tuple[str, ...] = ("npy", *TEXMEX)
#: sources read from text corpora and embedded with the Embedder
TEXT_SOURCES: tuple[str, ...] = ("text", "jsonl")
#: file extension -> the source that reads it (a path whose extension names another source is refused)
EXTENSIONS: dict[str, str] = {".npy": "npy", ".fvecs": "fvecs", ".bvecs": "bvecs", ".ivecs": "ivecs", ".txt": "text",
                              ".jsonl": "jsonl", ".hdf5": "hdf5", ".h5": "hdf5"}
#: the first bytes of a .npy file (numpy.lib.format) and of a zip archive (.npz)
NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"
#: integers up to this magnitude are exact in float32 (24-bit significand); larger ones would be rounded silently
FLOAT32_EXACT_INT = 2**24
#: bytes of a file converted at a time: bounds the temporary memory of a conversion whatever the file's size
BLOCK_BYTES = 32 << 20
#: base texts embedded between two progress reports, and per ``embed_batch`` call (which plans its own batches)
EMBED_BLOCK = 1024
#: blocks of base texts per embedding task on an executor at most (each task starts an Embedder, about a second)
EMBED_TASK_BLOCKS = 4


# ------------------------------------------------------------------------------------------------ shared helpers
def count_rows(count: object, available: int, what: str, source: str) -> int:
    """``count`` checked against the ``available`` rows (None: all of them); more than there are raises
    :class:`InvalidParameterError` naming both numbers (a set is never quietly made smaller than asked for)."""
    if count is None:
        return available
    count = check_positive_int(what, count)
    if count > available:
        raise InvalidParameterError(f"{what}={count} asks for more rows than the {available} that {source} holds")
    return count


def first_rows(rows: Any, count: int | None, what: str, source: str) -> Any:
    """The first ``count`` rows of an array or list (all when ``count`` is None), checked by :func:`count_rows`."""
    return rows[: count_rows(count, len(rows), what, source)]


def hold_out(rng: np.random.Generator, n_rows: int, n_queries: object, source: str,
             unit: str = "rows") -> np.ndarray:
    """Sorted indices of ``n_queries`` distinct rows drawn with ``rng`` among ``n_rows``: the queries held out of a
    base. At least one row must stay in the base; asking for more raises :class:`InvalidParameterError`."""
    if n_queries is None:
        raise InvalidParameterError(f"{source}: without a 'queries' file, n_queries rows are held out of the base "
                                    "as queries; give n_queries (or queries: a file of queries)")
    count = check_positive_int("n_queries", n_queries)
    if count >= n_rows:
        raise InvalidParameterError(f"n_queries={count} asks to hold out {count} queries, but {source} has "
                                    f"{n_rows} {unit} and at least one must stay in the base")
    return np.sort(rng.choice(n_rows, count, replace=False))


def _file_param(value: object, name: str, source: str, key: str) -> Path:
    """The existing file a params key names; a missing key or file, or one in another known format, is refused."""
    if value is None or value == "":
        raise InvalidParameterError(f"dataset {name!r}: source {source!r} needs {key!r}, the path of a file")
    if not isinstance(value, str | os.PathLike):
        raise InvalidParameterError(f"dataset {name!r}: {key!r} must be a path, got {type(value).__name__} {value!r}")
    path = Path(value).expanduser()
    other = EXTENSIONS.get(path.suffix.lower())
    if other is not None and other != source:
        raise InvalidParameterError(f"dataset {name!r}: {key} {path} looks like a {path.suffix} file, but the source "
                                    f"is {source!r}; did you mean source: {other}?")
    if not path.is_file():
        raise DatasetError(f"dataset {name!r}: {key} {path} is not a file (relative paths start at the project root)")
    return path


def _seed(seed: object) -> int:
    return check_positive_int("seed", seed, minimum=0)


# -------------------------------------------------------------------------------------------------- vector files
@dataclass
class VectorFile:
    """An opened, header-checked vector file whose rows are read on demand (:meth:`read`).

    ``raw`` is the array on disk, memory-mapped: for ``npy`` the (n, d) array itself; for TEXMEX formats the (n,
    4 + d * itemsize) uint8 records, dimension included.
    """

    path: Path
    fmt: str
    n: int
    d: int
    dtype: np.dtype
    raw: np.ndarray

    def read(self, rows: np.ndarray, metric: str) -> np.ndarray:
        """Rows ``rows`` (file row indices) as a float32 matrix, each checked (see the module docstring); a bad row
        raises :class:`DatasetError` naming the file and the row."""
        out = np.empty((len(rows), self.d), dtype=np.float32)
        step = max(1, BLOCK_BYTES // max(1, self.raw.shape[1] * self.raw.dtype.itemsize))
        for start in range(0, len(rows), step):
            idx = rows[start : start + step]
            values = self._values(idx)
            self._check_values(values, idx)
            with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: refused just below
                block = values.astype(np.float32)
            self._check_float32(block, values, idx, metric)
            out[start : start + len(idx)] = block
        return out

    def _values(self, idx: np.ndarray) -> np.ndarray:
        """The raw values of rows ``idx`` (in memory), the TEXMEX dimension of each row checked."""
        records = np.asarray(self.raw[idx])
        if self.fmt == "npy":
            return records
        dims = records[:, :4].copy().view("<i4")[:, 0]
        bad = np.flatnonzero(dims != self.d)
        if bad.size:
            row = int(idx[bad[0]])
            raise DatasetError(f"{self.path}: vector {row} has dimension {int(dims[bad[0]])}, but the first has "
                               f"{self.d}; every vector of a {self.fmt} file must have the same dimension")
        return np.ascontiguousarray(records[:, 4:]).view(self.dtype)

    def _check_values(self, values: np.ndarray, idx: np.ndarray) -> None:
        """The values as stored: finite floats, integers that float32 holds exactly."""
        if values.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            if bad.size:
                row = values[bad[0]]
                raise DatasetError(f"{self.path}: vector {int(idx[bad[0]])} holds {row[~np.isfinite(row)][0]}; "
                                   "vectors must be finite")
        elif values.dtype.itemsize > 2 and values.size:  # 8- and 16-bit integers are all exact in float32
            wide = np.abs(values.astype(np.float64))  # no overflow, even for int64's minimum
            big = np.flatnonzero((wide > FLOAT32_EXACT_INT).any(axis=1))
            if big.size:
                value = values[big[0]][wide[big[0]] > FLOAT32_EXACT_INT][0]
                raise DatasetError(f"{self.path}: vector {int(idx[big[0]])} holds the integer {int(value)}, beyond "
                                   f"2**24 = {FLOAT32_EXACT_INT} in magnitude, which float32 cannot hold exactly")

    def _check_float32(self, block: np.ndarray, values: np.ndarray, idx: np.ndarray, metric: str) -> None:
        """The converted values: within float32's range, and (cosine) no zero vector."""
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if bad.size:
            row = values[bad[0]]
            raise DatasetError(f"{self.path}: vector {int(idx[bad[0]])} holds {row[~np.isfinite(block[bad[0]])][0]}, "
                               f"beyond the range of float32 (the file holds {values.dtype})")
        if metric != "cosine":
            return
        try:
            check_nonzero(block)  # the index's own rule, so what it would refuse at insert is refused here, by row
        except InvalidVectorError:
            for j in range(len(block)):
                try:
                    check_nonzero(block[j])
                except InvalidVectorError:
                    raise DatasetError(f"{self.path}: vector {int(idx[j])} is zero, and cosine distance is undefined "
                                       "for a zero vector; remove it, or use metric euclidean") from None


def open_vectors(path: str | os.PathLike[str], fmt: str) -> VectorFile:
    """Open a vector file of format ``fmt`` (one of :data:`VECTOR_SOURCES`) memory-mapped and check its header and
    size; :class:`DatasetError` names the file and what is wrong with it."""
    path = Path(path)
    if fmt not in VECTOR_SOURCES:
        raise InvalidParameterError(f"unknown vector format {fmt!r}; known: {', '.join(VECTOR_SOURCES)}")
    if not path.is_file():
        raise DatasetError(f"no {fmt} file at {path}")
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path} is empty: a {fmt} file must hold at least one vector")
    return _open_npy(path) if fmt == "npy" else _open_texmex(path, fmt, size)


def _open_npy(path: Path) -> VectorFile:
    with open(path, "rb") as f:
        head = f.read(6)
    if head != NPY_MAGIC and not head.startswith(ZIP_MAGIC):  # an .npz archive is refused below, by its contents
        kind = "a pickle, which is never loaded" if head.startswith(b"\x80") else "no numpy.save header"
        raise DatasetError(f"{path} is not a .npy file ({kind}): save a float or integer array with numpy.save")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "object" in str(exc).lower():  # numpy refuses to map (or unpickle) an array of Python objects
            raise DatasetError(f"{path} holds Python objects (dtype object), which only pickle can load, and pickle "
                               "is never used: save a float or integer array with numpy.save") from None
        raise DatasetError(f"{path} is not a readable .npy array ({exc}): truncated, or not written by "
                           "numpy.save?") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):  # np.load opens an .npz archive as a mapping of arrays
        names = list(getattr(arr, "files", []))
        arr.close()
        raise DatasetError(f"{path} is an .npz archive of the arrays {names}; save the one array with numpy.save")
    if arr.ndim != 2:
        raise DatasetError(f"{path} holds an array of shape {arr.shape}; a vector file must be 2-D, one row a vector")
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"{path} holds {arr.dtype} values; only float and integer arrays are accepted "
                           "(converted to float32)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DatasetError(f"{path} holds no vectors (shape {arr.shape})")
    return VectorFile(path, "npy", int(arr.shape[0]), int(arr.shape[1]), arr.dtype, arr)


def _open_texmex(path: Path, fmt: str, size: int) -> VectorFile:
    dtype = TEXMEX[fmt]
    if size < 4:
        raise DatasetError(f"{path} is truncated: {size} bytes, less than the 4-byte dimension that starts every "
                           f"vector of a {fmt} file")
    d = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if d <= 0:
        raise DatasetError(f"{path} starts with dimension {d}; every vector of a {fmt} file starts with its "
                           f"dimension, a positive little-endian int32 (is it a {fmt} file?)")
    record = 4 + d * dtype.itemsize
    if size < record:
        raise DatasetError(f"{path} is truncated: {size} bytes, less than one vector of its first dimension {d} "
                           f"({record} bytes; is it a {fmt} file?)")
    if size % record:
        raise DatasetError(f"{path} is {size} bytes, not a whole number of {d}-dimensional {fmt} vectors of {record} "
                           f"bytes ({size // record} vectors and {size % record} bytes over): it is truncated, or "
                           "its vectors differ in dimension")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // record, record))
    return VectorFile(path, fmt, size // record, d, dtype, raw)


def vector_dataset(path: str | os.PathLike[str] | None = None, metric: str | None = None,
                   queries: str | os.PathLike[str] | None = None, n_queries: int | None = None,
                   n_base: int | None = None, seed: int = 42, *, name: str = "vectors", fmt: str = "npy") -> Dataset:
    """A dataset from a vector file of format ``fmt`` (``npy``, ``fvecs``, ``bvecs``, ``ivecs``) and the ``metric``
    it is measured in; queries from the ``queries`` file or held out of the base (see the module docstring)."""
    if fmt not in VECTOR_SOURCES:
        raise InvalidParameterError(f"unknown vector format {fmt!r}; known: {', '.join(VECTOR_SOURCES)}")
    if metric is None:
        raise InvalidParameterError(f"dataset {name!r}: source {fmt!r} needs 'metric' (one of {', '.join(METRICS)}); "
                                    "the metric of a vector file is never guessed")
    if metric not in METRICS:
        raise InvalidParameterError(f"dataset {name!r}: unknown metric {metric!r}; expected one of "
                                    f"{', '.join(METRICS)}")
    seed = _seed(seed)
    base_path = _file_param(path, name, fmt, "path")
    base = open_vectors(base_path, fmt)
    attrs: dict[str, Any] = {"source": fmt, "path": str(base_path.resolve()), "rows_in_file": base.n,
                             "dtype_in_file": str(base.dtype), "seed": seed}
    if queries is not None:
        query_path = _file_param(queries, name, fmt, "queries")
        qfile = open_vectors(query_path, fmt)
        if qfile.d != base.d:
            raise DatasetError(f"dataset {name!r}: the queries in {query_path} have {qfile.d} dimensions, the base "
                               f"vectors in {base_path} {base.d}")
        test = qfile.read(np.arange(count_rows(n_queries, qfile.n, "n_queries", str(query_path))), metric)
        base_rows = np.arange(count_rows(n_base, base.n, "n_base", str(base_path)))
        attrs.update(queries_from="file", queries=str(query_path.resolve()))
    else:
        held = hold_out(np.random.default_rng(seed), base.n, n_queries, str(base_path))
        # the base is every other row in file order and n_base its first rows: only that prefix is ever read
        limit = base.n if n_base is None else min(base.n, check_positive_int("n_base", n_base) + len(held))
        rest = np.setdiff1d(np.arange(limit), held, assume_unique=True)
        base_rows = rest[: count_rows(n_base, base.n - len(held), "n_base",
                                      f"{base_path} (less the {len(held)} held-out queries)")]
        test = base.read(held, metric)
        attrs["queries_from"] = "held-out"
    train = base.read(base_rows, metric)
    return Dataset(name, train, test, metric, attrs=attrs)


# ------------------------------------------------------------------------------------------------- text corpora
@dataclass(frozen=True)
class Texts:
    """The distinct non-empty texts of a corpus file, in file order, and what reading it dropped."""

    texts: list[str]
    lines: int
    empty_skipped: int
    duplicates_dropped: int


def read_texts(path: str | os.PathLike[str], fmt: str = "text", field: str = "text") -> Texts:
    """The texts of a corpus file: one a line (``fmt="text"``) or the string ``field`` of one JSON object a line
    (``fmt="jsonl"``). Whitespace around a text is stripped, empty texts skipped, repeats dropped (the first kept);
    a line that cannot be read raises :class:`DatasetError` naming the file and the line number."""
    if fmt not in TEXT_SOURCES:
        raise InvalidParameterError(f"unknown text format {fmt!r}; known: {', '.join(TEXT_SOURCES)}")
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no {fmt} file at {path}")
    seen: dict[str, None] = {}
    lines = empty = duplicates = 0
    with open(path, "rb") as f:
        for lines, raw in enumerate(f, start=1):  # after the loop, lines is the number of lines
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}, line {lines}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if lines == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the first text
            text = _jsonl_text(line, path, lines, field) if fmt == "jsonl" else line.strip()
            if not text:
                empty += 1
            elif text in seen:
                duplicates += 1
            else:
                seen[text] = None
    if not seen:
        raise DatasetError(f"{path} holds no texts ({lines} lines, {empty} of them empty)")
    if empty or duplicates:
        log.info("%s: %d texts; skipped %d empty lines or texts and %d repeated texts", path, len(seen), empty,
                 duplicates)
    return Texts(list(seen), lines, empty, duplicates)


def _jsonl_text(line: str, path: Path, number: int, field: str) -> str:
    """The stripped text of one JSON Lines line ('' for a blank line)."""
    if not line.strip():
        return ""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}, line {number}: a JSON {_json_type(obj)}, where an object with the field "
                           f"{field!r} was expected")
    if field not in obj:
        raise DatasetError(f"{path}, line {number}: no field {field!r} (it has {', '.join(map(repr, obj)) or 'none'}"
                           "); name the text's field with field: NAME")
    value = obj[field]
    if not isinstance(value, str):
        raise DatasetError(f"{path}, line {number}: field {field!r} is a JSON {_json_type(value)}, not a string")
    return value.strip()


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _start_embedder(precision: str, name: str) -> Any:
    """An :class:`~ruvector_lab.embeddings.Embedder` at ``precision``, or the data error that says how to get one."""
    try:
        from ..embeddings import Embedder
    except ImportError as exc:
        raise DatasetError(f"dataset {name!r} needs ruvector_lab.embeddings.Embedder, which does not import here "
                           f"({exc}); install the embed extra and run `make setup-models`") from None
    try:
        return Embedder(precision=precision)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"dataset {name!r}: {exc}") from None
    except Exception as exc:  # a missing model file is the usual cause; say so
        raise DatasetError(f"dataset {name!r} could not start the Embedder ({type(exc).__name__}: {exc}); "
                           "run `make setup-models`") from None


def _embed_blocks(embedder: Any, texts: Sequence[str], chunk_size: int | None, block: int,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``texts`` embedded ``block`` at a time (one ``embed_batch`` call each, which plans its own batches), float32
    rows in order; ``progress`` hears the count after each block."""
    out = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    for start in range(0, len(texts), block):
        chunk = list(texts[start : start + block])
        out[start : start + len(chunk)] = embedder.embed_batch(chunk, chunk_size=chunk_size)
        if progress is not None:
            progress(len(chunk))
    return out


def _embed_task(texts: list[str], precision: str, chunk_size: int | None, block: int, name: str) -> np.ndarray:
    """One chunk of base texts embedded where an executor runs it, by an Embedder of its own."""
    with _start_embedder(precision, name) as embedder:
        return _embed_blocks(embedder, texts, chunk_size, block)


def _blocks_per_task(n_blocks: int, workers: int) -> int:
    """Blocks of texts per embedding task: about two tasks per worker for balance, at most
    :data:`EMBED_TASK_BLOCKS` so a lost worker costs little, at least one."""
    return max(1, min(EMBED_TASK_BLOCKS, -(-n_blocks // (2 * max(1, workers)))))


def embed_texts(base: Sequence[str], queries: Sequence[str], precision: str = "int8",
                chunk_size: int | None = None, name: str = "texts",
                progress: Callable[[int], None] | None = None, *, executor: Executor | None = None,
                block: int = EMBED_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Embed base and query texts with the project's :class:`~ruvector_lab.embeddings.Embedder` (all-MiniLM-L6-v2
    at ``precision``): the base ``block`` texts at a time (:data:`EMBED_BLOCK`), calling ``progress`` with the count
    after each block, then the queries. Returns float32 ``(len(base), dims)`` and ``(len(queries), dims)`` unit rows.

    The one embedding loop of every text dataset (WordNet and text corpora). No embeddings package or model files
    raises :class:`DatasetError` saying how to get them; an unknown precision :class:`InvalidParameterError`.

    With an ``executor`` the base texts go out in chunks, one task each (a whole number of blocks, so every
    ``embed_batch`` call, and hence every model batch, holds the same texts as in this process: int8 activations
    are quantized per batch, so the batches decide the vectors); each task starts its own Embedder at the same
    precision and ``chunk_size``, and the chunks' rows are joined in order. The queries are embedded here.
    ``progress`` then hears each chunk's count once all are done (the executor draws a bar over the tasks). A
    chunk that fails raises :class:`~ruvector_lab.bench.executor.ExecutorError` naming it.

    The vectors equal this process's bit for bit when the workers run as many onnxruntime intra-op threads as this
    process does (the Embedder takes the worker's pinned count, one on a ``local:N`` cluster). With other counts
    they may differ in the last bits (about 1e-7; onnxruntime splits some reductions by thread, so the summation
    order changes), far below what the int8 model's per-batch quantization moves a vector when its batch changes
    (up to about 1e-2).
    """
    block = check_positive_int("block", block)
    with _start_embedder(precision, name) as embedder:
        if executor is None:
            train = _embed_blocks(embedder, base, chunk_size, block, progress)
        else:
            train = _embed_on(executor, base, precision, chunk_size, name, block, progress, embedder.dimensions)
        test = embedder.embed_batch(list(queries), chunk_size=chunk_size).astype(np.float32, copy=False)
    return train, test


def _embed_on(executor: Executor, base: Sequence[str], precision: str, chunk_size: int | None, name: str,
              block: int, progress: Callable[[int], None] | None, dimensions: int) -> np.ndarray:
    """The base texts embedded in chunks of whole blocks, one task each on ``executor``, rows joined in order."""
    from .executor import Task, raise_failures

    step = block * _blocks_per_task(-(-len(base) // block), executor.workers())
    starts = range(0, len(base), step)
    tasks = [Task(f"embed {name} {start}", _embed_task, (list(base[start : start + step]), precision, chunk_size,
                                                         block, name))
             for start in starts]
    outcomes = executor.run(tasks, f"embed {name}")
    raise_failures(outcomes, f"embedding chunks of {name}")
    for outcome in outcomes:
        if progress is not None:
            progress(len(outcome.value))
    if not outcomes:
        return np.empty((0, dimensions), dtype=np.float32)
    return np.concatenate([np.asarray(o.value, dtype=np.float32) for o in outcomes], axis=0)


def text_dataset(path: str | os.PathLike[str] | None = None, queries: str | os.PathLike[str] | None = None,
                 n_queries: int | None = None, n_base: int | None = None, seed: int = 42, precision: str = "int8",
                 chunk_size: int | None = None, field: str | None = None, *, name: str = "texts", fmt: str = "text",
                 progress: Callable[[int], None] | None = None, executor: Executor | None = None) -> Dataset:
    """A dataset from a text corpus (``fmt`` ``text`` or ``jsonl``) embedded with the project's Embedder, cosine;
    queries held out of the corpus or read from ``queries`` (see the module docstring). ``progress`` is called with
    the number of base texts embedded after each block; ``executor`` embeds the base texts in chunks on its workers
    (:func:`embed_texts`; None: in this process)."""
    if fmt not in TEXT_SOURCES:
        raise InvalidParameterError(f"unknown text format {fmt!r}; known: {', '.join(TEXT_SOURCES)}")
    if fmt == "text" and field is not None:
        raise InvalidParameterError(f"dataset {name!r}: source 'text' reads one text a line and takes no 'field' "
                                    "(that is for source 'jsonl')")
    field = "text" if field is None else field
    if not isinstance(field, str) or not field:
        raise InvalidParameterError(f"dataset {name!r}: field must be the name of a JSON field, got {field!r}")
    seed = _seed(seed)
    rng = np.random.default_rng(seed)
    base_path = _file_param(path, name, fmt, "path")
    corpus = read_texts(base_path, fmt, field)
    attrs: dict[str, Any] = {"source": fmt, "path": str(base_path.resolve()), "seed": seed, "precision": precision,
                             "model": "all-MiniLM-L6-v2", "texts_distinct": len(corpus.texts),
                             "empty_skipped": corpus.empty_skipped, "duplicates_dropped": corpus.duplicates_dropped}
    if fmt == "jsonl":
        attrs["field"] = field
    if queries is not None:
        query_path = _file_param(queries, name, fmt, "queries")
        given = read_texts(query_path, fmt, field)
        query_texts = first_rows(given.texts, n_queries, "n_queries", f"{query_path} (distinct texts)")
        base_texts = corpus.texts
        attrs.update(queries_from="file", queries=str(query_path.resolve()),
                     queries_in_base=len(set(query_texts).intersection(base_texts)))
    else:
        held = hold_out(rng, len(corpus.texts), n_queries, str(base_path), unit="distinct texts")
        query_texts = [corpus.texts[i] for i in held]
        keep = np.ones(len(corpus.texts), dtype=bool)
        keep[held] = False
        base_texts = [t for t, kept in zip(corpus.texts, keep, strict=True) if kept]
        attrs["queries_from"] = "held-out"
    count = count_rows(n_base, len(base_texts), "n_base", f"{base_path} (distinct texts, less the queries)")
    if count < len(base_texts):  # a seeded sample, as for WordNet: a corpus file is often sorted by topic or date
        base_texts = [base_texts[i] for i in np.sort(rng.choice(len(base_texts), count, replace=False))]
    attrs["texts_kept"] = len(base_texts)
    train, test = embed_texts(base_texts, query_texts, precision=precision, chunk_size=chunk_size, name=name,
                              progress=progress, executor=executor)
    return Dataset(name, train, test, "cosine", attrs=attrs)


# ------------------------------------------------------------------------------------ source files seen by DVC
def link_sources(files: dict[str, Path], dest: str | os.PathLike[str]) -> Path:
    """Make ``dest`` a folder holding one symbolic link (absolute) per file in ``files`` (link name -> file), empty
    when there are none, replacing what was there; return it.

    The data stage converts a vector file or corpus into its HDF5 output, so DVC would never see a later change to
    the file it was made from. Declared as an output of the data stage (``data/raw/NAME.source``), this folder is
    hashed through its links by DVC: a changed source file shows in ``dvc status`` and ``dvc repro`` redoes the data
    (and then the ground truth). Where links cannot be made, a ``NAME.path`` note names the file instead and a warning
    says that DVC will not see changes to it.
    """
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for link_name, target in files.items():
        target = Path(os.path.abspath(target))
        if not target.is_file():
            raise DatasetError(f"no file at {target}")
        try:
            os.symlink(target, tmp / link_name)
        except OSError as exc:
            log.warning("cannot link %s to %s (%s): DVC will not see later changes to %s", tmp / link_name, target,
                        exc, target)
            (tmp / f"{link_name}.path").write_text(f"{target}\n", encoding="utf-8")
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)  # removes the old links, never the files they point to
    os.replace(tmp, dest)
    return dest
