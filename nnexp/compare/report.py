"""One self-contained HTML file comparing runs: a sortable table and the plots.

The file needs no server and no network: the PNGs are embedded as base64
data URIs and the CSS and JavaScript are inline, so it can be opened from
disk or mailed. A Content-Security-Policy in the page forbids loading
anything else, so a stray external reference fails loudly instead of leaking.

The table shows each value through `format_cell` (97.12%, 0.001, -) but sorts
on the raw value, kept in the cell's ``data-sort`` attribute: numbers
numerically, text lexicographically, missing values (no attribute) always last.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..tracking.store import atomic_write_text
from .fmt import format_cell

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Nothing may be fetched: images only from data: URIs, style and script only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
:root { color-scheme: light; --line: #d6d9de; --head: #f3f4f6; --accent: #2563eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1500px; }
h1 { font-size: 1.5rem; margin: 0 0 .4rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; }
.meta { color: #59636e; margin: 0; padding-left: 1.2rem; }
.meta li { white-space: pre-wrap; overflow-wrap: anywhere; }
.table-wrap { overflow: auto; max-height: 75vh; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; width: max-content; min-width: 100%; }
th, td { padding: .3rem .65rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td { max-width: 28rem; overflow-wrap: anywhere; }
td.num { text-align: right; white-space: nowrap; }
thead th { position: sticky; top: 0; background: var(--head); cursor: pointer; user-select: none;
           white-space: nowrap; z-index: 1; }
thead th:hover, thead th:focus { background: #e5e7eb; outline: none; }
thead th .arrow { display: inline-block; width: 1em; color: var(--accent); }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef4ff; }
td.missing { color: #9aa1a9; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 1.25rem; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .6rem; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { text-align: center; color: #59636e; margin-top: .3rem; }
footer { margin-top: 2.5rem; color: #59636e; font-size: .85rem; }
"""

# Sorting: rows are re-appended in order; a click on the sorted column flips the
# direction. Missing cells (no data-sort) go last either way; ties keep the
# original order, so repeated sorts are stable.
SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("runs-table");
  if (!table || !table.tHead || !table.tBodies.length) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  Array.prototype.forEach.call(body.rows, function (row, i) { row.setAttribute("data-index", i); });
  var current = -1, direction = 1;

  function keyOf(row, column, numeric) {
    var cell = row.cells[column];
    var index = Number(row.getAttribute("data-index"));
    if (!cell || !cell.hasAttribute("data-sort")) { return { missing: true, index: index }; }
    var raw = cell.getAttribute("data-sort");
    if (numeric) {
      var value = Number(raw);
      return isNaN(value) ? { missing: true, index: index } : { missing: false, value: value, index: index };
    }
    return { missing: false, value: raw, index: index };
  }

  function sortBy(column) {
    direction = column === current ? -direction : 1;
    current = column;
    var numeric = headers[column].getAttribute("data-type") === "number";
    var keyed = Array.prototype.map.call(body.rows, function (row) {
      return { row: row, key: keyOf(row, column, numeric) };
    });
    keyed.sort(function (a, b) {
      var x = a.key, y = b.key;
      if (x.missing || y.missing) { return x.missing === y.missing ? x.index - y.index : (x.missing ? 1 : -1); }
      var order = x.value < y.value ? -1 : x.value > y.value ? 1 : 0;  // numbers or code-unit order
      return order * direction || x.index - y.index;
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (item) { fragment.appendChild(item.row); });
    body.appendChild(fragment);
    headers.forEach(function (th, i) {
      var arrow = th.querySelector(".arrow");
      var sorted = i === column;
      arrow.textContent = sorted ? (direction > 0 ? "\\u25B2" : "\\u25BC") : "";
      th.setAttribute("aria-sort", sorted ? (direction > 0 ? "ascending" : "descending") : "none");
    });
  }

  headers.forEach(function (th, i) {
    th.addEventListener("click", function () { sortBy(i); });
    th.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(i); }
    });
  });
})();
"""


def write_report(path, title: str, table: pd.DataFrame, plots: list[tuple[str, Path]],
                 notes: list[str] = ()) -> Path:
    """Write the comparison as one self-contained HTML5 file; returns its path.

    Args:
        path: the .html file to write (replaced atomically; its folder is created).
        title: page title and heading.
        table: one row per run or group; every column is shown, the index is not.
        plots: (caption, PNG path) pairs, embedded in this order.
        notes: lines shown under the title (command line, store, counts, ...).

    Raises:
        ValueError: a plot is not a PNG file.
        FileNotFoundError: a plot file does not exist.
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    path = Path(path)
    figures = [_figure_html(caption, Path(png)) for caption, png in plots]
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    esc = _escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="nnexp">',
        '<link rel="icon" href="data:,">',  # no favicon request
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{esc(title)}</h1>",
        f'<ul class="meta">{"".join(f"<li>{esc(note)}</li>" for note in notes)}</ul>' if notes else "",
        "</header>",
        "<main>",
        f"<h2>Runs ({len(table)} row{'s' if len(table) != 1 else ''})</h2>",
        '<p class="meta">Click a column header to sort; click again to reverse. Missing values stay last.</p>',
        _table_html(table),
        f"<h2>Plots ({len(figures)})</h2>" if figures else "",
        f'<div class="plots">{"".join(figures)}</div>' if figures else "",
        "</main>",
        f"<footer>Generated {esc(generated)} by nnexp {esc(__version__)}.</footer>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(part for part in parts if part) + "\n")
    return path


def _escape(value) -> str:
    """Text safe inside an element or a double- or single-quoted attribute."""
    return html.escape(str(value), quote=True)


def _figure_html(caption: str, png: Path) -> str:
    data = png.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"plot {png} is not a PNG file")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{_escape(caption)}" loading="eager">'
            f"<figcaption>{_escape(caption)}</figcaption></figure>")


def _table_html(table: pd.DataFrame) -> str:
    """The table with a data-sort attribute per cell and a data-type per column."""
    columns = [str(c) for c in table.columns]
    raw = [table.iloc[:, j].tolist() for j in range(table.shape[1])]
    numeric = [_numeric_column(values) for values in raw]
    head = "".join(
        f'<th scope="col" tabindex="0" aria-sort="none" data-type="{"number" if num else "text"}">'
        f'{_escape(name)}<span class="arrow"></span></th>'
        for name, num in zip(columns, numeric))
    rows = []
    for i in range(len(table)):
        cells = []
        for name, values, num in zip(columns, raw, numeric):
            value = _plain(values[i])
            shown = _escape(format_cell(name, value))
            if _is_missing(value):
                cells.append(f'<td class="{"missing num" if num else "missing"}">{shown}</td>')
            else:
                attributes = ' class="num"' if num else ""
                cells.append(f'<td{attributes} data-sort="{_escape(_sort_key(value))}">{shown}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table id="runs-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>\n{chr(10).join(rows)}\n</tbody></table></div>')


def _plain(value):
    """NumPy and pandas scalars as plain Python values (format_cell expects those)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, set, np.ndarray, str)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _numeric_column(values: list) -> bool:
    """Sort a column numerically when every present value is a number (and one is present)."""
    present = [_plain(v) for v in values if not _is_missing(_plain(v))]
    return bool(present) and all(_is_number(v) for v in present)


def _sort_key(value) -> str:
    """The raw value as data-sort text: numbers in a form JavaScript's Number() reads back."""
    if _is_number(value):
        number = float(value)
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return str(value) if isinstance(value, int) else repr(number)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
