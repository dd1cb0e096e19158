"""The driver-side Ray callback that turns trial results into Parquet rows as they arrive."""
from __future__ import annotations

import math
import sys
import time

import pandas as pd
from ray import tune

from sweeps.storage import CLASS_COLUMNS, CONFUSION_COLUMNS, EPOCH_COLUMNS, LAYER_COLUMNS, Store

FINAL_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "avg_weight")
# Placement reported by trainables.ray_trainable.placement(): which node and logical GPUs, and when.
PLACEMENT = ("node_id", "gpu_ids", "trial_started", "reported_at", "failures")


def trial_row(trial_id: str, spec: dict, meta: dict, status: str, last: dict | None, error: str = "") -> dict:
    """Everything that describes one trial, flattened: config, labels, outcome and provenance."""
    last = last or {}
    row = dict(trial_id=trial_id, sweep=meta["sweep"], study=meta["study"], status=status, error=error)
    row.update(spec["config"])  # resolved and validated by the runner's plan(): a preset's fixed keys show true values
    row.update(spec["labels"])
    row.update(spec["facts"])
    row.update({k: float(last.get(k, math.nan)) for k in FINAL_METRICS})
    row.update(epochs_completed=int(last.get("epoch", 0)), train_seconds=float(last.get("time_total_s", math.nan)),
               node_ip=str(last.get("node_ip", "")), code_version=meta["code_version"],
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    row.update({k: last[k] for k in PLACEMENT if k in last})
    return row


class Recorder(tune.Callback):
    """Writes epochs/layers rows on every result and the trial row when a trial starts and ends.

    It keeps no state that matters: Ray pickles callbacks with the experiment, and a
    resumed sweep rebuilds the same files from what the trials report again.
    """

    def __init__(self, storage: str, name: str, meta: dict, specs: list[dict]):
        self.storage, self.name, self.meta, self.specs = storage, name, meta, specs
        self.finished = 0
        self._store = None

    def __getstate__(self):
        return {**self.__dict__, "_store": None}

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.storage, self.name)
        return self._store

    def on_trial_start(self, iteration, trials, trial, **info):
        self._write_trial(trial, "running", None)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result["epoch"])
        key = f"{trial.trial_id}-e{epoch:04d}"
        row = {c: result.get(c, math.nan) for c in EPOCH_COLUMNS}
        row.update(trial_id=trial.trial_id, sweep=self.meta["sweep"])
        self.store.write_rows("epochs", key, [row], EPOCH_COLUMNS)
        layers = [dict(layer, trial_id=trial.trial_id, epoch=epoch) for layer in result.get("layers", [])]
        if layers:
            self.store.write_rows("layers", key, layers, LAYER_COLUMNS)
        for table, columns in (("classes", CLASS_COLUMNS), ("confusion", CONFUSION_COLUMNS)):  # study 004
            rows = [dict(r, trial_id=trial.trial_id, epoch=epoch) for r in result.get(table, [])]
            if rows:
                self.store.write_rows(table, key, rows, columns)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        status = "diverged" if last.get("status") == "diverged" else "completed"
        self._finish(trial, status, last)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = ""
        try:
            error = str(trial.get_error() or "")
        except Exception:  # the message is a courtesy; the status is what matters
            pass
        self._finish(trial, "error", trial.last_result, error.strip().splitlines()[-1] if error.strip() else "")

    def _write_trial(self, trial, status: str, last: dict | None, error: str = "") -> None:
        spec = self.specs[trial.config["trial"]]
        row = trial_row(trial.trial_id, spec, self.meta, status, last, error)
        self.store.write_rows("trials", trial.trial_id, [row])

    def _finish(self, trial, status: str, last: dict | None, error: str = "") -> None:
        last = latest_epoch(self.store, trial.trial_id, last)
        # How often Ray restarted it (FailureConfig.max_failures): retries are visible in the table.
        last = {**(last or {}), "failures": int(getattr(trial, "num_failures", 0))}
        self._write_trial(trial, status, last, error)
        self.finished += 1
        last = last or {}
        acc = last.get("val_acc", last.get("test_acc"))
        score = f", {'val' if 'val_acc' in last else 'test'}_acc {acc:.3f}" if isinstance(acc, float) else ""
        print(f"[{self.finished}/{len(self.specs)}] {self.specs[trial.config['trial']]['title']}: {status}"
              f"{score} after {int(last.get('epoch', 0))} epochs{' - ' + error if error else ''}",
              file=sys.stderr, flush=True)


def latest_epoch(store: Store, trial_id: str, last: dict | None) -> dict | None:
    """`last` updated from the trial's newest epoch row on disk when that is newer.

    After a resumed sweep Ray's idea of a trial's last result can be older than the
    rows already written (its state file is saved every few seconds), so the
    epochs table, which is the record, wins.
    """
    epochs = store.read_table("epochs", prefix=f"{trial_id}-e")
    if not len(epochs):
        return last
    row = epochs.iloc[-1].to_dict()  # files are <trial_id>-e<epoch:04d>, read in name order: the newest is last
    if last and int(last.get("epoch", 0)) >= int(row["epoch"]):
        return last
    return {**(last or {}), **{k: _plain(v) for k, v in row.items() if not _missing(v)}}


def _missing(value) -> bool:
    """A null on disk: pandas reads it back as None, NaN or NA depending on the column's type."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _plain(value):
    """A plain Python value for a numpy scalar, as Ray's own results hold."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value


def reconcile(store: Store, results, specs: list[dict], meta: dict) -> None:
    """After fit(): a trial Ray reports as finished but whose row still says `running` gets its final row.

    That happens only when the driver died between Ray saving a finished trial and the
    callback writing its row; a resumed sweep does not replay callbacks of finished trials.
    """
    trials = store.read_table("trials")
    status = dict(zip(trials["trial_id"], trials["status"])) if len(trials) else {}
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id")  # absent only for a trial that never reported: nothing to fix
        if trial_id is None or status.get(trial_id) not in (None, "running", "stopped"):
            continue
        if result.error is None and not metrics.get("done"):
            continue  # unfinished (an interrupted fit): `stopped` is right
        error = str(result.error).strip().splitlines()[-1] if result.error is not None else ""
        outcome = "error" if error else ("diverged" if metrics.get("status") == "diverged" else "completed")
        last = latest_epoch(store, trial_id, metrics)
        store.write_rows("trials", trial_id, [trial_row(trial_id, specs[result.config["trial"]], meta, outcome,
                                                        last, error)])
