"""The autotuner: the cheapest index for a target recall, across backends, build parameters and codecs.

``tune(dataset, recall=0.95)`` runs an **Optuna** study over a :class:`~ruvector_lab.bench.tune_space.TuneSpace`
(backend, M, ef_construction, codec, re-rank depth). Every trial builds one configuration in a child process and
finds the cheapest ef_search reaching the target (:mod:`ruvector_lab.bench.trial`); the study is multi-objective
(1-thread batch QPS up, bytes per vector down, build time down) with recall >= target as a constraint (and bytes
per vector <= the memory budget, when given). Configurations whose layout alone exceeds the budget are pruned before
anything is built; configurations that miss the target at ``ef_max`` are pruned before anything is timed.

The study lives in a storage the user can resume and inspect: a SQLite file under ``data/`` by default, or any
database URL Optuna supports (many workers can share one study). A killed tune resumes where it stopped: finished
child evaluations are kept as JSON beside the results (keyed by the configuration, the seed and the dataset's
contents), and a trial left running by a dead process is failed and retried after Optuna's heartbeat grace period.

Then, **checked, not believed**: each objective's best configuration is rebuilt with other seeds (the
build-variance repeats) and recommended only if the median build still meets the target at the chosen ef_search;
otherwise the next best is checked. With ``grid=True`` the whole discretised space is evaluated as the reference
(the tuner's evaluations are reused, so the grid costs only the configurations the tuner did not try), the tuner's
best QPS is compared with the grid's best, and the tuner is replayed on the grid's measurements with other sampler
seeds to say how often it finds the grid's best within a third of the grid's builds.

The result is written as JSON under the results root (``tune/<dataset>/recall-<target>.json``, schema
``ruvector-lab/tune@1``) with a ready ``params.yaml`` fragment beside it.

**Where the trials run** (``executor``, :mod:`ruvector_lab.bench.executor`). With the local executor (the default)
every evaluation is a child process of this one, one trial at a time, driven by ``study.optimize``. With an
executor that runs N tasks at once (Dask), the study uses Optuna's ask-and-tell interface: up to N trials are asked,
each evaluation is submitted as a measuring task (alone on its worker, its host load recorded), each result is told
as it completes and the next trial asked, until the budget is spent; the sampler then penalises the configurations
still running (TPE's ``constant_liar``), so the N open trials do not all ask for the same one. **The study and its
storage stay on this client: workers never open the database**, so a cluster needs no access to it (a storage URL
that several ``tune`` processes share still works: each process asks and tells its own trials). The dataset reaches
a worker by content hash, and the worker writes the trial's ``.npy`` inputs on its own disk (no shared file system);
the evaluation record comes back as a value and is kept beside the results here. Each evaluation record keeps the
host it ran on and the host's measuring load (``host``, ``host_load``), so the report can keep hosts apart. The
verification builds, the grid and the head-to-head run on the workers too (measuring tasks, batched where their
number is known in advance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, InvalidParameterError, RuvectorLabError
from ..types import HnswConfig
from . import env, results
from .executor import DatasetRef, Executor, Task, TaskOutcome
from .hdf5 import Dataset
from .trial import TrialData, TrialSettings, check_targets, evaluate, head_to_head
from .tune_space import Candidate, TuneSpace, candidates, spec_key

log = logging.getLogger(__name__)

SCHEMA_TUNE = "ruvector-lab/tune@1"
#: objective name -> (figure, Optuna direction); the study optimises all three, ``objective`` picks the headline
OBJECTIVES: dict[str, tuple[str, str]] = {"qps": ("qps", "maximize"), "memory": ("bytes_per_vector", "minimize"),
                                          "build-time": ("build_time_s", "minimize")}
#: the tuner's best QPS counts as matching the grid's when within this fraction of it
GRID_TOLERANCE = 0.05
#: how many configurations down each objective's ranking the verification may go before giving up
MAX_VERIFY_CANDIDATES = 3
#: fresh builds a raised ef_search is measured on before the configuration is refused (see ``_verify``)
REMEASURE_ATTEMPTS = 3
#: the grid's configurations timed head to head with the tuner's best: those within this fraction of the grid's
#: best single measurement (QPS windows on a shared machine vary by about that much), at most HEAD_TO_HEAD_MAX
HEAD_TO_HEAD_SPAN = 0.15
HEAD_TO_HEAD_MAX = 4
#: timed windows per configuration in the head-to-head run (alternating, the order reversed every window)
HEAD_TO_HEAD_REPEATS = 7

Progress = Callable[[str, int, int], None]


@dataclass
class TuneResult:
    """What a tune found: every trial, the Pareto set, the recommended configuration per objective (checked with
    other seeds), the grid comparison (when asked for) and the one-line answer. ``to_dict()`` is the JSON
    written under the results root; :meth:`history` is the trials as a table a notebook can plot."""

    dataset: str
    target: float
    objective: str
    study_name: str
    storage: str
    trials: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    recommended: dict[str, dict[str, Any] | None]
    builds: int
    wall_s: float
    answer: str
    grid: dict[str, Any] | None = None
    space: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    memory_budget: float | None = None

    @property
    def best(self) -> dict[str, Any] | None:
        """The recommended configuration for the headline objective (None when nothing met the target)."""
        return self.recommended.get(self.objective)

    def hnsw_config(self, objective: str | None = None, dimensions: int | None = None,
                    metric: str | None = None) -> HnswConfig:
        """The :class:`HnswConfig` of the recommended configuration (``objective``: default the headline one),
        with its ef_search; raises :class:`InvalidParameterError` when that objective has no recommendation."""
        rec = self.recommended.get(objective or self.objective)
        if rec is None:
            raise InvalidParameterError(f"no configuration meets recall {self.target} for objective "
                                        f"{objective or self.objective!r}: {self.answer}")
        cand = Candidate.from_dict(rec)
        return cand.config(int(dimensions or rec["dimensions"]), str(metric or rec["metric"]), int(rec["ef_search"]))

    def params_fragment(self, objective: str | None = None) -> str:
        """A ``params.yaml`` fragment that builds the recommended configuration in the pipeline."""
        return params_fragment(self.to_dict(), objective)

    def history(self) -> Any:
        """Every trial as a polars DataFrame: number, configuration, status, and the three objectives."""
        import polars as pl

        rows = [{"number": t["number"], "label": t.get("label"), "backend": (t.get("candidate") or {}).get("backend"),
                 "state": t["state"], "feasible": t.get("feasible"), "reused": t.get("reused"),
                 "ef_search": t.get("ef_search"), "recall": t.get("recall"), "qps": t.get("qps"),
                 "bytes_per_vector": t.get("bytes_per_vector"), "build_time_s": t.get("build_time_s")}
                for t in self.trials]
        return pl.DataFrame(rows, schema={"number": pl.Int64, "label": pl.Utf8, "backend": pl.Utf8, "state": pl.Utf8,
                                          "feasible": pl.Boolean, "reused": pl.Boolean, "ef_search": pl.Int64,
                                          "recall": pl.Float64, "qps": pl.Float64, "bytes_per_vector": pl.Float64,
                                          "build_time_s": pl.Float64})

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able values (schema ``ruvector-lab/tune@1``)."""
        return {"schema": SCHEMA_TUNE, "status": "ok", **dataclasses.asdict(self)}


# ------------------------------------------------------------------------------------------------ evaluations
#: one evaluation asked of :class:`Evaluations`: configuration, seed, ``check`` (target -> ef) and ``timing``
Request = tuple[Candidate, int, dict[float, int] | None, bool]


