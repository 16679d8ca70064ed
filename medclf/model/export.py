"""A checkpoint's network as a deployable graph: TorchScript and ONNX with ``logits`` and ``probabilities``.

:class:`DeployedNet` wraps the network so that one call gives both outputs, the probabilities with the
checkpoint's per-label temperatures applied (``sigmoid(logit / T)``, as
:func:`medclf.metrics.calibration.reported_probabilities` reports them). The input is a float32
``(N, 1, S, S)`` batch in [0, 1], exactly as :func:`medclf.data.transforms.load_image` gives it. The
functions return bytes; the files are written by the caller through the atomic writers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import nn

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "probabilities")


class DeployedNet(nn.Module):
    """A network plus its temperatures: ``image -> (logits, probabilities)``."""

    def __init__(self, net: nn.Module, temperatures: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperatures", torch.tensor(list(temperatures), dtype=torch.float32).view(1, -1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(image)
        return logits, torch.sigmoid(logits / self.temperatures)


def example_input(image_size: int, batch: int = 2) -> torch.Tensor:
    """A float32 (batch, 1, S, S) tensor in [0, 1] for tracing."""
    return torch.rand(batch, 1, image_size, image_size, generator=torch.Generator().manual_seed(0))


def trace(module: nn.Module, image_size: int) -> torch.jit.ScriptModule:
    """``module`` traced in eval mode (once: the TorchScript files and the ONNX export all come from it)."""
    with torch.no_grad():
        return torch.jit.trace(module.eval(), example_input(image_size), check_trace=False)


def torchscript_bytes(traced: torch.jit.ScriptModule) -> bytes:
    """A traced module (or one of its submodules) serialised as a TorchScript archive; any batch size works."""
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def onnx_bytes(module: nn.Module, image_size: int, opset: int = 17) -> bytes:
    """``module`` (traced or not) as an ONNX model with a dynamic batch axis, input ``image``, outputs ``logits`` and
    ``probabilities``, checked by ``onnx.checker``."""
    import onnx

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with torch.no_grad():
        torch.onnx.export(
            module.eval(), (example_input(image_size),), buffer, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    return buffer.getvalue()


__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "DeployedNet", "example_input", "onnx_bytes", "torchscript_bytes", "trace"]
