"""The dashboard as an application: a request (method, target, headers) in, a response out.

``server.py`` carries requests over HTTP; everything a request may do is
decided here, so that the rules hold whatever serves them:

- read-only: GET and HEAD only (anything else is 405), and no answer writes to the store;
- while the server listens on a loopback address, a request whose Host
  header is not a loopback name is refused (403): a web page elsewhere
  cannot reach the dashboard by pointing a DNS name of its own at 127.0.0.1
  (DNS rebinding);
- files only from inside run folders (``folders.py``), with a fixed type;
- every answer carries headers that stop a browser from sniffing types,
  framing the pages or running anything but the dashboard's own scripts, and
  the pages fill in run data with ``textContent`` (never as markup), the
  templates autoescape, and chart texts are escaped (``plot_text``).

Pages are small HTML shells (Jinja2 templates) whose script fetches the JSON
API (``api.py``); JSON answers carry an ETag, so a poller that sends
If-None-Match gets an empty 304 when nothing changed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import ipaddress
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import jinja2

from .. import __version__
from ..compare.charts import plotly_js_path
from ..errors import NnexpError
from ..tracking.reading import FileTooLarge, read_bytes
from .api import Api, ApiError, encode, valid_name
from .folders import MAX_SERVED_FILE, decode_parts, run_file, run_folder
from .snapshot import StoreSnapshot

ALLOWED_METHODS = ("GET", "HEAD")
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cross-Origin-Resource-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT_TYPE
    headers: dict = field(default_factory=dict)


def text(status: int, message: str, **headers) -> Response:
    return Response(status, (message.rstrip("\n") + "\n").encode("utf-8"), TEXT_TYPE,
                    {"Content-Security-Policy": DATA_CSP, **headers})


def is_loopback_host(host: str) -> bool:
    """Whether an address to listen on is a loopback one (127.0.0.0/8, ::1, 'localhost')."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_name(host_header: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name: localhost,
    127.x.y.z or [::1], with any port."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8765
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Static:
    """The dashboard's own scripts and styles, plotly.js among them: read once, kept in
    memory with an ETag and a gzip copy, and linked by a URL that carries the ETag
    (so browsers may keep them as long as they like)."""

    TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

    def __init__(self):
        package = importlib.resources.files("nnexp.ui") / "static"
        self.sources = {
            "app.js": lambda: (package / "app.js").read_bytes(),
            "style.css": lambda: (package / "style.css").read_bytes(),
            "charts.js": lambda: (importlib.resources.files("nnexp.compare") / "templates" / "charts.js").read_bytes(),
            "plotly.min.js": lambda: plotly_js_path().read_bytes(),
        }
        self._files: dict[str, tuple[bytes, str]] = {}
        self._gzipped: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[bytes, str] | None:
        """(content, etag) of a static file; None if there is no such file."""
        if name not in self.sources:
            return None
        with self._lock:
            if name not in self._files:
                body = self.sources[name]()
                self._files[name] = (body, hashlib.sha1(body).hexdigest()[:16])
            return self._files[name]

    def gzipped(self, name: str) -> bytes:
        with self._lock:
            if name not in self._gzipped:
                self._gzipped[name] = gzip.compress(self._files[name][0], compresslevel=6, mtime=0)
            return self._gzipped[name]

    def url(self, name: str) -> str:
        return f"/static/{name}?v={self.get(name)[1]}"


