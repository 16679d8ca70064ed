"""Experiment tracking with MLflow (``--mlflow [URI]``): settings, epoch metrics, final metrics and files.

A run opened while another is active becomes its nested child, so a study's folds and a learning curve's
points appear under their study or curve. MLflow is imported only when asked for (the ``mlflow`` extra).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medclf.errors import ConfigError
from medclf.reporting.files import make_folder

log = logging.getLogger(__name__)

EXPERIMENT = "medclf"
_PARAM_CHARS = 500  # well under MLflow's limit on a parameter value


def tracking_uri(given: str) -> tuple[str, str | None]:
    """The tracking URI for ``--mlflow`` and, for a local folder, where its artifacts go.

    A URI (``http://...``, ``sqlite:///...``, ``file:...``) is used as given. A folder (``./mlruns`` by default)
    becomes an SQLite store inside it, ``<folder>/mlflow.db``, with artifacts in ``<folder>/artifacts``: MLflow 3
    keeps its plain file store only behind ``MLFLOW_ALLOW_FILE_STORE=true`` (give a ``file:`` URI for that).
    """
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", given) and not re.match(r"^[A-Za-z]:[\\/]", given):
        return given, None
    folder = Path(given).resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: pip install 'medclf[mlflow]'") from None
    return mlflow


def flat_params(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings as MLflow parameters: lists joined by commas, long values cut."""
    out = {}
    for key, value in settings.items():
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        out[key] = text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 3] + "..."
    return out


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` (None, NaN and text left out), keys made MLflow-safe."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        out[re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(key))] = float(value)
    return out


class Tracker:
    """One MLflow run: nested under the active run if there is one."""

    def __init__(self, uri: str, run_name: str, settings: Mapping[str, Any], tags: Mapping[str, str] = ()) -> None:
        self.mlflow = _mlflow()
        self.run = None
        target, artifacts = tracking_uri(uri)
        if artifacts is not None:
            make_folder(Path(target.removeprefix("sqlite:///")).parent, "the MLflow folder")
        try:
            self.mlflow.set_tracking_uri(target)
            nested = self.mlflow.active_run() is not None
            if not nested and self.mlflow.get_experiment_by_name(EXPERIMENT) is None:
                self.mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
            if not nested:
                self.mlflow.set_experiment(EXPERIMENT)
            self.run = self.mlflow.start_run(run_name=run_name, nested=nested, tags=dict(tags))
            self.run_id = self.run.info.run_id
            self.mlflow.log_params(flat_params(settings))
        except self.mlflow.exceptions.MlflowException as e:
            raise ConfigError(f"--mlflow {uri}: {str(e).splitlines()[0]}") from None
        log.info("MLflow: run %s (%s) at %s", run_name, self.run_id, target)

    def log_metrics(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Log the finite numbers of ``values`` (at ``step``, e.g. the epoch)."""
        metrics = finite_metrics(values)
        if metrics:
            self.mlflow.log_metrics(metrics, step=step, run_id=self.run_id)

    def log_files(self, paths: Iterable[str | Path]) -> None:
        """Attach the files that exist as artifacts."""
        for path in map(Path, paths):
            if path.is_file():
                self.mlflow.log_artifact(str(path), run_id=self.run_id)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (``FINISHED``, ``FAILED`` or ``KILLED``); closing twice does nothing."""
        if self.run is None:
            return
        active = self.mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            self.mlflow.end_run(status=status)
        else:
            self.mlflow.tracking.MlflowClient().set_terminated(self.run_id, status)
        self.run = None


def open_tracker(uri: str, run_name: str, settings: Mapping[str, Any], **tags: str) -> Tracker | None:
    """A :class:`Tracker` when ``uri`` is set (``--mlflow``), else None."""
    return Tracker(uri, run_name, settings, tags) if uri else None


#: What a run folder shows in MLflow: settings, tables and the report when it has one.
RUN_FILES = ("config.json", "metrics.csv", "label_counts.csv", "metrics.json", "report.html")
