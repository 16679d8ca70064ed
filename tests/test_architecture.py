"""The layout rules of docs/architecture.md, and checkpoints written by medclf 0.1.0."""

import ast
from pathlib import Path

import pytest
import torch

from medclf import load_checkpoint, model_from_checkpoint
from medclf.model.checkpoint import Checkpoint, save_checkpoint

PACKAGE = Path(__file__).resolve().parents[1] / "medclf"
OLD_CHECKPOINT = Path(__file__).parent / "fixtures" / "checkpoint_0_1_0.pt"


def test_functions_and_modules_are_short() -> None:
    long_functions, long_modules = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 350:
            long_modules.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines")
    assert not long_functions, long_functions
    assert not long_modules, long_modules


def test_every_command_has_a_console_script() -> None:
    setup = (PACKAGE.parent / "setup.cfg").read_text(encoding="utf-8")
    commands = [p.stem for p in PACKAGE.glob("*.py") if "def main(" in p.read_text(encoding="utf-8")]
    assert sorted(commands) == [
        "compare",
        "crossval",
        "explain",
        "export",
        "import_weights",
        "learning_curve",
        "predict",
        "prepare",
        "prepare_chexpert",
        "prepare_mimic_cxr",
        "prepare_nih",
        "train",
        "validate",
    ]
    for name in commands:
        assert f"medclf-{name.replace('_', '-')} = medclf.{name}:main" in setup


def test_checkpoint_written_by_0_1_0_still_loads(tmp_path: Path) -> None:
    # best.pt of a 2-epoch densenet_tiny run on starter256 at 32 px, written before the typed checkpoint.
    checkpoint = load_checkpoint(OLD_CHECKPOINT)
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.model_name == "densenet_tiny" and checkpoint.image_size == 32 and checkpoint.epoch == 2
    assert len(checkpoint.labels) == 14 and len(checkpoint.thresholds) == 14 and len(checkpoint.history) == 2
    assert checkpoint["labels"] == checkpoint.labels and checkpoint.get("missing", 7) == 7  # 0.1.0 dict reads
    model = model_from_checkpoint(checkpoint)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 14)

    # Saving the typed object writes the same keys and values as 0.1.0 did, plus the newer fields
    # (temperatures: none fitted in 0.1.0, so raw outputs are used; provenance: not recorded then; input: the
    # input convention, {} for medclf's own, [0, 1] and the whole image, which is what 0.1.0 used).
    assert checkpoint.temperatures == []
    save_checkpoint(tmp_path / "again.pt", checkpoint)
    raw_old = torch.load(OLD_CHECKPOINT, weights_only=True)
    raw_new = torch.load(tmp_path / "again.pt", weights_only=True)
    assert set(raw_new) == set(raw_old) | {"temperatures", "provenance", "input", "ema"}
    assert raw_new["temperatures"] == [] and raw_new["provenance"] == {} and raw_new["input"] == {}
    for name, tensor in raw_old["model"].items():
        assert torch.equal(tensor, raw_new["model"][name]), name
    assert raw_new["history"] == raw_old["history"] and raw_new["config"] == raw_old["config"]


def test_checkpoint_round_trip_and_required_fields() -> None:
    state = {"model": {"w": torch.ones(2)}, "model_name": "densenet_tiny", "labels": ["a"], "image_size": 8}
    checkpoint = Checkpoint.from_dict(state, "x.pt")
    assert Checkpoint.from_dict(checkpoint.to_dict(), "x.pt") == checkpoint
    with pytest.raises(Exception, match="lacks image_size"):
        Checkpoint.from_dict({k: v for k, v in state.items() if k != "image_size"}, "x.pt")


def test_help_is_grouped_plain_text_and_every_command_has_version(capsys) -> None:
    import dataclasses

    from medclf import __version__, config
    from medclf.cli import build_parser

    for name, groups in config.HELP_GROUPS.items():
        fields = {f.name for f in dataclasses.fields(getattr(config, name))}
        listed = [n for _, names in groups for n in names]
        assert set(listed) <= fields and len(listed) == len(set(listed)), name
    text = build_parser(config.TrainConfig, "prog", "``python -m medclf.train``: train.\n\nExample::").format_help()
    for heading in ("data:", "model:", "optimisation:", "schedule:", "hardware:", "cache:", "run:"):
        assert f"\n{heading}\n" in text
    assert "``" not in text and "::" not in text
    with pytest.raises(SystemExit):
        build_parser(config.ValidateConfig, "prog", "").parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"medclf {__version__}"
