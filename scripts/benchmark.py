"""Benchmark medclf's data path against a seed-style MONAI pipeline, and its AUROC code against MONAI's.

    python scripts/benchmark.py                       # ~1-2 minutes on 2 CPU cores
    python scripts/benchmark.py --images 600 --size 224 --batch-size 64

Prints, on the same set of 1024 px 8-bit PNGs (copies of the real NIH radiographs in
../shared/data/nih/full1024 when present, synthetic otherwise) and with a tiny network so that the data
path dominates:
  (a) the seed-style baseline: monai.data.Dataset, float32 transforms, no cache, DataLoader workers;
  (b) medclf's pipeline (uint8 CacheDataset + ThreadDataLoader + batched augmentation): epoch 1 (which
      fills the cache) and epoch 2; also the disk cache and a DataLoader-with-workers alternative;
then images/s, the ratio (b2)/(a), cache bytes per image, the AUROC timings (MONAI's loop vs medclf's
vectorised rank AUROC on 100,000 x 14, MONAI's per-epoch AUROC at NIH validation size, 1,000 bootstrap
resamples on 25,000 x 14) and, when CUDA is present, DenseNet121 training throughput at 224 px from the
memory cache with a breakdown of loader wait vs GPU step time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.metrics import compute_roc_auc
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd
from PIL import Image
from torch import nn

from medclf.data.augment import AffineFlip
from medclf.data.loaders import EpochBatchSampler, build_dataset, collate_samples, make_loader
from medclf.data.seeds import generator
from medclf.data.transforms import ToGrayscaled, preprocessing
from medclf.engine.device import amp_settings, autocast, prepare_batch
from medclf.engine.loops import train_one_epoch
from medclf.metrics.bootstrap import bootstrap_auroc, rank_auroc
from medclf.model.networks import build_model

ROOT = Path(__file__).resolve().parents[1]
REAL_1024 = ROOT.parent / "shared" / "data" / "nih" / "full1024"
N_LABELS = 14


def make_pngs(folder: Path, n: int) -> list[dict]:
    """``n`` 1024 px 8-bit PNGs: copies of the real NIH images when available, else synthetic."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(REAL_1024.glob("*.png")) if REAL_1024.is_dir() else []
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        path = folder / f"img_{i:05d}.png"
        if sources:
            shutil.copy(sources[i % len(sources)], path)
        else:
            yy, xx = np.mgrid[0:1024, 0:1024] / 1024
            pixels = 120 + 60 * np.sin(xx * 9 + i) * np.cos(yy * 7) + rng.normal(0, 12, (1024, 1024))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        labels = (rng.random(N_LABELS) < 0.2).astype(np.float32)
        records.append(
            {"image": str(path), "row": i + 2, "index": i, **{f"l{j}": labels[j : j + 1] for j in range(N_LABELS)}}
        )
    return records


def tiny_net() -> nn.Module:
    """A network far cheaper than the data path (a strided conv and a linear layer)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, N_LABELS)
    )


def baseline_epoch(records: list[dict], size: int, batch_size: int, workers: int) -> float:
    """Seed-style: float32 MONAI transforms every epoch, no cache. Returns images/s.

    ToGrayscaled is the one medclf transform added: without it the RGBA files among the real NIH
    images break the batch, as they broke the seed.
    """
    keys = [f"l{j}" for j in range(N_LABELS)]
    transform = Compose([
        LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), ToGrayscaled("image"),
        ScaleIntensityd("image"), Resized("image", (size, size)),
    ])  # fmt: skip
    loader = DataLoader(Dataset(records, transform), batch_size=batch_size, shuffle=True, num_workers=workers)
    net, criterion = tiny_net(), nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(net.parameters())
    started = time.perf_counter()
    for batch in loader:
        targets = torch.cat([batch[k] for k in keys], dim=1).float()
        loss = criterion(net(batch["image"].as_tensor().float()), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(records) / (time.perf_counter() - started)


def medclf_epochs(
    dataset, cache: str, batch_size: int, workers: int, epochs: int = 2, processes: bool = False
) -> list[float]:
    """medclf's loader, float conversion after the cache and batched augmentation, tiny network.

    ``processes`` serves the memory cache through a DataLoader with worker processes instead of
    medclf's ThreadDataLoader. Returns images/s per epoch.
    """
    device = torch.device("cpu")
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0)
    if processes:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                             collate_fn=collate_samples, persistent_workers=True)  # fmt: skip
    else:
        loader = make_loader(
            dataset, batch_size=batch_size, cache=cache, num_workers=workers, device=device, sampler=sampler
        )
    net, criterion = tiny_net(), nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(net.parameters())
    augment = AffineFlip()
    speeds = []
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        train_one_epoch(net, loader, criterion, optimizer, device, show_progress=False,
                        augment=lambda x, step, e=epoch: augment(x, generator(0, e, step)))  # fmt: skip
        speeds.append(len(dataset) / (time.perf_counter() - started))
    return speeds


def fill_vs_decode(records: list[dict], chain) -> tuple[float, float]:
    """Images/s on one core of medclf's cache fill (decode, gray, resize, scale, uint8) and of a bare PIL
    decode (open, load, 8-bit gray) of the same files, image by image in turn so that both see the same
    machine load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fill = decode = 0.0
    try:
        for record in records:
            started = time.perf_counter()
            chain(dict(record))
            fill += time.perf_counter() - started
            started = time.perf_counter()
            with Image.open(record["image"]) as image:
                np.asarray(image.convert("L"))
            decode += time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return len(records) / fill, len(records) / decode


