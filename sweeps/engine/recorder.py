"""The driver-side Ray callback that turns trial results into Parquet rows as they arrive.

A trial's status is decided here: completed, diverged, error, or early_stopped (a scheduler ended it
before its planned epochs; Ray gives callbacks no flag for that, so the last epoch tells). A PBT
exploit (the trainable reports `continued_from`) becomes a row of lineage.parquet.
"""
from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from ray import tune

from sweeps.engine.tune_state import params_json, result_line, trial_folder, write_trial_files
from sweeps.results import lease
from sweeps.results.plan import Plan, TrialSpec
from sweeps.results.store import (CLASS_COLUMNS, CONFUSION_COLUMNS, EPOCH_COLUMNS, FINAL, LAYER_COLUMNS,
                                  FINAL_METRICS, LINEAGE_COLUMNS, PHASE, Store, arrow_rows, plain)

# Placement reported by trainables.ray_trainable.placement(): which node and logical GPUs, and when; and what
# the worker computes with (trainables/environment.py; the env_id's full record is in sweep.json).
PLACEMENT = ("node_id", "gpu_ids", "trial_started", "reported_at", "failures", "env_id", "torch_version",
             "device_name")
# Storage writes in flight at once, one per trial at most: on local disk the work is CPU (Parquet encoding),
# on S3 it is waiting on round trips, which overlap (benchmarks/results_scale.py, benchmarks/driver_scale.py).
WRITE_THREADS = dict(local=2, remote=16)
# Finished trials are folded into part files this many at a time while the sweep runs (Store.fold), so a
# running 10,000-trial sweep also reads as a few hundred files, and the sweep's end has little left to fold.
FOLD_EVERY = 256


