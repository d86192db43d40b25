"""What a researcher meets at the command line: ``ruvector-lab --version`` and ``--help`` (the choices listed, no
reStructuredText markup, no flag shown as taking a value), progress bars that are honest on a terminal and silent
elsewhere, the learning modules' ``--help``, and a pattern match that prints readably."""

from __future__ import annotations

import importlib
import io
import re
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("typer", reason="the command line comes with the bench extra")
pytest.importorskip("tqdm", reason="the command line comes with the bench extra")
from typer.testing import CliRunner

import ruvector_lab as rl
from ruvector_lab import cli
from ruvector_lab.backends import names as backend_names
from ruvector_lab.bench import adr, groundtruth, quant
from ruvector_lab.bench.hdf5 import Dataset, write_hdf5
from ruvector_lab.quantization import KINDS

COMMANDS = ["backends", "data", "groundtruth", "build", "quantize", "adr", "report"]
runner = CliRunner()


def invoke(*args: str, app: Any = None) -> Any:
    """Run the command line in-process, with a wide terminal so help lines are not wrapped mid-name."""
    return runner.invoke(app or cli.app, list(args), env={"COLUMNS": "200"})


# ------------------------------------------------------------------------------------------- --version, --help
def test_version_prints_the_installed_version():
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"ruvector-lab {rl.__version__}"
    assert rl.__version__ == metadata.version("ruvector-lab")


