"""Multi-GPU and multi-node training with ``torchrun`` (DistributedDataParallel).

Started by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), medclf joins a
process group (nccl on CUDA, gloo on CPU). Each rank caches only its share of TRAIN and of VALIDATION.
Validation is split by whole batches of the single-process order, so every image goes through the
network in exactly the batch it would have in a single process; the logits are gathered and sorted
back into manifest order, which makes the reported AUROC equal a single-process evaluation of the same
weights. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from monai.data import partition_dataset

from medclf.data.loaders import FixedBatches
from medclf.engine.loops import Inference


@dataclass(frozen=True)
class World:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """True on the process that writes files and logs."""
        return self.rank == 0


def init_world(device_name: str) -> tuple[World, str]:
    """Join the process group when started by torchrun; returns the world and the device to use.

    Args:
        device_name: ``auto``, ``cpu`` or ``cuda`` (as in the settings); on CUDA each rank takes the GPU
            of its LOCAL_RANK.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=dt.timedelta(minutes=30))
    return World(rank, size, local_rank), f"cuda:{local_rank}" if use_cuda else "cpu"


def joined() -> bool:
    """Whether this process is already in a process group (e.g. a study running several trainings)."""
    return dist.is_available() and dist.is_initialized()


def close_world(world: World) -> None:
    """Leave the process group."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every rank (no-op in a single process)."""
    if world.distributed:
        dist.barrier()


def shard_records(records: Sequence[dict], world: World, seed: int) -> list[dict]:
    """This rank's fixed share of the training records (MONAI ``partition_dataset``).

    Shares are drawn at random once (seeded) and padded to equal length, so every rank runs the same
    number of steps; each rank then reshuffles its share every epoch.
    """
    if not world.distributed:
        return list(records)
    parts = partition_dataset(list(records), num_partitions=world.size, shuffle=True, seed=seed, even_divisible=True)
    return list(parts[world.rank])


def shard_eval(records: Sequence[dict], batch_size: int, world: World) -> tuple[list[dict], FixedBatches]:
    """This rank's evaluation records and its batches over them.

    The single-process order is cut into batches of ``batch_size`` that are dealt round-robin to the
    ranks, so each image meets the network in the same batch as in a single process.
    """
    n = len(records)
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)][world.rank :: world.size]
    mine = [records[i] for batch in batches for i in batch]
    local, start = [], 0
    for batch in batches:
        local.append(list(range(start, start + len(batch))))
        start += len(batch)
    return mine, FixedBatches(local)


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's value of a picklable object, on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(net: torch.nn.Module, world: World) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every rank.

    DDP broadcasts buffers before each forward, so after the last step each rank holds statistics
    updated with its own batch; validation and the checkpoint must use the same (rank 0's).
    """
    if world.distributed:
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one rank (all ranks get the same answer)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(values: Sequence[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum of a few numbers over the ranks (float64)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_inference(result: Inference, world: World) -> Inference:
    """Every rank's validation outputs, merged on every rank and sorted into manifest order."""
    if not world.distributed:
        return result
    device = result.logits.device
    mine: dict[str, Any] = {
        "logits": result.logits.cpu(),
        "targets": result.targets.cpu() if result.targets is not None else None,
        "indices": result.indices.cpu(),
        "paths": result.paths,
        "rows": result.rows,
        "loss": (result.loss or 0.0) * len(result.paths),
        "seen": len(result.paths),
        "skipped": result.skipped,
    }
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, mine)
    logits = torch.cat([p["logits"] for p in parts])
    indices = torch.cat([p["indices"] for p in parts])
    order = torch.argsort(indices)
    targets = torch.cat([p["targets"] for p in parts])[order] if parts[0]["targets"] is not None else None
    paths = [path for p in parts for path in p["paths"]]
    rows = [row for p in parts for row in p["rows"]]
    seen = sum(p["seen"] for p in parts)
    return Inference(
        logits=logits[order].to(device),
        targets=targets.to(device) if targets is not None else None,
        paths=[paths[i] for i in order.tolist()],
        rows=[rows[i] for i in order.tolist()],
        indices=indices[order],
        loss=sum(p["loss"] for p in parts) / seen if seen else None,
        skipped=[s for p in parts for s in p["skipped"]],
    )
