"""The library's versioned, checksummed container for everything it writes (indexes, codecs, weights).

Layout, all integers little-endian::

    magic      8 bytes   b"RVLAB\\x00\\r\\n" (the CR LF catches text-mode mangling)
    version    u16       FORMAT_VERSION; a newer one is refused, never guessed at
    kind_len   u16       then the kind, ASCII (e.g. "hnsw-index"), so one kind is never read as another
    header_len u32       then the header, UTF-8 JSON: the caller's metadata and an array table
    arrays               the raw bytes of each array, in table order
    sha256     32 bytes  of everything before it

Arrays are stored as raw little-endian bytes with their dtype and shape in the header; only plain numeric
dtypes are accepted, so reading a container never runs code (no pickle anywhere). A header is checked field by
field before anything is allocated from it, so a forged header (with its checksum recomputed) costs no more than
its own bytes and ends in :class:`CorruptIndexError`.

Files are read with :func:`read_file` (regular files only, never blocking on a FIFO or device) and written with
:func:`write_atomic` (through symlinks, atomically, cleaning up the temporary files of killed writers).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptIndexError, InvalidParameterError, NotARegularFileError

log = logging.getLogger(__name__)

MAGIC = b"RVLAB\x00\r\n"
FORMAT_VERSION = 1
_DIGEST = 32
_ALLOWED_DTYPES = frozenset(
    {"<f4", "<f8", "<f2", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "|b1"}
)
_PREFIX = struct.Struct("<8sHH")
_TABLE_FIELDS = frozenset({"name", "dtype", "shape", "nbytes"})
#: deeper JSON than any header the library writes; checked before parsing so no parser recursion is risked
_MAX_HEADER_DEPTH = 64
#: numpy refuses more dimensions than this
_MAX_NDIM = 32
#: bound on the element count of a zero-size array (one with a 0 in its shape is not bounded by its bytes)
_MAX_ELEMENTS = 2**48
# a JSON string, written so that the regex engine runs in linear time (no nested alternation)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_READ_CHUNK = 1 << 20


def dumps(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """Pack ``meta`` (JSON-able) and named numpy ``arrays`` into one container of the given ``kind``."""
    arrays = arrays or {}
    table = []
    chunks = []
    for name, array in arrays.items():
        arr = np.ascontiguousarray(array)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        arr = arr.astype(dtype, copy=False)
        if dtype.str not in _ALLOWED_DTYPES:
            raise InvalidParameterError(f"array {name!r} has dtype {arr.dtype}, which the container cannot store")
        data = arr.tobytes()
        table.append({"name": name, "dtype": dtype.str, "shape": list(arr.shape), "nbytes": len(data)})
        chunks.append(data)
    header = json.dumps({"meta": meta, "arrays": table}, separators=(",", ":"), allow_nan=False).encode()
    kind_bytes = kind.encode("ascii")
    body = b"".join(
        [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(kind_bytes)), kind_bytes, struct.pack("<I", len(header)), header,
         *chunks]
    )
    return body + hashlib.sha256(body).digest()


def loads(blob: bytes | bytearray | memoryview, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Check and unpack a container written by :func:`dumps`; return ``(meta, arrays)``.

    Raises :class:`CorruptIndexError` naming the problem for a blob that is not bytes, too short, of another
    magic, of a newer version, of another kind, whose checksum fails or whose array table does not add up.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CorruptIndexError(f"expected bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) < _PREFIX.size + 4 + _DIGEST:
        raise CorruptIndexError(f"blob is truncated: {len(data)} bytes is shorter than any container")
    magic, version, kind_len = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptIndexError(f"not a ruvector-lab container (magic {magic!r}, expected {MAGIC!r})")
    if version > FORMAT_VERSION:
        raise CorruptIndexError(
            f"container format version {version} is newer than this ruvector-lab reads ({FORMAT_VERSION}); "
            "upgrade ruvector-lab"
        )
    if version < 1:
        raise CorruptIndexError(f"container format version {version} is not valid")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptIndexError("checksum mismatch: the blob is truncated or was modified after it was written")
    pos = _PREFIX.size
    if pos + kind_len + 4 > len(body):
        raise CorruptIndexError("blob is truncated inside the header")
    found_kind = body[pos : pos + kind_len].decode("ascii", errors="replace")
    pos += kind_len
    if found_kind != kind:
        raise CorruptIndexError(f"container holds a {found_kind!r}, expected a {kind!r}")
    (header_len,) = struct.unpack_from("<I", body, pos)
    pos += 4
    if header_len > len(body) - pos:
        raise CorruptIndexError(f"header length {header_len} runs past the end of the blob")
    meta, table = _parse_header(body[pos : pos + header_len])
    pos += header_len
    arrays: dict[str, np.ndarray] = {}
    for index, entry in enumerate(table):
        name, dtype, shape, nbytes = _array_entry(entry, index)
        if name in arrays:
            raise CorruptIndexError(f"array {name!r} appears twice in the array table")
        # every size is checked against the bytes actually present before numpy allocates anything
        if nbytes > len(body) - pos:
            raise CorruptIndexError(f"array {name!r} ({nbytes} bytes) runs past the end of the blob")
        arrays[name] = np.frombuffer(body, dtype=dtype, count=nbytes // dtype.itemsize,
                                     offset=pos).reshape(shape).copy()
        pos += nbytes
    if pos != len(body):
        raise CorruptIndexError(f"{len(body) - pos} unexpected bytes after the last array")
    return meta, arrays


def _parse_header(raw: bytes) -> tuple[dict[str, Any], list[Any]]:
    """Decode the JSON header strictly: UTF-8, bounded nesting, no NaN/Infinity, ``{"meta": {}, "arrays": []}``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptIndexError(f"container header is not UTF-8: {exc}") from None
    depth = _nesting_depth(raw)
    if depth > _MAX_HEADER_DEPTH:
        raise CorruptIndexError(f"container header nests {depth} levels deep (at most {_MAX_HEADER_DEPTH})")
    try:
        header = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # RecursionError only if the depth check above were bypassed
        raise CorruptIndexError(f"container header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict) or not isinstance(
        header.get("arrays"), list
    ):
        raise CorruptIndexError('container header is not {"meta": {...}, "arrays": [...]}')
    return header["meta"], header["arrays"]


