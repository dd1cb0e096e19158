"""A compact text summary of one sweep, from its Parquet alone: `python -m analysis.status <storage>/<name>`.

It reads only sweep.json, the lease, trials.parquet and epochs.parquet (through sweeps.results.store.Store), so it works
while the sweep runs, after its driver died, and from another machine against an s3:// URI:

    sweep mixed (study depth_grid): 10 trials planned
    data: cifar10 (subset): trials use 500 train / 1017 test of 5085 train / 1017 test images, 10 classes
    results: /tmp/status_demo/mixed
    driver: running on host node7, pid 4242 since 2025-01-04 12:03:10, last heartbeat 1.2 s ago
    trials: 3 completed, 1 running, 2 pending, 1 early_stopped, 1 diverged, 1 error, 1 stopped
    running: depth=5 init=normal lr=0.01  epoch 2/5  val_acc 0.410
    best so far (val_acc, max): depth=5 init=he_normal lr=0.001  val_acc 0.610
    ETA: ~2m 10s (estimate: 13 epochs left x 10.0 s median epoch / 1 running)

A sweep run with --confirm K (issue 23) has one more line after `trials:`, the same counts split by phase:

    phases: search: 16 completed, 8 early_stopped; confirm: 3 of 6 started (1 completed, 2 running)

Plain ASCII, no colour, every line under 120 characters: it reads the same in a terminal and in a log.
summary_lines() reads; sweeps.results.progress builds the lines, the same ones the live console view of a running
sweep prints (sweeps.engine.console).
"""
from __future__ import annotations

import sys

import pandas as pd

from analysis.results import CONFIRM, SEARCH, open_store, phase_of
from sweeps.results import lease
from sweeps.results.naming import title_keys
from sweeps.results.progress import STATUSES, fit, header_lines
from sweeps.results.progress import summary_lines as progress_lines


class NoSweep(Exception):
    """The path holds no sweep: the command prints one `error:` line and exits 2."""


def summary_lines(path: str) -> list[str]:
    """The summary of the sweep at `<storage>/<name>` (local folder or URI), one string per line:
    the Parquet and sweep.json read here, the lines built by sweeps.results.progress (as the live console view's)."""
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
    last = epochs.groupby("trial_id").tail(1).set_index("trial_id") if len(epochs) else pd.DataFrame()

    search = record.get("search") or {}
    study = record.get("study") or (str(trials["study"].iloc[0]) if "study" in trials.columns and len(trials) else "?")
    planned = _planned(record)
    plan = [p for p in record.get("plan") or [] if isinstance(p, dict)]
    plan_epochs = [p.get("config", {}).get("epochs") for p in plan]
    # titled as the live console view titled them: by the plan's labels and the sampled keys too
    labels = list(dict.fromkeys(k for p in plan for k in p.get("labels") or {})) if isinstance(record.get("plan"), list) else None
    keys = title_keys(trials, labels, always=search.get("sampled") or {})
    lines = progress_lines(trials, last, planned=planned, keys=keys, search=search,
                           epoch_seconds=epochs["seconds"] if "seconds" in epochs.columns else (),
                           plan_epochs=plan_epochs)
    confirm = record.get("confirmation") if isinstance(record.get("confirmation"), dict) else {}
    k = confirm.get("k") or search.get("confirm")
    if k or ("phase" in trials.columns and (phase_of(trials) == CONFIRM).any()):
        cells = confirm.get("cells")
        line = fit("phases: " + phase_split(trials, int(k) * len(cells) if k and isinstance(cells, list) else None))
        lines.insert(1, line)  # right after the `trials:` counts it splits
    return header_lines(store.name, study, planned, search, record.get("data"), store.uri) + _lease_lines(store) + lines


def phase_split(trials: pd.DataFrame, confirm_planned: int | None) -> str:
    """'search: 16 completed, 8 early_stopped; confirm: 3 of 6 started (1 completed, 2 running)'. A missing or
    null phase is the search (sweeps made before --confirm); `confirm_planned`: K seeds x cells, None before
    the search has picked its winners."""
    phase = phase_of(trials) if len(trials) else pd.Series(dtype=object)

    def counts(part: pd.DataFrame) -> str:
        seen = part["status"].value_counts()
        order = [s for s in STATUSES if s in seen] + sorted(s for s in seen.index if s not in STATUSES)
        return ", ".join(f"{seen[s]} {s}" for s in order)

    search = trials[phase == SEARCH] if len(trials) else trials
    confirm = trials[phase == CONFIRM] if len(trials) else trials
    text = f"search: {counts(search) or 'none yet'}; confirm: "
    if not len(confirm):
        return text + ("not started" + (f" ({confirm_planned} planned)" if confirm_planned else ""))
    of = f" of {confirm_planned}" if confirm_planned else ""
    return text + f"{len(confirm)}{of} started ({counts(confirm)})"


def _lease_lines(store) -> list[str]:
    """Who runs the sweep, from its lease (sweeps/results/lease.py): nothing where no driver holds one."""
    try:
        holder = lease.read(store)
    except OSError:
        return []
    if holder is None:
        return []
    if holder.stale:
        return [f"driver: none heartbeating; the lease of host {holder.host}, pid {holder.pid} is stale "
                f"(last heartbeat {holder.age:.0f} s ago): --resume takes it over"]
    return [f"driver: running on host {holder.host}, pid {holder.pid} since {holder.started.replace('T', ' ')}, "
            f"last heartbeat {holder.age:.1f} s ago"]


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
