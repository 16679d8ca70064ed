"""docs/architecture.md is the map: every module of medclf/ has its row, and every path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "architecture.md"
# A backticked token that names a file or folder of the project (not a pattern such as `<name>.py`).
# Short forms (`data/checks.py`) are paths under medclf/.
PATH = re.compile(
    r"`((?:medclf|tests|docs|scripts|data|config|model|metrics|engine|reporting|workflows)/[\w./-]*"
    r"|setup\.cfg|pyproject\.toml)`"
)


def test_every_module_has_its_row() -> None:
    text = MAP.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(medclf/[\w/]+\.py)` \|", text, flags=re.MULTILINE))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "medclf").rglob("*.py")}
    assert sorted(modules - rows) == [], "modules missing from docs/architecture.md's map"
    assert sorted(rows - modules) == [], "map rows for modules that do not exist"


def test_every_named_path_exists() -> None:
    named = set(PATH.findall(MAP.read_text(encoding="utf-8")))
    assert len(named) > 100  # the map really is read
    missing = sorted(p for p in named if not any((base / p.rstrip("/")).exists() for base in (ROOT, ROOT / "medclf")))
    assert missing == [], "paths named in docs/architecture.md that do not exist"


def test_where_a_change_goes_covers_each_kind_of_change() -> None:
    text = MAP.read_text(encoding="utf-8")
    table = text[text.index("## Where a change goes") :].split("\n## ")[0]
    for change in ("a metric", "a data set to prepare", "an architecture", "a command", "an output file"):
        assert f"\n| {change}" in table, change
