"""Open a page in headless Chromium and report what a reader would see go wrong.

Talks the Chrome DevTools protocol over `--remote-debugging-pipe` (JSON messages ending in NUL on file
descriptors 3 and 4 of the browser), so no extra package and no TCP port are needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
             "complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))")


@dataclass
class PageCheck:
    images: list[dict]  # {src, complete, width, height} of every <img>, in document order
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[str]:
        return [i["src"] for i in self.images if not (i["complete"] and i["width"] > 0)]


def chromium_missing_reason() -> str | None:
    """None when Chromium can run here, else why the browser test must skip."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not installed (scripts/ensure_chromium.sh installs it as root)"
    return None


class _Pipe:
    """One browser process and its DevTools pipe."""

    def __init__(self, profile: Path, log):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # copies at fd >= 10, so dup2 onto 3 and 4 in the child cannot clobber one before it is copied
        a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)

        def child_fds():  # dup2 clears close-on-exec: only 0-2 and these two survive exec
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                                     preexec_fn=child_fds)
        os.close(a)
        os.close(b)
        self._buf, self._next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 300) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        p, method = e.get("params", {}), e.get("method")
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return out


def check_page(html_file, screenshot: Path | None = None, width: int = 1200) -> PageCheck:
    """Load `html_file` (a local file) and wait for its load event; return images, errors, screenshot."""
    tmp = Path(tempfile.mkdtemp(prefix="difflab-chromium-"))  # a fresh profile every time
    log = open(tmp / "chromium.log", "wb")
    pipe = _Pipe(tmp / "profile", log)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.send(f"{domain}.enable", session=s)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
        pipe.events.clear()  # only what the page itself does counts
        nav = pipe.send("Page.navigate", {"url": Path(html_file).resolve().as_uri()}, session=s)
        if nav.get("errorText"):  # Chromium shows its own error page then, with images of its own
            raise RuntimeError(f"{html_file}: {nav['errorText']}")
        pipe.wait_event("Page.loadEventFired", timeout=600)
        time.sleep(0.3)  # late console messages arrive just after load
        pipe.send("Runtime.evaluate", {"expression": "1"}, session=s)  # flush pending events
        images = json.loads(pipe.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                                      session=s)["result"]["value"])
        result = PageCheck(images, _errors(pipe.events))
        if screenshot is not None:  # the whole page: make the viewport as tall as the content first
            size = pipe.send("Page.getLayoutMetrics", session=s)["cssContentSize"]
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": int(size["height"]), "deviceScaleFactor": 1, "mobile": False},
                      session=s)
            # seconds on an idle machine; minutes when the CPU is shared with a training job
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=s, timeout=600)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
        return result
    finally:
        pipe.close()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