def timed(fn, repeat: int = 3) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def auroc_figures() -> None:
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(100_000, N_LABELS, generator=g) < 0.1).float()
    probs = torch.rand(100_000, N_LABELS, generator=g) * 0.7 + 0.3 * targets
    monai_s = timed(lambda: compute_roc_auc(probs, targets, average="none"), 2)
    ours_s = timed(lambda: rank_auroc(probs, targets), 5)
    reference = compute_roc_auc(probs.double(), targets.double(), average="none")
    diff = max(abs(a - b) for a, b in zip(rank_auroc(probs, targets).tolist(), reference, strict=True))
    print(f"AUROC 100,000 x 14: monai.metrics.compute_roc_auc {monai_s * 1e3:.0f} ms, medclf rank_auroc "
          f"{ours_s * 1e3:.1f} ms -> {monai_s / ours_s:.1f}x faster; max |difference| {diff:.1e}")  # fmt: skip
    val = 11_213  # NIH ChestX-ray14 VALIDATION images with scripts/prepare_nih.py's default split
    nih_s = timed(lambda: compute_roc_auc(probs[:val], targets[:val], average="none"), 3)
    epoch_at_target = (78_483 + val) / 1500  # an NIH epoch at the 1,500 images/s H100 target
    print(f"monai per-epoch AUROC at NIH validation size ({val} x 14): {nih_s * 1e3:.0f} ms = "
          f"{100 * nih_s / epoch_at_target:.2f}% of a {epoch_at_target:.0f} s NIH epoch at 1,500 images/s")  # fmt: skip
    p25, t25 = probs[:25_000], targets[:25_000]
    boot_s = timed(lambda: bootstrap_auroc(p25, t25, 1000, seed=0), 1)
    print(f"bootstrap: 1,000 resamples of 25,000 x 14 in {boot_s:.1f} s on {torch.get_num_threads()} CPU threads")
    if torch.cuda.is_available():
        pc, tc = p25.cuda(), t25.cuda()
        torch.cuda.synchronize()
        gpu_s = timed(lambda: (bootstrap_auroc(pc, tc, 1000, seed=0), torch.cuda.synchronize()), 2)
        print(f"bootstrap on {torch.cuda.get_device_name()}: {gpu_s:.2f} s")


