"""What the sweep leaves to Tune: each trial's result.json and params.json, and a slim last result.

Tune's ResultGrid (what `Tuner.fit()` and `Tuner.restore(...).get_results()` return) reads each trial's
metrics from `<storage>/<sweep>/tune/<trial folder>/result.json`, and warns "Could not fetch metrics"
for every trial that lacks it. Tune's own JsonLoggerCallback writes that file into the driver's
staging folder, and Tune uploads the whole staging folder at every experiment-state snapshot: three
small files per trial, every few seconds, so each snapshot grew with the sweep (36 to 52 s per
snapshot at 1,000 trials on S3, docs/benchmarks.md). Instead, the Recorder keeps each running trial's
scalar results as JSON lines and writes both files once, when the trial ends (or the sweep stops),
with the trial's other writes: one PUT each on S3, off Tune's thread. The staging folder then holds
only Tune's experiment state, whatever the number of trials.

The per-layer and per-class lists stay out of result.json: Parquet holds them. A re-reported epoch
(a retry from a checkpoint) replaces its line. A trial resumed by a later driver keeps the lines an
earlier driver wrote for the epochs before its restart; a trial whose driver was killed mid-trial
has lines from its restart on (its Parquet epochs have them all).

The experiment state itself holds every trial's last result, serialized whole at each snapshot. The
lists are most of a result (a VGG's 16 layers x 11 statistics), so `SlimTuneState`, the last
callback, takes them out of each result before Tune keeps it (Ray lets callbacks change a result in
place), once the Recorder has written them and the trackers have logged them. It also removes a
finished trial's folder in Tune's staging area when it is empty (all of them, with no logger of
Tune's writing there; an errored trial's keeps its error files): Tune copies the staging area to
storage at every snapshot, and on S3 each empty folder is a folder marker made again each time
(1,000 of them made one snapshot take minutes on the local S3 server). When the storage has stopped the
sweep (sweeps/engine/recorder.py), its on_experiment_end, the last one Tune calls, re-raises that error, so
that fit() ends there instead of reading every trial's result.json back from a storage that does not answer
(pyarrow spends seconds on each).
"""
from __future__ import annotations

import json
import os

from ray import tune
from ray.tune.utils.util import SafeFallbackEncoder

from sweeps.results import retry

RESULT_FILE, PARAMS_FILE = "result.json", "params.json"


def result_line(result: dict) -> str:
    """One result as Tune's JsonLoggerCallback writes it, less the lists. Called on Tune's thread."""
    return json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, cls=SafeFallbackEncoder)


def trial_folder(trial) -> str:
    """The trial's folder relative to the sweep: Tune's experiment folder, then its trial folder."""
    return f"{trial.storage.experiment_dir_name}/{trial.storage.trial_dir_name}"


def params_json(trial) -> bytes:
    return json.dumps(trial.config, indent=2, sort_keys=True, cls=SafeFallbackEncoder).encode()


def write_trial_files(store, folder: str, params: bytes, lines: dict[int, str]) -> None:
    """params.json, and result.json from `lines` (epoch -> JSON line) on top of an earlier driver's lines
    for the epochs before the first one here. Nothing to add leaves an earlier result.json as it is."""
    store.write_bytes(f"{folder}/{PARAMS_FILE}", params)
    if not lines:
        return
    first = min(lines)
    if first > 1:  # resumed: the epochs before `first` were reported to an earlier driver
        earlier = store.read_bytes(f"{folder}/{RESULT_FILE}") or b""
        kept = {}
        for line in earlier.decode("utf-8", errors="replace").splitlines():
            try:
                epoch = int(json.loads(line).get("epoch", first))
            except (ValueError, TypeError, AttributeError):
                continue  # a torn or foreign line: Tune would fail on it too
            if epoch < first:
                kept[epoch] = line
        lines = {**kept, **lines}
    store.write_bytes(f"{folder}/{RESULT_FILE}", "".join(lines[e] + "\n" for e in sorted(lines)).encode())


def drop_if_empty(trial) -> None:
    """Remove the trial's folder in Tune's staging area if nothing is in it."""
    try:
        os.rmdir(trial.local_path)
    except (OSError, TypeError, ValueError):  # not empty (error files), already gone, or never named
        pass


class SlimTuneState(tune.Callback):
    """The last callback: the result's lists leave it before Tune keeps it as the trial's last result,
    and a finished trial's empty staging folder goes."""

    def __init__(self):
        self._tidied = False

    def __getstate__(self):
        return {**self.__dict__, "_tidied": False}

    def on_step_begin(self, iteration, trials, **info):
        if not self._tidied:  # a restored sweep: Tune has just made a folder for every trial
            self._tidied = True
            for trial in trials:
                if trial.is_finished():
                    drop_if_empty(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        for key in [k for k, v in result.items() if isinstance(v, list)]:
            del result[key]

    def on_trial_complete(self, iteration, trials, trial, **info):
        drop_if_empty(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        drop_if_empty(trial)

    def on_experiment_end(self, trials, **info):
        stopped = retry.stopped()
        if stopped is not None:  # the storage stopped the sweep (the Recorder): end fit() here, before Tune
            raise stopped       # reads every trial's result.json back from a storage that does not answer

