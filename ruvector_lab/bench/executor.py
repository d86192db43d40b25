"""Where the pipeline's fan-outs run: in this process (``local``, the default) or on a Dask cluster (``dask``).

One setting decides it for every fan-out (build repeats and build matrices, the codec sweep, exact ground truth,
corpus embedding, the autotuner's trials): params ``bench.executor`` and ``bench.dask.scheduler``, overridden by
the environment (``RUVECTOR_LAB_EXECUTOR``, ``RUVECTOR_LAB_DASK_SCHEDULER``; a scheduler set there means ``dask``)
and by the CLI (``--executor``, ``--scheduler``). A scheduler is an address (``tcp://host:8786``) or ``local:N``: a
``LocalCluster`` of N single-threaded worker processes started for the run.

Both executors run a task through the same wrapper (:func:`_execute`), so a result means the same wherever it ran:

- **Results come back as files.** A task that writes results (``Task.writes_results``) writes them under a scratch
  folder on the machine that runs it; the files come back to the client, which writes each atomically under its own
  results root (no shared file system needed). Finished results the task must see to skip work (``Task.seeds``)
  travel with it.
- **Data travels by content hash.** A task names its dataset with a :class:`DatasetRef` (name and content hash); a
  worker that lacks the file fetches it once from the copy the client scattered and keeps it in its local cache
  (``RUVECTOR_LAB_DATA_CACHE``, default ``~/.ruvector/datasets``), checked against the hash on every load.
- **A measuring task runs alone on its worker** (it holds the worker resource ``measure=1``) and holds a host-wide
  :func:`~ruvector_lab.bench.hostload.measuring_slot`: the records it writes carry ``host_load`` (how many
  measuring tasks ran on the host at once) and every record's environment names its host, so the report never
  mixes two hosts' timings unannounced.
- **Faults**: a failure in the data (a :class:`~ruvector_lab.errors.RuvectorLabError`: bad file, unavailable
  backend) is returned as the task's ``error`` and the rest of the sweep goes on; any other exception, and a worker
  that dies mid-task, is retried elsewhere (Dask's ``retries``) before it is recorded as an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..container import write_atomic
from ..errors import DatasetError, InvalidParameterError, RuvectorLabError
from . import hostload

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")
EXECUTOR_ENV = "RUVECTOR_LAB_EXECUTOR"
SCHEDULER_ENV = "RUVECTOR_LAB_DASK_SCHEDULER"
DATA_CACHE_ENV = "RUVECTOR_LAB_DATA_CACHE"
#: the worker resource a measuring task holds: one measuring task per worker at a time
MEASURE = "measure"


class ExecutorError(RuvectorLabError):
    """The executor cannot run: a bad setting, Dask missing, or a cluster no measuring task can run on."""


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class ExecutorSettings:
    """``kind`` is 'local' or 'dask'; ``scheduler`` a Dask address or ``local:N`` (None: ``local:<usable cores>``);
    ``retries`` re-runs of a task whose worker died or that raised something other than a data error;
    ``connect_timeout_s`` how long to wait for a scheduler address to answer."""

    kind: str = "local"
    scheduler: str | None = None
    retries: int = 2
    connect_timeout_s: float = 30.0

    def describe(self) -> str:
        """'local', or 'dask (<scheduler>)'."""
        return self.kind if self.kind == "local" else f"dask ({self.scheduler or 'local:' + str(_cores())})"


def check_scheduler(value: str) -> str:
    """A scheduler setting: ``local:N`` (N >= 1) or an address with a scheme (``tcp://host:8786``)."""
    value = str(value).strip()
    if value.startswith("local:"):
        count = value.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise InvalidParameterError(f"scheduler {value!r}: local:N needs a worker count N >= 1")
        return value
    if "://" not in value or value.endswith("://"):
        raise InvalidParameterError(f"scheduler {value!r} is neither local:N nor an address like tcp://host:8786")
    return value


def executor_settings(params: dict[str, Any] | None = None, kind: str | None = None,
                      scheduler: str | None = None) -> ExecutorSettings:
    """The executor to use: the CLI's ``kind``/``scheduler`` first, then the environment, then params ``bench``."""
    bench = (params or {}).get("bench") or {}
    dask_params = bench.get("dask") or {}
    env_scheduler = os.environ.get(SCHEDULER_ENV) or None
    env_kind = os.environ.get(EXECUTOR_ENV) or None
    chosen = kind or env_kind or ("dask" if env_scheduler else None) or bench.get("executor") or "local"
    if chosen not in EXECUTORS:
        raise InvalidParameterError(f"executor {chosen!r} is not one of {', '.join(EXECUTORS)}")
    address = scheduler or env_scheduler or dask_params.get("scheduler")
    retries = int(dask_params.get("retries", ExecutorSettings.retries))
    if retries < 0:
        raise InvalidParameterError(f"bench.dask.retries must be >= 0, got {retries}")
    return ExecutorSettings(chosen, check_scheduler(address) if address else None, retries)


# ---------------------------------------------------------------------------------------------------- datasets
def data_cache() -> Path:
    """The local dataset cache of this machine: ``$RUVECTOR_LAB_DATA_CACHE``, else ``~/.ruvector/datasets``."""
    value = os.environ.get(DATA_CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".ruvector" / "datasets"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset named by content: the task reads the client's file (local executor) or this machine's cached copy,
    fetched once from the client's scattered bytes (``payload``, a Dask key) when missing."""

    name: str
    content_hash: str
    path: str
    #: the name the file's bytes are published under on the cluster (None: read ``path``)
    payload: str | None = None
    #: the dataset already in memory (local executor only; never shipped)
    inline: Any = field(default=None, compare=False, repr=False)

    def cached_path(self) -> Path:
        """Where this machine keeps its copy."""
        return data_cache() / f"{self.name}-{self.content_hash}.hdf5"

    def load(self) -> Any:
        """The :class:`~ruvector_lab.bench.hdf5.Dataset`, checked against the content hash."""
        from .hdf5 import read_hdf5

        if self.inline is not None:
            return self.inline
        if self.payload is None:
            return _checked(read_hdf5(self.path, name=self.name, require_groundtruth=False), self)
        cached = self.cached_path()
        if cached.exists():
            try:
                ds = read_hdf5(cached, name=self.name)
                if ds.content_hash() == self.content_hash:
                    return ds
                why = "does not match its content hash"
            except DatasetError as exc:  # truncated or damaged: the cluster still has the good bytes
                why = str(exc)
            log.warning("%s: cached copy unusable (%s); fetching it again", cached, why)
        _fetch_into(cached, self)
        return _checked(read_hdf5(cached, name=self.name), self)


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s lock file (every process of the host that caches there waits on it)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _damaged(path: Path, ref: DatasetRef) -> bool:
    from .hdf5 import read_hdf5

    try:
        return read_hdf5(path, name=ref.name).content_hash() != ref.content_hash
    except DatasetError:
        return True


def _read(path: str | os.PathLike[str] | None) -> Any:
    from .hdf5 import read_hdf5

    if path is None:
        raise InvalidParameterError("a dataset reference needs a file or the dataset itself")
    return read_hdf5(path, name=Path(path).stem)


def _checked(ds: Any, ref: DatasetRef) -> Any:
    found = ds.content_hash()
    if found != ref.content_hash:
        raise DatasetError(f"dataset {ref.name!r}: content hash {found} where the task expects {ref.content_hash} "
                           "(the file changed after the sweep started)")
    return ds


def _fetch_into(cached: Path, ref: DatasetRef) -> None:
    """Copy the bytes ``ref`` names from the cluster into ``cached``, once per host.

    The dataset is published on the scheduler (a future rebuilt from its bare key would wait forever). The task
    secedes from its worker's thread pool first (worker_client), so while it waits the worker runs other tasks; the
    host-wide file lock is taken only after seceding, so a task waiting for it never holds the thread slot the
    downloading task needs to rejoin. A task that waited finds the copy made meanwhile and fetches nothing.
    """
    from distributed import worker_client

    assert ref.payload is not None
    with worker_client() as client, _cache_lock(cached):
        if cached.exists() and not _damaged(cached, ref):
            return
        log.info("fetching dataset %s (%s) from the cluster", ref.name, ref.payload)
        write_atomic(cached, bytes(client.gather(client.get_dataset(ref.payload))))


# ------------------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """One unit of a fan-out: ``fn(*args)``, or ``fn(scratch_root, *args)`` when it ``writes_results`` (files it
    writes there are delivered under the client's results root). ``seeds``: results-root-relative paths of finished
    files the task reads (sent with it). ``measuring``: holds a measuring slot and runs alone on its worker."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    measuring: bool = False
    writes_results: bool = False
    seeds: tuple[str, ...] = ()
    #: a cluster starts higher priorities first (longest first keeps workers busy to the end); local ignores it
    priority: int = 0


@dataclass
class TaskOutcome:
    """What became of a task: its return ``value``, the files it delivered, or the ``error`` that stopped it; the
    host it ran on and, for a measuring task, what the host's other measuring tasks were doing meanwhile."""

    name: str
    value: Any = None
    error: str | None = None
    files: list[Path] = field(default_factory=list)
    host: dict[str, Any] | None = None
    host_load: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when the task finished."""
        return self.error is None


@dataclass
class _Shipped:
    """A task's return travelling back: value, files (relative path -> bytes), host, load, or the data error."""

    value: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    host: dict[str, Any] | None = None
    host_load: dict[str, Any] | None = None
    error: str | None = None


def _safe_relative(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise InvalidParameterError(f"result path {rel!r} is not inside the results root")
    return path


def _stamp(data: bytes, load: dict[str, Any]) -> bytes:
    """A result record with ``host_load`` added (other files unchanged)."""
    try:
        record = json.loads(data)
    except ValueError:
        return data
    if not isinstance(record, dict) or "schema" not in record:
        return data
    record["host_load"] = load
    return json.dumps(record, indent=1, sort_keys=True, allow_nan=True).encode() + b"\n"


def _execute(fn: Callable[..., Any], args: tuple[Any, ...], name: str, measuring: bool, writes_results: bool,
             seeds: dict[str, bytes]) -> _Shipped:
    """Run one task where it was sent (this process or a worker) and pack what it made."""
    from . import env, threads  # here, not at import: env pulls in every backend, and the data stage imports this

    shipped = _Shipped(host=env.host())
    slot = hostload.measuring_slot(name) if measuring else contextlib.nullcontext(None)
    worker_threads = _worker_threads()
    # on a worker, the library pools start pinned to the worker's threads (a measurement pins its own inside)
    pools = threads.pinned_threads(worker_threads) if worker_threads else contextlib.nullcontext(None)
    try:
        with tempfile.TemporaryDirectory(prefix="ruvector-lab-task-") as tmp:
            scratch = Path(tmp)
            for rel, data in seeds.items():
                write_atomic(scratch / _safe_relative(rel), data)
            with slot as load, pools:
                shipped.value = fn(scratch, *args) if writes_results else fn(*args)
            if load is not None:
                shipped.host_load = {**load.to_dict(), "worker_threads": worker_threads}
            for path in sorted(p for p in scratch.rglob("*") if p.is_file() and not p.name.startswith(".")):
                rel = path.relative_to(scratch).as_posix()
                data = path.read_bytes()
                if seeds.get(rel) == data:
                    continue  # a finished result the task only read
                shipped.files[rel] = _stamp(data, shipped.host_load) if shipped.host_load else data
    except RuvectorLabError as exc:  # a failure in the data: recorded, never retried
        shipped.error = f"{type(exc).__name__}: {exc}"
    return shipped


def _cores() -> int:
    from .env import usable_cores

    return usable_cores()


def _host() -> dict[str, Any]:
    from .env import host

    return host()


def _worker_threads() -> int | None:
    """The threads of the Dask worker running this task, None outside a worker."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return int(get_worker().state.nthreads)
    except ValueError:  # not in a worker
        return None


def _seed_bytes(task: Task, root: Path | None) -> dict[str, bytes]:
    if root is None:
        return {}
    out = {}
    for rel in task.seeds:
        path = root / _safe_relative(rel)
        if path.is_file():
            out[rel] = path.read_bytes()
    return out


def _deliver(task: Task, shipped: _Shipped, root: Path | None) -> TaskOutcome:
    outcome = TaskOutcome(task.name, shipped.value, shipped.error, host=shipped.host, host_load=shipped.host_load)
    if shipped.files and root is None:
        raise InvalidParameterError(f"task {task.name} wrote results but the run has no results root")
    for rel, data in shipped.files.items():
        target = root / _safe_relative(rel)  # type: ignore[operator]
        write_atomic(target, data)
        os.chmod(target, 0o644)
        outcome.files.append(target)
    if outcome.error:
        log.warning("%s failed: %s", task.name, outcome.error)
    return outcome


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=None, leave=False)


# --------------------------------------------------------------------------------------------------- executors
class LocalExecutor:
    """Every task in this process, one after another (the embedded default: nothing to start)."""

    kind = "local"

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()

    def dataset_ref(self, path: str | os.PathLike[str] | None, ds: Any = None) -> DatasetRef:
        """A reference to the dataset at ``path`` (``ds``: the same dataset already read, reused in place; with
        ``ds`` the path may be None)."""
        ds = ds if ds is not None else _read(path)
        return DatasetRef(ds.name, ds.content_hash(), str(path or ""), inline=ds)

    def run(self, tasks: Sequence[Task], desc: str = "tasks", root: str | os.PathLike[str] | None = None
            ) -> list[TaskOutcome]:
        """Run ``tasks`` in order; outcomes in the same order (errors recorded, the rest goes on)."""
        root_path = Path(root) if root is not None else None
        outcomes = []
        with _bar(len(tasks), desc) as bar:
            for task in tasks:
                try:
                    shipped = _execute(task.fn, task.args, task.name, task.measuring, task.writes_results,
                                       _seed_bytes(task, root_path))
                except Exception as exc:  # not a data error: recorded as on a cluster (traceback in the log)
                    log.exception("%s raised", task.name)
                    shipped = _Shipped(host=_host(), error=f"{type(exc).__name__}: {exc}")
                outcomes.append(_deliver(task, shipped, root_path))
                bar.update(1)
        return outcomes

    def workers(self) -> int:
        """How many tasks run at once: one."""
        return 1

    def close(self) -> None:
        """Nothing to release."""


class DaskExecutor:
    """Tasks on a Dask cluster: an existing scheduler (``tcp://...``) or a ``LocalCluster`` of N single-threaded
    worker processes (``local:N``), each worker holding one ``measure`` resource."""

    kind = "dask"

    def __init__(self, settings: ExecutorSettings) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ExecutorError("executor 'dask' needs the distributed package: pip install 'ruvector-lab[cluster]'"
                                ) from exc
        self.settings = settings
        self._cluster = None
        #: content hash -> the name its bytes are published under on the scheduler
        self._payloads: dict[str, str] = {}
        address = settings.scheduler or f"local:{_cores()}"
        try:
            if address.startswith("local:"):
                # dashboard ":0": any free port (the scheduler's HTTP server would otherwise take 8787 or warn)
                self._cluster = LocalCluster(n_workers=int(address.split(":", 1)[1]), threads_per_worker=1,
                                             processes=True, resources={MEASURE: 1}, dashboard_address=":0")
                self.client = Client(self._cluster)
            else:
                self.client = Client(address, timeout=f"{self.settings.connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        self.address = address
        self._check_workers()

    def _check_workers(self) -> None:
        workers = self.client.scheduler_info().get("workers", {})
        measuring = [w for w in workers.values() if (w.get("resources") or {}).get(MEASURE, 0) >= 1]
        if workers and not measuring:
            raise ExecutorError(f"no worker of {self.address} offers the resource {MEASURE}=1, so no measuring task "
                                f"could run: start workers with `dask worker ADDRESS --nthreads 1 --resources "
                                f"{MEASURE}=1`")

    def workers(self) -> int:
        """Workers connected now."""
        return len(self.client.scheduler_info().get("workers", {}))

    def dataset_ref(self, path: str | os.PathLike[str] | None, ds: Any = None) -> DatasetRef:
        """A reference to the dataset at ``path`` (or to ``ds``, written to HDF5 for the trip when there is no
        file); its bytes are scattered once per executor, and a worker copies them into its cache only if it
        lacks them."""
        from .hdf5 import write_hdf5

        ds = ds if ds is not None else _read(path)
        digest = ds.content_hash()
        if digest not in self._payloads:
            if path is not None:
                data = Path(path).read_bytes()
            else:
                with tempfile.TemporaryDirectory(prefix="ruvector-lab-ship-") as tmp:
                    data = write_hdf5(Path(tmp) / f"{ds.name}.hdf5", ds).read_bytes()
            name = f"ruvector-lab-data-{digest}-{uuid.uuid4().hex[:8]}"
            self.client.publish_dataset(self.client.scatter(data, hash=False), name=name)
            self._payloads[digest] = name
        return DatasetRef(ds.name, digest, str(path or ""), payload=self._payloads[digest])

    def run(self, tasks: Sequence[Task], desc: str = "tasks", root: str | os.PathLike[str] | None = None
            ) -> list[TaskOutcome]:
        """Submit every task, deliver each as it finishes; outcomes in task order (errors recorded)."""
        from distributed import as_completed

        root_path = Path(root) if root is not None else None
        futures = {}
        for i, task in enumerate(tasks):
            future = self.client.submit(
                _execute, task.fn, task.args, task.name, task.measuring, task.writes_results,
                _seed_bytes(task, root_path), key=f"{_key_name(task.name)}-{uuid.uuid4().hex[:8]}", pure=False,
                retries=self.settings.retries, resources={MEASURE: 1} if task.measuring else None,
                priority=task.priority)
            futures[future] = i
        outcomes: list[TaskOutcome | None] = [None] * len(tasks)
        with _bar(len(tasks), desc) as bar:
            for future in as_completed(list(futures)):
                i = futures[future]
                task = tasks[i]
                try:
                    shipped = future.result()
                except Exception as exc:  # retries spent: recorded like a data error, the sweep goes on
                    shipped = _Shipped(error=f"{type(exc).__name__}: {exc}")
                outcomes[i] = _deliver(task, shipped, root_path)
                bar.update(1)
                future.release()
        return [o for o in outcomes if o is not None]

    def close(self) -> None:
        """Disconnect; stop the LocalCluster this executor started."""
        client = getattr(self, "client", None)
        for name in self._payloads.values():
            with contextlib.suppress(Exception):
                client.unpublish_dataset(name)  # type: ignore[union-attr]
        self._payloads.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None


Executor = LocalExecutor | DaskExecutor


def _key_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "task"


@contextlib.contextmanager
def open_executor(settings: ExecutorSettings | None = None) -> Iterator[Executor]:
    """The executor ``settings`` names, closed (its LocalCluster stopped) when the block ends."""
    settings = settings or ExecutorSettings()
    start = time.perf_counter()
    executor: Executor = LocalExecutor(settings) if settings.kind == "local" else DaskExecutor(settings)
    if settings.kind == "dask":
        log.info("executor %s: %d workers (%.1f s to connect)", settings.describe(), executor.workers(),
                 time.perf_counter() - start)
    try:
        yield executor
    finally:
        executor.close()


def failures(outcomes: Sequence[TaskOutcome]) -> list[str]:
    """'name: error' of every failed outcome."""
    return [f"{o.name}: {o.error}" for o in outcomes if not o.ok]


def raise_failures(outcomes: Sequence[TaskOutcome], what: str) -> None:
    """Raise one :class:`ExecutorError` naming every failed task, after the others' results were delivered."""
    failed = failures(outcomes)
    if failed:
        raise ExecutorError(f"{len(failed)} of {len(outcomes)} {what} failed: " + "; ".join(failed))
