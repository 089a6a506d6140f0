"""Tests for nnexp.compare.report: one self-contained HTML file, checked as text and in headless Chromium."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from test_compare_plots import ACC, LAYERS, LR, SEED, SMALL, synthetic_runs

from nnexp.compare.charts import comparison_charts
from nnexp.compare.report import write_report

HOSTILE = "<script>alert(1)</script>"
HOSTILE_LAYERS = "<img src=x onerror=alert(2)> & dense(10)"  # a param value drawn in the charts' legends
COLUMNS = ["id", "name", "status", LR, LAYERS, SEED, ACC, "metric.val_loss"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(report path, table, charts): a sweep over a decade-spanning lr x 2 layer stacks x 3 seeds."""
    folder = tmp_path_factory.mktemp("report")
    runs, curves = synthetic_runs({LR: [1e-4, 1e-3, 1e-2], LAYERS: [SMALL, HOSTILE_LAYERS]})
    charts = comparison_charts(runs, [LR, LAYERS], ACC, "maximize", sweep=True, curves=curves)
    table = runs[COLUMNS].copy()
    table.loc[0, "name"] = HOSTILE
    table.loc[[3, 7], ACC] = np.nan  # two runs without a value: sorted last
    path = write_report(folder / "report.html", "Sweep <lr & layers>", table, charts,
                        notes=["nnexp compare sweep=s1 --report report.html", f"store: {folder} & co",
                               f"{len(table)} runs"])
    return path, table, charts


def without_scripts(text: str) -> str:
    """The page's markup with every script element's content left out (plotly.js names URLs in its code)."""
    return SCRIPT.sub("<script></script>", text)


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


def test_self_contained_no_external_urls(html_text):
    markup = without_scripts(html_text)
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", markup)
    assert links and all(link.startswith("data:") for link in links)
    assert "http:" not in markup and "https:" not in markup
    assert "<link rel=\"stylesheet\"" not in html_text and "<script src" not in html_text


def test_plotly_and_the_charts_are_inline(made, html_text):
    _, _, charts = made
    assert "plotly.js v" in html_text  # the bundled library's banner: one inline copy
    assert html_text.count("plotly.js v") == 1
    embedded = re.search(r'<script type="application/json" id="nnexp-charts">(.*?)</script>', html_text, re.DOTALL)
    assert json.loads(embedded.group(1)) == json.loads(json.dumps(charts))
    assert [c["id"] for c in charts][:2] == ["curves", "metric-vs-optimizer.lr"]
    assert {"heatmap", "best-so-far", "importance"} <= {c["id"] for c in charts}


def test_run_values_are_escaped(html_text):
    assert HOSTILE not in html_text and "<img" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "<title>Sweep &lt;lr &amp; layers&gt;</title>" in html_text
    assert "&amp; co" in html_text
    # plotly.js, its drawing code, the code that draws the charts and the table's sorting code; the figures as data
    assert html_text.count("<script>") == 4 and html_text.count('<script type="application/json"') == 1


def test_cells_show_formatted_values_and_sort_on_raw_ones(made, html_text):
    _, table, _ = made
    value = float(table.loc[1, ACC])
    assert f'data-sort="{value!r}">{value:.2%}</td>' in html_text
    assert '<td class="missing num">-</td>' in html_text  # a missing metric: no data-sort


def test_rewriting_is_atomic_and_keeps_the_old_file_on_error(tmp_path, made):
    _, table, charts = made
    path = write_report(tmp_path / "r.html", "first", table, charts[:1])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="a chart must be"):
        write_report(path, "second", table, [{"title": "no figure"}])
    assert path.read_bytes() == before
    write_report(path, "third", table.iloc[:2], [])
    assert "<title>third</title>" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left behind


def test_a_script_end_tag_inside_inlined_code_cannot_end_the_element():
    from nnexp.compare.report import inline_script

    assert str(inline_script('var s = "</script><b>";')) == 'var s = "<\\/script><b>";'


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
def page(chromium, made):
    page = chromium.open(made[0].as_uri())
    yield page
    page.close()


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


def test_every_chart_is_drawn(page, made):
    _, _, charts = made
    drawn = page.evaluate("""Array.from(document.querySelectorAll('[data-chart]'), div => ({
        title: div.getAttribute('aria-label'), svg: div.querySelectorAll('svg.main-svg').length,
        traces: (div._fullData || []).length, width: div.getBoundingClientRect().width,
        points: div.querySelectorAll('.scatterlayer .point, .barlayer .point, .heatmaplayer image').length}))""")
    assert [d["title"] for d in drawn] == [c["title"] for c in charts]
    assert all(d["svg"] >= 1 and d["traces"] >= 1 and d["width"] > 200 and d["points"] >= 1 for d in drawn), drawn


def test_a_legend_click_hides_a_series_and_hover_shows_values(page):
    """The charts are interactive: clicking a legend entry hides its series, hovering a point labels it."""
    curves = "document.querySelector('[data-chart=\"0\"]')"
    hidden = f"{curves}._fullData.filter(t => t.visible === 'legendonly').length"
    assert page.evaluate(hidden) == 0
    page.click(*page.center_of("[data-chart='0'] .legend .traces"))
    page.evaluate("new Promise(r => setTimeout(r, 800))")  # plotly waits to tell a click from a double-click
    assert page.evaluate(hidden) >= 1
    page.move_mouse(*page.center_of("[data-chart='1'] .scatterlayer .trace:first-child .point"))
    page.evaluate("new Promise(r => setTimeout(r, 300))")
    assert "n=3" in page.evaluate("document.querySelector('[data-chart=\"1\"] .hoverlayer').textContent")


def test_hostile_values_are_text_not_markup(page):
    assert page.evaluate("document.querySelectorAll('script:not([type])').length") == 4
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    names = page.evaluate(
        "Array.from(document.querySelectorAll('#runs-table tbody tr'), tr => tr.cells[1].textContent)")
    assert HOSTILE in names
    legend = page.evaluate("Array.from(document.querySelectorAll('.legendtext'), t => t.textContent).join(' ')")
    assert "<img src=x onerror=alert(2)> & dense(10)" in legend
    assert [m for m in page.console() if m["kind"] == "dialog"] == []


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
