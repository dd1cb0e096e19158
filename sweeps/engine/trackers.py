"""Live curves in TensorBoard, MLflow and W&B (`--log NAME`), from the results the Recorder writes to Parquet.

    results (once per epoch) -> Recorder (Parquet, decides the status) -> TrackerCallback -> Writer per tracker
    Parquet after the fact   -> replay() (python -m analysis.export)   ----------------->  the same Writers

Why not Ray's own integrations (ray.air.integrations.mlflow / .wandb, Tune's TBX logger): a trial's Ray
config is only an index into the runner's specs (trainables/ray_trainable.py), so they would log
`trial=3` instead of the resolved config; they name runs `run_trial_xxxxx_00003`, cannot nest MLflow runs
under a sweep, and skip the per-layer `layers` list. So each Writer here is a few calls of the library's
own API (torch.utils.tensorboard, MlflowClient, wandb), and one tune.Callback feeds them all.

A trial's run is named by what tells it apart from the sweep's other trials (run_name), the same live and
exported. The Recorder decides each trial's status (sweeps.engine.recorder.outcome); the callback sits after it in
the callbacks list and reads that trial row back, so every tracker shows the status Parquet holds.

A tracker that fails (a server down, a package broken at run time) prints one warning and is off for the
rest of the sweep; the sweep and its Parquet go on. A missing package is a ConfigError before Ray starts.
"""
from __future__ import annotations

import importlib
import json
import math
import netrc
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

from ray import tune

from sweeps.engine.recorder import FINAL_METRICS, outcome
from sweeps.results.store import EPOCH_COLUMNS, Store
from trainables.defaults import DEFAULTS
from trainables.errors import ConfigError, suggest

INSTALL = 'pip install -e ".[trackers]"'
MODULES = {"tensorboard": "torch.utils.tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # what --log imports
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}
EPOCH_SCALARS = tuple(c for c in EPOCH_COLUMNS if c not in ("trial_id", "sweep", "epoch"))
LAYER_SCALARS = ("grad_abs_mean", "update_ratio", "dead_fraction")  # per layer: "grad_abs_mean/00_conv1"
WANDB_PROJECT = "cnn-sweeps"
# mlflow-skinny leaves out what MLflow's database stores import; the default store is a SQLite file
DATABASES, DATABASE_MODULES = ("sqlite", "postgresql", "mysql", "mssql"), ("sqlalchemy", "alembic")


# --- checks before Ray starts ------------------------------------------------------------------

