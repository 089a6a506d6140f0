"""The dashboard (`nnexp ui`) on a hostile store, under slow and rapid clients.

    python benchmarks/probe_ui.py [--slow 200] [--rapid 1000] [--threads 8] [--hold 40]

Builds the tests' hostile store (tests/hostile_store.py: run folders whose
files are named pipes, links to /dev/zero, sparse 40 GB files, a YAML alias
bomb, JSON nested 100,000 deep, a folder linked out of the store, sweeps
whose lock is a pipe) and starts ``nnexp ui`` on it on 127.0.0.1 as a
subprocess. Then, all on the loopback address and bounded in count and time:

1. quiet: ``--rapid`` / 5 normal requests, one after another, for the latency
   without load;
2. rapid: ``--rapid`` requests from ``--threads`` threads as fast as they go,
   a new connection each: normal pages and API answers and, one in four,
   the hostile runs' pages, files and sweeps;
3. ``--slow`` slow connections (slowloris): each sends the start of a
   request and then one header byte every second, never finishing it, for
   up to ``--hold`` seconds; while they are held, the rapid requests again;
4. the slow connections are counted: how many the server closed, after how long.

Reported: latency p50 / p95 / max of the normal requests in each phase and
the p95 with the slow connections against the p95 without them (the target
is docs/benchmarks.md's p95 < 200 ms for polls), errors (anything but the
expected status, and failed or timed-out connections), the server's limits
(nnexp/ui/server.py) and its resident memory and threads before, under
load and after.
Prints the machine first; the figures are in docs/benchmarks.md
("The dashboard on a hostile store").
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import machine
from bench_ui import Dashboard, percentile, stats_ms

from nnexp.ui.server import HEAD_SECONDS, MAX_CONNECTIONS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import hostile_store  # noqa: E402  (the tests' hostile store)

BUDGET_P95_MS = 200.0  # docs/benchmarks.md, "The dashboard": polls p95 < 200 ms


def requests_for(made: dict) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(normal, hostile) requests: (path, the status expected)."""
    plain, sweep = "plain", made["sweep"]
    normal = [("/api/runs?limit=50", 200), (f"/api/runs/{plain}", 200), (f"/api/runs/{plain}/metrics?since=1", 200),
              (f"/api/runs/{plain}/charts", 200), ("/api/sweeps", 200), (f"/api/sweeps/{sweep}", 200),
              (f"/files/{plain}/metrics.csv", 200), ("/", 200), ("/api/tags", 200)]
    hostile = [(f"/api/runs/{name}", 422) for name in ("pipe-metrics", "pipe-config", "huge-metrics")]
    hostile += [(f"/api/runs/{name}", 200) for name in made["shown"]]
    hostile += [(f"/api/runs/{name}/charts", 200) for name in ("pipe-diagnostics", "huge-diagnostics")]
    hostile += [("/files/huge-plot/plots/big.png", 403), ("/files/abc/leak.txt", 404), ("/api/runs/linked", 404),
                ("/api/compare?ids=linked", 404), ("/api/runs?where=optimizer.lr%3C" + "9" * 5000, 400)]
    hostile += [(f"/api/sweeps/{sweep_id}", 200) for sweep_id in made["bad_sweeps"] if "state" not in sweep_id]
    return normal, hostile


def get(port: int, path: str, timeout: float = 30.0) -> tuple[float, int | None]:
    """(seconds, status or None if the connection failed) of one request on a new connection."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - t0, response.status
    except OSError:
        return time.perf_counter() - t0, None
    finally:
        conn.close()


def process_figures(pid: int) -> tuple[float, int]:
    """(resident MiB, threads) of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


class SlowClients:
    """``count`` connections that each send the start of a request, then one header byte a second."""

    def __init__(self, port: int, count: int, hold: float):
        self.port, self.count, self.hold = port, count, hold
        self.closed_after: list[float] = []  # seconds from opening to the server closing it
        self.refused = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sockets = []
        for _ in range(self.count):
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                sock.setblocking(False)
                sockets.append([sock, time.monotonic()])
            except OSError:
                self.refused += 1
        deadline = time.monotonic() + self.hold
        while sockets and time.monotonic() < deadline:
            time.sleep(1.0)
            for entry in list(sockets):
                sock, opened = entry
                try:
                    if sock.recv(65536, socket.MSG_PEEK) == b"":  # the server closed it
                        raise ConnectionResetError
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    self.closed_after.append(time.monotonic() - opened)
                    sock.close()
                    sockets.remove(entry)
                    continue
                try:
                    sock.send(b"x")
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_after.append(time.monotonic() - opened)
                    sock.close()
                    sockets.remove(entry)
        self.still_open = len(sockets)
        for sock, _ in sockets:
            sock.close()
        self.done.set()


