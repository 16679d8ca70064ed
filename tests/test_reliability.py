"""Crash safety: exact resume after SIGKILL/SIGTERM, atomic files, refused checkpoints, bad inputs."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medclf.workflows.run_state
from medclf import TrainConfig, ValidateConfig, evaluate, load_checkpoint, train
from medclf.errors import CheckpointError, ImageError, TrainingError
from medclf.model.checkpoint import save_checkpoint
from medclf.reporting.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]


def tiny(csv: Path, out: Path, **overrides: object) -> TrainConfig:
    settings = dict(
        csv=str(csv), out=str(out), image_size=32, model="densenet_tiny", epochs=2, batch_size=16,
        device="cpu", progress=False, num_workers=0, cache_workers=2,
    )  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


# --- exact resume -----------------------------------------------------------------------------------

TRAIN_ARGS = ["--image-size", "32", "--model", "densenet121", "--epochs", "3", "--batch-size", "4",
              "--device", "cpu", "--num-workers", "0", "--cache-workers", "1", "--seed", "7"]  # fmt: skip


def start_training(csv: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "medclf.train", "--csv", str(csv), "--out", str(out), *TRAIN_ARGS, *extra]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_inside_epoch(process: subprocess.Popen, epoch: int, sig: int) -> str:
    """Send ``sig`` once the progress bar shows epoch ``epoch`` a few steps in; return the output so far."""
    seen = b""
    marker = f"epoch {epoch}/3 train:".encode()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        tail = seen[seen.rfind(marker) :] if marker in seen else b""
        if tail and any(f"| {k}/".encode() in tail for k in range(4, 9)):
            process.send_signal(sig)
            break
    rest, _ = process.communicate(timeout=240)
    return (seen + rest).decode(errors="replace")


@pytest.fixture(scope="module")
def uninterrupted(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "straight"
    process = start_training(synthetic_csv, out, "--no-progress")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output.decode()
    return out


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(
    synthetic_csv: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    process = start_training(synthetic_csv, out)
    stop_inside_epoch(process, epoch=2, sig=signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and state["partial"] is None  # killed inside epoch 2: epoch 1 is what is saved
    assert not list(out.glob(".*.medclf-tmp-*"))  # no torn temporary files left behind... or they are ignored
    resumed = start_training(synthetic_csv, out, "--resume", str(out), "--no-progress")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output.decode()
    assert "resuming epoch 2" in output.decode()
    assert (out / "metrics.csv").read_bytes() == (uninterrupted / "metrics.csv").read_bytes()
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(uninterrupted / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_sigterm_saves_mid_epoch_state_and_resume_is_exact(
    synthetic_csv: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "terminated"
    process = start_training(synthetic_csv, out)
    output = stop_inside_epoch(process, epoch=2, sig=signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM received" in output and "--resume" in output
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and state["partial"]["step"] >= 4
    resumed = start_training(synthetic_csv, out, "--resume", str(out / "last.pt"), "--no-progress")
    text, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, text.decode()
    assert f"resuming epoch 2, step {state['partial']['step']}" in text.decode()
    assert (out / "metrics.csv").read_bytes() == (uninterrupted / "metrics.csv").read_bytes()


def test_resume_can_extend_a_finished_run(synthetic_csv: Path, tmp_path: Path) -> None:
    first = train(tiny(synthetic_csv, tmp_path / "r", epochs=1))
    more = train(tiny(synthetic_csv, tmp_path / "r", epochs=2, resume=first.last_checkpoint))
    assert more.epochs_completed == 2 and [r["epoch"] for r in more.history] == [1, 2]


# --- atomic files and refused checkpoints -----------------------------------------------------------


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint(target, {"model": {}, "model_name": "densenet_tiny", "labels": ["a"], "image_size": 8})
    before = target.read_bytes()

    class BoomError(Exception):
        pass

    with pytest.raises(BoomError), atomic_write(target, "wb") as f:
        f.write(b"half a checkpoint")
        raise BoomError
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


class Payload:
    """Stands for arbitrary pickled code."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > pwned.txt",))


def test_checkpoint_with_pickled_objects_is_refused_not_executed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "medclf-checkpoint", "model": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned.txt").exists()
    path.write_bytes(pickle.dumps({"a": 1})[:10])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a medclf checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_that_does_not_match_is_refused(synthetic_csv: Path, tmp_path: Path) -> None:
    run = train(tiny(synthetic_csv, tmp_path / "r", epochs=1, labels=["effusion", "mass"]))
    with pytest.raises(CheckpointError, match=r"labels differ: only in the manifest/settings: hernia"):
        train(tiny(synthetic_csv, tmp_path / "r", labels=["effusion", "mass", "hernia"], resume=run.run_dir))
    with pytest.raises(CheckpointError, match="image size differs: checkpoint 32, settings 48"):
        train(tiny(synthetic_csv, tmp_path / "r", labels=["effusion", "mass"], image_size=48, resume=run.run_dir))
    other = tmp_path / "other.csv"
    other.write_text(synthetic_csv.read_text().replace(",mass,", ",tumour,"))
    for image in (synthetic_csv.parent / "images").iterdir():
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / image.name).symlink_to(image)
    # An external test set without one of the labels evaluates the others and names the absent one.
    settings = ValidateConfig(checkpoint=run.best_checkpoint, csv=str(other), split="TEST", num_workers=0,
                              out=str(tmp_path / "ext"), bootstrap=10, figures=False)  # fmt: skip
    result = evaluate(settings)
    assert json.loads(Path(result.metrics_json).read_text())["absent_labels"] == ["mass"]
    assert result.metrics["auroc"]["mass"] is None


