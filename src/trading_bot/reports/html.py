"""The page skeleton: inline CSS, sections, tables, figures, and the one escaping function every
string from outside goes through (a symbol, an error message, a file name). The SVG figures come
from matplotlib, which escapes its own text; everything else here is built from `esc`."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from trading_bot.persistence.atomic_files import atomic_write_bytes

# Small and plain: the file is read on a laptop, printed, or mailed; no web font, no script.
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #999; }
td.pos { color: #0a7d32; } td.neg { color: #b3261e; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #666; font-size: 0.9em; }
.note { color: #666; }
svg text { font-family: 'DejaVu Sans', sans-serif; }
"""  # the last line: the figures' font, which reports/charts.py takes off every <text>


def esc(text: object) -> str:
    """HTML-escaped text, quotes included (safe in element content and in attribute values)."""
    return html.escape(str(text), quote=True)


def signed_class(value: float) -> str:
    return "pos" if value > 0 else "neg" if value < 0 else ""


Cell = str | tuple[str, str]  # text, or (text, CSS class)


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], table_class: str = "") -> str:
    """A table of text cells, every one escaped."""
    def cell(tag: str, value: Cell) -> str:
        text, css = value if isinstance(value, tuple) else (value, "")
        return f"<{tag}{f' class={css!r}' if css else ''}>{esc(text)}</{tag}>"

    head = "".join(cell("th", h) for h in headers)
    body = "\n".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows)
    attr = f' class="{esc(table_class)}"' if table_class else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


def facts(items: Sequence[tuple[str, str, str]]) -> str:
    """A two-column table of (id, label, value): the report's headline figures, each row with its
    own id so a reader (or a test) can find a figure without parsing prose."""
    rows = "\n".join(f'<tr id="{esc(key)}"><th>{esc(label)}</th><td>{esc(value)}</td></tr>'
                     for key, label, value in items)
    return f'<table class="facts"><tbody>\n{rows}\n</tbody></table>'


def figure(svg: str, caption: str) -> str:
    """An inline SVG (matplotlib's, trusted) with an escaped caption."""
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def paragraph(text: str, css: str = "") -> str:
    return f"<p{f' class={css!r}' if css else ''}>{esc(text)}</p>"


def section(anchor: str, title: str, *parts: str) -> str:
    """A section: `anchor` is ours (never user text), the title is escaped, parts are built HTML."""
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def page(title: str, meta: str, sections: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n<p class=\"meta\">{esc(meta)}</p>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")


def write_page(path: Path, text: str) -> None:
    """Temp file, fsync, rename: a reader (a browser refreshing, a web server) never sees half a page."""
    atomic_write_bytes(path, text.encode("utf-8"))