@pytest.mark.parametrize("args", [[], *([c] for c in COMMANDS)], ids=["ruvector-lab", *COMMANDS])
def test_help_is_plain_text_and_no_flag_takes_a_value(args: list[str]):
    result = invoke(*args, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "``" not in text and ":mod:" not in text and ":func:" not in text, "reStructuredText in the help"
    assert re.search(r"^\s*--help\s+Show this message and exit\.", text, re.MULTILINE), text
    for flag in ("--help", "--verbose", "--version", "--force"):
        if flag in text:
            assert not re.search(rf"{flag}\s+(<\w+>|[A-Z]+\b|TEXT|BOOLEAN)", text), f"{flag} shown taking a value"


def test_top_level_help_lists_every_command_and_backend():
    text = invoke("--help").stdout
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", text, re.MULTILINE), f"{command} missing from --help"
    for name in backend_names():
        assert name in text
    assert "--version" in text


def test_build_help_lists_the_backends_and_codecs():
    text = invoke("build", "--help").stdout
    assert "|".join(backend_names()) in text  # the BACKEND argument's choices, from the backend registry
    for kind in KINDS:
        assert kind in text
    assert "-m<M>" in text and "-r<R>" in text


def test_dataset_help_names_the_datasets_of_the_params_file_here(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("datasets:\n  set-one: {source: adr-random}\n  set-two: {source: hdf5}\n")
    monkeypatch.chdir(tmp_path)
    try:
        fresh = importlib.reload(cli)  # the help texts are made when the module is imported
        for command in ("data", "groundtruth", "build", "quantize"):
            text = re.sub(r"\s+", " ", invoke(command, "--help", app=fresh.app).stdout)
            assert "set-one, set-two" in text, command
        (tmp_path / "params.yaml").write_text(": not yaml [")
        assert fresh._params_datasets() == []  # a broken params file never breaks the help
    finally:
        monkeypatch.undo()
        importlib.reload(cli)


def test_unknown_backend_and_codec_are_refused_with_the_choices():
    result = invoke("build", "some-set", "nope")
    assert result.exit_code == 2 and "faiss" in result.output
    result = invoke("build", "some-set", "faiss", "--quantization", "scalr")
    assert result.exit_code == 2 and "scalr" in result.output and "scalar" in result.output
    result = invoke("build", "some-set", "faiss", "--quantization", "scalar-m8")
    assert result.exit_code == 2 and "product" in result.output


# ----------------------------------------------------------------------------------------------- progress bars
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A folder with a params file and a ground-truthed 300 x 8 dataset, as the build stage reads them."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(5)
    ds = Dataset("tiny-300-8", rng.standard_normal((300, 8)).astype(np.float32),
                 rng.standard_normal((20, 8)).astype(np.float32), "euclidean")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 10, ds.metric)
    write_hdf5(root / "datasets" / f"{ds.name}.hdf5", ds)
    (root / "params.yaml").write_text(
        "datasets:\n  tiny-300-8: {source: adr-random}\n"
        "bench: {backends: [faiss, numpy], n_queries: 20, build_repeats: 2, repeats: 1, flat_repeats: 1, warmup: 2,\n"
        "        threads: [1], build_threads: 1, memory: false, insert_chunk: 100}\n"
        "query: {k: 10, ef_search: [4, 16, 64]}\n")
    return root


def build_args(root: Path, backend: str, results: str) -> list[str]:
    return ["build", "tiny-300-8", backend, "--params", str(root / "params.yaml"), "--datasets-dir",
            str(root / "datasets"), "--results", str(root / results)]


class FakeBar:
    """Stands in for tqdm and logs what a person watching the terminal would see."""

    log: ClassVar[list[tuple[str, str, int, int]]] = []

    def __init__(self, total: int, desc: str, unit: str = "vec", initial: int = 0) -> None:
        self.total, self.desc, self.n, self.leave = total, desc, initial, True
        FakeBar.log.append(("open", desc, initial, total))

    def refresh(self) -> None:
        FakeBar.log.append(("show", self.desc, self.n, self.total))

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        FakeBar.log.append(("close" if self.leave else "clear", self.desc, self.n, self.total))


def test_build_bars_are_honest_under_build_repeats(tiny, monkeypatch):
    """Each build's insert bar closes full the moment its inserts are done (not after the sweeps), the query bar
    counts every query step and is left on screen only when full, and one bar is drawn at a time."""
    FakeBar.log = []
    monkeypatch.setattr(cli, "_bar", FakeBar)
    result = invoke(*build_args(tiny, "faiss", "results-honest"))
    assert result.exit_code == 0, result.output
    left = [(desc.split()[0], desc.split()[-1], n, total) for event, desc, n, total in FakeBar.log if event == "close"]
    inserts = [bar for bar in left if bar[0] == "insert"]
    assert inserts == [("insert", "1/2", 300, 300), ("insert", "2/2", 300, 300)]
    assert left[-1][0] == "queries" and left[-1][2] == left[-1][3] > 0  # the query steps, all done
    assert len(left) == 3, "a bar left on screen that was not finished"
    opened = 0
    for event, *_ in FakeBar.log:
        opened += {"open": 1, "close": -1, "clear": -1}.get(event, 0)
        assert opened in (0, 1), "two bars open at once"
    shown = [n for event, desc, n, _ in FakeBar.log if event == "show" and desc.startswith("insert")]
    assert shown == [100, 200, 300, 100, 200, 300]
    for i, (event, desc, *_) in enumerate(FakeBar.log):  # an insert bar is full before anything else shows
        if event == "open" and desc.startswith("insert"):
            following = FakeBar.log[i + 1 : i + 5]
            assert [e for e, *_ in following] == ["show", "show", "show", "close"] and following[-1][2] == 300
    queries = [n for event, desc, n, _ in FakeBar.log if event == "show" and desc.startswith("queries")]
    assert queries == sorted(queries) and queries[-1] == left[-1][3]


def test_build_bars_are_silent_when_stderr_is_not_a_terminal(tiny):
    result = invoke(*build_args(tiny, "numpy", "results-quiet"))
    assert result.exit_code == 0, result.output
    assert "written" in result.stdout
    assert "\r" not in result.stderr and "%|" not in result.stderr and "vec/s" not in result.stderr


def test_bars_draw_only_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = cli._bar(10, "work")
        bar.update(10)
        bar.close()
        assert ("work" in stream.getvalue()) is drawn


def test_step_bar_follows_the_reports_and_closes_at_the_end(monkeypatch):
    FakeBar.log = []
    monkeypatch.setattr(cli, "_bar", FakeBar)
    steps = cli._StepBar("codecs")
    for done in range(4):
        steps(f"step {done}", done, 3)
    assert FakeBar.log[0] == ("open", "codecs", 0, 3) and FakeBar.log[-1] == ("close", "codecs", 3, 3)
    steps.close()  # closing twice is harmless
    assert sum(event == "close" for event, *_ in FakeBar.log) == 1


def test_quant_sweep_reports_every_codec_step_in_order(tiny, tmp_path):
    from ruvector_lab.bench.hdf5 import read_hdf5

    ds = read_hdf5(tiny / "datasets" / "tiny-300-8.hdf5", require_groundtruth=True)
    for rerun in (False, True):  # the second sweep finds both codecs done
        calls: list[tuple[str, int, int]] = []
        quant.run_quant_sweep(ds, ["scalar", "binary"], tmp_path, factors=(1, 4), n_queries=20,
                              progress=lambda s, d, t, calls=calls: calls.append((s, d, t)))
        done = [d for _, d, _ in calls]
        assert done == sorted(done) and done[-1] == 2 * quant.CODEC_STEPS and {t for *_, t in calls} == {6}
        assert calls[0][0] == ("scalar: already done" if rerun else "scalar: train")


def test_adr_backend_cases_report_their_steps(tiny):
    from ruvector_lab.bench.hdf5 import read_hdf5

    ds = read_hdf5(tiny / "datasets" / "tiny-300-8.hdf5", require_groundtruth=True)
    calls: list[tuple[str, int, int]] = []
    small = adr.AdrSettings(search_iterations=10, op_iterations=10, n_patterns=30, m=8, ef_construction=20)
    adr.run_backend(ds, "numpy", small, progress=lambda *c: calls.append(c))
    n = len(adr.BACKEND_STEPS)
    assert calls == [(s, i, n) for i, s in enumerate(adr.BACKEND_STEPS)] + [("done", n, n)]


# --------------------------------------------------------------------------- the learning modules' command lines
@pytest.mark.parametrize("module", ["experiment", "benchmark"])
def test_learning_commands_describe_options_and_defaults(module, capsys):
    mod = importlib.import_module(f"ruvector_lab.learning.{module}")
    with pytest.raises(SystemExit) as stop:
        mod.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert f"python -m ruvector_lab.learning.{module}" in text and "MISSED" in text
    assert "(default: 384)" in text and "default: None" not in text
    assert all(action.help for action in mod._parser()._actions), "an option without a description"


# ------------------------------------------------------------------------------------------ a pattern match shown
def test_pattern_match_prints_without_its_whole_embedding():
    from ruvector_lab.learning import PatternSet, create_pattern

    rng = np.random.default_rng(0)
    patterns = PatternSet([create_pattern(rng.standard_normal(384), {"word": f"w{i}"}, id=f"p{i}") for i in range(3)])
    match = patterns.match(rng.standard_normal(384), threshold=-1.0, k=1)[0]
    shown = repr(match)
    assert len(shown) < 250, shown
    assert f"id={match.pattern.id!r}" in shown and f"{match.similarity:.4f}" in shown
    assert repr(match.pattern.metadata) in shown and "(384,)" in shown and "float32" in shown
    assert f"{float(match.pattern.embedding[0]):.4f}" in shown
