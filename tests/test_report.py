"""Tests for nnexp.compare.report: one self-contained HTML file, checked as text and in headless Chromium."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from browser import INSTALL_HINT, Browser, find_browser
from test_compare_plots import ACC, LAYERS, LR, SEED, SMALL, BIG, synthetic_runs

from nnexp.compare.plots import comparison_plots
from nnexp.compare.report import write_report

HOSTILE = "<script>alert(1)</script>"
COLUMNS = ["id", "name", "status", LR, LAYERS, SEED, ACC, "metric.val_loss"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(report path, table, plots): a sweep over a decade-spanning lr x 2 layer stacks x 3 seeds."""
    folder = tmp_path_factory.mktemp("report")
    runs, curves = synthetic_runs({LR: [1e-4, 1e-3, 1e-2], LAYERS: [SMALL, BIG]})
    plots = comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", folder / "plots", sweep=True)
    table = runs[COLUMNS].copy()
    table.loc[0, "name"] = HOSTILE
    table.loc[[3, 7], ACC] = np.nan  # two runs without a value: sorted last
    path = write_report(folder / "report.html", "Sweep <lr & layers>", table, plots,
                        notes=["nnexp compare sweep=s1 --report report.html", f"store: {folder} & co",
                               f"{len(table)} runs"])
    return path, table, plots


@pytest.fixture(scope="module")
def html_text(made):
    return made[0].read_text(encoding="utf-8")


# ----------------------------------------------------------------- the file itself


def test_is_html5_with_doctype_charset_and_lang(html_text):
    assert html_text.startswith("<!DOCTYPE html>\n")
    assert '<html lang="en">' in html_text
    assert '<meta charset="utf-8">' in html_text
    assert re.search(r"Generated \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4} by nnexp", html_text)


class _TagChecker(HTMLParser):
    """Records tags left open or closed out of order (void elements excepted)."""

    def __init__(self):
        super().__init__()
        self.stack, self.problems = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_tags_are_balanced(html_text):
    checker = _TagChecker()
    checker.feed(html_text)
    checker.close()
    assert checker.problems == [] and checker.stack == []


def test_self_contained_no_external_urls(made, html_text):
    _, _, plots = made
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html_text)
    assert links and all(link.startswith("data:") for link in links)
    assert "http:" not in html_text and "https:" not in html_text
    assert "<link rel=\"stylesheet\"" not in html_text and "<script src" not in html_text


def test_plots_are_embedded_byte_for_byte(made, html_text):
    _, _, plots = made
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    assert [base64.b64decode(data) for data in embedded] == [path.read_bytes() for _, path in plots]


def test_run_values_are_escaped(html_text):
    assert HOSTILE not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "<title>Sweep &lt;lr &amp; layers&gt;</title>" in html_text
    assert "&amp; co" in html_text
    assert html_text.count("<script>") == 1  # only the page's own sorting code


def test_cells_show_formatted_values_and_sort_on_raw_ones(made, html_text):
    _, table, _ = made
    value = float(table.loc[1, ACC])
    assert f'data-sort="{value!r}">{value:.2%}</td>' in html_text
    assert '<td class="missing num">-</td>' in html_text  # a missing metric: no data-sort


def test_rewriting_is_atomic_and_keeps_the_old_file_on_error(tmp_path, made):
    _, table, plots = made
    path = write_report(tmp_path / "r.html", "first", table, plots[:1])
    before = path.read_bytes()
    with pytest.raises(FileNotFoundError):
        write_report(path, "second", table, [("gone", tmp_path / "missing.png")])
    assert path.read_bytes() == before
    write_report(path, "third", table.iloc[:2], [])
    assert "<title>third</title>" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left behind


def test_not_a_png_is_refused(tmp_path):
    fake = tmp_path / "plot.png"
    fake.write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG"):
        write_report(tmp_path / "r.html", "t", pd.DataFrame({"a": [1]}), [("fake", fake)])


def test_odd_cell_values(tmp_path):
    table = pd.DataFrame({"n": [3, None, 1], "tags": [["a", "b"], [], None], "ok": [True, False, None],
                          "x": [np.inf, -np.inf, np.float32(0.5)], "when": pd.to_datetime(["2026-01-01"] * 3)})
    text = write_report(tmp_path / "r.html", "odd", table, []).read_text()
    assert 'data-sort="Infinity">inf</td>' in text and 'data-sort="-Infinity">-inf</td>' in text
    assert 'data-sort="a,b">a,b</td>' in text
    assert text.count('<td class="missing') == 3  # n, tags and ok of one row each
    assert 'data-type="number"' in text and 'data-type="text"' in text