def trial_row(trial_id: str, spec: TrialSpec, meta: dict, status: str, last: dict | None, error: str = "",
              cell: str = "") -> dict:
    """Everything that describes one trial, flattened: config, labels, outcome and provenance, with its phase
    and its grid cell (Plan.cell_of)."""
    last = last or {}
    row = dict(trial_id=trial_id, sweep=meta["sweep"], study=meta["study"], status=status, error=error,
               phase=meta.get(PHASE, "search"), cell=cell)
    row.update(spec.config)  # resolved and validated by the planner: a preset's fixed keys show true values
    row.update(spec.labels)
    row.update(spec.facts)
    row.update({k: float(last.get(k, math.nan)) for k in FINAL_METRICS})
    row.update(epochs_completed=int(last.get("epoch", 0)), train_seconds=float(last.get("time_total_s", math.nan)),
               node_ip=str(last.get("node_ip", "")), code_version=meta["code_version"],
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    row.update({k: last[k] for k in PLACEMENT if k in last})
    row.update({k: meta[k] for k in ("searcher", "scheduler", "search_seed") if k in meta})
    return row


def outcome(spec: TrialSpec, last: dict, error: str = "") -> str:
    """error | diverged | early_stopped (fewer epochs than planned, no error) | completed."""
    if error:
        return "error"
    if last.get("status") == "diverged":
        return "diverged"
    planned = spec.config["epochs"] if spec.config["task"] == "train" else 1
    return "early_stopped" if int(last.get("epoch", 0)) < planned else "completed"


class Recorder(tune.Callback):
    """Writes epochs/layers rows on every result and the trial row when a trial starts and ends.

    Writes run on a small thread pool, so that storage round trips (S3: a PUT and a rename per file)
    never hold up Tune's event loop. Each trial has at most one write in flight: its next result
    waits for it, so a killed driver loses at most the epoch being written, per running trial, and a
    write's error surfaces at that trial's next result or at the end. When a trial ends, its epoch
    files are compacted (Store.compact_trial), its final row is written, and so are Tune's result.json
    and params.json for it (sweeps/engine/tune_state.py: Tune's ResultGrid reads them).

    It keeps no state that matters: Ray pickles callbacks with the experiment, and a
    resumed sweep rebuilds the same files from what the trials report again.

    It writes only while this driver holds the sweep's lease (sweeps/results/lease.py, found by the store's
    URI: nothing of it is pickled). Before every write, and at every step of Tune's loop, it asks the
    heartbeat thread's in-memory state; once another driver has taken over, it raises LeaseLost, which ends
    Tune's run, and writes, folds and deletes nothing more.

    `plan`: the runner's Plan, or a list of specs (TrialSpecs or their dicts; the keys a searcher or PBT
    picks are then meta's search_keys).
    """

    def __init__(self, storage: str, name: str, meta: dict, plan: Plan | list):
        self.storage, self.name, self.meta = storage, name, meta
        self.plan = Plan.of(plan, picked_keys=meta.get("search_keys", ()))
        self._store = None
        self.trial_specs: dict[str, TrialSpec] = {}  # trial_id -> spec at its start (PBT rewrites trial.config later)
        self.rows: dict[str, dict] = {}  # trial_id -> its trials row as last written: later callbacks read the status
        self.newest: dict[str, dict] = {}  # trial_id -> its newest result seen by this driver
        self.latencies: list[float] = []  # seconds from a trial's report to its epoch row on storage
        self.written: dict[str, dict] = {}  # trial_id -> {table: {epoch: Arrow table}} this driver wrote
        self.foldable: list[tuple] = []  # (trial_id, {table: Arrow table}) of finished trials, compacted
        self.tune_lines: dict[str, dict[int, str]] = {}  # trial_id -> {epoch: its result.json line}, running trials
        self.environments: set[str] = set()  # env_ids this driver has filed in sweep.json
        self._pool = None
        self._pending = {}  # trial_id -> the future of its latest write

    def __getstate__(self):
        return {**self.__dict__, "_store": None, "_pool": None, "_pending": {}, "latencies": [], "written": {},
                "foldable": [], "tune_lines": {}, "environments": set()}

    @property
    def phase(self) -> str:
        """"search", or "confirm" for the Recorder of the confirmation runs (sweeps/engine/confirm.py)."""
        return self.meta.get(PHASE, "search")

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.storage, self.name)
        return self._store

    @property
    def specs(self) -> tuple[TrialSpec, ...]:
        """The planned trials (sweeps/engine/trackers.py reads them)."""
        return self.plan.trials

    def spec(self, trial) -> TrialSpec:
        if trial.trial_id not in self.trial_specs:
            self.trial_specs[trial.trial_id] = self.plan.for_trial(trial.config)
        return self.trial_specs[trial.trial_id]

    # --- writes in the background, one in flight per trial ---
    def _submit(self, trial_id: str, job) -> None:
        lease.check(self.store.uri)  # in memory: raises LeaseLost once another driver holds the sweep
        self._wait(trial_id)
        if self._pool is None:
            threads = WRITE_THREADS["local" if self.store.local else "remote"]
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="recorder")
        self._pending[trial_id] = self._pool.submit(job)

    def _wait(self, trial_id: str) -> None:
        """Block until the trial's write is on storage; re-raise its error here, on Tune's thread."""
        future = self._pending.pop(trial_id, None)
        if future is not None:
            future.result()

    def flush(self) -> None:
        for trial_id in list(self._pending):
            self._wait(trial_id)

    def on_step_begin(self, iteration, trials, **info):
        lease.check(self.store.uri)  # a lost lease stops Tune's loop at once, not at the next result

    def on_experiment_end(self, trials, **info):
        store = self.store
        if lease.lost(store.uri):  # another driver took over: it writes Tune's files and folds, not this one
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
            return
        for trial in trials:  # still running when the sweep stopped: Tune's files for what they reported
            if trial.trial_id in self.tune_lines:
                files = self._tune_files(trial)
                self._submit(trial.trial_id, lambda files=files: write_trial_files(store, *files))
        self.flush()  # every trial's last write, so that all finished trials are foldable
        if self.foldable:
            self._fold()
            self.flush()
        if self.latencies:  # how far storage lagged behind the trials (benchmarks/driver_scale.py reads it)
            lags = sorted(self.latencies)
            print(f"storage: {len(lags)} results written; from report to row on storage: median "
                  f"{1e3 * lags[len(lags) // 2]:.0f} ms, p99 {1e3 * lags[int(len(lags) * 0.99)]:.0f} ms, "
                  f"max {1e3 * lags[-1]:.0f} ms", file=sys.stderr, flush=True)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # --- Tune's events ---
    def on_trial_start(self, iteration, trials, trial, **info):
        store, trial_id = self.store, trial.trial_id
        row = self._row(trial, "running", None)
        # A compacted trial that runs again (an errored trial on --resume) goes back to epoch files first,
        # so that the epochs it re-reports replace their copies.
        self._submit(trial_id, lambda: (store.expand_trial(trial_id), store.write_rows("trials", trial_id, [row])))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        store, trial_id, epoch = self.store, trial.trial_id, int(result["epoch"])
        self.newest[trial_id] = result
        self.tune_lines.setdefault(trial_id, {})[epoch] = result_line(result)
        search_keys = self.plan.picked_keys
        row = {c: result.get(c, math.nan) for c in EPOCH_COLUMNS}
        row.update(trial_id=trial_id, sweep=self.meta["sweep"], phase=self.phase)
        # the hyperparameters in force this epoch, where a searcher or PBT sets them (lr is already a column)
        in_force = [k for k in search_keys if k in result and k not in row]
        row.update({k: result[k] for k in in_force})
        # Arrow tables are built here, on Tune's thread: the result's dicts are not touched after this returns
        tables = [("epochs", arrow_rows([row], [*EPOCH_COLUMNS, PHASE, *in_force]))]
        if "continued_from" in result:  # PBT exploited: this trial now continues another's checkpoint
            lineage = dict(trial_id=trial_id, epoch=epoch, source_trial_id=result["continued_from"],
                           source_epoch=int(result["continued_from_epoch"]), phase=self.phase,
                           **{k: result.get(k, math.nan) for k in search_keys})
            tables.append(("lineage", arrow_rows([lineage], [*LINEAGE_COLUMNS, PHASE, *search_keys])))
        for table, columns in (("layers", LAYER_COLUMNS), ("classes", CLASS_COLUMNS), ("confusion", CONFUSION_COLUMNS)):
            rows = [dict(r, trial_id=trial_id, epoch=epoch, phase=self.phase) for r in result.get(table, [])]
            if rows:  # classes and confusion: study 004
                tables.append((table, arrow_rows(rows, [*columns, PHASE])))
        reported = float(result.get("reported_at", time.time()))
        if "environment" in result:  # a trial's first result on its worker
            self._file_environment(str(result.get("env_id", "")), result["environment"])

        written = self.written.setdefault(trial_id, {})
        for table, data in tables:  # kept until the trial ends: compacting it then needs no read-back
            written.setdefault(table, {})[epoch] = data

        def write():
            for table, data in tables[1:] + tables[:1]:  # epochs last: a row there means the epoch is whole
                store.write_epoch(table, trial_id, epoch, data)
            self.latencies.append(time.time() - reported)
        self._submit(trial_id, write)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = self._last(trial) or {}
        self._finish(trial, outcome(self.spec(trial), last), last)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "error", self._last(trial), error_line(trial))

    def _last(self, trial) -> dict | None:
        """The trial's last result: the newest this driver saw, else (a resumed trial that reported nothing
        since) its newest epoch row on storage, when that is newer than what Ray kept."""
        if trial.trial_id in self.newest:
            return {**(trial.last_result or {}), **self.newest[trial.trial_id]}
        self._wait(trial.trial_id)
        return latest_epoch(self.store, trial.trial_id, trial.last_result or {})

    def _row(self, trial, status: str, last: dict | None, error: str = "") -> dict:
        spec = self.spec(trial)
        row = trial_row(trial.trial_id, spec, self.meta, status, last, error, cell=self.plan.cell_of(spec))
        self.rows[trial.trial_id] = row
        return row

    def _finish(self, trial, status: str, last: dict | None, error: str = "") -> None:
        # How often Ray restarted it (FailureConfig.max_failures): retries are visible in the table.
        last = {**(last or {}), "failures": int(getattr(trial, "num_failures", 0))}
        store, trial_id = self.store, trial.trial_id
        row = self._row(trial, status, last, error)
        written = self.written.pop(trial_id, None)
        tune_files = self._tune_files(trial)

        def close():
            tables = store.compact_trial(trial_id, written)
            store.write_rows("trials", trial_id, [row])
            if status in FINAL:  # never runs again: it can go into a part file
                self.foldable.append((trial_id, {**tables, "trials": arrow_rows([row])}))
            write_trial_files(store, *tune_files)
        self._submit(trial_id, close)  # one job: a second for this trial would wait for this one, on Tune's thread
        self.newest.pop(trial_id, None)
        if len(self.foldable) >= FOLD_EVERY:
            self._fold()

    def _file_environment(self, env_id: str, text: str) -> None:
        """sweep.json's `environments` gains the worker's record the first time its env_id is seen: a read and a
        write of sweep.json per distinct environment, not per trial. A provenance note must not stop a sweep."""
        if not env_id or env_id in self.environments:
            return
        self.environments.add(env_id)
        store = self.store

        def write():
            try:
                record = store.read_json("sweep.json")
                if env_id not in record.setdefault("environments", {}):
                    record["environments"][env_id] = json.loads(text)
                    store.write_json("sweep.json", record)
            except (OSError, ValueError) as exc:
                print(f"warning: could not record environment {env_id} in sweep.json: {exc}", file=sys.stderr)
        self._submit("sweep.json", write)  # the key serialises these read-modify-writes

    def _tune_files(self, trial) -> tuple:
        """What write_trial_files needs, read on Tune's thread: the trial object is Tune's to change."""
        return trial_folder(trial), params_json(trial), self.tune_lines.pop(trial.trial_id, {})

    def _fold(self) -> None:
        batch, self.foldable = self.foldable, []  # appended to by writer threads: swap, then read
        copies: dict[str, dict] = {}
        for trial_id, tables in batch:
            for table, data in tables.items():
                copies.setdefault(table, {})[trial_id] = data
        store = self.store
        lease.check(store.uri, strict=True)  # a fold deletes the trials' files: only while the lease is ours
        self._submit("fold", lambda: store.fold([t for t, _ in batch], copies))