class Evaluations:
    """Finished trial evaluations, one JSON each under ``<root>/tune/<dataset>/evals/``: keyed by configuration,
    seed and a fingerprint of the dataset's contents, the trial settings, the measured targets, the libraries
    and the measuring code, so a tune that was killed, a second study or the grid reuse them and nothing else.

    A missing evaluation runs in a child process of this one (``data``: the trial's arrays written here), or, given
    a cluster ``executor`` and the dataset's ``ref``, as a measuring task on a worker (:meth:`task`, :meth:`finish`,
    :meth:`prefetch`); either way the record is kept here, on the client, with the host it ran on."""

    def __init__(self, root: Path, ds: Dataset, data: TrialData | None, settings: TrialSettings,
                 targets: Sequence[float], executor: Executor | None = None, ref: DatasetRef | None = None) -> None:
        self.folder = Path(root) / "tune" / results.check_component(ds.name, "dataset") / "evals"
        self.data, self.settings, self.targets = data, settings, tuple(targets)
        self.identity = {"dataset": ds.describe(), "settings": settings.to_dict(), "targets": list(self.targets)}
        self.built = 0  # child builds this process ran (not reused)
        # only a cluster gets tasks: the local executor keeps today's in-process children (and their figures)
        self.executor = executor if executor is not None and executor.kind != "local" else None
        if self.executor is not None and ref is None:
            raise InvalidParameterError("evaluations on a cluster need the dataset's reference (executor.dataset_ref)")
        if self.executor is None and data is None:
            raise InvalidParameterError("local evaluations need the trial data (TrialData)")
        self.ref = ref
        # this run's cluster evaluations that failed (never stored, a failure may be the machine's): asked again in
        # the same run they are not sent again; a later run retries them
        self._failed: dict[Path, dict[str, Any]] = {}
        from . import codedeps

        # the trial's own measuring code (the child, the bisection, the timing), beside each backend's
        self.trial_code = codedeps.files_hash(codedeps.module_closure([f"{__package__}.trial"]))

    @property
    def remote(self) -> bool:
        """True when missing evaluations run as tasks on a cluster."""
        return self.executor is not None

    def _path(self, cand: Candidate, seed: int, check: dict[float, int] | None, timing: bool) -> tuple[Path, str]:
        code = results.measured_code_hash(cand.backend, quantized=cand.quantization != "none") + self.trial_code
        fp = results.fingerprint({**self.identity, "candidate": cand.to_dict(), "seed": seed,
                                  "check": {str(k): v for k, v in (check or {}).items()}, "timing": timing}, code)
        return self.folder / f"{spec_key(cand)}-s{seed}-{fp}.json", fp

    def stored(self, cand: Candidate, seed: int = 0, check: dict[float, int] | None = None,
               timing: bool = True) -> dict[str, Any] | None:
        """The stored evaluation of ``cand`` with ``seed`` (or this run's failed cluster attempt), None if none."""
        path, fp = self._path(cand, seed, check, timing)
        stored = results.read_json(path) if path.exists() else None
        if stored is not None and stored.get("fingerprint") == fp:
            return stored
        return self._failed.get(path)

    def _keep(self, cand: Candidate, seed: int, check: dict[float, int] | None, timing: bool,
              record: dict[str, Any]) -> dict[str, Any]:
        """Count a fresh evaluation, stamp its fingerprint, and store it when it succeeded."""
        path, fp = self._path(cand, seed, check, timing)
        self.built += 1
        record["fingerprint"] = fp
        if record.get("status") == "ok":  # a failure is retried next time: it may be the machine's, not the data's
            results.write_json(path, record)
        elif self.remote:
            self._failed[path] = record
        return record

    def get(self, cand: Candidate, seed: int = 0, check: dict[float, int] | None = None,
            timing: bool = True) -> tuple[dict[str, Any], bool]:
        """The evaluation of ``cand`` with ``seed`` (a child run, or the stored one): ``(record, reused)``."""
        stored = self.stored(cand, seed, check, timing)
        if stored is not None:
            return stored, True
        if self.executor is not None:
            request: Request = (cand, seed, check, timing)
            outcome = self.executor.run([self.task(request)], f"evaluate {cand.label}")[0]
            return self.finish(request, outcome), False
        assert self.data is not None  # checked in __init__: local evaluations have their data
        record = evaluate(self.data, cand, self.targets, seed, self.settings, check=check, timing=timing)
        record["host"] = env.host()  # no host_load: a local child holds no measuring slot (as before the executor)
        return self._keep(cand, seed, check, timing, record), False

    def task(self, request: Request) -> Task:
        """The measuring task that evaluates ``request`` on a worker (the worker writes the trial's data itself)."""
        cand, seed, check, timing = request
        what = "trial" if check is None else "verify"
        return Task(f"{what} {cand.label} s{seed}", _evaluate_on_worker,
                    (self.ref, cand, self.targets, int(seed), self.settings, check, bool(timing)), measuring=True)

    def finish(self, request: Request, outcome: TaskOutcome) -> dict[str, Any]:
        """The record of a finished :meth:`task`, with the host it ran on and its host load, kept here (a task that
        failed, in the data or after the executor's retries, is a failed evaluation: the study goes on)."""
        cand, seed, check, timing = request
        return self._keep(cand, seed, check, timing, _record_of(outcome))

    def prefetch(self, requests: Sequence[Request], desc: str = "evaluations") -> None:
        """On a cluster, run every request that has no stored evaluation at once (measuring tasks, one per worker at
        a time); later :meth:`get` calls then find them. Locally nothing: each runs when it is asked for."""
        if self.executor is None:
            return
        missing: list[Request] = []
        for request in requests:
            if self.stored(*request) is None and not any(_same(request, m) for m in missing):
                missing.append(request)
        if not missing:
            return
        outcomes = self.executor.run([self.task(r) for r in missing], desc)
        for request, outcome in zip(missing, outcomes, strict=True):
            self.finish(request, outcome)

    def head_to_head(self, entries: Sequence[tuple[Candidate, int]], repeats: int) -> dict[str, Any]:
        """:func:`~ruvector_lab.bench.trial.head_to_head` of ``entries``: a child process here, or one measuring
        task on a worker (the whole comparison in one process either way, so its windows alternate fairly)."""
        if self.executor is None:
            assert self.data is not None  # checked in __init__: local evaluations have their data
            return head_to_head(self.data, entries, self.settings, repeats=repeats)
        task = Task("head-to-head", _head_to_head_on_worker,
                    (self.ref, [(c, int(ef)) for c, ef in entries], self.settings, int(repeats)), measuring=True)
        return _record_of(self.executor.run([task], "head-to-head")[0])


def _same(a: Request, b: Request) -> bool:
    return a[0] == b[0] and a[1] == b[1] and (a[2] or {}) == (b[2] or {}) and a[3] == b[3]


def _record_of(outcome: TaskOutcome) -> dict[str, Any]:
    """A task's evaluation record with ``host`` and ``host_load``; a failed task as a failed evaluation."""
    if outcome.ok and isinstance(outcome.value, dict):
        record = dict(outcome.value)
    else:
        record = {"status": "failed", "reason": outcome.error or "the task returned no record"}
    record["host"] = outcome.host
    record["host_load"] = outcome.host_load
    return record


# ------------------------------------------------------------------------------------------- on a Dask worker
@dataclass
class _Held:
    """A worker's trial data and how many running tasks read it (a folder in use is never deleted)."""

    data: TrialData
    users: int = 0


#: the trial data this worker process wrote, by (dataset content hash, query count): written once per worker and
#: dataset, not once per trial; another dataset's folder is deleted once no task uses it
_WORKER_DATA: dict[tuple[str, int], _Held] = {}
_WORKER_LOCK = threading.Lock()


