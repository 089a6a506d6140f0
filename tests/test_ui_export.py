"""nnexp ui --export: the dashboard's pages as static files, opened from file:// in a headless Chromium with
no server, over the dashboard's small store (tests/ui_store.py) and a store made to hurt its readers."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import hostile_store
import pytest
import ui_store
from test_ui import wait_for
from ui_store import HOSTILE, SWEEP_ID

from nnexp.ui.app import Dashboard
from nnexp.ui.export import MARKER, answer_name, export
from nnexp.ui.folders import FILE_TYPES


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "runs"
    return root, ui_store.build(root)


@pytest.fixture(scope="module")
def site(made, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    export(made[0], out)
    return out


def stored(site: Path, url: str):
    """The answer an export holds for ``url``: (status, body)."""
    text = (site / "data" / f"{answer_name(url)}.js").read_text()
    answer = json.loads(text[text.index("] = ") + 4:].rstrip().rstrip(";"))
    return answer["status"], answer["body"]


def every_file(folder: Path) -> list[Path]:
    return sorted(Path(d) / n for d, _, names in os.walk(folder) for n in names)


# ----------------------------------------------------------------- what is written


def test_an_export_holds_every_page_and_the_live_answers(site, made):
    root, ids = made
    runs = ids["sweep"] + [ids[k] for k in ("plain", "hostile", "running", "dead")]
    assert {p.name for p in site.glob("run-*.html")} == {f"run-{i}.html" for i in runs}
    assert (site / f"sweep-{SWEEP_ID}.html").is_file() and (site / "compare.html").is_file()
    live = Dashboard(root, loopback=False)
    live.snapshot.load()
    for url in (f"/api/runs/{ids['plain']}/charts", f"/api/sweeps/{SWEEP_ID}", f"/api/compare?sweep={SWEEP_ID}",
                f"/api/compare?sweep={SWEEP_ID}&agg=best&group=0", "/api/tags"):
        assert stored(site, url) == (200, json.loads(live.handle("GET", url, {}).body)), url
    status, listing = stored(site, "/api/runs")
    assert status == 200 and sorted(r["id"] for r in listing["runs"]) == sorted(runs)


def test_plotly_and_the_scripts_are_written_once_for_the_whole_site(site):
    names = [p.name for p in every_file(site)]
    assert {n: names.count(n) for n in ("plotly.min.js", "charts.js", "app.js", "style.css")} == \
        {"plotly.min.js": 1, "charts.js": 1, "app.js": 1, "style.css": 1}
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    page = (site / f"sweep-{SWEEP_ID}.html").read_text()
    assert 'src="assets/plotly.min.js?v=' in page and "Plotly.newPlot" not in page


def test_only_the_files_the_live_server_serves_are_copied(site, made):
    _, ids = made
    plain = site / "files" / ids["plain"]
    assert (plain / "plots" / "learning_curves.png").read_bytes() == ui_store.png()
    assert (plain / "summary.json").is_file() and (plain / "diagnostics.csv").is_file()
    # plots/escape.png links to /etc/passwd and up/ to the store's parent: neither is followed
    assert not (plain / "plots" / "escape.png").exists() and not (plain / "up").exists()
    copied = every_file(site / "files")
    assert all(p.suffix in FILE_TYPES and not p.is_symlink() and not p.name.startswith(".") for p in copied)
    assert not any(b"root:" in p.read_bytes() for p in copied)


def test_the_runs_chosen_are_those_of_where_sweep_and_tag(made, tmp_path, nnexp):
    root, ids = made
    for name, options, chosen in (("sweep", ["--sweep", SWEEP_ID], ids["sweep"]),
                                  ("tag", ["--tag", "baseline"], [ids["plain"]]),
                                  ("where", ["--where", "optimizer.lr == 0.01"], ids["sweep"][3:]),
                                  ("tags", ["--tag", "ok", "--tag", HOSTILE], [ids["hostile"]])):
        code, _, err = nnexp("ui", "--store", root, "--export", tmp_path / name, *options)
        assert code == 0, err
        out = tmp_path / name
        assert sorted(p.name for p in out.glob("run-*.html")) == sorted(f"run-{i}.html" for i in chosen), options
        assert sorted(r["id"] for r in stored(out, "/api/runs")[1]["runs"]) == sorted(chosen)
        assert f"{len(chosen)} run" in err and "open file://" in err
    assert stored(tmp_path / "tag", "/api/sweeps")[1] == [] and not list((tmp_path / "tag").glob("sweep-*"))
    trials = stored(tmp_path / "where", f"/api/sweeps/{SWEEP_ID}")[1]["trials"]
    assert [t["exists"] for t in trials] == [False] * 3 + [True] * 3 + [False]  # only the exported trials link


@pytest.mark.parametrize("options, message", [
    (["--where", "val_accuracy >"], "expected a value after '>'"),
    (["--where", "val_acuracy > 0.5"], "unknown field 'val_acuracy'"),
    (["--sweep", "nope"], "no sweep 'nope'"),
])
def test_a_bad_choice_is_one_line_and_writes_nothing(made, tmp_path, nnexp, options, message):
    code, _, err = nnexp("ui", "--store", made[0], "--export", tmp_path / "site", *options)
    assert code != 0 and message in err and "Traceback" not in err and not (tmp_path / "site").exists()
    assert list(tmp_path.iterdir()) == []


def test_where_without_export_is_a_usage_error(made, nnexp):
    code, _, err = nnexp("ui", "--store", made[0], "--where", "val_accuracy > 0.5")
    assert code == 2 and "give --export DIR too" in err


def test_a_folder_that_is_not_an_export_is_refused_and_left_as_it_was(made, tmp_path, nnexp):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    code, _, err = nnexp("ui", "--store", made[0], "--export", mine)
    assert code == 2 and f"--export {mine}: the folder is not empty and holds no earlier export" in err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "months of work"
    (tmp_path / "a-file").write_text("x")
    code, _, err = nnexp("ui", "--store", made[0], "--export", tmp_path / "a-file")
    assert code == 2 and "a-file' is a file" in err


def test_an_export_again_into_an_export_replaces_it_whole(made, tmp_path, nnexp):
    root, ids = made
    out = tmp_path / "site"
    assert nnexp("ui", "--store", root, "--export", out)[0] == 0
    assert (out / f"run-{ids['plain']}.html").is_file()
    code, _, err = nnexp("ui", "--store", root, "--export", out, "--sweep", SWEEP_ID)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("run-*.html")) == sorted(f"run-{i}.html" for i in ids["sweep"])
    assert not (out / "files" / ids["plain"]).exists()  # nothing of the earlier export is left
    assert json.loads((out / MARKER).read_text())["runs"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no folder it was written in is left beside it


# ----------------------------------------------------------------- in a real browser, from file://


def open_page(chromium, site: Path, name: str):
    page = chromium.open(site.resolve().as_uri() + "/" + name)
    wait_for(page, "window.nnexpReady")
    return page


def pick(page, control: str, value: str) -> None:
    """Choose ``value`` in the select ``control``, as a user would."""
    page.evaluate(f"(() => {{ const s = document.getElementById({json.dumps(control)}); s.value = {json.dumps(value)};"
                  "s.dispatchEvent(new Event('change')); })()")


def only_files(page) -> list[str]:
    """The page's requests that went anywhere but to files (file:// and data: URLs)."""
    return [u for u in page.requested_urls() if not (u.startswith("file://") or u.startswith("data:"))]


