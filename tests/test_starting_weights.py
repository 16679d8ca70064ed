"""Starting points of a run (issue 23): ``--pretrained imagenet`` through the torch.hub cache, medclf weights
files converted from torchxrayvision (``--pretrained FILE`` / ``torchxrayvision:NAME``), ``--init-from``, the
input convention they carry, and one clear line for each bad input. Nothing here touches the network."""

from __future__ import annotations

import logging
import math
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medclf.errors import CheckpointError, ConfigError
from medclf.model.checkpoint import load_checkpoint, model_from_checkpoint
from medclf.model.hub_cache import imagenet_weights
from medclf.model.input_convention import apply_convention
from medclf.model.networks import build_model
from medclf.model.starting_weights import resolve_start
from medclf.model.weights_file import WeightsFile, read_weights_file, save_weights_file, shared_rows
from medclf.model.xrv_import import XRV_INPUT, cached_weights_path, weights_from_xrv_model
from medclf.train import main as train_main
from tests.test_failures import FAST, error_line
from tests.test_pretrained import torchvision_densenet_state_dict

#: torchxrayvision's DenseNet121 ``targets`` (xrv.datasets.default_pathologies order), its 18 outputs.
XRV_LABELS = ["Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
              "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
              "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum"]  # fmt: skip


class FakeXrvModel:
    """What the converter reads of a loaded ``xrv.models.DenseNet``: ``state_dict()``, ``targets``, ``op_threshs``."""

    def __init__(self, state: dict[str, torch.Tensor], thresholds: list[float] | None = None) -> None:
        self._state, self.targets = state, list(XRV_LABELS)
        self.op_threshs = torch.tensor(thresholds) if thresholds else None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def xrv_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes of torchxrayvision's DenseNet121 (one-channel stem, 18 outputs)."""
    sd = dict(torchvision_densenet_state_dict("densenet121", seed=seed))
    g = torch.Generator().manual_seed(seed + 1)
    sd["features.conv0.weight"] = torch.randn(64, 1, 7, 7, generator=g) * 0.1
    sd["classifier.weight"] = torch.randn(18, 1024, generator=g) * 0.05
    sd["classifier.bias"] = torch.randn(18, generator=g)
    return sd


