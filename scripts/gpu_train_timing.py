"""Time the real ``python -m medclf.train`` on a GPU: DenseNet121 at 224 px from the memory cache.

    python scripts/gpu_train_timing.py                         # 4,000 synthetic 256 px images, batch 128, 5 epochs
    python scripts/gpu_train_timing.py --images 1000 --epochs 3 --json timing.json

Makes a synthetic data set (``medclf.data.synthetic``, in parallel processes), then calls
``medclf.train.main([...])`` in this process (the command itself, not a copy of its loop) with thin
instrumentation around two functions the training workflow calls:

- ``medclf.workflows.run_state.build_dataset``: the seconds spent filling the memory cache (decoding and
  resizing every TRAIN and VALIDATION image, before epoch 1);
- ``medclf.engine.loops.train_one_epoch``: the training pass of each epoch (seconds, images, peak
  ``torch.cuda.max_memory_allocated``), with the loader wrapped so that each ``__next__`` is timed on the
  host and bracketed by CUDA events. The events cost no synchronisation; their elapsed time is how long
  the GPU sat idle while the host waited for a batch (zero when the host is ahead of the GPU).

Prints images/s for the cache fill, epoch 1 (cuDNN autotuning; also counted together with the TRAIN
cache fill, the first pass over the data), epochs 2+, the loader-wait share of the epochs 2+ training
time, peak GPU memory, and the epoch seconds that train itself wrote to TensorBoard
(``time/epoch_seconds``: training, validation and checkpoints). ``--json`` writes the same figures.
Without CUDA it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _make_part(job: tuple[str, int, int, int]) -> str:
    from medclf.data.synthetic import make_synthetic_dataset

    folder, n_images, size, seed = job
    return str(make_synthetic_dataset(folder, n_images=n_images, image_size=size, seed=seed))


def make_data(folder: Path, n_images: int, size: int, jobs: int) -> Path:
    """``n_images`` synthetic images made in ``jobs`` processes, and one manifest over all of them."""
    jobs = max(1, min(jobs, n_images))
    counts = [n_images // jobs + (1 if i < n_images % jobs else 0) for i in range(jobs)]
    parts = [(str(folder / f"part{i}"), count, size, 1000 + i) for i, count in enumerate(counts)]
    # spawn: this process has already asked torch about CUDA, and forking after that is unsafe
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        manifests = list(pool.map(_make_part, parts))
    header: list[str] = []
    rows: list[list[str]] = []
    for manifest in manifests:
        with open(manifest, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows += [[f"{Path(manifest).parent.name}/{row[0]}", *row[1:]] for row in reader]
    path = folder / "dataset.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


class TimedLoader:
    """A loader whose every ``__next__`` is timed on the host and bracketed by two CUDA events."""

    def __init__(self, loader: Iterable[dict]) -> None:
        self.loader = loader
        self.host_wait = 0.0
        self.events: list[tuple[Any, Any]] = []

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict]:
        import torch

        iterator = iter(self.loader)
        while True:
            before = torch.cuda.Event(enable_timing=True)
            before.record()
            started = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.host_wait += time.perf_counter() - started
            after = torch.cuda.Event(enable_timing=True)
            after.record()
            self.events.append((before, after))
            yield batch

    def gpu_idle(self) -> float:
        """Seconds the GPU had nothing to do while the host waited for batches (after a synchronize)."""
        return sum(before.elapsed_time(after) for before, after in self.events) / 1e3


@dataclass
class Probe:
    """What the instrumentation saw: cache fills (images, seconds) and one dict per training pass."""

    fills: list[tuple[int, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)


@contextlib.contextmanager
def instrumented(probe: Probe) -> Iterator[None]:
    """Wrap ``build_dataset`` and ``train_one_epoch`` where the training workflow looks them up."""
    import torch

    import medclf.workflows.run_state as run_state
    from medclf.engine import loops

    real_build, real_epoch = run_state.build_dataset, loops.train_one_epoch

    def build_dataset(records: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        dataset = real_build(records, *args, **kwargs)
        probe.fills.append((len(records), time.perf_counter() - started))
        return dataset

    def train_one_epoch(model: Any, loader: Iterable[dict], *args: Any, **kwargs: Any) -> Any:
        timed = TimedLoader(loader)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        progress = real_epoch(model, timed, *args, **kwargs)
        torch.cuda.synchronize()
        probe.epochs.append({
            "images": float(progress.seen), "seconds": time.perf_counter() - started, "steps": len(timed.events),
            "gpu_idle": timed.gpu_idle(), "host_wait": timed.host_wait,
            "peak_allocated": torch.cuda.max_memory_allocated(), "peak_reserved": torch.cuda.max_memory_reserved(),
        })  # fmt: skip
        return progress

    run_state.build_dataset, loops.train_one_epoch = build_dataset, train_one_epoch
    try:
        yield
    finally:
        run_state.build_dataset, loops.train_one_epoch = real_build, real_epoch


def tensorboard_epoch_seconds(run_dir: Path) -> list[float]:
    """``time/epoch_seconds`` as train wrote it to TensorBoard (empty if unreadable)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run_dir))
        events.Reload()
        return [round(e.value, 2) for e in events.Scalars("time/epoch_seconds")]
    except Exception:  # a figure to show, never a reason to fail
        return []


