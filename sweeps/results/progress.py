"""The compact text summary of a sweep, built from frames already in memory.

Two callers print the same lines: the live console view of a running sweep (sweeps.engine.console, fed by
Tune's callbacks, never by storage) and `python -m analysis.status` (fed by the Parquet). The header
is printed once; the summary again and again:

    sweep mixed (study depth_grid): 10 trials planned                       header_lines()
    data: cifar10 (subset): trials use 500 train / 1017 test of 5085 train / 1017 test images, 10 classes
    results: /tmp/status_demo/mixed
    trials: 3 completed, 1 running, 2 pending, 1 early_stopped, 1 diverged, 1 error, 1 stopped   summary_lines()
    running: depth=5 init=normal lr=0.01  epoch 2/5  val_acc 0.410
    best so far (val_acc, max): depth=5 init=he_normal lr=0.001  val_acc 0.610
    ETA: ~2m 10s (estimate: 13 epochs left x 10.0 s median epoch / 1 running)

Plain ASCII, no colour, no cursor movement, every line under 120 characters (fit()): the output reads the
same in a terminal, in a log file and in `ray job logs`. Trials are titled by the labels and config keys
that tell them apart (sweeps.results.naming: the same keys the --dry-run listing and the trackers use).
"""
from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from sweeps.results import naming
from sweeps.results.naming import config_columns, fmt, title_keys, varying_keys  # noqa: F401 (re-exported)
from trainables.defaults import DEFAULTS

STATUSES = ("completed", "running", "pending", "early_stopped", "diverged", "error", "stopped")
WIDTH = 119  # every line stays under 120 characters
MAX_RUNNING = 20  # running trials listed one per line; the rest are counted


def title(row, keys: Iterable[str]) -> str:
    """`depth=5 init=normal lr=0.01` for a trials row (a pandas Series or a dict); its trial_id if no key."""
    return naming.title(row, keys) or str(row["trial_id"])


# --- the lines --------------------------------------------------------------------------------------

def header_lines(name: str, study: str, planned: int | None, search: Mapping | None, data, uri: str,
                 note: str = "") -> list[str]:
    """What the sweep is: its name and study, trials planned (and a non-default searcher or scheduler),
    the data (one description, or {name: description}), where the results go. `note`, e.g. "resumed",
    ends the first line."""
    search = search or {}
    first = (f"sweep {name} (study {study}): {planned if planned is not None else '?'} trials planned"
             + (f", {search['searcher']} search" if search.get("searcher") not in (None, "grid") else "")
             + (f", scheduler {search['scheduler']}" if search.get("scheduler") not in (None, "fifo") else "")
             + (f", {note}" if note else ""))
    if isinstance(data, Mapping):
        data = "; ".join(str(v) for v in data.values())
    return [fit(line) for line in (first, f"data: {data if data else '?'}", f"results: {uri}")]


