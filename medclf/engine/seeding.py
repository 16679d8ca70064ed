"""Seeds and random-number states.

Randomness during training is drawn from generators seeded by (seed, epoch, step), not from a stream
that runs across the whole run. An epoch's data order and a step's augmentation therefore depend only on
where they are, which is what makes a resumed run, a mid-epoch resume and a run with more data workers
repeat an uninterrupted one exactly. The per-use generators are in :mod:`medclf.data.seeds`; this
module seeds the process and saves and restores its random states.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism


def seed_everything(seed: int, deterministic_cuda: bool = False) -> None:
    """Seed python, numpy, torch and MONAI; choose fast or deterministic CUDA kernels."""
    set_determinism(seed=seed)
    # set_determinism switches cuDNN to deterministic, slow kernels; keep that only when asked.
    torch.backends.cudnn.deterministic = deterministic_cuda
    torch.backends.cudnn.benchmark = not deterministic_cuda


def rng_states() -> dict[str, Any]:
    """Random states of python, numpy and torch as plain values and tensors (checkpoint-safe)."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`; missing entries are left alone."""
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        keys = states["numpy"]["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, states["numpy"]["pos"], 0, 0.0))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value
