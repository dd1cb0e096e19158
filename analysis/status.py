"""A compact text summary of one sweep, from its Parquet alone: `python -m analysis.status <storage>/<name>`.

It reads only sweep.json, trials.parquet and epochs.parquet (through sweeps.storage.Store), so it works
while the sweep runs, after its driver died, and from another machine against an s3:// URI:

    sweep mixed (study depth_grid): 10 trials planned
    data: cifar10 (subset): 500 train / 10000 test images, 10 classes
    results: /tmp/status_demo/mixed
    trials: 3 completed, 1 running, 2 pending, 1 early_stopped, 1 diverged, 1 error, 1 stopped
    running: depth=5 init=normal lr=0.01  epoch 2/5  val_acc 0.410
    best so far (val_acc, max): depth=5 init=he_normal lr=0.001  val_acc 0.610
    ETA: ~2m 10s (estimate: 13 epochs left x 10.0 s median epoch / 1 running)

Plain ASCII, no colour, every line under 120 characters: it reads the same in a terminal and in a log.
summary_lines() builds the lines, for a live view to reuse.
"""
from __future__ import annotations

import math
import statistics
import sys

import pandas as pd

from analysis.results import open_store
from analysis.tables import varying_keys

STATUSES = ("completed", "running", "pending", "early_stopped", "diverged", "error", "stopped")
WIDTH = 119  # every line stays under 120 characters
MAX_RUNNING = 20  # running trials listed one per line; the rest are counted


class NoSweep(Exception):
    """The path holds no sweep: the command prints one `error:` line and exits 2."""


