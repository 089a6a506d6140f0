"""A tiny headless-Chromium driver for tests, over the DevTools protocol, stdlib only.

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from
file descriptor 3 and writes responses and events to descriptor 4; every
message is one JSON object followed by a NUL byte. This module starts the
browser with those two descriptors wired to ``os.pipe()`` ends, opens a page,
records what the page logs, and evaluates JavaScript in it::

    with Browser() as browser:
        page = browser.open(path.as_uri())
        assert page.errors() == []
        assert page.evaluate("document.title") == "report"

Every wait has a deadline, and closing kills the process if it does not exit,
so a stuck browser fails one test instead of hanging the suite.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

INSTALL_HINT = ("install Debian's Chromium with `apt-get install chromium` "
                "(or point $NNEXP_CHROMIUM at a Chromium/Chrome executable)")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Containers often have a 64 MB /dev/shm, too small for Chromium's shared memory.
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)

# Started by `python -c` between us and Chromium: moves the two pipe ends that
# subprocess passed (at whatever numbers they had here) to descriptors 3 and 4,
# which is where --remote-debugging-pipe expects them, then becomes Chromium.
# Both ends are first copied above 9 so that moving one cannot clobber the other.
_TRAMPOLINE = """\
import fcntl, os, sys
read_end, write_end = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
os.dup2(read_end, 3)
os.dup2(write_end, 4)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(RuntimeError):
    """Chromium failed to start, answered with an error, or did not answer in time."""


class JavaScriptError(BrowserError):
    """An evaluated expression threw; the message is the exception's description."""


