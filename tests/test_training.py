"""Training end to end on tiny synthetic images, validation, checkpoints, the library API and both CLIs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import medclf
from medclf import TrainConfig, ValidateConfig, evaluate, load_checkpoint, model_from_checkpoint, train
from medclf.errors import ConfigError

LABELS = list(medclf.NIH_LABELS)


def tiny_config(csv_path: Path, out: Path, **overrides: object) -> TrainConfig:
    settings = dict(
        csv=str(csv_path),
        out=str(out),
        image_size=32,
        model="densenet_tiny",
        epochs=2,
        batch_size=16,
        device="cpu",
        progress=False,
        cache_workers=2,
        num_workers=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def run(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> medclf.TrainResult:
    return train(tiny_config(synthetic_csv, tmp_path_factory.mktemp("runs") / "exp"))


def test_run_folder_has_checkpoints_logs_and_config(run: medclf.TrainResult) -> None:
    folder = Path(run.run_dir)
    assert (folder / "best.pt").is_file() and (folder / "last.pt").is_file()
    assert list(folder.glob("events.out.tfevents.*"))
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "val_auroc", "val_acc", "lr", "auroc_hernia"} <= set(rows[0])
    config = json.loads((folder / "config.json").read_text())
    assert config["image_size"] == 32 and config["out"] == str(folder) and config["labels"] == LABELS
    assert run.epochs_completed == 2 and run.best_epoch in (1, 2)
    assert run.history[run.best_epoch - 1]["val_auroc"] == run.best_auroc


def test_tensorboard_has_the_scalars(run: medclf.TrainResult) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run.run_dir)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "val/macro_auroc", "val/accuracy", "lr", "val_auroc/effusion"} <= tags
    assert [e.step for e in events.Scalars("val/macro_auroc")] == [1, 2]
    assert {"val/roc_curves", "val/confusion_matrices"} <= set(events.Tags()["images"])  # --figure-every 1
    assert [e.step for e in events.Images("val/roc_curves")] == [1, 2]


def test_validate_reproduces_the_best_epoch_exactly(run: medclf.TrainResult, synthetic_csv: Path) -> None:
    result = evaluate(
        ValidateConfig(
            checkpoint=run.best_checkpoint,
            csv=str(synthetic_csv),
            split="VALIDATION",
            device="cpu",
            progress=False,
            num_workers=0,
        )
    )
    assert result.metrics["macro_auroc"] == run.best_auroc  # exact, not approximate
    metrics = json.loads(Path(result.metrics_json).read_text())
    assert metrics["macro_auroc"] == run.best_auroc
    assert metrics["checkpoint_epoch"] == run.best_epoch
    with open(result.predictions_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["n_images"]
    assert {"image", "true_effusion", "prob_effusion", "pred_effusion"} <= set(rows[0])
    assert Path(result.out_dir) == Path(run.run_dir) / "best_validation"


def test_checkpoint_round_trip_with_weights_only(run: medclf.TrainResult) -> None:
    raw = torch.load(run.best_checkpoint, weights_only=True)
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "epoch",
        "best_metric",
        "labels",
        "image_size",
        "model_name",
        "config",
        "thresholds",
        "history",
    ):
        assert key in raw, key
    state = load_checkpoint(run.best_checkpoint)
    assert state["labels"] == LABELS and state["image_size"] == 32 and state["model_name"] == "densenet_tiny"
    assert state["config"]["epochs"] == 2 and len(state["thresholds"]) == len(LABELS)
    model = model_from_checkpoint(state)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["model"][name]), name
    assert load_checkpoint(Path(run.run_dir))["epoch"] == 2  # a run folder means its last.pt


def test_library_api_and_callable_train_module(synthetic_csv: Path, tmp_path: Path) -> None:
    import medclf.train as command_module  # rebinds the attribute medclf.train to the module

    assert callable(medclf.train)
    result = medclf.train(tiny_config(synthetic_csv, tmp_path / "lib", epochs=1))
    assert isinstance(result, medclf.TrainResult) and result.epochs_completed == 1
    assert command_module.main is not None
    manifest = medclf.Manifest.from_csv(synthetic_csv)
    assert len(manifest.select("TRAIN")) > 0


def test_refuses_to_overwrite_a_run(run: medclf.TrainResult, synthetic_csv: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(synthetic_csv, Path(run.run_dir)))


def test_train_cli_with_config_file(synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from medclf.train import main

    settings = tmp_path / "settings.yaml"
    settings.write_text(f"csv: {synthetic_csv}\nimage-size: 32\nmodel: densenet_tiny\nepochs: 3\nbatch_size: 16\n")
    out = tmp_path / "cli"
    code = main(
        [
            "--config",
            str(settings),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--no-augment",
            "--labels",
            "effusion,mass",
            "hernia",
        ]
    )
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["image_size"] == 32 and saved["augment"] is False
    assert saved["labels"] == ["effusion", "mass", "hernia"] and saved["config"] == str(settings)
    output = capsys.readouterr().out
    assert "epoch 1/1 train_loss" in output and "val_auroc" in output and "tensorboard --logdir" in output


def test_validate_cli(
    run: medclf.TrainResult, synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from medclf.validate import main

    code = main(
        [
            "--checkpoint",
            run.best_checkpoint,
            "--csv",
            str(synthetic_csv),
            "--split",
            "test",
            "--out",
            str(tmp_path / "v"),
            "--no-progress",
            "--num-workers",
            "0",
        ]
    )
    assert code == 0
    output = capsys.readouterr().out
    assert "macro AUROC" in output and "hernia" in output
    assert (tmp_path / "v" / "metrics.json").is_file() and (tmp_path / "v" / "predictions.csv").is_file()


@pytest.mark.parametrize("command", ["medclf.train", "medclf.validate", "medclf.predict", "medclf.explain"])
def test_help(command: str, capsys: pytest.CaptureFixture) -> None:
    import importlib

    main = importlib.import_module(command).main
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--checkpoint" in text or "--csv" in text
    assert "--device" in text and "--config" in text


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from medclf.train import main

    with pytest.raises(SystemExit) as info:
        main(["--epochs", "2"])
    assert info.value.code == 2
    assert "--csv" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(SystemExit):
        main(["--config", str(bad), "--csv", "x.csv"])
    assert "unknown setting(s) epochz" in capsys.readouterr().err
    assert main(["--csv", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().out
