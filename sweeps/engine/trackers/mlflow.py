"""--log mlflow: a parent run per sweep and a nested run per trial, through MlflowClient.

`import mlflow` / `from mlflow... import` below reach the real library, not this module: imports are
absolute in Python 3, and this file is only ever imported as sweeps.engine.trackers.mlflow.
"""
from __future__ import annotations

import importlib
import os
import time
from urllib.parse import urlparse

from sweeps.engine.trackers.base import INSTALL, RunInfo, SweepInfo
from trainables.errors import ConfigError

# mlflow-skinny leaves out what MLflow's database stores import; the default store is a SQLite file
DATABASES, DATABASE_MODULES = ("sqlite", "postgresql", "mysql", "mssql"), ("sqlalchemy", "alembic")


def check_mlflow_store(uri: str) -> None:
    """ConfigError when `uri` is a database store and a package MLflow needs for it is missing."""
    if urlparse(uri).scheme.split("+")[0] not in DATABASES:
        return
    for module in DATABASE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--log mlflow: the {module} package is missing ({exc}), and the MLflow store "
                              f"{uri} needs it; install the trackers with: {INSTALL}") from None


def mlflow_uri(root: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(root)


def sqlite_uri(root: str) -> str:
    """<root>/mlflow.db: MLflow 3's recommended local store (its file: store is deprecated, and MLflow reads
    one back only with MLFLOW_ALLOW_FILE_STORE=true). Absolute, so `mlflow ui` finds it from any folder."""
    return "sqlite:///" + os.path.join(os.path.abspath(root), "mlflow.db")


class MLflowWriter:
    """A parent run for the sweep and one nested run per trial: params = the resolved config, metrics per
    epoch (step = epoch), tags status/sweep/study/code_version. MLFLOW_TRACKING_URI, else a SQLite store
    at <root>/mlflow.db; the experiment is MLFLOW_EXPERIMENT_NAME, else the study."""
    name = "mlflow"
    library = "mlflow"
    package = "mlflow-skinny"

    def __init__(self, sweep: SweepInfo, uri: str | None = None):
        self.sweep = sweep
        self.uri = uri or mlflow_uri(sweep.root)
        self.client = self.experiment = self.parent = None
        self.runs, self.existing = {}, {}

    @classmethod
    def check(cls) -> None:
        # the root is not known yet, but any default store is SQLite: "sqlite:" stands for it
        check_mlflow_store(os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:")

    def connect(self) -> None:
        """The client and the experiment; nothing is written yet."""
        if self.client is not None:
            return
        scheme = urlparse(self.uri).scheme.split("+")[0]
        if scheme in ("", "file"):  # only from the user's MLFLOW_TRACKING_URI; MLflow 3 refuses it unless asked
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        elif scheme not in DATABASES:  # a server that is down must fail in seconds, not after minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        check_mlflow_store(self.uri)
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or self.sweep.study or "cnn-sweeps"
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found else self.client.create_experiment(name)

    def exported(self) -> bool:
        """Whether this sweep already has runs here (the export refuses to write them twice)."""
        self.connect()
        return bool(self.client.search_runs([self.experiment], f"tags.sweep = '{self.sweep.name}'", max_results=1))

    def start(self) -> None:
        """The sweep's parent run: created once, or found again when a resumed sweep continues (the key
        survives in Ray's pickle of the callback), together with the trial runs it already has."""
        self.connect()
        if self.parent is not None:
            return
        for run in self.client.search_runs([self.experiment], f"tags.sweep_key = '{self.sweep.key}'"):
            if run.data.tags.get("trial_id"):
                self.existing[run.data.tags["trial_id"]] = run.info.run_id
            else:
                self.parent = run.info.run_id
        if self.parent is None:
            self.parent = self.client.create_run(self.experiment, run_name=self.sweep.name, tags=dict(
                sweep=self.sweep.name, study=self.sweep.study, code_version=self.sweep.code_version,
                sweep_key=self.sweep.key)).info.run_id

    def open(self, run: RunInfo) -> None:
        from mlflow.entities import Param
        self.start()
        if run.trial_id in self.existing:
            self.runs[run.trial_id] = self.existing.pop(run.trial_id)
            return
        tags = {**run.tags, **{k: str(v) for k, v in run.labels.items()}, "status": "running",
                "sweep_key": self.sweep.key, "mlflow.parentRunId": self.parent}
        run_id = self.client.create_run(self.experiment, run_name=run.name, tags=tags).info.run_id
        params = [Param(k, str(v)) for k, v in run.config.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=params[i:i + 100])
        self.runs[run.trial_id] = run_id

    def log(self, trial_id: str, epoch: int, scalars: dict) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, epoch) for k, v in scalars.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.runs[trial_id], metrics=metrics[i:i + 1000])

    def close(self, trial_id: str, status: str, final: dict) -> None:
        run_id = self.runs.pop(trial_id)
        self.client.set_tag(run_id, "status", status)
        self.client.set_terminated(run_id, {"error": "FAILED", "stopped": "KILLED"}.get(status, "FINISHED"))

    def end(self) -> None:
        for trial_id in list(self.runs):
            self.close(trial_id, "stopped", {})
        if self.parent is not None:
            self.client.set_terminated(self.parent, "FINISHED")
