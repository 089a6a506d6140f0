"""nnexp ui: the JSON API over a small store, the security rules, and the pages in a real headless Chromium;
then a store made to hurt its readers (tests/hostile_store.py) and slow clients."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import hostile_store
import pytest
import ui_store
from test_hostile import assert_chart_texts_escaped
from ui_store import HOSTILE, SWEEP_ID

from nnexp.config import dump_yaml, validate
from nnexp.tracking import RunStore
from nnexp.tracking.sweeps import SweepFolder
from nnexp.ui.app import loopback_name
from nnexp.ui.diagnostics import read_diagnostic_series
from nnexp.ui.folders import decode_parts, run_file, run_folder
from nnexp.ui.server import make_server

# ----------------------------------------------------------------- the store and the server


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui") / "runs"
    return root, ui_store.build(root)


@contextlib.contextmanager
def serving(root, snapshot_age: float | None = 0.2, start=None):
    """A dashboard of ``root`` answering on a free loopback port, stopped on leaving.
    ``snapshot_age``: how stale listings may be (None: the server's own);
    ``start``: how to start its dashboard (default: at once)."""
    server = make_server(root, "127.0.0.1", 0)
    if snapshot_age is not None:
        server.dashboard.snapshot.max_age = snapshot_age  # listings catch up quickly in tests
    (start or (lambda dashboard: dashboard.start()))(server.dashboard)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.dashboard.stop()


@pytest.fixture(scope="module")
def server(made):
    with serving(made[0]) as server:
        yield server


def request(server, path: str, method: str = "GET", headers: dict | None = None):
    """(status, headers, body) of one request, the path sent exactly as given."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get_json(server, path: str):
    status, _, body = request(server, path)
    assert status == 200, body[:500]
    return json.loads(body)


def raw(server, data: bytes) -> bytes:
    """Send bytes as they are (a request http.client would not make); the whole answer."""
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# ----------------------------------------------------------------- the API


def test_runs_are_the_runs_of_nnexp_runs_json_with_the_live_status(server, made, nnexp):
    root, ids = made
    code, out, err = nnexp("runs", "--json", "--store", root)
    assert code == 0, err
    listed = {r["id"]: r for r in json.loads(out)}
    page = get_json(server, "/api/runs?limit=1000")
    assert page["total"] == page["in_store"] == len(listed) == 10
    for row in page["runs"]:
        expected = listed[row["id"]]
        assert set(expected) <= set(row)  # every field of nnexp runs --json
        assert {k: v for k, v in row.items() if k != "status"} == {k: v for k, v in expected.items() if k != "status"}
    status = {row["id"]: row["status"] for row in page["runs"]}
    assert status[ids["running"]] == "running" and status[ids["dead"]] == "dead" and status[ids["hostile"]] == "failed"


def test_runs_are_sorted_filtered_and_paged_on_the_server(server, made):
    _, ids = made
    page = get_json(server, "/api/runs?sort=val_acc&order=desc&limit=1000")
    values = [r.get("final_val_accuracy") for r in page["runs"]]
    assert values == sorted(values, reverse=True)
    assert get_json(server, "/api/runs")["runs"][0]["id"] == ids["dead"]  # newest first by default

    where = quote("optimizer.lr == 0.01 and val_accuracy > 0.9")
    assert sorted(r["id"] for r in get_json(server, f"/api/runs?where={where}")["runs"]) == ids["sweep"][3:]
    assert [r["id"] for r in get_json(server, "/api/runs?tag=baseline")["runs"]] == [ids["plain"]]
    assert [r["id"] for r in get_json(server, "/api/runs?status=dead")["runs"]] == [ids["dead"]]
    assert [r["id"] for r in get_json(server, "/api/runs?q=PLAIN")["runs"]] == [ids["plain"]]
    assert len(get_json(server, f"/api/runs?sweep={SWEEP_ID}")["runs"]) == 6

    pages = [get_json(server, f"/api/runs?sort=id&order=asc&limit=4&offset={o}") for o in (0, 4, 8)]
    seen = [r["id"] for p in pages for r in p["runs"]]
    assert [len(p["runs"]) for p in pages] == [4, 4, 2] and {p["total"] for p in pages} == {10}
    assert seen == sorted(seen) and len(set(seen)) == 10


@pytest.mark.parametrize("query, message", [
    ("where=" + quote("val_accuracy >"), "--where: expected a value after '>'"),
    ("where=" + quote("val_acuracy > 0.9"), "unknown field 'val_acuracy'"),
    ("limit=many", "limit must be a whole number"),
    ("limit=0", "limit must be between 1 and 1000"),
    ("order=sideways", "order must be asc or desc"),
])
def test_a_bad_query_is_a_400_with_one_message(server, query, message):
    status, headers, body = request(server, f"/api/runs?{query}")
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert message in json.loads(body)["error"]


def test_a_run_has_its_summary_config_files_and_error(server, made):
    _, ids = made
    run = get_json(server, f"/api/runs/{ids['plain']}")
    assert run["summary"]["name"] == "plain" and run["status"] == "completed"
    assert run["config"]["optimizer"] == {"name": "adam", "lr": 0.002} and run["params"]["optimizer.lr"] == 0.002
    assert run["metrics"]["epochs"] == 4 and run["diagnostics"] is True
    files = {f["path"]: f for f in run["files"]}
    assert {"config.yaml", "metrics.csv", "summary.json", "diagnostics.csv", "plots/learning_curves.png"} <= set(files)
    assert "plots/escape.png" not in files  # the link that leads out of the store is not listed
    assert [p["path"] for p in run["plots"]] == ["plots/learning_curves.png"]
    status, headers, body = request(server, files["plots/learning_curves.png"]["url"])
    assert status == 200 and headers["content-type"] == "image/png" and body == ui_store.png()
    failed = get_json(server, f"/api/runs/{ids['hostile']}")
    assert HOSTILE in failed["error"] and failed["summary"]["reason"] == HOSTILE


def test_a_runs_summary_is_written_as_nnexp_show_writes_it(server, made, nnexp):
    root, ids = made
    run = get_json(server, f"/api/runs/{ids['plain']}")
    texts = run["summary_text"]
    assert set(texts) == set(run["summary"])
    assert texts["start_time"] == run["summary"]["started"]  # a date, not seconds since 1970
    assert texts["params"] == "12,730" and texts["test_accuracy"] == "95.00%" and texts["tags"] == "baseline"
    code, out, err = nnexp("show", ids["plain"], "--store", root)
    assert code == 0, err
    shown = out.splitlines()
    assert all(f"{key:<22}{text}" in shown for key, text in texts.items() if key not in ("id", "note"))


def test_metrics_come_from_an_epoch_on(server, made):
    _, ids = made
    every = get_json(server, f"/api/runs/{ids['plain']}/metrics")
    assert every["total"] == 4 and [r["epoch"] for r in every["rows"]] == [1, 2, 3, 4]
    assert set(every["rows"][0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                                     "seconds"}
    later = get_json(server, f"/api/runs/{ids['plain']}/metrics?since=2")
    assert later["rows"] == every["rows"][2:] and later["status"] == "completed"


def test_diagnostics_are_series_per_statistic_and_layer(server, made):
    _, ids = made
    diagnostics = get_json(server, f"/api/runs/{ids['plain']}/diagnostics")
    assert diagnostics["available"] and diagnostics["epochs"] == [1, 2, 3, 4]
    assert diagnostics["stats"] == list(ui_store.STATS)
    labels = {(s["stat"], s["label"]) for s in diagnostics["series"]}
    assert ("dead_fraction", "2 relu") in labels and ("grad_norm", "1.W") in labels and ("grad_norm", "3.W") in labels
    assert len(diagnostics["series"]) == 4 + 3 * 2
    grad = next(s for s in diagnostics["series"] if s["stat"] == "grad_norm" and s["label"] == "3.W")
    assert grad["epochs"] == [1, 2, 3, 4] and grad["values"][1] == pytest.approx(0.5 / 2 / 3)
    none = get_json(server, f"/api/runs/{ids['sweep'][0]}/diagnostics")
    assert none["available"] is False and none["series"] == []


def test_a_diagnostics_file_being_written_or_malformed(tmp_path):
    (tmp_path / "diagnostics.csv").write_text("epoch,layer,name,stat,value\n1,0,0.W,grad_norm,0.5\n1,0,0.W,grad_n")
    read = read_diagnostic_series(tmp_path)
    assert [(s["label"], s["values"]) for s in read["series"]] == [("0.W", [0.5])]  # the half-written line waits
    (tmp_path / "diagnostics.csv").write_text("epoch,stat,value\n1,grad_norm,0.5\n")
    read = read_diagnostic_series(tmp_path)
    assert read["available"] is False and "does not start with the header epoch,layer,name,stat,value" in read["problem"]
    (tmp_path / "diagnostics.csv").write_text("epoch,layer,name,stat,value\n" + "".join(
        f"{e},2,relu,dead_fraction,{d}\n" for e, d in ((1, 0.2), (2, 0.7), (3, 0.8))))
    read = read_diagnostic_series(tmp_path)   # the warnings nnexp show gives, from the same rules
    assert [w["rule"] for w in read["warnings"]] == ["dead_units"] and "since epoch 2" in read["warnings"][0]["message"]


def test_a_sweep_has_its_trials_best_so_far_and_charts(server, made):
    _, ids = made
    assert [s["id"] for s in get_json(server, "/api/sweeps")] == [SWEEP_ID]
    sweep = get_json(server, f"/api/sweeps/{SWEEP_ID}")
    trials = sweep["trials"]
    assert [t["index"] for t in trials] == list(range(7)) and trials[-1]["status"] == "pending"
    assert [t["run"] for t in trials[:6]] == ids["sweep"]
    best = [t["best_so_far"] for t in trials]
    assert best == sorted(best) and best[-1] == max(t["value"] for t in trials[:6])
    assert {"curves", "metric-vs-optimizer.lr", "best-so-far", "importance"} <= {c["id"] for c in sweep["charts"]}
    assert "val_accuracy ci95" in sweep["tables"][0]["columns"]


def test_compare_shows_what_nnexp_compare_computes(server, nnexp, made):
    root, _ = made
    code, out, err = nnexp("compare", "--sweep", SWEEP_ID, "--json", "--store", root)
    assert code == 0, err
    expected = json.loads(out)
    shown = get_json(server, f"/api/compare?sweep={SWEEP_ID}")
    table = shown["tables"][0]
    assert table["name"] == "table" and table["columns"] == list(expected[0])
    assert [{c: cell["value"] for c, cell in zip(table["columns"], row)} for row in table["rows"]] == expected
    assert shown["grouped"] is True and shown["varied"] == ["optimizer.lr"]
    assert table["rows"][0][table["columns"].index("val_accuracy")]["text"].endswith("%")


def test_compare_says_in_words_what_each_group_was_tested_against(server):
    shown = get_json(server, f"/api/compare?sweep={SWEEP_ID}")
    assert shown["test_lines"] == [
        "reference: optimizer.lr=0.01 (3 runs, val_accuracy 95.40%)",
        "optimizer.lr=0.001: paired t-test over the seeds both ran, val_accuracy -3.00pp (95% CI -3.00pp to -3.00pp), "
        "no p-value (the differences do not vary)"]


def test_compare_by_ids_and_its_errors(server, made):
    _, ids = made
    chosen = get_json(server, f"/api/compare?ids={ids['plain']},{ids['sweep'][0]}")
    assert sorted(chosen["runs"]) == sorted([ids["plain"], ids["sweep"][0]]) and chosen["charts"]
    assert request(server, "/api/compare?ids=nope")[0] == 404
    assert request(server, "/api/compare")[0] == 400
    assert request(server, "/api/compare?sweep=" + SWEEP_ID + "&group=maybe")[0] == 400


@pytest.mark.parametrize("path", ["/api/runs/nope", "/api/runs/nope/metrics", "/api/sweeps/nope", "/api/nothing",
                                  "/runs/nope", "/sweeps/nope", "/nothing", "/static/nope.js"])
def test_what_does_not_exist_is_404(server, path):
    status, headers, body = request(server, path)
    assert status == 404 and b"Traceback" not in body
    if path.startswith("/api/"):
        assert "error" in json.loads(body)


# ----------------------------------------------------------------- security


@pytest.mark.parametrize("rest", [
    "../../../etc/passwd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd", "%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%2f..%2f..%2fetc%2fpasswd", "/etc/passwd", "%2fetc%2fpasswd", "plots/escape.png", "up/etc/passwd",
    "plots/../../../etc/passwd", ".lock", "summary.json%00.png", "plots", "model.npz",
])
def test_files_are_served_only_from_inside_run_folders(server, made, rest):
    _, ids = made
    status, headers, body = request(server, f"/files/{ids['plain']}/{rest}")
    assert status == 404 and b"root:" not in body


@pytest.mark.parametrize("target", ["/files/%2e%2e/etc/passwd", "/files/../etc/passwd", "//etc/passwd",
                                    "/files//etc/passwd", "/files/sweeps/lr-seeds-1a2b3c4d/sweep.json",
                                    "/static/..%2f..%2fapp.py", "/files/%2fetc/passwd"])
def test_no_path_leads_out_of_the_run_folders(server, target):
    status, _, body = request(server, target)
    assert status == 404 and b"root:" not in body and b"status" not in body


def test_a_served_file_has_a_fixed_type_and_cannot_run_scripts(server, made):
    _, ids = made
    status, headers, _ = request(server, f"/files/{ids['plain']}/summary.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff" and "sandbox" in headers["content-security-policy"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_only_get_and_head_are_answered(server, method):
    status, headers, body = request(server, "/api/runs", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD" and b"read" in body


def test_head_answers_the_headers_of_get(server):
    status, get_headers, body = request(server, "/api/sweeps")
    head_status, head_headers, head_body = request(server, "/api/sweeps", method="HEAD")
    assert status == head_status == 200 and head_body == b""
    assert head_headers["content-length"] == get_headers["content-length"] == str(len(body))


@pytest.mark.parametrize("host, allowed", [
    ("evil.example", False), ("evil.example:8765", False), ("127.0.0.1.evil.example", False), ("", False),
    ("localhost", True), ("LOCALHOST:8765", True), ("127.0.0.1:8765", True), ("127.0.0.2", True), ("[::1]:8765", True),
])
def test_requests_must_name_a_loopback_host(server, host, allowed):
    status, _, body = request(server, "/api/runs?limit=1", headers={"Host": host})
    assert status == (200 if allowed else 403)
    if not allowed:
        assert b"DNS rebinding" in body


def test_a_request_without_a_host_header_is_refused(server):
    answer = raw(server, b"GET /api/runs HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 403") or answer.startswith(b"HTTP/1.1 403")


def test_a_malformed_request_gets_a_plain_message(server):
    answer = raw(server, b"NOT A REQUEST LINE AT ALL\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0] and b"text/plain" in answer and b"<" not in answer.split(b"\r\n\r\n")[1]


def test_every_answer_carries_the_protective_headers(server):
    for path in ("/", "/api/runs", "/static/app.js"):
        _, headers, _ = request(server, path)
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    _, headers, _ = request(server, "/")
    assert "script-src 'self'" in headers["content-security-policy"] and "unsafe-eval" not in headers[
        "content-security-policy"]


def test_an_etag_saves_the_body_of_an_unchanged_answer(server):
    _, headers, body = request(server, "/api/sweeps")
    status, _, again = request(server, "/api/sweeps", headers={"If-None-Match": headers["etag"]})
    assert body and status == 304 and again == b""


def test_an_error_inside_a_handler_is_a_plain_500_logged_on_the_server(server, monkeypatch, caplog):
    def broken(query):
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(server.dashboard.api, "runs", broken)
    with caplog.at_level(logging.ERROR, logger="nnexp.ui.server"):
        status, headers, body = request(server, "/api/runs")
    assert status == 500 and headers["content-type"].startswith("text/plain")
    assert b"Traceback" not in body and b"secret" not in body and b"internal error" in body
    logged = [r for r in caplog.records if r.name == "nnexp.ui.server"]
    assert logged and logged[0].exc_info and "secret detail" in str(logged[0].exc_info[1])


def test_no_request_changes_the_store(server, made):
    root, ids = made

    def files():
        out = {}
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if not name.startswith(".index.sqlite"):
                    st = os.lstat(path)
                    out[path] = (st.st_size, st.st_mtime_ns, st.st_mode)
        return out

    before = files()
    for path in ["/", "/sweeps", f"/sweeps/{SWEEP_ID}", f"/runs/{ids['plain']}", "/api/runs", "/api/tags",
                 "/api/sweeps", f"/api/sweeps/{SWEEP_ID}", f"/api/compare?sweep={SWEEP_ID}",
                 f"/api/runs/{ids['plain']}", f"/api/runs/{ids['plain']}/metrics",
                 f"/api/runs/{ids['plain']}/diagnostics", f"/api/runs/{ids['plain']}/charts",
                 f"/files/{ids['plain']}/metrics.csv"]:
        assert request(server, path)[0] == 200, path
    for method in ("POST", "PUT", "DELETE"):
        request(server, f"/api/runs/{ids['plain']}", method=method)
    time.sleep(0.5)  # a background refresh, if one was due
    assert files() == before


def test_loopback_names_and_encoded_parts():
    assert loopback_name("localhost:1") and loopback_name("127.9.9.9") and loopback_name("[::1]")
    assert not loopback_name("localhost.evil.example") and not loopback_name("0.0.0.0") and not loopback_name(None)
    assert decode_parts("plots/a%20b.png") == ["plots", "a b.png"]
    for bad in ("", "a//b", "%2e%2e", "a/%2Fb", "a/%00", ".hidden", "a\\b", "%ff"):
        assert decode_parts(bad) is None, bad


# ----------------------------------------------------------------- the command


def test_a_port_in_use_is_one_clear_error(nnexp, made):
    root, _ = made
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out, err = nnexp("ui", "--store", root, "--port", taken.getsockname()[1])
    assert code == 1 and "cannot listen on 127.0.0.1" in err and "Traceback" not in err


def test_any_other_address_warns_and_ctrl_c_stops_cleanly(made):
    root, _ = made
    process = subprocess.Popen([sys.executable, "-m", "nnexp", "ui", "--store", str(root), "--host", "0.0.0.0",
                                "--port", "0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "serving" in line or not line:
                break
        port = int(re.search(r"serving http://localhost:(\d+)/", lines[-1]).group(1))
        assert any("warning: nnexp ui listens on 0.0.0.0" in line for line in lines)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/sweeps", headers={"Host": "my-machine.example:1"})  # no Host rule off loopback
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "nnexp ui: stopped" in rest and "Traceback" not in rest


# ----------------------------------------------------------------- in a real browser


def wait_for(page, expression: str, timeout: float = 30.0):
    """The value of ``expression`` once it is truthy (checked every 50 ms), or a JavaScriptError at the deadline."""
    return page.evaluate(f"""new Promise((resolve, reject) => {{
        const start = Date.now();
        (function check() {{
            let value;
            try {{ value = {expression}; }} catch (e) {{ value = undefined; }}
            if (value) {{ resolve(value); }}
            else if (Date.now() - start > {timeout * 1000}) {{ reject(new Error("timed out waiting for: " +
                {json.dumps(expression)})); }}
            else {{ setTimeout(check, 50); }}
        }})();
    }})""", timeout=timeout + 10)


@pytest.fixture(scope="module")
def base(server):
    return "http://127.0.0.1:%d" % server.server_address[1]


@pytest.fixture(scope="module")
def opened(chromium, base, made):
    """Open each page once; {name: page}, every page fully drawn (window.nnexpReady)."""
    _, ids = made
    paths = {"runs": "/", "run": f"/runs/{ids['plain']}", "hostile": f"/runs/{ids['hostile']}",
             "running": f"/runs/{ids['running']}", "compare": f"/compare?sweep={SWEEP_ID}",
             "chosen": f"/compare?ids={ids['plain']},{ids['sweep'][0]},{ids['sweep'][3]}",
             "sweeps": "/sweeps", "sweep": f"/sweeps/{SWEEP_ID}"}
    pages = {}
    for name, path in paths.items():
        pages[name] = chromium.open(base + path)
        wait_for(pages[name], "window.nnexpReady")
    yield pages
    for page in pages.values():
        page.close()


@pytest.mark.parametrize("name", ["runs", "run", "hostile", "running", "compare", "chosen", "sweeps", "sweep"])
def test_pages_load_without_errors_and_fetch_nothing_from_elsewhere(opened, base, name):
    page = opened[name]
    assert page.errors() == [] and [m for m in page.console() if m["kind"] == "dialog"] == []
    assert all(url.startswith(base + "/") or url.startswith("data:") for url in page.requested_urls())


def test_the_runs_page_sorts_filters_and_selects_on_the_server(opened, made):
    _, ids = made
    page = opened["runs"]
    rows = "Array.from(document.querySelectorAll('#runs tbody tr'), tr => tr.getAttribute('data-id'))"
    assert len(page.evaluate(rows)) == 10
    page.evaluate("document.querySelector('#runs th[data-sort=val_acc]').click()")
    wait_for(page, "document.querySelector('#runs th[data-sort=val_acc]').getAttribute('aria-sort') === 'descending'")
    wait_for(page, f"{rows}[0] === {json.dumps(ids['sweep'][5])}")
    page.evaluate("document.getElementById('where').value = \"optimizer.lr == 0.01\";"
                  "document.getElementById('filters').requestSubmit()")
    wait_for(page, f"{rows}.length === 3")
    assert sorted(page.evaluate(rows)) == ids["sweep"][3:]
    page.evaluate("document.querySelectorAll('#runs tbody input[type=checkbox]')[0].click();"
                  "document.querySelectorAll('#runs tbody input[type=checkbox]')[1].click()")
    assert page.evaluate("document.getElementById('compare').disabled") is False
    assert page.evaluate("document.getElementById('selection').textContent") == "2 selected"
    page.evaluate("document.getElementById('where').value = 'val_accuracy >';"
                  "document.getElementById('filters').requestSubmit()")
    assert "expected a value after '>'" in wait_for(page, "!document.getElementById('error').hidden && "
                                                          "document.getElementById('error').textContent")


def test_values_from_runs_show_as_text_and_run_nothing(chromium, base, opened):
    runs, hostile = chromium.open(base + "/?status=failed"), opened["hostile"]
    wait_for(runs, "window.nnexpReady")
    assert HOSTILE in runs.evaluate("Array.from(document.querySelectorAll('#runs tbody td'), td => td.textContent)")
    assert HOSTILE in runs.evaluate("Array.from(document.querySelectorAll('#tag option'), o => o.value)")
    assert hostile.evaluate("document.getElementById('title').textContent") == HOSTILE
    shown = hostile.evaluate("document.getElementById('main').textContent")
    assert shown.count(HOSTILE) >= 5  # title, tag, reason, error text, summary and config tables
    for page in (runs, hostile):
        assert page.evaluate("document.querySelectorAll('img[src=x], img:not([src])').length") == 0
        assert [m for m in page.console() if m["kind"] == "dialog"] == [] and page.errors() == []
    runs.close()


def test_a_run_page_draws_its_curves_plots_and_diagnostics(opened):
    page = opened["run"]
    wait_for(page, "document.querySelector('#curves .main-svg')")
    assert page.evaluate("document.querySelector('#curves [data-chart-id=curves]')._fullData.length") >= 4
    charts = page.evaluate("Array.from(document.querySelectorAll('#diagnostics [data-chart-id]'), "
                           "d => [d.getAttribute('data-chart-id'), d.querySelectorAll('.main-svg').length])")
    assert [c for c, _ in charts] == [f"diagnostics-{s}" for s in ui_store.STATS] and all(n for _, n in charts)
    wait_for(page, "document.querySelector('#plots img') && document.querySelector('#plots img').naturalWidth > 0")
    assert page.evaluate("document.getElementById('diagnostics-note').hidden") is True


def test_a_run_page_shows_its_summary_as_the_server_writes_it(opened, server, made):
    _, ids = made
    texts = get_json(server, f"/api/runs/{ids['plain']}")["summary_text"]
    shown = dict(opened["run"].evaluate("Array.from(document.querySelectorAll('#summary tr'), "
                                        "tr => [tr.cells[0].textContent, tr.cells[1].textContent])"))
    assert shown == texts and shown["start_time"] == shown["started"]


def test_the_runs_page_writes_an_accuracy_as_the_server_does(chromium, base, server, made):
    _, ids = made
    texts = get_json(server, f"/api/runs/{ids['plain']}")["summary_text"]
    page = chromium.open(base + "/?tag=baseline")
    try:
        wait_for(page, "window.nnexpReady")
        column = page.evaluate("Array.from(document.querySelectorAll('#runs thead th'), th => th.textContent)"
                               ".indexOf('test acc')")
        shown = page.evaluate(f"document.querySelector('#runs tbody tr[data-id={json.dumps(ids['plain'])}]')"
                              f".cells[{column}].textContent")
    finally:
        page.close()
    assert shown == texts["test_accuracy"] == "95.00%"


def test_a_running_run_gains_a_point_when_an_epoch_is_logged(opened, made):
    root, ids = made
    page = opened["running"]
    page.browser.send("Page.bringToFront", session=page.session)  # pages poll only while visible
    wait_for(page, "document.visibilityState === 'visible'")
    points = "document.querySelector('[data-chart-id=curves]').data[0].x.length"
    assert wait_for(page, points) == 2
    assert page.evaluate("document.getElementById('live').hidden") is False
    run = RunStore(root).open(ids["running"])
    run.log_epoch(ui_store.epoch_row(3, 0.94))
    run.update_summary(epochs_completed=3)
    assert wait_for(page, f"{points} === 3 && {points}", timeout=20) == 3


def test_compare_and_sweep_pages_draw_every_chart_and_table(opened):
    for name in ("compare", "chosen", "sweep"):
        page = opened[name]
        drawn = page.evaluate("Array.from(document.querySelectorAll('#charts [data-chart-id]'), "
                              "d => d.querySelectorAll('.main-svg').length > 0)")
        assert len(drawn) >= 3 and all(drawn), name
        assert page.evaluate("document.querySelectorAll('#tables table tbody tr').length") >= 2
    sweep = opened["sweep"]
    assert sweep.evaluate("document.querySelectorAll('#trials tbody tr').length") == 7
    assert sweep.evaluate("document.querySelector('#trials tbody tr:last-child').getAttribute('data-status')") \
        == "pending"
    ids = sweep.evaluate("Array.from(document.querySelectorAll('#charts [data-chart-id]'), d => d.dataset.chartId)")
    assert {"curves", "best-so-far", "importance", "metric-vs-optimizer.lr"} <= set(ids)


def test_the_compare_page_reads_as_text_above_its_table(opened, server):
    page = opened["compare"]
    lines = get_json(server, f"/api/compare?sweep={SWEEP_ID}")["test_lines"]
    assert page.evaluate("Array.from(document.querySelectorAll('#tests li'), li => li.textContent)") == lines
    what = page.evaluate("document.getElementById('what').textContent")
    assert what.startswith("6 runs; sorted by val_accuracy (maximize)") and not re.search(r'[{}\[\]"]|null', what)


def test_a_compare_table_sorts_when_its_header_is_clicked(opened):
    page = opened["chosen"]
    column = page.evaluate("Array.from(document.querySelectorAll('#tables thead th'), th => th.textContent)"
                           ".indexOf('val_accuracy')")
    page.evaluate(f"document.querySelectorAll('#tables thead th')[{column}].click()")
    values = page.evaluate(f"Array.from(document.querySelectorAll('#tables tbody tr'), tr => tr.cells[{column}]"
                           ".textContent)")
    assert [float(v.rstrip('%')) for v in values] == sorted(float(v.rstrip('%')) for v in values)


def test_a_sweep_of_optimizers_is_plotted_against_what_it_sweeps(tmp_path):
    """sgd fills in momentum 0.0 and momentum 0.9: the sweep varies optimizer.name alone."""
    root, store, plan = tmp_path / "runs", RunStore(tmp_path / "runs"), []
    for trial, name in enumerate(("sgd", "momentum", "nesterov")):
        run = ui_store.make_run(store, f"opt-t{trial:03d}", 0.01, 0, 2, 0.9 + 0.01 * trial, 1_767_000_000.0 + trial,
                                run_id=f"opt-1a2b3c4d-t{trial:03d}", extra={
                                    "sweep": "opt-1a2b3c4d", "trial": trial, "trial_params": {"optimizer.name": name}})
        resolved = validate({"model": {"layers": ui_store.LAYERS}, "optimizer": {"name": name, "lr": 0.01}})
        run.path.joinpath("config.yaml").write_text(dump_yaml(resolved))
        plan.append({"index": trial, "run": run.id, "params": {"optimizer.name": name}, "seed": 0})
    folder = SweepFolder(root, "opt-1a2b3c4d")
    folder.make()
    folder.write_plan(plan)
    folder.write_state({"id": "opt-1a2b3c4d", "name": "opt", "status": "completed", "method": "grid",
                        "metric": "val_accuracy", "goal": "maximize", "trials": 3})
    with serving(root) as server:
        sweep = get_json(server, "/api/sweeps/opt-1a2b3c4d")
    assert sweep["varied"] == ["optimizer.name"]
    assert [c["id"] for c in sweep["charts"] if c["id"].startswith("metric-vs-")] == ["metric-vs-optimizer.name"]


@pytest.fixture(scope="module")
def fine_diagnostics(tmp_path_factory):
    """A dashboard of one run whose dead fractions stay below 2% and whose norms span about a decade
    (gradients 0.02 .. 0.4, weights 4 .. 44), with update ratios over five decades."""
    root = tmp_path_factory.mktemp("fine") / "runs"
    run = ui_store.make_run(RunStore(root), "fine", 0.002, 0, 4, 0.95, 1_797_000_000.123, run_id="fine")
    lines = ["epoch,layer,name,stat,value"]
    for e in range(1, 5):
        lines += [f"{e},2,relu,dead_fraction,{0.02 - 0.005 * (e - 1)!r}", f"{e},4,relu,dead_fraction,{0.003 * e!r}"]
        for layer, grad, weight in ((1, 0.4, 3.0), (3, 0.05, 40.0)):
            lines += [f"{e},{layer},{layer}.W,grad_norm,{grad / (1 + 0.5 * (e - 1))!r}",
                      f"{e},{layer},{layer}.W,weight_norm,{weight + e!r}",
                      f"{e},{layer},{layer}.W,update_ratio,{10.0 ** (-1 - e - layer)!r}"]
    (run.path / "diagnostics.csv").write_text("\n".join(lines) + "\n")
    with serving(root) as server:
        yield server


def test_log_axes_of_norms_are_labelled_at_decades_only(fine_diagnostics):
    charts = {c["id"]: c["figure"] for c in get_json(fine_diagnostics, "/api/runs/fine/charts")["charts"]}
    for stat in ("grad_norm", "weight_norm", "update_ratio"):
        figure = charts[f"diagnostics-{stat}"]
        values = [v for trace in figure["data"] for v in trace["y"]]
        y = figure["layout"]["yaxis"]
        assert y["type"] == "log" and y["dtick"] == 1, (stat, y)  # one label a decade, none between
        low, high = y["range"]
        assert low == math.floor(low) and high == math.ceil(high), (stat, y["range"])  # whole decades
        assert 10 ** low <= min(values) and max(values) <= 10 ** high and high - low >= 2, (stat, y["range"])


def test_diagnostic_axes_print_distinct_labels_apart(chromium, fine_diagnostics):
    page = chromium.open("http://127.0.0.1:%d/runs/fine" % fine_diagnostics.server_address[1])
    try:
        wait_for(page, "window.nnexpReady && document.querySelectorAll('#diagnostics .ytick text').length > 12")
        for stat in ("dead_fraction", "grad_norm", "weight_norm", "update_ratio"):
            ticks = page.evaluate(f"Array.from(document.querySelectorAll('[data-chart-id=diagnostics-{stat}] .ytick "
                                  "text'), t => {{ const r = t.getBoundingClientRect(); "
                                  "return [t.textContent, r.top, r.bottom]; }})")
            labels = [t for t, _, _ in ticks]
            assert len(labels) >= 3 and len(set(labels)) == len(labels), (stat, labels)
            spans = sorted((top, bottom) for _, top, bottom in ticks)
            assert all(below[0] >= above[1] for above, below in zip(spans, spans[1:])), (stat, labels)
        labels = page.evaluate("Array.from(document.querySelectorAll('[data-chart-id=diagnostics-dead_fraction] "
                               ".ytick text'), t => t.textContent)")
        assert all(text.endswith("%") for text in labels) and "0.5%" in labels
        assert page.errors() == []
    finally:
        page.close()


# ----------------------------------------------------------------- a store made to hurt its readers
# tests/hostile_store.py: named pipes, links to /dev/zero, sparse 40 GB files, a YAML alias bomb, deep JSON,
# a summary claiming another run's id, a run folder linked out of the store, sweeps whose lock is a pipe.


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    made = hostile_store.build(tmp / "runs", tmp / "outside")

    def start(dashboard):
        started = []
        starting = threading.Thread(target=lambda: started.append(dashboard.start()), daemon=True)
        starting.start()  # reads every record
        starting.join(120)
        if not started:
            hostile_store.release(tmp / "runs")
            pytest.fail("nnexp ui did not start on the hostile store (a reader waits on a named pipe, or failed)")

    with serving(tmp / "runs", start=start) as server:
        yield server, tmp / "runs", made
        hostile_store.release(tmp / "runs")


def hostile_json(server, path: str, status: int = 200):
    code, _, body = request(server, path)
    assert code == status, (path, body[:300])
    return json.loads(body)


def test_the_dashboard_lists_a_hostile_store_and_names_each_damaged_run(hostile):
    server, root, made = hostile
    page = hostile_json(server, "/api/runs?limit=1000")
    assert sorted(r["id"] for r in page["runs"]) == sorted(made["good"] + made["shown"])
    for name, why in made["damaged"].items():
        error = hostile_json(server, f"/api/runs/{name}", 422)["error"]
        assert error.startswith(f"run {name}: ") and why in error
        assert request(server, f"/runs/{name}")[0] == 200  # its page says what is wrong (from the API)
    assert hostile_json(server, "/api/runs/pipe-metrics/metrics", 422)["error"].endswith("a named pipe)")
    assert hostile_json(server, "/api/runs/zero-metrics/charts", 422)["error"].endswith("a symbolic link)")
    assert hostile_store.release(root) == 0  # no reader waits on a pipe


def test_the_files_a_run_page_shows_are_refused_when_hostile(hostile):
    server, root, made = hostile
    assert hostile_json(server, "/api/runs/pipe-error")["error"] is None
    assert hostile_json(server, "/api/runs/zero-error")["error"] is None
    for name, why in (("pipe-diagnostics", "not a regular file but a named pipe"), ("huge-diagnostics", "too large")):
        run = hostile_json(server, f"/api/runs/{name}")
        assert run["diagnostics"] is False and why in run["diagnostics_problem"]
        diagnostics = hostile_json(server, f"/api/runs/{name}/diagnostics")
        assert diagnostics["available"] is False and why in diagnostics["problem"]
        assert [c["id"] for c in hostile_json(server, f"/api/runs/{name}/charts")["charts"]] == ["curves"]
    run = hostile_json(server, "/api/runs/huge-plot")
    [big] = [f for f in run["files"] if f["path"] == "plots/big.png"]
    assert big["too_large"] is True and big["size"] == hostile_store.HUGE and run["plots"] == []
    status, _, body = request(server, big["url"])
    assert status == 403 and b"too large" in body
    assert hostile_store.release(root) == 0


def test_a_file_linked_into_a_sibling_folder_that_shares_the_runs_prefix_is_refused(hostile):
    """runs/abc/leak.txt -> ../abcdef/secret.txt: inside 'runs/abc' as a string prefix, outside as a path."""
    server, root, made = hostile
    assert made["prefix"] == "abc" and (root / "abcdef" / "secret.txt").is_file()
    status, _, body = request(server, "/files/abc/leak.txt")
    assert status == 404 and b"secret" not in body
    assert "leak.txt" not in [f["path"] for f in hostile_json(server, "/api/runs/abc")["files"]]
    assert request(server, "/files/abc/summary.json")[0] == 200


def test_a_run_is_the_folder_it_is_in_whatever_its_summary_claims_on_the_dashboard(hostile):
    server, root, made = hostile
    impostor, claimed = made["impostor"], made["claimed"]
    rows = [r for r in hostile_json(server, "/api/runs?limit=1000")["runs"] if r.get("name") == impostor]
    assert [(r["id"], r["path"]) for r in rows] == [(impostor, str(root / impostor))]
    assert hostile_json(server, f"/api/compare?ids={impostor}")["runs"] == [impostor]
    both = hostile_json(server, f"/api/compare?ids={impostor},{claimed}")["runs"]
    assert sorted(both) == sorted([impostor, claimed])
    assert [r["id"] for r in hostile_json(server, f"/api/runs?q={impostor}")["runs"]] == [impostor]


def test_a_run_folder_linked_out_of_the_store_is_neither_listed_nor_compared(hostile):
    server, root, made = hostile
    assert (root / "linked").is_symlink() and (root / "linked" / "summary.json").is_file()
    ids = [r["id"] for r in hostile_json(server, "/api/runs?limit=1000")["runs"]]
    assert "linked" not in ids and hostile_json(server, "/api/tags")["tags"].get("outside") is None
    assert request(server, "/api/compare?ids=linked")[0] == 404
    compared = hostile_json(server, "/api/compare?where=" + quote("test_accuracy > 0.95"), 404)
    assert "nothing in the store matches" in compared["error"]  # the linked run alone has 0.99
    assert request(server, "/api/runs/linked")[0] == 404 and request(server, "/files/linked/summary.json")[0] == 404


def test_a_number_too_long_to_convert_in_a_filter_is_a_400(hostile):
    server, _, _ = hostile
    where = quote("optimizer.lr < " + "9" * 5000)
    for path in (f"/api/runs?where={where}", f"/api/compare?where={where}"):
        status, _, body = request(server, path)
        assert status == 400 and "has too many digits (5,000)" in json.loads(body)["error"]


def test_sweeps_whose_lock_state_or_plan_is_a_pipe_are_answered(hostile):
    server, root, made = hostile
    states = {s["id"]: s["status"] for s in hostile_json(server, "/api/sweeps")}
    assert states["pipe-lock-0a0a0a0a"] == "dead" and "pipe-state-0a0a0a0a" not in states
    assert hostile_json(server, "/api/sweeps/pipe-lock-0a0a0a0a")["sweep"]["status"] == "dead"
    assert hostile_json(server, "/api/sweeps/pipe-plan-0a0a0a0a")["trials"] == []
    assert request(server, "/api/sweeps/pipe-state-0a0a0a0a")[0] == 404
    assert hostile_store.release(root) == 0


def test_every_chart_text_from_a_hostile_store_is_escaped(hostile):
    server, _, made = hostile
    sweep = hostile_json(server, f"/api/sweeps/{made['sweep']}")
    assert {"best-so-far", "importance", "curves"} <= {c["id"] for c in sweep["charts"]}
    figures = [c["figure"] for c in sweep["charts"]]
    figures += [c["figure"] for c in hostile_json(server, f"/api/compare?sweep={made['sweep']}&group=0")["charts"]]
    figures += [c["figure"] for c in hostile_json(server, "/api/runs/markup-diagnostics/charts")["charts"]]
    assert_chart_texts_escaped(figures, hostile_store.MARKUP)


def test_a_run_added_later_with_a_pipe_for_a_file_does_not_stop_the_refresh(hostile):
    server, root, made = hostile
    later = ui_store.make_run(RunStore(root), "later-pipe", 0.002, 0, 2, 0.9, 1_767_000_500.0, run_id="later-pipe")
    hostile_store.fifo(later.path / "metrics.csv")
    ui_store.make_run(RunStore(root), "later-good", 0.002, 0, 2, 0.9, 1_767_000_501.0, run_id="later-good")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ids = [r["id"] for r in hostile_json(server, "/api/runs?limit=1000")["runs"]]
        if "later-good" in ids:
            break
        time.sleep(0.1)
    assert "later-good" in ids and "later-pipe" not in ids
    assert hostile_store.release(root) == 0


# ----------------------------------------------------------------- slow clients


@pytest.fixture
def own_server(made):
    """A server of the small store that no other test (no browser page) connects to."""
    with serving(made[0], snapshot_age=None) as server:
        yield server


def test_a_client_that_never_finishes_its_headers_is_disconnected(own_server, monkeypatch):
    server = own_server
    monkeypatch.setattr(server, "head_seconds", 1.0)
    with socket.create_connection(server.server_address[:2], timeout=30) as slow:
        slow.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert request(server, "/api/sweeps")[0] == 200  # the others are answered meanwhile
        deadline = time.monotonic() + 30
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                slow.sendall(b"x")  # a byte a while, as slowloris does
                slow.settimeout(0.5)
                closed = slow.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed


def open_slow(server, count: int) -> list:
    """``count`` connections that sent the start of a request's head and nothing more, once the
    server serves them all."""
    slow = []
    for _ in range(count):
        sock = socket.create_connection(server.server_address[:2], timeout=30)
        sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.append(sock)
    deadline = time.monotonic() + 30
    while len(server._deadlines) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return slow


def closed_by_server(sock) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1024) == b""
    except OSError:
        return True


def test_at_the_connection_limit_the_longest_waiting_slow_client_makes_room(own_server, monkeypatch):
    server = own_server
    monkeypatch.setattr(server, "max_connections", 3)
    slow = open_slow(server, 3)
    try:
        assert request(server, "/api/sweeps")[0] == 200
        assert closed_by_server(slow[0])  # the first to wait for its head, no longer
        slow[1].settimeout(0.5)
        with pytest.raises(TimeoutError):
            slow[1].recv(1024)  # still waiting for the rest of its request
    finally:
        for sock in slow:
            sock.close()


def test_connections_beyond_the_limit_all_answering_are_answered_busy_at_once(own_server, monkeypatch):
    server = own_server
    monkeypatch.setattr(server, "max_connections", 3)
    release = threading.Event()
    answering = threading.Semaphore(0)

    def slow_answer():
        answering.release()
        release.wait(30)
        return {"tags": {}, "statuses": {}}

    monkeypatch.setattr(server.dashboard.api, "tags", slow_answer)
    busy = [threading.Thread(target=request, args=(server, "/api/tags")) for _ in range(3)]
    for thread in busy:
        thread.start()
    try:
        for _ in range(3):
            assert answering.acquire(timeout=30)
        status, headers, body = request(server, "/api/sweeps")
        assert status == 503 and headers["retry-after"] == "1" and b"too many connections" in body
    finally:
        release.set()
        for thread in busy:
            thread.join(30)
    deadline = time.monotonic() + 30
    while server._connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert request(server, "/api/sweeps")[0] == 200


def test_a_hover_label_shows_a_metric_named_with_markup_as_its_text(chromium, hostile):
    """The best-so-far chart of a sweep whose metric is named '<a href=...>click%{y}</a>': hovering a
    trial shows that name as written, with no link in the label and no template field filled in."""
    server, _, made = hostile
    page = chromium.open("http://127.0.0.1:%d/sweeps/%s" % (server.server_address[1], made["sweep"]))
    try:
        wait_for(page, "window.nnexpReady")
        chart = "document.querySelector('[data-chart-id=best-so-far]')"
        wait_for(page, f"!!({chart} && {chart}._fullLayout)")
        x, y = page.evaluate(f"""(() => {{ const gd = {chart}; gd.scrollIntoView({{block: 'center'}});
            const box = gd.getBoundingClientRect(), layout = gd._fullLayout, trials = gd._fullData[0];
            return [box.x + layout._size.l + layout.xaxis.l2p(trials.x[0]),
                    box.y + layout._size.t + layout.yaxis.l2p(trials.y[0])]; }})()""")
        page.move_mouse(x, y)
        label = wait_for(page, f"{chart}.querySelector('.hoverlayer .hovertext') && "
                               f"{chart}.querySelector('.hoverlayer .hovertext').textContent")
        assert f"param.{hostile_store.MARKUP}" in label and made["good"][0] in label
        assert page.evaluate("document.querySelectorAll('.hoverlayer a, .infolayer a, .legend a').length") == 0
        assert page.errors() == []
    finally:
        page.close()


def test_a_hostile_runs_page_says_what_is_refused(chromium, hostile):
    server, _, _ = hostile
    base = "http://127.0.0.1:%d" % server.server_address[1]
    pages = {name: chromium.open(f"{base}/runs/{name}") for name in ("huge-plot", "pipe-diagnostics", "pipe-metrics")}
    try:
        for page in pages.values():
            wait_for(page, "window.nnexpReady")
        files = pages["huge-plot"].evaluate("Array.from(document.querySelectorAll('#files li'), li => "
                                            "[li.textContent, li.querySelectorAll('a').length])")
        [big] = [f for f in files if f[0].startswith("plots/big.png")]
        assert "too large to show" in big[0] and big[1] == 0
        note = pages["pipe-diagnostics"].evaluate("document.getElementById('diagnostics-note').textContent")
        assert note == "diagnostics not shown: cannot read diagnostics.csv: not a regular file but a named pipe"
        error = wait_for(pages["pipe-metrics"], "!document.getElementById('error').hidden && "
                                                "document.getElementById('error').textContent")
        assert error == "run pipe-metrics: cannot read metrics.csv (not a regular file but a named pipe)"
    finally:
        for page in pages.values():
            page.close()


def test_only_a_folder_directly_inside_the_store_is_a_run(tmp_path):
    for name in ("run-1", "sub/run-2"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "summary.json").write_text("{}")
    assert run_folder(tmp_path, "run-1") == tmp_path / "run-1"
    for run_id in ("sub/run-2", "sub", ".hidden", "", None, 7):
        assert run_folder(tmp_path, run_id) is None, run_id


def test_control_characters_end_at_the_printable_ones():
    assert decode_parts("plots/a~b.png") == ["plots", "a~b.png"] and decode_parts("a%20b") == ["a b"]
    for bad in ("a%1Fb.png", "a%7Fb.png", "a%00b.png", "a%0Ab.png"):
        assert decode_parts(bad) is None, bad


def test_a_file_name_the_system_cannot_take_is_no_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    assert run_file(tmp_path, ["a.png"]) == (os.path.realpath(tmp_path / "a.png"), "image/png")
    assert run_file(tmp_path, ["a\x00.png"]) is None  # os.path refuses a NUL byte: not served, no error
