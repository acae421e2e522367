"""The report page in a real browser: headless Chromium (Debian's `chromium`, installed by
scripts/ensure_chromium.sh in `make test`), driven by Playwright (dev extra).

Playwright's own browser download needs the internet, so it drives the system Chromium through
`executable_path`; that runs offline. The test skips, saying why, where either is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# what a reader sees of each <img>: naturalWidth is 0 for a file that is missing or does not decode
IMAGES_JS = ("() => Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
             "complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))")
# seconds on an idle machine; minutes when the CPU is shared with a training job
TIMEOUT_MS = 600_000


def _missing_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not installed (scripts/ensure_chromium.sh installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install -e '.[dev]')"
    return None


REASON = _missing_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@dataclass
class PageCheck:
    images: list[dict]  # {src, complete, width, height} of every <img>, in document order
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads

    @property
    def broken_images(self) -> list[str]:
        return [i["src"] for i in self.images if not (i["complete"] and i["width"] > 0)]


def check_page(html_file, screenshot: Path | None = None, width: int = 1200) -> PageCheck:
    """Load `html_file` (a local file), wait for its load event; its images, errors, full-page screenshot."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []

    def console(m):
        if m.type in ("error", "assert"):  # "Failed to load resource" arrives here too
            errors.append(f"console.{m.type}: {m.text}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", console)
            page.on("pageerror", lambda e: errors.append(f"exception: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"failed load: {r.url} {r.failure}"))
            page.goto(Path(html_file).resolve().as_uri(), wait_until="load", timeout=TIMEOUT_MS)
            page.wait_for_timeout(300)  # late console messages arrive just after load
            result = PageCheck(page.evaluate(IMAGES_JS), errors)
            if screenshot is not None:
                page.screenshot(path=screenshot, full_page=True, timeout=TIMEOUT_MS)
        finally:
            browser.close()
    return result


def test_report_renders_every_image_without_console_errors(report_run, tmp_path):
    out = report_run[0]
    shot = tmp_path / "report.png"
    result = check_page(out / "index.html", screenshot=shot)
    n_tags = (out / "index.html").read_text(encoding="utf-8").count("<img ")
    assert len(result.images) == n_tags >= 10
    assert result.broken_images == []  # every <img> decoded: naturalWidth > 0
    assert result.errors == []
    with Image.open(shot) as im:  # the whole page, not just the first screen
        assert im.width == 1200 and im.height > 3000


def test_checker_sees_broken_images_and_errors(tmp_path):
    # the negative control: the same checks must fail on a page that is broken in each way
    Image.new("RGB", (20, 10), "red").save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "index.html").write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="ok.png"><img src="missing.png"><img src="bad.png">'
        '<script>console.error("boom"); notDefined();</script></body></html>')
    result = check_page(tmp_path / "index.html")
    assert [i["width"] for i in result.images] == [20, 0, 0]
    assert result.broken_images == ["missing.png", "bad.png"]
    text = "\n".join(result.errors)
    assert "console.error: boom" in text and "notDefined" in text and "ERR_FILE_NOT_FOUND" in text
