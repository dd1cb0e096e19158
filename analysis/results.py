"""Loading a sweep's Parquet tables, from a local folder or a URI."""
from __future__ import annotations

import io

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweeps.storage import TABLES, Store


def open_store(path: str) -> Store:
    """A Store for `<storage>/<name>` given as one path or URI."""
    path = str(path).rstrip("/")
    parent, _, name = path.rpartition("/")
    return Store(parent or ".", name)


def read_table(store: Store, table: str) -> pd.DataFrame:
    """All rows of one table. Files are read one by one so differing columns still line up."""
    folder = store.path(f"{table}.parquet")
    infos = store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    frames = []
    for info in sorted(infos, key=lambda i: i.path):
        name = info.base_name
        if info.type != pafs.FileType.File or name.startswith((".", "_")) or not name.endswith(".parquet"):
            continue
        with store.fs.open_input_file(info.path) as f:
            frames.append(pq.read_table(io.BytesIO(f.read())).to_pandas())
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load(path: str) -> dict[str, pd.DataFrame]:
    """{'trials', 'epochs', 'layers', ...}: every table of the sweep at `path`."""
    store = open_store(path)
    if not store.exists():
        raise FileNotFoundError(f"no sweep results at {path}")
    tables = {t: read_table(store, t) for t in TABLES}
    if len(tables["epochs"]):
        tables["epochs"] = tables["epochs"].sort_values(["trial_id", "epoch"], ignore_index=True)
    if len(tables["layers"]):
        tables["layers"] = tables["layers"].sort_values(["trial_id", "epoch", "layer"], ignore_index=True)
    return tables


def finalize_statuses(store: Store) -> pd.DataFrame:
    """Mark trials that were still running when the sweep ended as `stopped`; return the trials table."""
    trials = read_table(store, "trials")
    if not len(trials):
        return trials
    for _, row in trials[trials["status"] == "running"].iterrows():
        store.write_rows("trials", row["trial_id"], [dict(row, status="stopped")])
    trials.loc[trials["status"] == "running", "status"] = "stopped"
    return trials
