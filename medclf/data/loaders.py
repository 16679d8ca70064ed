"""Datasets, caches, samplers and loaders.

``--cache memory`` keeps every preprocessed image in a MONAI ``CacheDataset`` (uint8 at the training
size, filled by a thread pool) and serves batches from a ``ThreadDataLoader``; ``--cache disk`` stores
the same samples in a MONAI ``PersistentDataset`` so that later runs skip decoding; ``--cache none``
decodes every epoch in DataLoader worker processes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset, ThreadDataLoader
from monai.transforms import Compose
from torch.utils.data import DataLoader, Sampler

from medclf.data.seeds import generator
from medclf.data.transforms import SkipUnreadable, as_uint16

log = logging.getLogger(__name__)

# Bump when preprocessing changes, so that old disk-cache entries are not reused.
CACHE_VERSION = 1


def build_dataset(
    records: Sequence[dict],
    preprocessing: Compose,
    *,
    cache: str = "memory",
    cache_rate: float = 1.0,
    cache_dir: str | Path | None = None,
    cache_workers: int = 0,
    cache_key: str = "",
    progress: bool = True,
) -> Dataset:
    """Wrap records and the deterministic preprocessing in the chosen MONAI dataset.

    Args:
        records: Samples from :meth:`medclf.data.manifest.Manifest.records`.
        preprocessing: Chain from :func:`medclf.data.transforms.preprocessing`.
        cache: ``memory``, ``disk`` or ``none``.
        cache_rate: Fraction of samples kept in the memory cache.
        cache_dir: Folder of the disk cache.
        cache_workers: Threads that fill the memory cache (0: one per CPU core).
        cache_key: Settings that change preprocessing (e.g. the image size); part of disk-cache names.
        progress: Show a progress bar while the memory cache fills.
    """
    transform = Compose([SkipUnreadable(preprocessing)])
    if cache == "memory":
        workers = cache_workers or os.cpu_count() or 1
        return CacheDataset(
            list(records), transform, cache_rate=cache_rate, num_workers=workers, progress=progress, copy_cache=False
        )
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("a disk cache needs cache_dir")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        return PersistentDataset([_stamped(r, cache_key) for r in records], transform, cache_dir=cache_dir)
    if cache == "none":
        return Dataset(list(records), transform)
    raise ValueError(f"unknown cache {cache!r}")


def _stamped(record: dict, cache_key: str) -> dict:
    """Add what must change the disk-cache name: the file's size and mtime, and the preprocessing."""
    try:
        st = os.stat(record["image"])
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return {**record, "cache_stamp": f"v{CACHE_VERSION}-{cache_key}-{stamp}"}


def cached_errors(dataset: Dataset) -> list[dict]:
    """Error markers already in a memory cache (no decoding); empty for other datasets."""
    if isinstance(dataset, CacheDataset):
        return [item for item in dataset._cache if isinstance(item, dict) and "error" in item]
    return []


def scan_errors(dataset: Dataset, progress: bool = True) -> list[dict]:
    """Decode every sample that is not in memory yet and return the error markers of all samples."""
    if isinstance(dataset, CacheDataset) and dataset.cache_num == len(dataset):
        return cached_errors(dataset)
    from tqdm.auto import tqdm

    errors = []
    for i in tqdm(range(len(dataset)), desc="checking images", disable=not progress, leave=False):
        item = dataset[i]
        if "error" in item:
            errors.append(item)
    return errors


def collate_samples(items: Sequence[dict]) -> dict[str, Any]:
    """Stack samples into a batch, leaving out error markers (listed under ``skipped``).

    A batch that mixes 8-bit and 16-bit sources is widened to uint16 so that one scale applies.
    """
    good = [s for s in items if "error" not in s]
    skipped = [{"path": s["path"], "row": s["row"], "error": s["error"]} for s in items if "error" in s]
    batch: dict[str, Any] = {
        "path": [s["path"] for s in good],
        "row": torch.tensor([int(s["row"]) for s in good], dtype=torch.int64),
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.int64),
        "skipped": skipped,
    }
    if not good:
        batch["image"] = torch.empty(0, 1, 1, 1, dtype=torch.uint8)
        return batch
    images = [torch.as_tensor(s["image"]) for s in good]
    if len({im.dtype for im in images}) > 1:
        images = [as_uint16(im) for im in images]
    batch["image"] = torch.stack(images)
    if "labels" in good[0]:
        batch["labels"] = torch.stack([torch.as_tensor(s["labels"], dtype=torch.float32) for s in good])
    return batch


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of a permutation that depends only on (seed, epoch), optionally from a given batch on.

    Setting the epoch (and the first batch, when resuming inside an epoch) replays the exact order of an
    uninterrupted run. A last batch of a single image is merged into the one before, because batch norm
    cannot train on one image.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, stream: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.shuffle, self.stream = n, batch_size, seed, shuffle, stream
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Choose the epoch's permutation and the first batch to yield."""
        self.epoch, self.start_batch = epoch, start_batch

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch."""
        if self.shuffle:
            order = torch.randperm(self.n, generator=generator(self.seed, self.epoch, self.stream)).tolist()
        else:
            order = list(range(self.n))
        out = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if len(out) > 1 and len(out[-1]) == 1:
            out[-2].extend(out.pop())
        return out

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(0, len(self.batches()) - self.start_batch)


class FixedBatches(Sampler[list[int]]):
    """Yields the given batches of indices, in order (evaluation shards under torchrun)."""

    def __init__(self, batches: Sequence[Sequence[int]]) -> None:
        self.batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    cache: str,
    num_workers: int,
    device: torch.device,
    sampler: Sampler[list[int]] | None = None,
) -> DataLoader:
    """A loader over ``dataset``: shuffled by ``sampler`` when given, else in order.

    The memory cache is served by MONAI's ``ThreadDataLoader`` (batches are slices of RAM; worker
    processes would only add copies); other caches decode in ``num_workers`` processes.
    """
    kwargs: dict[str, Any] = {"collate_fn": collate_samples, "pin_memory": device.type == "cuda"}
    if sampler is not None:
        kwargs["batch_sampler"] = sampler
    else:
        kwargs.update(batch_size=batch_size, shuffle=False)
    if cache == "memory":
        return ThreadDataLoader(dataset, num_workers=0, buffer_size=2, **kwargs)
    return DataLoader(dataset, num_workers=num_workers, persistent_workers=num_workers > 0, **kwargs)