def check(names: list[str]) -> list[str]:
    """The --log names, deduplicated; ConfigError for an unknown name, a missing package or no W&B login."""
    names = list(dict.fromkeys(n.strip().lower() for n in names))
    for name in names:
        if name not in MODULES:
            raise ConfigError(f"--log {name}: not a tracker{suggest(name, MODULES)}")
        try:
            importlib.import_module(MODULES[name])
        except ImportError as exc:
            raise ConfigError(f"--log {name}: the {PACKAGES[name]} package is missing ({exc}); "
                              f"install the trackers with: {INSTALL}") from None
    if "mlflow" in names:
        check_mlflow_store(os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:")
    if "wandb" in names and not _wandb_usable():
        # Online W&B without a key would stop at a login prompt inside the sweep's driver loop.
        raise ConfigError("--log wandb: no W&B login (WANDB_API_KEY or ~/.netrc); run `wandb login`, "
                          "or set WANDB_MODE=offline and `wandb sync` later")
    return names


def _wandb_usable() -> bool:
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or \
            os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true"):
        return True
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


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


def check_resume(store: Store, names: list[str]) -> None:
    """Tuner.restore brings back the first run's callbacks as they were pickled: --log cannot change."""
    try:
        before = store.read_json("sweep.json").get("log", [])
    except (OSError, ValueError):
        return  # check_resume already stopped a sweep without a readable sweep.json
    if sorted(before) != sorted(names):
        first = " ".join(f"--log {n}" for n in before) or "no --log"
        raise ConfigError(f"--resume: a resumed sweep keeps the first run's trackers ({first}; Ray restores its "
                          "callbacks as they were); pass the same --log flags")


# --- what every tracker is given: names, scalars, final metrics ----------------------------------

@dataclass
class SweepInfo:
    """What the writers need about the sweep: identity, where local files go, and how runs are named."""
    name: str
    study: str
    code_version: str
    root: str                      # local folder: <root>/tensorboard, <root>/mlflow.db, <root>/wandb
    label_keys: list[str]          # run_name's labels, then config keys
    name_keys: list[str]
    labels: list[str] = field(default_factory=list)  # every label column of the plan (varied or not)
    search_keys: list[str] = field(default_factory=list)  # hyperparameters in force per epoch (PBT, Optuna)
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # tells this sweep's runs from others'


@dataclass
class RunInfo:
    trial_id: str
    name: str
    config: dict                   # the resolved config
    labels: dict
    tags: dict                     # sweep, study, code_version, trial_id


def local_root(store: Store) -> str:
    """The sweep folder itself for local storage. Trackers write local files, so for a URI (s3://...) they
    write under ./tracking/<name>/ in the working directory instead."""
    return store.local_path() or os.path.abspath(os.path.join("tracking", store.name))


def sweep_info(store: Store, record: dict, root: str | None = None) -> SweepInfo:
    """From sweep.json's contents (the runner's meta, plan and search settings; live: the same values)."""
    search = record.get("search") or {}
    always = sorted(set(search.get("sampled") or {}) | set(record.get("search_keys") or []))
    labels, keys = name_keys(record.get("plan") or [], always)
    return SweepInfo(name=store.name, study=str(record.get("study", "")),
                     code_version=str(record.get("code_version", "")), root=root or local_root(store),
                     label_keys=labels, name_keys=keys, search_keys=list(record.get("search_keys") or []),
                     labels=list(dict.fromkeys(k for e in record.get("plan") or [] for k in e["labels"])))


def name_keys(plan: list[dict], always=()) -> tuple[list[str], list[str]]:
    """(labels, config keys) that tell the planned trials apart (`plan` is sweep.json's): the labels that
    vary, the config keys that vary unless a label or a key already shown implies them (a variant's bundle,
    e.g. init=he_normal brings init_mode=fan_out), and the sampled keys. Leaving out implied keys keeps
    names unique. Keys every trial sets and with more values go first: they are the ones that imply."""
    def column(part, key):
        return [json.dumps(e[part].get(key), sort_keys=True, default=str) for e in plan]

    def implies(a, b):  # every value of column a goes with a single value of column b
        return len(set(zip(a, b))) == len(set(a))

    labels = [k for k in dict.fromkeys(k for e in plan for k in e["labels"]) if len(set(column("labels", k))) > 1]
    shown = [column("labels", k) for k in labels]
    varied = [k for k in {k for e in plan for k in e["config"]} if len(set(column("config", k))) > 1]
    keys = []
    for key in sorted(varied, key=lambda k: (not all(k in e["config"] for e in plan),
                                             -len(set(column("config", k))), k)):
        col = column("config", key)
        if not any(implies(other, col) for other in shown):
            keys.append(key)
            shown.append(col)
    return labels, sorted(set(keys) | set(always))


def fmt(value) -> str:
    value = plain(value)
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.4g}"  # as the runner's titles show sampled values; 5.0 and 5 both read "5"
    return str(value)


def run_name(sweep: SweepInfo, trial_id: str, config: dict, labels: dict) -> str:
    """"depth=5,init=he_normal,lr=0.01_3f2a1_00003": the trial's varied keys, filesystem-safe, plus its id."""
    parts = [f"{k}={fmt(labels[k])}" for k in sweep.label_keys if not missing(labels.get(k))]
    parts += [f"{k}={fmt(config[k])}" for k in sweep.name_keys if k in config]
    title = re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts))[:120] or "default"
    return f"{title}_{trial_id}"


def run_info(sweep: SweepInfo, trial_id: str, config: dict, labels: dict, code_version: str = "") -> RunInfo:
    config = {k: plain(v) for k, v in config.items()}
    labels = {k: plain(v) for k, v in labels.items() if not missing(v)}
    return RunInfo(trial_id, run_name(sweep, trial_id, config, labels), config, labels,
                   dict(sweep=sweep.name, study=sweep.study, code_version=code_version or sweep.code_version,
                        trial_id=trial_id))


def epoch_scalars(values: dict, layers: list[dict], extra=()) -> dict[str, float]:
    """One epoch's scalars under epochs.parquet's names, plus "<diagnostic>/<NN>_<layer_name>" per layer
    (the index keeps layers in forward order where a UI sorts names: conv10 would come before conv2).
    NaN is Parquet's "no value" (no validation split, a layer without a rectifier): it is left out."""
    out = {k: number(values.get(k)) for k in (*EPOCH_SCALARS, *extra)}
    for layer in layers:
        label = f"{int(layer['layer']):02d}_{layer.get('layer_name') or 'layer'}"
        out.update({f"{k}/{label}": number(layer.get(k)) for k in LAYER_SCALARS})
    return {k: v for k, v in out.items() if v is not None}


def final_metrics(row: dict) -> dict[str, float]:
    """The trials.parquet row's last-epoch metrics and epochs_completed."""
    out = {k: number(row.get(k)) for k in (*FINAL_METRICS, "epochs_completed")}
    return {k: v for k, v in out.items() if v is not None}