@pytest.fixture(scope="module")
def xrv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file in exactly the layout ``medclf-import-weights torchxrayvision`` writes."""
    thresholds = [0.07, 0.04, 0.1, 0.01, 0.02, 0.002, 0.01, 0.1, 0.06, 0.03, 0.05, 0.02, 0.02, 0.04, 0.05, 0.04,
                  0.2, 0.05]  # fmt: skip
    source = {"library": "torchxrayvision", "version": "1.5.2", "file": "x.pt", "sha256": "0"}
    weights = weights_from_xrv_model(FakeXrvModel(xrv_state_dict(), thresholds), "densenet121-res224-all", source)
    path = tmp_path_factory.mktemp("xrv") / "xrv-all.pt"
    save_weights_file(path, weights)
    return path


def test_weights_file_layout(xrv_file: Path) -> None:
    state = torch.load(xrv_file, weights_only=True)
    assert state["format"] == "medclf-weights" and state["architecture"] == "densenet121"
    assert state["labels"] == XRV_LABELS and len(state["thresholds"]) == 18
    assert state["input"] == {"channels": 1, "image_size": 224, "intensity": [-1024.0, 1024.0], "crop": "centre"}
    assert state["state_dict"]["features.denseblock1.denselayer1.norm1.weight"].shape == (64,)
    assert state["state_dict"]["classifier.weight"].shape == (18, 1024)
    assert "op_threshs" not in state["state_dict"] and state["source"]["weights"] == "densenet121-res224-all"


def test_label_names_match_case_and_spelling_insensitively() -> None:
    ours = [
        "effusion",
        "pleural_thickening",
        "lung_lesion",
        "Pleural Effusion",
        "nonesuch",
        "enlarged cardiomediastinum",
    ]
    assert shared_rows(XRV_LABELS, ours) == [(0, 7), (1, 9), (2, 14), (3, 7), (5, 17)]
    assert shared_rows(["", "Effusion"], ["effusion"]) == [(0, 1)]  # torchxrayvision's "" outputs are never matched


def test_weights_file_maps_backbone_and_shares_head_rows(xrv_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = ["effusion", "pleural_thickening", "nonesuch"]
    torch.manual_seed(0)
    net = build_model("densenet121", len(labels))
    fresh_row = net.class_layers.out.weight[2].detach().clone()
    start = resolve_start("densenet121", str(xrv_file))
    assert start is not None and start.kind == "weights"
    with caplog.at_level(logging.INFO, logger="medclf"):
        start.apply(net, labels, 224)
    source = xrv_state_dict()
    got = net.state_dict()
    assert torch.equal(got["features.conv0.weight"], source["features.conv0.weight"])
    assert torch.equal(got["features.denseblock4.denselayer16.layers.conv2.weight"],
                       source["features.denseblock4.denselayer16.conv2.weight"])  # fmt: skip
    assert torch.equal(got["class_layers.out.weight"][0], source["classifier.weight"][7])
    assert torch.equal(got["class_layers.out.bias"][1], source["classifier.bias"][9])
    assert torch.equal(got["class_layers.out.weight"][2], fresh_row)
    assert "started fresh: nonesuch" in caplog.text and "file labels not used: Atelectasis" in caplog.text
    assert "intensities in [-1024, 1024], centre crop" in caplog.text


def test_input_convention_maps_unit_range_onto_the_weights_range() -> None:
    torch.manual_seed(0)
    plain = build_model("densenet_tiny", 2).eval()
    mapped = apply_convention(build_model("densenet_tiny", 2).eval(), XRV_INPUT)
    mapped.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(mapped(x), plain(x * 2048 - 1024), atol=1e-5)


# --- --pretrained imagenet: the torch.hub cache ---------------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def offline(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return home


def test_imagenet_from_the_hub_cache(torch_home: Path) -> None:
    cached = torch_home / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    cached.parent.mkdir(parents=True)
    sd = torchvision_densenet_state_dict("densenet121", legacy=True)  # the download.pytorch.org file's names
    torch.save(sd, cached)
    start = resolve_start("densenet121", "imagenet")
    assert start is not None and start.path == cached and start.kind == "torchvision"
    net = build_model("densenet121", 3)
    start.apply(net, ["a", "b", "c"], 224)
    assert torch.allclose(net.state_dict()["features.conv0.weight"], sd["features.conv0.weight"].sum(1, keepdim=True))


def test_imagenet_download_checks_the_hash(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        calls.append((url, hash_prefix))
        torch.save(torchvision_densenet_state_dict("densenet169"), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    path = imagenet_weights("densenet169")
    assert calls == [("https://download.pytorch.org/models/densenet169-b2777c0a.pth", "b2777c0a")]
    assert path == torch_home / "hub" / "checkpoints" / "densenet169-b2777c0a.pth" and path.is_file()


def test_imagenet_offline_without_the_file_names_url_and_path(
    torch_home: Path, synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "new" / "run"
    args = ["--csv", str(synthetic_csv), "--out", str(out), *FAST, "--model", "densenet121", "--pretrained", "imagenet"]
    assert train_main(args) == 2
    line = error_line(capsys)
    expected = torch_home / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    assert "https://download.pytorch.org/models/densenet121-a639ec97.pth" in line and f"put it at {expected}" in line
    assert "Temporary failure in name resolution" in line and not (tmp_path / "new").exists()


def torchvision_resnet18_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes of torchvision's ResNet-18 (RGB stem, 1000 classes, no shortcut
    convolution biases): MONAI's names are the same."""
    torch.manual_seed(5)
    monai = build_model("resnet18", 1000, in_channels=3).state_dict()
    return {k: torch.randn_like(v.float()) if v.is_floating_point() else v for k, v in monai.items()
            if not k.endswith("downsample.0.bias")}  # fmt: skip