def rapid(port: int, plan: list[tuple[str, int, bool]], threads: int) -> tuple[list[float], list[str]]:
    """Send every (path, expected status, normal) of ``plan`` from ``threads`` threads:
    (seconds of the normal ones, errors)."""
    seconds, errors, lock = [], [], threading.Lock()
    work = iter(plan)

    def client():
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            path, expected, normal = item
            took, status = get(port, path)
            with lock:
                if status != expected:
                    errors.append(f"{path[:60]}: {status} (expected {expected}) after {took:.1f} s")
                elif normal:
                    seconds.append(took)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return seconds, errors


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow", type=int, default=200, help="slow connections held open")
    ap.add_argument("--rapid", type=int, default=1000, help="requests sent as fast as they go")
    ap.add_argument("--threads", type=int, default=8, help="client threads for the rapid requests")
    ap.add_argument("--hold", type=float, default=40.0, help="seconds the slow connections are held at most")
    args = ap.parse_args(argv)
    machine.print_header("probe_ui.py", ceiling=False, torch=False)

    tmp = Path(tempfile.mkdtemp(prefix="nnexp-probe-ui-"))
    try:
        made = hostile_store.build(tmp / "runs", tmp / "outside")
        normal, hostile = requests_for(made)
        dashboard = Dashboard(tmp / "runs")
        try:
            pid, port = dashboard.process.pid, dashboard.port
            print(f"\nnnexp ui on a hostile store ({len(made['good']) + len(made['shown'])} runs listed, "
                  f"{len(made['damaged'])} damaged, {len(hostile_store.pipes(tmp / 'runs'))} named pipes): "
                  f"started in {dashboard.startup:.2f} s")
            rss0, threads0 = process_figures(pid)

            quiet = [get(port, normal[i % len(normal)][0])[0] for i in range(args.rapid // 5)]
            plan = [(*hostile[i // 4 % len(hostile)], False) if i % 4 == 3 else (*normal[i % len(normal)], True)
                    for i in range(args.rapid)]
            t0 = time.perf_counter()
            alone, errors_alone = rapid(port, plan, args.threads)
            wall_alone = time.perf_counter() - t0

            slow = SlowClients(port, args.slow, args.hold)
            slow.thread.start()
            time.sleep(3.0)  # every slow connection open and dribbling
            rss_slow, threads_slow = process_figures(pid)
            t0 = time.perf_counter()
            loaded, errors = rapid(port, plan, args.threads)
            wall = time.perf_counter() - t0
            rss_load, threads_load = process_figures(pid)
            slow.done.wait(args.hold + 30)
            time.sleep(2.0)
            rss1, threads1 = process_figures(pid)
            stuck = hostile_store.release(tmp / "runs")
        finally:
            dashboard.stop()
    finally:
        hostile_store.release(tmp / "runs")
        shutil.rmtree(tmp, ignore_errors=True)

    p95 = percentile([s * 1000 for s in loaded], 0.95)
    p95_alone = percentile([s * 1000 for s in alone], 0.95)
    print(f"server limits: {MAX_CONNECTIONS:,} connections at once, {HEAD_SECONDS:g} s for a request's head")
    print(f"\n{'requests':<60}{'latency of the normal ones'}")
    print(f"{'quiet, one at a time (%d)' % len(quiet):<60}{stats_ms(quiet)}")
    rapid_name = "%d rapid (%d threads; 1 in 4 hostile)" % (len(plan), args.threads)
    print(f"{rapid_name:<60}{stats_ms(alone)}  in {wall_alone:.1f} s")
    print(f"{rapid_name + ', %d slow held' % args.slow:<60}{stats_ms(loaded)}  in {wall:.1f} s")
    print(f"p95 with the slow connections / without: {p95 / p95_alone:.2f}")
    errors = errors_alone + errors
    print(f"errors: {len(errors)}" + "".join(f"\n  {e}" for e in errors[:10]))
    closed = slow.closed_after
    print(f"slow connections: {args.slow} opened ({slow.refused} refused), {len(closed)} closed by the server "
          + (f"after {min(closed):.0f}-{max(closed):.0f} s" if closed else "") + f", {slow.still_open} still open "
          f"after {args.hold:.0f} s")
    print(f"server memory (RSS) and threads: before {rss0:.1f} MiB, {threads0}; slow connections open "
          f"{rss_slow:.1f} MiB, {threads_slow}; after the rapid requests {rss_load:.1f} MiB, {threads_load}; "
          f"at the end {rss1:.1f} MiB, {threads1}")
    print(f"readers left waiting on a named pipe: {stuck}")
    verdict = "within" if p95 < BUDGET_P95_MS and not errors else "NOT within"
    print(f"p95 under load {p95:.1f} ms: {verdict} the budget (p95 < {BUDGET_P95_MS:.0f} ms, no errors)")


if __name__ == "__main__":
    main()