def summary_lines(path: str) -> list[str]:
    """The summary of the sweep at `<storage>/<name>` (local folder or URI), one string per line."""
    try:
        store = open_store(path)
        found = store.exists()
    except Exception as exc:  # a bad name (ConfigError), a URI pyarrow cannot open, no credentials, ...
        raise NoSweep(f"cannot open {path}: {_first_line(exc)}") from None
    record = _sweep_json(store)
    trials = store.read_table("trials") if found else pd.DataFrame()
    if not found or (record is None and not _has_tables(store)):
        raise NoSweep(f"no sweep at {path} (no sweep.json, trials.parquet or epochs.parquet there)")
    record = record or {}
    epochs = store.read_table("epochs")
    if len(epochs):
        epochs = epochs.sort_values(["trial_id", "epoch"], ignore_index=True)
    status = trials["status"] if len(trials) else pd.Series(dtype=object)
    planned = _planned(record)
    counts = {s: int((status == s).sum()) for s in STATUSES}
    counts["pending"] = max(planned - len(trials), 0) if planned is not None else 0

    search = record.get("search") or {}
    study = record.get("study") or (str(trials["study"].iloc[0]) if "study" in trials.columns and len(trials) else "?")
    lines = [f"sweep {store.name} (study {study}): "
             f"{planned if planned is not None else '?'} trials planned"
             + (f", {search['searcher']} search" if search.get("searcher") not in (None, "grid") else "")
             + (f", scheduler {search['scheduler']}" if search.get("scheduler") not in (None, "fifo") else "")]
    data = record.get("data")
    if isinstance(data, dict):
        data = "; ".join(str(v) for v in data.values())
    lines.append(f"data: {data if data else '?'}")
    lines.append(f"results: {store.uri}")
    lines.append("trials: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES))

    last = epochs.groupby("trial_id").tail(1).set_index("trial_id") if len(epochs) else pd.DataFrame()
    keys = _title_keys(trials)
    running = trials[status == "running"] if len(trials) else trials
    left = 0  # epochs still to run for the running trials
    for i, (_, row) in enumerate(running.iterrows()):
        done = int(last.loc[row["trial_id"], "epoch"]) if row["trial_id"] in last.index else 0
        total = _planned_epochs(row)
        left += max(total - done, 0) if total else 0
        if i < MAX_RUNNING:
            score = _score(last.loc[row["trial_id"]]) if row["trial_id"] in last.index else ""
            lines.append(f"running: {_title(row, keys)}  epoch {done}/{total or '?'}" + (f"  {score}" if score else ""))
    if len(running) > MAX_RUNNING:
        lines.append(f"running: ... and {len(running) - MAX_RUNNING} more")

    lines.append(_best_line(trials, last, keys, search))
    lines.append(_eta_line(epochs, counts, left, _pending_epochs(record, trials)))
    return [_fit(line) for line in lines]


def _sweep_json(store) -> dict | None:
    try:
        record = store.read_json("sweep.json")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _has_tables(store) -> bool:
    import pyarrow.fs as pafs
    return any(store.fs.get_file_info(store.path(f"{t}.parquet")).type != pafs.FileType.NotFound
               for t in ("trials", "epochs"))


def _planned(record: dict) -> int | None:
    """Trials the sweep plans: optuna's budget, else the plan's length, else whatever count sweep.json has."""
    search = record.get("search") or {}
    if search.get("searcher") == "optuna":
        n = search.get("trials", record.get("trials"))
        return int(n) if n is not None else None
    if isinstance(record.get("plan"), list):
        return len(record["plan"])
    n = record.get("trials", search.get("trials"))
    return int(n) if isinstance(n, (int, float)) else None


def _planned_epochs(row) -> int | None:
    if "task" in row.index and isinstance(row["task"], str) and row["task"] != "train":
        return 1  # a probe trial reports one epoch (study 003)
    value = row.get("epochs")
    return int(value) if value is not None and not pd.isna(value) else None


def _pending_epochs(record: dict, trials: pd.DataFrame) -> float:
    """Epochs a trial not started yet will run: the median of the started trials' `epochs`, else the plan's."""
    if len(trials) and "epochs" in trials.columns and trials["epochs"].notna().any():
        return float(trials["epochs"].median())
    planned = [p.get("config", {}).get("epochs") for p in record.get("plan") or [] if isinstance(p, dict)]
    planned = [float(e) for e in planned if isinstance(e, (int, float))]
    if planned:
        return statistics.median(planned)
    from trainables.config import DEFAULTS
    return float(DEFAULTS["epochs"])


def _title_keys(trials: pd.DataFrame) -> list[str]:
    """The config keys that vary across the trials (as in the report's tables), plus seed and sample if they do."""
    if not len(trials):
        return []
    keys = varying_keys(trials)
    return keys + [k for k in ("sample", "seed") if k in trials.columns and trials[k].nunique(dropna=False) > 1]


def _title(row, keys: list[str]) -> str:
    parts = [f"{k}={_fmt(row[k])}" for k in keys if k in row.index]
    return " ".join(parts) if parts else str(row["trial_id"])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if not value.is_integer() or abs(value) >= 1e6 else str(int(value))
    return str(value)


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


def _best_line(trials: pd.DataFrame, last: pd.DataFrame, keys: list[str], search: dict) -> str:
    """The best trial by the search's metric and mode, from each trial's newest epoch (its trials row if none)."""
    metric, mode = search.get("metric"), search.get("mode") or "max"
    if not metric:
        has_val = any(len(t) and "val_acc" in t.columns and t["val_acc"].notna().any() for t in (trials, last))
        metric, mode = ("val_acc" if has_val else "test_acc"), "max"
    best = None
    for _, row in trials.iterrows():
        value = _metric_value(last.loc[row["trial_id"]], metric) if row["trial_id"] in last.index else None
        if value is None:
            value = _metric_value(row, metric)
        if value is not None and (best is None or (value > best[0] if mode == "max" else value < best[0])):
            best = (value, row)
    if best is None:
        return f"best so far ({metric}, {mode}): none yet"
    value, row = best
    note = "" if row["status"] == "completed" else f" ({row['status']})"
    return f"best so far ({metric}, {mode}): {_title(row, keys)}  {metric} {value:.3f}{note}"


def _eta_line(epochs: pd.DataFrame, counts: dict, left: int, pending_epochs: float) -> str:
    if not counts["running"] and not counts["pending"]:
        return "ETA: done (nothing running or pending)"
    remaining = left + counts["pending"] * pending_epochs
    seconds = epochs["seconds"].dropna() if len(epochs) and "seconds" in epochs.columns else pd.Series(dtype=float)
    if not len(seconds):
        return f"ETA: unknown (no epoch timings yet; {remaining:.0f} epochs left)"
    per_epoch = float(seconds.median())
    width = max(counts["running"], 1)
    return (f"ETA: ~{_duration(per_epoch * remaining / width)} (estimate: {remaining:.0f} epochs left"
            f" x {per_epoch:.1f} s median epoch / {width} running)")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def _fit(line: str) -> str:
    """At most WIDTH characters, cut in the middle so both ends (a URI's name, a score) stay readable."""
    line = "".join(c if c.isprintable() else " " for c in line)
    if len(line) <= WIDTH:
        return line
    head = (WIDTH - 3) // 2
    return line[:head] + "..." + line[len(line) - (WIDTH - 3 - head):]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m analysis.status <storage>/<name>   (a local folder or a URI such as s3://...)",
              file=sys.stderr)
        return 0 if argv in (["-h"], ["--help"]) else 2
    try:
        lines = summary_lines(argv[0])
    except NoSweep as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
