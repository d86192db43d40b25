"""A build matrix on an executor: one task per build configuration (dataset, backend, M, ef_construction, codec).

Each task is :func:`~ruvector_lab.bench.runner.run_build` where the executor sends it (this process, or a Dask
worker): the configuration's seeded builds, each swept over ef_search, then latency and thread scaling on the median
build and the index's memory in a fresh child. A configuration's builds stay in one task because the timing passes
run on the median build, which is known only once every build's recall is, and not every backend can ship its
graph to another process (ruvector rebuilds on load, which would time a different index). The task is a measuring
one: alone on its worker, its records carry ``host_load``. Its finished records travel with it, so it skips what is
done exactly as a local run does; the files it writes come back and are written under the client's results root.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import results
from .executor import DatasetRef, Executor, Task
from .runner import BuildParams, Outcome, Progress, RunSettings, cap_rayon_pool, run_build

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildJob:
    """One configuration of a matrix: the dataset (by reference), backend, build parameters, the ef_search sweep,
    and the folder under the results root its runs/ go in ('' for the pipeline's builds, ``qhnsw/<dataset>`` for
    the quantize stage's quantized HNSW builds)."""

    dataset: DatasetRef
    backend: str
    build: BuildParams
    ef_searches: tuple[int, ...]
    subdir: str = ""

    @property
    def name(self) -> str:
        """'dataset/backend/M16-efc100-none', the task's name in logs and progress."""
        return f"{self.dataset.name}/{self.backend}/{self.build.key}"

    def run_folder(self) -> PurePosixPath:
        """The build's folder, relative to the results root."""
        rel = results.run_dir("", self.dataset.name, self.backend, self.build.key)
        return PurePosixPath(self.subdir, rel.as_posix()) if self.subdir else PurePosixPath(rel.as_posix())


def _seeds(job: BuildJob, settings: RunSettings) -> tuple[str, ...]:
    """The records a task reads to skip finished work: build.json and one query JSON per ef_search."""
    folder = job.run_folder()
    names = ["build.json"] + [results.query_file(Path(), ef, settings.k).name for ef in job.ef_searches]
    return tuple((folder / name).as_posix() for name in names)


def _build_task(scratch: Path, job: BuildJob, settings: RunSettings, progress: Progress | None) -> dict[str, Any]:
    """Run one configuration into ``scratch`` (the executor ships what it wrote); paths come back relative."""
    cap_rayon_pool(settings.build_threads)  # before ruvector's first use in this process: its pool is sized once
    root = scratch / job.subdir if job.subdir else scratch
    outcome = run_build(job.dataset.load(), job.backend, job.build, job.ef_searches, settings, root, progress)
    return {"skipped": [p.relative_to(scratch).as_posix() for p in outcome.skipped],
            "unavailable": outcome.unavailable}


def run_builds(jobs: Sequence[BuildJob], settings: RunSettings, root: str | Path, executor: Executor,
               progress: Progress | None = None) -> list[Outcome]:
    """Run every job on ``executor``, writing their records under ``root``; one :class:`Outcome` per job, in order
    (a job that failed says why in ``failed``; the others' records are written all the same). ``progress`` (the
    local executor only: a callback does not travel to a worker) hears of each build's inserts and query steps."""
    local_progress = progress if executor.kind == "local" else None
    # build cost grows with M x ef_construction: the costliest start first, so no worker idles at the end
    tasks = [Task(job.name, _build_task, (job, settings, local_progress), measuring=True, writes_results=True,
                  seeds=_seeds(job, settings), priority=job.build.m * job.build.ef_construction) for job in jobs]
    out = []
    for task_outcome in executor.run(tasks, "builds", root):
        value = task_outcome.value or {}
        out.append(Outcome(written=list(task_outcome.files),
                           skipped=[Path(root) / rel for rel in value.get("skipped", [])],
                           unavailable=value.get("unavailable"), failed=task_outcome.error))
    return out


def build_jobs(ref: DatasetRef, backends: Sequence[str], builds: Sequence[BuildParams], ef_searches: Sequence[int],
               subdir: str = "") -> list[BuildJob]:
    """Every (backend, build) pair of one dataset as a job, backends outermost."""
    return [BuildJob(ref, backend, build, tuple(int(e) for e in ef_searches), subdir)
            for backend in backends for build in builds]
