"""Where results go: Parquet dataset folders under <storage>/<sweep>/, on any pyarrow filesystem.

Each table is a folder that `pandas.read_parquet` opens as one frame:

    trials.parquet/<trial_id>.parquet            one row per trial
    epochs.parquet/<trial_id>-e<epoch>.parquet   one row per trial per epoch
    layers.parquet/<trial_id>-e<epoch>.parquet   one row per trial per epoch per layer
    classes.parquet/<trial_id>-e<epoch>.parquet  one row per trial per epoch per split per class (study 004)
    confusion.parquet/<trial_id>-e<epoch>.parquet  non-zero confusion-matrix cells, last epoch (study 004)
    lineage.parquet/<trial_id>-e<epoch>.parquet    one row per PBT exploit (--scheduler pbt)

One file per (trial, epoch) makes every write small and atomic (written under a
hidden temporary name, then renamed), and makes a re-reported epoch, after a
retry from a checkpoint or a resumed sweep, replace its earlier copy instead of
duplicating it. Nothing lives only in the driver's memory, so a killed driver
loses at most the epoch being written.

Store also reads the tables back (read_table, finalize_statuses): the recorder and
runner use it directly, and analysis.results wraps it, so imports only point down.
"""
from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.config import ConfigError

TABLES = ("trials", "epochs", "layers", "classes", "confusion", "lineage")
EPOCH_COLUMNS = ("trial_id", "sweep", "epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc", "avg_weight", "lr", "seconds", "it_per_s")
LAYER_COLUMNS = ("trial_id", "epoch", "layer", "layer_name", "grad_abs_mean", "weight_mean", "weight_std",
                 "update_ratio", "dead_fraction")  # the last two: trainables/loop.py, once per epoch
# study 003 (task=probe, trainables/probe.py): variances at init; NaN in rows of training trials
PROBE_LAYER_COLUMNS = ("pre_act_var", "post_act_var", "grad_input_var", "grad_weight_var")
LAYER_COLUMNS += PROBE_LAYER_COLUMNS
CLASS_COLUMNS = ("trial_id", "epoch", "split", "class_index", "class_name", "support", "train_count",
                 "precision", "recall", "bcr", "ova_acc", "aggregated")
CONFUSION_COLUMNS = ("trial_id", "epoch", "split", "true", "pred", "count")
# PBT (sweeps/search.py): one row per exploit, plus the new values of the perturbed keys
LINEAGE_COLUMNS = ("trial_id", "epoch", "source_trial_id", "source_epoch")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


def check_sweep_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or ".." in name or not _NAME_OK.match(name):
        raise ConfigError(f"--name {name!r}: a sweep name must be non-empty, start with a letter or digit, "
                          "and use only letters, digits and _ . = + - (no path separators or '..')")


def is_uri(path: str) -> bool:
    return "://" in str(path)


class Store:
    """One sweep's folder on a local path or a URI (s3://, gs://, file://, ...)."""

    def __init__(self, storage: str, name: str):
        check_sweep_name(name)
        self.storage = str(storage)
        if is_uri(self.storage):
            try:
                self.fs, base = pafs.FileSystem.from_uri(self.storage)
            except Exception as exc:
                raise ConfigError(f"--storage {self.storage}: not a storage URI pyarrow can open ({exc})") from None
            self.uri = self.storage.rstrip("/") + "/" + name
        else:
            self.fs, base = pafs.LocalFileSystem(), str(Path(self.storage).expanduser().resolve())
            self.uri = base + "/" + name
        self.root = base.rstrip("/") + "/" + name
        self.name = name

    @classmethod
    def at(cls, path: str) -> "Store":
        """The Store for `<storage>/<name>` given as one path or URI."""
        path = str(path).rstrip("/")
        parent, _, name = path.rpartition("/")
        return cls(parent or ".", name)

    # --- checks before a sweep starts ---
    def exists(self) -> bool:
        return self.fs.get_file_info(self.root).type != pafs.FileType.NotFound

    def check_writable(self) -> None:
        """Create nothing that stays: probe the nearest existing parent."""
        if is_uri(self.storage) and not isinstance(self.fs, pafs.LocalFileSystem):
            return  # remote permissions show up on the first write; the driver fails fast there
        parent = Path(self.root)
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"--storage {self.storage}: cannot write under {parent}")

    # --- writing ---
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def write_bytes(self, relpath: str, data: bytes) -> None:
        final = self.path(relpath)
        folder, name = final.rsplit("/", 1)
        self.fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex[:8]}-{name}"  # hidden: readers skip it
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, final)

    def write_rows(self, table: str, key: str, rows: list[dict], columns=None) -> None:
        frame = pd.DataFrame(rows, columns=list(columns) if columns else None)
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(_typed(frame), preserve_index=False), buf)
        self.write_bytes(f"{table}.parquet/{key}.parquet", buf.getvalue())

    def write_json(self, relpath: str, obj) -> None:
        self.write_bytes(relpath, json.dumps(obj, indent=2, default=str).encode())

    # --- reading ---
    def read_table(self, table: str, prefix: str = "") -> pd.DataFrame:
        """All rows of one table, or of its files whose name starts with `prefix`.

        Files are read one by one, in name order, so differing columns still line up;
        hidden files (`.`, `_`: temporaries mid-write) and empty files are skipped.
        """
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(f"{table}.parquet"), allow_not_found=True))
        frames = []
        for info in sorted(infos, key=lambda i: i.path):
            name = info.base_name
            if (info.type != pafs.FileType.File or name.startswith((".", "_")) or not name.endswith(".parquet")
                    or not name.startswith(prefix)):
                continue
            with self.fs.open_input_file(info.path) as f:
                frames.append(pq.read_table(io.BytesIO(f.read())).to_pandas())
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def read_json(self, relpath: str):
        with self.fs.open_input_stream(self.path(relpath)) as f:
            return json.loads(f.read())

    def finalize_statuses(self) -> pd.DataFrame:
        """Mark trials that were still running when the sweep ended as `stopped`; return the trials table."""
        trials = self.read_table("trials")
        if not len(trials):
            return trials
        for _, row in trials[trials["status"] == "running"].iterrows():
            self.write_rows("trials", row["trial_id"], [dict(row, status="stopped")])
        trials.loc[trials["status"] == "running", "status"] = "stopped"
        return trials

    def local_path(self) -> str | None:
        return None if is_uri(self.storage) else self.root


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Give all-missing columns a real type, so every file of a table shares one schema."""
    for col in frame.columns:
        if frame[col].isna().all() and frame[col].dtype == object:
            frame[col] = frame[col].astype("float64")
    return frame