def error_line(trial) -> str:
    """The last line of the trial's error (`RuntimeError: ...`). Tune writes it on the driver, to
    `trial.error_file`, when the trial fails; Trial.get_error() reads the copy on storage, which a sync
    brings there later (with --storage it is still missing when on_trial_error runs)."""
    error = ""
    try:
        if trial.error_file:
            with open(trial.error_file, encoding="utf-8", errors="replace") as f:
                error = f.read().strip()
    except (OSError, AttributeError, TypeError):
        pass
    if not error:
        try:
            error = str(trial.get_error() or "").strip()
        except Exception:  # the message is a courtesy; the status is what matters
            error = ""
    return error.splitlines()[-1].strip() if error else ""


def latest_epoch(store: Store, trial_id: str, last: dict | None) -> dict | None:
    """`last` updated from the trial's newest epoch row on disk when that is newer.

    After a resumed sweep Ray's idea of a trial's last result can be older than the
    rows already written (its state file is saved every few seconds), so the
    epochs table, which is the record, wins.
    """
    epochs = store.read_trial("epochs", trial_id)
    if not len(epochs):
        return last
    row = epochs.iloc[-1].to_dict()  # sorted by epoch: the newest is last
    if last and int(last.get("epoch", 0)) >= int(row["epoch"]):
        return last
    return {**(last or {}), **{k: plain(v) for k, v in row.items() if not _missing(v)}}


def _missing(value) -> bool:
    """A null on disk: pandas reads it back as None, NaN or NA depending on the column's type."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def reconcile(store: Store, results, plan: Plan, meta: dict) -> None:
    """After fit(): a trial Ray reports as finished but whose row still says `running` gets its final row.

    That happens only when the driver died between Ray saving a finished trial and the
    callback writing its row; a resumed sweep does not replay callbacks of finished trials.
    """
    lease.check(store.uri, strict=True)  # it compacts (deletes epoch files) and writes rows
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
        last = latest_epoch(store, trial_id, metrics) or {}
        spec = plan.for_trial(result.config)
        store.compact_trial(trial_id)
        store.write_rows("trials", trial_id, [trial_row(trial_id, spec, meta, outcome(spec, last, error), last, error,
                                                        cell=plan.cell_of(spec))])
