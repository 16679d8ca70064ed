"""Loading torchvision ImageNet DenseNet weights into the MONAI DenseNets (medclf.pretrained)."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from medclf.errors import CheckpointError
from medclf.model.networks import build_model
from medclf.model.pretrained import load_torchvision_densenet

BLOCKS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32)}
# torchvision's own DenseNet(...).state_dict() sizes (checked against torchvision 0.29.1's densenet.py):
# densenet121: 727 entries = 364 parameters + 363 batch-norm buffers (121 batch norms x 3).
TORCHVISION_ENTRIES = {"densenet121": 727, "densenet169": 1015, "densenet201": 1207}
HEAD = ["class_layers.out.weight", "class_layers.out.bias"]


def torchvision_densenet_state_dict(
    name: str = "densenet121", *, legacy: bool = False, seed: int = 0
) -> OrderedDict[str, torch.Tensor]:
    """Random tensors with the exact names and shapes of a torchvision DenseNet's ``state_dict()``.

    Args:
        name: densenet121, densenet169 or densenet201 (growth 32, bottleneck 4 x 32, 64 stem features).
        legacy: Name dense layers as the download.pytorch.org files do (``norm.1``, ``conv.1``, ...), which
            also lack ``num_batches_tracked``.
        seed: Seed of the random values.
    """
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()

    def conv(key: str, out_ch: int, in_ch: int, k: int) -> None:
        sd[f"{key}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=g) * (2 / (in_ch * k * k)) ** 0.5

    def norm(key: str, ch: int) -> None:
        sd[f"{key}.weight"] = 1 + 0.1 * torch.randn(ch, generator=g)
        sd[f"{key}.bias"] = 0.1 * torch.randn(ch, generator=g)
        sd[f"{key}.running_mean"] = 0.1 * torch.randn(ch, generator=g)
        sd[f"{key}.running_var"] = 1 + torch.rand(ch, generator=g)
        if not legacy:
            sd[f"{key}.num_batches_tracked"] = torch.tensor(1000 + ch)

    growth, bottleneck = 32, 4 * 32
    conv("features.conv0", 64, 3, 7)
    norm("features.norm0", 64)
    channels = 64
    blocks = BLOCKS[name]
    for b, n_layers in enumerate(blocks, start=1):
        for i in range(1, n_layers + 1):
            layer = f"features.denseblock{b}.denselayer{i}"
            sep = "." if legacy else ""
            in_ch = channels + (i - 1) * growth
            norm(f"{layer}.norm{sep}1", in_ch)
            conv(f"{layer}.conv{sep}1", bottleneck, in_ch, 1)
            norm(f"{layer}.norm{sep}2", bottleneck)
            conv(f"{layer}.conv{sep}2", growth, bottleneck, 3)
        channels += n_layers * growth
        if b < len(blocks):
            norm(f"features.transition{b}.norm", channels)
            conv(f"features.transition{b}.conv", channels // 2, channels, 1)
            channels //= 2
    norm("features.norm5", channels)
    sd["classifier.weight"] = 0.01 * torch.randn(1000, channels, generator=g)
    sd["classifier.bias"] = torch.zeros(1000)
    return sd


def _monai(key: str) -> str:
    return re.sub(r"(denselayer\d+)\.(norm|conv)\.?([12])\.", r"\1.layers.\2\3.", key)


@pytest.fixture(scope="module")
def tv121(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OrderedDict[str, torch.Tensor]]:
    sd = torchvision_densenet_state_dict("densenet121")
    path = tmp_path_factory.mktemp("pretrained") / "densenet121.pth"
    torch.save(sd, path)
    return path, sd


def test_generator_matches_torchvision_sizes() -> None:
    sd = torchvision_densenet_state_dict("densenet121")
    assert len(sd) == TORCHVISION_ENTRIES["densenet121"]
    assert sum(not k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in sd) == 364
    params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
    assert params == 7_978_856  # torchvision's published densenet121 size
    assert sd["features.conv0.weight"].shape == (64, 3, 7, 7)
    assert sd["features.denseblock4.denselayer16.norm1.weight"].shape == (1024 - 32,)
    assert sd["features.norm5.weight"].shape == (1024,)
    assert sd["classifier.weight"].shape == (1000, 1024)
    assert len(torchvision_densenet_state_dict("densenet121", legacy=True)) == 727 - 121


def test_densenet121_gray_loads_every_backbone_tensor(
    tv121: tuple[Path, OrderedDict[str, torch.Tensor]], caplog: pytest.LogCaptureFixture
) -> None:
    path, sd = tv121
    model = build_model("densenet121", n_labels=14, in_channels=1)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k in HEAD}

    report = load_torchvision_densenet(model, path)

    assert len(report.loaded) == 725
    assert report.adapted == ["features.conv0.weight"]
    assert report.skipped == ["classifier.weight", "classifier.bias"]
    assert report.missing == HEAD
    assert len(report.loaded) + len(report.missing) == len(model.state_dict())
    assert len(report.loaded) + len(report.skipped) == len(sd)
    ours = model.state_dict()
    for key, value in sd.items():
        if key.startswith("features.") and key != "features.conv0.weight":
            assert torch.equal(ours[_monai(key)], value), key
    for key in [
        "features.norm0.running_var",
        "features.denseblock3.denselayer24.layers.conv2.weight",
        "features.denseblock1.denselayer1.layers.norm1.num_batches_tracked",
        "features.transition3.conv.weight",
        "features.norm5.weight",
    ]:
        assert key in report.loaded
    stem = sd["features.conv0.weight"]
    assert torch.equal(ours["features.conv0.weight"], stem.sum(dim=1, keepdim=True))
    for key, value in head_before.items():
        assert torch.equal(ours[key], value)
    assert report.n_parameters == 7_978_856 - 1000 * 1024 - 1000 - 64 * 2 * 49
    message = caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.INFO
    assert "loaded 725 tensors (6.95M parameters)" in message and str(path) in message
    assert "features.conv0.weight (RGB summed to 1 channel)" in message
    assert "skipped: classifier.weight, classifier.bias" in message
    assert "left at initial values: class_layers.out.weight, class_layers.out.bias" in message


def test_gray_network_equals_rgb_network_on_gray_images(tv121: tuple[Path, OrderedDict[str, torch.Tensor]]) -> None:
    path, _ = tv121
    gray, rgb = build_model("densenet121", 3, in_channels=1), build_model("densenet121", 3, in_channels=3)
    before = gray.eval()(torch.rand(2, 1, 32, 32)).detach()
    assert load_torchvision_densenet(rgb, path).adapted == []
    load_torchvision_densenet(gray, path)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        gray_features = gray.eval().features(x)
        rgb_features = rgb.eval().features(x.expand(-1, 3, -1, -1))
        after = gray(torch.rand(2, 1, 32, 32))
    torch.testing.assert_close(gray_features, rgb_features, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(before, after)  # the weights took effect


def test_output_changes_after_loading(tv121: tuple[Path, OrderedDict[str, torch.Tensor]]) -> None:
    path, _ = tv121
    torch.manual_seed(0)
    model = build_model("densenet121", 2).eval()
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        load_torchvision_densenet(model, path)
        after = model(x)
    assert not torch.allclose(before, after, atol=1e-3)


@pytest.fixture(scope="module")
def tv169(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OrderedDict[str, torch.Tensor]]:
    """A densenet169 file as DataParallel training scripts save it: ``{"state_dict": {"module.…": …}}``."""
    sd = torchvision_densenet_state_dict("densenet169", seed=1)
    path = tmp_path_factory.mktemp("pretrained") / "densenet169.pth"
    torch.save({"state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items()), "epoch": 90}, path)
    return path, sd


def test_densenet169_with_module_prefix(tv169: tuple[Path, OrderedDict[str, torch.Tensor]]) -> None:
    path, sd = tv169
    assert len(sd) == TORCHVISION_ENTRIES["densenet169"]
    model = build_model("densenet169", 5)
    report = load_torchvision_densenet(model, path)
    assert len(report.loaded) == len(sd) - 2
    assert report.skipped == ["classifier.weight", "classifier.bias"]
    assert report.missing == HEAD
    key = "features.denseblock4.denselayer32.norm2.running_mean"
    assert torch.equal(model.state_dict()[_monai(key)], sd[key])


def test_other_depth_is_refused_unless_partial(tv169: tuple[Path, OrderedDict[str, torch.Tensor]]) -> None:
    path, _ = tv169
    model = build_model("densenet121", 14)
    before = model.state_dict()["features.norm0.weight"].clone()
    with pytest.raises(CheckpointError, match=r"densenet169 \(blocks 6, 12, 32, 32\).*densenet121"):
        load_torchvision_densenet(model, path)
    assert torch.equal(model.state_dict()["features.norm0.weight"], before)  # untouched
    report = load_torchvision_densenet(model, path, allow_partial=True)
    assert "features.norm5.weight" in report.skipped
    assert "features.norm5.weight" in report.missing
    assert not torch.equal(model.state_dict()["features.norm0.weight"], before)


def test_legacy_names_in_a_model_entry(tmp_path: Path) -> None:
    sd = torchvision_densenet_state_dict("densenet121", legacy=True, seed=2)
    assert "features.denseblock2.denselayer3.norm.1.weight" in sd
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save({"model": sd, "epoch": 90}, path)
    model = build_model("densenet121", 14)
    report = load_torchvision_densenet(model, path)
    assert len(report.loaded) == len(sd) - 2 == 604
    key = "features.denseblock2.denselayer3.norm.1.weight"
    assert torch.equal(model.state_dict()["features.denseblock2.denselayer3.layers.norm1.weight"], sd[key])
    counters = [k for k in report.missing if k.endswith("num_batches_tracked")]
    assert len(counters) == 121
    assert sorted(set(report.missing) - set(counters)) == sorted(HEAD)
    assert "121 batch-norm num_batches_tracked counters" in report.summary()


class _Payload:
    """Pickles into a call of ``_touch``: loading it with pickle would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _touch, (str(self.marker),)


