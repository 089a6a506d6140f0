"""The error messages the README and docs/ show are what `nnexp` prints.

Every `$ nnexp ...` line in a fenced block of README.md or docs/*.md whose
output starts with `error:` is run (in the repository's root, as a reader
would) and must exit 2, print exactly the lines shown, and write nothing.
"""

import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def shown_errors() -> list[tuple[str, str, list[str]]]:
    """(page, command line, the lines shown after it) for every error example."""
    examples = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text(encoding="utf-8")):
            command, output = None, []
            for line in [*block.splitlines(), "$ "]:
                if line.startswith("$ "):
                    if command and output and output[0].startswith("error:"):
                        examples.append((page.relative_to(REPO).as_posix(), command, output))
                    command, output = line[2:].strip(), []
                elif command is not None:
                    output.append(line)
    return examples


EXAMPLES = shown_errors()


def test_the_docs_show_error_examples():
    pages = {page for page, _, _ in EXAMPLES}
    assert {"README.md", "docs/configuration.md", "docs/gpu.md"} <= pages, pages


@pytest.mark.parametrize("page,command,shown", EXAMPLES, ids=[f"{p}: {c}" for p, c, _ in EXAMPLES])
def test_a_shown_error_is_what_nnexp_prints(nnexp, page, command, shown, monkeypatch, tmp_path):
    words = shlex.split(command)
    assert words[0] == "nnexp"
    monkeypatch.chdir(REPO)
    monkeypatch.setitem(sys.modules, "cupy", None)   # the examples are shown from a machine without CuPy
    before = sorted(p.name for p in (REPO / "runs").iterdir()) if (REPO / "runs").is_dir() else []
    code, out, err = nnexp(*words[1:])
    assert code == 2
    assert err.splitlines() == shown, f"{page} shows another message for: {command}"
    after = sorted(p.name for p in (REPO / "runs").iterdir()) if (REPO / "runs").is_dir() else []
    assert after == before
