"""The training loss: binary cross-entropy over the labelled entries only.

A target of NaN means "unknown" (a blank cell, or an uncertain one under ``--uncertain ignore``): it is
left out of the loss, and the mean runs over the labelled entries (as torchxrayvision does across data
sets with different label sets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedBCEWithLogitsLoss(nn.Module):
    """``BCEWithLogitsLoss`` (mean) over the entries whose target is not NaN.

    Args:
        pos_weight: Optional (L,) weight of the positive class per label.
        smoothing: Label smoothing ``e``: known targets 1 and 0 become ``1 - e/2`` and ``e/2`` (training only;
            validation losses use a criterion without it).
    """

    def __init__(self, pos_weight: torch.Tensor | None = None, smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        self.smoothing = float(smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over labelled entries; 0 (with a gradient) for a batch with none.

        Computed without reading anything back to the host (no ``if`` on a tensor), so a training step
        never waits for the GPU here.
        """
        known = ~torch.isnan(targets)
        filled = torch.where(known, targets, torch.zeros_like(targets))
        if self.smoothing:
            filled = filled * (1 - self.smoothing) + self.smoothing / 2
        per_entry = F.binary_cross_entropy_with_logits(logits, filled, pos_weight=self.pos_weight, reduction="none")
        # where, not a product: an unknown entry must add nothing even when its output is infinite
        masked = torch.where(known, per_entry, torch.zeros_like(per_entry)).sum() / known.sum().clamp(min=1)
        # A fully labelled batch gets exactly the plain loss, its gradient included (bit for bit, as before
        # masking existed), so results do not move between versions.
        plain = F.binary_cross_entropy_with_logits(logits, filled, pos_weight=self.pos_weight)
        return torch.where(known.all(), plain, masked)
