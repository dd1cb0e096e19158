"""Loading a sweep's Parquet tables, from a local folder or a URI.

Reading lives in sweeps.results.store.Store (the layer below); these are the analysis-side entry points.
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
