"""Random-number generators seeded by where they are used: (seed, epoch, step, ...).

An epoch's data order and a step's augmentation depend only on these keys, not on a stream that runs
across the whole run, which is what makes a resumed run repeat an uninterrupted one (see
:mod:`medclf.engine.seeding` for the process-wide seeds and saved states). It lives in ``data`` because
the samplers need it and ``data`` sits below ``engine``.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (numpy's SeedSequence mixing)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(*keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded with :func:`derive_seed` of the keys."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*keys))
    return g
