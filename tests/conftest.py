"""Shared test fixtures: tiny synthetic data sets and the real NIH material in ../shared."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NIH = SHARED / "nih"
STARTER = NIH / "starter256"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test material not found: {path}")
    return path


@pytest.fixture(autouse=True)
def _medclf_logs_reach_caplog(caplog: pytest.LogCaptureFixture):
    """Commands stop the medclf logger from propagating; undo that so every test can read caplog."""
    logger = logging.getLogger("medclf")
    logger.propagate = True
    caplog.set_level(logging.INFO, logger="medclf")
    yield
    logger.propagate = True


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 synthetic 48-px images with the 14 NIH labels (shared, read-only for tests)."""
    from medclf.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n_images=120, image_size=48, seed=1)