@contextlib.contextmanager
def _worker_data(ref: DatasetRef, n_queries: int) -> Iterator[TrialData]:
    """The trial's ``.npy`` inputs on this machine's disk, from the dataset ``ref`` names (fetched by content hash
    when this machine lacks it): no file system shared with the client is needed."""
    key = (ref.content_hash, int(n_queries))
    with _WORKER_LOCK:  # one writer per dataset; the tasks of a worker wait for it rather than write it twice
        held = _WORKER_DATA.get(key)
        if held is None or not held.data.path.is_dir():
            ds = ref.load()
            if ds.distances is None:
                raise DatasetError(f"dataset {ref.name!r} reached the worker without its ground truth")
            held = _WORKER_DATA[key] = _Held(TrialData(ds.train, ds.test, ds.distances, ds.metric, n_queries))
        held.users += 1
    try:
        yield held.data
    finally:
        with _WORKER_LOCK:
            held.users -= 1
            for other, entry in list(_WORKER_DATA.items()):
                if other != key and entry.users == 0:
                    entry.data.close()
                    del _WORKER_DATA[other]


def _evaluate_on_worker(ref: DatasetRef, cand: Candidate, targets: Sequence[float], seed: int,
                        settings: TrialSettings, check: dict[float, int] | None, timing: bool) -> dict[str, Any]:
    """A measuring task: :func:`~ruvector_lab.bench.trial.evaluate` on the worker, its data written there."""
    with _worker_data(ref, settings.n_queries) as data:
        return evaluate(data, cand, targets, seed, settings, check=check, timing=timing)


def _head_to_head_on_worker(ref: DatasetRef, entries: Sequence[tuple[Candidate, int]], settings: TrialSettings,
                            repeats: int) -> dict[str, Any]:
    """A measuring task: :func:`~ruvector_lab.bench.trial.head_to_head` on the worker, its data written there."""
    with _worker_data(ref, settings.n_queries) as data:
        return head_to_head(data, entries, settings, repeats=repeats)


def figures(record: dict[str, Any], target: float) -> dict[str, Any]:
    """The tuner's figures of one evaluation at ``target``: feasible, ef_search, recall, qps, latency, bytes per
    vector (RSS growth, or the serialized size where RSS is not measured), build time, and where it was measured
    (``host``, ``host_load``)."""
    if record.get("status") != "ok":
        return {"feasible": False, "reason": record.get("reason"), **_where_measured(record)}
    entry = record["targets"][str(float(target))]
    bpv = record["bytes_per_vector"]
    measured = bpv.get("rss_growth")
    return {"feasible": bool(entry["feasible"]), "reason": entry.get("reason"), "ef_search": entry.get("ef_search"),
            "recall": entry.get("recall"), "qps": entry.get("qps"), "latency_ms": entry.get("latency_ms"),
            "bytes_per_vector": measured if measured is not None and measured > 0 else bpv["serialized"],
            "bytes": {"rss_growth": measured, "serialized": bpv["serialized"], "analytic": bpv.get("analytic")},
            "build_time_s": record["build_time_s"], "wall_s": record.get("wall_s"), **_where_measured(record)}


def _where_measured(record: dict[str, Any]) -> dict[str, Any]:
    """The host an evaluation ran on and its measuring load (None for records made before they were kept)."""
    return {"host": record.get("host"), "host_load": record.get("host_load")}


# ------------------------------------------------------------------------------------------------------ study
def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise InvalidParameterError("the autotuner needs Optuna: pip install 'ruvector-lab[bench]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats, retries and grouped TPE are marked experimental; the warnings say nothing a user can act on
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_storage(results_root: str | Path, dataset: str) -> str:
    """The embedded default: a SQLite file ``<results_root>/tune/<dataset>/optuna.db`` (nothing to start)."""
    path = Path(results_root) / "tune" / results.check_component(dataset, "dataset") / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str, grace_period_s: int = 120) -> Any:
    """An Optuna RDB storage at ``url`` with heartbeats, so a trial left running by a killed process is failed
    (and retried once) after ``grace_period_s``. A file that is not an Optuna database, or a URL Optuna cannot
    open, raises :class:`InvalidParameterError` naming it."""
    optuna = _optuna()
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if path.exists() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
            raise InvalidParameterError(f"study storage {path} is not a SQLite database")
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=max(1, grace_period_s // 4), grace_period=grace_period_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as exc:  # SQLAlchemy and Optuna raise many kinds: one clear error naming the storage
        raise InvalidParameterError(f"cannot open the study storage {_redact(url)}: {type(exc).__name__}: "
                                    f"{exc}") from None


def _redact(url: str) -> str:
    """A storage URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def _study(storage: Any, name: str, identity: dict[str, Any], seed: int, startup: int,
           constant_liar: bool | None = None) -> Any:
    """Create or load study ``name``; a study of that name made for another question is refused. ``constant_liar``
    (None: Optuna's default) makes TPE penalise the configurations of running trials: set for parallel asks."""
    optuna = _optuna()
    # constraints come with each trial (Trial.set_constraint: recall short of the target, bytes over budget)
    extra = {} if constant_liar is None else {"constant_liar": constant_liar}
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup, **extra)
    try:
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, sampler=sampler,
                                    directions=[d for _, d in OBJECTIVES.values()])
    except Exception as exc:
        raise InvalidParameterError(f"cannot create or load study {name!r}: {type(exc).__name__}: {exc}") from None
    stored = study.user_attrs.get("ruvector_lab")
    if stored is None:
        study.set_user_attr("ruvector_lab", identity)
    elif stored != identity:
        diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        raise InvalidParameterError(f"study {name!r} in this storage was made for another question (differs in "
                                    f"{', '.join(diff)}); pass another study_name or storage")
    return study


def _suggest(trial: Any, space: TuneSpace, choices: dict[str, list[str]]) -> Candidate:
    """Define-by-run: backend, its codec (each backend's choices under their own name), M, ef_construction, and a
    re-rank depth for quantized codecs."""
    backend = trial.suggest_categorical("backend", list(choices))
    codec = trial.suggest_categorical(f"codec[{backend}]", choices[backend])
    m = trial.suggest_categorical("m", list(space.m))
    efc = trial.suggest_categorical("ef_construction", list(space.ef_construction))
    rerank = trial.suggest_categorical("rerank", list(space.rerank)) if codec != "none" else 0
    return Candidate(backend, int(m), int(efc), codec, int(rerank))


def _constraints(fig: dict[str, Any], target: float, budget: float | None) -> list[float]:
    """Optuna's constraint values (<= 0 is satisfied): the recall short of the target, the bytes over budget."""
    recall = fig.get("recall")
    short = 1.0 if recall is None else (target - recall if not fig["feasible"] else min(0.0, target - recall))
    over = 0.0 if budget is None or fig.get("bytes_per_vector") is None else fig["bytes_per_vector"] - budget
    return [float(short), float(over)]


