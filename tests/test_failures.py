"""Every failure a clear message: unwritable or misnamed --out, a full disk, a locked run folder, a resume
over another run, failed starts, pickled checkpoints of any format, runs stopped before their first
checkpoint, and spreadsheet formulas in the CSV files medclf writes."""

from __future__ import annotations

import csv
import errno
import io
import os
import pathlib
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medclf.compare import main as compare_main
from medclf.data.manifest import NIH_LABELS, Manifest
from medclf.errors import CheckpointError, ConfigError, RunLockedError, StorageError
from medclf.model.checkpoint import load_checkpoint
from medclf.predict import main as predict_main
from medclf.reporting.comparison import read_predictions
from medclf.reporting.files import atomic_write, neutralise_cell, restore_cell, write_csv
from medclf.reporting.manifest_csv import write_manifest as write_nih_manifest
from medclf.reporting.run_lock import LOCK_NAME, acquire_run_lock
from medclf.reporting.tables import write_predictions
from medclf.train import main as train_main
from medclf.validate import main as validate_main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--image-size", "32", "--model", "densenet_tiny", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
        "--num-workers", "0", "--cache-workers", "1", "--no-progress", "--figure-every", "0"]  # fmt: skip
MARKERS = ("last.pt", "best.pt", "metrics.csv")


def train_args(csv_path: Path, out: Path, *extra: str) -> list[str]:
    return ["--csv", str(csv_path), "--out", str(out), *FAST, *extra]


def error_line(capsys: pytest.CaptureFixture) -> str:
    """The one ``error:`` line a failed command printed (and no traceback)."""
    captured = capsys.readouterr()
    text = captured.out + captured.err
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in MARKERS if (folder / name).exists()}


