"""The small-data levers (EMA weights, mixup, label smoothing, feature dropout, warm-up, strong augmentation)
and the ``--recipe`` preset: what each does, that they resume exactly, and that they are refused where
they do not apply."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import pytest
import torch

from medclf import TrainConfig, ValidateConfig, evaluate, load_checkpoint, train
from medclf.config import make_settings
from medclf.config.recipes import RECIPE_SETTINGS, departures
from medclf.data.augment import IntensityJitter, mix_pairs, training_augment
from medclf.engine.ema import WeightEMA
from medclf.engine.loss import MaskedBCEWithLogitsLoss
from medclf.engine.optim import lr_factor
from medclf.errors import ConfigError, MedclfError
from medclf.model.networks import add_feature_dropout, build_model
from medclf.train import main as train_main
from tests.test_reliability import tiny

LEVERS = dict(ema_decay=0.9, mixup=0.4, label_smoothing=0.1, dropout=0.3, warmup_epochs=1, scheduler="cosine",
              augment_strength="strong")  # fmt: skip


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_with_every_lever_on_is_exact(synthetic_csv: Path, tmp_path: Path) -> None:
    straight = train(tiny(synthetic_csv, tmp_path / "straight", **LEVERS))
    train(tiny(synthetic_csv, tmp_path / "split", epochs=1, **LEVERS))
    resumed = train(tiny(synthetic_csv, tmp_path / "split", resume=str(tmp_path / "split"), **LEVERS))
    assert resumed.epochs_completed == 2
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert a.ema["updates"] == b.ema["updates"] > 0
    for name, tensor in a.model.items():  # the average
        assert torch.equal(tensor, b.model[name]), name
    for name, tensor in a.ema["train_weights"].items():  # the trained weights
        assert torch.equal(tensor, b.ema["train_weights"][name]), name
    assert metrics_rows(tmp_path / "straight") == metrics_rows(tmp_path / "split")
    assert straight.history[-1]["val_auroc"] == resumed.history[-1]["val_auroc"]


def test_best_pt_holds_the_average_that_was_validated(synthetic_csv: Path, tmp_path: Path) -> None:
    run = train(tiny(synthetic_csv, tmp_path / "r", epochs=1, ema_decay=0.9))
    best, last = load_checkpoint(run.best_checkpoint), load_checkpoint(run.last_checkpoint)
    assert best.ema is None and last.ema is not None  # best.pt: inference only
    assert all(torch.equal(best.model[k], last.model[k]) for k in best.model)  # epoch 1 is both
    trained = last.ema["train_weights"]
    assert any(not torch.equal(trained[k], last.model[k]) for k in trained if trained[k].is_floating_point())
    result = evaluate(ValidateConfig(checkpoint=run.best_checkpoint, csv=[str(synthetic_csv)], split="VALIDATION",
                                     out=str(tmp_path / "v"), device="cpu", progress=False, bootstrap=0,
                                     figures=False))  # fmt: skip
    assert result.metrics["macro_auroc"] == pytest.approx(run.history[0]["val_auroc"], abs=1e-12)


def test_weight_average_follows_its_decay() -> None:
    net = torch.nn.Linear(2, 1)
    ema = WeightEMA(net, decay=0.5)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # update 1: decay min(0.5, 2/11) = 2/11
    expected = start * (2 / 11) + (start + 1) * (9 / 11)
    assert torch.allclose(ema.module.weight, expected)
    assert not ema.module.weight.requires_grad


def test_mixup_keeps_unknown_labels_out_of_the_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 8, 8)
    targets = torch.tensor([[1.0, math.nan], [0.0, 1.0], [math.nan, 0.0], [1.0, 1.0]])
    mixed_images, mixed = mix_pairs(images, targets, 0.4, gen)
    assert mixed_images.shape == images.shape
    order_known = ~torch.isnan(mixed)
    # a mixed target is known only where both of its images' targets are known; never NaN in the loss
    assert order_known.sum() < (~torch.isnan(targets)).sum()
    loss = MaskedBCEWithLogitsLoss()(torch.zeros(4, 2, requires_grad=True), mixed)
    assert torch.isfinite(loss)
    known = mixed[order_known]
    assert ((known >= 0) & (known <= 1)).all()


def test_mixup_draws_are_repeatable_and_keep_each_image_the_larger_part() -> None:
    images, targets = torch.rand(6, 1, 8, 8), torch.randint(0, 2, (6, 3)).float()
    a = mix_pairs(images, targets, 0.2, torch.Generator().manual_seed(3))
    b = mix_pairs(images, targets, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert ((a[1] == targets) | ((a[1] - targets).abs() <= 0.5)).all()


def test_label_smoothing_moves_known_targets_only() -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0, math.nan]])
    smoothed = MaskedBCEWithLogitsLoss(smoothing=0.2)(logits, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, :2], torch.tensor([[0.9, 0.1]]))
    assert torch.allclose(smoothed, expected)
    assert not torch.allclose(MaskedBCEWithLogitsLoss()(logits, targets), smoothed)


def test_validation_loss_has_no_smoothing(synthetic_csv: Path, tmp_path: Path) -> None:
    plain = train(tiny(synthetic_csv, tmp_path / "a", epochs=1, augment=False))
    smooth = train(tiny(synthetic_csv, tmp_path / "b", epochs=1, augment=False, label_smoothing=0.2))
    assert plain.history[0]["train_loss"] != smooth.history[0]["train_loss"]
    # the first epoch's weights differ too, so only check the val loss is a plain BCE (comparable scale)
    assert smooth.history[0]["val_loss"] < smooth.history[0]["train_loss"] + 0.2


def test_feature_dropout_acts_in_training_only_and_leaves_the_state_dict() -> None:
    torch.manual_seed(0)
    net = build_model("densenet_tiny", 3)
    keys = list(net.state_dict())
    add_feature_dropout(net, 0.5)
    assert list(net.state_dict()) == keys
    x = torch.rand(4, 1, 32, 32)
    net.eval()
    plain = build_model("densenet_tiny", 3)
    plain.load_state_dict(net.state_dict())
    plain.eval()
    assert torch.equal(net(x), plain(x))
    net.train()
    plain.train()
    torch.manual_seed(1)
    assert not torch.allclose(net(x), plain(x))


def test_warmup_then_cosine_factors() -> None:
    assert [lr_factor(d, 2, 6, True) for d in range(3)] == [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    assert lr_factor(4, 2, 6, True) == pytest.approx(0.5)
    assert lr_factor(5, 2, 6, False) == 1.0


def test_warmup_lr_is_what_metrics_csv_records(synthetic_csv: Path, tmp_path: Path) -> None:
    run = train(tiny(synthetic_csv, tmp_path / "w", epochs=3, lr=1e-3, warmup_epochs=2, scheduler="none"))
    assert [row["lr"] for row in run.history] == [pytest.approx(1e-3 / 3), pytest.approx(2e-3 / 3), 1e-3]


def test_strong_intensity_jitter_stays_in_range_and_repeats() -> None:
    images = torch.rand(5, 1, 16, 16)
    a = IntensityJitter()(images, torch.Generator().manual_seed(0))
    b = IntensityJitter()(images, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, images)
    assert training_augment(False, "strong", True, 0.0) is None
    assert training_augment(True, "strong", True, 0.0).intensity is not None
    assert training_augment(True, "light", True, 0.0).intensity is None


def test_recipe_sets_defaults_that_flags_override(synthetic_csv: Path) -> None:
    recipe = RECIPE_SETTINGS["small-data"]
    assert recipe, "the small-data recipe sets something"
    config = make_settings(TrainConfig, {"csv": [str(synthetic_csv)], "recipe": "small-data"})
    for name, value in recipe.items():
        assert getattr(config, name) == value, name
    assert config.weight_decay == 0.05 and config.scheduler == "cosine"
    given = make_settings(TrainConfig, {"csv": [str(synthetic_csv)], "recipe": "small-data", "weight_decay": 0.01})
    assert given.weight_decay == 0.01  # the flag wins
    plain = make_settings(TrainConfig, {"csv": [str(synthetic_csv)]})
    assert (plain.weight_decay, plain.scheduler, plain.optimizer) == (0.0, "plateau", "adam")  # today's defaults


def test_recipe_is_saved_with_its_resolved_values(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    code = train_main(["--csv", str(synthetic_csv), "--out", str(out), "--recipe", "small-data", "--epochs", "1",
                       "--image-size", "32", "--model", "densenet_tiny", "--batch-size", "16", "--device", "cpu",
                       "--num-workers", "0", "--no-progress"])  # fmt: skip
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe"] == "small-data" and saved["epochs"] == 1
    for name, value in RECIPE_SETTINGS["small-data"].items():
        if name != "batch_size":
            assert saved[name] == value, name
    assert load_checkpoint(out / "best.pt").config["recipe"] == "small-data"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"warmup_epochs": 1}, "--warmup-epochs needs --scheduler cosine or none"),
        ({"linear_probe": True, "ema_decay": 0.9}, "--linear-probe trains on cached features"),
        ({"ema_decay": 0.3}, "--ema-decay (ema_decay) must be 0 or [0.5, 1)"),
        ({"label_smoothing": 0.7}, "--label-smoothing (label_smoothing) must be in [0, 0.5]"),
        ({"recipe": "tiny-data"}, "--recipe (recipe) must be one of none, small-data"),
    ],
)
def test_levers_refused_where_they_do_not_apply(overrides: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        TrainConfig(csv=["x.csv"], **overrides)
    assert message in str(error.value)


def test_library_call_applies_the_recipe_too(synthetic_csv: Path, tmp_path: Path) -> None:
    run = train(csv=[str(synthetic_csv)], out=str(tmp_path / "lib"), recipe="small-data", epochs=1, image_size=32,
                model="densenet_tiny", batch_size=16, device="cpu", progress=False, num_workers=0)  # fmt: skip
    saved = load_checkpoint(run.last_checkpoint).config
    for name, value in RECIPE_SETTINGS["small-data"].items():
        if name != "batch_size":
            assert saved[name] == value, name
    assert saved["batch_size"] == 16


def test_recipe_departures_are_named_before_a_run_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert departures({"recipe": "small-data", **RECIPE_SETTINGS["small-data"]}) == {}
    assert departures({"recipe": "small-data", **RECIPE_SETTINGS["small-data"], "weight_decay": 0.01}) == {
        "weight_decay": (0.01, 0.05)
    }
    # A TrainConfig built directly does not get the recipe's values: the run says so before anything else.
    config = TrainConfig(csv=[str(tmp_path / "missing.csv")], out=str(tmp_path / "r"), recipe="small-data")
    with caplog.at_level(logging.WARNING, logger="medclf"), pytest.raises(MedclfError):
        train(config)
    assert "--recipe small-data: this run keeps optimizer='adam'" in caplog.text
    assert "instead of the recipe's optimizer='adamw'" in caplog.text