def _set_constraints(trial: Any, values: Sequence[float]) -> None:
    """Recall short of the target and bytes over budget (<= 0: satisfied). A trial retried after its process died
    already carries them from its first attempt (the same configuration, so the same values): Optuna keeps those
    and warns, which says nothing here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The constraint value is ignored")
        trial.set_constraint("recall_short_of_target", float(values[0]))
        trial.set_constraint("bytes_over_budget", float(values[1]))


def _propose(trial: Any, space: TuneSpace, choices: dict[str, list[str]], budget: float | None,
             analytic: Callable[[Candidate], float | None]) -> Candidate | None:
    """The configuration ``trial`` asks for, or None when its layout alone is over the memory budget (the trial is
    then to be pruned: nothing is built)."""
    cand = _suggest(trial, space, choices)
    trial.set_user_attr("candidate", cand.to_dict())
    layout = analytic(cand)
    if budget is not None and layout is not None and layout > budget:
        trial.set_user_attr("pruned", f"its layout takes {layout:.0f} bytes per vector, over the budget of "
                                      f"{budget:g}: not built")
        return None
    return cand


def _conclude(trial: Any, record: dict[str, Any], reused: bool, target: float,
              budget: float | None) -> tuple[float, float, float]:
    """The trial's values from its evaluation (its figures and constraints set on it); raises ``TrialPruned`` for
    a failed evaluation."""
    optuna = _optuna()
    trial.set_user_attr("reused", reused)
    fig = figures(record, target)
    trial.set_user_attr("figures", fig)
    if record.get("status") != "ok":
        trial.set_user_attr("pruned", f"failed: {record.get('reason')}")
        raise optuna.TrialPruned()
    _set_constraints(trial, _constraints(fig, target, budget))
    if not fig["feasible"]:
        trial.set_user_attr("pruned", fig["reason"])
        # not timed: the values only rank it below every feasible trial (the constraint says why)
        return 0.0, float(fig["bytes_per_vector"]), float(fig["build_time_s"])
    return float(fig["qps"]), float(fig["bytes_per_vector"]), float(fig["build_time_s"])


def _objective(evals: Evaluations, space: TuneSpace, choices: dict[str, list[str]], target: float,
               budget: float | None, analytic: Callable[[Candidate], float | None]) -> Callable[[Any], Any]:
    optuna = _optuna()

    def run(trial: Any) -> tuple[float, float, float]:
        cand = _propose(trial, space, choices, budget, analytic)
        if cand is None:
            raise optuna.TrialPruned()
        record, reused = evals.get(cand)
        return _conclude(trial, record, reused, target, budget)

    return run


def _tell(study: Any, trial: Any, record: dict[str, Any], reused: bool, target: float, budget: float | None) -> None:
    """Tell ``trial``'s evaluation to the study: its values, or pruned (as ``study.optimize`` records a trial whose
    objective raised ``TrialPruned``)."""
    optuna = _optuna()
    try:
        values = _conclude(trial, record, reused, target, budget)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, values)


class _Heartbeat:
    """Heartbeats of the trials this client has asked and not yet told, so a killed tune's open trials go stale and
    are failed (and retried) by the next one, as ``study.optimize`` does for its trial."""

    def __init__(self, storage: Any) -> None:
        interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.storage = storage if interval else None
        self.interval = float(interval) if interval else 60.0
        self.last = time.monotonic()

    def beat(self, trials: Sequence[Any]) -> None:
        """Record one heartbeat for each of ``trials``."""
        if self.storage is None:
            return
        for trial in trials:
            # Optuna's own heartbeat thread keys on the same id; Trial offers no public accessor for it
            self.storage.record_heartbeat(trial._trial_id)

    def keep_alive(self, trials: Sequence[Any]) -> None:
        """Beat for ``trials`` when an interval has passed since the last round: by elapsed time, not only while
        idle, so a long evaluation stays alive while shorter ones keep completing around it."""
        if time.monotonic() - self.last >= self.interval:
            self.beat(trials)
            self.last = time.monotonic()


def beat_running_trials(study: Any, storage: Any) -> None:
    """When a tune opens ``study``: fail the trials already stale (as ``study.optimize`` would before its first
    trial), then give one heartbeat to every trial still RUNNING. A process killed between asking a trial and its
    first heartbeat leaves a RUNNING trial with no heartbeat at all, which Optuna never counts as stale; after this
    beat it goes stale and is failed (and retried) like any other dead trial. A live client's running trial is
    only refreshed once."""
    optuna = _optuna()
    optuna.storages.fail_stale_trials(study)
    _Heartbeat(storage).beat(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def _ask(study: Any) -> Any:
    """``study.ask()``, without Optuna's warning that heartbeats are meant for ``optimize`` (:class:`_Heartbeat`
    keeps them here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def _ask_and_tell(study: Any, storage: Any, evals: Evaluations, propose: Callable[[Any], Candidate | None],
                  target: float, budget: float | None, limit: int, max_asks: int,
                  progress: Progress | None) -> int:
    """Run the study's trials on ``evals``' cluster until ``limit`` distinct configurations are evaluated: ask up to
    one trial per worker, submit each evaluation as a measuring task, tell each result as it completes and ask
    again. Every Optuna call stays in this thread (the storage is this client's alone); a thread per running task
    only waits for it. A trial asking for a configuration already stored is told at once (no build); one asking
    for a configuration still running waits for that evaluation. Returns the most trials that ran at once."""
    optuna = _optuna()
    executor = evals.executor
    assert executor is not None
    heartbeat = _Heartbeat(storage)
    done: queue.Queue[tuple[Candidate, TaskOutcome]] = queue.Queue()
    running: dict[Candidate, list[Any]] = {}  # configuration -> the trials waiting for its evaluation
    asks = widest = 0

    def submit(cand: Candidate) -> None:
        request: Request = (cand, 0, None, True)
        task = evals.task(request)

        def wait() -> None:  # executor.run blocks until its tasks end: one call per task, so each ends on its own
            try:
                outcome = executor.run([task], f"trial {cand.label}")[0]
            except Exception as exc:  # the cluster went away: a failed evaluation, told like any other
                outcome = TaskOutcome(task.name, error=f"{type(exc).__name__}: {exc}")
            done.put((cand, outcome))

        threading.Thread(target=wait, name=f"tune {cand.label}", daemon=True).start()

    try:
        while True:
            built = _builds_of(study)
            width = max(1, executor.workers())  # workers may join or leave a cluster mid-study
            if progress:
                progress("trial", len(built), limit)
            heartbeat.keep_alive([t for trials in running.values() for t in trials])
            optuna.storages.fail_stale_trials(study)  # a dead tune's trials, as study.optimize does before a trial
            round_asks = 0
            while (len(running) < width and len(built | set(running)) < limit and asks < max_asks
                   and round_asks < 4 * width):
                trial = _ask(study)
                asks += 1
                round_asks += 1
                heartbeat.beat([trial])
                cand = propose(trial)
                if cand is None:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif cand in running:
                    running[cand].append(trial)
                elif (stored := evals.stored(cand)) is not None:
                    _tell(study, trial, stored, True, target, budget)
                    built.add(cand)
                else:
                    running[cand] = [trial]
                    submit(cand)
            widest = max(widest, len(running))
            if not running:
                if asks >= max_asks or len(built) >= limit:
                    break
                continue  # this round's asks were all answered at once (stored, or over budget): ask again
            while True:
                heartbeat.keep_alive([t for trials in running.values() for t in trials])
                try:
                    cand, outcome = done.get(timeout=heartbeat.interval)
                    break
                except queue.Empty:
                    continue
            record = evals.finish((cand, 0, None, True), outcome)
            for i, trial in enumerate(running.pop(cand)):
                _tell(study, trial, record, i > 0, target, budget)  # the first trial built it; the others reuse it
    finally:
        for trials in running.values():  # interrupted: the open trials failed, as optimize leaves them
            for trial in trials:
                with contextlib.suppress(Exception):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return max(widest, 1)


