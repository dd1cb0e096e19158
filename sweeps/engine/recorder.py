"""The driver-side Ray callback that turns trial results into Parquet rows as they arrive.

A trial's status is decided here: completed, diverged, error, or early_stopped (a scheduler ended it
before its planned epochs; Ray gives callbacks no flag for that, so the last epoch tells). A PBT
exploit (the trainable reports `continued_from`) becomes a row of lineage.parquet.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
import traceback

import pandas as pd
from ray import tune

from sweeps.engine.tune_state import params_json, result_line, trial_folder, write_trial_files
from sweeps.results import lease
from sweeps.results.outbox import Job, Outbox, count
from sweeps.results.plan import Plan, TrialSpec
from sweeps.results.progress import emit
from sweeps.results.retry import StorageError
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
              cell: str = "", plan_index: int | None = None) -> dict:
    """Everything that describes one trial, flattened: config, labels, outcome and provenance, with its phase,
    its grid cell (Plan.cell_of) and its index in the phase's plan (a resume settles trials by it,
    sweeps/engine/feeder.py; an Optuna trial's is its cell's template)."""
    last = last or {}
    row = dict(trial_id=trial_id, sweep=meta["sweep"], study=meta["study"], status=status, error=error,
               phase=meta.get(PHASE, "search"), cell=cell)
    if plan_index is not None:
        row["plan_index"] = int(plan_index)
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

    Writes go into an Outbox (sweeps/results/outbox.py): per-trial queues drained by a small thread pool,
    at most one write in flight per trial and in the order reported, so that storage round trips (S3: a
    PUT per file) overlap with each other and with training. While the storage answers, a
    trial's next write waits for its last one (Tune's loop slows to the storage's pace instead of the
    queue growing all sweep long). While the storage is unreachable nothing waits: the writes retry (up to
    --storage-timeout) and the results wait in the queue, in memory and past a bound in a local spill folder. When a trial ends, its epoch
    files are compacted (Store.compact_trial), its final row is written, and so are Tune's result.json
    and params.json for it (sweeps/engine/tune_state.py: Tune's ResultGrid reads them).

    A write that fails for good (the storage unreachable past the timeout, or refusing: access denied, no
    bucket, a full disk) stops the sweep: at Tune's next step `on_step_end` raises the StorageError, Tune
    stops the trials, calls every callback's on_experiment_end (here: everything still queued goes to the
    spill folder, and unfinished trials get a `stopped` row there) and re-raises it from fit(); the runner
    prints one line with the --resume command. A resumed run writes what the spill folder kept first
    (`setup`). A killed driver loses what was queued and not yet written: the epochs it had received and
    not written, per trial (usually none or one; more during an outage).

    It keeps no state that matters: Ray pickles callbacks with the experiment, and a
    resumed sweep rebuilds the same files from what the trials report again.

    It writes only while this driver holds the sweep's lease (sweeps/results/lease.py, found by the store's
    URI: nothing of it is pickled). Before every write, and at every step of Tune's loop, it asks the
    heartbeat thread's in-memory state; once another driver has taken over, it writes, folds and deletes
    nothing more, and raises LeaseLost from Tune's step callbacks, which ends Tune's run.

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
        self._outbox = None  # the queue of writes (made at the first write or at setup)
        self.restored = False  # unpickled by Tuner.restore: a resumed sweep

    _outbox = None  # a Recorder pickled by an earlier version has none
    restored = True  # ... nor this

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_pending")}
        return {**state, "_store": None, "_outbox": None, "latencies": [], "written": {}, "foldable": [],
                "tune_lines": {}, "environments": set(), "restored": True}

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
    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.store, WRITE_THREADS["local" if self.store.local else "remote"])
        return self._outbox

    def _submit(self, trial_id: str, job) -> None:
        """Queue a write (a Job, or a plain callable: never kept in the spill folder) after the trial's earlier
        ones. While the storage answers it first waits for the trial's earlier writes (Outbox.keep_pace);
        during an outage it returns at once. Once another driver holds the sweep it writes nothing and
        returns: a trial's callbacks must not raise LeaseLost, since Ray wraps what they raise in a TuneError
        carrying a traceback, or logs it and errors the trial (CI saw that line last on the lost driver's
        console). The step callbacks, which Tune calls directly, raise it at the same step's end."""
        if lease.lost(self.store.uri):
            return
        self.outbox.keep_pace(trial_id)
        self.outbox.put(trial_id, job if isinstance(job, Job) else Job(fn=job))

    def _wait(self, trial_id: str) -> StorageError | None:
        """Block until the trial's queued writes are on storage (or the queue has stopped: returns why)."""
        return self._outbox.wait(trial_id) if self._outbox is not None else None

    def flush(self) -> None:
        """Block until every queued write is on storage; raises the StorageError that stopped the queue."""
        failed = self._outbox.drain() if self._outbox is not None else None
        if failed is not None:
            raise failed

    def setup(self, **info):
        """At the start of every Tune run, a resumed one too: what a run stopped by the storage kept in the spill
        folder goes first in its trials' queues, ahead of anything this run reports."""
        quiet_ray_storage_logs()
        results, others = self.outbox.adopt()
        if results or others:
            emit([f"storage: {count(results, 'result')} and {count(others, 'other write')} a stopped run kept in "
                  f"{self.outbox.folder} go to storage first"])

    def on_step_end(self, iteration, trials, **info):
        self._stop_if_over()

    def on_step_begin(self, iteration, trials, **info):
        self._stop_if_over()  # a lost lease stops Tune's loop at once, not at the next result

    def _stop_if_over(self) -> None:
        """At Tune's steps, which raise straight out of fit(): a storage failure (Tune then stops the trials,
        runs on_experiment_end, and re-raises it from fit()), else a lease lost since the last step. The
        storage first: a bucket deleted mid-sweep takes the lease file with it."""
        failed = self._outbox.failed if self._outbox is not None else None
        if failed is not None:
            raise failed
        lease.check(self.store.uri)

    def on_experiment_end(self, trials, **info):
        if lease.lost(self.store.uri):  # another driver took over: it writes Tune's files and folds, not this one
            if self._outbox is not None:
                self._outbox.close()
                self._outbox = None
            return
        outbox = self.outbox
        for trial in trials:  # still running when the sweep stopped: Tune's files for what they reported
            if trial.trial_id in self.tune_lines:
                self._submit(trial.trial_id, Job([(write_trial_files, self._tune_files(trial))]))
        failed = outbox.drain()  # every trial's last write, so that all finished trials are foldable
        if failed is None and self.foldable:
            self._fold()
            failed = outbox.drain()
        if failed is not None:
            for trial_id, row in self.rows.items():  # unfinished: `stopped` (--resume writes it, then runs them)
                if row.get("status") == "running":
                    outbox.put(trial_id, Job([("write_rows", ("trials", trial_id, [dict(row, status="stopped")]))]))
            outbox.keep()
        elif self.latencies:  # how far storage lagged behind the trials (benchmarks/driver_scale.py reads it)
            lags = sorted(self.latencies)
            print(f"storage: {len(lags)} results written; from report to row on storage: median "
                  f"{1e3 * lags[len(lags) // 2]:.0f} ms, p99 {1e3 * lags[int(len(lags) * 0.99)]:.0f} ms, "
                  f"max {1e3 * lags[-1]:.0f} ms", file=sys.stderr, flush=True)
        outbox.close()
        self._outbox = None

    # --- Tune's events ---
    def on_trial_start(self, iteration, trials, trial, **info):
        trial_id = trial.trial_id
        row = self._row(trial, "running", None)
        # A compacted trial that runs again (an errored trial on --resume) goes back to epoch files first,
        # so that the epochs it re-reports replace their copies.
        self._submit(trial_id, Job([("expand_trial", (trial_id,)), ("write_rows", ("trials", trial_id, [row]))]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        trial_id, epoch = trial.trial_id, int(result["epoch"])
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

        # epochs last: a row there means the epoch is whole
        steps = [("write_epoch", (table, trial_id, epoch, data)) for table, data in tables[1:] + tables[:1]]
        self._submit(trial_id, Job(steps, results=1, after=lambda _: self.latencies.append(time.time() - reported)))

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
        if self._wait(trial.trial_id) is not None:  # the storage stopped the sweep: Ray's copy will do
            return trial.last_result or {}
        return latest_epoch(self.store, trial.trial_id, trial.last_result or {})

    def _row(self, trial, status: str, last: dict | None, error: str = "") -> dict:
        spec = self.spec(trial)
        row = trial_row(trial.trial_id, spec, self.meta, status, last, error, cell=self.plan.cell_of(spec),
                        plan_index=trial.config["trial"])
        self.rows[trial.trial_id] = row
        return row

    def _finish(self, trial, status: str, last: dict | None, error: str = "") -> None:
        # How often Ray restarted it (FailureConfig.max_failures): retries are visible in the table.
        last = {**(last or {}), "failures": int(getattr(trial, "num_failures", 0))}
        trial_id = trial.trial_id
        row = self._row(trial, status, last, error)
        written = self.written.pop(trial_id, None)

        def done(outputs):
            if status in FINAL:  # never runs again: it can go into a part file
                self.foldable.append((trial_id, {**outputs[0], "trials": arrow_rows([row])}))
        self._submit(trial_id, Job([("compact_trial", (trial_id, written)), ("write_rows", ("trials", trial_id, [row])),
                                    (write_trial_files, self._tune_files(trial))], after=done))
        self.newest.pop(trial_id, None)
        if len(self.foldable) >= FOLD_EVERY:
            self._fold()

    def _file_environment(self, env_id: str, text: str) -> None:
        """sweep.json's `environments` gains the worker's record the first time its env_id is seen: a read and a
        write of sweep.json per distinct environment, not per trial. A provenance note must not stop a sweep."""
        if not env_id or env_id in self.environments:
            return
        self.environments.add(env_id)
        self._submit("sweep.json", Job([(record_environment, (env_id, text))]))  # the key serialises these

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
        if lease.lost(store.uri, strict=True):  # a fold deletes the trials' files: only while the lease is ours
            return
        # a restored Recorder (a resumed sweep) may see trials again that the killed driver had folded
        self._submit("fold", lambda: store.fold([t for t, _ in batch], copies, refolds=self.restored))


def record_environment(store: Store, env_id: str, text: str) -> None:
    """sweep.json's `environments` gains a worker's record (a read-modify-write; a job of the Recorder's queue).
    A storage fault goes up (the write waits in the queue); a missing or unreadable sweep.json is a warning."""
    try:
        record = store.read_json("sweep.json")
        if env_id not in record.setdefault("environments", {}):
            record["environments"][env_id] = json.loads(text)
            store.write_json("sweep.json", record)
    except (OSError, ValueError) as exc:
        print(f"warning: could not record environment {env_id} in sweep.json: {exc}", file=sys.stderr)


RAY_STORAGE_LOGGERS = ("ray.train._internal.syncer", "ray.train._internal.storage",
                       "ray.tune.execution.experiment_state", "ray.tune.tune", "ray.tune.analysis.experiment_analysis")


class OneLine(logging.Filter):
    """Ray's own storage errors (a failed upload of Tune's experiment state, which Ray retries at its next
    snapshot) as one line each, without the traceback Ray attaches, and each kind at most once a minute: during
    an outage the console keeps to our lines."""

    def __init__(self):
        super().__init__()
        self._shown: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not (record.exc_info or record.stack_info or "Traceback" in text):
            return True
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        head = lines[0] if lines else ""
        if record.exc_info and record.exc_info[1] is not None:
            last = traceback.format_exception_only(record.exc_info[0], record.exc_info[1])[-1].strip()
        else:
            last = lines[-1] if len(lines) > 1 else ""
        line = " ".join(f"{head} {last}".split())
        line = line if len(line) <= 300 else line[:297] + "..."
        now = time.monotonic()
        if now - self._shown.get(head[:60], -math.inf) < 60:
            return False
        self._shown[head[:60]] = now
        record.msg, record.args, record.exc_info, record.exc_text, record.stack_info = line, (), None, None, None
        return True


def quiet_ray_storage_logs() -> None:
    for name in RAY_STORAGE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLine) for f in logger.filters):
            logger.addFilter(OneLine())


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
    Whether Ray finished a trial is its status: the `done` flag Tune sets on the trial's last
    result can be missing from the snapshot Ray restored it from (CI saw it).
    """
    lease.check(store.uri, strict=True)  # it compacts (deletes epoch files) and writes rows
    trials = store.read_table("trials")
    status = dict(zip(trials["trial_id"], trials["status"])) if len(trials) else {}
    for result, trial in zip(results, ray_trials(results)):
        metrics = result.metrics or {}
        trial_id = trial.trial_id if trial is not None else metrics.get("trial_id")
        if trial_id is None or (trial_id not in status and not metrics):  # never reported: nothing to fix
            continue
        if status.get(trial_id) not in (None, "running", "stopped"):
            continue
        finished = trial.status in (trial.TERMINATED, trial.ERROR) if trial is not None else metrics.get("done")
        if result.error is None and not finished:
            continue  # unfinished (an interrupted fit): `stopped` is right
        error = str(result.error).strip().splitlines()[-1] if result.error is not None else ""
        last = latest_epoch(store, trial_id, metrics) or {}
        spec = plan.for_trial(result.config)
        store.compact_trial(trial_id)
        store.write_rows("trials", trial_id, [trial_row(trial_id, spec, meta, outcome(spec, last, error), last, error,
                                                        cell=plan.cell_of(spec), plan_index=result.config["trial"])])


def ray_trials(results) -> list:
    """Ray's Trial behind each Result of a ResultGrid, in its order (ResultGrid builds its results from
    them; no public way in Ray 2.60), or None for each where they are not there (a plain list)."""
    trials = getattr(getattr(results, "_experiment_analysis", None), "trials", None)
    return list(trials) if trials is not None and len(trials) == len(results) else [None] * len(results)
