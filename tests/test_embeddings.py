"""Building blocks of ``validate --embeddings``: penultimate features, 2-D projections, projector files
and ``embeddings.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from medclf.data.loaders import build_dataset, make_loader
from medclf.data.manifest import Manifest
from medclf.data.synthetic import make_synthetic_dataset
from medclf.data.transforms import preprocessing
from medclf.engine.features import classifier_layer, collect_embeddings, first_layer_filters, penultimate_features
from medclf.metrics.projection import project_2d, subsample, top_positive_labels, tsne_perplexity
from medclf.model.networks import build_model
from medclf.reporting.embeddings import embeddings_figure, filter_mosaic, metadata_table, write_projector
from medclf.reporting.figures import figure_png

LABELS = ["a", "b", "c"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """24 synthetic 32-px images with labels a, b, c (all splits)."""
    csv = make_synthetic_dataset(tmp_path_factory.mktemp("emb"), n_images=24, image_size=32, labels=LABELS, seed=3)
    return Manifest.from_csv(csv, LABELS, required_splits=()).records(None)


def _loader(records: list[dict], batch_size: int = 5) -> torch.utils.data.DataLoader:
    dataset = build_dataset(records, preprocessing(32, LABELS), cache="none")
    return make_loader(dataset, batch_size=batch_size, cache="none", num_workers=0, device=CPU)


# ---------------------------------------------------------------------------------------------------------
# Features


@pytest.mark.parametrize("name", ["densenet_tiny", "densenet121"])
def test_features_are_the_input_of_the_classifier(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, len(LABELS)).eval()
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    feats = penultimate_features(model, [images[:3], images[3]], CPU)  # a batch and a single (C, H, W) image
    head = classifier_layer(model)
    assert head is model.class_layers.out
    assert feats.shape == (4, head.in_features) and feats.dtype == np.float32
    with torch.no_grad():
        logits = model(images.float() / 255.0)
        again = model.class_layers.out(torch.from_numpy(feats))
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-5)
    assert (feats >= 0).all() and feats.std() > 0  # after ReLU and pooling, and not constant


def test_modes_are_restored_module_by_module_and_wrappers_are_looked_through() -> None:
    model = build_model("densenet_tiny", 2)
    model.train()
    model.features.eval()  # a frozen backbone, as set_backbone_trainable leaves it
    before = {name: m.training for name, m in model.named_modules()}

    class Compiled(nn.Module):  # what torch.compile returns: the network as _orig_mod
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the wrapper must not be called")

    images = torch.rand(3, 1, 32, 32)
    feats = penultimate_features(Compiled(model), [images], CPU)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert not model.class_layers.out._forward_pre_hooks  # hook removed
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.class_layers.out(torch.from_numpy(feats)), model(images))
    assert penultimate_features(model, [], CPU).shape == (0, 32)


def test_loader_batches_take_the_path_of_infer(records: list[dict]) -> None:
    from medclf.engine.loops import infer

    torch.manual_seed(1)
    model = build_model("densenet_tiny", len(LABELS)).eval()
    loader = _loader(records)
    result = infer(model, loader, CPU, show_progress=False)
    emb = collect_embeddings(model, loader, CPU, thumbnail_size=16)
    n = len(records)
    assert emb.features.shape == (n, 32) and emb.paths == result.paths and emb.skipped == []
    np.testing.assert_array_equal(emb.indices, result.indices.numpy())
    np.testing.assert_array_equal(emb.targets, result.targets.numpy())
    with torch.no_grad():
        logits = model.class_layers.out(torch.from_numpy(emb.features))
    torch.testing.assert_close(logits, result.logits, rtol=1e-4, atol=1e-5)
    assert emb.thumbnails.shape == (n, 1, 16, 16) and 0.0 <= emb.thumbnails.min() < emb.thumbnails.max() <= 1.0
    np.testing.assert_allclose(penultimate_features(model, loader, CPU), emb.features)


def test_first_layer_filters() -> None:
    model = build_model("densenet_tiny", 2)
    filters = first_layer_filters(model)
    assert filters.shape == (16, 1, 7, 7)
    np.testing.assert_array_equal(filters, model.features.conv0.weight.detach().numpy())
    with pytest.raises(ValueError, match=r"no nn\.Conv2d"):
        first_layer_filters(nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------------
# Projections


def test_subsample_is_seeded_sorted_and_bounded() -> None:
    picked = subsample(5000, 2000, seed=7)
    assert picked.shape == (2000,) and np.all(np.diff(picked) > 0) and picked.max() < 5000
    np.testing.assert_array_equal(picked, subsample(5000, 2000, seed=7))
    assert not np.array_equal(picked, subsample(5000, 2000, seed=8))
    np.testing.assert_array_equal(subsample(30, 2000, 0), np.arange(30))
    np.testing.assert_array_equal(subsample(30, 0, 0), np.arange(30))  # 0: no cap
    with pytest.raises(ValueError):
        subsample(10, -1, 0)


def test_pca_matches_scikit_learn_and_is_deterministic() -> None:
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(60, 12)) * np.linspace(3, 0.1, 12)
    xy = project_2d(x, "pca")
    reference = PCA(n_components=2).fit_transform(x)
    assert xy.shape == (60, 2)
    np.testing.assert_allclose(np.abs(xy), np.abs(reference), atol=1e-8)
    np.testing.assert_array_equal(xy, project_2d(x[:, :].copy(), "pca"))
    np.testing.assert_allclose(project_2d(np.ones((5, 3)), "pca"), 0.0)  # identical rows
    line = project_2d(np.arange(8.0)[:, None] * [1.0, 2.0], "pca")  # rank 1: second axis zero
    assert np.ptp(line[:, 0]) > 0 and np.allclose(line[:, 1], 0.0)


def test_tsne_works_for_twenty_points_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (10, 64)), rng.normal(8, 1, (10, 64))]).astype(np.float32)
    assert tsne_perplexity(20) < 20 and tsne_perplexity(5000) == 30.0
    xy = project_2d(x, "tsne", seed=3)
    assert xy.shape == (20, 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy, project_2d(x, "tsne", seed=3))
    # the two clusters stay apart: every point is nearer its own cluster's centre
    centres = np.stack([xy[:10].mean(0), xy[10:].mean(0)])
    nearest = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, [0] * 10 + [1] * 10)
    assert project_2d(x[:1], "tsne").shape == (1, 2) and project_2d(x[:2], "tsne").shape == (2, 2)
    with pytest.raises(ValueError):
        project_2d(x, "umap")


def test_top_positive_labels() -> None:
    t = np.array([[1, 0, 1, np.nan], [1, 0, 0, 1], [1, np.nan, 1, 1], [0, 0, 0, 1]], dtype=float)
    assert top_positive_labels(t, 2) == [0, 3]  # 3 each; ties by label order
    assert top_positive_labels(t, 10) == [0, 3, 2]  # label 1 has no positives
    assert top_positive_labels(np.zeros((3, 2)), 4) == [0]
    assert top_positive_labels(None, 4) == []


# ---------------------------------------------------------------------------------------------------------
# Projector files and the figure


def test_projector_files(tmp_path: Path) -> None:
    n = 7
    feats = np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)
    targets = np.array([[1, 0], [0, np.nan]] * 3 + [[0, 1]], dtype=np.float32)
    probs = np.full((n, 2), 0.25)
    header, rows = metadata_table([f"/x/im{i}.png" for i in range(n)], targets, ["a", "b"], probs)
    assert header == ["image", "a", "b", "p_a", "p_b"] and rows[1] == ["im1.png", "0", "unknown", "0.250", "0.250"]
    rows[0][0] = "odd\tname.png"  # a tab must not add a column
    thumbs = np.random.default_rng(1).random((n, 1, 32, 32)).astype(np.float32)
    folder = write_projector(tmp_path / "projector", feats, rows, header, thumbs)
    assert (tmp_path / "projector" / "projector_config.pbtxt").is_file()
    config = (tmp_path / "projector" / "projector_config.pbtxt").read_text()
    assert "metadata.tsv" in config and "sprite.png" in config and "tensors.tsv" in config
    lines = (folder / "metadata.tsv").read_text().splitlines()
    assert len(lines) == n + 1 and lines[0].split("\t") == header
    assert all(len(line.split("\t")) == len(header) for line in lines)
    assert len((folder / "tensors.tsv").read_text().splitlines()) == n
    with Image.open(folder / "sprite.png") as sprite:
        assert sprite.size == (3 * 32, 3 * 32)  # ceil(sqrt(7)) = 3 thumbnails per side
    write_projector(tmp_path / "projector", feats, rows, header, None)  # again, over the old one
    assert "sprite.png" not in (tmp_path / "projector" / "projector_config.pbtxt").read_text()
    with pytest.raises(ValueError):
        write_projector(tmp_path / "bad", feats, rows[:-1], header, None)


def test_embeddings_figure_renders(tmp_path: Path) -> None:
    from medclf.reporting.files import save_figure

    rng = np.random.default_rng(2)
    n, labels = 40, ["a", "b", "c", "d", "e", "f"]
    targets = (rng.random((n, len(labels))) < 0.3).astype(np.float32)
    targets[rng.random((n, len(labels))) < 0.2] = np.nan
    feats = rng.normal(size=(n, 16))
    filters = first_layer_filters(build_model("densenet_tiny", 2))
    fig = embeddings_figure(project_2d(feats, "pca"), project_2d(feats, "tsne"), targets, labels, filters)
    assert len(fig.axes) == 2 * 4 + 1
    png = figure_png(fig)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert save_figure(tmp_path / "embeddings.png", fig).stat().st_size > 10_000
    # no labels, no filters, no images: still a figure
    empty = embeddings_figure(np.zeros((0, 2)), np.zeros((0, 2)), None, [], None)
    assert figure_png(empty).startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        embeddings_figure(np.zeros((3, 2)), np.zeros((4, 2)), None, [], None)


def test_filter_mosaic() -> None:
    filters = np.zeros((5, 1, 3, 3))
    filters[0, 0, 1, 1] = -2.0
    filters[1, 0, 0, 0] = 0.1
    mosaic = filter_mosaic(filters)
    assert mosaic.shape == (2 * 4 + 1, 3 * 4 + 1, 3) and mosaic.min() >= 0.0 and mosaic.max() <= 1.0
    np.testing.assert_allclose(mosaic[2, 2], 0.0)  # the most negative weight is black
    np.testing.assert_allclose(mosaic[1, 5], 1.0)  # each filter scaled by its own peak
    np.testing.assert_allclose(mosaic[1, 1], 0.5)  # zero is mid-gray
    assert filter_mosaic(np.random.default_rng(0).normal(size=(4, 3, 5, 5))).shape == (2 * 6 + 1, 2 * 6 + 1, 3)