@pytest.fixture(scope="module")
def pages(chromium, site, made):
    _, ids = made
    names = {"runs": "index.html?limit=4", "run": f"run-{ids['plain']}.html", "hostile": f"run-{ids['hostile']}.html",
             "sweep": f"sweep-{SWEEP_ID}.html", "sweeps": "sweeps.html"}
    opened = {key: open_page(chromium, site, name) for key, name in names.items()}
    yield opened
    for page in opened.values():
        page.close()


@pytest.mark.parametrize("name", ["runs", "run", "hostile", "sweep", "sweeps"])
def test_pages_open_from_disk_without_errors_or_network(pages, name):
    page = pages[name]
    assert page.errors() == [] and only_files(page) == []
    assert page.evaluate("document.getElementById('error').hidden") is True


def test_the_runs_table_sorts_filters_and_pages_in_the_page(pages, made):
    _, ids = made
    page = pages["runs"]
    rows = "Array.from(document.querySelectorAll('#runs tbody tr'), tr => tr.getAttribute('data-id'))"
    text = "document.getElementById('page').textContent"
    assert page.evaluate(rows)[0] == ids["dead"] and page.evaluate(text) == "1–4 of 10"  # newest first, 4 a page
    page.evaluate("document.getElementById('next').click()")
    wait_for(page, f"{text} === '5–8 of 10'")
    page.evaluate("document.getElementById('next').click()")
    wait_for(page, f"{text} === '9–10 of 10'")
    assert page.evaluate("document.getElementById('next').disabled") is True
    page.evaluate("document.querySelector('#runs th[data-sort=val_acc]').click()")
    wait_for(page, "document.querySelector('#runs th[data-sort=val_acc]').getAttribute('aria-sort') === 'descending'")
    wait_for(page, f"{rows}[0] === {json.dumps(ids['sweep'][5])}")  # back to the first page, best first
    page.evaluate("document.querySelector('#runs th[data-sort=val_acc]').click()")
    wait_for(page, f"{rows}[0] === {json.dumps(ids['dead'])}")  # ascending: the run that reached 0.9 at epoch 1
    page.evaluate("document.getElementById('q').value = 'PLAIN'; document.getElementById('filters').requestSubmit()")
    wait_for(page, f"{rows}.length === 1 && {rows}[0] === {json.dumps(ids['plain'])}")
    page.evaluate("document.getElementById('q').value = ''; document.getElementById('filters').requestSubmit()")
    for control, value, expected in (("tag", HOSTILE, [ids["hostile"]]), ("tag", "baseline", [ids["plain"]]),
                                     ("tag", "", None)):
        pick(page, control, value)
        if expected:
            wait_for(page, f"{rows}.length === 1 && {rows}[0] === {json.dumps(expected[0])}")
    pick(page, "status", "failed")
    wait_for(page, f"{rows}.length === 1 && {rows}[0] === {json.dumps(ids['hostile'])}")
    pick(page, "status", "")
    wait_for(page, f"{text} === '1–4 of 10'")
    assert page.errors() == [] and only_files(page) == []


