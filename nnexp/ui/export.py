"""``nnexp ui --export DIR``: the dashboard's pages of chosen runs as static files, for any static host or file://.

The pages are the live dashboard's (its templates and ``static/app.js``), and
every answer they read is the live dashboard's own (``Dashboard.handle`` on
the URL the page asks for), written as a small script in ``data/`` that app.js
loads with a <script> tag: browsers refuse fetch() of file:// URLs. The
dashboard holds only the chosen runs (``StoreSnapshot.hold``), so listings,
tags, sweeps and comparisons are of those runs. The runs table's sorting,
filtering and paging are done in the page, from the list of every chosen run.
The run files a page links are copied only when the live server serves them
(``folders.py``'s rules: listed types, nothing a link leads out of the folder
to, nothing too large), and plotly.js and the scripts are written once, in
``assets/``.

Layout: index.html (runs), sweeps.html, run-<id>.html, sweep-<id>.html,
compare.html (?sweep=<id>), assets/, data/, files/<id>/<path>, and
nnexp-export.json, which marks the folder as an export: only a folder that
is empty, missing or an export is written to, and an export is replaced
whole (written beside it, then swapped in).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from .. import __version__
from ..compare.select import SORT_ALIASES, RunQuery, select_runs
from ..errors import ConfigError, NnexpError
from ..tracking.sweeps import find_sweep
from .api import MAX_LIMIT, valid_name
from .app import Dashboard

MARKER = "nnexp-export.json"
GENERATOR = "nnexp ui --export"
# No server sends the live dashboard's headers: the same rules, in the page (frame-ancestors has no effect there).
EXPORT_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "base-uri 'none'; form-action 'none'")
ASSETS = ("app.js", "style.css", "charts.js", "plotly.min.js")
COMPARE_OPTIONS = [(agg, group) for agg in ("", "final", "best", "mean") for group in ("", "1", "0")]
PAGES = {"/": "index.html", "/sweeps": "sweeps.html"}  # the pages the templates link, as files
MAX_NAME = 240  # bytes of a file name; an answer whose name is longer is left out (its view says so)


def answer_name(url: str) -> str:
    """The file name (without .js) of the answer to ``url``, as app.js's answerName makes it."""
    parts = urlsplit(url)
    pairs = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if v != "")
    key = parts.path.removeprefix("/api/") + ("?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    return re.sub(r"[^A-Za-z0-9.-]", lambda m: f"_{ord(m[0]):02x}" if ord(m[0]) < 256 else f"_u{ord(m[0]):04x}", key)


def run_page(run_id: str) -> str:
    return f"run-{run_id}.html"


def sweep_page(sweep_id: str) -> str:
    return f"sweep-{sweep_id}.html"


def choose(store, where=None, sweeps=(), tags=()) -> tuple[list[dict], list[str]]:
    """The records of the runs to export (--where, --sweep, --tag as ``nnexp runs`` and ``compare``
    take them; every tag given), and the ids of the sweeps named."""
    chosen = select_runs(store, RunQuery(sweeps=tuple(sweeps), where=where, tags=tuple(tags)))
    return chosen.records, [find_sweep(store, ref)["id"] for ref in sweeps]


class Site:
    """Writes the pages of ``dashboard`` (holding the chosen runs) into the folder ``out``."""

    def __init__(self, dashboard: Dashboard, out: Path):
        self.dashboard = dashboard
        self.out = out
        self.files = 0
        self.bytes = 0
        self.left_out: list[str] = []  # answers whose file name would be too long
        self.runs = 0
        self.sweeps: list[str] = []

    def write(self, relative: str, body: bytes) -> None:
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        self.files += 1
        self.bytes += len(body)

    def get(self, url: str):
        return self.dashboard.handle("GET", url, {})

    def answer(self, url: str, body=None) -> dict | list | None:
        """Write the live answer to ``url`` (or ``body``, an answer made here) as data/<name>.js;
        the answer's body, or None when it is an error."""
        name = answer_name(url)
        if len(name.encode()) + 3 > MAX_NAME:
            self.left_out.append(url)
            return None
        if body is None:
            response = self.get(url)
            status, body = response.status, json.loads(response.body)
        else:
            status = 200
        # ensure_ascii: nothing in a value (U+2028, a quote, </script>) can end the script's string or line
        text = json.dumps({"status": status, "body": body}, ensure_ascii=True, separators=(",", ":"))
        self.write(f"data/{name}.js", f"(window.nnexpAnswers = window.nnexpAnswers || {{}})"
                                      f"[{json.dumps(name)}] = {text};\n".encode("ascii"))
        return body if status == 200 else None

    def page(self, relative: str, template: str, **context) -> None:
        static = self.dashboard.static
        html = self.dashboard.render(template, static=lambda name: f"assets/{name}?v={static.get(name)[1]}",
                                     href=PAGES.get, exported=True, csp=EXPORT_CSP, **context)
        self.write(relative, html.encode("utf-8"))

    def run_files(self, run_id: str, run: dict) -> None:
        """Copy the files the run's page links, each as the live server serves it (or not at all)."""
        for f in run.get("files", []):
            if f.get("too_large"):
                continue
            response = self.get(f["url"])
            if response.status == 200:  # a file the server refuses (a link out of the folder, ...) is not copied
                self.write("files/" + quote(run_id, safe="") + "/" + f["path"], response.body)


def build(dashboard: Dashboard, out: Path, sweeps: list[str]) -> Site:
    """Write the site of ``dashboard``'s runs, and of the sweeps ``sweeps`` and those its runs belong to."""
    site = Site(dashboard, out)
    records = dashboard.snapshot.records
    rows = []
    while True:  # the live API's pages, as many as it takes
        page = json.loads(site.get(f"/api/runs?sort=started&order=asc&limit={MAX_LIMIT}&offset={len(rows)}").body)
        rows += page["runs"]
        if not page["runs"] or len(rows) >= page["total"]:
            break
    site.answer("/api/runs", {"total": len(rows), "in_store": len(rows), "offset": 0, "limit": len(rows),
                              "sort": "started", "order": "asc", "runs": rows, "sort_fields": SORT_ALIASES})
    site.answer("/api/tags")
    site.page(PAGES["/"], "runs.html", title="Runs", page="runs")

    for record in records:
        run_id = record["id"]
        run = site.answer(f"/api/runs/{quote(run_id, safe='')}")
        site.answer(f"/api/runs/{quote(run_id, safe='')}/charts")
        site.run_files(run_id, run or {})
        site.page(run_page(run_id), "run.html", title=f"Run {run_id}", page="run", run_id=run_id)

    wanted = list(dict.fromkeys(sweeps + [r["summary"].get("sweep") for r in records
                                          if isinstance(r["summary"].get("sweep"), str)]))
    shown = []
    for sweep_id in (s for s in wanted if valid_name(s)):
        if site.answer(f"/api/sweeps/{sweep_id}") is None:
            continue
        shown.append(sweep_id)
        site.page(sweep_page(sweep_id), "sweep.html", title=f"Sweep {sweep_id}", page="sweep", sweep_id=sweep_id)
        for agg, group in COMPARE_OPTIONS:
            query = "&".join(f"{k}={v}" for k, v in (("sweep", sweep_id), ("agg", agg), ("group", group)) if v)
            site.answer(f"/api/compare?{query}")
    states = [s for s in json.loads(site.get("/api/sweeps").body) if s.get("id") in shown]
    site.answer("/api/sweeps", states)
    site.page(PAGES["/sweeps"], "sweeps.html", title="Sweeps", page="sweeps")
    site.page("compare.html", "compare.html", title="Compare runs", page="compare")

    for name in ASSETS:
        site.write(f"assets/{name}", dashboard.static.get(name)[0])
    site.runs, site.sweeps = len(records), shown
    site.write(MARKER, json.dumps({"generator": GENERATOR, "version": __version__, "store": str(dashboard.root),
                                   "runs": len(records), "sweeps": shown}, indent=2).encode() + b"\n")
    return site


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an export (its marker is a regular file that says so)."""
    marker = folder / MARKER
    try:
        if not marker.is_file() or marker.is_symlink():
            return False
        return json.loads(marker.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def check_target(out: Path) -> None:
    """Refuse (exit 2) a target that is not a folder, or a non-empty folder that is not an export."""
    if out.is_symlink():
        raise ConfigError(f"--export {out}: is a symbolic link; name the folder itself")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--export {out}: is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise ConfigError(f"--export {out}: the folder is not empty and holds no earlier export ({MARKER}); "
                          "name an empty or new folder")


def export(store, out, where=None, sweeps=(), tags=()) -> Site:
    """Write the site of the chosen runs into ``out``: a new folder, or one that replaces an earlier export."""
    out = Path(out)
    check_target(out)
    records, named = choose(store, where=where, sweeps=sweeps, tags=tags)
    if not records:
        raise NnexpError(f"nothing to export: no run in {store} matches")
    dashboard = Dashboard(store, loopback=False)
    dashboard.snapshot.hold(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".writing", dir=out.parent))
    try:
        site = build(dashboard, work, named)
        os.chmod(work, 0o755)  # mkdtemp's 0700 would hide the site from a web server
        if out.exists():
            old = work.with_suffix(".old")
            os.rename(out, old)
            try:
                os.rename(work, out)
            except OSError:
                os.rename(old, out)  # the earlier export stays as it was
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return site
