"""An exponential moving average (EMA) of a network's weights (``--ema-decay``).

The average is what a run validates and saves as the model: ``best.pt`` and ``last.pt`` hold it under
``model``, so validate, predict, explain and export read the averaged weights like any others. ``last.pt``
also keeps the trained weights and the update count under ``ema``, so that ``--resume`` continues both
exactly.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightEMA:
    """The moving average of ``net``'s parameters and floating-point buffers (batch-norm statistics).

    The decay used at update ``n`` is ``min(decay, (1 + n) / (10 + n))``: early on the average follows the
    network closely, so that a short run on a small data set is not dominated by the random start.

    Args:
        net: The network being trained (the bare module, not a DDP or compiled wrapper).
        decay: The decay at steady state, in [0.5, 1).
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(net).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards ``net``'s current weights (called after each optimiser step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = net.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.dtype.is_floating_point:
                average.lerp_(value.to(average.dtype), 1 - decay)
            else:
                average.copy_(value)  # e.g. batch norm's num_batches_tracked

    def train_state(self, net: nn.Module) -> dict[str, Any]:
        """What ``last.pt`` keeps beside the averaged ``model``: the trained weights and the update count."""
        return {"train_weights": net.state_dict(), "updates": self.updates, "decay": self.decay}

    def restore(self, net: nn.Module, averaged: dict[str, torch.Tensor], saved: dict[str, Any] | None) -> None:
        """Load a checkpoint's averaged ``model`` and, from ``saved`` (its ``ema``), the trained weights.

        Without ``saved`` (a ``best.pt``, or a run saved without EMA) both start from ``averaged``.
        """
        self.module.load_state_dict(averaged)
        net.load_state_dict(saved["train_weights"] if saved else averaged)
        self.updates = int(saved["updates"]) if saved else 0
