"""Serving the dashboard over HTTP with the standard library's threaded server.

``http.server.ThreadingHTTPServer`` gives each connection its own thread,
so a slow client never holds up the others; connections are kept alive
(HTTP/1.1), so a page that polls reuses one. Why this server and not a
package is in docs/design.md ("The dashboard's server"). This module only
carries requests: ``app.Dashboard`` decides every answer.

Threads are bounded. A request's line and headers must arrive within
``head_seconds`` of the server starting to wait for them (the idle time of
a kept-alive connection included), else a watchdog thread closes the
connection: a client that dribbles a header byte a second (slowloris) holds
a thread for those seconds only. At most ``max_connections`` connections
are served at once: one more closes the connection that has waited longest
for a request's head (a slow client's, or an idle kept-alive one), and only
when every connection is busy answering is it answered 503 at once.

An exception while answering is logged here with its traceback and the
client gets a plain "internal error" (``Dashboard.internal_error``); the
server's own errors for malformed requests are plain text too. Ctrl-C (or
SIGTERM) stops the server cleanly: it stops accepting, closes its socket
and the background refresher, and returns.
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
import sys
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import __version__
from ..errors import NnexpError
from .app import Dashboard, Response, is_loopback_host, text

logger = logging.getLogger(__name__)
access_log = logging.getLogger("nnexp.ui.access")


def _max_connections() -> int:
    """Connections served at once: 2,048, or half the process's limit of open files if that
    is lower (the usual 1,024 gives 512), so that files and the listening socket can still open."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 2048 if soft == resource.RLIM_INFINITY else max(16, min(2048, soft // 2))


MAX_CONNECTIONS = _max_connections()
HEAD_SECONDS = 15.0  # for a request's line and headers to arrive; pages poll every 1 to 5 s


