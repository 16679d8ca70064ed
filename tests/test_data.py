"""Caches and samplers: compact memory cache, disk cache reuse, reproducible epoch order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import medclf.data.transforms
from medclf.data.loaders import EpochBatchSampler, build_dataset, cached_errors
from medclf.data.transforms import preprocessing


def records(folder: Path, n: int = 6) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        Image.fromarray(np.full((40, 40), i * 20, np.uint8) + np.eye(40, dtype=np.uint8)).save(folder / f"{i}.png")
        out.append({"image": str(folder / f"{i}.png"), "row": i + 2, "index": i, "a": np.array([i % 2], np.float32)})
    return out


def test_memory_cache_holds_one_byte_per_pixel(tmp_path: Path) -> None:
    dataset = build_dataset(records(tmp_path / "img"), preprocessing(32, ["a"]), cache="memory", progress=False)
    assert not cached_errors(dataset)
    for item in dataset._cache:
        assert item["image"].dtype == torch.uint8 and item["image"].numel() * item["image"].element_size() == 32 * 32
        assert set(item) == {"image", "labels", "path", "row", "index"}  # no MONAI metadata or trace lists


def test_disk_cache_is_reused_and_refreshed_when_a_file_changes(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    real = medclf.data.transforms.ReadImaged.__call__

    def counting(self, data):
        calls.append(data["image"])
        return real(self, data)

    monkeypatch.setattr(medclf.data.transforms.ReadImaged, "__call__", counting)
    data = records(tmp_path / "img")
    chain = preprocessing(32, ["a"])
    first = build_dataset(data, chain, cache="disk", cache_dir=tmp_path / "cache", cache_key="32")
    before = [first[i]["image"] for i in range(len(data))]
    assert len(calls) == len(data) and len(list((tmp_path / "cache").glob("*.pt"))) == len(data)

    calls.clear()
    second = build_dataset(data, chain, cache="disk", cache_dir=tmp_path / "cache", cache_key="32")
    after = [second[i]["image"] for i in range(len(data))]
    assert calls == []  # the second run decodes nothing
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))

    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(data[0]["image"])
    os.utime(data[0]["image"], ns=(1, 10**18))  # a different mtime, whatever the clock resolution
    third = build_dataset(data, chain, cache="disk", cache_dir=tmp_path / "cache", cache_key="32")
    assert third[0]["image"].max() == 0  # the new, constant image
    assert calls == [data[0]["image"]]
    other_size = build_dataset(
        data, preprocessing(16, ["a"]), cache="disk", cache_dir=tmp_path / "cache", cache_key="16"
    )
    assert other_size[1]["image"].shape == (1, 16, 16)


def test_epoch_order_depends_only_on_seed_epoch_and_stream() -> None:
    sampler = EpochBatchSampler(103, 10, seed=4)
    sampler.set_epoch(3)
    full = list(sampler)
    assert sorted(i for batch in full for i in batch) == list(range(103))
    assert [len(b) for b in full][-1] == 3 and len(full) == 11
    sampler.set_epoch(3, start_batch=4)
    assert list(sampler) == full[4:] and len(sampler) == 7
    sampler.set_epoch(4)
    assert list(sampler) != full
    other = EpochBatchSampler(103, 10, seed=4, stream=1)
    other.set_epoch(3)
    assert list(other) != full
    tiny = EpochBatchSampler(21, 10, seed=0)
    assert [len(b) for b in tiny.batches()] == [10, 11]  # a lone last image joins the batch before
