"""docs/math.md stays true to the code: its links lead to existing files and names,
and the `nnexp gradcheck` output it shows is what the command prints."""

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "math.md"
TEXT = DOC.read_text(encoding="utf-8")

#: [text](target), targets without spaces (the doc's links are all of this form)
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
#: link text naming Python: `Name`, `Class.method`
PY_NAME = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)`")
#: the reference modules every equation of the doc belongs to
REFERENCE_MODULES = ["layers", "activations", "losses", "conv", "pooling", "batchnorm", "model",
                     "init", "optim", "schedules", "gradcheck"]

LINKS = LINK.findall(TEXT)
FILE_LINKS = sorted({(text, target) for text, target in LINKS if not target.startswith(("#", "http:", "https:"))})


def module_name(path: Path) -> str:
    """nnexp/nn/layers.py -> nnexp.nn.layers, nnexp/nn/__init__.py -> nnexp.nn."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_the_doc_links_the_code():
    linked = {module_name((DOC.parent / t).resolve()) for _, t in FILE_LINKS if t.endswith(".py")}
    missing = [m for m in REFERENCE_MODULES if f"nnexp.nn.{m}" not in linked]
    assert not missing, f"docs/math.md links nothing in nnexp/nn/{missing}"


@pytest.mark.parametrize("text,target", FILE_LINKS, ids=[f"{t}->{g}" for t, g in FILE_LINKS])
def test_link_leads_to_an_existing_file_and_name(text, target):
    path = (DOC.parent / target.split("#")[0]).resolve()
    assert path.is_file(), f"[{text}]({target}): no file {path}"
    named = PY_NAME.fullmatch(text)
    if path.suffix != ".py" or not named:
        return
    obj = importlib.import_module(module_name(path))
    for attr in named.group(1).split("."):
        assert hasattr(obj, attr), f"[{text}]({target}): {module_name(path)} has no {named.group(1)}"
        obj = getattr(obj, attr)


def test_section_links_lead_to_headings():
    slugs = {github_slug(h) for h in re.findall(r"^#{1,6} (.+)$", TEXT, flags=re.MULTILINE)}
    anchors = [target[1:] for _, target in LINKS if target.startswith("#")]
    assert anchors, "the table of contents is gone"
    assert sorted(set(anchors) - slugs) == []


def shown_gradcheck_output() -> tuple[list[str], list[str]]:
    """(the nnexp gradcheck arguments, the output lines) of the doc's marked example."""
    found = re.search(r"<!-- gradcheck-output: (.+?) -->\n```text\n(.*?)```", TEXT, flags=re.DOTALL)
    assert found, "docs/math.md lost its marked gradcheck example"
    return found.group(1).split(), found.group(2).strip().splitlines()


def test_the_gradcheck_example_is_what_the_command_prints(nnexp, monkeypatch):
    args, shown = shown_gradcheck_output()
    monkeypatch.chdir(REPO)
    code, out, err = nnexp("gradcheck", *args)
    assert code == 0, err
    printed = out.strip().splitlines()
    assert len(printed) == len(shown) - 1, "the table has a different number of rows"

    def columns(line):   # every column but the error's value, which moves with float rounding
        cells = re.split(r"\s{2,}", line.strip())
        value = cells[5]
        cells[5] = value if value == "rel_error" or value.startswith("0 (") else float(value) < 1e-6
        return cells

    assert [columns(line) for line in printed] == [columns(line) for line in shown[:-1]]
    assert err.strip() == shown[-1]
