"""One self-contained HTML5 evaluation page: summary, sortable metrics tables and embedded figures.

The page has inline CSS, one small inline script that sorts a table when a column header is clicked,
and no external resources. Its Content-Security-Policy allows exactly that script (by its SHA-256 hash)
and nothing else; PNG figures are embedded as base64 ``data:`` URIs. All text is escaped with
:func:`html.escape`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Sequence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*(%|\s*[\[(].*[\])])?\s*$")
_PLACEHOLDERS = {"", "n/a", "na", "nan", "none", "undef", "undefined", "-", "\u2013", "\u2014"}

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2430;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 1.7em; margin: 0 0 16px; padding-bottom: 10px; border-bottom: 3px solid #2f6db5; }
h2 { font-size: 1.25em; margin: 32px 0 12px; color: #2f3b4c; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 6px 24px; margin: 0;
  padding: 14px 18px; background: #eef3fa; border-radius: 6px; }
dl.summary dt { font-weight: 600; color: #2f3b4c; }
dl.summary dd { margin: 0; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
.table-wrap table { border-collapse: collapse; width: 100%; font-size: 0.95em; }
.table-wrap th, .table-wrap td { padding: 6px 12px; border-bottom: 1px solid #dde2ea; text-align: left;
  white-space: nowrap; }
.table-wrap thead th { background: #2f6db5; color: #fff; font-weight: 600; position: sticky; top: 0; }
.table-wrap tbody tr:nth-child(even) { background: #f3f6fa; }
.table-wrap tbody tr:hover { background: #e3ecf7; }
.table-wrap tfoot td { font-weight: 600; border-top: 2px solid #2f6db5; }
.table-wrap .num { text-align: right; font-variant-numeric: tabular-nums; }
th button { font: inherit; color: inherit; background: none; border: 0; padding: 0; cursor: pointer; }
th button:focus-visible { outline: 2px solid #fff; outline-offset: 2px; }
th button::after { content: " \\2195"; opacity: 0.55; font-size: 0.85em; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; opacity: 1; }
th[aria-sort="descending"] button::after { content: " \\25BC"; opacity: 1; }
figure { margin: 24px 0; padding: 12px; border: 1px solid #dde2ea; border-radius: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 8px; color: #4a5568; font-size: 0.95em; text-align: center; }
"""

# Makes each header of a report table a button (only then do the CSS arrows appear) that sorts the body
# rows by that column: numbers by their first number ("0.812 [0.78, 0.84]" by 0.812), other columns as
# text; empty, "n/a" and "undefined" cells last either way; clicking again reverses. Footer rows stay.
SORT_SCRIPT = """
(function () {
  "use strict";
  function key(cell, numeric) {
    var text = cell.textContent.trim();
    if (/^(n\\/a|undefined|)$/i.test(text)) { return null; }
    if (!numeric) { return text; }
    var match = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?/i.exec(text);
    return match ? parseFloat(match[0]) : null;
  }
  function sortBy(table, th, column) {
    var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var numeric = th.classList.contains("num");
    Array.prototype.forEach.call(th.parentNode.cells, function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, index) {
      return { row: row, index: index, key: key(row.cells[column], numeric) };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        return a.key === b.key ? a.index - b.index : (a.key === null ? 1 : -1);
      }
      var order = numeric ? a.key - b.key : a.key.localeCompare(b.key, undefined, { numeric: true });
      return order * direction || a.index - b.index;
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
  }
  document.querySelectorAll(".table-wrap table").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, column); });
    });
  });
})();
"""

_NUM = ' class="num"'


