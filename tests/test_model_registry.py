"""The model registry (issue 20, item 2): every architecture carries what medclf needs, and a second family
(MONAI's ResNet, registered in ``medclf/model/resnet.py``) trains, validates, freezes its backbone,
explains with Grad-CAM and embeds through the same commands as the DenseNets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medclf.errors import ConfigError
from medclf.explain import main as explain_main
from medclf.model import registry
from medclf.model.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from medclf.model.gradcam import gradcam_heatmap
from medclf.model.networks import build_model, set_backbone_trainable
from medclf.train import main as train_main
from medclf.validate import main as validate_main
from tests.test_failures import error_line

FAST = ["--image-size", "64", "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--num-workers", "0",
        "--cache-workers", "1", "--no-progress", "--figure-every", "0", "--labels", "effusion,edema,mass"]  # fmt: skip


def test_registry_lists_names_without_torch() -> None:
    code = (
        "import sys; from medclf.model.registry import model_names; names = model_names(); "
        "assert 'torch' not in sys.modules and 'monai' not in sys.modules, 'heavy import'; print(','.join(names))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [",".join(registry.model_names())]
    assert {"densenet121", "densenet_tiny", "resnet10", "resnet18"} <= set(registry.model_names())


def test_unknown_model_keeps_its_message(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    names = ", ".join(registry.model_names())
    with pytest.raises(ConfigError, match=rf"^--model \(model\) must be one of {names}; got 'nonet'$"):
        registry.architecture("nonet")
    config = tmp_path / "settings.yaml"
    config.write_text("model: nonet\n")  # a settings file passes argparse; the registry refuses it
    out = tmp_path / "run"
    assert train_main(["--csv", str(synthetic_csv), "--out", str(out), "--config", str(config), *FAST]) == 2
    assert error_line(capsys) == f"error: --model (model) must be one of {names}; got 'nonet'"
    assert not out.exists()


@pytest.mark.parametrize("name", ["densenet_tiny", "densenet121", "resnet10", "resnet18"])
def test_each_architecture_has_what_medclf_needs(name: str) -> None:
    arch = registry.architecture(name)
    net = build_model(name, 3)
    assert registry.architecture_of(net) is arch and arch.input.channels == 1
    head = net.get_submodule(arch.feature_layer)
    assert isinstance(head, nn.Linear) and head.out_features == 3
    assert arch.gradcam_layer in dict(net.named_modules())
    backbone = {id(p) for part in arch.backbone(net) for p in part.parameters()}
    assert backbone and not backbone & {id(p) for p in head.parameters()}
    assert len(backbone) + len(list(head.parameters())) == len(list(net.parameters()))
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 3)


def test_backbone_freezing_leaves_only_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    net = build_model("resnet10", 2).train()
    set_backbone_trainable(net, False)
    trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"fc"} and not net.layer1.training and net.fc.training


def _train_with_frozen_backbone(model: str, csv: Path, run: Path, monkeypatch: pytest.MonkeyPatch) -> Checkpoint:
    """One epoch with ``--freeze-backbone-epochs 1``; asserts that only the head changed."""
    import medclf.workflows.run_state as run_state

    initial: dict[str, torch.Tensor] = {}

    def build_and_keep(*args, **kwargs) -> nn.Module:
        net = build_model(*args, **kwargs)
        initial.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        return net

    monkeypatch.setattr(run_state, "build_model", build_and_keep)
    args = ["--csv", str(csv), "--out", str(run), "--model", model, "--freeze-backbone-epochs", "1"]
    assert train_main([*args, *FAST]) == 0
    trained = load_checkpoint(run / "last.pt")
    assert trained.model_name == model
    # Weights and batch-norm statistics of the backbone are those the network started with.
    head = registry.architecture(model).feature_layer
    changed = {k for k, v in trained.model.items() if not torch.equal(v, initial[k])}
    assert changed and all(k.startswith(head + ".") for k in changed), sorted(changed)[:5]
    return trained


def test_densenet_backbone_stays_frozen(synthetic_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _train_with_frozen_backbone("densenet_tiny", synthetic_csv, tmp_path / "run", monkeypatch)


def test_resnet_trains_freezes_validates_embeds_and_explains(
    synthetic_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    trained = _train_with_frozen_backbone("resnet10", synthetic_csv, run, monkeypatch)

    out = tmp_path / "val"
    flags = ["--checkpoint", str(run / "last.pt"), "--csv", str(synthetic_csv), "--out", str(out), "--bootstrap", "0"]
    assert validate_main([*flags, "--embeddings", "--device", "cpu", "--num-workers", "0", "--no-progress"]) == 0
    assert (out / "metrics.json").is_file() and (out / "embeddings.png").is_file()
    projector = out / "projector" / "00000" / "features"
    assert (projector / "metadata.tsv").read_text().split("\t")[:2] == ["image", "effusion"]
    first = (projector / "tensors.tsv").read_text().splitlines()[0]
    assert len(first.split("\t")) == 512  # the input of resnet10's fc, its registered feature layer

    image = next((synthetic_csv.parent / "images").glob("*.png"))
    explained = tmp_path / "explained"
    assert explain_main(["--checkpoint", str(run / "last.pt"), "--image", str(image), "--out", str(explained)]) == 0
    assert sorted(p.suffix for p in explained.iterdir()) == [".png"] * 3
    heat = gradcam_heatmap(model_from_checkpoint(trained).eval(), torch.rand(1, 64, 64), 0)
    assert heat.shape == (64, 64) and np.isfinite(heat).all() and 0.0 <= heat.min() <= heat.max() <= 1.0


def test_pretrained_without_a_loader_is_refused(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(1)}, weights)
    out = tmp_path / "run"
    args = ["--csv", str(synthetic_csv), "--out", str(out), "--model", "resnet10", "--pretrained", str(weights)]
    assert train_main([*args, *FAST]) == 2
    line = error_line(capsys)
    assert line == (
        f"error: --pretrained {weights}: resnet10 has no pretrained-weights loader "
        "(one exists for densenet121, densenet169, densenet201, densenet_tiny, resnet18)"
    )
    assert not out.exists()
