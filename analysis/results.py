"""Loading a sweep's Parquet tables, from a local folder or a URI, and splitting them by phase.

Reading lives in sweeps.results.store.Store (the layer below); these are the analysis-side entry points.

A sweep run with `--confirm K` has two phases, named in every table's `phase` column: "search" (the trials
that tuned each cell) and "confirm" (each cell's winner re-run on K fresh seeds). Sweeps made before that
have no such column; a missing column or a null reads as "search" (phase_of).
"""
from __future__ import annotations

import pandas as pd

from sweeps.results.store import TABLES, Store


def open_store(path: str) -> Store:
    """A Store for `<storage>/<name>` given as one path or URI."""
    return Store.at(path)


def load(path: str) -> dict[str, pd.DataFrame]:
    """{'trials', 'epochs', 'layers', ...}: every table of the sweep at `path`."""
    store = Store.at(path)
    if not store.exists():
        raise FileNotFoundError(f"no sweep results at {path}")
    tables = {t: store.read_table(t) for t in TABLES}
    if len(tables["epochs"]):
        tables["epochs"] = tables["epochs"].sort_values(["trial_id", "epoch"], ignore_index=True)
    if len(tables["layers"]):
        tables["layers"] = tables["layers"].sort_values(["trial_id", "epoch", "layer"], ignore_index=True)
    return tables


SEARCH, CONFIRM = "search", "confirm"


def phase_of(frame: pd.DataFrame) -> pd.Series:
    """Each row's phase: its `phase` value, "search" where the column is missing or null (older sweeps)."""
    if "phase" not in frame.columns:
        return pd.Series(SEARCH, index=frame.index, dtype=object)
    return frame["phase"].astype(object).where(frame["phase"].notna(), SEARCH)


def by_phase(tables: dict[str, pd.DataFrame], phase: str) -> dict[str, pd.DataFrame]:
    """`tables` cut to the trials of one phase. The trials table decides (its `phase` column); every other
    table keeps the rows of those trials by trial_id, so a per-epoch row whose own phase column is missing
    or stale cannot put a trial in two phases."""
    trials = tables["trials"]
    kept = trials[phase_of(trials) == phase].reset_index(drop=True) if len(trials) else trials
    ids = set(kept["trial_id"]) if len(kept) else set()
    out = {}
    for name, frame in tables.items():
        if name == "trials":
            out[name] = kept
        elif frame is not None and "trial_id" in frame.columns:
            out[name] = frame[frame["trial_id"].isin(ids)].reset_index(drop=True)
        else:  # an empty table (no columns), or one not kept per trial
            out[name] = frame
    return out
