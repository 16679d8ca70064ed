"""The training-recipe search of docs/recipes.md: today's defaults, each small-data lever alone and their
combination, each judged by 5-fold patient-wise cross-validation (``medclf.crossval``) on the TRAIN and
VALIDATION images of a manifest (never its TEST images), at a fixed budget (8 epochs at 96 px).

Usage (from the repository root, with .venv set up)::

    .venv/bin/python scripts/recipe_search.py --out runs/recipe_search            # every configuration
    .venv/bin/python scripts/recipe_search.py --out runs/recipe_search --only defaults ema
    .venv/bin/python scripts/recipe_search.py --out runs/recipe_search --table   # the table only
    .venv/bin/python scripts/recipe_search.py --out runs/recipe_search --test defaults small-data   # then TEST

It can be stopped and started again: a finished study is kept, a stopped one is resumed. Every study uses
the same folds (the first study's ``folds.csv``). Each configuration is compared with ``defaults`` by
``medclf.compare`` (paired bootstrap over the pooled out-of-fold predictions). The Markdown table
(configuration, pooled out-of-fold macro AUROC with its 95% interval, per-fold mean and SD, the paired
difference from the defaults with its interval, wall time) goes to ``<out>/recipes_table.md`` and the
console.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STARTER = Path(__file__).resolve().parent.parent.parent / "shared/data/nih/starter256/dataset.csv"
BUDGET = ["--epochs", "8", "--image-size", "96"]
#: Configuration name -> its crossval flags beyond the budget. "small-data" is the recipe preset.
CONFIGS: dict[str, list[str]] = {
    name: flags.split()
    for name, flags in {
        "defaults": "",
        "batch-16": "--batch-size 16",
        "ema": "--ema-decay 0.99",
        "adamw-cosine-warmup": "--optimizer adamw --weight-decay 0.05 --scheduler cosine --warmup-epochs 1",
        "strong-augment": "--augment-strength strong",
        "label-smoothing": "--label-smoothing 0.1",
        "mixup": "--mixup 0.2",
        "dropout": "--dropout 0.2",
        "resnet18": "--model resnet18",
        "image-64": "--image-size 64",
        "combo-a": "--batch-size 16 --ema-decay 0.99 --optimizer adamw --weight-decay 0.05 --scheduler cosine "
        "--warmup-epochs 1",
        "combo-b": "--ema-decay 0.99 --augment-strength strong --optimizer adamw --weight-decay 0.05 "
        "--scheduler cosine --warmup-epochs 1",
        "small-data": "--recipe small-data",
    }.items()
}


def trainval_manifest(source: Path, out: Path) -> Path:
    """The TRAIN and VALIDATION rows of ``source`` with absolute image paths (the search never sees TEST)."""
    target = out / "manifest_trainval.csv"
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["split"].strip().upper() != "TEST"]
        fields = reader.fieldnames or []
    for row in rows:
        row["image"] = os.path.normpath(os.path.join(source.parent, row["image"]))
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, target)
    return target


def study_state(study: Path) -> dict | None:
    """The study's ``study.json``, or None when there is none."""
    path = study / "study.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_study(name: str, flags: list[str], manifest: Path, out: Path, device: str) -> None:
    """Run (or resume) one configuration's cross-validation; its wall time is added to ``<name>.wall.json``."""
    study, wall = out / name, out / f"{name}.wall.json"
    state = study_state(study)
    if state and state.get("complete"):
        print(f"{name}: finished before", flush=True)
        return
    if state:
        command = ["--resume", str(study)]
    else:
        folds = out / "defaults" / "folds.csv"
        shared = ["--folds-csv", str(folds)] if name != "defaults" and folds.is_file() else []
        command = ["--csv", str(manifest), "--out", str(study), *BUDGET, *flags, *shared]
    command = [sys.executable, "-m", "medclf.crossval", *command, "--num-workers", "0", "--no-progress",
               "--device", device]  # fmt: skip
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    spent = json.loads(wall.read_text())["seconds"] if wall.is_file() else 0.0
    started = time.perf_counter()
    code = subprocess.call(command)
    wall.write_text(json.dumps({"seconds": spent + time.perf_counter() - started}))
    if code != 0:
        raise SystemExit(f"{name}: crossval exited with {code}")


def compare(a: Path, b: Path, names: tuple[str, str], target: Path) -> dict | None:
    """The macro row of ``medclf.compare`` (B - A) of two predictions files, run once into ``target``."""
    result = target / "comparison.json"
    if not result.is_file():
        command = [sys.executable, "-m", "medclf.compare", "--a", str(a), "--b", str(b), "--name-a", names[0],
                   "--name-b", names[1], "--out", str(target), "--no-figures"]  # fmt: skip
        if subprocess.call(command, stdout=subprocess.DEVNULL) != 0:
            return None
    return json.loads(result.read_text(encoding="utf-8"))["macro"]


def compare_with_defaults(name: str, out: Path) -> dict | None:
    """Defaults (A) against ``name`` (B) on the pooled out-of-fold predictions: each study's AUROC and interval
    computed from its ``oof_predictions.csv``, and the paired difference."""
    oof = "oof_predictions.csv"
    return compare(out / "defaults" / oof, out / name / oof, ("defaults", name), out / f"compare_defaults_vs_{name}")


