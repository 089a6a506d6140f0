"""The dashboard (`nnexp ui`) at scale and under load.

    python benchmarks/bench_ui.py [--runs 10000] [--store DIR] [--clients 50] [--seconds 60]
                                  [--trials 10] [--epochs 12] [--subset 50000] [--workers 1]
                                  [--skip-scale] [--skip-load]

Scale: generates ``--runs`` synthetic runs with the store benchmark's
generator (``bench_store.generate``; or reads ``--store DIR`` if it holds
runs), indexes them as ``nnexp runs`` would, and starts ``nnexp ui`` on
them as a subprocess (its start-up reads every record). Then:

- ``/api/runs``, one page of 50 rows: the default listing, sorted by a
  metric, filtered with ``--where`` and by a search text, and a deep page;
  each query asked once with a value no earlier request used (nothing
  cached: the server filters and sorts the 10,000 runs) and then the same
  query again (cached); latency p50 / p95 / max;
- the runs page in headless Chromium (tests/browser.py): milliseconds from
  navigation to the first page of the table drawn (the page sets
  ``window.nnexpReady``), the first load (nothing cached by the browser)
  and the median of five more tabs.

Load: the same sweep (``--trials`` trials of an MLP, ``--epochs`` each on
``--subset`` MNIST images, ``--workers`` worker processes, one BLAS thread
each) runs three times in fresh stores: without the dashboard, with
``nnexp ui`` serving its store while ``--clients`` client threads poll the
sweep's pages for ``--seconds`` seconds, and without the dashboard again
(the two quiet runs say how much trial times drift by themselves). Each
client first loads its page (HTML, scripts, gzip like a browser) and then
polls what that page polls, sending the last ETag as browsers do: a third
the sweep page (``/api/sweeps/<id>`` every 2 s), a third the page of a
running trial (its metrics every second, its charts when an epoch came), a
third the runs page of the sweep (every 5 s). Reported: requests, errors
(anything but 200 and 304, and failed connections), latency p50 / p95 /
max of the polls and of the page loads, and the trials' train_seconds
(from their summary.json) in each of the three sweeps.

Prints the machine first (benchmarks/machine.py); the figures and their
reading are in docs/benchmarks.md ("The dashboard").
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import machine
from bench_store import generate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from browser import Browser, find_browser  # noqa: E402  (the tests' Chromium driver)

from nnexp.tracking import RunIndex  # noqa: E402
from nnexp.tracking.index import RACY_NS  # noqa: E402

BASE = """\
data: {{dataset: mnist, val_size: 2000, batch_size: 128, train_subset: {subset}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 256}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: {epochs}, seed: 0}}
tracking: {{plots: false}}
"""


# Twenty columns to sort by: each sort of the 10,000 runs is computed once, then cached.
SORTS = ("val_acc", "test_acc", "train_s", "params", "epochs", "name", "id", "started", "status", "tags", "sweep",
         "seed", "final_val_loss", "best_val_value", "total_seconds", "test_loss", "final_train_loss",
         "final_train_accuracy", "best_epoch", "ended")


# --------------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    low = int(k)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (k - low)


def stats_ms(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    ms = [s * 1000 for s in seconds]
    return f"p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, max {max(ms):.1f} ms (n={len(ms)})"


class Dashboard:
    """``nnexp ui`` on a store, as a subprocess on a free port."""

    def __init__(self, store: Path):
        t0 = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "nnexp", "ui", "--store", str(store), "--port", "0"],
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        line = ""
        while "serving" not in line:
            line = self.process.stderr.readline()
            if not line:
                raise SystemExit(f"nnexp ui did not start: {self.process.stderr.read()}")
        self.startup = time.perf_counter() - t0
        self.port = int(re.search(r":(\d+)/", line).group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        self._drain = threading.Thread(target=self.process.stderr.read, daemon=True)
        self._drain.start()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, path: str) -> tuple[float, int, bytes]:
        conn = self.connect()
        try:
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            return time.perf_counter() - t0, response.status, body
        finally:
            conn.close()

    def cpu_seconds(self) -> float:
        """User and system CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ----------------------------------------------------------------------- scale


