"""Where results go: Parquet dataset folders under <storage>/<sweep>/, on any pyarrow filesystem.

Each table is a folder that `pandas.read_parquet` opens as one frame:

    trials.parquet/<trial_id>.parquet              one row per trial, rewritten when its status changes
    <table>.parquet/<trial_id>/e<epoch>.parquet    a running trial: one file per reported epoch
    <table>.parquet/<trial_id>.parquet             a finished trial: all its epochs in one file
    <table>.parquet/part-<time>-<id>.parquet       many finished trials, folded when the sweep ends

for the per-epoch tables: epochs (one row per epoch), layers (per epoch per layer), classes (per epoch
per split per class, study 004), confusion (non-zero confusion cells, study 004) and lineage (one row
per PBT exploit).

Why this layout. Every write is one small file, written under a hidden temporary name and then
renamed (on S3 and GCS a PUT is atomic by itself), so it is atomic, costs the same at trial 10 as at trial 10,000 and lists nothing. A
re-reported epoch (a retry from a checkpoint, a resumed sweep) rewrites its own file, so it
replaces its earlier copy. Nothing lives only in the driver's memory, so a killed driver loses at
most the epoch being written. When a trial ends, `compact_trial` folds its epoch files into one file
per table (epochs last, so `<trial_id>.parquet` in epochs.parquet means the trial is compacted).
When the sweep ends, `close_sweep` folds every trial that can never run again (completed, diverged,
early-stopped) into one part file per table; an errored or stopped trial keeps its own files, since
a --resume runs it again. `read_table` opens whatever is there at once with pyarrow's multi-threaded
dataset reader: a finished 1,000-trial x 100-epoch x 12-layer sweep is three part files
(benchmarks/results_scale.py, docs/benchmarks.md), and a running or killed sweep reads its per-trial
files the same way, only slower.

Crash states stay correct. A trial may sit in two forms only if the driver died mid-compaction or
mid-fold, or a compacted trial runs again (an errored trial on --resume; `expand_trial` turns it back
into epoch files first). Readers then take the newer form: an epoch file over the compacted copy of
that epoch, a trial's own file over its copy in a part (each part lists its trials in its metadata).
`repair`, run when a sweep resumes, removes the older form.

Storage faults. Every operation on the storage (writes, moves, deletes, folder creation, and the listings
and reads that compaction, folding and repair need) runs in sweeps/results/retry.py's loop: a transient error
(a connection refused or reset, a timeout, a 5xx, throttling) is retried with backoff until the storage has
been unreachable for --storage-timeout; a refusal (access denied, no such bucket, a full disk) raises
StorageRefused at once; a missing file and the like go up as they are. A retried write rewrites its whole
file; a retried delete whose earlier attempt did delete counts as done. On S3, files whose names are known
(a compacted trial's epoch files, a fold's trials) go in one DeleteObjects (sweeps/results/bulk_delete.py).

Store also reads the tables back (read_table, finalize_statuses): the recorder and
runner use it directly, and analysis.results wraps it, so imports only point down.
"""
from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweeps.results import bulk_delete, retry
from sweeps.results.retry import StorageError
from trainables.errors import ConfigError

TABLES = ("trials", "epochs", "layers", "classes", "confusion", "lineage")
PER_EPOCH = ("lineage", "confusion", "classes", "layers", "epochs")  # compaction order: epochs last
PART, PART_TRIALS = "part-", b"sweeps.trials"  # a folded file, and the metadata key listing its trials
FINAL = ("completed", "diverged", "early_stopped")  # statuses a --resume never runs again
ENDED = (*FINAL, "error")  # a trials row's statuses once its trial ran out (an error only reruns if Ray restores it)
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
# PBT (sweeps/engine/search.py): one row per exploit, plus the new values of the perturbed keys
LINEAGE_COLUMNS = ("trial_id", "epoch", "source_trial_id", "source_epoch")
# Every row a sweep writes says its phase: "search", or "confirm" for the re-runs of each cell's winner on fresh
# seeds (--confirm, sweeps/engine/confirm.py). A table without the column is from an older sweep: all search.
PHASE, PHASES = "phase", ("search", "confirm")
FINAL_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "avg_weight")  # trials'
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


def check_sweep_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or ".." in name or not _NAME_OK.match(name):
        raise ConfigError(f"--name {name!r}: a sweep name must be non-empty, start with a letter or digit, "
                          "and use only letters, digits and _ . = + - (no path separators or '..')")