def _nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text, strings excluded (vectorised: headers hold every id)."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", raw), dtype=np.uint8)
    if not skeleton.size:
        return 0
    step = (np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(skeleton, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max())


def _refuse_constant(name: str) -> float:
    # dumps() writes with allow_nan=False, so NaN or Infinity in a header is never ours
    raise ValueError(f"{name} is not allowed in a container header")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" parses to inf
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def _is_count(value: object) -> bool:
    # exactly int: bools, floats (2.0, 1e3) and strings are type confusion, not sizes
    return type(value) is int and value >= 0


def _array_entry(entry: object, index: int) -> tuple[str, np.dtype, tuple[int, ...], int]:
    """Check one array table record field by field; return ``(name, dtype, shape, nbytes)``."""
    if not isinstance(entry, dict) or set(entry) != _TABLE_FIELDS:
        raise CorruptIndexError(f"array table entry {index} is not a record of {sorted(_TABLE_FIELDS)}")
    name, dtype_str, shape, nbytes = entry["name"], entry["dtype"], entry["shape"], entry["nbytes"]
    if not isinstance(name, str):
        raise CorruptIndexError(f"array table entry {index} has a name that is not a string")
    if not isinstance(dtype_str, str) or dtype_str not in _ALLOWED_DTYPES:
        raise CorruptIndexError(f"array {name!r} has a dtype the container does not allow")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(_is_count(s) for s in shape):
        raise CorruptIndexError(f"array {name!r}: shape must be a list of at most {_MAX_NDIM} integers >= 0")
    if not _is_count(nbytes):
        raise CorruptIndexError(f"array {name!r}: nbytes must be an integer >= 0")
    dtype = np.dtype(dtype_str)
    # Python ints: the product cannot overflow, and a size that does not match nbytes exactly is refused
    if math.prod(max(s, 1) for s in shape) > _MAX_ELEMENTS:
        raise CorruptIndexError(f"array {name!r}: shape {shape} is larger than any container holds")
    if math.prod(shape) * dtype.itemsize != nbytes:
        raise CorruptIndexError(f"array {name!r}: shape {shape} does not match {nbytes} bytes")
    return name, dtype, tuple(shape), nbytes


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symlink that does not resolve")):
        if test(mode):
            return kind
    return "not a regular file"


def read_file(path: str | os.PathLike[str]) -> bytes:
    """Return the bytes of the regular file at ``path`` (symlinks followed), never blocking on what is not one.

    A FIFO, device, directory or socket raises :class:`~ruvector_lab.errors.NotARegularFileError` at once: the
    file is opened with ``O_NONBLOCK`` (so a FIFO without a writer cannot hang the open) and checked with
    ``fstat`` on the open descriptor (so it cannot be swapped between the check and the read), and nothing is
    read from a device (``/dev/zero`` would never end). A missing file raises :class:`FileNotFoundError` and
    an unreadable one :class:`PermissionError`, as :func:`open` does.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        # checked before opening too: opening some devices (tape drives, terminals) has side effects
        before = os.stat(path)
    except OSError:
        before = None
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise NotARegularFileError(errno.EINVAL, f"refusing to read {_file_kind(before.st_mode)}", os.fspath(path))
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise NotARegularFileError(errno.EISDIR, "refusing to read a directory", os.fspath(path)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFileError(errno.EINVAL, f"refusing to read {_file_kind(info.st_mode)}", os.fspath(path))
        chunks = []
        # st_size is a hint only (files in /proc report 0); read to the end of what is there
        while chunk := os.read(fd, max(_READ_CHUNK, info.st_size + 1)):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _temp_prefix(name: str) -> str:
    """The prefix of every temporary file :func:`write_atomic` makes for a target called ``name``."""
    # a long name is hashed so that prefix + "-<pid>-<random>" stays within the 255-byte limit of a file name
    stem = name if len(name.encode("utf-8", "surrogateescape")) <= 200 else hashlib.sha256(
        name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f".{stem}.tmp-"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here and is not a zombie (a killed writer its parent has not reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # the state letter follows the command name, which is in parentheses and may itself hold ") "
            return handle.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except OSError:  # no /proc (not Linux) or it exited meanwhile: trust kill()
        return True


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files that :func:`write_atomic` left beside ``target`` in processes no longer alive.

    A save killed between creating its temporary file and renaming it leaves ``.{name}.tmp-<pid>-<random>``
    behind (as large as the file it was writing); one whose ``pid`` still runs is kept, since it may be a save in
    progress. Return the paths removed.
    """
    target = Path(target)
    prefix = _temp_prefix(target.name)
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text, _, token = name[len(prefix):].partition("-")
        if not pid_text.isdigit() or not token or _pid_alive(int(pid_text)):
            continue
        stale = target.parent / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(stale.lstat().st_mode):  # only ever a file this function's naming made
                stale.unlink()
                removed.append(stale)
                log.info("removed %s, left by a save to %s in process %s that no longer runs", stale, target,
                         pid_text)
    return removed


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename, fsync the folder.

    A symlink is written through: its final target gets the new contents and the link stays a link (the
    temporary file is made beside the target, so the rename stays on one file system). A path that names a
    directory, FIFO, device or socket raises :class:`~ruvector_lab.errors.NotARegularFileError` and is left as it
    is. Temporary files are called ``.{name}.tmp-<pid>-<random>``; those of earlier saves to the same path whose
    process is gone (killed mid-save) are removed first. An existing file keeps its permission bits; a new one
    gets the usual ``0o666`` less the umask. Return the path written (the symlink's target for a symlink).
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(_regular_or_raise(target).st_mode)
    except FileNotFoundError:
        mode = None
    remove_stale_temporaries(target)
    tmp = target.parent / f"{_temp_prefix(target.name)}{os.getpid()}-{secrets.token_hex(6)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # checked again just before the rename: a FIFO or device put there meanwhile is not replaced either
        with contextlib.suppress(FileNotFoundError):
            _regular_or_raise(target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _regular_or_raise(path: Path) -> os.stat_result:
    info = os.lstat(path)  # the path is already resolved: lstat sees what os.replace would replace
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFileError(errno.EINVAL, f"refusing to replace {_file_kind(info.st_mode)}", str(path))
    return info


def _fsync_dir(folder: Path) -> None:
    # the rename is durable only once the folder's entry is on disk; some file systems cannot fsync a folder
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("cannot fsync folder %s: %s", folder, exc)
    finally:
        os.close(fd)