def test_imagenet_resnet18_from_the_hub_cache(torch_home: Path, tmp_path: Path) -> None:
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    source = torchvision_resnet18_state_dict()
    torch.save(source, cached)
    start = resolve_start("resnet18", "imagenet")
    assert start is not None and start.path == cached
    net = build_model("resnet18", 2)
    start.apply(net, ["a", "b"], 224)
    got = net.state_dict()
    assert torch.equal(got["layer3.1.conv2.weight"], source["layer3.1.conv2.weight"])
    assert torch.allclose(got["conv1.weight"], source["conv1.weight"].sum(1, keepdim=True))
    assert not got["layer2.0.downsample.0.bias"].any()  # torchvision's shortcut has no bias
    deeper = dict(source, **{"layer1.2.conv1.weight": torch.zeros(64, 64, 3, 3)})  # a ResNet-34's third block
    torch.save(deeper, tmp_path / "resnet34.pth")
    with pytest.raises(
        CheckpointError, match=r"not in the model: layer1\.2\.conv1\.weight\): use ResNet weights of the same depth"
    ):
        resolve_start("resnet18", str(tmp_path / "resnet34.pth")).apply(build_model("resnet18", 2), ["a", "b"], 224)
    with pytest.raises(ConfigError, match="resnet10 has no pretrained-weights loader"):
        resolve_start("resnet10", "imagenet")


def test_imagenet_for_a_network_without_imagenet_weights() -> None:
    with pytest.raises(ConfigError, match=r"densenet_tiny has no torchvision ImageNet weights .*densenet121"):
        resolve_start("densenet_tiny", "imagenet")


# --- training from converted weights and from another run -----------------------------------------------------


def _tiny_weights_file(path: Path, labels: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """A densenet_tiny weights file in the converter's layout (torchvision names), returns its tensors."""
    torch.manual_seed(seed)
    monai = build_model("densenet_tiny", len(labels)).state_dict()
    state = {k.replace(".layers.", ".").replace("class_layers.out.", "classifier."): v for k, v in monai.items()}
    save_weights_file(path, WeightsFile(state_dict=state, architecture="densenet_tiny", labels=labels,
                                        thresholds=[math.nan] * len(labels), input=dict(XRV_INPUT)))  # fmt: skip
    return state


def test_train_from_cached_torchxrayvision_name_records_and_honours_the_convention(
    synthetic_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, medclf_log: pytest.LogCaptureFixture
) -> None:
    from medclf.workflows.inference import run_inference

    monkeypatch.setenv("MEDCLF_HOME", str(tmp_path / "home"))
    cached = cached_weights_path("densenet121-res224-all")
    assert cached == tmp_path / "home" / "weights" / "torchxrayvision-densenet121-res224-all.pt"
    cached.parent.mkdir(parents=True)
    source = _tiny_weights_file(cached, XRV_LABELS)
    out = tmp_path / "run"
    args = ["--csv", str(synthetic_csv), "--out", str(out), *FAST, "--lr", "1e-12", "--no-augment", "--labels",
            "effusion,pleural_thickening", "--pretrained", "torchxrayvision:densenet121-res224-all"]  # fmt: skip
    assert train_main(args) == 0
    assert "classifier rows from" in medclf_log.text and "trained at 224 px; this run uses 32 px" in medclf_log.text
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint.input["intensity"] == [-1024.0, 1024.0] and checkpoint.input["crop"] == "centre"
    assert torch.allclose(checkpoint.model["class_layers.out.weight"][1], source["classifier.weight"][9], atol=1e-6)

    # validate/predict/explain: the checkpoint's network maps [0, 1] onto [-1024, 1024] and images are centre-cropped
    wide = np.zeros((40, 80), np.uint8)
    wide[:, 20:60] = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(wide[:, 20:60]).save(tmp_path / "square.png")
    records = [{"image": str(tmp_path / n), "row": i, "index": i} for i, n in enumerate(["wide.png", "square.png"])]
    result, _ = run_inference(checkpoint, records, with_labels=False, device="cpu", amp=False, batch_size=2,
                              num_workers=0, progress=False, desc="test")  # fmt: skip
    assert torch.allclose(result.logits[0], result.logits[1], atol=1e-5)
    model = model_from_checkpoint(checkpoint)
    assert model.medclf_input["crop"] == "centre" and len(model._forward_pre_hooks) == 1
    from medclf.workflows.explain import explain_image

    explained = [
        explain_image(checkpoint=str(out / "last.pt"), image=str(tmp_path / name), out=str(tmp_path / name[:-4]),
                      label=["effusion"], device="cpu")["probabilities"]["effusion"]
        for name in ("wide.png", "square.png")
    ]  # fmt: skip
    assert explained[0] == pytest.approx(explained[1], abs=1e-6)


def test_init_from_another_run_copies_shared_head_rows(
    synthetic_csv: Path, tmp_path: Path, medclf_log: pytest.LogCaptureFixture
) -> None:
    first = tmp_path / "a"
    args = ["--csv", str(synthetic_csv), *FAST, "--labels", "effusion,edema,mass"]
    assert train_main([*args, "--out", str(first)]) == 0
    source = load_checkpoint(first / "best.pt")
    start = resolve_start("densenet_tiny", init_from=str(first / "best.pt"))
    assert start is not None and start.kind == "checkpoint"
    net = build_model("densenet_tiny", 2)
    fresh = net.class_layers.out.weight[1].detach().clone()
    start.apply(net, ["Mass", "nodule"], 48)
    got = net.state_dict()
    assert torch.equal(got["features.conv0.weight"], source.model["features.conv0.weight"])
    assert torch.equal(got["class_layers.out.weight"][0], source.model["class_layers.out.weight"][2])
    assert torch.equal(got["class_layers.out.weight"][1], fresh)
    assert "started fresh: nodule" in medclf_log.text and "its labels not used: effusion, edema" in medclf_log.text
    assert "trained at 32 px; this run uses 48 px" in medclf_log.text
    second = tmp_path / "b"
    again = ["--csv", str(synthetic_csv), *FAST, "--labels", "mass,nodule", "--out", str(second)]
    assert train_main([*again, "--init-from", str(first / "best.pt")]) == 0
    assert load_checkpoint(second / "last.pt").labels == ["mass", "nodule"]


# --- bad input: one line each, no run folder -------------------------------------------------------------------


@pytest.fixture
def medclf_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that also sees the records of a command's ``main`` (whose logger does not propagate)."""
    logger = logging.getLogger("medclf")
    logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="medclf"):
        yield caplog
    logger.removeHandler(caplog.handler)


