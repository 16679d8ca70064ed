"""Research analyses end to end on the real NIH starter set: calibration, test-time augmentation,
subgroups (and per data source), embeddings, and comparing two evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclf import compare, predict, validate
from medclf.model.checkpoint import load_checkpoint, save_checkpoint

from .conftest import STARTER, shared_path

SUBGROUPS = "sex,view,age=0-40,40-60,60-"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medclf import train

    csv = shared_path("nih", "starter256", "dataset.csv")
    out = tmp_path_factory.mktemp("analyses") / "run"
    train(csv=str(csv), out=str(out), image_size=32, epochs=2, batch_size=32, model="densenet_tiny",
          progress=False, figure_every=0, cache_workers=1, num_workers=0)  # fmt: skip
    return out


def _validate(run: Path, out: Path, *flags: str, csv: tuple[str, ...] = ()) -> dict:
    csvs = csv or (str(STARTER / "dataset.csv"),)
    argv = ["--checkpoint", str(run / "best.pt"), *[a for c in csvs for a in ("--csv", c)], "--split", "TEST"]
    assert validate.main([*argv, "--out", str(out), "--bootstrap", "100", "--no-progress", "--num-workers", "0",
                          *flags]) == 0  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def test_training_stores_temperatures_and_validate_applies_them_without_changing_auroc(run: Path, tmp_path) -> None:
    checkpoint = load_checkpoint(run / "best.pt")
    assert len(checkpoint.temperatures) == 14 and any(t != 1.0 for t in checkpoint.temperatures)
    on = _validate(run, tmp_path / "on", "--no-figures")
    off = _validate(run, tmp_path / "off", "--no-figures", "--no-calibration")
    assert on["macro_auroc"] == off["macro_auroc"] and on["auroc"] == off["auroc"]
    assert on["calibration"]["applied"] and not off["calibration"]["applied"]
    for block in (on["calibration"]["before"], on["calibration"]["after"]):
        assert set(block) == {"ece", "brier"} and "macro" in block["ece"] and "effusion" in block["brier"]
    assert on["calibration"]["after"]["brier"]["macro"] != on["calibration"]["before"]["brier"]["macro"]
    a, b = pd.read_csv(tmp_path / "on" / "predictions.csv"), pd.read_csv(tmp_path / "off" / "predictions.csv")
    assert not np.allclose(a["prob_effusion"], b["prob_effusion"])
    pred = [c for c in a.columns if c.startswith("pred_")]
    assert (a[pred].to_numpy() == b[pred].to_numpy()).all()  # thresholds move with the probabilities


def test_calibrate_fits_for_a_checkpoint_without_temperatures(run: Path, tmp_path: Path) -> None:
    old = load_checkpoint(run / "best.pt")
    old.temperatures = []
    save_checkpoint(tmp_path / "old.pt", old)
    argv = ["--checkpoint", str(tmp_path / "old.pt"), "--csv", str(STARTER / "dataset.csv"), "--bootstrap", "0",
            "--no-progress", "--num-workers", "0", "--no-figures"]  # fmt: skip
    assert validate.main([*argv, "--out", str(tmp_path / "raw")]) == 0
    raw = json.loads((tmp_path / "raw" / "metrics.json").read_text())
    assert not raw["calibration"]["applied"] and "use --calibrate" in raw["calibration"]["temperatures_from"]
    assert validate.main([*argv, "--out", str(tmp_path / "fit"), "--calibrate"]) == 0
    fitted = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert fitted["calibration"]["applied"]
    trained = load_checkpoint(run / "best.pt").temperatures  # fitted on the same VALIDATION logits
    assert list(fitted["calibration"]["temperatures"].values()) == pytest.approx(trained, rel=1e-4)
    assert load_checkpoint(tmp_path / "fit" / "old_calibrated.pt").temperatures == pytest.approx(
        list(fitted["calibration"]["temperatures"].values())
    )


def test_subgroups_tta_embeddings_and_the_report(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    metrics = _validate(run, out, "--subgroups", SUBGROUPS, "--tta", "--embeddings", "--embeddings-max", "40")
    rows = pd.read_csv(out / "subgroups.csv", keep_default_na=False)
    assert set(rows["attribute"]) == {"sex", "view", "age"}
    assert {"age 0-40", "age 40-60", "age 60+"} <= set(rows["group"]) and {"M", "F"} <= set(rows["group"])
    assert set(rows.columns) >= {"n", "positives", "auroc", "ci_low", "ci_high", "tpr", "fpr"}
    sex = rows[(rows["attribute"] == "sex") & (rows["label"] != "macro")]
    assert sex.groupby("label")["n"].sum().eq(len(pd.read_csv(out / "predictions.csv"))).all()
    assert any(g["attribute"] == "age" for g in metrics["subgroups"]["gaps"])
    tta = metrics["tta"]
    assert tta["views"] == 6 and tta["macro_auroc_with"] == pytest.approx(metrics["macro_auroc"])
    assert tta["macro_change"] == pytest.approx(tta["macro_auroc_with"] - tta["macro_auroc_without"])
    meta = pd.read_csv(out / "projector" / "00000" / "features" / "metadata.tsv", sep="\t")
    assert len(meta) == 40 and (out / "embeddings.png").stat().st_size > 10_000
    page = (out / "report.html").read_text()
    assert 'id="subgroups"' in page and 'id="calibration"' in page and "6 views; macro AUROC" in page
    assert (out / "subgroups_forest.png").exists()


def test_per_source_report_when_the_data_mixes_sets(run: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(STARTER / "dataset.csv", dtype=str, keep_default_na=False)
    frame["image"] = [str((STARTER / p).resolve()) for p in frame["image"]]
    half = len(frame) // 2
    frame.iloc[:half].to_csv(tmp_path / "hospital_a.csv", index=False)
    frame.iloc[half:].drop(columns=["hernia"]).to_csv(tmp_path / "hospital_b.csv", index=False)
    csvs = (str(tmp_path / "hospital_a.csv"), str(tmp_path / "hospital_b.csv"))
    metrics = _validate(run, tmp_path / "out", "--no-figures", csv=csvs)
    groups = {(r["attribute"], r["group"]) for r in metrics["subgroups"]["rows"]}
    assert groups == {("source", "hospital_a"), ("source", "hospital_b")}
    hernia = [r for r in metrics["subgroups"]["rows"] if r["label"] == "hernia" and r["group"] == "hospital_b"]
    assert hernia[0]["n"] == 0  # absent from that set: unknown, not negative


def test_predict_matches_validate_with_calibration_and_tta(run: Path, tmp_path: Path) -> None:
    _validate(run, tmp_path / "val", "--no-figures", "--tta")
    test_rows = pd.read_csv(tmp_path / "val" / "predictions.csv")
    argv = ["--checkpoint", str(run / "best.pt"), "--csv", str(STARTER / "dataset.csv"), "--split", "TEST", "--tta"]
    assert predict.main([*argv, "--out", str(tmp_path / "pred"), "--no-progress", "--num-workers", "0"]) == 0
    predicted = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    prob = [c for c in predicted.columns if c.startswith("prob_") or c.startswith("pred_")]
    assert np.allclose(predicted[prob].to_numpy(), test_rows[prob].to_numpy(), atol=1e-6)


def test_compare_two_evaluations_of_the_same_images(run: Path, tmp_path: Path) -> None:
    _validate(run, tmp_path / "plain", "--no-figures")
    _validate(run, tmp_path / "tta", "--no-figures", "--tta")
    assert compare.main([str(tmp_path / "plain"), str(tmp_path / "tta"), "--out", str(tmp_path / "cmp"),
                         "--bootstrap", "200"]) == 0  # fmt: skip
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv", keep_default_na=False)
    assert list(table.columns) == ["label", "n", "auroc_a", "auroc_b", "difference", "ci_low", "ci_high", "p_delong"]
    assert table["label"].iloc[-1] == "macro" and table["p_delong"].iloc[-1] == ""
    effusion = table[table["label"] == "effusion"].iloc[0]
    assert float(effusion["difference"]) == pytest.approx(float(effusion["auroc_b"]) - float(effusion["auroc_a"]))
    assert 0 <= float(effusion["p_delong"]) <= 1
