"""The report page in a real browser: headless Chromium (Debian's `chromium`, installed by
scripts/ensure_chromium.sh in `make test`), driven over the DevTools protocol (tests/report/browser.py)."""

import pytest
from PIL import Image

from .browser import check_page, chromium_missing_reason

REASON = chromium_missing_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


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
