"""The executor layer: settings, the task wrapper, host load, datasets by content hash, and a real cluster over TCP
(a scheduler and two workers as separate processes) that loses a worker mid-sweep and still delivers every result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ruvector_lab.bench import executor as ex
from ruvector_lab.bench import hostload, matrix, results
from ruvector_lab.bench.hdf5 import Dataset, read_hdf5, write_hdf5
from ruvector_lab.bench.runner import BuildParams, RunSettings
from ruvector_lab.errors import DatasetError, InvalidParameterError

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------------------ settings
def test_settings_precedence_cli_then_environment_then_params(monkeypatch):
    monkeypatch.delenv(ex.SCHEDULER_ENV, raising=False)
    monkeypatch.delenv(ex.EXECUTOR_ENV, raising=False)
    params = {"bench": {"executor": "dask", "dask": {"scheduler": "local:3", "retries": 1}}}
    assert ex.executor_settings(params) == ex.ExecutorSettings("dask", "local:3", 1)
    assert ex.executor_settings({}) == ex.ExecutorSettings("local", None, 2)
    monkeypatch.setenv(ex.SCHEDULER_ENV, "tcp://10.0.0.1:8786")
    # a scheduler in the environment means dask, over params' executor: local
    assert ex.executor_settings({"bench": {"executor": "local"}}).kind == "dask"
    assert ex.executor_settings(params).scheduler == "tcp://10.0.0.1:8786"
    # the CLI wins over both
    chosen = ex.executor_settings(params, kind="local", scheduler="local:1")
    assert (chosen.kind, chosen.scheduler) == ("local", "local:1")


@pytest.mark.parametrize("bad", ["local:0", "local:x", "host:8786", "tcp://"])
def test_bad_scheduler_is_refused_naming_it(bad):
    with pytest.raises(InvalidParameterError, match="scheduler"):
        ex.executor_settings({}, kind="dask", scheduler=bad)


def test_unknown_executor_and_negative_retries_are_refused(monkeypatch):
    monkeypatch.delenv(ex.SCHEDULER_ENV, raising=False)
    monkeypatch.delenv(ex.EXECUTOR_ENV, raising=False)
    with pytest.raises(InvalidParameterError, match="slurm"):
        ex.executor_settings({"bench": {"executor": "slurm"}})
    with pytest.raises(InvalidParameterError, match="retries"):
        ex.executor_settings({"bench": {"dask": {"retries": -1}}})


def test_unreachable_scheduler_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ex.ExecutorError, match="cannot reach"):
        ex.DaskExecutor(ex.ExecutorSettings("dask", f"tcp://127.0.0.1:{port}", connect_timeout_s=2))


# ----------------------------------------------------------------------------------------------------- host load
def test_overlap_counts_the_most_tasks_open_at_once():
    others = [("a", 0.0, 4.0), ("b", 1.0, 2.0), ("c", 3.0, 5.0), ("far", 20.0, 30.0), ("touching", 10.0, 11.0)]
    load = hostload.overlap_figures(1.5, 10.0, others)
    # a, b and this task at 1.5-2.0; 'touching' starts when this one ends; 'far' never overlaps
    assert load.max_concurrent == 3 and load.overlapping == 3 and load.others == ["a", "b", "c"]
    assert hostload.overlap_figures(0.0, 1.0, []).max_concurrent == 1


def test_measuring_slots_in_two_threads_see_each_other(tmp_path, monkeypatch):
    monkeypatch.setenv(hostload.ENV_VAR, str(tmp_path))
    loads = []
    barrier = threading.Barrier(2)

    def measure(name):
        with hostload.measuring_slot(name) as load:
            barrier.wait()
            time.sleep(0.2)
        loads.append(load)

    threads = [threading.Thread(target=measure, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(load.max_concurrent for load in loads) == [2, 2]
    with hostload.measuring_slot("alone") as alone:
        pass
    assert alone.max_concurrent == 1  # the closed slots ended before this one began


def test_slot_of_a_dead_process_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv(hostload.ENV_VAR, str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f"{pid}-x.json").write_text(json.dumps({"pid": pid, "task": "ghost", "start": 0.0, "end": None}))
    with hostload.measuring_slot("me") as load:
        pass
    assert load.max_concurrent == 1 and not (tmp_path / f"{pid}-x.json").exists()


# -------------------------------------------------------------------------------------------------- the wrapper
def _square(x):
    return x * x


def _write_two(root, name):
    folder = Path(root) / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rec.json").write_text(json.dumps({"schema": "t", "status": "ok"}))
    (folder / "blob.bin").write_bytes(b"\x00\x01")
    assert (Path(root) / "seed.json").read_text() == '{"seen": 1}'  # the seed travelled with the task
    return name


def _data_error():
    raise DatasetError("row 7 is NaN")


def test_local_executor_delivers_files_stamps_load_and_records_data_errors(tmp_path):
    (tmp_path / "seed.json").write_text('{"seen": 1}')
    tasks = [ex.Task("sq", _square, (3,)),
             ex.Task("w", _write_two, ("a",), measuring=True, writes_results=True, seeds=("seed.json",)),
             ex.Task("bad", _data_error)]
    with ex.open_executor(ex.ExecutorSettings()) as pool:
        sq, w, bad = pool.run(tasks, root=tmp_path)
    assert sq.value == 9 and sq.host_load is None and sq.host["fingerprint"]
    rec = json.loads((tmp_path / "runs" / "a" / "rec.json").read_text())
    assert rec["host_load"]["max_concurrent"] >= 1 and w.host_load == rec["host_load"]
    assert (tmp_path / "runs" / "a" / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in w.files) == ["blob.bin", "rec.json"]  # the unchanged seed is not re-delivered
    assert bad.error == "DatasetError: row 7 is NaN" and not bad.ok
    with pytest.raises(ex.ExecutorError, match="1 of 3 tasks failed: bad: DatasetError"):
        ex.raise_failures([sq, w, bad], "tasks")


def test_a_result_path_outside_the_root_is_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="inside the results root"):
        ex._deliver(ex.Task("t", _square), ex._Shipped(files={"../escape.json": b"{}"}), tmp_path)


# ---------------------------------------------------------------------------------------------------- datasets
def _dataset(n=400, d=16, seed=0, name="toy") -> Dataset:
    from ruvector_lab.bench.groundtruth import knn_ground_truth

    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n, d)).astype(np.float32)
    test = rng.standard_normal((40, d)).astype(np.float32)
    ds = Dataset(name, train, test, "euclidean")
    ds.neighbors, ds.distances = knn_ground_truth(test, train, 10, "euclidean")
    return ds


def _load_ref(ref):
    ds = ref.load()
    return ds.content_hash(), str(ref.cached_path())


@pytest.mark.slow
def test_dataset_reaches_workers_by_content_hash_and_a_bad_copy_is_fetched_again(tmp_path, dask_scheduler):
    ds = _dataset()
    path = write_hdf5(tmp_path / "toy.hdf5", ds)
    with ex.open_executor(ex.ExecutorSettings("dask", dask_scheduler)) as pool:
        ref = pool.dataset_ref(path, read_hdf5(path))
        outcomes = pool.run([ex.Task(f"load{i}", _load_ref, (ref,)) for i in range(4)])
        assert {o.value[0] for o in outcomes} == {ds.content_hash()}
        cached = Path(outcomes[0].value[1])
        assert cached.exists() and ds.content_hash() in cached.name
        cached.write_bytes(cached.read_bytes()[:100])  # a truncated cache copy is fetched again, not trusted
        again = pool.run([ex.Task("reload", _load_ref, (ref,))])[0]
        assert again.ok and again.value[0] == ds.content_hash()
        # the file changed under a reference made earlier: refused, naming the dataset
        stale = ex.DatasetRef("toy", "0" * 16, str(path))
        refused = pool.run([ex.Task("stale", _load_ref, (stale,))])[0]
        assert "DatasetError" in refused.error and "toy" in refused.error


# ------------------------------------------------------------------------------------- a cluster over real TCP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args, env=None, log=None):
    return subprocess.Popen([str(BIN / "dask"), *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for_workers(address: str, count: int, timeout: float = 60) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.mark.slow
def test_tcp_cluster_loses_a_worker_mid_sweep_and_delivers_every_result(tmp_path):
    if shutil.which("dask", path=str(BIN)) is None:
        pytest.skip("the dask command comes with the cluster extra (pip install -e '.[cluster]')")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 - kept open for the processes' lifetime
    procs = [_spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], log=logs)]
    try:
        for i in range(2):
            procs.append(_spawn([
                "worker", address, "--nthreads", "1", "--resources", "measure=1", "--no-dashboard",
                "--name", f"w{i}", "--host", "127.0.0.1", "--local-directory", str(tmp_path / f"w{i}")],
                env={ex.DATA_CACHE_ENV: str(tmp_path / f"cache{i}"), hostload.ENV_VAR: str(tmp_path / "slots")},
                log=logs))
        _wait_for_workers(address, 2)
        ds = _dataset(n=3000, d=32)
        path = write_hdf5(tmp_path / "toy.hdf5", ds)
        settings = RunSettings(n_queries=40, repeats=1, warmup=5, threads=(1,), build_threads=1, memory=False,
                               insert_chunk=500)
        root = tmp_path / "results"
        builds = [BuildParams(m, efc) for m in (8, 12, 16) for efc in (40, 80)]
        done: dict[str, object] = {}

        def sweep():
            with ex.open_executor(ex.ExecutorSettings("dask", address)) as pool:
                jobs = matrix.build_jobs(pool.dataset_ref(path, read_hdf5(path)), ["hnswlib"], builds, [10, 40])
                done["outcomes"] = matrix.run_builds(jobs, settings, root, pool)
                done["workers_after"] = pool.workers()

        runner = threading.Thread(target=sweep)
        runner.start()
        deadline = time.time() + 120
        while not list(root.glob("runs/*/*/*/build.json")) and time.time() < deadline:
            time.sleep(0.05)
        _stop(procs[1])  # worker w0 and its nanny: gone, as a machine that loses power
        runner.join(timeout=300)
        assert not runner.is_alive()
        outcomes = done["outcomes"]
        assert [o.failed for o in outcomes] == [None] * len(builds)
        assert done["workers_after"] == 1
        for build in builds:
            folder = results.run_dir(root, "toy", "hnswlib", build.key)
            for ef in (10, 40):
                rec = json.loads(results.query_file(folder, ef, 10).read_text())
                assert rec["status"] == "ok" and rec["host_load"]["worker_threads"] == 1
                assert rec["environment"]["host"]["fingerprint"]
                assert (folder / rec["perquery_file"]).exists()
        # the surviving worker fetched the data into its own cache
        assert list((tmp_path / "cache1").glob(f"toy-{ds.content_hash()}.hdf5"))
    finally:
        for proc in reversed(procs):
            _stop(proc)
        logs.close()


# --------------------------------------------------------------------------------------------------- the CLI
def _recall_by_file(root: Path) -> dict[str, object]:
    return {p.relative_to(root).as_posix(): json.loads(p.read_text())["recall"]
            for p in sorted(root.glob("runs/*/*/*/query-*.json"))}


@pytest.mark.slow
def test_sweep_runs_the_whole_matrix_locally_and_on_a_cluster_alike(tmp_path, dask_scheduler, monkeypatch):
    from typer.testing import CliRunner

    from ruvector_lab import cli

    monkeypatch.delenv(ex.SCHEDULER_ENV, raising=False)
    monkeypatch.delenv(ex.EXECUTOR_ENV, raising=False)
    write_hdf5(tmp_path / "datasets" / "toy.hdf5", _dataset(n=600, d=8))
    (tmp_path / "params.yaml").write_text(
        "bench: {datasets: [toy], backends: [hnswlib, numpy, nope-not-a-backend], n_queries: 20, build_repeats: 1,\n"
        "        repeats: 1, warmup: 2, threads: [1], build_threads: 1, memory: false, insert_chunk: 200}\n"
        "build: {m: [8, 16], ef_construction: [40]}\n"
        "query: {k: 10, ef_search: [10, 40]}\n")
    common = ["--params", str(tmp_path / "params.yaml"), "--datasets-dir", str(tmp_path / "datasets")]
    runs = {}
    for kind, extra in (("local", []), ("dask", ["--executor", "dask", "--scheduler", dask_scheduler])):
        result = CliRunner().invoke(cli.app, ["sweep", *common, "--results", str(tmp_path / kind), *extra])
        # the unknown backend fails its two tasks with the reason; the other four configurations are written
        assert result.exit_code == 1, result.output
        assert result.output.count("failed (InvalidParameterError: unknown backend 'nope-not-a-backend'") == 2
        assert result.output.count("toy/hnswlib/") == 2 and "2 written" in result.output
        runs[kind] = _recall_by_file(tmp_path / kind)
    assert len(runs["local"]) == 2 * 2 + 2  # hnswlib: 2 builds x 2 ef; numpy (flat): one setting per build
    assert runs["local"] == runs["dask"]
    # a second sweep finds everything done
    again = CliRunner().invoke(cli.app, ["sweep", *common, "--results", str(tmp_path / "local")])
    assert "already done" in again.output and "written" in again.output
