"""``ruvector-lab``: the command line the DVC pipeline's stages call (and a person can too).

    ruvector-lab backends                       which backends work here, and why not
    ruvector-lab data NAME                      make dataset NAME (params.yaml ``datasets``) -> data/raw/NAME.hdf5
    ruvector-lab groundtruth NAME               exact top-k -> data/datasets/NAME.hdf5 (+ NAME.json summary)
    ruvector-lab build DATASET BACKEND ...      build one index and run its ef_search sweep -> data/results/runs
    ruvector-lab quantize DATASET               codec sweep (+ quantized HNSW builds) -> data/results/quant
    ruvector-lab adr                            the ADR-006 suite for every backend -> data/results/adr
    ruvector-lab report                         results/report.md, results/metrics.json, results/plots/
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .errors import RuvectorLabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ruvector-lab benchmarks and pipeline stages.")
log = logging.getLogger("ruvector_lab.cli")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (YAML)")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="results root")]
DatasetsOpt = Annotated[Path, typer.Option("--datasets-dir", help="folder of ground-truthed HDF5 datasets")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _bar(total: int, desc: str, unit: str = "vec"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=2.0, dynamic_ncols=True)


@app.command()
def backends() -> None:
    """List every known backend and whether it works here (else the reason)."""
    from .runtime import Runtime

    for name, ok in Runtime.available().items():
        typer.echo(f"{name:10s} {Runtime.tier_of(name):9s} {'available' if ok is True else 'unavailable: ' + str(ok)}")


@app.command()
def data(
    name: str,
    params_file: ParamsOpt = Path("params.yaml"),
    out_dir: Annotated[Path, typer.Option(help="where NAME.hdf5 goes")] = Path("data/raw"),
    hdf5: Annotated[Path | None, typer.Option(help="use this ann-benchmarks HDF5 file instead")] = None,
) -> None:
    """Make dataset NAME as params.yaml describes it and write it in the ann-benchmarks HDF5 layout.

    An ann-benchmarks file (source hdf5, or --hdf5) is checked and then linked, not copied, to out_dir/NAME.hdf5:
    DVC hashes through the link, so a change to the file's contents shows in `dvc status` and is redone by
    `dvc repro`.
    """
    from .bench import datasets, params
    from .bench import hdf5 as h5

    try:
        spec = {"name": name, "source": "hdf5", "path": str(hdf5)} if hdf5 else \
            params.dataset_spec(params.load_params(params_file), name)
        start = time.perf_counter()
        bar = _bar(int(spec.get("n_base") or 0), f"embed {name}") if spec.get("source") == "wordnet" else None
        ds = datasets.make_dataset(spec, progress=bar.update if bar else None)
        if bar:
            bar.close()
        if spec.get("source") == "hdf5":
            path = h5.link_hdf5(spec["path"], out_dir / f"{name}.hdf5")
        else:
            ds.attrs["make_seconds"] = time.perf_counter() - start
            path = h5.write_hdf5(out_dir / f"{name}.hdf5", ds)
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"{path}: {len(ds.train)} x {ds.dimensions} base, {len(ds.test)} queries, {ds.metric}")


@app.command()
def groundtruth(
    name: str,
    params_file: ParamsOpt = Path("params.yaml"),
    raw_dir: Annotated[Path, typer.Option(help="folder of the data stage's HDF5")] = Path("data/raw"),
    out_dir: DatasetsOpt = Path("data/datasets"),
    verify_sample: Annotated[int, typer.Option(help="queries recomputed exactly to verify a file's own ground "
                                                    "truth")] = 50,
) -> None:
    """Exact top-k ground truth (blockwise) for dataset NAME. A file's own ground truth with at least k columns is
    verified (ids, distances, and the exact top-k of a seeded sample of queries) and kept, cut to k columns; a file
    whose ground truth disagrees is refused."""
    from .bench import groundtruth as gt
    from .bench import hdf5 as h5
    from .bench import params, results

    try:
        k = int(params.section(params.load_params(params_file), "groundtruth").get("k", 100))
        ds = h5.read_hdf5(raw_dir / f"{name}.hdf5", name=name)
        k = min(k, len(ds.train))
        start = time.perf_counter()
        if ds.neighbors is not None and ds.distances is not None and ds.neighbors.shape[1] >= k:
            # supplied ground truth is verified, never trusted; only the verified k columns are kept
            gt.verify_ground_truth(ds, k, sample=verify_sample)
            log.info("%s holds top-%d ground truth; verified and kept its top-%d", name, ds.neighbors.shape[1], k)
            ds.neighbors, ds.distances = ds.neighbors[:, :k], ds.distances[:, :k]
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
    dataset: str,
    backend: str,
    m: Annotated[int, typer.Option("--m", help="HNSW links per node")] = 16,
    efc: Annotated[int, typer.Option("--efc", help="ef_construction")] = 100,
    quantization: Annotated[str, typer.Option(help="none | scalar | int4 | binary | product[-m<M>]")] = "none",
    force: Annotated[bool, typer.Option(help="rerun finished runs")] = False,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
) -> None:
    """Build one index of DATASET on BACKEND and run its ef_search sweep (finished runs are skipped)."""
    from .bench import params, runner

    try:
        p = params.load_params(params_file)
        settings = params.run_settings(p, force)
        runner.cap_rayon_pool(settings.build_threads)  # before ruvector's first use: its pool is sized once
        ds = _load_dataset(datasets_dir, dataset)
        bars: dict[str, object] = {}

        def progress(step: str, done: int, total: int) -> None:
            bar = bars.get(step)
            if bar is None:
                bar = bars[step] = _bar(total, f"{step} {dataset}/{backend}", "vec" if step == "insert" else "ef")
            bar.n = done  # type: ignore[attr-defined]
            bar.refresh()  # type: ignore[attr-defined]

        outcome = runner.run_build(ds, backend, runner.BuildParams(m, efc, quantization), params.ef_searches(p),
                                   settings, results_root, progress)
        for bar in bars.values():
            bar.close()  # type: ignore[attr-defined]
    except RuvectorLabError as exc:
        _fail(exc)
    state = f"not available ({outcome.unavailable})" if outcome.unavailable else \
        f"{len(outcome.written)} written, {len(outcome.skipped)} already done"
    typer.echo(f"{dataset}/{backend}/M{m}-efc{efc}-{quantization}: {state}")


@app.command()
def quantize(
    dataset: str,
    force: Annotated[bool, typer.Option(help="rerun finished runs")] = False,
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
) -> None:
    """Codec sweep on DATASET (bytes/vector vs recall, with re-ranking), then, for the datasets in
    ``quantization.hnsw_datasets``, quantized HNSW builds per backend (backends without them are recorded absent)."""
    from .bench import params, quant, runner

    try:
        p = params.load_params(params_file)
        q = params.section(p, "quantization")
        ds = _load_dataset(datasets_dir, dataset)
        settings = params.run_settings(p, force)
        runner.cap_rayon_pool(settings.build_threads)
        written = quant.run_quant_sweep(ds, list(q.get("codecs", [])), results_root,
                                        factors=[int(f) for f in q.get("rerank", [1, 4, 10])],
                                        n_queries=int(q.get("n_queries", 1000)), force=settings.force)
        build = params.section(p, "build")
        (results_root / "qhnsw" / dataset).mkdir(parents=True, exist_ok=True)  # a declared output, even if empty
        hnsw_specs = q.get("hnsw", []) if dataset in q.get("hnsw_datasets", []) else []
        for spec in hnsw_specs:
            for backend in params.section(p, "bench").get("backends", []):
                bp = runner.BuildParams(int(build.get("m", [16])[0]), int(build.get("ef_construction", [100])[0]),
                                        str(spec))
                outcome = runner.run_build(ds, backend, bp, params.ef_searches(p), settings,
                                           results_root / "qhnsw" / dataset)
                written += outcome.written
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"{dataset}: {len(written)} quantization results written")


@app.command()
def adr(
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
) -> None:
    """The ADR-006 suite: common cases once, index cases for every backend in params ``bench.backends``."""
    from .bench import adr as suite
    from .bench import params, results

    try:
        p = params.load_params(params_file)
        settings = params.adr_settings(p)
        name = params.section(p, "adr").get("dataset", "adr-random-10k-384")
        ds = _load_dataset(datasets_dir, name)
        out = results_root / "adr"
        if out.exists():
            shutil.rmtree(out)
        record = suite.run_common(ds, settings)
        results.write_json(out / "common.json", record)
        from tqdm import tqdm

        for backend in tqdm(params.section(p, "bench").get("backends", []), desc="ADR suite", file=sys.stderr):
            results.write_json(out / f"{backend}.json", suite.run_backend(ds, backend, settings))
    except RuvectorLabError as exc:
        _fail(exc)
    typer.echo(f"ADR suite written to {out}")


@app.command()
def report(
    params_file: ParamsOpt = Path("params.yaml"),
    results_root: ResultsOpt = Path("data/results"),
    datasets_dir: DatasetsOpt = Path("data/datasets"),
    out_dir: Annotated[Path, typer.Option(help="where report.md, metrics.json and plots/ go")] = Path("results"),
) -> None:
    """Write results/report.md, results/metrics.json and results/plots/ from every result JSON."""
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