def scale(store: Path, runs: int) -> None:
    if not (store.is_dir() and any(store.iterdir())):
        print(f"generating {runs:,} runs in {store} ...", flush=True)
        t0 = time.perf_counter()
        generate(store, runs)
        print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    count = len(RunIndex(store).sync())
    time.sleep(RACY_NS / 1e9 + 0.2)  # files written in the last 2 s are re-read at every listing
    RunIndex(store).sync()
    print(f"  {count:,} runs indexed in {time.perf_counter() - t0:.1f} s", flush=True)

    dashboard = Dashboard(store)
    try:
        print(f"\n/api/runs on {count:,} runs (nnexp ui started in {dashboard.startup:.2f} s, reading every record)")
        rng = random.Random(0)
        queries = {
            "sorted by a column": lambda i: f"/api/runs?limit=50&sort={SORTS[i]}&order=desc",
            "a deep page (offset 9,000)": lambda i: f"/api/runs?limit=50&offset=9000&sort={SORTS[i]}&order=asc",
            "--where filter": lambda i: "/api/runs?limit=50&where=" + quote(
                f"optimizer.name == 'adam' and val_accuracy > {0.95 + 0.0001 * i:.4f}"),
            "search text": lambda i: f"/api/runs?limit=50&q=sweep-{rng.randrange(0, runs, 2):05d}",
            "status (live) and a column": lambda i: f"/api/runs?limit=50&status=completed&sort={SORTS[i]}",
        }
        print(f"{'query':<30}{'each time new (no cache)':<58}{'asked again (cached)'}")
        for name, make in queries.items():
            fresh, again = [], []
            for i in range(20):
                path = make(i)
                seconds, status, _ = dashboard.get(path)
                if status != 200:
                    raise SystemExit(f"{path}: HTTP {status}")
                fresh.append(seconds)
                again.append(dashboard.get(path)[0])
            print(f"{name:<30}{stats_ms(fresh):<58}{stats_ms(again)}", flush=True)
        runs_page(dashboard)
    finally:
        dashboard.stop()


def runs_page(dashboard: Dashboard) -> None:
    if find_browser() is None:
        print("runs page: no Chromium found, not measured")
        return
    with Browser(timeout=120) as browser:
        loads = []
        for _ in range(6):
            page = browser.open(dashboard.base + "/")
            ready = page.evaluate("""new Promise(resolve => { (function wait() {
                if (window.nnexpReady) { resolve(window.nnexpReady); } else { setTimeout(wait, 10); } })(); })""")
            rows = page.evaluate("document.querySelectorAll('#runs tbody tr').length")
            errors = page.errors()
            page.close()
            if rows != 50 or errors:
                raise SystemExit(f"runs page: {rows} rows, errors {errors}")
            loads.append(ready)
    print(f"runs page usable (first page of the table drawn, from navigation): first load {loads[0]:.0f} ms, "
          f"then median {statistics.median(loads[1:]):.0f} ms, max {max(loads[1:]):.0f} ms ({len(loads) - 1} tabs)")


# ------------------------------------------------------------------------ load


def run_sweep(workdir: Path, name: str, args) -> tuple[subprocess.Popen, Path]:
    store = workdir / name
    cmd = [sys.executable, "-m", "nnexp", "sweep", str(workdir / "spec.yaml"), "--workers", str(args.workers),
           "--threads-per-worker", "1", "--store", str(store), "-q"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))
    return process, store


def trial_seconds(store: Path) -> list[float]:
    seconds = []
    for summary in sorted(store.glob("*/summary.json")):
        data = json.loads(summary.read_text())
        if data.get("status") != "completed":
            raise SystemExit(f"{summary.parent.name}: {data.get('status')}")
        seconds.append(float(data["train_seconds"]))
    return seconds


