"""--mlflow: settings, epoch metrics, final metrics and files, to a local file store and to a real tracking
server started on 127.0.0.1; a study's folds are nested runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from medclf.crossval import main as crossval_main  # noqa: E402
from medclf.train import main as train_main  # noqa: E402

FAST = ["--image-size", "32", "--model", "densenet_tiny", "--batch-size", "16", "--device", "cpu",
        "--num-workers", "0", "--no-progress", "--figure-every", "0"]  # fmt: skip


def runs_of(uri: str) -> list:
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("medclf")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


def test_train_logs_to_a_local_file_store(synthetic_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this
    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "run"
    assert train_main(["--csv", str(synthetic_csv), "--out", str(out), "--epochs", "2", "--mlflow", uri, *FAST]) == 0
    (run,) = runs_of(uri)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["model"] == "densenet_tiny" and run.data.params["epochs"] == "2"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run.info.run_id, "val_auroc")
    assert [m.step for m in history] == [1, 2]
    assert "best_auroc" in run.data.metrics and run.data.metrics["epochs_completed"] == 2
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.csv", "label_counts.csv"} <= files


def test_a_study_logs_its_folds_as_nested_runs(synthetic_csv: Path, tmp_path: Path, monkeypatch) -> None:
    """``--mlflow`` alone: ./mlruns, an SQLite store in that folder."""
    monkeypatch.chdir(tmp_path)
    args = ["--csv", str(synthetic_csv), "--folds", "2", "--out", str(tmp_path / "cv"), "--epochs", "1", "--mlflow"]
    assert crossval_main([*args, *FAST]) == 0
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    runs = runs_of(uri)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["fold_1", "fold_2"]
    assert "oof_macro_auroc" in parent.data.metrics and parent.data.params["folds"] == "2"
    files = {f.path for f in mlflow.tracking.MlflowClient(tracking_uri=uri).list_artifacts(parent.info.run_id)}
    assert {"report.html", "metrics.json", "folds_metrics.csv", "folds.csv", "study.json"} <= files
    assert (tmp_path / "mlruns" / "artifacts").is_dir()


def test_an_unusable_store_is_one_line(synthetic_csv: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    assert train_main(["--csv", str(synthetic_csv), "--out", str(tmp_path / "r"), "--epochs", "1", "--mlflow", uri,
                       *FAST]) == 2  # fmt: skip
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "error:" in x]
    assert f"--mlflow {uri}:" in line and "MLFLOW_ALLOW_FILE_STORE" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 and a free port, stopped at the end."""
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'store.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]  # fmt: skip
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed in the finalizer below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text(errors="replace"))
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()


def test_train_logs_to_a_tracking_server(tracking_server: str, synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    args = ["--csv", str(synthetic_csv), "--out", str(out), "--epochs", "1", "--mlflow", tracking_server, *FAST]
    assert train_main(args) == 0
    (run,) = runs_of(tracking_server)
    assert run.info.status == "FINISHED" and "val_auroc" in run.data.metrics
    files = {f.path for f in mlflow.tracking.MlflowClient(tracking_uri=tracking_server).list_artifacts(run.info.run_id)}
    assert "metrics.csv" in files
