"""Text from the data (group and column names) made drawable in figures, without font warnings or boxes.

A manifest's values can hold characters the default font (DejaVu Sans) lacks, such as CJK or Hangul
group names, and control characters such as tabs. Matplotlib would draw a box for each and print
``Glyph ... missing from font(s)`` from its own source file. Here the figure text uses the default font
followed by any installed font known to cover those scripts (matplotlib falls back glyph by glyph), and
a character that no font in that list can draw, or a control character, is written escaped instead
(``\\t``, ``\\u5973``). Only figure text changes; data files keep the names as they are.
"""

from __future__ import annotations

import functools
import unicodedata

#: Installed fonts tried, in this order, after the default one; the first that has a glyph draws it.
FALLBACK_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "Noto Sans",
    "Arial Unicode MS",
)


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[tuple[str, frozenset[int]], ...]:
    """(family, code points it has a glyph for) of the default font and the installed fallbacks."""
    from matplotlib import font_manager

    default = font_manager.findfont(font_manager.FontProperties(), fallback_to_default=True)
    first = font_manager.get_font(default)
    found = [(first.family_name, frozenset(first.get_charmap()))]
    installed = {entry.name: entry.fname for entry in font_manager.fontManager.ttflist}
    for name in FALLBACK_FAMILIES:
        if name in installed and all(name != family for family, _ in found):
            found.append((name, frozenset(font_manager.get_font(installed[name]).get_charmap())))
    return tuple(found)


def text_families() -> list[str]:
    """The font families for figure text taken from data: the default font, then installed fallbacks."""
    return [family for family, _ in _fonts()]


def drawable(ch: str) -> bool:
    """Whether a font of :func:`text_families` draws ``ch`` (never a control or format character)."""
    if unicodedata.category(ch)[0] == "C":
        return False
    return ch == " " or any(ord(ch) in charset for _, charset in _fonts())


def drawable_text(text: str) -> str:
    """``text`` with each character no font can draw, and each control character, escaped as Python
    writes it: a tab becomes the two characters ``\\t``, an undrawable ``女`` becomes ``\\u5973``."""
    return "".join(ch if drawable(ch) else ch.encode("unicode_escape").decode("ascii") for ch in str(text))
