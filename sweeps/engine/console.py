"""The live console view of a running sweep: what `python sweeps/<study>.py ...` prints while Tune runs.

    sweep demo (study console_test): 3 trials planned                       the header, once
    data: synthetic (synthetic): trials use 384 train / 256 test of 50000 train / 10000 test images, ...
    results: /tmp/mywork/res/demo
    start  case=diverges                                                     a trial starts: what names it
    start  case=ok
    -- progress at 15:51:00, 12s in --                                       every --progress-every seconds
    trials: 0 completed, 2 running, 1 pending, 0 early_stopped, 0 diverged, 0 error, 0 stopped
    running: case=diverges  epoch 0/2
    running: case=ok  epoch 0/2
    best so far (test_acc, max): none yet
    ETA: unknown (no epoch timings yet; 6 epochs left)
    end    [1/3] case=diverges: diverged, test_acc 0.094 after 1 epoch (4.8 s)   a trial ends: [k/N], the Recorder's status
    start  case=broken
    end    [2/3] case=ok: completed, test_acc 0.797 after 2 epochs (4.7 s)
    -- progress at 15:51:04, 16s in --
    trials: 1 completed, 1 running, 0 pending, 0 early_stopped, 1 diverged, 0 error, 0 stopped
    running: case=broken  epoch 1/2  test_acc 0.422
    best so far (test_acc, max): case=ok  test_acc 0.797
    ETA: ~0s (estimate: 1 epochs left x 0.2 s median epoch / 1 running)
    end    [3/3] case=broken: error after 1 epoch (0.6 s) - RuntimeError: fail_at_epoch=1: injected failure
    -- final at 15:51:05, 16s in --                                          and once at the end
    trials: 1 completed, 0 running, 0 pending, 0 early_stopped, 1 diverged, 1 error, 0 stopped
    best so far (test_acc, max): case=ok  test_acc 0.797
    ETA: done (nothing running or pending)

(tests/engine/test_console.py's three-trial sweep, --progress-every 1; Ray's own log lines left out.)
Everything goes to stderr, flushed, as plain ASCII lines under 120 characters with no colour and no cursor
movement, so a terminal, a redirected log and `ray job logs` (not a TTY) read the same. The summary lines
are sweeps.results.progress's, the same as `python -m analysis.status` prints from the Parquet; here they are
built from what Tune's callbacks deliver, never from storage (a sweep can hold thousands of trials on S3).

ConsoleView must come after the Recorder in the callbacks: the Recorder decides a trial's status and keeps
the trials row it wrote in `recorder.rows`, which the end line and the counts read.
"""
from __future__ import annotations

import math
import sys
import time
from array import array

import pandas as pd
from ray import tune

from sweeps.engine.flags import DEFAULT_PROGRESS_EVERY
from sweeps.engine.recorder import error_line, outcome, trial_row
from sweeps.results import progress
from sweeps.results.store import ENDED
from sweeps.results.progress import emit  # noqa: F401 (the runner prints through it)

INDENT = " " * len("start  ")  # a trial's title starts here, on start and end lines


def header_lines(name: str, study: str, settings: dict, data: dict, uri: str, resumed: bool = False) -> list[str]:
    """The header the runner prints once, before Tune starts; `data`: name -> description (describe_data)."""
    return progress.header_lines(name, study, settings.get("trials"), settings, data, uri,
                                 note="resumed" if resumed else "")


