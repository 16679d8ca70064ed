"""Grad-CAM heatmaps, overlays and ``python -m medclf.explain``.

Localisation is checked on a small MONAI DenseNet with two dense blocks (feature stride 8, a 6 x 6 map
at 48 px) trained for a few seconds: the product's DenseNets have stride 32, so at test image sizes their
last feature map has 1 or 2 cells per side and cannot show where a 12-px cell is.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import DenseNet
from PIL import Image

from medclf import TrainConfig, load_checkpoint, load_image, model_from_checkpoint, train
from medclf.data.synthetic import make_synthetic_dataset, synthetic_image
from medclf.explain import main
from medclf.workflows.explain import explain_image, gradcam_heatmap, overlay_figure

SIZE = 48
LABELS = ["a", "b"]  # blobs in grid cells 0 (top-left) and 1 (next to the right)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 synthetic 48-px images with labels a and b."""
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("gradcam_data"), n_images=400, image_size=SIZE, labels=LABELS, seed=0
    )


@pytest.fixture(scope="module")
def localizer(dataset: Path) -> torch.nn.Module:
    """A two-block DenseNet trained on every image of ``dataset`` with a short loop (a few seconds)."""
    with open(dataset, newline="") as f:
        rows = list(csv.DictReader(f))
    images = torch.stack([load_image(dataset.parent / r["image"], SIZE) for r in rows])
    targets = torch.tensor([[float(r[n]) for n in LABELS] for r in rows])
    torch.manual_seed(0)
    model = DenseNet(
        spatial_dims=2, in_channels=1, out_channels=len(LABELS), init_features=16, growth_rate=8, block_config=(1, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(15):
        model.train()
        for batch in torch.randperm(len(rows)).split(16):
            optimizer.zero_grad()
            loss_fn(model(images[batch]), targets[batch]).backward()
            optimizer.step()
    optimizer.zero_grad()  # .grad back to None, so that the tests can see gradcam_heatmap leave it alone
    return model.eval()


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A densenet_tiny checkpoint trained by ``medclf.train`` at 64 px (for the command tests)."""
    result = train(
        TrainConfig(
            csv=str(dataset),
            out=str(tmp_path_factory.mktemp("gradcam_run") / "run"),
            labels=LABELS,
            image_size=64,
            model="densenet_tiny",
            epochs=2,
            batch_size=32,
            device="cpu",
            progress=False,
            augment=False,
            num_workers=0,
        )
    )
    return Path(result.last_checkpoint)


def _png(path: Path, present: list[int], seed: int) -> Path:
    Image.fromarray(synthetic_image(present, SIZE, np.random.default_rng(seed))).save(path)
    return path


def test_heatmap_shape_range_and_no_side_effects(localizer: torch.nn.Module, tmp_path: Path) -> None:
    image = load_image(_png(tmp_path / "x.png", [1, 0], seed=1), SIZE)
    before = [p.requires_grad for p in localizer.parameters()]
    heat = gradcam_heatmap(localizer, image, 0)
    assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.5
    relu = localizer.get_submodule("class_layers.relu")
    assert not relu._forward_hooks and not relu._backward_hooks and relu.inplace
    assert [p.requires_grad for p in localizer.parameters()] == before
    assert all(p.grad is None for p in localizer.parameters())
    assert not localizer.training


def test_heat_sits_in_the_cell_of_the_label(localizer: torch.nn.Module, tmp_path: Path) -> None:
    heats = [
        gradcam_heatmap(localizer, load_image(_png(tmp_path / f"a{s}.png", [1, 0], seed=s), SIZE), 0)
        for s in range(100, 104)
    ]
    heat = np.mean(heats, axis=0)
    half = SIZE // 2
    corner = heat[:half, :half].mean()
    rest = (heat.sum() - heat[:half, :half].sum()) / (heat.size - half * half)
    print(f"top-left / rest mean heat: {corner / rest:.2f}")  # seen: 3.25; 2.7-7.7 over 3 data x 6 torch seeds
    assert corner > 2.0 * rest


def test_constant_image_gives_a_finite_map(localizer: torch.nn.Module, run: Path) -> None:
    for value in (0.0, 0.5):
        heat = gradcam_heatmap(localizer, torch.full((1, SIZE, SIZE), value), 1)
        assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    # densenet_tiny at 32 px has a 1 x 1 feature map: a flat map, returned as zeros rather than NaN.
    tiny = model_from_checkpoint(load_checkpoint(run))
    assert not gradcam_heatmap(tiny, torch.rand(1, 32, 32), 0).any()


def test_unknown_layer_is_refused(localizer: torch.nn.Module) -> None:
    from medclf.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_layer"):
        gradcam_heatmap(localizer, torch.rand(1, SIZE, SIZE), 0, target_layer="no_such_layer")


def test_overlay_figure_has_image_heat_and_colorbar() -> None:
    fig = overlay_figure(np.random.rand(SIZE, SIZE), np.random.rand(SIZE, SIZE), "a: p = 0.900")
    assert len(fig.axes) == 2  # the image and the colorbar
    assert fig.axes[0].get_title() == "a: p = 0.900"
    assert len(fig.axes[0].images) == 2


def test_explain_library_defaults(run: Path, tmp_path: Path) -> None:
    image = _png(tmp_path / "chest.png", [1, 1], seed=5)
    result = explain_image(checkpoint=str(run), image=str(image), device="cpu")
    assert set(result["probabilities"]) == set(LABELS)
    assert all(0.0 <= p <= 1.0 for p in result["probabilities"].values())
    out = run.parent / "explain_chest"
    assert result["files"] == {n: str(out / f"chest_{n}_gradcam.png") for n in LABELS}
    assert all(Path(p).stat().st_size > 0 for p in result["files"].values())


def test_command_writes_one_png_per_label(run: Path, tmp_path: Path) -> None:
    image = _png(tmp_path / "x.png", [1, 0], seed=6)
    out = tmp_path / "out"
    args = ["--checkpoint", str(run), "--image", str(image), "--label", "b", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_b_gradcam.png"]
    with Image.open(out / "x_b_gradcam.png") as png:
        assert png.size[0] > 100 and png.size[1] > 100
    assert main([*args[:-4], "--label", "a", "b", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_a_gradcam.png", "x_b_gradcam.png"]


def test_command_help_and_errors(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--checkpoint" in capsys.readouterr().out

    image = _png(tmp_path / "x.png", [0, 0], seed=7)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(run), "--image", str(image), "--label", "cardiomegaly", "--out", str(out)]) == 2
    message = capsys.readouterr().out
    assert "cardiomegaly" in message and "a, b" in message
    assert not out.exists()

    missing = tmp_path / "missing.png"
    assert main(["--checkpoint", str(run), "--image", str(missing), "--out", str(out)]) == 2
    assert f"image not found: {missing}" in capsys.readouterr().out

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["--checkpoint", str(run), "--image", str(corrupt), "--out", str(out)]) == 2
    assert f"cannot read image {corrupt}" in capsys.readouterr().out
    assert not out.exists()
