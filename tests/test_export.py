"""``python -m medclf.export``: TorchScript, ONNX, the MONAI bundle and the Triton entry, with parity (issue 21)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclf.export import main as export_main
from medclf.model.registry import model_names

from .conftest import STARTER, shared_path
from .deploy_helpers import LABELS, make_checkpoint, write_source_dicom
from .test_failures import error_line

pytest.importorskip("onnxruntime")

# As ``python -m monai.bundle ...`` with medclf not importable (the bundle must run where it is not installed).
MONAI_ONLY = r"""
import importlib.abc, importlib.util, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "medclf":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
try:
    importlib.util.find_spec("medclf")
    raise SystemExit("medclf is importable")
except ModuleNotFoundError:
    pass
sys.argv = ["monai.bundle", *sys.argv[1:]]
runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
"""


def export(checkpoint: Path, out: Path, *extra: str) -> int:
    return export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--parity-images", "2", *extra])


def parity_lines(capsys: pytest.CaptureFixture) -> dict[str, float]:
    printed = capsys.readouterr().out
    found = {}
    for line in printed.splitlines():
        if line.startswith("parity "):
            found[line.split()[1]] = float(line.split("= ")[1].split()[0])
    return found


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    checkpoint = make_checkpoint(root / "best.pt", "densenet_tiny", size=48)
    assert export(checkpoint, root / "exp") == 0
    return root / "exp"


@pytest.mark.parametrize("name", model_names())
def test_every_architecture_exports_and_matches_medclf(name: str, tmp_path: Path, capsys) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", name)
    assert export(checkpoint, tmp_path / "exp") == 0
    printed = parity_lines(capsys)
    assert set(printed) == {"torchscript", "onnx", "bundle"} and max(printed.values()) <= 1e-4, printed
    spec = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert spec["parity"] == pytest.approx(printed, rel=1e-2, abs=1e-9) and len(spec["parity_images"]) == 2
    for part in ("model.ts", "model.onnx", "bundle/models/model.pt", "triton/medclf/1/model.onnx"):
        assert (tmp_path / "exp" / part).is_file(), part


def test_real_nih_images_match_medclf_and_the_card_has_intervals(tmp_path: Path, capsys) -> None:
    csv = shared_path("nih", "starter256", "dataset.csv")
    checkpoint = make_checkpoint(tmp_path / "best.pt", "densenet_tiny", size=64, csv=str(csv))
    assert export(checkpoint, tmp_path / "exp", "--parity-images", "6") == 0
    printed = capsys.readouterr().out
    assert "over 6 VALIDATION images of the manifest" in printed
    spec = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert max(spec["parity"].values()) <= 1e-4 and all(str(STARTER) in p for p in spec["parity_images"])
    card = (tmp_path / "exp" / "bundle" / "docs" / "README.md").read_text()
    assert "95% percentile bootstrap intervals" in card and "| atelectasis |" in card
    assert "## Training data" in card and "Images per split: TRAIN" in card and "TRAIN positives per label: " in card
    assert "## Intended use" in card and "## Limitations" in card and "| 2 | pleural_thickening | 0.5000 |" in card


def test_a_0_1_0_checkpoint_exports(tmp_path: Path, capsys) -> None:
    old = Path(__file__).parent / "fixtures" / "checkpoint_0_1_0.pt"
    assert export(old, tmp_path / "exp") == 0
    printed = capsys.readouterr().out
    source = "VALIDATION images of the manifest" if (STARTER / "dataset.csv").is_file() else "generated images"
    assert f"over 2 {source}" in printed and "cannot be read" not in printed  # its csv is one string, not a list
    assert json.loads((tmp_path / "exp" / "export.json").read_text())["temperatures"] == [1.0] * 14


def test_torchscript_and_onnx_take_any_batch_and_name_their_outputs(tiny_export: Path) -> None:
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(tiny_export / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    scripted = torch.jit.load(str(tiny_export / "model.ts"))
    for n in (1, 5):
        batch = np.random.default_rng(n).random((n, 1, 48, 48), dtype=np.float32)
        logits, probs = session.run(None, {"image": batch})
        assert probs.shape == (n, len(LABELS))
        temperatures = np.array(json.loads((tiny_export / "export.json").read_text())["temperatures"])
        np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits / temperatures)), atol=1e-6)
        np.testing.assert_allclose(scripted(torch.from_numpy(batch))[1].detach().numpy(), probs, atol=1e-5)


def test_bundle_metadata_and_triton_entry(tiny_export: Path) -> None:
    meta = json.loads((tiny_export / "bundle" / "configs" / "metadata.json").read_text())
    assert {"version", "changelog", "monai_version", "pytorch_version", "numpy_version", "task", "description",
            "authors", "copyright", "license"} <= set(meta)  # fmt: skip
    fmt = meta["network_data_format"]
    assert fmt["inputs"]["image"]["spatial_shape"] == [48, 48] and fmt["inputs"]["image"]["num_channels"] == 1
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "atelectasis", "1": "effusion", "2": "pleural_thickening"}
    assert (
        meta["medclf"]["temperatures"] == [1.0, 1.25, 1.5]
        and len(meta["medclf"]["provenance"]["checkpoint_sha256"]) == 64
    )
    inference = (tiny_export / "bundle" / "configs" / "inference.json").read_text()
    assert "medclf." not in inference and "monai.networks.nets.DenseNet" in inference
    assert "import medclf" not in (tiny_export / "bundle" / "scripts" / "medclf_bundle.py").read_text()
    assert (tiny_export / "bundle" / "LICENSE").read_text().startswith("No licence was given")
    config = (tiny_export / "triton" / "medclf" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "dims: [ 1, 48, 48 ]" in config and "dims: [ 3 ]" in config


def test_bundle_runs_with_monai_alone_on_png_and_dicom(tiny_export: Path, tmp_path: Path) -> None:
    from medclf.predict import main as predict_main

    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((STARTER / "images").glob("*.png"))[:2]:  # real radiographs where ../shared has them
        (images / path.name).write_bytes(path.read_bytes())
    write_source_dicom(images / "study.dcm", seed=1)
    write_source_dicom(images / "eight_bit.dcm", seed=3, bits=8)
    bundle, out = tiny_export / "bundle", tmp_path / "out"
    args = ["run", "--config_file", str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
            "--dataset_dir", str(images), "--output_dir", str(out)]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", MONAI_ONLY, *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    bundle_rows = pd.read_csv(out / "predictions.csv").set_index("image")
    assert predict_main(["--checkpoint", str(tiny_export.parent / "best.pt"), "--images", str(images), "--out",
                         str(tmp_path / "medclf"), "--no-progress", "--num-workers", "0"]) == 0  # fmt: skip
    ours = pd.read_csv(tmp_path / "medclf" / "predictions.csv")
    ours.index = [Path(p).name for p in ours["image"]]
    assert sorted(bundle_rows.index) == sorted(ours.index) and len(ours) >= 2
    probs = [f"prob_{name}" for name in LABELS]
    diff = np.abs(bundle_rows.loc[ours.index, probs].to_numpy() - ours[probs].to_numpy()).max()
    assert diff <= 1e-4, diff
    calls = [f"pred_{name}" for name in LABELS]
    assert (bundle_rows.loc[ours.index, calls].to_numpy() == ours[calls].to_numpy()).all()


def test_verify_net_in_out_passes(tiny_export: Path, tmp_path: Path) -> None:
    bundle = tiny_export / "bundle"
    args = ["verify_net_in_out", "network_def", "--meta_file", str(bundle / "configs" / "metadata.json"),
            "--config_file", str(bundle / "configs" / "inference.json"), "--device", "cpu"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", MONAI_ONLY, *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and "verified with no error" in done.stdout + done.stderr, done.stderr[-3000:]


def test_not_a_medclf_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    assert export(tmp_path / "other.pt", tmp_path / "exp") == 2
    assert "is not a medclf checkpoint (found: state_dict)" in error_line(capsys)
    assert not (tmp_path / "exp").exists()


def test_a_folder_holding_something_else_is_refused_and_left_alone(tmp_path: Path, capsys) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", "densenet_tiny")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "notes.txt").write_text("mine")
    assert export(checkpoint, tmp_path / "exp") == 2
    assert "exists and holds other files (notes.txt); export into a new or empty folder" in error_line(capsys)
    assert [p.name for p in (tmp_path / "exp").iterdir()] == ["notes.txt"]


def test_an_earlier_export_is_replaced(tiny_export: Path, tmp_path: Path, capsys) -> None:
    import shutil

    copy = shutil.copytree(tiny_export, tmp_path / "exp")
    (copy / "model.onnx").write_bytes(b"old")
    assert export(tiny_export.parent / "best.pt", copy, "--no-bundle", "--no-triton") == 0
    assert (copy / "model.onnx").read_bytes() != b"old" and not (copy / "bundle").exists()


def test_an_unwritable_destination_says_so_and_writes_nothing(tmp_path: Path, capsys) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", "densenet_tiny")
    (tmp_path / "file").write_text("x")
    assert export(checkpoint, tmp_path / "file" / "exp") == 2
    assert "is a file, not a folder" in error_line(capsys)
    assert (tmp_path / "file").read_text() == "x"


def test_parity_beyond_the_tolerance_fails_and_writes_nothing(tmp_path: Path, capsys) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", "densenet_tiny")
    assert export(checkpoint, tmp_path / "exp", "--tolerance", "1e-15") == 2
    line = error_line(capsys)
    assert "differ from medclf's by more than 1e-15" in line and "nothing was written" in line
    assert not (tmp_path / "exp").exists() and not list(tmp_path.glob(".exp*"))


def test_a_borrowed_input_convention_travels_with_the_export(tmp_path: Path, capsys) -> None:
    """Weights trained on [-1024, 1024] with a centre crop (torchxrayvision's): every format feeds them so."""
    import torch

    from medclf.model.checkpoint import load_checkpoint, save_checkpoint

    path = make_checkpoint(tmp_path / "best.pt", "densenet_tiny", size=32)
    checkpoint = load_checkpoint(path)
    checkpoint.input = {"intensity": [-1024.0, 1024.0], "crop": "centre"}
    save_checkpoint(path, checkpoint)
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 64), dtype=np.uint8)).save(images / "wide.png")
    csv = tmp_path / "m.csv"
    csv.write_text(f"image,split,{','.join(LABELS)}\n{images / 'wide.png'},VALIDATION,0,1,0\n")
    assert export(path, tmp_path / "exp", "--csv", str(csv)) == 0
    printed = parity_lines(capsys)
    assert set(printed) == {"torchscript", "onnx", "bundle"} and max(printed.values()) <= 1e-4, printed
    config = json.loads((tmp_path / "exp" / "bundle" / "configs" / "inference.json").read_text())
    assert config["crop"] is True and config["intensity"] == [-1024.0, 1024.0]
    scripted = torch.jit.load(str(tmp_path / "exp" / "model.ts"))
    plain = torch.jit.load(str(tmp_path / "exp" / "bundle" / "models" / "model.ts"))
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(scripted(x)[0], plain(x * 2048.0 - 1024.0), atol=1e-4)  # the map is inside model.ts