# ----------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def page(made):
    if find_browser() is None:
        pytest.skip(f"no headless browser for the report test: {INSTALL_HINT}")
    with Browser(timeout=120) as browser:  # a deadline for a loaded machine
        page = browser.open(made[0].as_uri())
        yield page


def column_index(page, name: str) -> int:
    headers = page.evaluate("Array.from(document.querySelectorAll('#runs-table thead th'), th => th.textContent)")
    return [h.rstrip("\u25b2\u25bc") for h in headers].index(name)


def sort_values(page, column: int) -> list:
    """The data-sort values of a column top to bottom (None where missing)."""
    return page.evaluate(f"""Array.from(document.querySelectorAll('#runs-table tbody tr'),
        tr => tr.cells[{column}].hasAttribute('data-sort') ? tr.cells[{column}].getAttribute('data-sort') : null)""")


def test_opens_without_console_errors(page):
    assert page.errors() == []
    assert [m for m in page.console() if m["level"] == "warning"] == []


def test_table_has_every_row_and_column(page, made):
    _, table, _ = made
    assert page.evaluate("document.querySelectorAll('#runs-table thead th').length") == len(table.columns)
    assert page.evaluate("document.querySelectorAll('#runs-table tbody tr').length") == len(table)
    cells = page.evaluate("Array.from(document.querySelectorAll('#runs-table tbody tr'), tr => tr.cells.length)")
    assert set(cells) == {len(table.columns)}


def test_every_plot_is_shown(page, made):
    _, _, plots = made
    images = page.evaluate("""Array.from(document.images, img => ({
        ok: img.complete && img.naturalWidth > 0, alt: img.alt, shown: img.getBoundingClientRect().width > 0}))""")
    assert len(images) == len(plots)
    assert all(image["ok"] and image["shown"] for image in images)
    assert [image["alt"] for image in images] == [title for title, _ in plots]


def test_hostile_name_is_text_not_markup(page):
    assert page.evaluate("document.scripts.length") == 1
    names = page.evaluate(
        "Array.from(document.querySelectorAll('#runs-table tbody tr'), tr => tr.cells[1].textContent)")
    assert HOSTILE in names


def test_clicking_a_numeric_header_sorts_ascending_then_descending_missing_last(page, made):
    _, table, _ = made
    column = column_index(page, ACC)
    click = f"document.querySelectorAll('#runs-table thead th')[{column}].click()"
    present = sorted(float(v) for v in table[ACC].dropna())

    page.evaluate(click)
    values = sort_values(page, column)
    assert [float(v) for v in values[:len(present)]] == present
    assert values[len(present):] == [None, None]
    assert page.evaluate(f"document.querySelectorAll('#runs-table thead th')[{column}].getAttribute('aria-sort')") \
        == "ascending"
    assert page.evaluate(f"document.querySelectorAll('#runs-table thead th .arrow')[{column}].textContent") == "\u25b2"

    page.evaluate(click)
    values = sort_values(page, column)
    assert [float(v) for v in values[:len(present)]] == present[::-1]
    assert values[len(present):] == [None, None]
    assert page.evaluate(f"document.querySelectorAll('#runs-table thead th .arrow')[{column}].textContent") == "\u25bc"


def test_text_columns_sort_lexicographically_and_other_arrows_clear(page, made):
    _, table, _ = made
    column = column_index(page, "name")
    page.evaluate(f"document.querySelectorAll('#runs-table thead th')[{column}].click()")
    assert sort_values(page, column) == sorted(table["name"].astype(str))
    arrows = page.evaluate("Array.from(document.querySelectorAll('#runs-table thead th .arrow'), a => a.textContent)")
    assert [a for a in arrows if a] == ["\u25b2"]
    assert page.errors() == []  # clicking threw nothing either


def test_nothing_but_the_file_and_data_uris_was_loaded(page, made):
    urls = page.requested_urls()
    assert urls[0] == made[0].as_uri()
    assert all(url.startswith(("file:", "data:")) for url in urls)


def test_browser_helper_times_out_instead_of_hanging(page):
    """Last in the module: a promise that never settles must cost a timeout, not the suite."""
    from browser import BrowserError, JavaScriptError

    with pytest.raises(JavaScriptError, match="ReferenceError"):
        page.evaluate("notDefinedAnywhere()")
    with pytest.raises(BrowserError, match="timed out"):
        page.evaluate("new Promise(() => {})", timeout=1)
