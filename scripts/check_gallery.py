#!/usr/bin/env python3
"""Open an HTML page in real headless Chromium and check it.

    python scripts/check_gallery.py results/index.html --screenshot gallery.png

Loads the page from the file system, makes every image load (lazy ones too),
and reports each image's natural width, every console message of level error
and every uncaught exception.  Exits 1 when an image did not load or an error
was logged.  Talks to Chromium over the DevTools protocol with a small
standard-library websocket client, so it needs nothing but a `chromium` binary
(Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Make lazy images load, then wait until each has loaded or failed (or time runs out).
WAIT_FOR_IMAGES = """
new Promise(resolve => {
  const started = Date.now();
  const images = Array.from(document.images);
  const failed = new Set();
  images.forEach(image => {
    image.addEventListener('error', () => failed.add(image));
    image.loading = 'eager';
  });
  const settled = image => (image.complete && image.naturalWidth > 0) || failed.has(image)
    || (image.complete && Date.now() - started > 2000);  // broken before we listened
  (function poll() {
    if (images.every(settled) || Date.now() - started > %d) {
      resolve(images.map(image => ({src: image.getAttribute('src'), naturalWidth: image.naturalWidth,
                                    complete: image.complete})));
    } else {
      setTimeout(poll, 100);
    }
  })();
})
"""


def find_browser() -> str | None:
    """The path of a Chromium-like browser, or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override) or (override if os.path.isfile(override) else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames, client side."""

    def __init__(self, url: str, timeout: float):
        assert url.startswith("ws://"), url
        rest = url[len("ws://") :]
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head.decode(errors='replace')}")

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", length)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", length)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self.buffer)))
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, final = first & 0x0F, first & 0x80
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:  # ping: answer with pong
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if final:
                    return message.decode()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class DevTools:
    """Commands and events of one page target."""

    def __init__(self, url: str, timeout: float):
        self.ws = WebSocket(url, timeout)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        wanted = self.next_id
        self.ws.send(json.dumps({"id": wanted, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> dict:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.receive())
            if "method" in message:
                self.events.append(message)
                if message["method"] == event:
                    return message
        raise TimeoutError(f"no {event} within {timeout}s")


def _errors(events: list[dict], warnings: bool = False) -> list[str]:
    """The console errors, uncaught exceptions and browser log errors among ``events``
    (and the warnings too with ``warnings``)."""
    console = ("error", "assert", "warning") if warnings else ("error", "assert")
    levels = ("error", "warning") if warnings else ("error",)
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in console:
            texts = [str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])]
            found.append("console." + params["type"] + ": " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in levels:
            entry = params["entry"]
            found.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return found


class ChromiumSession:
    """One headless Chromium with one page, driven over the DevTools protocol; a context
    manager (the browser stops on exit).  ``open`` a file or URL, then ``evaluate``
    JavaScript in it, ``wait`` for a condition, and read its ``errors`` and ``images``."""

    def __init__(self, browser: str | None = None, timeout: float = 60.0, width: int = 1280, height: int = 1600):
        self.browser = browser or find_browser()
        if not self.browser:
            raise FileNotFoundError("no chromium binary found (apt-get install chromium)")
        self.timeout = timeout
        self.size = (width, height)
        self.process: subprocess.Popen | None = None
        self.tools: DevTools | None = None
        self.profile: str | None = None
        self._mark = 0

    def __enter__(self) -> ChromiumSession:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the browser and attach to its page."""
        self.profile = tempfile.mkdtemp(prefix="cnnvis-chromium-")
        width, height = self.size
        command = [
            self.browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            port_file = Path(self.profile) / "DevToolsActivePort"
            deadline = time.monotonic() + self.timeout
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"chromium exited with status {self.process.returncode}: "
                        f"{self.process.stderr.read().decode(errors='replace')[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as response:
                targets = json.load(response)
            target = next(t for t in targets if t.get("type") == "page")
            self.tools = DevTools(target["webSocketDebuggerUrl"], self.timeout)
            for domain in ("Page", "Runtime", "Log"):
                self.tools.call(f"{domain}.enable")
            self.tools.events.clear()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        if self.tools:
            self.tools.ws.close()
            self.tools = None
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def open(self, page: str | Path) -> None:
        """Go to ``page`` (a file's path, or a URL such as ``file:///...?a=b``) and wait for its
        load event (not for a change of the address's fragment alone, which loads nothing;
        the address the page is at already is loaded again).  ``errors`` counts from here."""
        text = str(page)
        url = text if "://" in text or text.startswith("about:") else Path(text).resolve().as_uri()
        again = self.evaluate("location.href") == url  # the very same address: load it again
        self.tools.events.clear()
        self._mark = 0
        if again:
            self.tools.call("Page.reload", ignoreCache=True)
            self.tools.wait_for("Page.loadEventFired", self.timeout)
            return
        result = self.tools.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {result['errorText']}")
        if result.get("loaderId"):  # a new document: wait for it to load
            self.tools.wait_for("Page.loadEventFired", self.timeout)

    def evaluate(self, expression: str, await_promise: bool = False):
        """The value of a JavaScript expression in the page (JSON-like); raises on an exception."""
        result = self.tools.call(
            "Runtime.evaluate", expression=expression, awaitPromise=await_promise, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"JavaScript failed: {text}\n  in: {expression[:200]}")
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 10.0, interval: float = 0.02):
        """Poll until the JavaScript ``condition`` is truthy; its value.  TimeoutError with
        the page's errors so far otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(condition)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout}s: {condition}; errors: {self.errors(warnings=True)}")
            time.sleep(interval)

    def click(self, selector: str) -> None:
        """Click the first element that ``selector`` matches."""
        self.evaluate(
            f"(() => {{ const node = document.querySelector({json.dumps(selector)});"
            f" if (!node) throw new Error('nothing matches ' + {json.dumps(selector)}); node.click(); }})()"
        )

    def select(self, selector: str, value: str) -> None:
        """Choose ``value`` in the <select> that ``selector`` matches, as a user would (a 'change' event)."""
        self.evaluate(
            f"(() => {{ const node = document.querySelector({json.dumps(selector)});"
            f" if (!node) throw new Error('nothing matches ' + {json.dumps(selector)});"
            f" const value = {json.dumps(value)};"
            " if (!Array.from(node.options).some(option => option.value === value))"
            "   throw new Error('no option ' + value + ' in ' + node.id + ': '"
            "     + Array.from(node.options).map(option => option.value).join(', '));"
            " node.value = value; node.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )

    def errors(self, warnings: bool = False) -> list[str]:
        """The errors (and with ``warnings`` the warnings) the page logged since ``open``."""
        self.tools.call("Runtime.evaluate", expression="0")  # take in the events sent so far
        return _errors(self.tools.events[self._mark :], warnings)

    def images(self, timeout: float | None = None) -> list[dict]:
        """Every <img> of the page (lazy ones made eager) once loaded or failed: ``src``,
        ``naturalWidth`` (0: not loaded) and ``complete``."""
        timeout = self.timeout if timeout is None else timeout
        return self.evaluate(WAIT_FOR_IMAGES % int(timeout * 500), await_promise=True)

    def screenshot(self, path: str | Path) -> None:
        """Write a PNG of the whole page."""
        shot = self.tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))


def check_page(
    page: str | Path,
    screenshot: str | Path | None = None,
    timeout: float = 60.0,
    browser: str | None = None,
    width: int = 1280,
    height: int = 1600,
) -> dict:
    """Load ``page`` in headless Chromium; ``{"images": [...], "errors": [...], "title": ...}``."""
    with ChromiumSession(browser, timeout, width, height) as session:
        session.open(page)
        images = session.images()
        title = session.evaluate("document.title")
        time.sleep(0.2)  # let late console messages arrive
        errors = session.errors()
        if screenshot:
            session.screenshot(screenshot)
        return {"images": images, "errors": errors, "title": title}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="HTML file to open")
    parser.add_argument("--screenshot", help="write a full-page PNG screenshot here")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    result = check_page(args.page, args.screenshot, args.timeout)
    broken = [image for image in result["images"] if not image["naturalWidth"]]
    print(f"{len(result['images'])} images, {len(broken)} not loaded, {len(result['errors'])} console errors")
    for image in broken:
        print(f"not loaded: {image['src']}")
    for error in result["errors"]:
        print(f"error: {error}")
    return 1 if broken or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
