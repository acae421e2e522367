"""HTML building blocks for the report (every text escaped), and a checker for its links.

The page is self-contained: inline CSS, no scripts, no external assets; images are relative links to
files beside index.html. `check_links` finds links that would break when the folder is moved or served:
absolute paths, other hosts, and relative paths to files that do not exist.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; color: #333; margin-top: 0.4em; }
code, pre { font: 0.86em/1.4 ui-monospace, monospace; background: #f4f4f4; }
pre { padding: 0.5em 0.7em; white-space: pre-wrap; word-break: break-all; margin: 0.3em 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.meta td { text-align: left; } .note { color: #555; font-size: 0.92em; margin-top: 0.2em; }
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def command_block(command: str) -> str:
    return f"<pre><code>{esc(command)}</code></pre>"


def figure(src: str, alt: str, caption: str, command: str | None = None, width: int | None = None) -> str:
    """<figure> with a relative image link, a caption (plain text, escaped) and the command behind it."""
    w = f' width="{int(width)}"' if width else ""
    cmd = f"Regenerate with:{command_block(command)}" if command else ""
    return (f'<figure><img src="{esc(src)}" alt="{esc(alt)}"{w}>'
            f"<figcaption>{esc(caption)} {cmd}</figcaption></figure>")


def table(headers: Sequence[str] | None, rows: Sequence[Sequence], caption: str | None = None,
          cls: str = "") -> str:
    """A plain table (cells: escaped text; format numbers before passing them), its caption below it as
    a paragraph (a <caption> would be squeezed to the table's width)."""
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    klass = f' class="{esc(cls)}"' if cls else ""
    return f"<table{klass}>{head}<tbody>{body}</tbody></table>" + (paragraph(caption, "note") if caption else "")


def paragraph(text: str, cls: str = "") -> str:
    klass = f' class="{esc(cls)}"' if cls else ""
    return f"<p{klass}>{esc(text)}</p>"


def page(title: str, intro: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document; sections = (anchor id, heading, inner HTML). A table of contents on top."""
    toc = "".join(f'<li><a href="#{esc(i)}">{esc(h)}</a></li>' for i, h, _ in sections)
    body = "".join(f'<section id="{esc(i)}"><h2>{esc(h)}</h2>{inner}</section>' for i, h, inner in sections)
    # the empty data: icon stops the browser from requesting /favicon.ico (a console error on file://)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head>'
            f"<body><h1>{esc(title)}</h1>{intro}<nav><ul>{toc}</ul></nav>{body}</body></html>\n")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("src", "href") and value is not None:
                self.links.append((tag, name, value))


def check_links(index_html) -> list[str]:
    """Problems with the links of a page, as 'tag attr="value": why' lines (empty list: all fine).

    Allowed: relative paths to existing files inside the page's folder, #anchors that exist, data: URLs.
    """
    index_html = Path(index_html)
    root = index_html.parent.resolve()
    parser = _Links()
    parser.feed(index_html.read_text(encoding="utf-8"))
    problems = []
    for tag, attr, value in parser.links:
        where = f'{tag} {attr}="{value}"'
        parts = urlsplit(value)
        if parts.scheme == "data":
            continue
        if parts.scheme or parts.netloc:
            problems.append(f"{where}: not a relative link (the report must need no network)")
            continue
        if not parts.path:
            if parts.fragment and parts.fragment not in parser.ids:
                problems.append(f"{where}: no element with this id")
            continue
        if parts.path.startswith("/"):
            problems.append(f"{where}: absolute path (breaks when the folder moves)")
            continue
        target = (root / unquote(parts.path)).resolve()
        if not target.is_relative_to(root):
            problems.append(f"{where}: points outside the report folder")
        elif not target.is_file():
            problems.append(f"{where}: file not found")
    return problems
