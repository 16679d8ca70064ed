"""report.html: one inline sort script allowed by its hash in the CSP, arrows only where sorting works,
intervals in the per-label table, and (with Chromium) a click that sorts."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medclf.metrics.summary import evaluation_report
from medclf.reporting.evaluation_page import evaluation_page
from medclf.reporting.html import SORT_SCRIPT, render_report

LABELS = ["atelectasis", "effusion", "hernia", "mass", "nodule"]
SCRIPT = re.compile(r"<script[^>]*>(.*?)</script>", re.DOTALL)


def metrics() -> dict[str, Any]:
    """An evaluation's metrics.json content: a real report on random data plus validate's extra keys."""
    rng = np.random.default_rng(3)
    targets = (rng.random((200, 5)) < 0.3).astype(np.float32)
    targets[:, 2] = 0  # hernia: no positives, so its AUROC and sensitivity are undefined
    probs = np.clip(rng.random((200, 5)) * 0.8 + targets * 0.25, 0, 1).astype(np.float32)
    report = evaluation_report(torch.from_numpy(probs), torch.from_numpy(targets), LABELS, [0.5] * 5, n_bootstrap=50)
    ece = dict.fromkeys([*LABELS, "macro"], 0.05)
    return {**report, "checkpoint": "runs/x/best.pt", "checkpoint_epoch": 3, "csv": "data.csv", "split": "TEST",
            "absent_labels": [], "skipped_images": [], "thresholds_from": "checkpoint (Youden's J on VALIDATION)",
            "tta": None, "subgroups": None,
            "calibration": {"applied": False, "temperatures_from": "none", "temperatures": None,
                            "before": {"ece": ece, "brier": ece}, "after": None}}  # fmt: skip


def csp_of(page: str) -> str:
    return re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)


def test_the_csp_allows_exactly_the_one_script_by_its_hash() -> None:
    page = evaluation_page(metrics(), [])
    scripts = SCRIPT.findall(page)
    assert len(scripts) == 1 and page.count("<script") == 1 and scripts[0] == SORT_SCRIPT
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode("ascii")
    policy = dict(part.strip().split(" ", 1) for part in csp_of(page).split(";"))
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert policy["default-src"] == "'none'" and "unsafe-inline" not in policy["script-src"]


def test_arrows_only_on_the_buttons_the_script_adds() -> None:
    page = evaluation_page(metrics(), [])
    css = re.search(r"<style>(.*?)</style>", page, re.DOTALL).group(1)
    arrows = [rule for rule in css.splitlines() if "::after" in rule and "content" in rule]
    assert arrows and all(rule.startswith(("th button::after", "th[aria-sort=")) for rule in arrows)
    assert all("button::after" in rule for rule in arrows)
    # Before the script runs there are no buttons and no sort state, so no arrow shows.
    markup = SCRIPT.sub("", re.sub(r"<style>.*?</style>", "", page, flags=re.DOTALL))
    assert "<button" not in markup and "aria-sort" not in markup and "<th " in markup
    assert set(re.findall(r'aria-sort="(\w+)"', css)) == {"ascending", "descending"}
    assert set(re.findall(r'aria-sort="(\w+)"', SORT_SCRIPT)) <= {"ascending", "descending"}


def test_per_label_table_shows_rate_intervals_and_keeps_averages_in_the_footer() -> None:
    data = metrics()
    page = evaluation_page(data, [])
    effusion = data["per_label"][1]
    cell = (
        f"{effusion['sensitivity']:.3f} [{effusion['sensitivity_ci_low']:.3f}, {effusion['sensitivity_ci_high']:.3f}]"
    )
    assert f'<td class="num">{cell}</td>' in page
    assert '<th scope="col" class="num">NPV [95% CI]</th>' in page
    footer = re.search(r"<tfoot>(.*?)</tfoot>", page, re.DOTALL).group(1)
    assert "macro average" in footer and "micro average" in footer
    assert "Accuracy at the VALIDATION-chosen thresholds" in page and "Accuracy at 0.5" in page
    assert "F1 and accuracy at the VALIDATION-chosen thresholds" in page


def test_sections_keep_working_and_are_sortable_tables() -> None:
    sections = [("extra", "Extra", ["name", "n"], [["b", "2"], ["a", "10"]])]
    page = render_report("t", [], ["label", "AUROC"], [["x", "0.5"]], [], sections=sections, footer=[["avg", "0.5"]])
    assert '<table id="extra-table">' in page and page.count('<div class="table-wrap">') == 2
    assert '<th scope="col" class="num">n</th>' in page
    with pytest.raises(ValueError):
        render_report("t", [], ["a", "b"], [], [], footer=[["only one"]])


CLICKS = """
(function () {
  function order(table, column) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[column].textContent; });
  }
  function state(table) {
    return Array.prototype.map.call(table.tHead.rows[0].cells, function (th) {
      return th.getAttribute("aria-sort") || "";
    });
  }
  var table = document.getElementById("metrics");
  var heads = table.tHead.rows[0].cells;
  var result = {buttons: table.querySelectorAll("th button").length};
  heads[1].querySelector("button").click();
  result.ascending = order(table, 1); result.stateAfterOne = state(table);
  heads[1].querySelector("button").click();
  result.descending = order(table, 1); result.stateAfterTwo = state(table);
  heads[0].querySelector("button").click();
  result.byLabel = order(table, 0);
  result.footer = table.tFoot.rows.length;
  var out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
})();
"""


def test_clicking_a_header_sorts_in_headless_chromium(tmp_path: Path) -> None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed; the click is not checked")
    page = evaluation_page(metrics(), [])
    # The test's own script goes after the page's, allowed by adding its hash to the page's policy.
    digest = base64.b64encode(hashlib.sha256(CLICKS.encode("utf-8")).digest()).decode("ascii")
    page = page.replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
    page = page.replace("</body>", f"<script>{CLICKS}</script>\n</body>", 1)
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
               "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'p'}",
               "--dump-dom", path.as_uri()]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False).stdout
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["buttons"] == 12 and result["footer"] == 2
    first = [float(c.split()[0]) for c in result["ascending"] if c != "n/a"]
    assert first == sorted(first) and result["ascending"][-1] == "n/a"  # hernia: undefined, last
    assert result["descending"][:-1] == result["ascending"][-2::-1] and result["descending"][-1] == "n/a"
    assert result["stateAfterOne"] == ["", "ascending", *[""] * 10]
    assert result["stateAfterTwo"] == ["", "descending", *[""] * 10]
    assert result["byLabel"] == sorted(LABELS)