def figures(probe: Probe, history: list[dict], run: dict[str, Any]) -> dict[str, Any]:
    """The numbers to report, from the probe and train's metrics.csv."""
    first, rest = probe.epochs[0], probe.epochs[1:]
    fills = probe.fills or [(0, math.nan)]  # nan: the workflow no longer builds its datasets where we look
    fill_images, fill_seconds = sum(n for n, _ in fills), sum(s for _, s in fills)
    rest_images, rest_seconds = sum(e["images"] for e in rest), sum(e["seconds"] for e in rest)
    rest_steps = sum(e["steps"] for e in rest)
    losses = [float(r[k]) for r in history for k in ("train_loss", "val_loss") if r.get(k) not in (None, "")]
    return {
        **run,
        "train_images": int(first["images"]),
        "cache_fill_images": fill_images,
        "cache_fill_seconds": round(fill_seconds, 2),
        "cache_fill_images_per_s": round(fill_images / fill_seconds, 1),
        "epoch1_seconds": round(first["seconds"], 2),
        "epoch1_images_per_s": round(first["images"] / first["seconds"], 1),
        "epoch1_with_cache_fill_images_per_s": round(first["images"] / (first["seconds"] + fills[0][1]), 1),
        "epoch2plus_images_per_s": round(rest_images / rest_seconds, 1) if rest else None,
        "epoch2plus_step_ms": round(1e3 * rest_seconds / rest_steps, 2) if rest else None,
        "loader_wait_share": round(sum(e["gpu_idle"] for e in rest) / rest_seconds, 5) if rest else None,
        "loader_wait_ms_per_step": round(1e3 * sum(e["gpu_idle"] for e in rest) / rest_steps, 3) if rest else None,
        "host_wait_share": round(sum(e["host_wait"] for e in rest) / rest_seconds, 5) if rest else None,
        "epoch1_loader_wait_share": round(first["gpu_idle"] / first["seconds"], 5),
        "peak_gpu_memory_gib": round(max(e["peak_allocated"] for e in probe.epochs) / 2**30, 2),
        "peak_gpu_reserved_gib": round(max(e["peak_reserved"] for e in probe.epochs) / 2**30, 2),
        "epochs_completed": len(history),
        "losses_finite": bool(losses) and all(math.isfinite(v) for v in losses),
        "val_auroc_last": float(history[-1]["val_auroc"]) if history and history[-1].get("val_auroc") else None,
    }