class Dashboard:
    """The dashboard of the store at ``store``; ``loopback``: the server listens on
    a loopback address, so requests must name it by a loopback name."""

    def __init__(self, store, loopback: bool = True, max_age: float = 1.0):
        self.root = Path(store)
        self.loopback = loopback
        self.snapshot = StoreSnapshot(self.root, max_age=max_age)
        self.api = Api(self.root, self.snapshot)
        self.static = Static()
        self.templates = jinja2.Environment(loader=jinja2.PackageLoader("nnexp.ui", "templates"), autoescape=True,
                                            undefined=jinja2.StrictUndefined)
        self.routes = [(re.compile(pattern), getattr(self, name)) for pattern, name in (
            (r"/", "page_runs"),
            (r"/runs/(?P<run_id>[^/]+)", "page_run"),
            (r"/compare", "page_compare"),
            (r"/sweeps", "page_sweeps"),
            (r"/sweeps/(?P<sweep_id>[^/]+)", "page_sweep"),
            (r"/api/?", "api_index"),
            (r"/api/runs", "api_runs"),
            (r"/api/tags", "api_tags"),
            (r"/api/runs/(?P<run_id>[^/]+)", "api_run"),
            (r"/api/runs/(?P<run_id>[^/]+)/metrics", "api_metrics"),
            (r"/api/runs/(?P<run_id>[^/]+)/diagnostics", "api_diagnostics"),
            (r"/api/runs/(?P<run_id>[^/]+)/charts", "api_charts"),
            (r"/api/sweeps", "api_sweeps"),
            (r"/api/sweeps/(?P<sweep_id>[^/]+)", "api_sweep"),
            (r"/api/compare", "api_compare"),
            (r"/static/(?P<name>[^/]+)", "static_file"),
            (r"/files/(?P<rest>.+)", "run_file"),
            (r"/favicon\.ico", "favicon"),
        )]

    # ------------------------------------------------------------ lifecycle --

    def start(self) -> None:
        """Read the store's runs (through its index), then keep them fresh in the background."""
        self.snapshot.load()
        self.snapshot.start()

    def stop(self) -> None:
        self.snapshot.stop()

    # -------------------------------------------------------------- requests --

    def handle(self, method: str, target: str, headers) -> Response:
        """The answer to one request, ready to send; an unexpected exception
        propagates (the server logs it and sends ``internal_error()``)."""
        return self.finish(self._route(method, target, headers), headers)

    def internal_error(self) -> Response:
        """What a client gets when answering failed: a plain message, never a traceback."""
        return self.finish(text(500, "internal error: the dashboard could not answer this request "
                                     "(the details are in the server's log)"), {})

    def _route(self, method: str, target: str, headers) -> Response:
        if method not in ALLOWED_METHODS:
            return text(405, f"method {method[:20]} is not allowed: the dashboard only reads (GET, HEAD)",
                        Allow=", ".join(ALLOWED_METHODS))
        if self.loopback and not loopback_name(headers.get("Host")):
            shown = (headers.get("Host") or "")[:100]
            return text(403, f"refused: the Host header {shown!r} is not a loopback name; while it listens on a "
                             "loopback address, nnexp ui answers only to localhost, 127.0.0.1 and [::1] "
                             "(this stops other web sites from reaching it through DNS rebinding)")
        parts = urlsplit(target)
        path = parts.path or "/"
        try:
            query = dict(parse_qsl(parts.query, keep_blank_values=True, errors="strict", max_num_fields=100))
        except (ValueError, UnicodeDecodeError):
            return self._missing(path, 400, "the query string cannot be read")
        self.snapshot.touch()
        for pattern, view in self.routes:
            match = pattern.fullmatch(path)
            if match:
                response = view(query, **match.groupdict())
                return self._conditional(response, headers)
        return self._missing(path, 404, f"no page {path[:200]!r} here")

    def _conditional(self, response: Response, headers) -> Response:
        """An ETag on every 200; 304 without a body when the client has that version."""
        if response.status != 200:
            return response
        etag = response.headers.get("ETag") or f'"{hashlib.sha1(response.body).hexdigest()[:20]}"'
        response.headers["ETag"] = etag
        asked = headers.get("If-None-Match") or ""
        if etag in [tag.strip() for tag in asked.split(",")]:
            return Response(304, b"", response.content_type,
                            {k: v for k, v in response.headers.items() if k != "Content-Encoding"})
        return response

    def _missing(self, path: str, status: int, message: str) -> Response:
        if path.startswith("/api/"):
            return self._json({"error": message}, status)
        return text(status, message)

    # ------------------------------------------------------------------ pages --

    def render(self, template: str, static=None, href=None, exported: bool = False, **context) -> str:
        """A page's HTML; ``static`` and ``href`` give the URLs of the static files and of
        the pages (an export's are files beside it: ``export.py``)."""
        return self.templates.get_template(template).render(
            static=static or self.static.url, href=href or (lambda path: path), exported=exported,
            charts=template in ("run.html", "compare.html", "sweep.html"), store=str(self.root),
            version=__version__, **context)

    def _page(self, template: str, status: int = 200, **context) -> Response:
        return Response(status, self.render(template, **context).encode("utf-8"), HTML_TYPE,
                        {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    def page_runs(self, query: dict) -> Response:
        return self._page("runs.html", title="Runs", page="runs")

    def page_run(self, query: dict, run_id: str) -> Response:
        run_id = unquote(run_id)
        if run_folder(self.root, run_id) is None:
            return self._page("missing.html", 404, title="No such run", page="missing",
                              message=f"There is no run {run_id!r} in this store.")
        return self._page("run.html", title=f"Run {run_id}", page="run", run_id=run_id)

    def page_compare(self, query: dict) -> Response:
        return self._page("compare.html", title="Compare runs", page="compare")

    def page_sweeps(self, query: dict) -> Response:
        return self._page("sweeps.html", title="Sweeps", page="sweeps")

    def page_sweep(self, query: dict, sweep_id: str) -> Response:
        sweep_id = unquote(sweep_id)
        try:
            self.api.sweep_state(sweep_id)
        except ApiError as exc:
            return self._page("missing.html", 404, title="No such sweep", page="missing", message=str(exc))
        return self._page("sweep.html", title=f"Sweep {sweep_id}", page="sweep", sweep_id=sweep_id)

    # -------------------------------------------------------------------- API --

    def _json(self, value, status: int = 200) -> Response:
        return Response(status, encode(value), JSON_TYPE, {"Content-Security-Policy": DATA_CSP,
                                                           "Cache-Control": "no-cache"})

    def _answer(self, compute) -> Response:
        try:
            return self._json(compute())
        except ApiError as exc:
            return self._json({"error": str(exc)}, exc.status)
        except NnexpError as exc:  # a bad filter, sort or metric: the user's to fix
            return self._json({"error": str(exc)}, 400)

    def _named(self, name: str, compute) -> Response:
        name = unquote(name)
        if not valid_name(name):
            return self._json({"error": f"{name[:100]!r} is not a run or sweep name"}, 404)
        return self._answer(lambda: compute(name))

    def api_index(self, query: dict) -> Response:
        return self._json({"store": str(self.root), "version": __version__, "endpoints": [
            "/api/runs?q=&where=&tag=&status=&sweep=&sort=&order=&offset=&limit=", "/api/tags",
            "/api/runs/<id>", "/api/runs/<id>/metrics?since=", "/api/runs/<id>/diagnostics",
            "/api/runs/<id>/charts", "/api/sweeps", "/api/sweeps/<id>",
            "/api/compare?ids=&sweep=&where=&agg=&sort=&metrics=&group="]})

    def api_runs(self, query: dict) -> Response:
        return self._answer(lambda: self.api.runs(query))

    def api_tags(self, query: dict) -> Response:
        return self._answer(self.api.tags)

    def api_run(self, query: dict, run_id: str) -> Response:
        return self._named(run_id, self.api.run)

    def api_metrics(self, query: dict, run_id: str) -> Response:
        return self._named(run_id, lambda name: self.api.metrics(name, query))

    def api_diagnostics(self, query: dict, run_id: str) -> Response:
        return self._named(run_id, self.api.diagnostics)

    def api_charts(self, query: dict, run_id: str) -> Response:
        return self._named(run_id, self.api.charts)

    def api_sweeps(self, query: dict) -> Response:
        return self._answer(self.api.sweeps)

    def api_sweep(self, query: dict, sweep_id: str) -> Response:
        # Every client of a sweep's page polls this: one answer a second serves them all.
        shared = self.snapshot.cached(("sweep answer", sweep_id), lambda: self._named(sweep_id, self.api.sweep),
                                      at_most_every=1.0, ttl=1.0)
        return Response(shared.status, shared.body, shared.content_type, dict(shared.headers))

    def api_compare(self, query: dict) -> Response:
        return self._answer(lambda: self.api.compare(query))

    # ------------------------------------------------------------------ files --

    def static_file(self, query: dict, name: str) -> Response:
        found = self.static.get(unquote(name))
        if found is None:
            return text(404, "no such file")
        body, etag = found
        return Response(200, body, Static.TYPES.get(Path(name).suffix, "application/octet-stream"),
                        {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=31536000, immutable",
                         "Content-Security-Policy": DATA_CSP, "Vary": "Accept-Encoding", "X-Static": name})

    def run_file(self, query: dict, rest: str) -> Response:
        run_part, _, file_part = rest.partition("/")
        parts = decode_parts(run_part)
        run_dir = run_folder(self.root, parts[0]) if parts and len(parts) == 1 else None
        file_parts = decode_parts(file_part) if file_part else None
        found = run_file(run_dir, file_parts) if run_dir is not None and file_parts else None
        if found is None:
            return text(404, "no such file in a run folder")
        path, content_type = found
        try:
            body = read_bytes(path, MAX_SERVED_FILE)
        except FileTooLarge as exc:
            return text(403, f"refused: this file is too large to show ({exc.strerror})")
        except OSError:  # gone, or replaced by something else than a regular file since it was checked
            return text(404, "no such file in a run folder")
        return Response(200, body, content_type, {"Content-Security-Policy": FILE_CSP, "Cache-Control": "no-cache",
                                                  "Content-Disposition": "inline"})

    def favicon(self, query: dict) -> Response:
        return Response(204, b"", TEXT_TYPE, {"Cache-Control": "public, max-age=86400"})

    def finish(self, response: Response, headers) -> Response:
        """The response as it goes out: the security headers, and plotly.js compressed
        for a client that takes gzip."""
        name = response.headers.pop("X-Static", None)
        if (name and response.status == 200 and len(response.body) > 1024
                and "gzip" in (headers.get("Accept-Encoding") or "")):
            response.body = self.static.gzipped(name)
            response.headers["Content-Encoding"] = "gzip"
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response