def _builds_of(study: Any) -> set[Candidate]:
    """The configurations a study has evaluated (each one build, however often the sampler asked for it)."""
    return {Candidate.from_dict(t.user_attrs["candidate"]) for t in study.get_trials(deepcopy=False)
            if "figures" in t.user_attrs}


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        cand = t.user_attrs.get("candidate")
        fig = t.user_attrs.get("figures") or {}
        rows.append({"number": t.number, "state": t.state.name, "candidate": cand,
                     "label": Candidate.from_dict(cand).label if cand else None, "reused": t.user_attrs.get("reused"),
                     "pruned": t.user_attrs.get("pruned"), **{k: fig.get(k) for k in (
                         "feasible", "ef_search", "recall", "qps", "latency_ms", "bytes_per_vector", "bytes",
                         "build_time_s", "wall_s", "host", "host_load")},
                     "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
                     "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None})
    return rows


def _feasible(rows: list[dict[str, Any]], budget: float | None) -> dict[Candidate, dict[str, Any]]:
    """The feasible configurations of some trial rows, one row each (first seen)."""
    out: dict[Candidate, dict[str, Any]] = {}
    for row in rows:
        if row.get("feasible") and row.get("qps") and (budget is None or row["bytes_per_vector"] <= budget):
            out.setdefault(Candidate.from_dict(row["candidate"]), row)
    return out


def pareto(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on every objective (QPS up, bytes per vector down, build time down)."""
    pts = np.array([[-r["qps"], r["bytes_per_vector"], r["build_time_s"]] for r in rows], dtype=float)
    keep = []
    for i in range(len(rows)):
        dominated = np.any(np.all(pts <= pts[i], axis=1) & np.any(pts < pts[i], axis=1))
        if not dominated:
            keep.append(rows[i])
    return sorted(keep, key=lambda r: -r["qps"])


def _rank_key(row: dict[str, Any], objective: str) -> tuple[float, float]:
    """Where ``row``'s figures place it under ``objective``: smaller is better (ties go to the higher QPS)."""
    fig, direction = OBJECTIVES[objective]
    return (-row[fig] if direction == "maximize" else row[fig], -row["qps"])


def _rank(feasible: dict[Candidate, dict[str, Any]], objective: str) -> list[Candidate]:
    return sorted(feasible, key=lambda c: _rank_key(feasible[c], objective))


def _verify(evals: Evaluations, cand: Candidate, row: dict[str, Any], target: float, seeds: int) -> dict[str, Any]:
    """Rebuild ``cand`` with seeds 1..``seeds``: each build's recall at the trial's ef_search and its own cheapest
    ef. If the median build meets ``target`` at the trial's ef, that ef stands. Otherwise the ef is raised to the
    median build's own (the upper median of every build's cheapest ef: recall being monotone in ef, at least half
    the builds then meet the target) and the trial's figures are re-measured there on a fresh build. Multi-threaded
    builds are not reproducible, so that fresh build may itself fall short at the raised ef: then the ef rises to
    the fresh build's own cheapest and is measured again (at most :data:`REMEASURE_ATTEMPTS` builds), so the
    figures reported always reach the target on the build they were measured on. If the median build cannot reach
    the target at all, or the re-measured builds keep falling short, ``meets_target`` is False."""
    ef = int(row["ef_search"])
    recalls, own = [float(row["recall"])], [ef]
    per_seed: list[dict[str, Any]] = [{"seed": 0, "recall": float(row["recall"]), "own_ef_search": ef}]
    for seed in range(1, seeds + 1):
        record, _ = evals.get(cand, seed=seed, check={target: ef}, timing=False)
        if record.get("status") != "ok":
            per_seed.append({"seed": seed, "failed": record.get("reason")})
            own.append(10**9)
            continue
        entry = record["targets"][str(float(target))]
        recall = float(entry["recall_at_check"]["recall"])
        recalls.append(recall)
        own.append(int(entry["ef_search"]) if entry.get("ef_search") is not None else 10**9)
        per_seed.append({"seed": seed, "recall": recall, "own_ef_search": entry.get("ef_search")})
    out: dict[str, Any] = {"ef_search": ef, "builds": per_seed, "median_recall": float(np.median(recalls)),
                           "min_recall": float(min(recalls))}
    if len(recalls) == seeds + 1 and out["median_recall"] >= target:
        return out | {"meets_target": True, "figures": None}
    median_ef = sorted(own)[len(own) // 2]
    if median_ef >= 10**9:
        return out | {"meets_target": False, "figures": None,
                      "reason": "the median build does not reach the target within ef_max"}
    measured_at: list[dict[str, Any]] = []
    ef_try = median_ef
    for _ in range(REMEASURE_ATTEMPTS):
        record, _ = evals.get(cand, seed=0, check={target: ef_try}, timing=True)
        if record.get("status") != "ok":
            return out | {"meets_target": False, "figures": None, "remeasured": measured_at,
                          "reason": f"re-measure failed: {record.get('reason')}"}
        entry = record["targets"][str(float(target))]
        at = entry["recall_at_check"]
        measured_at.append({"ef_search": ef_try, "recall": float(at["recall"])})
        if at["recall"] >= target:
            fig = {**figures(record, target), "ef_search": ef_try, "recall": at["recall"], "qps": at["qps"],
                   "latency_ms": at["latency_ms"], "feasible": True}
            return out | {"meets_target": True, "raised_ef_search": {"from": ef, "to": ef_try},
                          "remeasured": measured_at, "figures": fig}
        if entry.get("ef_search") is None:
            break
        ef_try = max(int(entry["ef_search"]), ef_try + 1)
    shortfalls = ", ".join(f"{m['recall']:.4f} at {m['ef_search']}" for m in measured_at)
    return out | {"meets_target": False, "figures": None, "remeasured": measured_at,
                  "reason": f"re-measured builds fell short of recall {target} at the raised ef_search ({shortfalls})"}


def _recommend(evals: Evaluations, feasible: dict[Candidate, dict[str, Any]], target: float, seeds: int,
               dims: int, metric: str) -> dict[str, dict[str, Any] | None]:
    # on a cluster, every objective's first choice is rebuilt with the other seeds at once; a configuration further
    # down a ranking (its first choice failed verification) and a re-measure at a raised ef run when needed
    firsts = dict.fromkeys(ranked[0] for ranked in (_rank(feasible, o) for o in OBJECTIVES) if ranked)
    evals.prefetch([(c, seed, {target: int(feasible[c]["ef_search"])}, False) for c in firsts
                    for seed in range(1, seeds + 1)], "verify")
    out: dict[str, dict[str, Any] | None] = {}
    checked: dict[Candidate, dict[str, Any]] = {}
    for objective in OBJECTIVES:
        ranked = _rank(feasible, objective)[:MAX_VERIFY_CANDIDATES]
        passed: list[tuple[Candidate, dict[str, Any]]] = []
        failed: list[Candidate] = []
        for i, cand in enumerate(ranked):
            if cand not in checked:
                checked[cand] = _verify(evals, cand, feasible[cand], target, seeds) if seeds else \
                    {"meets_target": True, "builds": [], "note": "not verified (verify_seeds = 0)"}
            if not checked[cand]["meets_target"]:
                failed.append(cand)
                continue
            passed.append((cand, checked[cand].get("figures") or feasible[cand]))
            # a raised ef_search re-measures the figures, which can fall below the next configuration's: go on
            # while the next one's trial figure could still beat the best verified one
            best = min(_rank_key(row, objective) for _, row in passed)
            if i + 1 == len(ranked) or best <= _rank_key(feasible[ranked[i + 1]], objective):
                break
        out[objective] = None
        if not passed:
            continue
        chosen, row = min(passed, key=lambda p: _rank_key(p[1], objective))
        above = ranked[:ranked.index(chosen)]
        rejected = [{"label": c.label, "verification": checked[c]} if c in failed else
                    {"label": c.label, "verification": checked[c],
                     "reason": f"met the target at a raised ef_search, where {chosen.label} does better on "
                               f"{OBJECTIVES[objective][0]}"}
                    for c in above]
        out[objective] = {**_recommendation(chosen, row, dims, metric), "verification": checked[chosen],
                          "rejected": rejected}
    return out


def _recommendation(cand: Candidate, row: dict[str, Any], dims: int, metric: str) -> dict[str, Any]:
    """A recommendation's configuration and figures (the trial's, or those re-measured at a raised ef_search)."""
    return {**cand.to_dict(), "label": cand.label, "spec": cand.spec, "ef_search": row["ef_search"],
            "dimensions": dims, "metric": metric,
            **{k: row[k] for k in ("recall", "qps", "latency_ms", "bytes_per_vector", "bytes", "build_time_s")}}


# ------------------------------------------------------------------------------------------------- grid, replay
def _grid(evals: Evaluations, grid: list[Candidate], target: float, budget: float | None,
          progress: Progress | None) -> tuple[dict[Candidate, dict[str, Any]], float]:
    """Every configuration of the space evaluated (seed 0; the tuner's evaluations reused): figures per
    configuration and the summed evaluation wall time of them all (what a grid search costs on its own)."""
    table: dict[Candidate, dict[str, Any]] = {}
    wall = 0.0
    if evals.remote:
        if progress:
            progress("grid", 0, len(grid))
        evals.prefetch([(c, 0, None, True) for c in grid], "grid")  # all at once on the cluster
    for i, cand in enumerate(grid):
        if progress:
            progress(f"grid {cand.label}", i, len(grid))
        record, _ = evals.get(cand)
        fig = figures(record, target)
        wall += float(record.get("wall_s") or 0.0)
        table[cand] = {**fig, "candidate": cand.to_dict(), "label": cand.label}
    if progress:
        progress("grid done", len(grid), len(grid))
    return table, wall


def replay(table: dict[Candidate, dict[str, Any]], space: TuneSpace, choices: dict[str, list[str]], target: float,
           budget: float | None, builds: int, seeds: Sequence[int]) -> dict[str, Any]:
    """The tuner (same sampler, same space) run on the grid's measurements instead of new builds, once per sampler
    seed, with at most ``builds`` distinct configurations each: how often its best QPS is within GRID_TOLERANCE of
    the grid's best. Measurement noise is the same for both sides here, so this isolates the search."""
    optuna = _optuna()
    feasible = {c: f for c, f in table.items() if f.get("feasible") and (budget is None or
                                                                        f["bytes_per_vector"] <= budget)}
    if not feasible:
        return {"seeds": list(seeds), "status": "no feasible configuration in the grid"}
    best = max(f["qps"] for f in feasible.values())
    ratios = []
    for seed in seeds:
        study = _study(optuna.storages.InMemoryStorage(), "replay", {}, seed, max(1, min(10, builds // 3)))
        seen: set[Candidate] = set()

        def run(trial: Any, seen: set[Candidate] = seen) -> tuple[float, float, float]:
            cand = _suggest(trial, space, choices)
            seen.add(cand)
            fig = table.get(cand) or {"feasible": False}
            _set_constraints(trial, _constraints(fig, target, budget) if "recall" in fig else [1.0, 1.0])
            if cand not in feasible:
                return 0.0, float(fig.get("bytes_per_vector") or 1e12), float(fig.get("build_time_s") or 1e9)
            return float(fig["qps"]), float(fig["bytes_per_vector"]), float(fig["build_time_s"])

        for _ in range(20 * builds):
            if len(seen) >= builds or len(seen) >= len(table):
                break
            study.optimize(run, n_trials=1)
        found = max((feasible[c]["qps"] for c in seen if c in feasible), default=0.0)
        ratios.append(found / best)
    hits = sum(r >= 1 - GRID_TOLERANCE for r in ratios)
    return {"seeds": list(seeds), "builds": builds, "qps_ratio": ratios, "median_qps_ratio": float(np.median(ratios)),
            "within_tolerance": hits, "fraction_within_tolerance": hits / len(ratios)}


def _contenders(feasible: dict[Candidate, dict[str, Any]], mine: Candidate | None) -> list[Candidate]:
    """The grid's configurations worth timing against the tuner's best: within HEAD_TO_HEAD_SPAN of the grid's best
    single measurement (at most HEAD_TO_HEAD_MAX), and the tuner's best."""
    ranked = sorted(feasible, key=lambda c: -feasible[c]["qps"])
    top = feasible[ranked[0]]["qps"]
    out = [c for c in ranked if feasible[c]["qps"] >= (1 - HEAD_TO_HEAD_SPAN) * top][:HEAD_TO_HEAD_MAX]
    if mine is not None and mine not in out:
        out.append(mine)
    return out


def _grid_summary(table: dict[Candidate, dict[str, Any]], wall: float, tuner_rows: dict[Candidate, dict[str, Any]],
                  tuner_builds: int, tuner_wall: float, budget: float | None, replayed: dict[str, Any],
                  evals: Evaluations) -> dict[str, Any]:
    """The grid against the tuner. Each trial's QPS is one short measurement at its own moment, and the grid's best
    of many such figures is biased upward by their noise; so the grid's leaders and the tuner's best are built
    again and timed head to head in one process, in alternating windows, and that paired run decides the grid's
    best and the ratio (the single-measurement ratio is kept beside it)."""
    feasible = {c: f for c, f in table.items() if f.get("feasible") and (budget is None or
                                                                        f["bytes_per_vector"] <= budget)}
    single_best = max(feasible, key=lambda c: feasible[c]["qps"]) if feasible else None
    mine = max(tuner_rows, key=lambda c: tuner_rows[c]["qps"]) if tuner_rows else None
    single_ratio = (tuner_rows[mine]["qps"] / feasible[single_best]["qps"]) if single_best and mine else None
    paired: dict[str, Any] = {"status": "not run", "reason": "no feasible configuration"}
    best, ratio = single_best, single_ratio
    best_figures = feasible[single_best] if single_best else None
    mine_figures = tuner_rows[mine] if mine else None
    if feasible:
        contenders = _contenders(feasible, mine)
        run = evals.head_to_head([(c, int(feasible[c]["ef_search"]) if c in feasible else
                                   int(tuner_rows[c]["ef_search"])) for c in contenders], HEAD_TO_HEAD_REPEATS)
        if run.get("status") == "ok":
            entries = run["entries"]
            grid_side = [c for c in contenders if c in feasible]
            best = max(grid_side, key=lambda c: entries[c.label]["qps"])
            best_figures = {**feasible[best], "qps": entries[best.label]["qps"],
                            "qps_single": feasible[best]["qps"]}
            if mine is not None:
                mine_figures = {**tuner_rows[mine], "qps": entries[mine.label]["qps"],
                                "qps_single": tuner_rows[mine]["qps"]}
                ratio = entries[mine.label]["qps"] / entries[best.label]["qps"]
            paired = {"status": "ok", "windows_each": HEAD_TO_HEAD_REPEATS, "entries": list(entries.values()),
                      "wall_s": run.get("wall_s"), **_where_measured(run)}
        else:
            paired = {"status": "failed", "reason": run.get("reason")}
    return {
        "builds": len(table), "wall_s": wall, "feasible": len(feasible),
        "best": {**best_figures, "label": best.label} if best else None,
        "pareto": pareto(list(feasible.values())) if feasible else [],
        "tuner_best": {**mine_figures, "label": mine.label} if mine else None,
        "tuner_builds": tuner_builds, "tuner_wall_s": tuner_wall,
        "builds_ratio": tuner_builds / len(table) if table else None,
        "qps_ratio": ratio, "qps_ratio_single": single_ratio, "same_configuration": bool(best is not None and
                                                                                      best == mine),
        "within_tolerance": bool(ratio is not None and ratio >= 1 - GRID_TOLERANCE), "tolerance": GRID_TOLERANCE,
        "head_to_head": paired, "replay": replayed,
    }


# --------------------------------------------------------------------------------------------------- the tuner
def _dataset(dataset: Dataset | str, datasets_dir: str | Path) -> Dataset:
    if isinstance(dataset, Dataset):
        ds = dataset
    elif isinstance(dataset, str):
        path = Path(datasets_dir) / f"{results.check_component(dataset, 'dataset')}.hdf5"
        if not path.exists():
            raise InvalidParameterError(f"unknown dataset {dataset!r}: {path} does not exist (make it with "
                                        f"`ruvector-lab data {dataset}` and `ruvector-lab groundtruth {dataset}`)")
        from .hdf5 import read_hdf5

        ds = read_hdf5(path, name=dataset, require_groundtruth=True)
    else:
        raise InvalidParameterError(f"dataset must be a name or a Dataset, got {type(dataset).__name__}")
    if ds.distances is None:
        raise InvalidParameterError(f"dataset {ds.name!r} has no ground truth; run the groundtruth stage first")
    return ds


def tune(
    dataset: Dataset | str,
    recall: float = 0.95,
    *,
    objective: str = "qps",
    backends: Sequence[str] | None = None,
    trials: int = 20,
    memory_budget: float | None = None,
    space: TuneSpace | None = None,
    settings: TrialSettings | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    verify_seeds: int = 2,
    grid: bool = False,
    replay_seeds: int = 10,
    measure_targets: Sequence[float] = (),
    results_root: str | Path = "data/results",
    datasets_dir: str | Path = "data/datasets",
    grace_period_s: int = 120,
    write: bool = True,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> TuneResult:
    """Find the cheapest configuration of ``dataset`` reaching recall@k >= ``recall`` (see the module docstring).

    ``trials`` is the budget in builds (distinct configurations evaluated); ``backends`` narrows the space's;
    ``memory_budget`` (bytes per vector) is a constraint; ``storage`` an Optuna database URL (default a SQLite
    file under ``data/tune``); ``verify_seeds`` the extra builds that check each recommendation; ``grid`` also
    evaluates the whole space as the reference; ``measure_targets`` other targets every child measures as well,
    so studies for them reuse these builds. Bad input raises :class:`InvalidParameterError` before anything is
    built: unknown dataset, backend or objective, a target outside (0, 1], a budget no configuration's layout can
    meet, a foreign or unreadable storage. A budget or target that cannot be met ends the study with that answer.

    ``executor`` (:func:`~ruvector_lab.bench.executor.open_executor`; None or a local one: one trial at a time in
    child processes of this one) runs the evaluations on a cluster when it is one: up to one trial per worker at
    once, asked and told by this process (ask-and-tell), the study's storage never opened by a worker.
    """
    started = time.perf_counter()
    (target,) = check_targets([recall])
    if objective not in OBJECTIVES:
        raise InvalidParameterError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InvalidParameterError(f"trials must be a positive integer, got {trials!r}")
    if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float))
                                      or not np.isfinite(memory_budget) or memory_budget <= 0):
        raise InvalidParameterError(f"memory_budget must be a positive number of bytes per vector, got "
                                    f"{memory_budget!r}")
    for name, value in (("verify_seeds", verify_seeds), ("replay_seeds", replay_seeds), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterError(f"{name} must be a non-negative integer, got {value!r}")
    space = space or TuneSpace()
    if backends is not None:
        if isinstance(backends, str):
            raise InvalidParameterError(f"backends must be a list of names, got the string {backends!r}")
        space = dataclasses.replace(space, backends=tuple(backends))
    settings = settings or TrialSettings()
    ds = _dataset(dataset, datasets_dir)
    grid_candidates, excluded = candidates(space, ds.dimensions, ds.metric)
    if not grid_candidates:
        raise InvalidParameterError(f"no configuration of the space can be built here for {ds.name}: {excluded}")
    layouts = {c: _analytic(c, ds) for c in grid_candidates}
    if memory_budget is not None:
        known = [v for v in layouts.values() if v is not None]
        if known and min(known) > memory_budget:
            smallest = min(grid_candidates, key=lambda c: layouts[c] or np.inf)
            raise InvalidParameterError(
                f"memory budget {memory_budget:g} bytes per vector: no configuration of the space can meet it (the "
                f"smallest layout is {smallest.label} at {layouts[smallest]:.0f}); add a smaller codec or raise it")
    choices: dict[str, list[str]] = {}
    for cand in grid_candidates:
        choices.setdefault(cand.backend, [])
        if cand.quantization not in choices[cand.backend]:
            choices[cand.backend].append(cand.quantization)
    targets = tuple(dict.fromkeys([target, *check_targets(measure_targets or [target])]))
    # the library's code is part of the question: a changed measurement makes a new study, not a mixed one
    identity = {"dataset": ds.describe()["content_hash"], "target": target, "space": space.to_dict(),
                "settings": settings.to_dict(), "memory_budget": memory_budget, "code": results.code_hash()}
    name = study_name or f"{ds.name}-recall{target:g}-{results.fingerprint(identity)[:8]}"
    url = storage or default_storage(results_root, ds.name)
    store = open_storage(url, grace_period_s)
    parallel = executor is not None and executor.kind != "local"
    # parallel asks want the sampler to steer away from the configurations still running; one at a time keeps
    # Optuna's default, so a local study samples as it always did
    liar = True if parallel else None
    study = _study(store, name, identity, seed, max(1, min(10, trials // 3)), constant_liar=liar)
    beat_running_trials(study, store)
    root = Path(results_root)
    limit = min(trials, len(grid_candidates))
    concurrent = 1
    with contextlib.ExitStack() as stack:
        if parallel:
            assert executor is not None
            ref = executor.dataset_ref(_dataset_file(dataset, datasets_dir), ds)
            evals = Evaluations(root, ds, None, settings, targets, executor=executor, ref=ref)
            concurrent = _ask_and_tell(
                study, store, evals, lambda t: _propose(t, space, choices, memory_budget, layouts.get), target,
                memory_budget, limit, 20 * trials, progress)
        else:
            data = stack.enter_context(TrialData(ds.train, ds.test, ds.distances, ds.metric, settings.n_queries))
            evals = Evaluations(root, ds, data, settings, targets)
            run = _objective(evals, space, choices, target, memory_budget, lambda c: layouts.get(c))
            for _attempt in range(20 * trials):  # the sampler may ask for a configuration again: no new build
                done = len(_builds_of(study))
                if done >= limit:
                    break
                if progress:
                    progress("trial", done, limit)
                study.optimize(run, n_trials=1, catch=())
        rows = _trial_rows(study)
        builds = len(_builds_of(study))
        if progress:
            progress("verify", builds, builds)
        feasible = _feasible(rows, memory_budget)
        recommended = _recommend(evals, feasible, target, verify_seeds, ds.dimensions, ds.metric)
        grid_summary = None
        if grid:
            table, grid_wall = _grid(evals, grid_candidates, target, memory_budget, progress)
            tuner_wall_full = float(sum((table.get(c) or {}).get("wall_s") or 0.0 for c in _builds_of(study)))
            replayed = replay(table, space, choices, target, memory_budget, builds,
                              range(seed + 1, seed + 1 + replay_seeds)) if replay_seeds else {}
            grid_summary = _grid_summary(table, grid_wall, feasible, builds, tuner_wall_full, memory_budget,
                                         replayed, evals)
    run_settings = {**settings.to_dict(), "verify_seeds": verify_seeds, "trials": trials, "seed": seed,
                    "executor": executor.settings.describe() if executor is not None else "local",
                    "concurrent_trials": concurrent, "sampler": _sampler_settings(liar)}
    result = TuneResult(
        dataset=ds.name, target=target, objective=objective, study_name=name, storage=_redact(url), trials=rows,
        pareto=pareto(list(feasible.values())) if feasible else [], recommended=recommended, builds=builds,
        wall_s=time.perf_counter() - started,
        answer=_answer(recommended, objective, target, memory_budget, rows, settings.k),
        grid=grid_summary, space=space.to_dict(), settings=run_settings,
        excluded=excluded, memory_budget=memory_budget)
    if write:
        write_result(result, root, ds)
    return result


def _dataset_file(dataset: Dataset | str, datasets_dir: str | Path) -> Path | None:
    """The HDF5 file a cluster's workers fetch the dataset from: a named dataset's own file; None for a dataset
    given in memory (the executor writes it for the trip)."""
    if isinstance(dataset, str):
        return Path(datasets_dir) / f"{results.check_component(dataset, 'dataset')}.hdf5"
    return None


def _sampler_settings(constant_liar: bool | None) -> dict[str, Any]:
    """The study's sampler as the result records it: TPE, and whether it penalised running trials
    (``constant_liar``; None: Optuna's default, read from its signature since it changed between versions)."""
    if constant_liar is None:
        default = inspect.signature(_optuna().samplers.TPESampler).parameters.get("constant_liar")
        constant_liar = bool(default.default) if default is not None else False
    return {"name": "TPESampler", "multivariate": True, "group": True, "constant_liar": constant_liar}


def _analytic(cand: Candidate, ds: Dataset) -> float | None:
    from .memory import analytic_bytes_per_vector

    try:
        return float(analytic_bytes_per_vector(cand.backend, cand.config(ds.dimensions, ds.metric))["total"])
    except (RuvectorLabError, KeyError, ValueError) as exc:
        log.debug("no layout estimate for %s: %s", cand.label, exc)
        return None


def _answer(recommended: dict[str, dict[str, Any] | None], objective: str, target: float, budget: float | None,
            rows: list[dict[str, Any]], k: int) -> str:
    rec = recommended.get(objective)
    if rec is not None:
        return (f"{rec['label']} at ef_search {rec['ef_search']}: recall@{k} {rec['recall']:.3f} >= {target:g}, "
                f"{rec['qps']:.0f} QPS (1 thread), {rec['bytes_per_vector']:.0f} bytes per vector, build "
                f"{rec['build_time_s']:.1f} s; median of {max(1, len(rec['verification']['builds']))} builds "
                f"{rec['verification'].get('median_recall', rec['recall']):.3f}")
    feasible = [r for r in rows if r.get("feasible")]
    if not feasible:
        return (f"no configuration tried reaches recall {target:g}"
                + (f" within {budget:g} bytes per vector" if budget is not None else "")
                + "; widen the space (larger M, ef_construction, tune.ef_max) or lower the target")
    return (f"{len(feasible)} configurations reach recall {target:g} on one build, but none holds it over the "
            "verification builds: the target is met only by luck here")


def write_result(result: TuneResult, root: str | Path, ds: Dataset) -> Path:
    """Write ``tune/<dataset>/recall-<target>.json`` and its params fragment (``.params.yaml``) atomically."""
    folder = Path(root) / "tune" / results.check_component(ds.name, "dataset")
    record = {**result.to_dict(), "dataset_record": ds.describe(), "environment": env.environment()}
    path = results.write_json(folder / f"recall-{result.target:g}.json", record)
    fragment = folder / f"recall-{result.target:g}.params.yaml"
    partial = fragment.with_suffix(".partial")
    partial.write_text(params_fragment(record), encoding="utf-8")
    partial.replace(fragment)
    return path


def params_fragment(record: dict[str, Any], objective: str | None = None) -> str:
    """A params.yaml fragment (build matrix, ef_search, backend) that re-runs a tune record's recommendation in
    the pipeline; a comment when there is none."""
    objective = objective or record["objective"]
    rec = (record.get("recommended") or {}).get(objective)
    head = f"# ruvector-lab tune {record['dataset']} --recall {record['target']:g} --objective {objective}\n"
    if rec is None:
        return head + f"# no recommendation: {record.get('answer')}\n"
    return head + (f"# {rec['label']}, ef_search {rec['ef_search']}: recall {rec['recall']:.4f}, "
                   f"{rec['qps']:.0f} QPS, {rec['bytes_per_vector']:.0f} bytes per vector\n"
                   f"bench:\n  backends:\n  - {rec['backend']}\n"
                   f"query:\n  ef_search:\n  - {rec['ef_search']}\n"
                   f"build:\n  m:\n  - {rec['m']}\n  ef_construction:\n  - {rec['ef_construction']}\n"
                   f"  quantization:\n  - {rec['spec']}\n")


@dataclass(frozen=True)
class TuneParams:
    """The ``tune`` section of params.yaml: datasets and recall targets of the stage, the headline objective, the
    trial budget (builds per study), the space, and the checks (grid, verification seeds, replay seeds)."""

    datasets: tuple[str, ...] = ()
    targets: tuple[float, ...] = (0.95,)
    objective: str = "qps"
    trials: int = 20
    grid: bool = False
    verify_seeds: int = 2
    replay_seeds: int = 10
    memory_budget: float | None = None
    seed: int = 0
    space: TuneSpace = field(default_factory=TuneSpace)
    settings: TrialSettings = field(default_factory=TrialSettings)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`tune` (all but the dataset and the target)."""
        return {"objective": self.objective, "trials": self.trials, "grid": self.grid,
                "verify_seeds": self.verify_seeds, "replay_seeds": self.replay_seeds,
                "memory_budget": self.memory_budget, "seed": self.seed, "space": self.space,
                "settings": self.settings, "measure_targets": self.targets}


def tune_params(params: dict[str, Any]) -> TuneParams:
    """Read the ``tune`` section (and ``query.k``, ``bench.build_threads``, ``bench.insert_chunk``) of params."""
    from .params import section

    values = dict(section(params, "tune"))
    known = {"datasets", "targets", "objective", "trials", "grid", "verify_seeds", "replay_seeds", "memory_budget",
             "seed", "space", "ef_max", "n_queries", "repeats", "warmup"}
    unknown = set(values) - known
    if unknown:
        raise InvalidParameterError(f"unknown params tune keys: {sorted(unknown)}")
    bench, query = section(params, "bench"), section(params, "query")
    defaults = TrialSettings()

    def integer(where: dict[str, Any], key: str, default: int, name: str) -> int:
        value = where.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterError(f"params {name} must be an integer, got {value!r}")
        return value

    def flag(key: str, default: bool) -> bool:
        value = values.get(key, default)
        if not isinstance(value, bool):
            raise InvalidParameterError(f"params tune.{key} must be true or false, got {value!r}")
        return value

    settings = TrialSettings(k=integer(query, "k", defaults.k, "query.k"),
                             n_queries=integer(values, "n_queries", defaults.n_queries, "tune.n_queries"),
                             ef_max=integer(values, "ef_max", defaults.ef_max, "tune.ef_max"),
                             build_threads=integer(bench, "build_threads", defaults.build_threads,
                                                   "bench.build_threads"),
                             insert_chunk=integer(bench, "insert_chunk", defaults.insert_chunk, "bench.insert_chunk"),
                             repeats=integer(values, "repeats", defaults.repeats, "tune.repeats"),
                             warmup=integer(values, "warmup", defaults.warmup, "tune.warmup"))
    budget = values.get("memory_budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))):
        raise InvalidParameterError(f"params tune.memory_budget must be a number of bytes or null, got {budget!r}")
    objective = values.get("objective", "qps")
    if objective not in OBJECTIVES:
        raise InvalidParameterError(f"params tune.objective must be one of {', '.join(OBJECTIVES)}, got "
                                    f"{objective!r}")
    datasets = values.get("datasets") or []
    if not isinstance(datasets, list):
        raise InvalidParameterError(f"params tune.datasets must be a list, got {datasets!r}")
    counts = {key: integer(values, key, default, f"tune.{key}")
              for key, default in (("trials", 20), ("verify_seeds", 2), ("replay_seeds", 10), ("seed", 0))}
    for key, value in counts.items():
        if value < (1 if key == "trials" else 0):
            raise InvalidParameterError(f"params tune.{key} must be >= {1 if key == 'trials' else 0}, got {value}")
    targets = values.get("targets") or [0.95]
    if not isinstance(targets, list):
        raise InvalidParameterError(f"params tune.targets must be a list, got {targets!r}")
    return TuneParams(
        datasets=tuple(str(d) for d in datasets), targets=check_targets(targets), objective=str(objective),
        trials=counts["trials"], grid=flag("grid", False), verify_seeds=counts["verify_seeds"],
        replay_seeds=counts["replay_seeds"], memory_budget=float(budget) if budget is not None else None,
        seed=counts["seed"],
        space=TuneSpace.from_dict(values.get("space") or {}), settings=settings)
