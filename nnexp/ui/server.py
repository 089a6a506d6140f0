"""Serving the dashboard over HTTP with the standard library's threaded server.

``http.server.ThreadingHTTPServer`` gives each connection its own thread,
so a slow client never holds up the others; connections are kept alive
(HTTP/1.1), so a page that polls reuses one. Why this server and not a
package is in docs/design.md ("The dashboard's server"). This module only
carries requests: ``app.Dashboard`` decides every answer.

An exception while answering is logged here with its traceback and the
client gets a plain "internal error" (``Dashboard.internal_error``); the
server's own errors for malformed requests are plain text too. Ctrl-C (or
SIGTERM) stops the server cleanly: it stops accepting, closes its socket
and the background refresher, and returns.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import __version__
from ..errors import NnexpError
from .app import Dashboard, Response, is_loopback_host, text

logger = logging.getLogger(__name__)
access_log = logging.getLogger("nnexp.ui.access")


class DashboardServer(ThreadingHTTPServer):
    """A threaded HTTP server answering with ``dashboard``."""

    daemon_threads = True  # a connection left open does not keep the process alive at exit
    request_queue_size = 128  # many pollers connecting at once wait in the backlog, not refused

    def __init__(self, address: tuple, dashboard: Dashboard):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dashboard = dashboard
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # a client that went away mid-answer
            return
        logger.error("error on a connection from %s", client_address[0], exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"nnexp-ui/{__version__}"
    sys_version = ""
    timeout = 60  # seconds an idle kept-alive connection (and its thread) waits for another request

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm holds the body
        # back until the client's delayed ACK (docs/benchmarks.md, "The dashboard").
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return self.server_version

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