@pytest.fixture(scope="module")
def finished(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run (read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train_main(train_args(synthetic_csv, out)) == 0
    return out


def copy_run(finished: Path, to: Path) -> Path:
    shutil.copytree(finished, to)
    return to


# --- 1. --out that cannot be used, full disk ----------------------------------------------------------


def test_out_naming_a_file_is_a_bad_argument(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    assert train_main(train_args(synthetic_csv, existing)) == 2
    line = error_line(capsys)
    assert str(existing) in line and "is a file, not a folder" in line
    assert train_main(train_args(synthetic_csv, existing / "run")) == 2  # NotADirectoryError, even for root
    line = error_line(capsys)
    assert f"{existing} is a file, not a folder" in line
    assert existing.read_text() == "keep me"


def test_evaluation_out_that_cannot_be_used(
    finished: Path, synthetic_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    common = ["--checkpoint", str(finished / "best.pt"), "--no-progress"]
    validate = [*common, "--csv", str(synthetic_csv), "--bootstrap", "0", "--no-figures"]
    for main, argv in [(validate_main, validate), (predict_main, [*common, "--images", str(synthetic_csv.parent)])]:
        for out in (existing, existing / "sub"):
            assert main([*argv, "--out", str(out)]) == 2
            assert f"{existing} is a file, not a folder" in error_line(capsys)
    assert existing.read_text() == "keep me"

    def refused(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", refused)
    assert validate_main([*validate, "--out", str(tmp_path / "v")]) == 1
    assert f"{tmp_path / 'v'}: Permission denied (EACCES)" in error_line(capsys)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_out_under_a_read_only_folder_exits_1(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert train_main(train_args(synthetic_csv, locked / "run")) == 1
    finally:
        locked.chmod(0o700)
    line = error_line(capsys)
    assert str(locked / "run") in line and "Permission denied" in line
    assert not (locked / "run").exists()


def test_out_that_cannot_be_created_exits_1(synthetic_csv: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def refused(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", refused)  # what a read-only folder does to a non-root user
    assert train_main(train_args(synthetic_csv, tmp_path / "a" / "run")) == 1
    line = error_line(capsys)
    assert f"cannot create the run folder {tmp_path / 'a' / 'run'}: Permission denied (EACCES)" in line


def test_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"the previous checkpoint")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError) as info, atomic_write(target, "wb") as f:
        f.write(b"half a new one")
    assert str(info.value) == f"cannot write {target}: No space left on device (ENOSPC); the previous last.pt is kept"
    assert info.value.exit_code == 1
    with pytest.raises(StorageError, match=r"no metrics\.csv was written"):
        write_csv(tmp_path / "metrics.csv", [{"a": 1}])
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_full_disk_inside_a_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.csv"
    target.write_text("epoch\n1\n")
    with pytest.raises(StorageError, match=r"the previous metrics\.csv is kept"), atomic_write(target) as f:
        f.write("epoch\n1\n")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write of a full disk raises it
    assert target.read_text() == "epoch\n1\n" and len(list(tmp_path.iterdir())) == 1


def fail_fsync_of(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """``os.fsync`` raises ENOSPC for the temporary files of ``names`` (found through /proc)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell files apart")
    real = os.fsync

    def fsync(fd: int) -> None:
        target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if any(target.startswith(f".{name}.") for name in names):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("failing", [("best.pt", "last.pt"), ("metrics.csv",)])
def test_full_disk_during_training_exits_1_and_keeps_saved_files(
    failing: tuple[str, ...], finished: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    run = copy_run(finished, tmp_path / "run")
    before = snapshot(run)
    fail_fsync_of(monkeypatch, *failing)
    assert train_main(["--resume", str(run), "--epochs", "2", "--no-progress"]) == 1
    line = error_line(capsys)
    assert "No space left on device (ENOSPC)" in line and any(f"the previous {n} is kept" in line for n in failing)
    for name in failing:
        assert (run / name).read_bytes() == before[name], name
    if failing == ("metrics.csv",):  # checkpoints come first: last.pt has epoch 2, metrics.csv still one row
        assert load_checkpoint(run)["epoch"] == 2
    assert not list(run.glob(".*.medclf-tmp-*"))
    acquire_run_lock(run).release()  # the failed run let go of its folder


def test_full_disk_in_the_first_epoch_says_how_to_go_on_and_resume_continues_from_best_pt(
    synthetic_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        fail_fsync_of(patched, "last.pt")  # best.pt is saved first and kept; last.pt is not
        assert train_main(train_args(synthetic_csv, run)) == 1
    line = error_line(capsys)
    assert "No space left on device (ENOSPC); no last.pt was written" in line
    assert f"Free some space, then continue with: python -m medclf.train --resume {run}" in line
    assert (run / "best.pt").is_file() and not (run / "last.pt").exists()
    assert train_main(train_args(synthetic_csv, run)) == 2  # the run is there: a new start is refused ...
    assert f"resume it with --resume {run}" in error_line(capsys)
    assert train_main(["--resume", str(run), "--epochs", "2", "--no-progress"]) == 0  # ... and resuming works
    printed = capsys.readouterr().out
    assert f"{run} holds no readable last.pt: continuing from best.pt (epoch 1); the epochs after epoch 1" in printed
    assert "(a best.pt): resuming from its weights with a fresh optimiser and schedule" in printed  # weights only
    assert load_checkpoint(run).epoch == 2 and load_checkpoint(run).path == str(run / "last.pt")


def test_resume_of_a_folder_with_an_unreadable_last_pt_takes_best_pt(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:5000])
    assert Path(load_checkpoint(run).path) == run / "best.pt"
    with pytest.raises(CheckpointError, match="truncated or corrupt"):  # a file named as such is not replaced
        load_checkpoint(run / "last.pt")
    (run / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(run)


def test_full_disk_before_any_checkpoint_says_to_start_again(
    synthetic_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    fail_fsync_of(monkeypatch, "best.pt", "last.pt")
    assert train_main(train_args(synthetic_csv, tmp_path / "run")) == 1
    assert "Free some space, then run the same command again" in error_line(capsys)


# --- 2. a run folder is locked ------------------------------------------------------------------------


def hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time\nfrom medclf.reporting.run_lock import acquire_run_lock\n"
        "lock = acquire_run_lock(sys.argv[1])\nprint('locked', flush=True)\ntime.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    lock = acquire_run_lock(tmp_path)
    text = (tmp_path / LOCK_NAME).read_text()
    assert f'"pid": {os.getpid()}' in text and socket.gethostname() in text
    with pytest.raises(RunLockedError, match=rf"in use by another medclf run \(PID {os.getpid()} on host "):
        acquire_run_lock(tmp_path)
    lock.release()
    lock.release()  # twice is harmless
    acquire_run_lock(tmp_path).release()


def test_a_locked_run_folder_is_refused_until_its_holder_dies(
    synthetic_csv: Path, finished: Path, tmp_path: Path, capsys
) -> None:
    fresh, resumed = tmp_path / "fresh", copy_run(finished, tmp_path / "resumed")
    fresh.mkdir()
    holders = [hold_lock(fresh), hold_lock(resumed)]
    try:
        before = snapshot(resumed)
        assert train_main(train_args(synthetic_csv, fresh)) == 2
        line = error_line(capsys)
        assert f"PID {holders[0].pid} on host {socket.gethostname()} since " in line and str(fresh) in line
        # --epochs: a finished run is not resumed at all (it only says so), so ask for one more epoch
        assert train_main(["--resume", str(resumed), "--no-progress", "--epochs", "9"]) == 2
        assert f"PID {holders[1].pid}" in error_line(capsys)
        assert snapshot(resumed) == before and sorted(p.name for p in fresh.iterdir()) == [LOCK_NAME]
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    # A killed holder leaves no stale lock: the same command now runs, and frees the folder at its end.
    assert train_main(train_args(synthetic_csv, fresh)) == 0
    assert (fresh / "last.pt").exists()
    acquire_run_lock(fresh).release()


# --- 3. --resume A --out B where B holds another run ------------------------------------------------


def test_resume_into_a_folder_holding_another_run_is_refused(finished: Path, tmp_path: Path, capsys) -> None:
    other = copy_run(finished, tmp_path / "other")
    (other / "metrics.csv").write_text("epoch\n7\n")
    before = snapshot(other)
    assert train_main(["--resume", str(finished), "--out", str(other), "--epochs", "2", "--no-progress"]) == 2
    line = error_line(capsys)
    assert f"{other} already holds another run" in line and f"resuming {finished}" in line
    assert snapshot(other) == before
    # Into its own folder (given as --out, through a path of another spelling) it goes on.
    own = copy_run(finished, tmp_path / "own")
    code = train_main(["--resume", str(own / "last.pt"), "--out", str(tmp_path / "." / "own"), "--epochs", "2",
                       "--no-progress"])  # fmt: skip
    assert code == 0 and load_checkpoint(own)["epoch"] == 2


# --- 4. a failed start leaves no empty run folder ------------------------------------------------------


def test_refused_pretrained_leaves_no_run_folder(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "weights.pth"
    bad.write_text("not weights")
    assert train_main(train_args(synthetic_csv, tmp_path / "new" / "run", "--pretrained", str(bad))) == 2
    assert "pretrained weights" in error_line(capsys)
    assert not (tmp_path / "new").exists()  # this call created both folders: both are gone
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert train_main(train_args(synthetic_csv, existing, "--pretrained", str(bad))) == 2
    error_line(capsys)
    assert (existing / "notes.txt").read_text() == "mine"  # a folder that existed before stays


def test_failed_set_up_unlocks_and_removes_only_what_it_created(synthetic_csv: Path, tmp_path: Path) -> None:
    from medclf import TrainConfig, train

    settings = TrainConfig(csv=[str(synthetic_csv)], out=str(tmp_path / "run"), labels=["effusion", "nonesuch"])
    with pytest.raises(Exception, match="nonesuch"):
        train(settings)
    assert not (tmp_path / "run").exists()


# --- 5 and 8. pickled checkpoints of every format ------------------------------------------------------


class Payload:
    """Stands for arbitrary pickled code."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > pwned.txt",))


class Custom:
    """A class of the user's."""


def plain_pickle(obj: object, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


def torch_bytes(obj: object, zipped: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


CHECKPOINT_LIKE = {"format": "medclf-checkpoint", "model": {}, "model_name": "densenet_tiny", "labels": ["a"],
                   "image_size": 32}  # fmt: skip
PICKLED = {
    **{f"pickle protocol {p}": (lambda p=p: plain_pickle(CHECKPOINT_LIKE, p)) for p in (0, 2, 4, 5)},
    **{f"pickle protocol {p} with code": (lambda p=p: plain_pickle({"model": Payload()}, p)) for p in (0, 2, 4, 5)},
    "torch.save of a custom class": lambda: torch_bytes({**CHECKPOINT_LIKE, "extra": Custom()}),
    "old-style torch.save of a custom class": lambda: torch_bytes({"x": Custom()}, zipped=False),
    "old-style torch.save with code": lambda: torch_bytes({"x": Payload()}, zipped=False),
    "torch.save of a whole module": lambda: torch_bytes(torch.nn.Linear(2, 2)),
    "cut pickle with code": lambda: plain_pickle(Payload(), 2)[:-2],
}


@pytest.mark.parametrize("kind", list(PICKLED))
def test_any_pickle_format_is_refused_not_executed(kind: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.pt"
    path.write_bytes(PICKLED[kind]())
    with pytest.raises(CheckpointError, match="contains pickled Python objects") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "pwned.txt").exists()


@pytest.fixture(scope="module")
def densenet_bytes() -> bytes:
    """A real densenet121 checkpoint (28 MB), as saved by medclf."""
    from medclf.model.networks import build_model

    buffer = io.BytesIO()
    torch.save({**CHECKPOINT_LIKE, "model": build_model("densenet121", 3).state_dict()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("size", [8 * 1024, 16 * 1024, 32 * 1024, 64 * 1024])
def test_densenet_checkpoint_cut_to_kilobytes_is_truncated_not_einval(
    size: int, densenet_bytes: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "best.pt"
    path.write_bytes(densenet_bytes[:size])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: the file is truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [0.2, 0.5, 0.9])
def test_truncated_files_are_reported_as_such(cut: float, tmp_path: Path) -> None:
    for name, data in {"zip": torch_bytes(CHECKPOINT_LIKE), "old": torch_bytes(CHECKPOINT_LIKE, zipped=False)}.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data[: int(len(data) * cut)])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(path)
    path.write_text("import os\nprint('a text file')\n")  # read as pickle opcodes it names no real global
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_old_style_checkpoint_without_objects_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    path.write_bytes(torch_bytes({**CHECKPOINT_LIKE, "model": {"w": torch.ones(2)}}, zipped=False))
    assert torch.equal(load_checkpoint(path).model["w"], torch.ones(2))


def test_commands_refuse_a_plain_pickle_checkpoint(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.pkl"
    path.write_bytes(plain_pickle(CHECKPOINT_LIKE, 2))
    commands = [
        (validate_main, ["--checkpoint", str(path), "--csv", str(synthetic_csv), "--out", str(tmp_path / "v")]),
        (predict_main, ["--checkpoint", str(path), "--images", str(synthetic_csv.parent / "images")]),
        (train_main, ["--resume", str(path)]),
    ]
    for main, argv in commands:
        assert main(argv) == 2, argv
        line = error_line(capsys)
        assert f"refused to load checkpoint {path}: it contains pickled Python objects" in line


# --- 6. formulas in CSV cells ------------------------------------------------------------------------


def test_text_cells_are_neutralised_numbers_are_not(tmp_path: Path) -> None:
    row = {"a": "=1+1", "b": "+x", "c": "-x", "d": "@x", "e": "\tx", "f": "\rx", "g": "-1", "h": -0.25, "i": -3,
           "j": "plain", "k": "'=x"}  # fmt: skip
    write_csv(tmp_path / "t.csv", [row])
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as f:
        cells = next(iter(csv.DictReader(f)))
    assert cells == {"a": "'=1+1", "b": "'+x", "c": "'-x", "d": "'@x", "e": "'\tx", "f": "'\rx", "g": "-1",
                     "h": "-0.25", "i": "-3", "j": "plain", "k": "''=x"}  # fmt: skip
    assert {k: restore_cell(v) for k, v in cells.items() if isinstance(row[k], str)} == {
        k: v for k, v in row.items() if isinstance(v, str)
    }
    assert neutralise_cell(-1.5) == -1.5 and neutralise_cell(np.float64(-2.0)) == -2.0


@pytest.fixture
def formula_images(synthetic_csv: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """Six images in a folder named ``=scans`` under ``tmp_path`` (two per split)."""
    folder = tmp_path / "=scans"
    folder.mkdir()
    names = sorted(p.name for p in (synthetic_csv.parent / "images").iterdir())[:6]
    for name in names:
        (folder / name).symlink_to(synthetic_csv.parent / "images" / name)
    return folder, names


def test_manifest_with_a_formula_path_round_trips(formula_images, tmp_path: Path) -> None:
    folder, names = formula_images
    frame = pd.DataFrame({"image": [str(folder / n) for n in names], "split": ["TRAIN", "VALIDATION", "TEST"] * 2,
                          **{label: [i % 2 for i in range(6)] for label in NIH_LABELS}, "patient_id": ["-7"] * 6,
                          "note": ["=HYPERLINK(\"x\")"] * 6})  # fmt: skip
    out = write_nih_manifest(frame, tmp_path / "manifest.csv")
    lines = out.read_text().splitlines()
    assert lines[1].startswith(f"'=scans/{names[0]},TRAIN,0,") and lines[1].endswith(',-7,"\'=HYPERLINK(""x"")"')
    manifest = Manifest.from_csv(out, required_splits=("TRAIN",))
    assert list(manifest.frame["image"]) == [str(folder / n) for n in names]


def test_formula_paths_through_predict_and_compare(
    finished: Path, formula_images, tmp_path: Path, monkeypatch, capsys
) -> None:
    _, names = formula_images
    monkeypatch.chdir(tmp_path)  # a relative --images keeps "=scans/..." as the image column
    assert predict_main(["--checkpoint", str(finished / "best.pt"), "--images", "=scans", "--out", "pred"]) == 0
    with open(tmp_path / "pred" / "predictions.csv", newline="", encoding="utf-8") as f:
        images = [row["image"] for row in csv.DictReader(f)]
    assert images == [f"'=scans/{n}" for n in names]
    # Two validate-style tables of such images: compare reads the paths back and matches them.
    truth = torch.tensor([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]])
    for name, scores in {"a": [0.9, 0.1, 0.8, 0.3, 0.7, 0.2], "b": [0.4, 0.6, 0.5, 0.5, 0.45, 0.55]}.items():
        write_predictions(tmp_path / name / "predictions.csv", [f"=scans/{n}" for n in names], list(range(2, 8)),
                          ["effusion"], torch.tensor(scores)[:, None], truth)  # fmt: skip
    assert read_predictions(tmp_path / "a").images == [f"=scans/{n}" for n in names]
    assert compare_main(["a", "b", "--out", "cmp", "--bootstrap", "50", "--no-figures"]) == 0
    with open(tmp_path / "cmp" / "comparison.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["difference"]) < 0 and rows[0]["difference"].startswith("-")  # a number, not neutralised


# --- 7. --resume of a run stopped before its first checkpoint ------------------------------------------


def test_resume_before_the_first_checkpoint_explains_and_a_fresh_start_works(
    synthetic_csv: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "early"
    run.mkdir()
    for name in ("config.json", "label_counts.csv", LOCK_NAME, "events.out.tfevents.1.host.1.0"):
        (run / name).write_text("{}")  # what a run killed while caching or in its first epoch leaves
    (run / "cache").mkdir()
    assert train_main(["--resume", str(run)]) == 2
    line = error_line(capsys)
    assert f"no checkpoint in {run}: its run stopped before its first checkpoint was saved" in line
    assert "Starting it again is safe: run the same command without --resume" in line
    assert train_main(train_args(synthetic_csv, run)) == 0
    assert (run / "last.pt").exists()
    with pytest.raises(ConfigError, match="already holds a run"):  # now it holds one
        from medclf import TrainConfig, train

        train(TrainConfig(csv=[str(synthetic_csv)], out=str(run)))
