"""``--help`` and ``--version`` of every command answer without loading torch or MONAI (issue 20, item 5)."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = (
    "train",
    "validate",
    "predict",
    "explain",
    "compare",
    "prepare_nih",
    "prepare_chexpert",
    "prepare_mimic_cxr",
)

# As ``python -m medclf.<command> <flag>``, then report what the process had loaded.
RUN = r"""
import runpy, sys
command, flag = sys.argv[1:]
sys.argv = [f"medclf.{command}", flag]
try:
    runpy.run_module(f"medclf.{command}", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in ("torch", "monai", "matplotlib") if m in sys.modules)
sys.stderr.write(f"\nstatus={code} heavy={','.join(heavy) or 'none'}\n")
"""


@pytest.mark.parametrize("flag", ["--help", "--version"])
@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_version_load_no_torch(command: str, flag: str) -> None:
    done = subprocess.run([sys.executable, "-c", RUN, command, flag], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == "status=0 heavy=none", done.stderr[-2000:]
    assert ("usage:" in done.stdout) if flag == "--help" else done.stdout.startswith("medclf ")


def test_model_choices_come_from_the_registry() -> None:
    from medclf.model.registry import model_names

    done = subprocess.run([sys.executable, "-c", RUN, "train", "--help"], capture_output=True, text=True, timeout=120)
    help_text = " ".join(done.stdout.split())
    assert "{" + ",".join(model_names()) + "}" in help_text
    assert "resnet10" in model_names() and "densenet121" in model_names()