def _refused(synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    out = tmp_path / "new" / "run"
    assert train_main(["--csv", str(synthetic_csv), "--out", str(out), *FAST, *extra]) == 2
    line = error_line(capsys)
    assert not (tmp_path / "new").exists(), line
    return line


def test_bad_starting_points_are_refused_before_a_run_folder(
    synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDCLF_HOME", str(tmp_path / "home"))
    weights = tmp_path / "w121.pt"
    _tiny_weights_file(weights, ["effusion"])
    state = torch.load(weights, weights_only=True)
    state["architecture"] = "densenet121"
    torch.save(state, weights)
    line = _refused(synthetic_csv, tmp_path, capsys, "--pretrained", str(weights))
    assert line.endswith("holds densenet121 weights, the model is densenet_tiny: use --model densenet121")
    line = _refused(synthetic_csv, tmp_path, capsys, "--model", "densenet169", "--pretrained", str(weights))
    assert "use --model densenet121" in line  # another depth
    cut = tmp_path / "cut.pt"
    cut.write_bytes(weights.read_bytes()[:5000])
    assert "truncated or corrupt" in _refused(synthetic_csv, tmp_path, capsys, "--pretrained", str(cut))
    pickled = tmp_path / "xrv-model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled model, as torchxrayvision publishes them
    line = _refused(synthetic_csv, tmp_path, capsys, "--pretrained", str(pickled))
    assert "pickled Python objects" in line and f"medclf-import-weights torchxrayvision {pickled}" in line
    line = _refused(synthetic_csv, tmp_path, capsys, "--pretrained", "torchxrayvision:densenet121-res999-foo")
    assert "does not know torchxrayvision weights 'densenet121-res999-foo' (known: densenet121-res224-all" in line
    line = _refused(synthetic_csv, tmp_path, capsys, "--pretrained", "imagenett")
    assert line.startswith("error: --pretrained imagenett: no such file, and not a name medclf knows (imagenet")
    line = _refused(synthetic_csv, tmp_path, capsys, "--pretrained", "torchxrayvision:densenet121-res224-nih")
    assert "medclf-import-weights torchxrayvision FILE --name densenet121-res224-nih" in line
    line = _refused(synthetic_csv, tmp_path, capsys, "--pretrained", str(weights), "--init-from", str(weights))
    assert "choose one starting point" in line
    line = _refused(synthetic_csv, tmp_path, capsys, "--init-from", str(weights))
    assert "is not a medclf checkpoint" in line


def test_weights_file_with_wrong_label_count_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    _tiny_weights_file(path, ["a", "b"])
    state = torch.load(path, weights_only=True)
    state["labels"] = ["a"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="1 labels for a classifier of 2 outputs"):
        read_weights_file(path)
