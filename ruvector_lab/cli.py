"""``ruvector-lab``: the command line the DVC pipeline's stages call (and a person can too).

    ruvector-lab backends                       which backends work here, and why not
    ruvector-lab data NAME                      make dataset NAME (params.yaml ``datasets``) -> data/raw/NAME.hdf5
    ruvector-lab groundtruth NAME               exact top-k -> data/datasets/NAME.hdf5 (+ NAME.json summary)
    ruvector-lab build DATASET BACKEND ...      build one index and run its ef_search sweep -> data/results/runs
    ruvector-lab sweep [DATASET]...             the whole build matrix in one fan-out (e.g. --executor dask)
    ruvector-lab quantize DATASET               codec sweep (+ quantized HNSW builds) -> data/results/quant
    ruvector-lab tune DATASET                   autotune: cheapest configuration for a recall -> data/results/tune
    ruvector-lab adr                            the ADR-006 suite for every backend -> data/results/adr
    ruvector-lab peers DATASET                  native vs WASM builds of one library, Node.js and Chromium
                                                -> data/results/peers
    ruvector-lab report                         results/report.md, results/metrics.json, results/plots/

Help texts are plain text (typer's rich markup is off): click's own formatter re-wraps paragraphs to the terminal
and never shows a flag as taking a value, which typer's rich panels do (``--help <bool>``). Progress bars go to
stderr and are drawn only when stderr is a terminal, so DVC and CI logs stay short. The commands that fan out
(groundtruth, data, build, sweep, quantize, tune) take ``--executor local|dask`` and ``--scheduler`` (see
:mod:`ruvector_lab.bench.executor`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

import typer

from . import __version__
from .backends import names as backend_names
from .errors import RuvectorLabError
from .quantization import KINDS as CODEC_KINDS

if TYPE_CHECKING:
    from tqdm import tqdm

    from .bench.runner import Outcome, RunSettings

log = logging.getLogger("ruvector_lab.cli")

#: the BACKEND argument's choices: the backend registry's names, in detection order
Backend = enum.StrEnum("Backend", {name: name for name in backend_names()})  # type: ignore[misc]


def _params_datasets(path: Path = Path("params.yaml")) -> list[str]:
    """The dataset names of the params file at ``path``, for help texts; [] when it is absent or unreadable.

    Read with PyYAML directly, not through the harness' params module: ``--help`` should not import the harness,
    and a broken params file must not break the help that explains how to fix it."""
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        return [str(name) for name in (data.get("datasets") or {})]
    except Exception:  # best effort by design: help without the list beats no help
        return []


def _dataset_help() -> str:
    """Help for a dataset argument, naming the datasets of ./params.yaml when there is one."""
    names = _params_datasets()
    known = f" (in ./params.yaml: {', '.join(names)})" if names else ""
    return f"a dataset named under datasets in the params file{known}"


CODEC_HELP = (f"none, or a codec KIND[-m<M>][-r<R>]: KIND one of {', '.join(CODEC_KINDS)}; -m<M>: product "
              "quantization subspaces (product only, default d/8); -r<R>: re-score R candidates exactly")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    help="ruvector-lab: benchmarks of vector search and the stages of its DVC pipeline.\n\n"
         "dvc repro (make repro) runs the stages in order: data, groundtruth, build, quantize, adr, node-peers, "
         "report. Each "
         "reads its settings from the params file (--params, default ./params.yaml) and writes under data/ (the "
         "report under results/). Run any stage by hand; finished runs are not repeated. Backends: "
         f"{', '.join(backend_names())} (ruvector-lab backends says which work here). Progress bars go to "
         "stderr, and only when it is a terminal.",
)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (YAML): every sweep and setting")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="results root (runs/, quant/, qhnsw/, adr/)")]
DatasetsOpt = Annotated[Path, typer.Option("--datasets-dir", help="folder of ground-truthed HDF5 datasets")]
DatasetArg = Annotated[str, typer.Argument(metavar="DATASET", help=_dataset_help(), show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="rerun finished runs (same as params bench.force: true)")]


def _print_version(value: bool) -> None:
    """--version: print the version and stop before any command runs (an eager option)."""
    if value:
        typer.echo(f"ruvector-lab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Options of every command: logging to stderr (the app's help= is what --help shows)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _bar(total: int, desc: str, unit: str = "vec", initial: int = 0) -> tqdm:
    """A progress bar on stderr. ``disable=None`` is tqdm's "draw only on a terminal": under DVC, CI or a pipe
    nothing is written, so logs stay short."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, mininterval=2.0,
                dynamic_ncols=True, disable=None)


