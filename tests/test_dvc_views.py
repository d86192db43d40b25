"""How a researcher sees the pipeline through DVC: the report stage's outputs as dvc.yaml declares them, the plots
page rendered offline in headless Chromium, and `dvc exp run -S` leaving params.yaml as it was written.

Each DVC check runs in a scratch project (as tests/test_pipeline_smoke.py does), never in the repository.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from ruvector_lab.bench import datasets, groundtruth, quant, report, runner

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAGE = ROOT / "pipelines" / "plots" / "page.html"
#: Chromium on Debian (`apt-get install -y chromium`), or another distribution's name for it
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def _run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _dvc(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run(str(BIN / "dvc"), *args, cwd=cwd, timeout=timeout)


def _need_dvc() -> None:
    if not (BIN / "dvc").exists():
        pytest.skip("dvc comes with the bench extra (pip install -e '.[bench]')")


def _dvc_project(path: Path, scm: bool) -> Path:
    """A DVC project in ``path`` (with git when ``scm``) that never reports usage or checks for updates."""
    path.mkdir(parents=True, exist_ok=True)
    if scm:
        assert _run("git", "init", "-q", cwd=path).returncode == 0
        for key, value in (("user.name", "test"), ("user.email", "test@example.invalid")):
            _run("git", "config", key, value, cwd=path)
    init = _dvc("init", "-q", *([] if scm else ["--no-scm"]), cwd=path)
    assert init.returncode == 0, init.stderr
    for key in ("core.analytics", "core.check_update"):  # no network: no usage reports, no version checks
        _dvc("config", key, "false", cwd=path)
    return path


# ------------------------------------------------------------------------------- the report stage as dvc.yaml has it
def _dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _declared(entries: list) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_report_stage_declares_exactly_what_write_report_writes(tmp_path):
    stage = _dvc_yaml()["stages"]["report"]
    declared = _declared(stage["outs"]) | _declared(stage["metrics"])
    assert declared == {f"results/{name}" for name in report.OUTPUTS}
    # every output exists after a report on no results at all, so DVC never finds a declared file missing
    report.write_report(tmp_path / "none", tmp_path / "results", None, {})
    written = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert written == declared


def test_plots_name_only_files_every_run_writes_and_templates_that_exist():
    for entry in _dvc_yaml()["plots"]:
        if isinstance(entry, str):  # an image: no dataset in its name, every run writes it
            assert entry in {f"results/{name}" for name in report.OUTPUTS}, entry
            continue
        (props,) = entry.values()
        for data_file in props["y"]:
            assert data_file in {f"results/{name}" for name in report.OUTPUTS}, data_file
        template = json.loads((ROOT / props["template"]).read_text())
        text = json.dumps(template)
        for anchor in ("<DVC_METRIC_DATA>", "<DVC_METRIC_X>", "<DVC_METRIC_Y>"):
            assert anchor in text
        assert template["facet"]["field"] == "dataset"  # one panel per dataset: any set of datasets renders


# ---------------------------------------------------------------------------------- the plots page, rendered offline
def _chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> Path:
    """A scratch DVC project holding the report of a tiny results set: two datasets, a graph and an exact
    backend, a codec sweep on one dataset."""
    _need_dvc()
    repo = _dvc_project(tmp_path_factory.mktemp("views"), scm=False)
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / "pipelines" / "params-tiny.yaml", repo / "params.yaml")  # dvc.yaml's stages read it
    shutil.copytree(ROOT / "pipelines" / "plots", repo / "pipelines" / "plots")
    settings = runner.RunSettings(n_queries=40, repeats=1, warmup=2, threads=(1,), build_threads=1,
                                  insert_chunk=500, memory=False)
    root = repo / "data" / "results"
    for name, dims in (("tiny-a", 16), ("tiny-b", 24)):
        ds = datasets.clustered(n=600, n_queries=40, dimensions=dims, clusters=6, seed=3, name=name)
        ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 100, ds.metric)
        runner.run_build(ds, "hnswlib", runner.BuildParams(8, 40), [10, 20, 80], settings, root)
        runner.run_build(ds, "numpy", runner.BuildParams(8, 40), [10], settings, root)
        if name == "tiny-a":
            quant.run_quant_sweep(ds, ["scalar", "binary"], root, factors=(1, 4), n_queries=40)
    report.write_report(root, repo / "results", None, {})
    return repo


def test_tiny_report_has_headline_metrics_and_one_file_per_plot(tiny_results):
    metrics = json.loads((tiny_results / "results" / "metrics.json").read_text())
    assert set(metrics) == {"qps", "config", "codec", "verdicts"}
    assert set(metrics["qps"]) == {"tiny-a", "tiny-b"} and set(metrics["qps"]["tiny-a"]) == {"r90", "r95", "r99"}
    assert metrics["qps"]["tiny-a"]["r99"] > 0  # the exact scan reaches every target
    assert re.fullmatch(r"(hnswlib M8-efc40-none ef \d+|numpy exact)", metrics["config"]["tiny-a"]["r90"])
    codec = metrics["codec"]["tiny-a"]
    assert codec["spec"].split(",")[0] in {"scalar", "binary"} and codec["bytes_per_vector"] < 16 * 4
    with open(tiny_results / "results" / "plots" / "recall_qps.csv", newline="") as f:
        assert {row["dataset"] for row in csv.DictReader(f)} == {"tiny-a", "tiny-b"}
    assert not list((tiny_results / "results" / "plots").glob("recall_qps_*"))  # no per-dataset files


def _render(repo: Path, *extra: str) -> Path:
    shown = _dvc("plots", "show", *extra, cwd=repo, timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    page = repo / "dvc_plots" / "index.html"
    assert page.is_file()
    return page


def _dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium with every network path closed: no DNS (all
    host names resolve to nothing), no proxy, no background fetches."""
    browser = _chromium()
    assert browser
    run = _run(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
               "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
               cwd=page.parent, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


class _Descendants(HTMLParser):
    """The tag names inside each element whose id is one of ``ids`` (a rendered DOM, so tags are balanced)."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                      "wbr"})

    def __init__(self, ids: set[str]) -> None:
        super().__init__()
        self.ids, self.open = ids, []  # the open elements: (tag, id of the watched element it opened, if any)
        self.inside: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for watched in {w for _, w in self.open if w}:
            self.inside[watched].append(tag)
        ident = dict(attrs).get("id")
        if ident in self.ids:
            self.inside.setdefault(ident, [])
        if tag not in self.VOID:
            self.open.append((tag, ident if ident in self.ids else None))

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()[0] == tag:
                break


def _inside(dom: str, ids: set[str]) -> dict[str, list[str]]:
    parser = _Descendants(ids)
    parser.feed(dom)
    return parser.inside


def test_plots_page_renders_offline_in_headless_chromium(tiny_results, tmp_path):
    if _chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium; make setup-browser); the plots "
                    "page is checked in it")
    assert (ROOT / "node_modules" / "vega-embed").is_dir(), (
        "vega, vega-lite and vega-embed are not in node_modules: run `npm ci` (make setup-npm)")
    # the page loads ../node_modules: beside the repository's own dvc_plots/ that is the repository's node_modules
    (tiny_results / "node_modules").unlink(missing_ok=True)
    (tiny_results / "node_modules").symlink_to(ROOT / "node_modules")
    page = _render(tiny_results, "--html-template", str(PAGE))
    html = page.read_text()
    assert not re.search(r"<script[^>]+src=\"(https?:)?//", html), "the page must not load scripts from a network"
    dom = _dump_dom(page, tmp_path / "profile")
    plots = {"recall-vs-qps", "bytes-vs-recall", "results_plots_recall_qps_png", "results_plots_quant_bytes_recall_png"}
    inside = _inside(dom, plots | {"plots-missing-libraries"})
    assert set(inside) == plots | {"plots-missing-libraries"}, sorted(inside)
    for name in ("recall-vs-qps", "bytes-vs-recall"):  # vega-embed drew each vega plot (canvas by default)
        assert {"canvas", "svg"} & set(inside[name]), (name, inside[name])
    for name in ("results_plots_recall_qps_png", "results_plots_quant_bytes_recall_png"):
        assert "img" in inside[name], (name, inside[name])
    assert re.search(r'<p id="plots-missing-libraries" hidden', dom), "the page says the libraries did not load"


# ------------------------------------------------------------------------ `dvc exp run -S` and the params files' form
@pytest.mark.slow
@pytest.mark.parametrize("profile", ["params.yaml", "pipelines/params-tiny.yaml", "pipelines/params-full.yaml"])
def test_exp_run_set_param_changes_only_the_values_it_sets(profile, tmp_path):
    """DVC rewrites the whole params file on `dvc exp run -S` (ruamel round trip, every list written anew in block
    style); the committed profiles are in that form, so the rewrite leaves exactly the lines of the set values."""
    _need_dvc()
    repo = _dvc_project(tmp_path / "exp", scm=True)
    original = (ROOT / profile).read_text()
    (repo / "params.yaml").write_text(original)
    # a one-line stage that depends on the params that change: the rewrite happens before it runs
    (repo / "dvc.yaml").write_text("stages:\n  touch:\n    cmd: echo ran > out.txt\n    params:\n"
                                   "      - bench.warmup\n      - query.ef_search\n    outs:\n      - out.txt\n")
    (repo / ".gitignore").write_text("/out.txt\n")
    assert _run("git", "add", "-A", cwd=repo).returncode == 0
    assert _run("git", "commit", "-q", "-m", "scratch", cwd=repo).returncode == 0
    p = yaml.safe_load(original)
    warmup, efs = p["bench"]["warmup"], p["query"]["ef_search"]
    run = _dvc("exp", "run", "-S", f"bench.warmup={warmup + 1}", "-S",
               f"query.ef_search=[{','.join(map(str, [*efs[:-1], efs[-1] * 2]))}]", cwd=repo, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    # the file DVC wrote is the committed one with those two lines changed, comments and layout kept
    lines = original.splitlines(keepends=True)
    warm = next(i for i, line in enumerate(lines) if re.match(rf"  warmup: {warmup}\b", line))
    lines[warm] = lines[warm].replace(f"warmup: {warmup}", f"warmup: {warmup + 1}", 1)
    query = next(i for i, line in enumerate(lines) if line.startswith("query:"))
    last = next(i for i in range(query, len(lines)) if lines[i].startswith("  ef_search:")) + len(efs)
    assert lines[last] == f"  - {efs[-1]}\n"
    lines[last] = f"  - {efs[-1] * 2}\n"
    diff = _run("git", "diff", "params.yaml", cwd=repo).stdout
    assert (repo / "params.yaml").read_text() == "".join(lines), diff
    assert _run("git", "diff", "--numstat", "params.yaml", cwd=repo).stdout.split()[:2] == ["2", "2"], diff


@pytest.mark.parametrize("profile", ["params.yaml", "pipelines/params-tiny.yaml", "pipelines/params-full.yaml"])
def test_params_files_survive_dvcs_rewrite_unchanged(profile, tmp_path):
    """DVC's own `-S` code path (load with ruamel, merge the overrides, dump the whole file) on a profile with an
    override that changes nothing gives back the file byte for byte: every section, comment and blank line."""
    hydra = pytest.importorskip("dvc.utils.hydra", reason="dvc comes with the bench extra")
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / profile).read_text())
    warmup = yaml.safe_load(path.read_text())["bench"]["warmup"]
    hydra.apply_overrides(str(path), [f"bench.warmup={warmup}"])
    changed = list(difflib.unified_diff((ROOT / profile).read_text().splitlines(), path.read_text().splitlines(),
                                        n=0, lineterm=""))
    assert not changed, "\n".join(changed)


def test_report_covers_only_the_parameters_grid(tiny_results, tmp_path):
    """Runs on disk that the parameters no longer list (an earlier experiment's dataset or ef_search) stay out of
    the report, so two experiments' metrics differ exactly where their grids do."""
    params = {"bench": {"datasets": ["tiny-a"], "backends": ["hnswlib", "numpy"]},
              "build": {"m": [8], "ef_construction": [40], "quantization": ["none"]},
              "query": {"k": 10, "ef_search": [10, 20]}, "quantization": {"datasets": [], "codecs": []}}
    report.write_report(tiny_results / "data" / "results", tmp_path, None, params)
    with open(tmp_path / "plots" / "recall_qps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["dataset"], r["ef_search"]) for r in rows} <= {("tiny-a", "10"), ("tiny-a", "20")}
    assert {r["backend"] for r in rows} == {"hnswlib", "numpy"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["qps"]) == {"tiny-a"} and metrics["codec"] == {}
    assert "ef 80" not in json.dumps(metrics["config"])
    assert (tmp_path / "plots" / "quant_bytes_recall.png").stat().st_size > 0  # declared, so written even if empty
