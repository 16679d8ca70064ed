"""Property test: a malformed manifest gives a clean ManifestError, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medclf import Manifest, ManifestError

LABELS = ("effusion", "mass")
CELLS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "yes", "", " ", "1.0", "0.5", "nan", "NULL", "TRAIN", "test", "val"]),
    st.sampled_from(["img/a.png", "img/b.png", "img/missing.png", "/abs/none.png", "../up.png", "img"]),
    st.text(max_size=8),
)
HEADERS = st.lists(
    st.sampled_from(["image", "split", "effusion", "mass", "Mass", "age", "", "labels", "image ", "effusion"]),
    min_size=0,
    max_size=6,
)


def check(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "img").mkdir()
        (root / "img" / "a.png").write_bytes(b"x")
        (root / "img" / "b.png").write_bytes(b"x")
        path = root / "m.csv"
        path.write_bytes(content)
        try:
            manifest = Manifest.from_csv(path, LABELS)
        except ManifestError as e:
            assert str(e).startswith(f"manifest {path}")
            assert e.problems
        else:  # whatever was accepted is well formed
            assert set(manifest.frame["split"]) <= {"TRAIN", "VALIDATION", "TEST"}
            assert {"TRAIN", "VALIDATION"} <= set(manifest.frame["split"])
            assert manifest.frame[list(LABELS)].isin([0, 1]).all().all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=HEADERS,
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=7), max_size=6),
    sep=st.sampled_from([",", ";", "\t"]),
)
def test_random_tables(header: list[str], rows: list[list[str]], sep: str) -> None:
    lines = [sep.join(header)] + [sep.join(row) for row in rows]
    check("\n".join(lines).encode("utf-8"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(content: bytes) -> None:
    check(content)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_text(content: str) -> None:
    check(content.encode("utf-8", errors="surrogatepass"))