class _Bars:
    """What the stages' bars share: ``with`` them, and log records are printed above a drawn bar rather than through
    it (tqdm's logging redirect of the root handler), and the open bar is finished on the way out."""

    bar: tqdm | None = None

    def __enter__(self) -> Self:
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._logs = contextlib.ExitStack()
        self._logs.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._logs.close()

    def close(self) -> None:
        """Finish the open bar, if any (it stays on screen at whatever count it reached)."""
        if self.bar is not None:
            self.bar.close()
        self.bar = None


class _StepBar(_Bars):
    """A bar over the steps one harness call reports as ``progress(step, done, total)``: ``step`` (what runs
    next) is shown beside the count, and the bar closes as soon as ``done`` reaches ``total``."""

    def __init__(self, desc: str, unit: str = "step") -> None:
        self.desc, self.unit = desc, unit

    def __call__(self, step: str, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = _bar(total, self.desc, self.unit, initial=done)
        self.bar.n = min(done, total)
        self.bar.set_postfix_str(step, refresh=False)
        self.bar.refresh()
        if done >= total:
            self.close()


class _BuildBars(_Bars):
    """The build stage's bars, honest under build repeats.

    The runner builds a graph configuration several times (flat indexes once) and reports ``("insert", done, n)``
    after each inserted chunk of every build, and ``("query", i, total)`` after each query step, counted over the
    whole configuration (every build's ef_search sweep, then what it measures on one build only). Each build gets an
    insert bar that closes at 100% the moment its inserts are done (not after the sweeps); one bar counts the query
    steps. When the next build's inserts start, the query bar makes way (cleared, since it is not finished) and comes
    back at its count after them, so one bar is drawn at a time and a bar left on screen is a finished one.
    """

    def __init__(self, label: str, builds: int) -> None:
        self.label, self.builds = label, max(1, builds)
        self.build = 0  # the build being inserted, 1-based
        self.step: str | None = None
        self.last = 0

    def __call__(self, step: str, done: int, total: int) -> None:
        if step == "insert":
            if self.step != "insert" or done <= self.last:  # the first chunk of the next build
                self.build += 1
                self._open("insert", total, done, f"insert {self.label} build {self.build}/{self.builds}", "vec")
        elif self.step != step:
            self._open(step, total, done, f"{'queries' if step == 'query' else step} {self.label}", "step")
        self.last = done
        assert self.bar is not None
        self.bar.n = min(done, self.bar.total)
        self.bar.refresh()
        if self.bar.n >= self.bar.total:
            self.close()

    def _open(self, step: str, total: int, done: int, desc: str, unit: str) -> None:
        if self.bar is not None and self.bar.n < self.bar.total:
            self.bar.leave = False  # making way, not finished: a bar left at 3/9 would read as work abandoned
        self.close()
        self.step = step
        # opened at the first report, so it starts at that count: the rate is measured from there on
        self.bar = _bar(total, desc, unit, initial=done)

    def close(self) -> None:
        """Finish the open bar, if any (it stays on screen at whatever count it reached)."""
        super().close()
        self.step = None


ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", help="where fan-outs run: local (this process) or dask (default: params bench.executor, or "
                       "$RUVECTOR_LAB_EXECUTOR; dask when $RUVECTOR_LAB_DASK_SCHEDULER is set)", show_default=False)]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Dask scheduler address (tcp://host:8786) or local:N for a LocalCluster of N worker "
                        "processes (default: $RUVECTOR_LAB_DASK_SCHEDULER, else params bench.dask.scheduler)",
    show_default=False)]


def _executor_settings(p: dict, executor: str | None, scheduler: str | None):
    """The executor the CLI options, the environment and params name (bench.executor.executor_settings)."""
    from .bench.executor import executor_settings

    return executor_settings(p, executor, scheduler)