def table(out: Path) -> str:
    """The Markdown table of every finished study in ``out``: pooled out-of-fold macro AUROC with its 95%
    interval and the paired difference from the defaults (``medclf.compare`` on the written predictions),
    the folds' mean and SD (``study.json``), the wall time."""
    lines = ["| configuration | flags | pooled OOF macro AUROC [95% CI] | fold mean (SD) | vs defaults [95% CI] "
             "| wall time |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    finished = [n for n in CONFIGS if (study_state(out / n) or {}).get("complete")]
    macros = {n: compare_with_defaults(n, out) for n in finished if n != "defaults"}
    for name in finished:
        folds = [r["macro_auroc"] for r in study_state(out / name)["results"]["folds"] if str(r["fold"]).isdigit()]
        spread = f"{statistics.mean(folds):.3f} ({statistics.stdev(folds):.3f})" if len(folds) > 1 else "n/a"
        macro = macros.get(name) or next((m for m in macros.values() if m), None)
        side = "a" if name == "defaults" else "b"
        oof, delta = "n/a", "-"
        if macro:
            low, high = macro[f"auroc_{side}_ci"]
            oof = f"{macro[f'auroc_{side}']:.3f} [{low:.3f}, {high:.3f}]"
            if name != "defaults":
                delta = f"{macro['difference']:+.3f} [{macro['ci_low']:+.3f}, {macro['ci_high']:+.3f}]"
        wall = out / f"{name}.wall.json"
        minutes = f"{json.loads(wall.read_text())['seconds'] / 60:.1f} min" if wall.is_file() else "n/a"
        lines.append(f"| {name} | `{' '.join(CONFIGS[name]) or '(none)'}` | {oof} | {spread} | {delta} | {minutes} |")
    return "\n".join(lines) + "\n"


def test_run(name: str, source: Path, out: Path, device: str) -> dict:
    """Train ``name`` once on TRAIN (VALIDATION choosing best.pt) and validate best.pt on TEST: after the
    search, never during it."""
    run = out / f"test_{name}"
    common = ["--num-workers", "0", "--no-progress", "--device", device]
    if not (run / "best.pt").is_file() or not (run / "last.pt").is_file():
        started = time.perf_counter()
        resume = ["--resume", str(run)] if (run / "last.pt").is_file() else []
        command = resume or ["--csv", str(source), "--out", str(run), *BUDGET, *CONFIGS[name]]
        if subprocess.call([sys.executable, "-m", "medclf.train", *command, *common]) != 0:
            raise SystemExit(f"{name}: training on TRAIN failed")
        (out / f"test_{name}.wall.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    result = run / "best_test"
    if not (result / "metrics.json").is_file():
        command = [sys.executable, "-m", "medclf.validate", "--checkpoint", str(run / "best.pt"), "--csv",
                   str(source), "--split", "TEST", "--out", str(result), *common]  # fmt: skip
        if subprocess.call(command) != 0:
            raise SystemExit(f"{name}: validation on TEST failed")
    metrics = json.loads((result / "metrics.json").read_text(encoding="utf-8"))
    return {"macro_auroc": metrics["macro_auroc"], **{k: metrics["macro"].get(k) for k in ("auroc_ci_low",
            "auroc_ci_high")}, "predictions": result / "predictions.csv"}  # fmt: skip


def test_table(names: list[str], source: Path, out: Path, device: str) -> str:
    """TEST macro AUROC of each configuration trained once on TRAIN, and the paired difference from the first."""
    results = {name: test_run(name, source, out, device) for name in names}
    lines = ["| configuration | TEST macro AUROC [95% CI] | vs " + names[0] + " [95% CI] |", "| --- | --- | --- |"]
    for name, r in results.items():
        delta = "-"
        if name != names[0]:
            target = out / f"test_compare_{names[0]}_vs_{name}"
            macro = compare(results[names[0]]["predictions"], r["predictions"], (names[0], name), target)
            if macro is None:
                raise SystemExit(f"{name}: medclf.compare failed on the TEST predictions (see above)")
            delta = f"{macro['difference']:+.3f} [{macro['ci_low']:+.3f}, {macro['ci_high']:+.3f}]"
        lines.append(f"| {name} | {r['macro_auroc']:.3f} [{r['auroc_ci_low']:.3f}, {r['auroc_ci_high']:.3f}] "
                     f"| {delta} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default=str(STARTER), help="manifest; its TEST rows are left out")
    parser.add_argument("--out", default="runs/recipe_search", help="folder of the studies and the table")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run these configurations only")
    parser.add_argument("--table", action="store_true", help="write the table of the finished studies; train none")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--test", nargs="+", choices=list(CONFIGS), metavar="NAME",
        help="after the search: train these once on TRAIN and compare them on TEST (the first is A)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.test:
        text = test_table(args.test, Path(args.csv), out, args.device)
        (out / "test_table.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    if not args.table:
        manifest = trainval_manifest(Path(args.csv), out)
        names = args.only or list(CONFIGS)
        first = [] if "defaults" in names or (out / "defaults" / "folds.csv").is_file() else ["defaults"]
        for name in first + names:  # the defaults study draws the folds the others repeat
            run_study(name, CONFIGS[name], manifest, out, args.device)
    text = table(out)
    (out / "recipes_table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