def test_a_run_page_draws_its_charts_plots_and_diagnostics_from_disk(pages):
    page = pages["run"]
    assert page.evaluate("typeof Plotly") == "object"
    wait_for(page, "document.querySelector('#curves .main-svg')")
    charts = page.evaluate("Array.from(document.querySelectorAll('#diagnostics [data-chart-id]'), "
                           "d => d.querySelectorAll('.main-svg').length)")
    assert len(charts) == len(ui_store.STATS) and all(charts)
    wait_for(page, "document.querySelector('#plots img') && document.querySelector('#plots img').naturalWidth > 0")
    links = page.evaluate("Array.from(document.querySelectorAll('#files a'), a => a.href)")
    assert links and all(link.startswith("file://") and "/files/" in link for link in links)
    assert not any(link.endswith("escape.png") for link in links)
    assert [u.split("?")[0].rsplit("/", 2)[-2:] for u in page.requested_urls() if "plotly" in u] == [["assets", "plotly.min.js"]]
    assert page.errors() == [] and only_files(page) == []


def test_a_sweep_page_and_its_comparison_load_and_switch_from_disk(chromium, pages, site):
    sweep = pages["sweep"]
    assert sweep.evaluate("document.querySelectorAll('#trials tbody tr').length") == 7
    drawn = sweep.evaluate("Array.from(document.querySelectorAll('#charts [data-chart-id]'), "
                           "d => d.querySelectorAll('.main-svg').length > 0)")
    assert len(drawn) >= 3 and all(drawn)
    link = sweep.evaluate("document.getElementById('compare-link').href")
    assert link == site.resolve().as_uri() + f"/compare.html?sweep={SWEEP_ID}"
    compare = chromium.open(link)
    try:
        wait_for(compare, "window.nnexpReady")
        assert compare.evaluate("document.querySelectorAll('#tables table tbody tr').length") >= 2
        assert all(compare.evaluate("Array.from(document.querySelectorAll('#charts [data-chart-id]'), "
                                    "d => d.querySelectorAll('.main-svg').length > 0)"))
        before = compare.evaluate("document.getElementById('what').textContent")
        pick(compare, "group", "0")
        wait_for(compare, "document.getElementById('what').textContent.indexOf('one row per run') >= 0")
        assert "grouped over seeds" in before
        assert compare.errors() == [] and only_files(compare) == []
    finally:
        compare.close()


