"""One self-contained HTML5 evaluation page: summary, per-label metrics table and embedded figures.

The page has inline CSS only, no JavaScript and no external resources (a Content-Security-Policy says so);
PNG figures are embedded as base64 ``data:`` URIs. All text is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
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
table#metrics { border-collapse: collapse; width: 100%; font-size: 0.95em; }
table#metrics th, table#metrics td { padding: 6px 12px; border-bottom: 1px solid #dde2ea; text-align: left;
  white-space: nowrap; }
table#metrics thead th { background: #2f6db5; color: #fff; font-weight: 600; position: sticky; top: 0; }
table#metrics thead th::after { content: " \\2195"; opacity: 0.55; font-size: 0.85em; }
table#metrics tbody tr:nth-child(even) { background: #f3f6fa; }
table#metrics tbody tr:hover { background: #e3ecf7; }
table#metrics .num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 24px 0; padding: 12px; border: 1px solid #dde2ea; border-radius: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 8px; color: #4a5568; font-size: 0.95em; text-align: center; }
"""

_NUM = ' class="num"'
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render_report(
    title: str,
    summary: Sequence[tuple[str, str]],
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    figures: Sequence[tuple[str, bytes]],
    sections: Sequence[tuple[str, str, Sequence[str], Sequence[Sequence[str]]]] = (),
) -> str:
    """Build the page as one HTML5 string (UTF-8, inline CSS, images as ``data:image/png;base64``).

    Args:
        title: Page title and heading.
        summary: ``(term, value)`` pairs shown as a definition list, e.g. macro AUROC with its 95% CI.
        columns: Header of the per-label metrics table.
        rows: Table cells, already formatted as text; each row has ``len(columns)`` cells.
        figures: ``(caption, png_bytes)`` pairs, shown in order.
        sections: More tables after the per-label one: ``(id, heading, columns, rows)``.

    Returns:
        The complete document.

    Raises:
        ValueError: a row of the wrong length, or figure bytes that are not a PNG.
    """
    for _, _, table_columns, table_rows in [("", "", columns, rows), *sections]:
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
    for section_id, heading, table_columns, table_rows in [
        ("per-label", "Per-label metrics", columns, rows),
        *sections,
    ]:
        parts += _table_section(section_id, heading, table_columns, table_rows)
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
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _table_section(section_id: str, heading: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    e = html.escape
    table_id = "metrics" if section_id == "per-label" else f"{section_id}-table"
    numeric = [_is_numeric_column([str(row[k]) for row in rows]) for k in range(len(columns))]
    header = "".join(f'<th scope="col"{_NUM if n else ""}>{e(c)}</th>' for c, n in zip(columns, numeric, strict=True))
    parts = [f'<section id="{e(section_id)}">', f"<h2>{e(heading)}</h2>", '<div class="table-wrap">',
             f'<table id="{e(table_id)}">', f"<thead><tr>{header}</tr></thead>", "<tbody>"]  # fmt: skip
    for row in rows:
        cells = "".join(f"<td{_NUM if n else ''}>{e(str(v))}</td>" for v, n in zip(row, numeric, strict=True))
        parts.append(f"<tr>{cells}</tr>")
    return [*parts, "</tbody>", "</table>", "</div>", "</section>"]


def _is_numeric_column(cells: Sequence[str]) -> bool:
    """True when every cell is a number (optionally with % or an interval) or a placeholder like ``n/a``."""
    numbers = [c for c in cells if c.strip().lower() not in _PLACEHOLDERS]
    return bool(numbers) and all(_NUMBER.match(c) for c in numbers)
