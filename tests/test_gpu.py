"""The GPU path: ``pytest -m gpu`` (run by ``scripts/gpu_check.sh``); every test is skipped without CUDA.

Each test mirrors a CPU test of the suite with ``--device cuda``: mixed precision (bf16, and fp16 with a
gradient scaler), channels-last, ``--compile``, augmentation and scaling on the device, the per-epoch
AUROC on CUDA tensors, ``validate`` reproducing the epoch's ``val_auroc``, resume after SIGTERM, the
out-of-memory message, and ``torchrun`` with the NCCL backend. Tiny synthetic data and densenet_tiny keep
the file under two minutes on one GPU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from medclf import TrainConfig, ValidateConfig, evaluate, load_checkpoint, train
from medclf.engine import loops
from medclf.errors import TrainingError
from medclf.model.networks import unwrap_model

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"TRAIN": 64, "VALIDATION": 40, "TEST": 24}  # 64 TRAIN images: equal batches of 8, 16, 32 or 64

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (see scripts/gpu_check.sh)"),
]


# --- data, settings and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """128 synthetic 48-px images with the 14 NIH labels: exactly 64 TRAIN, 40 VALIDATION and 24 TEST."""
    from medclf.data.synthetic import make_synthetic_dataset

    path = make_synthetic_dataset(tmp_path_factory.mktemp("gpu-data"), n_images=sum(SPLITS.values()), image_size=48)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    splits = [name for name, count in SPLITS.items() for _ in range(count)]
    for row, split in zip(rows[1:], splits, strict=True):
        row[1] = split
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def settings(csv_path: Path, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        csv=str(csv_path), out=str(out), image_size=32, model="densenet_tiny", epochs=2, batch_size=16,
        device="cuda", progress=False, num_workers=0, cache_workers=4, figure_every=0, seed=3,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def validate_settings(checkpoint: str, csv_path: Path, out: Path) -> ValidateConfig:
    return ValidateConfig(checkpoint=checkpoint, csv=str(csv_path), split="VALIDATION", out=str(out), device="cuda",
                          bootstrap=0, figures=False, progress=False, num_workers=0)  # fmt: skip


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_finite_history(history: list[dict]) -> None:
    for row in history:
        for key in ("train_loss", "val_loss", "val_auroc"):
            assert row[key] is not None and math.isfinite(float(row[key])), (key, row)


def child_env() -> dict[str, str]:
    """The environment of this process, with the repository importable from any working directory."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "4"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EpochSpy:
    """Stands in for ``loops.train_one_epoch``: records what the workflow hands it (model, AMP dtype,
    scaler, channels-last flag) and, with ``hooks``, what the network receives and returns."""

    def __init__(self, hooks: bool = True) -> None:
        self.real = loops.train_one_epoch
        self.hooks = hooks
        self.calls: list[dict] = []
        self.seen: dict[str, Any] = {}

    def __call__(self, model: torch.nn.Module, loader: Iterable[dict], *args: Any, **kwargs: Any) -> Any:
        self.calls.append({"model": model, **kwargs})
        net = unwrap_model(model)
        handles = []
        if self.hooks:
            handles = [net.register_forward_pre_hook(self._before), net.register_forward_hook(self._after)]
        try:
            return self.real(model, loader, *args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()

    def _before(self, module: torch.nn.Module, args: tuple) -> None:
        if "input_device" not in self.seen:
            x = args[0]
            self.seen.update(
                input_device=x.device.type, input_dtype=x.dtype,
                input_channels_last=x.is_contiguous(memory_format=torch.channels_last),
                autocast=torch.is_autocast_enabled("cuda"), autocast_dtype=torch.get_autocast_dtype("cuda"),
            )  # fmt: skip

    def _after(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.seen.setdefault("output_dtype", output.dtype)


@pytest.fixture(scope="module")
def bf16_run(gpu_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, EpochSpy]:
    """A training run with the GPU defaults (AMP, channels-last, augmentation), watched by an EpochSpy."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 (the fp16 test covers its AMP path)")
    spy = EpochSpy()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(loops, "train_one_epoch", spy)
        result = train(settings(gpu_csv, tmp_path_factory.mktemp("bf16") / "run"))
    return result, spy


# --- mixed precision, channels-last, torch.compile --------------------------------------------------


def test_bf16_autocast_training_finishes_with_finite_losses(bf16_run: tuple[Any, EpochSpy]) -> None:
    result, spy = bf16_run
    assert result.epochs_completed == 2 and result.best_auroc is not None
    assert_finite_history(result.history)
    assert [c["amp_dtype"] for c in spy.calls] == [torch.bfloat16] * 2
    assert all(c["scaler"] is None for c in spy.calls)  # bf16 needs no gradient scaler
    assert spy.seen["autocast"] and spy.seen["autocast_dtype"] == torch.bfloat16
    assert spy.seen["output_dtype"] == torch.bfloat16
    assert load_checkpoint(result.last_checkpoint)["scaler"] is None


def test_channels_last_is_on_by_default_on_cuda(bf16_run: tuple[Any, EpochSpy]) -> None:
    _, spy = bf16_run
    call = spy.calls[0]
    assert call["channels_last"] is True
    net = unwrap_model(call["model"])
    conv = next(p for p in net.parameters() if p.dim() == 4)
    assert conv.device.type == "cuda" and conv.is_contiguous(memory_format=torch.channels_last)
    assert spy.seen["input_device"] == "cuda" and spy.seen["input_dtype"] == torch.float32
    assert spy.seen["input_channels_last"]


def test_fp16_with_gradient_scaler_finishes_with_finite_losses(
    gpu_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # as on a pre-Ampere GPU
    spy = EpochSpy()
    monkeypatch.setattr(loops, "train_one_epoch", spy)
    result = train(settings(gpu_csv, tmp_path / "fp16"))
    assert result.epochs_completed == 2
    assert_finite_history(result.history)
    assert [c["amp_dtype"] for c in spy.calls] == [torch.float16] * 2
    scaler = spy.calls[-1]["scaler"]
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    assert math.isfinite(scaler.get_scale()) and scaler.get_scale() > 0
    assert spy.seen["autocast_dtype"] == torch.float16 and spy.seen["output_dtype"] == torch.float16
    saved = load_checkpoint(result.last_checkpoint)["scaler"]
    assert saved and saved["scale"] == scaler.get_scale()  # a resumed fp16 run continues with this scale


def test_compiled_model_trains(gpu_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = EpochSpy(hooks=False)
    monkeypatch.setattr(loops, "train_one_epoch", spy)
    # 64 TRAIN images in 2 batches of 32: one shape, one compilation.
    result = train(settings(gpu_csv, tmp_path / "compiled", compile=True, epochs=1, batch_size=32))
    assert result.epochs_completed == 1
    assert_finite_history(result.history)
    assert hasattr(spy.calls[0]["model"], "_orig_mod")  # the workflow trained a torch.compile'd model


# --- device-side data path and metrics --------------------------------------------------------------


def test_augmentation_and_scaling_on_cuda_match_cpu() -> None:
    from medclf.data.augment import AffineFlip, apply_view, tta_views
    from medclf.data.seeds import generator
    from medclf.data.transforms import to_unit_range
    from medclf.engine.device import prepare_batch

    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (6, 1, 40, 40), generator=g, dtype=torch.uint8)
    u16 = torch.randint(0, 65536, (6, 1, 40, 40), generator=g, dtype=torch.int32).to(torch.uint16)
    for cached in (u8, u16):
        on_gpu = to_unit_range(cached.cuda())
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
        torch.testing.assert_close(on_gpu.cpu(), to_unit_range(cached), rtol=0, atol=1e-7)

    labels = torch.rand(6, 3, generator=g)
    x_cpu, y_cpu = prepare_batch({"image": u8, "labels": labels}, torch.device("cpu"))
    x_gpu, y_gpu = prepare_batch({"image": u8.pin_memory(), "labels": labels}, torch.device("cuda"), channels_last=True)
    assert x_gpu.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x_gpu.cpu(), x_cpu, rtol=0, atol=1e-7)
    assert torch.equal(y_gpu.cpu(), y_cpu)

    augment = AffineFlip()
    for keys in [(0, 1, 0), (3, 2, 5), (7, 9, 11, 1)]:  # (seed, epoch, step[, rank]) as in training
        expected = augment(x_cpu, generator(*keys))
        for batch in (x_gpu, x_cpu.cuda()):  # channels-last (as trained) and contiguous
            torch.testing.assert_close(augment(batch, generator(*keys)).cpu(), expected, rtol=0, atol=1e-4)
    for theta in tta_views(hflip=True):
        torch.testing.assert_close(apply_view(x_gpu, theta).cpu(), apply_view(x_cpu, theta), rtol=0, atol=1e-4)


def test_per_epoch_auroc_on_cuda_tensors_equals_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    from medclf.metrics.auroc import classification_metrics, youden_thresholds

    g = torch.Generator().manual_seed(0)
    labels = ["a", "b", "c", "d", "never"]
    prevalence = torch.tensor([0.5, 0.3, 0.1, 0.03, 0.0])
    targets = (torch.rand(600, 5, generator=g) < prevalence).float()
    probs = (torch.rand(600, 5, generator=g) * 0.7 + 0.3 * targets).round(decimals=2)  # many ties
    masked = targets.clone()
    masked[torch.rand(600, 5, generator=g) < 0.2] = math.nan  # unknown labels, left out
    for truth in (targets, masked):
        on_gpu = classification_metrics(probs.cuda(), truth.cuda(), labels)
        on_cpu = classification_metrics(probs, truth, labels)
        for j, name in enumerate(labels):
            known = ~torch.isnan(truth[:, j])
            y, p = truth[known, j].numpy(), probs[known, j].double().numpy()
            if len(set(y.tolist())) < 2:
                assert on_gpu["auroc"][name] is None
            else:
                assert on_gpu["auroc"][name] == pytest.approx(roc_auc_score(y, p), abs=1e-9), name
        assert on_gpu["labels_averaged"] == 4 and on_gpu["auroc"]["never"] is None
        assert on_gpu["macro_auroc"] == pytest.approx(on_cpu["macro_auroc"], abs=1e-12)
        assert on_gpu["accuracy"] == pytest.approx(on_cpu["accuracy"], abs=1e-12)
        assert youden_thresholds(probs.cuda(), truth.cuda()) == pytest.approx(youden_thresholds(probs, truth))


# --- validate reproduces val_auroc ------------------------------------------------------------------


def test_validate_on_cuda_reproduces_val_auroc_exactly(gpu_csv: Path, tmp_path: Path) -> None:
    """With the same memory format and deterministic kernels, validate's logits are bit-identical."""
    run = train(settings(gpu_csv, tmp_path / "run", channels_last=False, deterministic=True))
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        result = evaluate(validate_settings(run.best_checkpoint, gpu_csv, tmp_path / "val"))
    assert result.metrics["macro_auroc"] == run.best_auroc  # exact, as on the CPU
    assert json.loads(Path(result.metrics_json).read_text())["checkpoint_epoch"] == run.best_epoch


def test_validate_command_on_cuda_after_a_default_gpu_run(
    bf16_run: tuple[Any, EpochSpy], gpu_csv: Path, tmp_path: Path
) -> None:
    """With the defaults, training validates channels-last with autotuned kernels and validate runs
    contiguous: bf16 logits may differ in their last bit, so a near-tie among 40 images may flip."""
    from medclf.validate import main

    result, _ = bf16_run
    out = tmp_path / "val"
    code = main(["--checkpoint", result.best_checkpoint, "--csv", str(gpu_csv), "--split", "validation",
                 "--device", "cuda", "--out", str(out), "--bootstrap", "0", "--no-figures", "--no-progress",
                 "--num-workers", "0"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["macro_auroc"] == pytest.approx(result.best_auroc, abs=0.01)


# --- resume after SIGTERM ---------------------------------------------------------------------------

RESUME_ARGS = ["--image-size", "32", "--model", "densenet_tiny", "--epochs", "3", "--batch-size", "4",
               "--device", "cuda", "--num-workers", "0", "--cache-workers", "4", "--seed", "7",
               "--deterministic", "--figure-every", "0", "--no-progress"]  # fmt: skip


def signal_in_epoch(epoch: int, step: int, sig: int) -> Callable[..., Any]:
    """``loops.train_one_epoch`` that sends ``sig`` to this process as step ``step`` of ``epoch`` begins."""
    real = loops.train_one_epoch

    def batches(loader: Iterable[dict]) -> Iterator[dict]:
        for i, batch in enumerate(loader, start=1):
            if i == step:
                os.kill(os.getpid(), sig)
            yield batch

    def wrapper(model: torch.nn.Module, loader: Iterable[dict], *args: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("desc", "")).startswith(f"epoch {epoch}/"):
            loader = batches(loader)
        return real(model, loader, *args, **kwargs)

    return wrapper


def assert_same_history(got: Path, expected: Path) -> None:
    """Same epochs and, column by column, the same values up to float noise of the GPU kernels."""
    a, b = rows(got), rows(expected)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == ["1", "2", "3"]
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for key, value in ra.items():
            if value != rb[key]:
                assert float(value) == pytest.approx(float(rb[key]), rel=1e-3, abs=1e-3), (key, ra["epoch"])


def test_sigterm_on_cuda_saves_mid_epoch_state_and_resume_continues(
    gpu_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from medclf.train import main

    straight, out = tmp_path / "straight", tmp_path / "terminated"
    assert main(["--csv", str(gpu_csv), "--out", str(straight), *RESUME_ARGS]) == 0
    with monkeypatch.context() as m:
        m.setattr(loops, "train_one_epoch", signal_in_epoch(epoch=2, step=3, sig=signal.SIGTERM))
        code = main(["--csv", str(gpu_csv), "--out", str(out), *RESUME_ARGS])
    output = capsys.readouterr().out
    assert code == 128 + signal.SIGTERM, output
    assert "SIGTERM received" in output and "--resume" in output
    state = load_checkpoint(out / "last.pt")
    step = state["partial"]["step"]  # the loop may stop a few steps later, where it reads the loss
    assert state["epoch"] == 1 and 3 <= step <= SPLITS["TRAIN"] // 4

    code = main(["--csv", str(gpu_csv), "--out", str(out), *RESUME_ARGS, "--resume", str(out / "last.pt")])
    output = capsys.readouterr().out
    assert code == 0, output
    assert f"resuming epoch 2, step {step}" in output
    assert_same_history(out / "metrics.csv", straight / "metrics.csv")


# --- out of memory ----------------------------------------------------------------------------------


def test_cuda_out_of_memory_suggests_a_batch_size(gpu_csv: Path, tmp_path: Path, monkeypatch) -> None:
    import medclf.workflows.run_state as run_state

    real_build = run_state.build_model

    def hungry(name: str, n_labels: int, in_channels: int = 1) -> torch.nn.Module:
        model = real_build(name, n_labels, in_channels)

        def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            assert output.device.type == "cuda"
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(run_state, "build_model", hungry)
    with pytest.raises(TrainingError, match=r"CUDA ran out of memory with a batch of 16 .*\(32, 32\).* --batch-size 8"):
        train(settings(gpu_csv, tmp_path / "oom"))


# Takes all but 2 GiB of the GPU, then runs the real command: its DenseNet121 forward pass needs far more
# (tens of GiB at 512 px, batch 64), so the CUDA allocator itself fails inside the training step. Every
# tensor stays small, unlike a run at a huge image size, whose single tensors could pass 2**31 elements.
HOG_LAUNCHER = """
import sys

import torch

from medclf.train import main

free, _ = torch.cuda.mem_get_info()
hog = torch.empty(free - 2 * 2**30, dtype=torch.uint8, device="cuda")
raise SystemExit(main(sys.argv[1:]))
"""


def test_real_cuda_out_of_memory_is_reported_with_a_batch_size(gpu_csv: Path, tmp_path: Path) -> None:
    launcher = tmp_path / "hog_train.py"
    launcher.write_text(HOG_LAUNCHER)
    command = [sys.executable, str(launcher), "--csv", str(gpu_csv), "--out", str(tmp_path / "oom"),
               "--image-size", "512", "--model", "densenet121", "--batch-size", "64", "--epochs", "1",
               "--device", "cuda", "--no-progress", "--figure-every", "0", "--num-workers", "0"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    pattern = r"error: CUDA ran out of memory with a batch of 64 images of \(512, 512\) pixels; try --batch-size 32"
    assert re.search(pattern, output), output[-4000:]
    assert "Traceback" not in output


# --- torchrun with NCCL -----------------------------------------------------------------------------

# medclf joins a process group only when WORLD_SIZE > 1, and one GPU cannot hold two NCCL ranks. This
# launcher, started by torchrun with one process, joins an NCCL group and hands the real training workflow
# a world that counts as distributed, so that DDP, the per-step all-reduce, the buffer broadcast and
# the gathering of validation logits all run over NCCL.
NCCL_LAUNCHER = """
import os
import sys

import torch
import torch.distributed as dist

import medclf.workflows.train as workflow
from medclf.engine.distributed import World
from medclf.train import main


class NcclWorld(World):
    @property
    def distributed(self):
        return True


def init_world(device_name):
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl")
    print(f"process group: backend {dist.get_backend()}, world size {dist.get_world_size()}", flush=True)
    return NcclWorld(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), local_rank), f"cuda:{local_rank}"


workflow.init_world = init_world
raise SystemExit(main(sys.argv[1:]))
"""


def test_torchrun_one_process_with_nccl(gpu_csv: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    assert dist.is_available() and dist.is_nccl_available(), "this torch build has no NCCL"
    launcher = tmp_path / "nccl_train.py"
    launcher.write_text(NCCL_LAUNCHER)
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port",
               str(free_port()), str(launcher), "--csv", str(gpu_csv), "--out", str(out), "--image-size", "32",
               "--model", "densenet_tiny", "--batch-size", "16", "--epochs", "2", "--device", "cuda",
               "--no-progress", "--num-workers", "0", "--figure-every", "0", "--seed", "3",
               "--no-channels-last", "--deterministic"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "process group: backend nccl, world size 1" in output
    assert "on cuda:0 x 1 processes" in output  # the workflow trained under DistributedDataParallel
    history = rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2]
    assert_finite_history(history)
    # The reported AUROC (logits gathered over NCCL) equals a single-process evaluation, as under gloo.
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        last = evaluate(validate_settings(str(out / "last.pt"), gpu_csv, tmp_path / "last"))
    assert repr(last.metrics["macro_auroc"]) == history[-1]["val_auroc"]
