"""A Triton Inference Server model repository entry for an exported ONNX model (``triton/medclf/``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medclf.reporting.files import write_bytes, write_text

MODEL_NAME = "medclf"


def triton_config(image_size: int, labels: Sequence[str], max_batch_size: int = 32) -> str:
    """``config.pbtxt``: ONNX Runtime backend, input ``image`` (1, S, S), outputs ``logits`` and ``probabilities``."""
    n = len(labels)
    outputs = ",\n".join(
        f'  {{ name: "{name}" data_type: TYPE_FP32 dims: [ {n} ]{label_file} }}'
        for name, label_file in (("logits", ""), ("probabilities", ' label_filename: "labels.txt"'))
    )
    return (
        f'name: "{MODEL_NAME}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
        f'input [\n  {{ name: "image" data_type: TYPE_FP32 dims: [ 1, {image_size}, {image_size} ] }}\n]\n'
        f"output [\n{outputs}\n]\n"
        "dynamic_batching { }\n"
    )


def write_triton_entry(repository: str | Path, onnx_model: bytes, image_size: int, labels: Sequence[str]) -> Path:
    """``<repository>/medclf/config.pbtxt``, ``labels.txt`` and ``1/model.onnx``; returns the entry's folder."""
    entry = Path(repository) / MODEL_NAME
    (entry / "1").mkdir(parents=True, exist_ok=True)
    write_text(entry / "config.pbtxt", triton_config(image_size, labels))
    write_text(entry / "labels.txt", "".join(f"{name}\n" for name in labels))
    write_bytes(entry / "1" / "model.onnx", onnx_model)
    return entry