# --- bad images and training failures ---------------------------------------------------------------


@pytest.fixture
def csv_with_a_corrupt_image(synthetic_csv: Path, tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    for image in (synthetic_csv.parent / "images").iterdir():
        (images / image.name).symlink_to(image)
    lines = synthetic_csv.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if ",TRAIN," in line)
    name = lines[row].split(",")[0]
    (images / Path(name).name).unlink()
    (images / Path(name).name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a truncated PNG
    csv = tmp_path / "dataset.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, tmp_path / name


def test_corrupt_image_is_skipped_with_a_warning(csv_with_a_corrupt_image, tmp_path: Path, caplog) -> None:
    csv, bad = csv_with_a_corrupt_image
    result = train(tiny(csv, tmp_path / "run", epochs=1))
    assert result.epochs_completed == 1
    assert f"skipping 1 unreadable image(s):\n  {bad}" in caplog.text


def test_check_images_stops_before_training(csv_with_a_corrupt_image, tmp_path: Path) -> None:
    csv, bad = csv_with_a_corrupt_image
    with pytest.raises(ImageError, match=r"1 unreadable image\(s\)") as info:
        train(tiny(csv, tmp_path / "run", check_images=True, cache="none"))
    assert str(bad) in str(info.value) and "row " in str(info.value)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_non_finite_loss_names_the_batch(synthetic_csv: Path, tmp_path: Path, monkeypatch) -> None:
    real_build = medclf.workflows.run_state.build_model

    def poisoned(name: str, n_labels: int, in_channels: int = 1) -> torch.nn.Module:
        model = real_build(name, n_labels, in_channels)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] == 2 else output

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(medclf.workflows.run_state, "build_model", poisoned)
    with pytest.raises(
        TrainingError, match=r"loss became nan at epoch 1/2 train, step 2; the batch held .*img_\d+\.png"
    ):
        train(tiny(synthetic_csv, tmp_path / "nan"))


def test_cuda_out_of_memory_suggests_a_batch_size(synthetic_csv: Path, tmp_path: Path, monkeypatch) -> None:
    real_build = medclf.workflows.run_state.build_model

    def hungry(name: str, n_labels: int, in_channels: int = 1) -> torch.nn.Module:
        model = real_build(name, n_labels, in_channels)

        def hook(module, inputs, output):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(medclf.workflows.run_state, "build_model", hungry)
    with pytest.raises(TrainingError, match=r"ran out of memory with a batch of 16 .* try --batch-size 8"):
        train(tiny(synthetic_csv, tmp_path / "oom"))


def test_very_different_sizes_and_bit_depths_train_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    rows = ["image,split,a"]
    shapes = [(20, 20), (300, 80), (64, 640), (1, 1), (128, 128)]
    for i in range(30):
        h, w = shapes[i % len(shapes)]
        pixels = rng.integers(0, 255, (h, w)).astype(np.uint8)
        if i % 3 == 0:
            Image.fromarray(pixels.astype(np.uint16) * 200).save(images / f"{i}.png")  # 16-bit
        elif i % 3 == 1:
            Image.fromarray(np.full((h, w), 7, np.uint8)).convert("RGBA").save(images / f"{i}.png")  # constant RGBA
        else:
            Image.fromarray(pixels).save(images / f"{i}.png")
        rows.append(f"images/{i}.png,{'TRAIN' if i < 20 else 'VALIDATION'},{i % 2}")
    csv = tmp_path / "m.csv"
    csv.write_text("\n".join(rows) + "\n")
    result = train(tiny(csv, tmp_path / "run", labels=["a"], batch_size=8))
    assert result.epochs_completed == 2
    assert all(np.isfinite(r["train_loss"]) for r in result.history)


# --- result sets written whole; signals; temporaries of dead writers ---------------------------------


