"""``medclf-import-weights torchxrayvision FILE``: the converter, its refusals, and the equivalence of the
converted weights with torchxrayvision's own model (``[dev]`` installs torchxrayvision, so it runs there; skipped
only where torchxrayvision is not installed, and a torchxrayvision that is installed but cannot be imported fails)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from medclf.import_weights import main as import_main
from medclf.model.networks import build_model
from medclf.model.weights_file import load_weights_file, read_weights_file
from medclf.model.xrv_import import file_sha256, import_torchxrayvision
from tests.test_failures import error_line
from tests.test_starting_weights import XRV_LABELS, xrv_state_dict


class _FakeDenseNet:
    """Stands in for ``xrv.models.DenseNet`` where torchxrayvision cannot be imported (the converter's calls only)."""

    targets: ClassVar[list[str]] = list(XRV_LABELS)

    def __init__(self, weights: str | None = None, cache_dir: str | None = None) -> None:
        self._state: dict[str, torch.Tensor] = {}
        self.op_threshs = None

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._state = dict(state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state

    def eval(self) -> _FakeDenseNet:
        return self


@pytest.fixture
def fake_xrv(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    table = {"densenet121-res224-all": {"labels": XRV_LABELS, "op_threshs": [0.05] * 17 + [float("nan")]}}
    models = types.SimpleNamespace(DenseNet=_FakeDenseNet, model_urls=table)
    module = types.ModuleType("torchxrayvision")
    module.models, module.__version__ = models, "0.0-fake"
    monkeypatch.setitem(sys.modules, "torchxrayvision", module)
    return module


@pytest.fixture(scope="module")
def xrv_pickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xrvfile") / "downloaded.pt"
    torch.save(xrv_state_dict(seed=3), path)
    return path


def test_convert_writes_a_weights_file_that_loads(
    fake_xrv: types.ModuleType, xrv_pickle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "weights.pt"
    assert import_main(["torchxrayvision", str(xrv_pickle), "--out", str(out)]) == 0
    text = capsys.readouterr()
    assert "this trusts the file" in text.out + text.err
    weights = read_weights_file(out)
    assert weights.labels == XRV_LABELS and weights.thresholds[0] == pytest.approx(0.05)
    assert weights.source["sha256"] == file_sha256(xrv_pickle) and weights.source["version"] == "0.0-fake"
    net = build_model("densenet121", 2)
    load_weights_file(net, out, ["Effusion", "hernia"])
    assert torch.equal(net.class_layers.out.weight[1], xrv_state_dict(seed=3)["classifier.weight"][13])


def test_default_out_is_the_cache_that_torchxrayvision_names_use(
    fake_xrv: types.ModuleType, xrv_pickle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medclf.model.starting_weights import resolve_start

    monkeypatch.setenv("MEDCLF_HOME", str(tmp_path / "home"))
    assert import_main(["torchxrayvision", "--file", str(xrv_pickle), "--name", "densenet121-res224-all"]) == 0
    start = resolve_start("densenet121", "torchxrayvision:densenet121-res224-all")
    assert start is not None and start.path.parent == tmp_path / "home" / "weights"


def test_refusals_are_one_line(
    fake_xrv: types.ModuleType, xrv_pickle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "w.pt"
    assert import_main(["torchxrayvision", str(xrv_pickle), "--out", str(out), "--sha256", "ab" * 32]) == 2
    assert f"differs from the expected {'ab' * 32}; not converted" in error_line(capsys)
    assert import_main(["torchxrayvision", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "torchxrayvision weights file not found" in error_line(capsys)
    assert import_main(["torchxrayvision", str(xrv_pickle), "--name", "resnet50-res512-all", "--out", str(out)]) == 2
    assert "medclf does not know these torchxrayvision weights" in error_line(capsys)
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "rgb.pt")
    assert import_main(["torchxrayvision", str(tmp_path / "rgb.pt"), "--out", str(out)]) == 2
    assert "is not a one-channel torchxrayvision DenseNet121" in error_line(capsys)
    assert not out.exists()


def test_without_torchxrayvision_one_line_names_what_to_install(
    xrv_pickle: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchxrayvision", None)  # import fails as for a package not installed
    out = tmp_path / "w.pt"
    assert import_main(["torchxrayvision", str(xrv_pickle), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "need the torchxrayvision package, which is not installed: pip install 'medclf[xrv]'" in line
    broken = tmp_path / "site"
    (broken / "torchxrayvision").mkdir(parents=True)
    (broken / "torchxrayvision" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')"
    )
    monkeypatch.delitem(sys.modules, "torchxrayvision")
    monkeypatch.syspath_prepend(str(broken))
    assert import_main(["torchxrayvision", str(xrv_pickle), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "torchxrayvision cannot be imported (RuntimeError: operator torchvision::nms does not exist)" in line
    assert "download.pytorch.org/whl/cpu" in line and not out.exists()


def test_converted_weights_give_torchxrayvision_outputs(tmp_path: Path) -> None:
    """A torchxrayvision DenseNet with random weights, saved as torchxrayvision saves its models (the whole
    pickled module), converted and loaded by medclf, gives torchxrayvision's outputs on the same images."""
    if importlib.util.find_spec("torchxrayvision") is None:
        pytest.skip("torchxrayvision is not installed: pip install 'medclf[xrv]' ([dev] includes it)")
    xrv = import_torchxrayvision()  # installed but broken (a torchvision of another torch build): a failure
    torch.manual_seed(0)
    reference = xrv.models.DenseNet()
    with torch.no_grad():  # batch-norm statistics and head away from their initial values
        for name, tensor in reference.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                tensor.normal_(0, 0.1)
            elif name.endswith(("running_var", "norm0.weight")):
                tensor.uniform_(0.5, 1.5)
    reference.eval()
    saved = tmp_path / "xrv-random.pt"
    torch.save(reference, saved)
    out = tmp_path / "weights.pt"
    assert import_main(["torchxrayvision", str(saved), "--name", "densenet121-res224-nih", "--out", str(out)]) == 0
    labels = ["effusion", "pleural_thickening", "cardiomegaly", "not_in_xrv"]
    net = build_model("densenet121", len(labels))
    load_weights_file(net, out, labels)
    net.eval()
    images = torch.rand(3, 1, 64, 64)  # medclf's [0, 1] batches
    with torch.no_grad():
        ours = net(images)
        theirs = reference(images * 2048 - 1024)  # xrv.utils.normalize: [0, 255] -> [-1024, 1024]
    rows = [XRV_LABELS.index(n) for n in ("Effusion", "Pleural_Thickening", "Cardiomegaly")]
    assert torch.allclose(ours[:, :3], theirs[:, rows], atol=1e-4), (ours[:, :3] - theirs[:, rows]).abs().max()