def _build_count(settings: RunSettings, n_train: int, backend: str) -> int:
    """How many builds the runner makes of one configuration (RunSettings.builds_for), 1 when it cannot say."""
    from .runtime import Runtime

    try:
        return settings.builds_for(n_train, Runtime.require(backend).graph)
    except RuvectorLabError:  # unavailable here: the runner records it and reports no progress
        return 1


def _codec_spec(spec: str) -> str:
    """--quantization: 'none' or a codec spec (``KIND[-m<M>][-b<B>][-opq|-norot][-gfloat][-r<R>]``) whose
    codec config is valid (the runner would record a typo as a build that is not available, and move on)."""
    if spec == "none":
        return spec
    from .bench.results import spec_fields
    from .quantization import QuantizationConfig

    kind = spec.split("-")[0]
    if kind not in CODEC_KINDS:
        raise typer.BadParameter(f"unknown codec {kind!r} in {spec!r}; expected one of {', '.join(CODEC_KINDS)}")
    try:  # the grammar and the config's own checks; m against the data's dimension comes with the data
        fields = spec_fields(spec)
        if (fields.m is not None or fields.width is not None) and kind != "product":
            raise typer.BadParameter(f"{spec!r}: only product takes -m<M> or -w<W>")
        QuantizationConfig(kind=kind, bits=fields.bits, rotation=fields.rotation,  # type: ignore[arg-type]
                           graph=fields.graph)  # type: ignore[arg-type]
    except RuvectorLabError as exc:
        raise typer.BadParameter(str(exc)) from None
    return spec


@app.command()
def backends() -> None:
    """List every known backend, its tier and whether it works here (else the reason)."""
    from .runtime import Runtime

    for name, ok in Runtime.available().items():
        typer.echo(f"{name:10s} {Runtime.tier_of(name):9s} {'available' if ok is True else 'unavailable: ' + str(ok)}")