def plain(value):
    """A plain Python value for a numpy scalar (Parquet reads give numpy types, Ray's results plain ones)."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value) -> float | None:
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


# --- the writers: one per tracker, runs keyed by trial id ----------------------------------------

class TensorBoardWriter:
    """<root>/tensorboard/<run name>/: scalars with step = epoch, and at the end the config, labels and
    status as hparams (the HParams view compares trials on the final values of the metric scalars)."""
    name = "tensorboard"
    METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epochs_completed")

    def __init__(self, sweep: SweepInfo):
        self.dir = os.path.join(sweep.root, "tensorboard")
        self.runs = {}

    def open(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.runs[run.trial_id] = (SummaryWriter(os.path.join(self.dir, run.name)), run)

    def log(self, trial_id: str, epoch: int, scalars: dict) -> None:
        writer, _ = self.runs[trial_id]
        for key, value in scalars.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()  # one flush an epoch: curves appear now, not after SummaryWriter's 2-minute timer

    def close(self, trial_id: str, status: str, final: dict) -> None:
        from torch.utils.tensorboard.summary import hparams
        writer, run = self.runs.pop(trial_id)
        if "epochs_completed" in final:
            writer.add_scalar("epochs_completed", final["epochs_completed"], int(final["epochs_completed"]))
        values = {**run.config, **run.labels, "status": status}
        # SummaryWriter.add_hparams would write into a new sub-run; these summaries go into the trial's own
        values = {k: str(v) if isinstance(v, bool) or not isinstance(v, (int, float, str)) else v
                  for k, v in values.items()}
        # the HParams tab reads each metric's final value from the run's scalars of that name: the zeros only list them
        for summary in hparams(values, {k: 0.0 for k in self.METRICS}):
            writer.file_writer.add_summary(summary)
        writer.close()

    def end(self) -> None:
        for trial_id in list(self.runs):
            self.close(trial_id, "stopped", {})


class MLflowWriter:
    """A parent run for the sweep and one nested run per trial: params = the resolved config, metrics per
    epoch (step = epoch), tags status/sweep/study/code_version. MLFLOW_TRACKING_URI, else a SQLite store
    at <root>/mlflow.db; the experiment is MLFLOW_EXPERIMENT_NAME, else the study."""
    name = "mlflow"

    def __init__(self, sweep: SweepInfo, uri: str | None = None):
        self.sweep = sweep
        self.uri = uri or mlflow_uri(sweep.root)
        self.client = self.experiment = self.parent = None
        self.runs, self.existing = {}, {}

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


class WandbWriter:
    """One W&B run per trial in the group <sweep>, project WANDB_PROJECT (default cnn-sweeps), entity
    WANDB_ENTITY; W&B itself honours WANDB_MODE=offline (runs under <root>/wandb/, `wandb sync` later)."""
    name = "wandb"

    def __init__(self, sweep: SweepInfo):
        self.sweep, self.runs = sweep, {}

    def open(self, run: RunInfo) -> None:
        import wandb
        os.makedirs(self.sweep.root, exist_ok=True)
        settings = wandb.Settings(console="off", silent=True, save_code=False, disable_git=True,
                                  x_disable_stats=True,  # no system-metrics sampler per trial on the driver
                                  init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 20)))
        self.runs[run.trial_id] = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or WANDB_PROJECT, entity=os.environ.get("WANDB_ENTITY"),
            group=self.sweep.name, job_type="trial", name=run.name, id=f"{run.trial_id}-{self.sweep.key}",
            config={**run.config, **run.labels}, tags=[self.sweep.study] if self.sweep.study else None,
            dir=self.sweep.root, reinit="create_new", resume="allow", settings=settings)
        self.runs[run.trial_id].summary.update({**run.tags, "status": "running"})

    def log(self, trial_id: str, epoch: int, scalars: dict) -> None:
        self.runs[trial_id].log({**scalars, "epoch": epoch}, step=epoch)

    def close(self, trial_id: str, status: str, final: dict) -> None:
        run = self.runs.pop(trial_id)
        run.summary.update({**final, "status": status})
        run.tags = tuple(run.tags or ()) + (status,)
        run.finish(exit_code=1 if status == "error" else 0)

    def end(self) -> None:
        for trial_id in list(self.runs):
            self.close(trial_id, "stopped", {})
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()  # stop W&B's background service with the sweep


WRITERS = {"tensorboard": TensorBoardWriter, "mlflow": MLflowWriter, "wandb": WandbWriter}


# --- live: the Tune callback ---------------------------------------------------------------------

def callbacks(names: list[str], recorder, sampled=()) -> list:
    """[] without --log; else one callback that goes after `recorder` in RunConfig.callbacks."""
    return [TrackerCallback(names, recorder, sampled)] if names else []


class TrackerCallback(tune.Callback):
    """Feeds every --log writer from the trial results, on the driver, once per epoch. It reuses the
    Recorder (same spec per trial, same store) and reads the trial row the Recorder has just written, so
    the status and final metrics are the ones in trials.parquet."""

    def __init__(self, names: list[str], recorder, sampled=()):
        self.names, self.recorder = list(names), recorder
        meta, specs = recorder.meta, recorder.specs
        plan = json.loads(json.dumps([dict(config=s["overrides"], labels=s["labels"]) for s in specs], default=str))
        record = dict(meta, plan=plan, search=dict(sampled={k: "" for k in sampled}))
        self.sweep = sweep_info(recorder.store, record)
        self.failed: set[str] = set()
        self._writers = None
        if not recorder.store.local_path():
            print(f"note: --log: storage {recorder.store.uri} is not local; trackers write under {self.sweep.root}",
                  file=sys.stderr)

    def __getstate__(self):  # Ray pickles callbacks with the experiment; open files and clients stay behind
        return {**self.__dict__, "_writers": None}

    @property
    def writers(self) -> list:
        if self._writers is None:
            self._writers = [WRITERS[n](self.sweep) for n in self.names]
        return self._writers

    def _call(self, writer, method: str, *args) -> None:
        if writer.name in self.failed:
            return
        try:
            getattr(writer, method)(*args)
        except Exception as exc:  # a tracker must never stop the sweep: warn once, then leave it off
            self.failed.add(writer.name)
            why = (str(exc).strip().splitlines() or [""])[0][:200]
            print(f"warning: --log {writer.name} failed ({type(exc).__name__}: {why}); it is off for the "
                  "rest of this sweep, results still go to Parquet", file=sys.stderr, flush=True)

    def _each(self, method: str, *args) -> None:
        for writer in self.writers:
            self._call(writer, method, *args)

    def _opened(self, trial) -> None:
        """Open the trial's run in every writer that has none (a restored trial may report before a start)."""
        for writer in self.writers:
            if writer.name not in self.failed and trial.trial_id not in writer.runs:
                spec = self.recorder.spec(trial)
                self._call(writer, "open", run_info(self.sweep, trial.trial_id, spec["config"], spec["labels"]))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._opened(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._opened(trial)
        extra = [k for k in self.sweep.search_keys if k not in EPOCH_SCALARS]
        self._each("log", trial.trial_id, int(result["epoch"]), epoch_scalars(result, result.get("layers", []), extra))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, errored=True)

    def on_experiment_end(self, trials, **info):
        self._each("end")

    def _finish(self, trial, errored: bool) -> None:
        self._opened(trial)
        row = self.recorder.rows.get(trial.trial_id)  # the row the Recorder has just decided (it comes first)
        if row is None:  # no row (the Recorder failed): decide as the Recorder does, from Ray's last result
            last = trial.last_result or {}
            row = dict(last, status="error" if errored else outcome(self.recorder.spec(trial), last),
                       epochs_completed=last.get("epoch", 0))
        for writer in self.writers:
            if trial.trial_id in writer.runs:
                self._call(writer, "close", trial.trial_id, str(row["status"]), final_metrics(row))


