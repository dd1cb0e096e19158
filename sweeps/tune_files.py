"""Tune's own per-trial files, result.json and params.json, written straight to storage once per trial.

Tune's ResultGrid (what `Tuner.fit()` and `Tuner.restore(...).get_results()` return) reads each trial's
metrics from `<storage>/<sweep>/tune/<trial folder>/result.json`, and warns "Could not fetch metrics"
for every trial that lacks it. Tune's own JsonLoggerCallback writes that file into the driver's
staging folder, and Tune uploads the whole staging folder at every experiment-state snapshot: three
small files per trial, every few seconds, so each snapshot grows with the sweep (36 to 52 s per
snapshot at 1,000 trials on S3, docs/benchmarks.md). Instead, the Recorder keeps each running trial's
scalar results as JSON lines and writes both files once, when the trial ends (or the sweep stops),
with the trial's other writes: one PUT each on S3, off Tune's thread. The staging folder then holds
only Tune's experiment state, whatever the number of trials.

The per-layer and per-class lists stay out of result.json: Parquet holds them. A re-reported epoch
(a retry from a checkpoint) replaces its line. A trial resumed by a later driver keeps the lines an
earlier driver wrote for the epochs before its restart; a trial whose driver was killed mid-trial
has lines from its restart on (its Parquet epochs have them all).
"""
from __future__ import annotations

import json

from ray.tune.utils.util import SafeFallbackEncoder

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