def densenet_throughput(records: list[dict], size: int, batch_size: int, steps: int, device: torch.device) -> None:
    """DenseNet121 at ``size`` px from the memory cache: images/s and loader wait vs step time."""
    torch.backends.cudnn.benchmark = True

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    dataset = build_dataset(
        records, preprocessing(size, [f"l{j}" for j in range(N_LABELS)]), cache="memory", progress=False
    )
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0)
    loader = make_loader(dataset, batch_size=batch_size, cache="memory", num_workers=0, device=device, sampler=sampler)
    channels_last = device.type == "cuda"
    net = build_model("densenet121", N_LABELS).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    criterion = nn.BCEWithLogitsLoss()
    amp_dtype, _ = amp_settings(device, True)
    augment = AffineFlip()
    done = wait = 0.0
    images = 0
    epoch = 0
    while images < steps * batch_size:
        epoch += 1
        sampler.set_epoch(epoch)
        fetch_started = time.perf_counter()
        for step, batch in enumerate(loader):
            sync()
            ready = time.perf_counter()
            wait += ready - fetch_started if images else 0.0  # the first batch includes start-up
            x, y = prepare_batch(batch, device, channels_last=channels_last)
            x = augment(x, generator(0, epoch, step))
            with autocast(device, amp_dtype):
                loss = criterion(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync()
            fetch_started = time.perf_counter()
            if images:
                done += fetch_started - ready
            images += len(x)
            if images >= steps * batch_size:
                break
    batches = (images - batch_size) / batch_size
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    precision = amp_dtype or torch.float32
    print(f"{name}: DenseNet121 {size} px, batch {batch_size}, {precision}, channels_last {channels_last}: "
          f"{batches * batch_size / (done + wait):.0f} images/s from the memory cache; "
          f"step {1e3 * done / batches:.1f} ms, loader wait {1e3 * wait / batches:.2f} ms per batch "
          f"({100 * wait / (done + wait):.1f}% of wall time)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="number of 1024 px PNGs (default 300)")
    parser.add_argument("--size", type=int, default=224, help="training image size (default 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers (default: cores)")
    parser.add_argument("--cuda-steps", type=int, default=60, help="DenseNet121 steps on CUDA (default 60)")
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="medclf-bench-"))
    try:
        records = make_pngs(folder / "png", args.images)
        source = "copies of real NIH 1024 px PNGs" if REAL_1024.is_dir() else "synthetic 1024 px PNGs"
        print(f"data: {args.images} {source}, training at {args.size} px, batch {args.batch_size}, tiny network")

        a = baseline_epoch(records, args.size, args.batch_size, args.workers)
        print(f"(a) seed-style baseline, monai Dataset + float32 transforms, {args.workers} workers: {a:.0f} images/s")

        chain = preprocessing(args.size, [f"l{j}" for j in range(N_LABELS)])
        threads = os.cpu_count() or 1
        started = time.perf_counter()
        memory = build_dataset(records, chain, cache="memory", cache_workers=threads, progress=False)
        fill = time.perf_counter() - started
        one_core, decode = fill_vs_decode(records, chain)
        print(f"cache fill: {args.images / fill:.0f} images/s with {threads} threads; on one core {one_core:.1f} "
              f"images/s vs a bare PIL decode of the same files {decode:.1f} images/s: "
              f"{100 * one_core / decode:.0f}% (target >= 75%)")  # fmt: skip
        b1_rest, b2 = medclf_epochs(memory, "memory", args.batch_size, 0)
        b1 = args.images / (fill + args.images / b1_rest)
        print(f"(b1) medclf epoch 1 (fills the uint8 memory cache with {os.cpu_count()} threads): {b1:.0f} images/s")
        print(f"(b2) medclf epoch 2 (memory cache, ThreadDataLoader): {b2:.0f} images/s")
        print(f"ratio (b2)/(a): {b2 / a:.1f}x")
        sample = memory[0]["image"]
        per_image = sum(item["image"].numel() * item["image"].element_size() for item in memory._cache) / len(memory)
        print(f"cache: {per_image:.0f} bytes per image = {per_image / args.size**2:.2f} bytes/pixel ({sample.dtype}, "
              f"shape {tuple(sample.shape)}); float32 would be {4 * args.size**2} bytes")  # fmt: skip
        _, workers_b2 = medclf_epochs(memory, "memory", args.batch_size, args.workers, processes=True)
        print(
            f"     the same cache through a DataLoader with {args.workers} worker processes: {workers_b2:.0f} images/s"
        )

        disk = build_dataset(records, chain, cache="disk", cache_dir=folder / "cache", cache_key=str(args.size))
        d1, d2 = medclf_epochs(disk, "disk", args.batch_size, args.workers)
        print(f"disk cache (PersistentDataset, {args.workers} workers): epoch 1 {d1:.0f}, epoch 2 {d2:.0f} images/s")

        auroc_figures()
        if torch.cuda.is_available():
            densenet_throughput(records, args.size, 256, args.cuda_steps, torch.device("cuda"))
        else:
            print("CUDA DenseNet121 throughput: skipped (no GPU on this machine)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