class DashboardServer(ThreadingHTTPServer):
    """A threaded HTTP server answering with ``dashboard``, with bounded connections
    (``max_connections``, ``head_seconds``: see the module's docstring)."""

    daemon_threads = True  # a connection left open does not keep the process alive at exit
    request_queue_size = 128  # many pollers connecting at once wait in the backlog, not refused
    max_connections = MAX_CONNECTIONS
    head_seconds = HEAD_SECONDS

    def __init__(self, address: tuple, dashboard: Dashboard):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dashboard = dashboard
        self._guard = threading.Lock()
        self._connections = 0
        self._deadlines: dict = {}  # handler -> when its request's head must have arrived (monotonic)
        self._closing = threading.Event()
        super().__init__(address, Handler)
        self._watchdog = threading.Thread(target=self._watch, name="nnexp-ui-watchdog", daemon=True)
        self._watchdog.start()

    def process_request(self, request, client_address) -> None:
        with self._guard:
            full = self._connections >= self.max_connections
            oldest = min(self._deadlines, key=self._deadlines.get) if full and self._deadlines else None
            if oldest is not None:  # makes room: its thread ends as soon as its socket is closed
                del self._deadlines[oldest]
            if not full or oldest is not None:
                self._connections += 1
        if oldest is not None:
            self._close(oldest)
        elif full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread for it (out of threads): not counted; the caller closes it
            with self._guard:
                self._connections -= 1
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._guard:
                self._connections -= 1

    def _refuse(self, request) -> None:
        """Answer a connection beyond max_connections with a 503, without a thread and without waiting."""
        response = self.dashboard.finish(text(503, "busy: too many connections at once; try again in a moment",
                                              **{"Retry-After": "1"}), {})
        head = ["HTTP/1.1 503 Service Unavailable", f"Content-Type: {response.content_type}",
                f"Content-Length: {len(response.body)}", "Connection: close"]
        head += [f"{key}: {value}" for key, value in response.headers.items()]
        try:
            request.setblocking(False)
            request.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        except OSError:
            pass
        self.shutdown_request(request)

    def expect_head(self, handler, deadline: float | None) -> None:
        """``handler``'s connection must deliver a request's head by ``deadline`` (None: it has)."""
        with self._guard:
            if deadline is None:
                self._deadlines.pop(handler, None)
            else:
                self._deadlines[handler] = deadline

    def _watch(self) -> None:
        """Close the connections whose request's head is late (their threads then end)."""
        while not self._closing.wait(min(0.5, self.head_seconds / 4)):
            now = time.monotonic()
            with self._guard:
                late = [h for h, deadline in self._deadlines.items() if deadline < now]
                for handler in late:
                    del self._deadlines[handler]
            for handler in late:
                self._close(handler)

    @staticmethod
    def _close(handler) -> None:
        """End a connection whose request's head has not arrived (its thread then ends)."""
        handler.expired = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # a client that went away mid-answer
            return
        logger.error("error on a connection from %s", client_address[0], exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"nnexp-ui/{__version__}"
    sys_version = ""
    timeout = 60  # seconds one read or the writing of one answer may take; see head_seconds for the rest
    expired = False  # the server's watchdog closed the connection: its request's head was late

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm holds the body
        # back until the client's delayed ACK (docs/benchmarks.md, "The dashboard").
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return self.server_version

    def handle_one_request(self) -> None:
        self.server.expect_head(self, time.monotonic() + self.server.head_seconds)
        try:
            super().handle_one_request()
        finally:
            self.server.expect_head(self, None)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        self.server.expect_head(self, None)
        if self.expired:  # what arrived before the watchdog closed it is no request to answer
            self.close_connection = True
            return False
        return parsed

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def __getattr__(self, name: str):
        # Any other method (POST, PUT, DELETE, ...) reaches the dashboard too, which answers 405.
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def _answer(self) -> None:
        dashboard: Dashboard = self.server.dashboard
        try:
            response = dashboard.handle(self.command, self.path, self.headers)
        except Exception:  # noqa: BLE001 -- logged here; the client gets a plain message
            logger.exception("error answering %s %s", self.command, self.path[:300])
            response = dashboard.internal_error()
        if self.command not in ("GET", "HEAD"):
            self.close_connection = True  # a body it may have sent is never read
        self._send(response, head=self.command == "HEAD")

    def _send(self, response: Response, head: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and response.status != 304 and response.body:
            self.wfile.write(response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own answers to malformed requests, as plain text like every other."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":  # an unreadable request line: answer HTTP/1.0
            self.request_version = "HTTP/1.0"
        reason = message or self.responses.get(code, ("error",))[0]
        response = self.server.dashboard.finish(text(code, f"{code} {reason}"), {})
        try:
            self._send(response, head=getattr(self, "command", None) == "HEAD")
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:
        access_log.info("%s %s", self.address_string(), format % args)


def make_server(store, host: str = "127.0.0.1", port: int = 8765) -> DashboardServer:
    """A server for the store bound to (host, port) (port 0: any free one), not yet
    serving; its ``dashboard`` must be started (``dashboard.start()``) before it serves."""
    dashboard = Dashboard(store, loopback=is_loopback_host(host))
    try:
        return DashboardServer((host, port), dashboard)
    except OSError as exc:
        hint = " (another nnexp ui, or another program, uses it: choose another --port)" \
            if exc.errno in (98, 48) else ""
        raise NnexpError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None


def url_of(server: DashboardServer) -> str:
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(store, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False, echo=print) -> None:
    """Serve the dashboard of ``store`` until Ctrl-C or SIGTERM; ``echo(text, err)`` prints."""
    server = make_server(store, host, port)
    dashboard = server.dashboard

    def terminate(signum, frame):  # SIGTERM: stop like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        if not dashboard.loopback:
            echo(f"warning: nnexp ui listens on {host}, which other machines can reach: anyone who can connect "
                 "can read every run in the store (there is no login); use --host 127.0.0.1 to keep it local",
                 True)
        dashboard.start()
        url = url_of(server)
        count = len(dashboard.snapshot.records)
        echo(f"nnexp ui: {count} run{'s' if count != 1 else ''} in {store}; serving {url}  (Ctrl-C to stop)", True)
        if open_browser:
            webbrowser.open(url)
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        dashboard.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    echo("nnexp ui: stopped", True)