# --- after the fact: the same runs from Parquet ---------------------------------------------------

def replay(writer, sweep: SweepInfo, trials, epochs, layers) -> int:
    """Write every trial of the tables through `writer`, as the live callback would have; returns the count."""
    extra = [c for c in epochs.columns if c not in EPOCH_COLUMNS]  # hyperparameters in force (PBT, Optuna)
    by_epoch = {key: group.to_dict("records") for key, group in layers.groupby(["trial_id", "epoch"])} \
        if len(layers) else {}
    label_keys = [k for k in sweep.labels if k in trials.columns]
    count = 0
    for row in trials.sort_values("trial_id").to_dict("records"):
        trial_id = row["trial_id"]
        config = {k: row[k] for k in DEFAULTS if k in row}
        labels = {k: row[k] for k in label_keys}
        writer.open(run_info(sweep, trial_id, config, labels, str(row.get("code_version", ""))))
        mine = epochs[epochs["trial_id"] == trial_id].sort_values("epoch") if len(epochs) else epochs
        for erow in mine.to_dict("records"):
            epoch = int(erow["epoch"])
            writer.log(trial_id, epoch, epoch_scalars(erow, by_epoch.get((trial_id, epoch), []), extra))
        writer.close(trial_id, str(row["status"]), final_metrics(row))
        count += 1
    writer.end()
    return count