def test_values_from_runs_stay_text_in_an_export(pages):
    hostile, runs = pages["hostile"], pages["runs"]
    assert hostile.evaluate("document.getElementById('title').textContent") == HOSTILE
    assert hostile.evaluate("document.getElementById('main').textContent").count(HOSTILE) >= 5
    assert HOSTILE in runs.evaluate("Array.from(document.querySelectorAll('#tag option'), o => o.value)")
    for page in (hostile, runs):
        assert page.evaluate("document.querySelectorAll('img[src=x], img:not([src])').length") == 0
        assert [m for m in page.console() if m["kind"] == "dialog"] == [] and page.errors() == []


def test_an_inline_script_in_an_exported_page_is_refused(chromium, site, tmp_path):
    """The pages carry the live dashboard's Content-Security-Policy: only the site's own script files run."""
    copy = tmp_path / "copy"
    shutil.copytree(site, copy)
    html = (copy / "sweeps.html").read_text()
    (copy / "sweeps.html").write_text(html.replace("</body>", "<script>window.injected = 1</script></body>"))
    page = open_page(chromium, copy, "sweeps.html")
    try:
        assert page.evaluate("window.injected === undefined") is True
        assert any("Content Security Policy" in m["text"] for m in page.errors())
    finally:
        page.close()


# ----------------------------------------------------------------- a store made to hurt its readers


def test_a_hostile_store_exports_without_blocking_and_copies_nothing_it_must_not(tmp_path, chromium):
    root = tmp_path / "runs"
    made = hostile_store.build(root, tmp_path / "outside")
    out, done = tmp_path / "site", []
    worker = threading.Thread(target=lambda: done.append(export(root, out)), daemon=True)
    worker.start()
    worker.join(120)
    if not done:
        hostile_store.release(root)
        pytest.fail("the export did not finish on the hostile store (a reader waits on a named pipe, or failed)")
    assert hostile_store.release(root) == 0
    assert sorted(p.name[4:-5] for p in out.glob("run-*.html")) == sorted(made["good"] + made["shown"])
    assert not (out / "files" / "abc" / "leak.txt").exists()  # links to ../abcdef/secret.txt
    assert not (out / "files" / "huge-plot" / "plots" / "big.png").exists()  # too large to serve
    assert not (out / "run-linked.html").exists() and not (out / "files" / "linked").exists()
    assert all(p.stat().st_size < 1 << 20 for p in every_file(out / "files"))
    page = open_page(chromium, out, f"sweep-{made['sweep']}.html")
    try:
        assert page.evaluate("document.querySelectorAll('.hoverlayer a, .infolayer a, .legend a').length") == 0
        assert hostile_store.MARKUP in page.evaluate("document.getElementById('main').textContent")
        assert page.errors() == [] and only_files(page) == []
    finally:
        page.close()
