"""``--help`` and ``--version`` of every command answer without loading torch or MONAI (issue 20, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Every ``python -m medclf.X`` command: the top-level modules with a ``main``.
COMMANDS = tuple(sorted(p.stem for p in (ROOT / "medclf").glob("*.py") if "\ndef main(" in p.read_text()))

# As ``python -m medclf.<command> <flag>``, then report what the process had loaded.
RUN = r"""
import runpy, sys
command, *flags = sys.argv[1:]
sys.argv = [f"medclf.{command}", *flags]
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


@pytest.mark.parametrize("name", ["nih", "chexpert", "mimic-cxr"])
def test_help_of_each_data_set_of_prepare_loads_no_torch(name: str) -> None:
    assert {"prepare", "train", "validate", "prepare_nih"} <= set(COMMANDS)
    done = subprocess.run([sys.executable, "-c", RUN, "prepare", name, "--help"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "status=0 heavy=none" in done.stderr and "--out" in done.stdout