def script_hash(script: str) -> str:
    """The CSP source that allows an inline script: ``'sha256-<base64 of the SHA-256 of its UTF-8 text>'``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


_CSP = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {script_hash(SORT_SCRIPT)}"


def render_report(
    title: str,
    summary: Sequence[tuple[str, str]],
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    figures: Sequence[tuple[str, bytes]],
    sections: Sequence[tuple[str, str, Sequence[str], Sequence[Sequence[str]]]] = (),
    *,
    footer: Sequence[Sequence[str]] = (),
    heading: str = "Per-label metrics",
) -> str:
    """Build the page as one HTML5 string (UTF-8, inline CSS, images as ``data:image/png;base64``).

    Every table sorts by a column when its header is clicked (:data:`SORT_SCRIPT`).

    Args:
        title: Page title and heading.
        summary: ``(term, value)`` pairs shown as a definition list, e.g. macro AUROC with its 95% CI.
        columns: Header of the per-label metrics table.
        rows: Table cells, already formatted as text; each row has ``len(columns)`` cells.
        figures: ``(caption, png_bytes)`` pairs, shown in order.
        sections: More tables after the per-label one: ``(id, heading, columns, rows)``.
        footer: Rows after the per-label rows that stay there when the table is sorted (averages).
        heading: Heading of the per-label table.

    Returns:
        The complete document.

    Raises:
        ValueError: a row of the wrong length, or figure bytes that are not a PNG.
    """
    tables = [("per-label", heading, columns, rows), *sections]
    for _, _, table_columns, table_rows in [*tables, ("", "", columns, footer)]:
        for i, row in enumerate(table_rows):
            if len(row) != len(table_columns):
                raise ValueError(f"row {i} has {len(row)} cells for {len(table_columns)} columns")
    for caption, png in figures:
        if not bytes(png[:8]) == PNG_SIGNATURE:
            raise ValueError(f"figure {caption!r} is not a PNG image")

    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{e(title)}</h1>",
    ]
    if summary:
        parts.append('<section id="summary">')
        parts.append('<dl class="summary">')
        parts += [f"<dt>{e(term)}</dt><dd>{e(value)}</dd>" for term, value in summary]
        parts.append("</dl>")
        parts.append("</section>")
    for section_id, table_heading, table_columns, table_rows in tables:
        parts += _table_section(section_id, table_heading, table_columns, table_rows,
                                footer if section_id == "per-label" else ())  # fmt: skip
    if figures:
        parts.append('<section id="figures">')
        parts.append("<h2>Figures</h2>")
        for caption, png in figures:
            data = base64.b64encode(bytes(png)).decode("ascii")
            parts.append(
                f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts += ["</main>", f'<script id="table-sort">{SORT_SCRIPT}</script>', "</body>", "</html>", ""]
    return "\n".join(parts)


def _table_section(
    section_id: str,
    heading: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    footer: Sequence[Sequence[str]] = (),
) -> list[str]:
    e = html.escape
    table_id = "metrics" if section_id == "per-label" else f"{section_id}-table"
    numeric = [_is_numeric_column([str(row[k]) for row in [*rows, *footer]]) for k in range(len(columns))]
    header = "".join(f'<th scope="col"{_NUM if n else ""}>{e(c)}</th>' for c, n in zip(columns, numeric, strict=True))
    parts = [f'<section id="{e(section_id)}">', f"<h2>{e(heading)}</h2>", '<div class="table-wrap">',
             f'<table id="{e(table_id)}">', f"<thead><tr>{header}</tr></thead>"]  # fmt: skip
    for group, tag in ((rows, "tbody"), (footer, "tfoot")):
        if group or tag == "tbody":
            parts += [f"<{tag}>", *(_row(row, numeric) for row in group), f"</{tag}>"]
    return [*parts, "</table>", "</div>", "</section>"]


def _row(cells: Sequence[str], numeric: Sequence[bool]) -> str:
    tds = "".join(f"<td{_NUM if n else ''}>{html.escape(str(v))}</td>" for v, n in zip(cells, numeric, strict=True))
    return f"<tr>{tds}</tr>"


def _is_numeric_column(cells: Sequence[str]) -> bool:
    """True when every cell is a number (optionally with % or an interval) or a placeholder like ``n/a``."""
    numbers = [c for c in cells if c.strip().lower() not in _PLACEHOLDERS]
    return bool(numbers) and all(_NUMBER.match(c) for c in numbers)
