"""The live side of --log: a Tune callback on the driver that feeds every writer once per epoch. The only
module of the trackers package that imports Ray."""
from __future__ import annotations

import sys

from ray import tune

from sweeps.engine.recorder import outcome
from sweeps.engine.trackers import writer_class
from sweeps.engine.trackers.base import EPOCH_SCALARS, epoch_scalars, final_metrics, run_info, sweep_info


def callbacks(names: list[str], recorder, sampled=()) -> list:
    """[] without --log; else one callback that goes after `recorder` in RunConfig.callbacks."""
    return [TrackerCallback(names, recorder, sampled)] if names else []


class TrackerCallback(tune.Callback):
    """Feeds every --log writer from the trial results, on the driver, once per epoch. It reuses the
    Recorder (same spec per trial, same store) and reads the trial row the Recorder has just written, so
    the status and final metrics are the ones in trials.parquet."""

    def __init__(self, names: list[str], recorder, sampled=()):
        self.names, self.recorder = list(names), recorder
        record = dict(recorder.meta, plan=recorder.plan.record(), search=dict(sampled={k: "" for k in sampled}))
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
            self._writers = [writer_class(n)(self.sweep) for n in self.names]
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
                self._call(writer, "open", run_info(self.sweep, trial.trial_id, spec.config, spec.labels))

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