def find_browser() -> str | None:
    """Path of a Chromium-like executable: $NNEXP_CHROMIUM, /usr/bin/chromium, then PATH."""
    override = os.environ.get("NNEXP_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium process driven over a DevTools pipe.

    Args:
        executable: the browser; default `find_browser()`.
        timeout: seconds any single command or wait may take before BrowserError.
    """

    def __init__(self, executable: str | None = None, timeout: float = 30.0):
        self.executable = executable or find_browser()
        if not self.executable:
            raise BrowserError(f"no Chromium found; {INSTALL_HINT}")
        self.timeout = float(timeout)
        self.profile = tempfile.mkdtemp(prefix="nnexp-chromium-")
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self._events: list[dict] = []  # every event seen, in arrival order
        self._inbox: queue.Queue = queue.Queue()
        self._stderr = open(Path(self.profile) / "stderr.log", "w+b")  # noqa: SIM115 (closed in close())

        # Commands travel parent -> child on `to_child`, replies child -> parent on `from_child`.
        child_reads, self._to_child = os.pipe()
        self._from_child, child_writes = os.pipe()
        command = [sys.executable, "-c", _TRAMPOLINE, str(child_reads), str(child_writes),
                   self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        try:
            self.process = subprocess.Popen(
                command, pass_fds=(child_reads, child_writes), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True)
        except OSError as exc:
            self._close_fds(child_reads, child_writes, self._to_child, self._from_child)
            shutil.rmtree(self.profile, ignore_errors=True)
            raise BrowserError(f"cannot start {self.executable}: {exc}") from exc
        # The child has its copies; ours would keep the pipes open after it dies.
        self._close_fds(child_reads, child_writes)
        self._reader = threading.Thread(target=self._read_loop, name="chromium-reader", daemon=True)
        self._reader.start()
        try:
            self.version = self.send("Browser.getVersion")["product"]
        except BrowserError:
            self.close()
            raise

    # -- context manager --
    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- protocol --
    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and wait for its reply; returns the reply's `result`.

        Raises:
            BrowserError: the browser replied with an error, died, or took
                longer than `timeout` seconds (default: the browser's timeout).
        """
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_child, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"{method}: browser pipe closed ({exc}){self._stderr_tail()}") from exc
        reply = self._wait(lambda: self._responses.pop(message["id"], None), timeout, method)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None,
                   after: int = 0) -> dict:
        """Wait for an event named `method` (in `session`), among events numbered >= `after`."""
        def find():
            for event in self._events[after:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            return None
        return self._wait(find, timeout, f"event {method}")

    def events(self, session: str | None = None) -> list[dict]:
        """All events received so far for `session` (None: browser-level ones)."""
        return [e for e in self._events if e.get("sessionId") == session]

    def _wait(self, found, timeout: float | None, what: str):
        """Pump incoming messages until `found()` returns something, or time out."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            result = found()
            if result is not None:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"timed out waiting for {what}{self._stderr_tail()}")
            try:
                message = self._inbox.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self._inbox.empty():
                    raise BrowserError(f"browser exited (code {self.process.returncode}) while "
                                       f"waiting for {what}{self._stderr_tail()}") from None
                continue
            if message is None:  # the reader hit end of file
                raise BrowserError(f"browser closed the pipe while waiting for {what}"
                                   f"{self._stderr_tail()}")
            self._file(message)
            while not self._inbox.empty():  # take everything already there before checking
                more = self._inbox.get_nowait()
                if more is None:
                    self._inbox.put(None)
                    break
                self._file(more)

    def _file(self, message: dict) -> None:
        if "id" in message:
            self._responses[message["id"]] = message
            return
        self._events.append(message)
        if message.get("method") == "Page.javascriptDialogOpening":
            # alert() would block the page until answered: dismiss it (Page.console reports it).
            self._next_id += 1
            dismiss = {"id": self._next_id, "method": "Page.handleJavaScriptDialog",
                       "params": {"accept": False}, "sessionId": message.get("sessionId")}
            try:
                os.write(self._to_child, json.dumps(dismiss).encode() + b"\0")
            except OSError:
                pass

    def _read_loop(self) -> None:
        """Reader thread: split the byte stream at NULs, queue each decoded message."""
        buffer = b""
        try:
            while True:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    if raw:
                        self._inbox.put(json.loads(raw))
        except (OSError, ValueError):
            pass
        finally:
            self._inbox.put(None)

    def _stderr_tail(self) -> str:
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace").strip().splitlines()[-5:]
        except (OSError, ValueError):
            return ""
        return ("\nchromium stderr:\n  " + "\n  ".join(tail)) if tail else ""

    # -- pages --
    def open(self, url: str, timeout: float | None = None) -> Page:
        """Open `url` in a new tab, wait for its load event, return the Page.

        Console output and exceptions are recorded from before navigation starts,
        so errors thrown while the page loads are caught too.
        """
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable", session=session)
        mark = len(self._events)
        reply = self.send("Page.navigate", {"url": url}, session=session)
        if reply.get("errorText"):
            raise BrowserError(f"cannot open {url}: {reply['errorText']}")
        self.wait_event("Page.loadEventFired", session=session, timeout=timeout, after=mark)
        return Page(self, target, session)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the browser to quit; kill it if it has not exited after `timeout` seconds."""
        if getattr(self, "process", None) is not None and self.process.poll() is None:
            try:
                os.write(self._to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            except OSError:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._close_fds(getattr(self, "_to_child", None), getattr(self, "_from_child", None))
        self._to_child = self._from_child = None
        if not self._stderr.closed:
            self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    @staticmethod
    def _close_fds(*fds) -> None:
        for fd in fds:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


class Page:
    """One open tab: evaluate JavaScript, read what it logged."""

    def __init__(self, browser: Browser, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session

    def evaluate(self, expression: str, timeout: float | None = None):
        """Value of a JavaScript expression (JSON-serialisable; promises are awaited).

        Raises:
            JavaScriptError: the expression threw.
        """
        reply = self.browser.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
        }, session=self.session, timeout=timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise JavaScriptError(f"{expression!r} threw: {text}")
        return reply["result"].get("value")

    def console(self) -> list[dict]:
        """Everything the page logged: dicts with kind, level and text.

        kind is 'console' (console.* calls), 'exception' (uncaught errors),
        'log' (the browser's own messages: failed loads, CSP violations, ...) or
        'dialog' (alert/confirm/prompt, dismissed; level 'error').
        """
        messages = []
        for event in self.browser.events(self.session):
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
                messages.append({"kind": "console", "level": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text", "")
                messages.append({"kind": "exception", "level": "error", "text": text})
            elif method == "Page.javascriptDialogOpening":
                messages.append({"kind": "dialog", "level": "error",
                                 "text": f"{params.get('type')}: {params.get('message')}"})
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                messages.append({"kind": "log", "level": entry.get("level"),
                                 "text": f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()})
        return messages

    def errors(self) -> list[dict]:
        """The console messages that signal a problem: errors, failed asserts, exceptions."""
        return [m for m in self.console() if m["level"] in ("error", "assert")]

    def requested_urls(self) -> list[str]:
        """URLs of every network request the page made (file:// and data: included)."""
        return [e["params"]["request"]["url"] for e in self.browser.events(self.session)
                if e["method"] == "Network.requestWillBeSent"]

    def move_mouse(self, x: float, y: float) -> None:
        """Move the mouse to (x, y) in CSS pixels of the viewport, as a user would (hover)."""
        self.browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y}, session=self.session)

    def click(self, x: float, y: float) -> None:
        """Press and release the left mouse button at (x, y), as a user would."""
        self.move_mouse(x, y)
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                           "clickCount": 1}, session=self.session)

    def center_of(self, selector: str) -> tuple[float, float]:
        """The viewport coordinates of the middle of the first element matching ``selector``,
        scrolled into view first."""
        box = self.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        return box[0], box[1]

    def screenshot(self, path, full_page: bool = True) -> Path:
        """Save the page as a PNG (for looking at a failure); returns the path."""
        reply = self.browser.send("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": full_page}, session=self.session)
        path = Path(path)
        path.write_bytes(base64.b64decode(reply["data"]))
        return path

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