class Client(threading.Thread):
    """One browser's worth of requests: load a page once, then poll what that page polls."""

    def __init__(self, dashboard: Dashboard, role: str, sweep_id: str, deadline: float, seed: int):
        super().__init__(daemon=True)
        self.dashboard, self.role, self.sweep_id, self.deadline = dashboard, role, sweep_id, deadline
        self.rng = random.Random(seed)
        self.polls: list[float] = []
        self.loads: list[float] = []
        self.errors: list[str] = []
        self.etags: dict[str, str] = {}
        self.conn = None

    def request(self, path: str, into: list, gzip: bool = False) -> bytes | None:
        headers = {"Accept-Encoding": "gzip"} if gzip else {}
        if path in self.etags:
            headers["If-None-Match"] = self.etags[path]
        for attempt in (1, 2):  # a kept-alive connection the server closed after idling: reconnect once
            try:
                if self.conn is None:
                    self.conn = self.dashboard.connect()
                t0 = time.perf_counter()
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                body = response.read()
                into.append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException) as exc:
                self.conn = None
                if attempt == 2:
                    self.errors.append(f"{path}: {type(exc).__name__}: {exc}")
                    return None
                continue
            if response.status not in (200, 304):
                self.errors.append(f"{path}: HTTP {response.status}")
                return None
            if response.getheader("ETag"):
                self.etags[path] = response.getheader("ETag")
            return body if response.status == 200 else b""
        return None

    def load_page(self, path: str) -> None:
        html = self.request(path, self.loads, gzip=True) or b""
        for script in re.findall(rb'(?:src|href)="(/static/[^"]+)"', html):
            self.request(script.decode(), self.loads, gzip=True)

    def run(self) -> None:
        time.sleep(self.rng.uniform(0, 2))  # browsers do not all open at the same millisecond
        sweep = f"/api/sweeps/{self.sweep_id}"
        if self.role == "sweep":
            self.load_page(f"/sweeps/{self.sweep_id}")
            while time.monotonic() < self.deadline:
                self.request(sweep, self.polls)
                time.sleep(2.0)
        elif self.role == "runs":
            self.load_page("/")
            while time.monotonic() < self.deadline:
                self.request(f"/api/runs?sweep={self.sweep_id}&limit=50", self.polls)
                time.sleep(5.0)
        else:  # the page of a running trial: its epochs every second, its charts when one came
            run, epochs = None, -1
            while time.monotonic() < self.deadline:
                if run is None:
                    body = self.request(sweep, self.polls)
                    if body:
                        running = [t["run"] for t in json.loads(body)["trials"] if t["status"] == "running"]
                        if running:
                            run = self.rng.choice(running)
                            self.load_page(f"/runs/{run}")
                    if run is None:
                        time.sleep(1.0)
                        continue
                body = self.request(f"/api/runs/{run}/metrics?since={max(epochs, 0)}", self.polls)
                if body:
                    answer = json.loads(body)
                    if answer["total"] != epochs:
                        epochs = answer["total"]
                        self.request(f"/api/runs/{run}/charts", self.polls)
                    if answer["status"] != "running":
                        run, epochs = None, -1
                time.sleep(1.0)
        if self.conn is not None:
            self.conn.close()