def _touch(path: str) -> None:
    Path(path).touch()


def test_pickled_objects_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7), "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_torchvision_densenet(build_model("densenet121", 2), path)
    assert not marker.exists()


def test_missing_unreadable_and_foreign_files(tmp_path: Path) -> None:
    model = build_model("densenet121", 2)
    with pytest.raises(CheckpointError, match="not found"):
        load_torchvision_densenet(model, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_torchvision_densenet(model, junk)
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.randn(64, 3, 7, 7), "fc.weight": torch.randn(1000, 512)}, foreign)
    with pytest.raises(CheckpointError, match=r"expected keys such as features\.conv0\.weight.*features\.norm5"):
        load_torchvision_densenet(model, foreign)


def test_train_starts_from_local_pretrained_weights(
    tv121: tuple[Path, OrderedDict[str, torch.Tensor]], synthetic_csv: Path, tmp_path: Path, caplog
) -> None:
    from medclf import TrainConfig, load_checkpoint, train

    path, source = tv121
    config = TrainConfig(csv=str(synthetic_csv), out=str(tmp_path / "run"), pretrained=str(path), image_size=32,
                         epochs=1, batch_size=16, lr=1e-12, device="cpu", progress=False, num_workers=0,
                         figure_every=0, augment=False)  # fmt: skip
    result = train(config)
    assert "loaded 725 tensors" in caplog.text and "classifier.weight" in caplog.text
    weights = load_checkpoint(result.last_checkpoint)["model"]
    # with a vanishing learning rate the trained backbone is still the ImageNet one
    assert torch.allclose(weights["features.denseblock3.denselayer5.layers.conv2.weight"],
                          source["features.denseblock3.denselayer5.conv2.weight"], atol=1e-6)  # fmt: skip
    assert torch.allclose(
        weights["features.conv0.weight"], source["features.conv0.weight"].sum(1, keepdim=True), atol=1e-6
    )