@app.command()
def data(
    name: Annotated[str, typer.Argument(metavar="NAME", help=_dataset_help(), show_default=False)],
    params_file: ParamsOpt = Path("params.yaml"),
    out_dir: Annotated[Path, typer.Option(help="where NAME.hdf5 goes")] = Path("data/raw"),
    hdf5: Annotated[Path | None, typer.Option(help="use this ann-benchmarks HDF5 file instead")] = None,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Make dataset NAME as params.yaml describes it and write it in the ann-benchmarks HDF5 layout.

    An ann-benchmarks file (source hdf5, or --hdf5) is checked and then linked, not copied, to OUT_DIR/NAME.hdf5:
    DVC hashes through the link, so a change to the file's contents shows in dvc status and is redone by
    dvc repro. The files other sources are converted from (a vector file or corpus and its queries, the Debian
    data) are linked into the folder OUT_DIR/NAME.source/ (empty for the synthetic sets), for the same reason.
    With --executor dask the base texts of an embedded set (wordnet, text, jsonl) are embedded in chunks on the
    cluster's workers.
    """
    from .bench import datasets, params, sources
    from .bench import executor as ex
    from .bench import hdf5 as h5

    try:
        p = {} if hdf5 else params.load_params(params_file)
        spec = {"name": name, "source": "hdf5", "path": str(hdf5)} if hdf5 else params.dataset_spec(p, name)
        settings = _executor_settings(p, executor, scheduler)
        start = time.perf_counter()
        embeds = spec.get("source") in datasets.EMBEDDED_SOURCES
        if embeds and settings.kind == "dask":  # the executor draws its bar over the embedding tasks
            with ex.open_executor(settings) as pool:
                ds = datasets.make_dataset(spec, executor=pool)
        else:
            bar = _bar(int(spec.get("n_base") or 0), f"embed {name}", "text") if embeds else None
            ds = datasets.make_dataset(spec, progress=bar.update if bar else None)
            if bar:
                bar.close()
        if spec.get("source") == "hdf5":
            path = h5.link_hdf5(spec["path"], out_dir / f"{name}.hdf5")
        else:
            ds.attrs["make_seconds"] = time.perf_counter() - start
            path = h5.write_hdf5(out_dir / f"{name}.hdf5", ds)
        sources.link_sources(datasets.source_files(spec), out_dir / f"{name}.source")
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"{path}: {len(ds.train)} x {ds.dimensions} base, {len(ds.test)} queries, {ds.metric}")


@app.command()
def groundtruth(
    name: Annotated[str, typer.Argument(metavar="NAME", help=_dataset_help(), show_default=False)],
    params_file: ParamsOpt = Path("params.yaml"),
    raw_dir: Annotated[Path, typer.Option(help="folder of the data stage's HDF5")] = Path("data/raw"),
    out_dir: DatasetsOpt = Path("data/datasets"),
    verify_sample: Annotated[int, typer.Option(help="queries recomputed exactly to verify a file's own ground "
                                                    "truth")] = 50,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Exact top-k ground truth (blockwise) for dataset NAME. A file's own ground truth with at least k columns is
    verified (ids, distances, and the exact top-k of a seeded sample of queries) and kept, cut to k columns; a file
    whose ground truth disagrees is refused. With --executor dask the (query block, train block) products run on
    the cluster's workers, and the result is the same as computed here."""
    from .bench import executor as ex
    from .bench import groundtruth as gt
    from .bench import hdf5 as h5
    from .bench import params, results

    try:
        p = params.load_params(params_file)
        k = int(params.section(p, "groundtruth").get("k", 100))
        settings = _executor_settings(p, executor, scheduler)  # checked before any work
        ds = h5.read_hdf5(raw_dir / f"{name}.hdf5", name=name)
        k = min(k, len(ds.train))
        start = time.perf_counter()
        if ds.neighbors is not None and ds.distances is not None and ds.neighbors.shape[1] >= k:
            # supplied ground truth is verified, never trusted; only the verified k columns are kept
            gt.verify_ground_truth(ds, k, sample=verify_sample)
            log.info("%s holds top-%d ground truth; verified and kept its top-%d", name, ds.neighbors.shape[1], k)
            ds.neighbors, ds.distances = ds.neighbors[:, :k], ds.distances[:, :k]
        elif settings.kind == "dask":  # the executor draws its bar over the block tasks
            with ex.open_executor(settings) as pool:
                ref = pool.dataset_ref(raw_dir / f"{name}.hdf5", ds)
                ds.neighbors, ds.distances = gt.knn_ground_truth_on(pool, ref, ds, k)
        else:
            bar = _bar(len(ds.test), f"ground truth {name}", "query")
            ds.neighbors, ds.distances = gt.knn_ground_truth(ds.test, ds.train, k, ds.metric, progress=bar.update)
            bar.close()
        seconds = time.perf_counter() - start
        path = h5.write_hdf5(out_dir / f"{name}.hdf5", ds)
        summary = {**ds.describe(), "gt_seconds": seconds,
                   "attrs": {key: v for key, v in ds.attrs.items() if key != "license"}}
        summary["attrs"] = {key: (v.item() if hasattr(v, "item") else v) for key, v in summary["attrs"].items()}
        results.write_json(out_dir / f"{name}.json", summary)
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"{path}: top-{k} ground truth for {len(ds.test)} queries in {seconds:.1f}s")


def _load_dataset(datasets_dir: Path, name: str):
    from .bench import hdf5 as h5

    return h5.read_hdf5(datasets_dir / f"{name}.hdf5", name=name, require_groundtruth=True)