def is_uri(path: str) -> bool:
    return "://" in str(path)


def one_request_per_small_write(fs):
    """An S3 filesystem as given, but with `allow_delayed_open`: pyarrow then writes a file smaller than a
    multipart part as one PutObject, where it otherwise makes three requests (start a multipart upload, send
    the part, complete it). Every file a sweep writes while it runs is small, so that is a third of the
    requests and round trips per write (a two-epoch trial's writes on moto_server: 42 requests before, 22 after).
    Errors such as a missing bucket then come at the write's close, which is inside the same retry loop."""
    if type(fs).__name__ != "S3FileSystem":
        return fs
    rebuild, args = fs.__reduce__()
    return rebuild(*args[:-1], {**args[-1], "allow_delayed_open": True})


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
            self.fs = one_request_per_small_write(self.fs)
            self.uri = self.storage.rstrip("/") + "/" + name
        else:
            self.fs, base = pafs.LocalFileSystem(), str(Path(self.storage).expanduser().resolve())
            self.uri = base + "/" + name
        self.root = base.rstrip("/") + "/" + name
        self.name = name
        self._folders: set[str] = set()  # folders this Store made; compact_trial and _delete forget theirs
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.object_store = type(self.fs).__name__ in ("S3FileSystem", "GcsFileSystem")
        self.health = retry.health_of(self.storage)  # this storage's outage clock, shared in the process
        self._bulk_delete = bulk_delete.deleter(self.fs)  # S3: known files in one request, with no listing

    @classmethod
    def at(cls, path: str) -> "Store":
        """The Store for `<storage>/<name>` given as one path or URI."""
        path = str(path).rstrip("/")
        parent, _, name = path.rpartition("/")
        return cls(parent or ".", name)

    # --- checks before a sweep starts ---
    def exists(self) -> bool:
        return self._io(self.fs.get_file_info, self.root, what="a look at the sweep").type != pafs.FileType.NotFound

    def check_writable(self) -> None:
        """Create nothing that stays: probe the nearest existing parent; on an object store, that the bucket is
        there and answers (a missing bucket or denied access is one ConfigError here, before the sweep starts)."""
        if is_uri(self.storage) and not isinstance(self.fs, pafs.LocalFileSystem):
            if not self.object_store:
                return  # other remote filesystems: permissions show up on the first write
            bucket = self.root.split("/", 1)[0]
            try:
                found = self._io(self.fs.get_file_info, bucket, what=f"access to bucket {bucket!r}").type
            except StorageError as exc:
                raise ConfigError(f"--storage {self.storage}: {exc}") from None
            if found == pafs.FileType.NotFound:
                raise ConfigError(f"--storage {self.storage}: bucket {bucket!r} does not exist (create it first, "
                                  "or check the name and the credentials)")
            return
        parent = Path(self.root)
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"--storage {self.storage}: cannot write under {parent}")

    # --- writing ---
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _io(self, fn, *args, what: str = "", gone_ok: bool = False):
        """fn(*args) in the retry loop (sweeps/results/retry.py): transient errors are waited out."""
        return retry.call(fn, *args, health=self.health, what=what, gone_ok=gone_ok)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        self._io(self._write_bytes, relpath, data, what=f"a write of {relpath}")

    def _write_bytes(self, relpath: str, data: bytes) -> None:
        final = self.path(relpath)
        folder, name = final.rsplit("/", 1)
        if self.object_store:  # no folders to make; a PUT is atomic already (a rename is a copy and a delete)
            with self.fs.open_output_stream(final) as out:
                out.write(data)
            return
        if folder not in self._folders:  # one create_dir per folder, not per file
            self.fs.create_dir(folder, recursive=True)
            self._folders.add(folder)
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex[:8]}-{name}"  # hidden: readers skip it
        if self.local:  # os, not pyarrow: a third of the cost per small file
            try:
                with open(tmp, "wb") as out:
                    out.write(data)
                os.replace(tmp, final)
            except OSError:
                if os.path.exists(tmp):  # a full disk: leave no half-written file behind
                    os.remove(tmp)
                raise
            return
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, final)

    def write_rows(self, table: str, key: str, rows: list[dict], columns=None) -> None:
        """`rows` as `<table>.parquet/<key>.parquet`, atomically (key: a trial id for trials)."""
        self.write_table(table, key, arrow_rows(rows, columns))

    def write_epoch(self, table: str, trial_id: str, epoch: int, data: pa.Table | list[dict]) -> None:
        """One epoch of a running trial: `<table>.parquet/<trial_id>/e<epoch>.parquet` (rows: as arrow_rows)."""
        data = data if isinstance(data, pa.Table) else arrow_rows(data)
        self.write_table(table, _epoch_key(trial_id, epoch), data)

    def write_table(self, table: str, key: str, data: pa.Table) -> None:
        buf = pa.BufferOutputStream()
        pq.write_table(data, buf)
        self.write_bytes(f"{table}.parquet/{key}.parquet", buf.getvalue().to_pybytes())

    def write_json(self, relpath: str, obj) -> None:
        self.write_bytes(relpath, json.dumps(obj, indent=2, default=str).encode())

    # --- reading ---
    def files(self, table: str, under: str = "", recursive: bool = True) -> list[str]:
        """Paths of a table's Parquet files (relative to its folder), in name order; hidden ones skipped."""
        folder = self.path(f"{table}.parquet")
        start = folder + ("/" + under if under else "")
        infos = self._io(self.fs.get_file_info, pafs.FileSelector(start, allow_not_found=True, recursive=recursive),
                         what=f"a listing of {table}.parquet")
        paths = []
        for info in infos:
            rel = info.path[len(folder) + 1:]
            if (info.type == pafs.FileType.File and rel.endswith(".parquet")
                    and not any(part.startswith((".", "_")) for part in rel.split("/"))):
                paths.append(rel)
        return sorted(paths)

    def read_table(self, table: str) -> pd.DataFrame:
        """All rows of one table: every file at once through pyarrow's multi-threaded dataset reader.

        Columns that differ between files are unified (a column missing from a file reads as null).
        Where a trial is in two forms after a crash, the newer form wins (see the module's docstring).
        """
        files = self.files(table)
        live: dict[str, set[int]] = {}
        for rel in files:
            if "/" in rel:
                trial_id, name = rel.rsplit("/", 1)
                live.setdefault(trial_id, set()).add(_epoch_of(name))
        parts = [f for f in files if f.startswith(PART)]
        loose = {f[:-8] for f in files if "/" not in f and f not in parts} | set(live)
        stale = {f"{t}.parquet" for t in live} & set(files)
        held = {p: set(self.part_trials(table, p)) for p in parts}
        newest = {trial_id: p for p in sorted(parts) for trial_id in held[p]}  # part names sort by fold time
        # a trial in a part and in its own files (a crash mid-fold), or in two parts (run again after a resume,
        # then folded again): its own files, else its newest part, win
        overlap = {p: dropped for p, ids in held.items()
                   if (dropped := (ids & loose) | {t for t in ids if newest[t] != p})}
        data = self._read_files([f for f in files if f not in stale and f not in overlap], table)
        for rel in sorted(stale):  # a crash left both forms: the epoch files win
            older = self._read_files([rel], table)
            keep = pc.invert(pc.is_in(older["epoch"], pa.array(sorted(live[rel[:-8]]), older["epoch"].type)))
            data = _concat([data, older.filter(keep)])
        for rel, ids in sorted(overlap.items()):
            folded = self._read_files([rel], table)
            data = _concat([data, folded.filter(pc.invert(pc.is_in(folded["trial_id"], pa.array(sorted(ids)))))])
        if data is None or not data.num_rows:
            return pd.DataFrame()
        frame = data.to_pandas()
        return frame.sort_values("trial_id", ignore_index=True) if table == "trials" else frame

    def part_trials(self, table: str, rel: str) -> list[str]:
        """The trials a part file holds (in its Parquet metadata: no rows are read)."""
        path = self.path(f"{table}.parquet/{rel}")
        schema = self._io(lambda: pq.read_schema(path, filesystem=self.fs), what=f"a read of {table}.parquet/{rel}")
        return json.loads((schema.metadata or {}).get(PART_TRIALS, b"[]"))

    def read_trial(self, table: str, trial_id: str) -> pd.DataFrame:
        """One trial's rows of a per-epoch table (its compacted file and its epoch files), by epoch.
        Lists only the trial's own folder, so the cost does not grow with the sweep."""
        data = self._trial_rows(table, trial_id)
        return data.to_pandas() if data is not None and data.num_rows else pd.DataFrame()

    def _read_files(self, rels: list[str], table: str) -> pa.Table | None:
        if not rels:
            return None
        return self._io(self._read_files_once, rels, table, what=f"a read of {table}.parquet")

    def _read_files_once(self, rels: list[str], table: str) -> pa.Table:
        folder = self.path(f"{table}.parquet")
        factory = ds.FileSystemDatasetFactory(self.fs, [f"{folder}/{r}" for r in rels], ds.ParquetFileFormat())
        try:
            schema = factory.inspect(promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column typed differently between files (a number here, text there)
            frames = [pq.read_table(f"{folder}/{r}", filesystem=self.fs).to_pandas() for r in rels]
            return pa.Table.from_pandas(pd.concat([f for f in frames if len(f)], ignore_index=True),
                                        preserve_index=False)
        return factory.finish(schema).to_table(use_threads=True)

    def _trial_rows(self, table: str, trial_id: str) -> pa.Table | None:
        compacted = self.path(f"{table}.parquet/{trial_id}.parquet")
        parts = self.files(table, under=trial_id, recursive=False)
        older = None
        if self._is_file(compacted):
            older = self._read_files([f"{trial_id}.parquet"], table)
            if parts:  # both forms (a crash, or a trial run again): an epoch file wins
                epochs = pa.array(sorted(_epoch_of(p) for p in parts), older["epoch"].type)
                older = older.filter(pc.invert(pc.is_in(older["epoch"], epochs)))
        data = _concat([older, self._read_files(parts, table)])
        if data is None or not data.num_rows:
            return data
        return data.take(pc.sort_indices(data, [("epoch", "ascending")]))  # stable: rows of an epoch keep order

    # --- a trial's files ---
    def compact_trial(self, trial_id: str, written: dict | None = None) -> dict:
        """Fold a trial's epoch files into one file per table; epochs last, so its compacted file marks done.

        `written` ({table: {epoch: Arrow table}}) is the Recorder's copy of what it wrote. When it starts at
        epoch 1, this driver saw the whole trial: its copy is the data, and nothing is listed or read (on S3
        that saves a LIST per table and a GET per file), and its epoch files are deleted by name: on S3 one
        DeleteObjects for every table, where deleting the folders lists each one. Otherwise (a trial resumed
        from a checkpoint, with earlier epochs from a killed driver) the trial's own folders are listed, read
        and deleted. The deletes come after every compacted file is written: a crash in between leaves the
        trial in both forms, which readers and `repair` handle. Returns {table: what it wrote}."""
        done, folders, known = {}, [], []
        whole = bool(written) and min(written.get("epochs", {0: None})) == 1
        compacted_before = not whole and self._is_file(self.path(f"epochs.parquet/{trial_id}.parquet"))
        for table in PER_EPOCH:
            folder = self.path(f"{table}.parquet/{trial_id}")
            mine = (written or {}).get(table, {})
            if whole:
                if not mine:
                    continue
                data = _concat([mine[epoch] for epoch in sorted(mine)])
            else:
                parts = self.files(table, under=trial_id, recursive=False)
                if not parts:
                    continue
                if not compacted_before and {_epoch_of(p) for p in parts} == set(mine):
                    data = _concat([mine[epoch] for epoch in sorted(mine)])
                else:
                    data = self._trial_rows(table, trial_id)
            if data is not None and data.num_rows:
                self.write_table(table, trial_id, data)
                done[table] = data
            if whole and self._bulk_delete:
                known += [self.path(f"{table}.parquet/{_epoch_key(trial_id, epoch)}.parquet") for epoch in mine]
            else:
                folders.append(folder)
        self._delete(known, folders)
        return done

    def expand_trial(self, trial_id: str) -> bool:
        """Turn a compacted trial back into epoch files before it runs again, so that the epochs it
        re-reports replace their copies. Returns whether there was anything to expand."""
        if not self._is_file(self.path(f"epochs.parquet/{trial_id}.parquet")):
            return False
        for table in PER_EPOCH:  # epochs last: a crash midway leaves the marker, and this runs again
            path = self.path(f"{table}.parquet/{trial_id}.parquet")
            if not self._is_file(path):
                continue
            data = self._trial_rows(table, trial_id)
            for epoch in sorted(set(data["epoch"].to_pylist())) if data is not None else []:
                self.write_epoch(table, trial_id, epoch, data.filter(pc.equal(data["epoch"], epoch)))
            self._io(self.fs.delete_file, path, what=f"a delete of {path}", gone_ok=True)
        return True

    def repair(self) -> list[str]:
        """Fix what a driver killed mid-compaction or mid-fold left: a trial in two forms is compacted, and a
        folded trial's own files are removed. Lists each table folder once: run when a sweep resumes, not
        per result. Returns the trials it touched."""
        both, touched = set(), set()
        for table in TABLES:
            infos = self._list(table)
            dirs = {i.base_name for i in infos if i.type == pafs.FileType.Directory}
            files = {i.base_name[:-8] for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")}
            for part in sorted(f for f in files if f.startswith(PART)):
                for trial_id in set(self.part_trials(table, f"{part}.parquet")) & (files | dirs):
                    self._delete([self.path(f"{table}.parquet/{trial_id}.parquet")] if trial_id in files else [],
                                 [self.path(f"{table}.parquet/{trial_id}")] if trial_id in dirs else [])
                    touched.add(trial_id)
            if table != "trials":
                both |= (dirs & files) - touched
        for trial_id in sorted(both):
            self.compact_trial(trial_id)
        return sorted(both | touched)

    # --- the end of a sweep ---
    def close_sweep(self) -> pd.DataFrame:
        """Mark trials still running as `stopped`, then fold the trials that can never run again into one part
        file per table; return the trials table."""
        trials = self.finalize_statuses()
        if len(trials):
            self.fold(trials.loc[trials["status"].isin(FINAL), "trial_id"])
        return self.read_table("trials") if len(trials) else trials

    def fold(self, trial_ids, copies: dict | None = None, refolds: bool = True) -> list[str]:
        """Merge these trials' compacted files into one `part-...parquet` per table, which lists them in its
        metadata, then delete their files. Only trials that never run again (FINAL: not `error` or `stopped`,
        which a --resume restarts) belong here; a finished 10,000-trial sweep then reads as a few files.

        `copies` ({table: {trial_id: Arrow table}}, the Recorder's copy of what it compacted) saves reading
        the files back; the folder is then not listed either, unless `refolds`: some of the trials may have
        been folded before (a resumed sweep), and their older parts must lose them. Returns the trials folded."""
        wanted, folded = set(trial_ids), set()
        tag = f"{PART}{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{uuid.uuid4().hex[:6]}"
        for table in TABLES:
            if copies is not None:
                mine = copies.get(table, {})
                ids = sorted(wanted & set(mine))
                try:
                    data = _concat([mine[t] for t in ids])
                except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column typed differently between trials
                    data = self._read_files([f"{t}.parquet" for t in ids], table)
            else:
                present = {f[:-8] for f in self.files(table, recursive=False) if not f.startswith(PART)}
                ids = sorted(wanted & present)
                data = self._read_files([f"{t}.parquet" for t in ids], table)
            if not ids or data is None:
                continue
            meta = {**(data.schema.metadata or {}), PART_TRIALS: json.dumps(ids).encode()}
            self.write_table(table, tag, data.replace_schema_metadata(meta))
            if refolds:
                self._drop_from_older_parts(table, f"{tag}.parquet", set(ids))
            self._delete([self.path(f"{table}.parquet/{t}.parquet") for t in ids], [])
            folded |= set(ids)
        return sorted(folded)

    def _drop_from_older_parts(self, table: str, newest: str, ids: set[str]) -> None:
        """A trial folded before, run again after a resume (Ray's snapshot had it unfinished) and folded
        again: its older part is rewritten without it, so that plain Parquet readers see it once too. (Until
        then, or after a crash here, read_table takes the newest part.)"""
        for rel in self.files(table, recursive=False):
            if not rel.startswith(PART) or rel == newest:
                continue
            held = self.part_trials(table, rel)
            if not ids & set(held):
                continue
            data = self._read_files([rel], table)
            keep = [t for t in held if t not in ids]
            if keep:
                meta = {**(data.schema.metadata or {}), PART_TRIALS: json.dumps(keep).encode()}
                rest = data.filter(pc.is_in(data["trial_id"], pa.array(keep))).replace_schema_metadata(meta)
                self.write_table(table, rel[:-8], rest)
            else:
                self._delete([self.path(f"{table}.parquet/{rel}")], [])

    def drop_trials(self, trial_ids) -> None:
        """Delete every row of these trials, unfolded or folded (trials Ray kept no state of, about to be
        started again under new trial ids: their rows would otherwise stay beside the new ones)."""
        files, folders, ids = [], [], set(trial_ids)
        if not ids:  # the common case on resume: nothing to drop, and reading every part's footer costs a listing
            return
        for table in TABLES:
            self._drop_from_older_parts(table, "", ids)
            infos = self._list(table)
            names = {i.base_name: i.type for i in infos}
            for trial_id in trial_ids:
                if names.get(f"{trial_id}.parquet") == pafs.FileType.File:
                    files.append(self.path(f"{table}.parquet/{trial_id}.parquet"))
                if names.get(trial_id) == pafs.FileType.Directory:
                    folders.append(self.path(f"{table}.parquet/{trial_id}"))
        self._delete(files, folders)

    def _delete(self, files: list[str], folders: list[str]) -> None:
        """Files and folders; one already gone is fine (a compaction or fold run again after a crash)."""
        if files and self._bulk_delete:
            self._io(self._bulk_delete, files, what=f"a delete of {len(files)} files under {self.root}")
            files = []
        jobs = [(self.fs.delete_file, path) for path in files] + [(self.fs.delete_dir, path) for path in folders]

        def delete(job) -> None:
            try:
                self._io(*job, what=f"a delete of {job[1]}", gone_ok=True)
            except FileNotFoundError:
                pass
        if self.object_store and len(jobs) > 1:
            with ThreadPoolExecutor(8) as pool:  # one request each (more for a folder); overlap them
                list(pool.map(delete, jobs))
        else:
            for job in jobs:
                delete(job)
        self._folders.difference_update(folders)

    def _is_file(self, path: str) -> bool:
        """Whether the file `path` exists. On an object store, one HEAD: pyarrow's get_file_info follows a
        missing key's HEAD with a LIST (is it a folder?), which moto_server answers by walking the whole
        bucket, and every trial asks this of a file it does not have yet (expand_trial)."""
        if not self.object_store:
            return self._io(self.fs.get_file_info, path, what=f"a look at {path}").type == pafs.FileType.File
        try:
            self._io(self.fs.open_input_file, path, what=f"a look at {path}").close()
        except FileNotFoundError:
            return False
        return True

    def _list(self, table: str) -> list:
        """The entries right under a table's folder."""
        return self._io(self.fs.get_file_info, pafs.FileSelector(self.path(f"{table}.parquet"), allow_not_found=True),
                        what=f"a listing of {table}.parquet")

    def read_json(self, relpath: str):
        return json.loads(self._io(self._read_all, relpath, what=f"a read of {relpath}"))

    def read_bytes(self, relpath: str) -> bytes | None:
        """The file's bytes, or None where there is no such file."""
        try:
            return self._io(self._read_all, relpath, what=f"a read of {relpath}")
        except FileNotFoundError:
            return None

    def _read_all(self, relpath: str) -> bytes:
        with self.fs.open_input_stream(self.path(relpath)) as f:
            return f.readall()

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


def arrow_rows(rows: list[dict], columns=None) -> pa.Table:
    """Rows as an Arrow table, in `columns` order when given (missing values are null). A column with
    no value at all is typed float64, so that every file of a table shares one schema."""
    columns = list(columns) if columns else list(dict.fromkeys(k for row in rows for k in row))
    # from_pandas: a NaN is a null, as pandas writes it, so a text column may hold NaN for "none"
    data = pa.table({c: pa.array([plain(row.get(c)) for row in rows], from_pandas=True) for c in columns})
    for i, field in enumerate(data.schema):
        if pa.types.is_null(field.type):
            data = data.set_column(i, field.name, pa.nulls(len(data), pa.float64()))
    return data


def plain(value):
    """A plain Python value for a numpy scalar (Parquet reads give numpy types, Ray's results plain ones)."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value


def _epoch_key(trial_id: str, epoch: int) -> str:
    return f"{trial_id}/e{int(epoch):04d}"


def _epoch_of(name: str) -> int:
    return int(name.split("/")[-1][1:-8])  # e0012.parquet -> 12


def _concat(tables: list) -> pa.Table | None:
    tables = [t for t in tables if t is not None]
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