def sigterm_at_fsync_of(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """SIGTERM to this process while the temporary file of ``name`` is being saved (found through /proc)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell files apart")
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{name}."):
            os.kill(os.getpid(), signal.SIGTERM)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    text = "".join(capsys.readouterr())
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_checkpoints(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two") / "run"
    train(tiny(synthetic_csv, out, epochs=2, figure_every=0))
    return out


def test_interrupted_validate_keeps_the_previous_results_whole(
    two_checkpoints: Path, synthetic_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from medclf.validate import main as validate_main

    out = tmp_path / "results"
    common = ["--csv", str(synthetic_csv), "--bootstrap", "0", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert validate_main(["--checkpoint", str(two_checkpoints / "best.pt"), *common]) == 0
    before = contents(out)
    assert "report.html" in before
    with monkeypatch.context() as patched:
        sigterm_at_fsync_of(patched, "report.html")  # the last file of the new set
        assert validate_main(["--checkpoint", str(two_checkpoints / "last.pt"), *common]) == 143
    line = one_error_line(capsys)
    assert f"stopped by SIGTERM; no new results were written; the previous results in {out} are kept untouched" in line
    assert contents(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no staging folder left

    (out / "notes.txt").write_text("mine")  # not part of a result set: kept
    assert validate_main(["--checkpoint", str(two_checkpoints / "last.pt"), "--no-figures", *common]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "report.html" not in names and "roc_curves.png" not in names  # the old set is gone as a whole
    assert {"metrics.json", "predictions.csv", "notes.txt"} <= set(names)
    assert json.loads((out / "metrics.json").read_text())["checkpoint"] == str(two_checkpoints / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_failed_validate_removes_only_the_folders_it_created(
    two_checkpoints: Path, synthetic_csv: Path, tmp_path: Path, capsys
) -> None:
    from medclf.validate import main as validate_main

    common = ["--checkpoint", str(two_checkpoints / "best.pt"), "--csv", str(synthetic_csv), "--no-progress",
              "--thresholds", str(tmp_path / "missing.json")]  # fmt: skip
    assert validate_main([*common, "--out", str(tmp_path / "new" / "v")]) == 2
    assert "cannot read thresholds file" in one_error_line(capsys)
    existing = tmp_path / "existing"
    existing.mkdir()
    assert validate_main([*common, "--out", str(existing / "v")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"] and not any(existing.iterdir())


def test_sigterm_during_prepare_says_so_and_leaves_no_temporary(tmp_path: Path, monkeypatch, capsys) -> None:
    from medclf.prepare_chexpert import main as prepare_main

    from .test_prepare_chexpert_mimic import _chexpert_train

    train_csv, out = _chexpert_train(tmp_path), tmp_path / "out" / "chexpert.csv"
    sigterm_at_fsync_of(monkeypatch, "chexpert.csv")
    assert prepare_main(["--csv", str(train_csv), "--root", str(tmp_path), "--out", str(out)]) == 143
    line = one_error_line(capsys)
    assert line.startswith("error: stopped by SIGTERM; files being written were removed")
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command's handlers are gone afterwards


def test_temporaries_of_dead_writers_are_swept_by_the_next_write(tmp_path: Path) -> None:
    from medclf.reporting import files

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead, alive, host = ended.pid, os.getppid(), files._HOST
    other_host = f"{(int(host, 16) + 1) % 0x10000:04x}"
    names = {
        f".manifest.csv.medclf-tmp-{dead}-{host}-0a1b2c3d4e5f": False,  # a SIGKILLed writer's file
        f".results.medclf-tmp-{dead}-{host}": False,  # a SIGKILLed validate's staging folder
        f".results.medclf-old-{dead}-{host}": False,
        f".manifest.csv.medclf-tmp-{alive}-{host}-0a1b2c3d4e5f": True,  # a live writer's
        f".manifest.csv.medclf-tmp-{dead}-{other_host}-0a1b2c3d4e5f": True,  # another machine's: unknown
        ".notes.medclf-tmp-x": True,  # not medclf's naming
    }
    for name in names:
        if "results" in name:
            (tmp_path / name).mkdir()
            (tmp_path / name / "metrics.json").write_text("{}")
        else:
            (tmp_path / name).write_text("partial")
    files.write_text(tmp_path / "manifest.csv", "image\n")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"manifest.csv", *(name for name, kept in names.items() if kept)}


def test_a_signal_during_the_swap_waits_until_the_swap_is_done() -> None:
    from medclf.engine.signals import Interrupted, raise_on_signals, signals_deferred

    steps = []
    with pytest.raises(Interrupted) as info, raise_on_signals():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("swapped")  # still runs: the signal is held back
        steps.append("after")
    assert steps == ["swapped"] and info.value.exit_code == 143


def test_result_set_in_the_current_folder_keeps_the_folder(tmp_path: Path, monkeypatch) -> None:
    from medclf.reporting.files import write_text
    from medclf.reporting.result_folder import new_result_set

    monkeypatch.chdir(tmp_path)
    for text in ("old", "new"):
        with new_result_set(".") as staging:
            write_text(staging / f"{text}.txt", text)
    assert Path.cwd() == tmp_path and sorted(p.name for p in tmp_path.iterdir()) == [".medclf-results.json", "new.txt"]