def summary_lines(trials: pd.DataFrame, last: pd.DataFrame, *, planned: int | None, keys: list[str],
                  search: Mapping | None = None, epoch_seconds: Iterable[float] = (),
                  plan_epochs: Iterable[float] = ()) -> list[str]:
    """The counts, the running trials, the best so far and an ETA, one string per line.

    trials         one row per trial seen (as trials.parquet has it): trial_id, status, epochs, task,
                   the `keys`, the final metrics (NaN while running)
    last           each trial's newest epoch (epoch, val_acc, test_acc, the search metric), indexed by
                   trial_id; trials without one are missing
    planned        trials the sweep plans (None: unknown); the ones not seen yet are `pending`
    keys           what titles a trial (title_keys())
    search         sweep.json's "search": the best is by its metric and mode (else val_acc/test_acc, max)
    epoch_seconds  the seconds of the epochs run so far: their median prices the ETA
    plan_epochs    each planned trial's `epochs`: what a pending trial runs when no trial has started yet
    """
    search = search or {}
    status = trials["status"] if len(trials) else pd.Series(dtype=object)
    counts = {s: int((status == s).sum()) for s in STATUSES}
    counts["pending"] = max(planned - len(trials), 0) if planned is not None else 0
    lines = ["trials: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)]

    running = trials[status == "running"] if len(trials) else trials
    left = 0  # epochs still to run for the running trials
    for i, (_, row) in enumerate(running.iterrows()):
        done = int(last.loc[row["trial_id"], "epoch"]) if row["trial_id"] in last.index else 0
        total = _planned_epochs(row)
        left += max(total - done, 0) if total else 0
        if i < MAX_RUNNING:
            score = _score(last.loc[row["trial_id"]]) if row["trial_id"] in last.index else ""
            lines.append(f"running: {title(row, keys)}  epoch {done}/{total or '?'}" + (f"  {score}" if score else ""))
    if len(running) > MAX_RUNNING:
        lines.append(f"running: ... and {len(running) - MAX_RUNNING} more")

    lines.append(_best_line(trials, last, keys, search))
    lines.append(_eta_line(_seconds(epoch_seconds), counts, left, _pending_epochs(trials, plan_epochs)))
    return [fit(line) for line in lines]


def _seconds(values) -> pd.Series:
    if not isinstance(values, pd.Series):
        try:  # the live view's array of floats: no Python object per epoch
            values = pd.Series(np.asarray(values, dtype=float))
        except (TypeError, ValueError):
            values = pd.Series(list(values), dtype=object)
    return pd.to_numeric(values, errors="coerce").dropna()


def _planned_epochs(row) -> int | None:
    if "task" in row.index and isinstance(row["task"], str) and row["task"] != "train":
        return 1  # a probe trial reports one epoch (study 003)
    value = row.get("epochs")
    return int(value) if value is not None and not pd.isna(value) else None


def _pending_epochs(trials: pd.DataFrame, plan_epochs: Iterable[float]) -> float:
    """Epochs a trial not started yet will run: the median of the started trials' `epochs`, else the plan's."""
    if len(trials) and "epochs" in trials.columns and trials["epochs"].notna().any():
        return float(trials["epochs"].median())
    planned = [float(e) for e in plan_epochs if isinstance(e, (int, float)) and not isinstance(e, bool)]
    if planned:
        return statistics.median(planned)
    return float(DEFAULTS["epochs"])


def _metric_value(row, metric: str):
    value = row.get(metric) if hasattr(row, "get") else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _score(epoch_row) -> str:
    for metric in ("val_acc", "test_acc"):
        value = _metric_value(epoch_row, metric)
        if value is not None:
            return f"{metric} {value:.3f}"
    return ""


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    if not len(frame) or column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _best_line(trials: pd.DataFrame, last: pd.DataFrame, keys: list[str], search: Mapping) -> str:
    """The best trial by the search's metric and mode, from each trial's newest epoch (its trials row if none).
    Vectorised: the live view calls it every few seconds on sweeps of thousands of trials."""
    metric, mode = search.get("metric"), search.get("mode") or "max"
    if not metric:
        has_val = any(len(t) and "val_acc" in t.columns and t["val_acc"].notna().any() for t in (trials, last))
        metric, mode = ("val_acc" if has_val else "test_acc"), "max"
    best = None
    if len(trials):
        ids = trials["trial_id"].to_numpy()
        newest = _numbers(last, metric)
        newest = newest[~newest.index.duplicated(keep="last")].reindex(ids).to_numpy() if len(newest) \
            else np.full(len(ids), np.nan)
        values = pd.Series(np.where(np.isnan(newest), _numbers(trials, metric).to_numpy(), newest))
        if values.notna().any():
            pos = int(values.idxmax() if mode == "max" else values.idxmin())  # the first of equals, as a loop
            best = (float(values[pos]), trials.iloc[pos])
    if best is None:
        return f"best so far ({metric}, {mode}): none yet"
    value, row = best
    note = "" if row["status"] == "completed" else f" ({row['status']})"
    return f"best so far ({metric}, {mode}): {title(row, keys)}  {metric} {value:.3f}{note}"


def _eta_line(seconds: pd.Series, counts: dict, left: int, pending_epochs: float) -> str:
    if not counts["running"] and not counts["pending"]:
        return "ETA: done (nothing running or pending)"
    remaining = left + counts["pending"] * pending_epochs
    if not len(seconds):
        return f"ETA: unknown (no epoch timings yet; {remaining:.0f} epochs left)"
    per_epoch = float(seconds.median())
    width = max(counts["running"], 1)
    return (f"ETA: ~{duration(per_epoch * remaining / width)} (estimate: {remaining:.0f} epochs left"
            f" x {per_epoch:.1f} s median epoch / {width} running)")


def duration(seconds: float) -> str:
    """2h 05m, 3m 07s or 42s."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def fit(line: str) -> str:
    """At most WIDTH printable ASCII characters, cut in the middle so both ends (a URI's name, a score) stay
    readable."""
    line = "".join(c if c.isprintable() and c.isascii() else (" " if not c.isprintable() else "?") for c in line)
    if len(line) <= WIDTH:
        return line
    head = (WIDTH - 3) // 2
    return line[:head] + "..." + line[len(line) - (WIDTH - 3 - head):]


def emit(lines: list[str]) -> None:
    """Lines on stderr, flushed, each cut to WIDTH: the live console (sweeps/engine/console.py), and the storage
    outage lines of sweeps/results/retry.py and outbox.py."""
    lines = [part for line in lines for part in line.split("\n")]
    if lines:
        print("\n".join(fit(line) for line in lines), file=sys.stderr, flush=True)
