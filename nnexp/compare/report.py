"""One self-contained HTML file comparing runs: a sortable table and interactive charts.

The page is the Jinja2 template ``templates/report.html`` (autoescaped: a run
name like ``<script>`` shows as text); this module computes what it shows.
The charts are the figures of ``charts.py``, drawn by plotly.js, the same as
the dashboard's (``nnexp ui``): hover for values, zoom, click a legend entry
to hide a series. The file needs no server and no network: plotly.js (the
copy bundled with the ``plotly`` package), the figures (as JSON), the CSS
and the page's JavaScript are inline, so it can be opened from disk or
mailed. A Content-Security-Policy in the page forbids loading anything else,
so a stray external reference fails loudly instead of leaking.

The table shows each value through `format_cell` (97.12%, 0.001, -) but sorts
on the raw value, kept in the cell's ``data-sort`` attribute: numbers
numerically, text lexicographically, missing values (no attribute) always last.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from .. import __version__
from ..atomic import atomic_write_text
from ..timestamps import timestamp
from ..values import is_missing, is_number, plain
from .charts import plotly_js_path
from .fmt import format_cell

# Nothing may be fetched: images only from data: URIs, style and script only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("nnexp.compare", "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def write_report(path, title: str, table: pd.DataFrame, charts: list[dict], notes: list[str] = ()) -> Path:
    """Write the comparison as one self-contained HTML5 file; returns its path.

    Args:
        path: the .html file to write (replaced atomically; its folder is created).
        title: page title and heading.
        table: one row per run or group; every column is shown, the index is not.
        charts: ``{"id", "title", "figure"}`` dicts (``charts.comparison_charts``), drawn in this order.
        notes: lines shown under the title (command line, store, counts, ...).

    Raises:
        ValueError: the table is not a DataFrame, or a chart has no figure.
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    for chart in charts:
        if not isinstance(chart, dict) or not isinstance(chart.get("figure"), dict) or "title" not in chart:
            raise ValueError(f"a chart must be a dict with a title and a figure, got {chart!r:.80}")
    path = Path(path)
    columns, rows = _table(table)
    page = TEMPLATES.get_template("report.html").render(
        title=title, csp=CSP, notes=list(notes), columns=columns, rows=rows, charts=list(charts),
        plotly_js=inline_script(plotly_js_path().read_text(encoding="utf-8")),
        charts_js=inline_script(TEMPLATES.loader.get_source(TEMPLATES, "charts.js")[0]),
        generated=timestamp(), version=__version__)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path


def inline_script(code: str):
    """JavaScript to put between <script> tags as it is: a '</script' inside it
    (in a string) would end the element early, so its '/' is escaped."""
    return Markup(re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE))


def _table(table: pd.DataFrame) -> tuple[list[dict], list[list[dict]]]:
    """The columns ({name, numeric}) and the rows' cells ({text, sort, numeric}; sort None: missing)."""
    names = [str(c) for c in table.columns]
    raw = [[_plain(v) for v in table.iloc[:, j].tolist()] for j in range(table.shape[1])]
    numeric = [_numeric_column(values) for values in raw]
    columns = [{"name": name, "numeric": num} for name, num in zip(names, numeric)]
    rows = [[{"text": format_cell(name, values[i]), "numeric": num,
              "sort": None if is_missing(values[i]) else _sort_key(values[i])}
             for name, values, num in zip(names, raw, numeric)]
            for i in range(len(table))]
    return columns, rows


def _plain(value):
    """NumPy and pandas scalars as plain Python values (format_cell expects those)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return plain(value)


def _numeric_column(values: list) -> bool:
    """Sort a column numerically when every present value is a number (and one is present)."""
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(is_number(v) for v in present)


def _sort_key(value) -> str:
    """The raw value as data-sort text: numbers in a form JavaScript's Number() reads back."""
    if is_number(value):
        number = float(value)
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return str(value) if isinstance(value, int) else repr(number)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