class ConsoleView(tune.Callback):
    """Prints a line when a trial starts and when it ends, and the sweep's summary every `progress_every`
    seconds and once at the end. It reads the Recorder's plan: its title keys name the trials (the same as
    the --dry-run listing's), its search settings say by which metric and mode the best is."""

    def __init__(self, recorder, progress_every: float = DEFAULT_PROGRESS_EVERY, since: float | None = None,
                 final: bool = True):
        """`since`: time.monotonic() when the phase began, where it spans several Tune runs (the runner's
        --trials-per-run); `final`: whether this run's end is the phase's (else its summary is a progress one)."""
        plan = recorder.plan
        self.recorder, self.meta, self.keys = recorder, recorder.meta, list(plan.title_keys)
        self.progress_every = float(progress_every)
        self.since, self.final = since, final
        self.search = dict(plan.search)
        self.planned = self.meta.get("trials", len(plan))
        self.metric = self.search.get("metric")
        self.columns = list(dict.fromkeys(["trial_id", "status", "epochs", "task", "val_acc", "test_acc",
                                           *([self.metric] if self.metric else []), *self.keys]))
        self.plan_epochs = [spec.config.get("epochs") for spec in plan]
        self._fresh()

    def _fresh(self) -> None:
        """The state of one driver's run: nothing of it is pickled (Ray saves callbacks with the experiment)."""
        self._started = self._next = None  # time.monotonic() of the start and of the next summary
        self._seeded = False  # trials a resumed sweep finished earlier: read once from Tune's trial list
        self._earlier: dict[str, dict] = {}  # trial_id -> trials row (self.columns) of such a trial
        self._shown: set[str] = set()  # trials whose start line is out
        self._ended: set[str] = set()  # trials with a final status: the k of [k/N]
        self._last: dict[str, dict] = {}  # trial_id -> its newest epoch: epoch, val_acc, test_acc, the metric
        self._seconds = array("d")  # every epoch's seconds, for the ETA
        self._failed = False  # a bug here prints one warning, then the view goes quiet; the sweep goes on

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in [k for k in state if k.startswith("_")]:
            del state[key]
        return {**state, "since": None}  # another process's clock

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fresh()

    # --- Tune's events ---

    def setup(self, **info):
        self._guard(self._clock)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._guard(self._start, trials, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._guard(self._result, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._guard(self._end, trials, trial, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._guard(self._end, trials, trial, True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._guard(self._retry, trial)

    def on_step_end(self, iteration, trials, **info):
        self._guard(self._tick, trials)

    def on_experiment_end(self, trials, **info):
        self._guard(self._summary, trials, "final" if self.final else "progress")

    # --- the lines ---

    def start_line(self, trial) -> str:
        return f"start  {progress.title(self._row(trial), self.keys)}"

    def end_line(self, trial, errored: bool = False) -> str:
        row = self._row(trial, errored)
        status = row.get("status") or ("error" if errored else "?")
        head = f"end    [{len(self._ended)}/{self.planned}] {progress.title(row, self.keys)}: {status}"
        for metric in ("val_acc", "test_acc") if status != "error" else ():  # an error's message says more
            value = _number(row.get(metric))
            if value is not None:
                head += f", {metric} {value:.3f}"
                break
        epochs = int(_number(row.get("epochs_completed")) or 0)
        head += f" after {epochs} epoch{'' if epochs == 1 else 's'}"
        seconds = _number(row.get("train_seconds"))
        head += f" ({seconds:.1f} s)" if seconds is not None else ""
        error = row.get("error") or (error_line(trial) if errored or status == "error" else "")
        return _with_message(head, error)

    def summary_lines(self, trials=None, when: str = "progress") -> list[str]:
        """A marker line with the clock and the time since the start, then sweeps.results.progress's summary."""
        self._seed(trials)
        rows = {**self._earlier, **{tid: {c: row.get(c) for c in self.columns}
                                    for tid, row in self.recorder.rows.items()}}
        frame = pd.DataFrame.from_records(list(rows.values()), columns=self.columns)
        last = pd.DataFrame.from_dict(self._last, orient="index")
        elapsed = time.monotonic() - self._started if self._started is not None else 0.0
        return ([f"-- {when} at {time.strftime('%H:%M:%S')}, {progress.duration(elapsed)} in --"]
                + progress.summary_lines(frame, last, planned=self.planned, keys=self.keys, search=self.search,
                                         epoch_seconds=self._seconds, plan_epochs=self.plan_epochs))

    # --- what each event does ---

    def _clock(self) -> None:
        if self._started is None:
            self._started = getattr(self, "since", None) or time.monotonic()
            self._next = self._started + self.progress_every

    def _start(self, trials, trial) -> None:
        self._clock()
        self._seed(trials)
        tid = trial.trial_id
        self._earlier.pop(tid, None)
        self._ended.discard(tid)  # an errored trial that runs again
        if tid not in self._shown:  # a PBT trial pauses and starts again: one line
            self._shown.add(tid)
            emit([self.start_line(trial)])

    def _result(self, trial, result: dict) -> None:
        newest = {k: result.get(k) for k in ("epoch", "val_acc", "test_acc", self.metric) if k}
        self._last[trial.trial_id] = newest
        seconds = _number(result.get("seconds"))
        if seconds is not None:
            self._seconds.append(seconds)

    def _end(self, trials, trial, errored: bool) -> None:
        self._seed(trials)
        self._ended.add(trial.trial_id)
        emit([self.end_line(trial, errored)])

    def _retry(self, trial) -> None:
        error = error_line(trial)
        emit([_with_message(f"retry  {progress.title(self._row(trial), self.keys)}: failed, "
                            f"restarting from its last checkpoint (failure {getattr(trial, 'num_failures', '?')})",
                            error)])

    def _tick(self, trials) -> None:
        self._clock()
        now = time.monotonic()
        if now >= self._next:
            self._summary(trials, "progress")
            self._next = time.monotonic() + self.progress_every

    def _summary(self, trials, when: str) -> None:
        self._clock()
        emit(self.summary_lines(trials, when))

    # --- helpers ---

    def _row(self, trial, errored: bool = False) -> dict:
        """The trials row the Recorder last wrote for this trial; else (the Recorder failed) one built the
        Recorder's way from Tune's last result."""
        row = self.recorder.rows.get(trial.trial_id)
        if row is not None:
            return row
        if trial.trial_id in self._earlier:
            return self._earlier[trial.trial_id]
        last = dict(trial.last_result or {})
        spec = self.recorder.spec(trial)
        status = ("error" if errored else outcome(spec, last)) if last or errored else "running"
        return trial_row(trial.trial_id, spec, self.meta, status, last, error_line(trial) if errored else "")

    def _seed(self, trials) -> None:
        """Once, at the first event: the trials Tune restored as finished (a resumed sweep), so that the counts
        and [k/N] go on where the first run stopped. Their status is decided as the Recorder decides it."""
        if self._seeded or trials is None:
            return
        self._seeded = True
        for trial in trials:
            if trial.trial_id in self.recorder.rows or trial.status not in ("TERMINATED", "ERROR"):
                continue
            last = dict(trial.last_result or {})
            spec = self.recorder.spec(trial)
            status = "error" if trial.status == "ERROR" else outcome(spec, last)
            row = trial_row(trial.trial_id, spec, self.meta, status, last)
            self._earlier[trial.trial_id] = {c: row.get(c) for c in self.columns}
            self._ended.add(trial.trial_id)
            if last.get("epoch"):
                self._result(trial, {k: v for k, v in last.items() if k != "seconds"})
        self._seed_ended_after_snapshot({trial.trial_id for trial in trials})

    def _seed_ended_after_snapshot(self, known: set[str]) -> None:
        """Trials of this phase that ended after Ray's last snapshot of a killed run: Ray restored none of them
        and the feeder does not hand them out again (sweeps/engine/feeder.py), so only their rows tell."""
        try:
            rows = self.recorder.store.read_table("trials")
        except Exception:  # the counts are a view; the summary reads the store itself
            return
        if not len(rows) or "plan_index" not in rows.columns:
            return
        phase = rows["phase"].fillna("search") if "phase" in rows.columns else "search"
        ended = rows[(phase == self.recorder.phase) & rows["status"].isin(ENDED) & ~rows["trial_id"].isin(known)]
        for row in ended.to_dict("records"):
            self._earlier[row["trial_id"]] = {c: row.get(c) for c in self.columns}
            self._ended.add(row["trial_id"])

    def _guard(self, fn, *args) -> None:
        if self._failed:
            return
        try:
            fn(*args)
        except Exception as exc:  # the view is a courtesy: never stop a sweep over a line of text
            self._failed = True
            print(f"warning: the console view stopped ({type(exc).__name__}: {exc}); the sweep goes on, "
                  "see python -m analysis.status", file=sys.stderr, flush=True)


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _with_message(head: str, message: str) -> str:
    """`head - message` on one line when it fits; else the message on a second line, indented under the
    title, and cut at its end if it is still too long."""
    message = " ".join(str(message).split())
    if not message:
        return head
    if len(head) + 3 + len(message) <= progress.WIDTH:
        return f"{head} - {message}"
    room = progress.WIDTH - len(INDENT) - 2
    return f"{head}\n{INDENT}- " + (message if len(message) <= room else message[:room - 3] + "...")