def report(f: dict[str, Any]) -> str:
    """The figures as the lines printed at the end."""
    rest = f"epochs 2-{f['epochs']}"
    lines = [
        f"GPU timing: {f['gpu']}, torch {f['torch']}; DenseNet121 {f['image_size']} px, batch {f['batch_size']}, "
        f"{f['precision']}, channels-last, memory cache",
        f"data: {f['images']} synthetic {f['data_size']} px images ({f['train_images']} TRAIN), "
        f"made in {f['data_seconds']:.1f} s",
        f"cache fill (decode + resize, TRAIN + VALIDATION): {f['cache_fill_images']} images in "
        f"{f['cache_fill_seconds']:.1f} s = {f['cache_fill_images_per_s']:.0f} images/s",
        f"epoch 1 training: {f['epoch1_images_per_s']:.0f} images/s ({f['epoch1_seconds']:.1f} s, cuDNN autotuning "
        f"included); with the TRAIN cache fill: {f['epoch1_with_cache_fill_images_per_s']:.0f} images/s",
    ]
    if f["epoch2plus_images_per_s"] is not None:
        lines.append(
            f"{rest} training: {f['epoch2plus_images_per_s']:.0f} images/s, {f['epoch2plus_step_ms']:.1f} ms per step; "
            f"GPU idle waiting for the loader {f['loader_wait_ms_per_step']:.2f} ms per step "
            f"= {100 * f['loader_wait_share']:.2f}% of the training time "
            f"(host blocked in the loader {100 * f['host_wait_share']:.1f}%)"
        )
    lines += [
        f"peak GPU memory: {f['peak_gpu_memory_gib']:.1f} GiB allocated, {f['peak_gpu_reserved_gib']:.1f} GiB reserved",
        f"epoch seconds written by train (TensorBoard time/epoch_seconds: training, validation, checkpoints): "
        f"{' '.join(str(s) for s in f['epoch_seconds_tensorboard']) or 'n/a'}",
        f"losses finite: {f['losses_finite']}; last val_auroc {f['val_auroc_last']} (metrics.csv)",
    ]
    return "\n".join(lines)


def time_training(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Make the data, run ``medclf.train.main`` under the instrumentation, return the figures."""
    import torch

    from medclf.engine.device import amp_settings
    from medclf.train import main as train_main

    started = time.perf_counter()
    manifest = make_data(work / "data", args.images, args.data_size, args.jobs)
    data_seconds = time.perf_counter() - started
    run_dir = work / "run"
    argv = ["--csv", str(manifest), "--out", str(run_dir), "--model", "densenet121", "--image-size",
            str(args.image_size), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
            "--device", "cuda", "--cache", "memory", "--no-progress", "--figure-every", "0",
            "--early-stopping-patience", "0", "--seed", "0"]  # fmt: skip
    probe = Probe()
    with instrumented(probe):
        code = train_main(argv)
    if code != 0 or not probe.epochs:
        raise SystemExit(f"gpu_train_timing: python -m medclf.train {' '.join(argv)} exited with {code}")
    with open(run_dir / "metrics.csv", newline="") as f:
        history = list(csv.DictReader(f))
    amp_dtype, _ = amp_settings(torch.device("cuda"), True)
    run = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "images": args.images,
        "data_size": args.data_size, "image_size": args.image_size, "batch_size": args.batch_size,
        "epochs": args.epochs, "precision": str(amp_dtype).replace("torch.", ""), "data_seconds": data_seconds,
        "epoch_seconds_tensorboard": tensorboard_epoch_seconds(run_dir),
    }  # fmt: skip
    return figures(probe, history, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="synthetic images to make (default 4000)")
    parser.add_argument("--data-size", type=int, default=256, help="side of the synthetic PNGs (default 256)")
    parser.add_argument("--image-size", type=int, default=224, help="training image size (default 224)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs; 2 or more (default 5)")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1), help="processes making the data")
    parser.add_argument("--work", default="", help="folder for the data and the run (default: a temporary one)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_train_timing: no CUDA GPU available to torch {torch.__version__}; nothing to time")
        return 0
    if args.epochs < 2:
        parser.error("--epochs must be 2 or more (epoch 1 includes cuDNN autotuning)")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="medclf-gpu-timing-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = time_training(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["losses_finite"] and result["epochs_completed"] == args.epochs else 1


if __name__ == "__main__":
    raise SystemExit(main())