@app.command()
def build(
    dataset: DatasetArg,
    backend: Annotated[Backend, typer.Argument(
        metavar="BACKEND", show_default=False,
        help=f"index backend, one of {', '.join(backend_names())} (ruvector-lab backends says which work here)")],
    m: Annotated[int, typer.Option("--m", help="HNSW links per node")] = 16,
    efc: Annotated[int, typer.Option("--efc", help="ef_construction")] = 100,
    quantization: Annotated[str, typer.Option(help=CODEC_HELP, callback=_codec_spec)] = "none",
    force: ForceOpt = False,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Build one index of DATASET on BACKEND and run its ef_search sweep (finished runs are skipped).

    A graph is built params bench.build_repeats times (seeded insertion orders), each build swept over params
    query.ef_search; a backend that is not available here is recorded as such, with the reason. With --executor
    dask the configuration runs on a Dask worker and its records come back here.
    """
    from .bench import executor as ex
    from .bench import matrix, params, runner

    name = backend.value
    try:
        p = params.load_params(params_file)
        settings = runner.run_settings(p, force)
        runner.cap_rayon_pool(settings.build_threads)  # before ruvector's first use: its pool is sized once
        ds = _load_dataset(datasets_dir, dataset)
        with ex.open_executor(_executor_settings(p, executor, scheduler)) as pool, \
                _BuildBars(f"{dataset}/{name}", _build_count(settings, len(ds.train), name)) as bars:
            ref = pool.dataset_ref(datasets_dir / f"{dataset}.hdf5", ds)
            job = matrix.BuildJob(ref, name, runner.BuildParams(m, efc, quantization), tuple(params.ef_searches(p)))
            outcome = matrix.run_builds([job], settings, results_root, pool, bars)[0]
        if outcome.failed:
            raise ex.ExecutorError(f"{job.name}: {outcome.failed}")
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"{dataset}/{name}/M{m}-efc{efc}-{quantization}: {_outcome_state(outcome)}")


def _outcome_state(outcome: Outcome) -> str:
    """'not available (why)' or 'N written, M already done' (records, not per-query files) of a runner Outcome."""
    if outcome.unavailable:
        return f"not available ({outcome.unavailable})"
    records = [p for p in outcome.written if p.suffix == ".json"]
    return f"{len(records)} written, {len(outcome.skipped)} already done"


@app.command()
def sweep(
    datasets: Annotated[list[str] | None, typer.Argument(
        metavar="[DATASET]...", help="datasets to sweep (default: params bench.datasets)", show_default=False)] = None,
    force: ForceOpt = False,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """The whole build matrix in one fan-out: every dataset x params bench.backends x build.m x
    build.ef_construction x build.quantization, one task per configuration (the same records `build` writes, one
    configuration at a time). With --executor dask the tasks spread over the cluster's workers; a task that fails
    is reported and the others' records are written."""
    from .bench import executor as ex
    from .bench import matrix, params, runner

    try:
        p = params.load_params(params_file)
        settings = runner.run_settings(p, force)
        runner.cap_rayon_pool(settings.build_threads)
        bench, build_params = params.section(p, "bench"), params.section(p, "build")
        names = datasets or list(bench.get("datasets", []))
        builds = [runner.BuildParams(int(m), int(efc), str(q)) for m in build_params.get("m", [16])
                  for efc in build_params.get("ef_construction", [100]) for q in build_params.get("quantization",
                                                                                              ["none"])]
        with ex.open_executor(_executor_settings(p, executor, scheduler)) as pool:
            jobs = []
            for name in names:
                ref = pool.dataset_ref(datasets_dir / f"{name}.hdf5", _load_dataset(datasets_dir, name))
                jobs += matrix.build_jobs(ref, [str(b) for b in bench.get("backends", [])], builds,
                                          params.ef_searches(p))
            outcomes = matrix.run_builds(jobs, settings, results_root, pool)
    except RuvectorLabError as exc:
        _fail(exc)
    for job, outcome in zip(jobs, outcomes, strict=True):
        typer.echo(f"{job.name}: {'failed (' + outcome.failed + ')' if outcome.failed else _outcome_state(outcome)}")
    if any(o.failed for o in outcomes):
        raise typer.Exit(1)


def _flat_scan(ds: object, backend: str, build: object) -> bool:
    """True when ``backend`` would serve ``build``'s codec with a flat scan (no graph): the codec sweep already
    measures that. A backend that cannot serve it at all is False: the build records it as not available."""
    from .backends import class_for
    from .bench import runner

    try:
        return class_for(backend, runner.make_config(ds, build)).graph != "hnsw"
    except (RuvectorLabError, ImportError):
        return False


@app.command()
def quantize(
    dataset: DatasetArg,
    force: ForceOpt = False,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Codec sweep on DATASET: bytes per vector against recall, with exact re-ranking.

    Every codec of params quantization.codecs (the specs of build --quantization) is trained, encodes the base
    set and is scanned by brute force. For the datasets in params quantization.hnsw_datasets, quantized HNSW
    indexes (params quantization.hnsw, e.g. product-gfloat-r40) are then built on every graph backend of params
    bench.backends and swept over quantization.hnsw_ef_search (recall, 1-thread QPS, latency; memory from the
    index's stats); a backend without them is recorded as not available, one that serves the codec by a flat
    scan is left to the codec sweep. With --executor dask each codec and each quantized build is a task on the
    cluster.
    """
    import dataclasses

    from .bench import executor as ex
    from .bench import matrix, params, quant, runner

    try:
        p = params.load_params(params_file)
        q = params.section(p, "quantization")
        ds = _load_dataset(datasets_dir, dataset)
        settings = runner.run_settings(p, force)
        runner.cap_rayon_pool(settings.build_threads)
        with ex.open_executor(_executor_settings(p, executor, scheduler)) as pool:
            ref = pool.dataset_ref(datasets_dir / f"{dataset}.hdf5", ds)
            with _StepBar(f"codecs {dataset}", "step") as codecs:
                written = quant.run_quant_sweep(ds, quant.codec_specs(q, dataset), results_root,
                                                factors=[int(f) for f in q.get("rerank", [1, 4, 10])],
                                                n_queries=int(q.get("n_queries", 1000)), force=settings.force,
                                                progress=codecs, train_size=q.get("train_size") or None,
                                                train_threads=settings.build_threads, executor=pool, ref=ref)
            build = params.section(p, "build")
            (results_root / "qhnsw" / dataset).mkdir(parents=True, exist_ok=True)  # a declared output, even if empty
            ef_values = sorted(int(v) for v in q["hnsw_ef_search"]) if q.get("hnsw_ef_search") else \
                params.ef_searches(p)
            # these builds answer "what does the graph cost over the codes": recall, 1-thread QPS and latency; their
            # memory comes from the index's stats (codes, graph, floats apart), so no child build or thread scaling
            hnsw_settings = dataclasses.replace(settings, memory=False, threads=(1,))
            jobs = []
            for spec in quant.hnsw_specs(q, dataset):
                for backend in params.section(p, "bench").get("backends", []):
                    bp = runner.BuildParams(int(build.get("m", [16])[0]),
                                            int(build.get("ef_construction", [100])[0]), str(spec))
                    if _flat_scan(ds, backend, bp):
                        typer.echo(f"{dataset}/{backend}/{spec}: a flat scan over the codes, measured by the codec "
                                   "sweep; no graph to build")
                        continue
                    jobs.append(matrix.BuildJob(ref, str(backend), bp, tuple(ef_values), f"qhnsw/{dataset}"))
            outcomes = matrix.run_builds(jobs, hnsw_settings, results_root, pool)  # one bar over the builds
            for job, outcome in zip(jobs, outcomes, strict=True):
                written += [path for path in outcome.written if path.suffix == ".json"]
                if outcome.failed:
                    raise ex.ExecutorError(f"{job.name}: {outcome.failed}")
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"{dataset}: {len(written)} quantization results written")


@app.command()
def tune(
    dataset: DatasetArg,
    recall: Annotated[list[float] | None, typer.Option(
        "--recall", help="recall@k target in (0, 1]; repeat for several (default: params tune.targets)")] = None,
    objective: Annotated[str | None, typer.Option(
        help="the headline objective: qps, memory or build-time (default: params tune.objective)")] = None,
    backends: Annotated[str | None, typer.Option(
        help="comma-separated backends to search (default: params tune.space.backends)")] = None,
    trials: Annotated[int | None, typer.Option(help="builds per study (default: params tune.trials)")] = None,
    memory_budget: Annotated[float | None, typer.Option(
        "--memory-budget", help="bytes per vector no configuration may exceed (default: params tune.memory_budget)")
    ] = None,
    grid: Annotated[bool | None, typer.Option(
        "--grid/--no-grid", help="also evaluate the whole space as the reference (default: params tune.grid)")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default: sqlite file tune/<DATASET>/optuna.db under --results)")] = None,
    study: Annotated[str | None, typer.Option(help="study name (default: derived from the question)")] = None,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Autotune DATASET: the cheapest configuration reaching a recall target, across backends, M,
    ef_construction and codecs (Optuna; the study resumes where a killed run stopped).

    Writes tune/DATASET/recall-TARGET.json under --results (every trial, the Pareto set, the recommendation per
    objective checked with other seeds, the grid comparison) and a params.yaml fragment beside it. With --executor
    dask the trials run on the cluster's workers, one per worker at a time (the study's storage stays here).
    """
    import dataclasses

    from .bench import params
    from .bench import tune as tuner
    from .bench.executor import open_executor

    try:
        p = params.load_params(params_file)
        tp = tuner.tune_params(p)
        kwargs = tp.kwargs()
        targets = tuple(recall) if recall else tp.targets
        space = tp.space if backends is None else dataclasses.replace(
            tp.space, backends=tuple(b.strip() for b in backends.split(",") if b.strip()))
        kwargs.update(space=space, measure_targets=targets)
        for key, value in (("objective", objective), ("trials", trials), ("memory_budget", memory_budget),
                           ("grid", grid)):
            if value is not None:
                kwargs[key] = value
        # one executor for every target: a cluster is started (or reached) once, the dataset shipped once
        with open_executor(_executor_settings(p, executor, scheduler)) as pool:
            for target in targets:
                with _StepBar(f"tune {dataset} recall {target:g}", "build") as bar:
                    result = tuner.tune(dataset, target, storage=storage, study_name=study,
                                        results_root=results_root, datasets_dir=datasets_dir, progress=bar,
                                        executor=pool, **kwargs)
                typer.echo(f"{dataset} recall {target:g}: {result.answer}")
                if result.grid:
                    g = result.grid
                    ratio = f"{g['qps_ratio']:.3f}" if g.get("qps_ratio") is not None else "n/a"
                    best = g["best"]["label"] if g.get("best") else "none"
                    typer.echo(f"  grid: {g['builds']} builds, best {best}; "
                               f"tuner {g['tuner_builds']} builds, QPS ratio to the grid's best {ratio}")
    except RuvectorLabError as exc:
        _fail(exc)


@app.command()
def adr(
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
) -> None:
    """The ADR-006 suite, judged against the ADR's targets.

    The common cases (embedding, distance, quantize, pattern match) run once; the index cases (inserts, search
    k=10 with recall, batch distance, pattern match through an index) run on every backend of params
    bench.backends, on the dataset of params adr.dataset.
    """
    from .bench import adr as suite
    from .bench import params, results

    try:
        p = params.load_params(params_file)
        settings = suite.adr_settings(p)
        name = params.section(p, "adr").get("dataset", "adr-random-10k-384")
        ds = _load_dataset(datasets_dir, name)
        out = results_root / "adr"
        if out.exists():
            shutil.rmtree(out)
        with _StepBar("ADR common cases", "case") as bar:
            record = suite.run_common(ds, settings, progress=bar)
        results.write_json(out / "common.json", record)
        for backend in params.section(p, "bench").get("backends", []):
            with _StepBar(f"ADR {backend}", "case") as bar:
                record = suite.run_backend(ds, backend, settings, progress=bar)
            results.write_json(out / f"{backend}.json", record)
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"ADR suite written to {out}")


@app.command()
def peers(
    dataset: DatasetArg,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    force: ForceOpt = False,
) -> None:
    """Native vs WASM on the same algorithm: each pair of params peers.pairs on DATASET.

    Every side (an npm package in Node.js, in headless Chromium, or the rvf module in Python's wasmtime) builds
    the same index (peers.m, peers.ef_construction) and runs the same queries in peers.runs fresh processes;
    recall is scored against the dataset's ground truth. A side without Node.js, Chromium or its package is
    recorded as not available; a crash or version drift fails that side only.
    """
    from .bench import params
    from .bench import peers as peer_bench

    try:
        p = params.load_params(params_file)
        settings = peer_bench.peer_settings(p)
        ds = _load_dataset(datasets_dir, dataset)
        with _StepBar(f"peers {dataset}", "run") as bar:
            paths = peer_bench.run_dataset(ds, settings, results_root, force=force, progress=bar)
    except RuvectorLabError as exc:
        _fail(exc)
    for path in paths:
        typer.echo(f"peers: {path}")


@app.command()
def report(
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    out_dir: Annotated[Path, typer.Option(help="where report.md, metrics.json and plots/ go")] = Path("results"),
) -> None:
    """Write results/report.md, results/metrics.json and results/plots/ from every result JSON under --results."""
    from .bench import params
    from .bench import report as rep

    try:
        p = params.load_params(params_file)
        path = rep.write_report(results_root, out_dir, datasets_dir, p)
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"report: {path}")


if __name__ == "__main__":
    app()