def load(args) -> None:
    with tempfile.TemporaryDirectory(prefix="nnexp-bench-ui-") as tmp:
        workdir = Path(tmp)
        (workdir / "base.yaml").write_text(BASE.format(subset=args.subset, epochs=args.epochs))
        lrs = [round(0.0005 * 1.4 ** i, 6) for i in range(args.trials)]
        (workdir / "spec.yaml").write_text(f"name: bench-ui\nbase: base.yaml\nparameters:\n  optimizer.lr: {lrs}\n")
        print(f"\nload: the same {args.trials}-trial sweep ({args.epochs} epochs of a 784-256-10 MLP on "
              f"{args.subset:,} images, {args.workers} worker{'s' if args.workers != 1 else ''} x 1 BLAS thread) "
              f"three times; {args.clients} clients poll the second one's pages for {args.seconds} s", flush=True)
        results = {}
        cpu = {}
        for name in ("quiet", "dashboard", "quiet-again"):
            clients, dashboard = [], None
            if name == "dashboard":  # already open when the sweep starts, as it would be for someone watching
                (workdir / name).mkdir()
                dashboard = Dashboard(workdir / name)
            t0 = time.perf_counter()
            process, store = run_sweep(workdir, name, args)
            if dashboard is not None:
                sweep_id = wait_for_sweep(store, process)
                cpu_start, own_start, wall_start = dashboard.cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
                deadline = time.monotonic() + args.seconds
                roles = ("sweep", "run", "runs")
                clients = [Client(dashboard, roles[i % 3], sweep_id, deadline, i) for i in range(args.clients)]
                for client in clients:
                    client.start()
            _, err = process.communicate()
            wall = time.perf_counter() - t0
            if process.returncode != 0:
                raise SystemExit(f"sweep failed ({process.returncode}):\n{err}")
            for client in clients:
                client.join()
            if dashboard is not None:
                span = time.perf_counter() - wall_start
                cpu = {"server": (dashboard.cpu_seconds() - cpu_start) / span,
                       "clients": (sum(os.times()[:2]) - own_start) / span}
                dashboard.stop()
            results[name] = (wall, trial_seconds(store), clients)
            print(f"  {name}: sweep {wall:.1f} s", flush=True)

    print(f"\n{'sweep':<34}{'wall s':>8}{'train s per trial: mean':>26}{'min':>8}{'max':>8}")
    for name, label in (("quiet", "without the dashboard"), ("dashboard", f"{args.clients} clients polling"),
                        ("quiet-again", "without the dashboard, again")):
        wall, seconds, _ = results[name]
        print(f"{label:<34}{wall:>8.1f}{statistics.mean(seconds):>26.2f}{min(seconds):>8.2f}{max(seconds):>8.2f}")
    clients = results["dashboard"][2]
    polls = [s for c in clients for s in c.polls]
    loads = [s for c in clients for s in c.loads]
    errors = [e for c in clients for e in c.errors]
    print(f"\n{args.clients} clients for {args.seconds} s: {len(polls) + len(loads):,} requests, {len(errors)} errors")
    print(f"  polls       {stats_ms(polls)}")
    print(f"  page loads  {stats_ms(loads)}  (HTML and scripts, plotly.js among them, gzip)")
    for error in errors[:10]:
        print(f"  error: {error}")
    print(f"  CPU while they polled: the dashboard's process {100 * cpu['server']:.0f}% of a core, the "
          f"{args.clients} client threads (this process) {100 * cpu['clients']:.0f}% of a core")
    quiet = statistics.mean(results["quiet"][1] + results["quiet-again"][1])
    loaded = statistics.mean(results["dashboard"][1])
    drift = abs(statistics.mean(results["quiet"][1]) - statistics.mean(results["quiet-again"][1]))
    print(f"trials with the dashboard polled: {100 * (loaded / quiet - 1):+.1f}% train time against the mean of the "
          f"two quiet sweeps (which differ by {100 * drift / quiet:.1f}% from each other)")


def wait_for_sweep(store: Path, process: subprocess.Popen) -> str:
    """The id of the sweep being written into ``store``, once its folder exists."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list((store / "sweeps").glob("*/sweep.json")) if (store / "sweeps").is_dir() else []
        if found:
            return found[0].parent.name
        if process.poll() is not None:
            raise SystemExit("the sweep ended before its folder appeared")
        time.sleep(0.1)
    raise SystemExit("no sweep folder after 120 s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--store", default=None, help="a store to read (generated there if missing or empty)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--subset", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    args = ap.parse_args(argv)
    machine.print_header("bench_ui.py", ceiling=False)
    if not args.skip_scale:
        if args.store:
            scale(Path(args.store), args.runs)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="nnexp-bench-ui-store-"))
            try:
                scale(tmp / "runs", args.runs)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if not args.skip_load:
        load(args)


if __name__ == "__main__":
    main()
