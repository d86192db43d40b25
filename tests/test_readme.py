"""The README's Python snippets run as written.

Every fenced block opened with ```python in README.md is a test, run in the order it appears and all in one
namespace, the way a reader pastes them into one session: a later block may use what an earlier one defined (``np``,
``rl``), and nothing else is defined for them. Each runs in a scratch working directory, so a snippet that writes a
file leaves nothing behind.

Opting a block out takes an explicit marker, a first line ``# readme-test: skip (<reason>)``; the reason is shown
as the skip reason. No block uses it today: the snippets need only what ``make setup`` provides (the model files of
``make setup-models`` included), so a failure here means the README and the code disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: a fenced block: ```python on its own line, up to the closing ``` (indented fences are not blocks)
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
#: the marker that opts a block out, on its first line
SKIP = re.compile(r"^# readme-test: skip \((?P<reason>[^)]+)\)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, source)`` of every ```python block of ``text``, in order."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def namespace() -> dict[str, Any]:
    """The one session the blocks share."""
    return {"__name__": "readme"}


def test_the_readme_has_python_snippets():
    assert len(BLOCKS) >= 3, "README.md lost its ```python blocks (or the fence pattern no longer finds them)"


def test_block_extraction_and_the_skip_marker():
    text = "intro\n```python\nx = 1\n```\n\n    ```python\n    indented = 1\n    ```\n```sh\nls\n```\n" \
           "```python\n# readme-test: skip (needs a GPU)\ny = 2\n```\n"
    blocks = python_blocks(text)
    assert [src for _, src in blocks] == ["x = 1\n", "# readme-test: skip (needs a GPU)\ny = 2\n"]
    assert [line for line, _ in blocks] == [2, 12]
    assert SKIP.match(blocks[1][1])["reason"] == "needs a GPU" and not SKIP.match(blocks[0][1])


@pytest.mark.parametrize(("line", "source"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line: int, source: str, namespace: dict[str, Any], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    marker = SKIP.match(source)
    if marker:
        pytest.skip(f"README.md:{line}: {marker['reason']}")
    monkeypatch.chdir(tmp_path)
    # compiled with the README's line numbers, so a traceback points at the README line that failed
    code = compile("\n" * line + source, str(README), "exec")
    exec(code, namespace)
