"""Missing (blank) and uncertain (-1) labels: manifest, uncertainty policy, masked loss and metrics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from medclf import Manifest, TrainConfig, ValidateConfig, evaluate, load_checkpoint, train
from medclf.engine.loss import MaskedBCEWithLogitsLoss
from medclf.metrics.auroc import classification_metrics, youden_thresholds
from medclf.metrics.bootstrap import bootstrap_auroc
from medclf.metrics.summary import evaluation_report


def masked_data(n: int = 300, n_labels: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < 0.3).astype(np.float64)
    probs = np.clip(targets * 0.3 + rng.random((n, n_labels)) * 0.7, 0, 1)
    targets[rng.random((n, n_labels)) < 0.25] = np.nan
    targets[:, 3] = np.where(np.isnan(targets[:, 3]), 0.0, targets[:, 3])  # one fully labelled column
    return torch.tensor(probs), torch.tensor(targets)


def test_manifest_reads_uncertain_and_missing_and_applies_the_policy(tmp_path: Path) -> None:
    for name in "abcdef":
        (tmp_path / f"{name}.png").write_bytes(b"")
    text = "image,split,effusion,mass\na.png,TRAIN,1,0\nb.png,TRAIN,-1,\nc.png,TRAIN,1.0,NaN\nd.png,TRAIN,0.0,-1.0\n"
    text += "e.png,VALIDATION,0,1\nf.png,VALIDATION,,1\n"
    (tmp_path / "m.csv").write_text(text)
    manifest = Manifest.from_csv(tmp_path / "m.csv", ("effusion", "mass"), check_files=True)
    counts = manifest.label_counts("TRAIN")
    assert counts["effusion"] == {"positives": 2, "negatives": 1, "uncertain": 1, "missing": 0}
    assert counts["mass"] == {"positives": 0, "negatives": 1, "uncertain": 1, "missing": 2}
    table = manifest.positives()
    assert list(table.columns) == ["split", "label", "positives", "negatives", "uncertain", "missing"]
    train = table[table["split"] == "TRAIN"].set_index("label")
    assert train.loc["mass"].tolist() == ["TRAIN", 0, 1, 1, 2]
    assert table[table["split"] == "VALIDATION"].set_index("label").loc["effusion", "missing"] == 1
    ignore = manifest.targets("TRAIN", "ignore")
    assert np.isnan(ignore[1, 0]) and np.isnan(ignore[1, 1]) and np.isnan(ignore[2, 1]) and np.isnan(ignore[3, 1])
    assert manifest.targets("TRAIN", "ones")[1, 0] == 1 and manifest.targets("TRAIN", "zeros")[3, 1] == 0
    assert np.isnan(manifest.targets("TRAIN", "ones")[1, 1])  # missing stays masked under every policy
    record = manifest.records("VALIDATION")[1]
    assert np.isnan(record["effusion"][0]) and record["mass"][0] == 1


def test_masked_loss_is_the_mean_over_labelled_entries() -> None:
    logits = torch.randn(6, 3, requires_grad=True)
    targets = torch.tensor([[1, 0, float("nan")], [0, float("nan"), 1], [1, 1, 0]] * 2, dtype=torch.float32)
    known = ~torch.isnan(targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    loss = MaskedBCEWithLogitsLoss()(logits, targets)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.all(logits.grad[~known] == 0)
    full = torch.ones(6, 3)
    plain = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 1.0, 3.0]))(logits, full)
    assert torch.equal(MaskedBCEWithLogitsLoss(torch.tensor([2.0, 1.0, 3.0]))(logits, full), plain)


def test_per_epoch_metrics_match_sklearn_on_the_masked_subsets() -> None:
    probs, targets = masked_data()
    labels = ["a", "b", "c", "d"]
    metrics = classification_metrics(probs, targets, labels)
    for j, name in enumerate(labels):
        known = ~torch.isnan(targets[:, j])
        expected = roc_auc_score(targets[known, j].numpy(), probs[known, j].numpy())
        assert math.isclose(metrics["auroc"][name], expected, rel_tol=0, abs_tol=1e-12)
        assert metrics["labelled"][name] == int(known.sum())
    known = ~torch.isnan(targets)
    expected_accuracy = float(((probs >= 0.5).double() == targets)[known].double().mean())
    assert math.isclose(metrics["accuracy"], expected_accuracy, rel_tol=1e-6)  # torchmetrics is float32
    assert len(youden_thresholds(probs, targets)) == 4


def test_bootstrap_ignores_masked_entries_and_keeps_pairs() -> None:
    probs, targets = masked_data(n=120)
    samples = bootstrap_auroc(probs, targets, 50, seed=3)
    noisy = torch.where(torch.isnan(targets), torch.rand_like(probs), probs)  # masked scores must not matter
    assert torch.allclose(samples, bootstrap_auroc(noisy, targets, 50, seed=3), equal_nan=True)
    full = bootstrap_auroc(probs[:, 3:], targets[:, 3:], 50, seed=3)  # same draws for a fully labelled label
    assert torch.allclose(samples[:, 3:], full)


def test_evaluation_report_uses_the_masks() -> None:
    probs, targets = masked_data()
    report = evaluation_report(probs, targets, ["a", "b", "c", "d"], [0.5] * 4, n_bootstrap=200)
    for j, row in enumerate(report["per_label"]):
        known = ~torch.isnan(targets[:, j])
        t, p = targets[known, j].numpy(), probs[known, j].numpy()
        assert math.isclose(row["auroc"], roc_auc_score(t, p), abs_tol=1e-12)
        assert math.isclose(row["average_precision"], average_precision_score(t, p), abs_tol=1e-12)
        assert row["tp"] + row["fp"] + row["tn"] + row["fn"] == row["labelled"] == int(known.sum())
        assert row["auroc_ci_low"] <= row["auroc"] <= row["auroc_ci_high"]
    known = ~torch.isnan(targets)
    micro = roc_auc_score(targets[known].numpy(), probs[known].numpy())
    assert math.isclose(report["micro"]["auroc"], micro, abs_tol=1e-9)


def test_train_and_validate_with_blank_and_uncertain_labels(synthetic_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(synthetic_csv, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    for name in ("effusion", "mass", "nodule"):
        frame.loc[rng.random(len(frame)) < 0.3, name] = ""
        frame.loc[rng.random(len(frame)) < 0.1, name] = "-1"
    frame["hernia"] = np.where(frame["split"] == "TRAIN", "", frame["hernia"])  # a label blank in TRAIN
    csv_path = synthetic_csv.parent / "masked.csv"
    frame.to_csv(csv_path, index=False)
    config = TrainConfig(csv=str(csv_path), out=str(tmp_path / "run"), image_size=32, model="densenet_tiny", epochs=1,
                         batch_size=16, device="cpu", progress=False, num_workers=0, uncertain="ignore")  # fmt: skip
    result = train(config)
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    assert load_checkpoint(result.best_checkpoint).config["uncertain"] == "ignore"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["uncertain"] == "ignore"
    settings = ValidateConfig(checkpoint=result.best_checkpoint, csv=str(csv_path), split="VALIDATION",
                              out=str(tmp_path / "val"), progress=False, num_workers=0, bootstrap=50)  # fmt: skip
    report = evaluate(settings)
    assert report.metrics["macro_auroc"] == result.history[-1]["val_auroc"]  # validate reproduces the epoch
    with open(report.predictions_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    by_path = {str(Path(r["image"]).name): r for r in rows}
    for _, source in frame[frame["split"] == "VALIDATION"].iterrows():
        shown = by_path[Path(source["image"]).name]["true_effusion"]
        assert shown == ("" if source["effusion"] in ("", "-1") else str(int(float(source["effusion"]))))
    labelled = {row["label"]: row["labelled"] for row in report.metrics["per_label"]}
    val = frame[frame["split"] == "VALIDATION"]
    assert labelled["effusion"] == int((~val["effusion"].isin(["", "-1"])).sum())


def test_uncertain_policy_is_a_flag() -> None:
    from medclf.cli import build_parser

    parser = build_parser(TrainConfig, "p", "d")
    assert parser.parse_args(["--uncertain", "ones"]).uncertain == "ones"
    with pytest.raises(SystemExit):
        parser.parse_args(["--uncertain", "maybe"])


def test_external_test_set_with_some_labels_and_a_label_map(synthetic_csv: Path, tmp_path: Path) -> None:
    config = TrainConfig(csv=str(synthetic_csv), out=str(tmp_path / "run"), image_size=32, epochs=1,
                         model="densenet_tiny", batch_size=16, device="cpu", progress=False, num_workers=0)  # fmt: skip
    result = train(config)
    frame = pd.read_csv(synthetic_csv, dtype=str, keep_default_na=False)
    external = frame[["image", "split", "effusion", "mass", "nodule"]].rename(columns={"effusion": "pleural_effusion"})
    external_csv = synthetic_csv.parent / "external.csv"
    external.to_csv(external_csv, index=False)
    settings = ValidateConfig(checkpoint=result.best_checkpoint, csv=str(external_csv), split="TEST",
                              out=str(tmp_path / "ext"), progress=False, num_workers=0, bootstrap=20,
                              label_map="pleural_effusion=effusion")  # fmt: skip
    report = evaluate(settings)
    saved = json.loads(Path(report.metrics_json).read_text())
    assert sorted(saved["absent_labels"]) == sorted(set(frame.columns[2:16]) - {"effusion", "mass", "nodule"})
    assert report.metrics["labels_averaged"] <= 3
    assert report.metrics["auroc"]["effusion"] is not None and report.metrics["auroc"]["hernia"] is None
    none_present = frame[["image", "split"]].assign(other="1")
    none_present.to_csv(synthetic_csv.parent / "none.csv", index=False)
    from medclf.errors import ManifestError

    with pytest.raises(ManifestError, match="none of the label columns is present"):
        evaluate(settings, csv=str(synthetic_csv.parent / "none.csv"), label_map="")


@pytest.fixture(scope="module")
def small_checkpoint(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("label_map") / "run"
    return train(csv=str(synthetic_csv), out=str(out), labels=["atelectasis", "cardiomegaly", "effusion", "mass"],
                 image_size=32, epochs=1, model="densenet_tiny", batch_size=16, device="cpu", progress=False,
                 num_workers=0, figure_every=0).best_checkpoint  # fmt: skip


def _external(synthetic_csv: Path, folder: Path, columns: dict[str, str], blank: bool = False) -> Path:
    """The synthetic TEST rows with absolute image paths and the label columns renamed by ``columns``."""
    frame = pd.read_csv(synthetic_csv, dtype=str, keep_default_na=False)
    frame["image"] = [str((synthetic_csv.parent / p).resolve()) for p in frame["image"]]
    frame = frame[frame["split"] == "TEST"][["image", "split", *columns]].rename(columns=columns)
    if blank:
        frame[list(columns.values())] = ""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "external.csv"
    frame.to_csv(path, index=False)
    return path


def _error(argv: list[str], capsys: pytest.CaptureFixture) -> list[str]:
    from medclf.validate import main

    assert main([*argv, "--no-progress", "--num-workers", "0", "--bootstrap", "0", "--no-figures"]) == 2
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(("error:", "  - "))]


def test_label_maps_that_clash_or_name_nothing_are_refused_without_an_out_folder(
    small_checkpoint: str, synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = _external(synthetic_csv, tmp_path, {"effusion": "a", "mass": "b", "atelectasis": "atelectasis"})
    out = tmp_path / "out" / "x"
    args = ["--checkpoint", small_checkpoint, "--csv", str(csv), "--out", str(out)]
    lines = _error([*args, "--label-map", "a=effusion,b=effusion"], capsys)
    assert lines == [f"error: manifest {csv}: 1 problem(s)",
                     "  - --label-map a=effusion, b=effusion: two columns would be named 'effusion'"]  # fmt: skip
    lines = _error([*args, "--label-map", "a=effusion,b=atelectasis"], capsys)
    clash = "two columns would be named 'atelectasis'"
    assert lines[1] == f"  - --label-map b=atelectasis and the CSV's own column 'atelectasis': {clash}"
    lines = _error([*args, "--label-map", "a=effusion,pleural_efusion=mass,b=masss"], capsys)
    assert lines == [
        f"error: --label-map pleural_efusion=mass: no column 'pleural_efusion' in {csv} (columns: a, atelectasis, "
        "b, image, split); b=masss: 'masss' is not one of the labels (did you mean 'mass'?)"
    ]
    assert not (tmp_path / "out").exists()
    other = _external(synthetic_csv, tmp_path / "out", {"mass": "pleural_effusion"})  # several CSVs: one must have it
    lines = _error([*args, "--csv", str(other), "--label-map", "a=effusion,pleural_effusion=mass,b=mass"], capsys)
    assert "is also in" in lines[1]  # the map is accepted: the next check (same images in both) speaks
    lines = _error([*args, "--csv", str(other), "--label-map", "pleural_efusion=effusion"], capsys)
    assert lines[0] == (
        f"error: --label-map pleural_efusion=effusion: no column 'pleural_efusion' in any of {csv}, {other} "
        "(did you mean 'pleural_effusion'?)"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["external.csv"]


def test_an_external_csv_with_a_label_in_another_case_or_no_known_label_is_refused(
    small_checkpoint: str, synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = _external(synthetic_csv, tmp_path, {"cardiomegaly": "Cardiomegaly", "effusion": "effusion"})
    args = ["--checkpoint", small_checkpoint, "--out", str(tmp_path / "out")]
    lines = _error([*args, "--csv", str(csv)], capsys)
    assert lines[1] == "  - missing label column 'cardiomegaly' (found 'Cardiomegaly'; names are case-sensitive)"
    blank = _external(synthetic_csv, tmp_path / "b", {"effusion": "effusion", "mass": "mass"}, blank=True)
    lines = _error([*args, "--csv", str(blank)], capsys)
    assert lines == [
        f"error: manifest {blank}: 1 problem(s)",
        "  - split TEST: no image has a known label (every label cell is blank or -1 (uncertain, ignored as in "
        "training)): nothing to evaluate; predict scores unlabeled images",
    ]
    (tmp_path / "link.csv").symlink_to(blank)
    lines = _error([*args, "--csv", str(blank), str(tmp_path / "link.csv")], capsys)
    again = f"again as {tmp_path / 'link.csv'}"
    assert lines == [f"error: --csv gives the manifest {blank} twice ({again}): its images would count twice"]
    assert not (tmp_path / "out").exists()


def test_validation_without_any_defined_auroc_selects_best_by_val_loss_and_resumes_exactly(
    synthetic_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.read_csv(synthetic_csv, dtype=str, keep_default_na=False)
    labels = [c for c in frame.columns if c not in ("image", "split", "patient_id", "sex", "age", "view")]
    frame.loc[frame["split"] == "VALIDATION", labels] = "0"  # every label one-class in VALIDATION
    frame["image"] = [str(synthetic_csv.parent / p) for p in frame["image"]]
    csv_path = tmp_path / "one_class.csv"
    frame.to_csv(csv_path, index=False)
    settings = dict(csv=str(csv_path), image_size=32, model="densenet_tiny", batch_size=16, device="cpu",
                    progress=False, num_workers=0, cache_workers=1, early_stopping_patience=0)  # fmt: skip
    full = train(TrainConfig(**settings, out=str(tmp_path / "full"), epochs=3))
    assert "val_auroc is undefined, so best.pt is the epoch with the lowest val_loss" in caplog.text
    losses = [row["val_loss"] for row in full.history]
    assert all(row["val_auroc"] is None and row["best_auroc"] is None for row in full.history)
    assert int(np.argmin(losses)) + 1 != 1  # epoch 1 kept blindly would fail here
    assert full.best_epoch == int(np.argmin(losses)) + 1 and full.selected_by == "val_loss"
    assert json.loads((tmp_path / "full" / "config.json").read_text())["model_selection"] == "val_loss"
    assert load_checkpoint(full.best_checkpoint).epoch == full.best_epoch
    train(TrainConfig(**settings, out=str(tmp_path / "part"), epochs=2))
    resumed = train(TrainConfig(**settings, out=str(tmp_path / "part"), epochs=3, resume=str(tmp_path / "part")))
    assert [row["val_loss"] for row in resumed.history] == losses and resumed.best_epoch == full.best_epoch
    caplog.clear()
    finished = train(TrainConfig(**settings, out=str(tmp_path / "part"), epochs=3, resume=str(tmp_path / "part")))
    assert finished.selected_by == "val_loss" and finished.best_auroc is None and finished.best_epoch == full.best_epoch
    assert f"best val_loss {min(losses):.4f} at epoch {full.best_epoch}. Nothing was trained" in caplog.text
