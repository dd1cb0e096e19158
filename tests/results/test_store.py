"""The results store's layout (sweeps/results/store.py): epoch files while a trial runs, one file per trial
once it ends, and the guarantees that must survive that: atomic files, re-reported epochs replacing
their copies, no duplicates after a crash mid-compaction, one frame from `pd.read_parquet`, and no
step of the recorder listing or reading a whole table on a result."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from sweeps.engine.recorder import Recorder, latest_epoch
from sweeps.results.retry import StorageError
from sweeps.results.store import LAYER_COLUMNS, Store, arrow_rows


def epoch_rows(trial_id: str, epoch: int, acc: float) -> dict:
    return dict(trial_id=trial_id, sweep="s", epoch=epoch, val_acc=acc, seconds=1.0)


def frame(store: Store, table: str) -> pd.DataFrame:
    return store.read_table(table).sort_values(["trial_id", "epoch"], ignore_index=True)


def test_a_finished_trial_is_one_file_per_table_and_both_readers_agree(tmp_path):
    store = Store(str(tmp_path), "s")
    for trial_id in ("a", "b"):
        for epoch in (1, 2, 3):
            store.write_epoch("epochs", trial_id, epoch, [epoch_rows(trial_id, epoch, epoch / 10)])
            store.write_epoch("layers", trial_id, epoch, arrow_rows([dict(trial_id=trial_id, epoch=epoch, layer=i)
                                                                     for i in range(4)], LAYER_COLUMNS))
    store.compact_trial("a")
    assert store.files("epochs") == ["a.parquet", "b/e0001.parquet", "b/e0002.parquet", "b/e0003.parquet"]
    assert store.files("layers")[0] == "a.parquet"
    ours = frame(store, "epochs")
    theirs = pd.read_parquet(tmp_path / "s" / "epochs.parquet").sort_values(["trial_id", "epoch"], ignore_index=True)
    assert len(ours) == 6 and list(ours["val_acc"]) == [0.1, 0.2, 0.3] * 2
    pd.testing.assert_frame_equal(ours, theirs[ours.columns], check_dtype=False)
    assert len(store.read_table("layers")) == len(pd.read_parquet(tmp_path / "s" / "layers.parquet")) == 24
    assert list(store.read_trial("layers", "a")["epoch"]) == [1] * 4 + [2] * 4 + [3] * 4


def test_a_re_reported_epoch_replaces_its_copy_also_after_compaction(tmp_path):
    store = Store(str(tmp_path), "s")
    for epoch in (1, 2, 3):
        store.write_epoch("epochs", "a", epoch, [epoch_rows("a", epoch, 0.1)])
    store.write_epoch("epochs", "a", 2, [epoch_rows("a", 2, 0.9)])  # a retry from the epoch-1 checkpoint
    assert list(frame(store, "epochs")["val_acc"]) == [0.1, 0.9, 0.1]
    store.compact_trial("a")
    assert store.expand_trial("a")  # an errored trial runs again on --resume
    assert store.files("epochs") == ["a/e0001.parquet", "a/e0002.parquet", "a/e0003.parquet"]
    store.write_epoch("epochs", "a", 3, [epoch_rows("a", 3, 0.7)])
    store.compact_trial("a")
    assert list(frame(store, "epochs")["val_acc"]) == [0.1, 0.9, 0.7]
    assert list(pd.read_parquet(tmp_path / "s" / "epochs.parquet")["val_acc"]) == [0.1, 0.9, 0.7]
    assert not store.expand_trial("never-compacted")


def test_a_crash_mid_compaction_never_duplicates_and_repair_folds_it(tmp_path):
    store = Store(str(tmp_path), "s")
    for epoch in (1, 2):
        store.write_epoch("epochs", "a", epoch, [epoch_rows("a", epoch, 0.1 * epoch)])
    store.write_table("epochs", "a", store._trial_rows("epochs", "a"))  # the driver died before deleting
    store.write_epoch("epochs", "a", 2, [epoch_rows("a", 2, 0.5)])  # ... and epoch 2 was re-reported after
    assert sorted(store.files("epochs")) == ["a.parquet", "a/e0001.parquet", "a/e0002.parquet"]
    assert list(frame(store, "epochs")["val_acc"]) == [0.1, 0.5]  # the epoch file wins, nothing twice
    assert list(store.read_trial("epochs", "a")["val_acc"]) == [0.1, 0.5]
    assert store.repair() == ["a"]
    assert store.files("epochs") == ["a.parquet"]
    assert list(pd.read_parquet(tmp_path / "s" / "epochs.parquet")["val_acc"]) == [0.1, 0.5]
    assert store.repair() == []


def test_columns_that_differ_between_files_are_unified(tmp_path):
    store = Store(str(tmp_path), "s")
    store.write_epoch("epochs", "a", 1, [epoch_rows("a", 1, 0.1)])
    store.write_epoch("epochs", "b", 1, [dict(epoch_rows("b", 1, 0.2), lr=0.5)])  # a searcher's key in force
    store.write_rows("trials", "a", [dict(trial_id="a", status="completed", error="", init_batch=None)])
    store.write_rows("trials", "b", [dict(trial_id="b", status="error", error="boom", init_batch="x")])
    epochs = frame(store, "epochs")
    assert math.isnan(epochs["lr"][0]) and epochs["lr"][1] == 0.5
    trials = store.read_table("trials").set_index("trial_id")  # a number-or-null column holding text elsewhere
    assert trials.loc["b", "init_batch"] == "x" and pd.isna(trials.loc["a", "init_batch"])


def test_hidden_temporaries_are_never_read(tmp_path):
    store = Store(str(tmp_path), "s")
    store.write_epoch("epochs", "a", 1, [epoch_rows("a", 1, 0.1)])
    (tmp_path / "s" / "epochs.parquet" / "a" / ".tmp-1234-e0002.parquet").write_bytes(b"half a file")
    assert len(store.read_table("epochs")) == 1
    assert len(pd.read_parquet(tmp_path / "s" / "epochs.parquet")) == 1


def fake_trial(trial_id: str, last=None):
    return SimpleNamespace(trial_id=trial_id, config={"trial": 0}, last_result=last or {}, num_failures=0,
                           get_error=lambda: None,
                           storage=SimpleNamespace(experiment_dir_name="tune", trial_dir_name=f"run_{trial_id}"))


def test_the_recorder_lists_only_the_trial_it_writes(tmp_path, monkeypatch):
    """Per result and per trial end nothing is listed or read back (the Recorder keeps a copy of a trial's
    rows until it is compacted); finished trials are folded into part files from those copies as the sweep
    goes. (A resumed trial lists its own folder only: test_compaction_from_the_recorders_copy...)"""
    monkeypatch.setattr("sweeps.engine.recorder.FOLD_EVERY", 2)
    spec = dict(config=dict(epochs=3, task="train", lr=0.1), labels={}, facts={}, title="t", overrides={})
    meta = dict(sweep="s", study="x", code_version="v", trials=2)
    recorder = Recorder(str(tmp_path), "s", meta, [spec])
    listed, whole = [], []
    files = Store.files
    monkeypatch.setattr(Store, "files", lambda self, table, under="", recursive=True:
                        listed.append((table, under)) or files(self, table, under, recursive))
    monkeypatch.setattr(Store, "read_table", lambda self, table: whole.append(table))
    read_back = []  # compaction uses the Recorder's copy of what it wrote: nothing is read back
    monkeypatch.setattr(Store, "_read_files", lambda self, rels, table: read_back.append(rels))
    for trial_id in ("t1", "t2"):
        trial = fake_trial(trial_id)
        recorder.on_trial_start(0, [], trial)
        for epoch in (1, 2, 3):
            result = dict(epoch_rows(trial_id, epoch, 0.1 * epoch), epoch=epoch, done=epoch == 3,
                          layers=[dict(layer=i, layer_name=f"l{i}", weight_std=1.0) for i in range(3)])
            trial.last_result = result
            recorder.on_trial_result(0, [], trial, result)
        recorder.on_trial_complete(0, [], trial)
    recorder.on_experiment_end([])
    assert whole == [] and read_back == [] and listed == []  # trials this driver saw whole: no listing at all
    monkeypatch.undo()
    store = Store(str(tmp_path), "s")
    assert [f[:5] for f in store.files("epochs")] == ["part-"]
    assert sorted(store.part_trials("trials", store.files("trials")[0])) == ["t1", "t2"]
    trials = store.read_table("trials").set_index("trial_id")
    assert list(trials["status"]) == ["completed", "completed"] and list(trials["epochs_completed"]) == [3, 3]
    assert len(store.read_table("layers")) == 18 and len(recorder.latencies) == 6
    # Tune's result.json (what its ResultGrid reads): written once, at the trial's end, scalars only
    lines = (tmp_path / "s" / "tune" / "run_t1" / "result.json").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3] and "layers" not in lines[0]


def test_a_failed_write_stops_the_sweep_on_tunes_thread_with_one_line(tmp_path, monkeypatch):
    """A write that fails for good (here an error no retry helps) stops the queue; Tune's thread hears of it at
    its next step, as one StorageError naming the cause (the runner prints it, with the --resume command)."""
    spec = dict(config=dict(epochs=3, task="train"), labels={}, facts={}, title="t", overrides={})
    recorder = Recorder(str(tmp_path), "s", dict(sweep="s", study="x", code_version="v"), [spec])
    trial = fake_trial("t1")
    monkeypatch.setattr(Store, "write_table", lambda *a: (_ for _ in ()).throw(OSError("bucket gone")))
    recorder.on_trial_result(0, [], trial, dict(epoch_rows("t1", 1, 0.1)))
    with pytest.raises(StorageError, match="bucket gone"):
        recorder.flush()
    with pytest.raises(StorageError, match="bucket gone"):
        recorder.on_step_end(0, [trial])


def test_latest_epoch_reads_the_trial_not_the_table(tmp_path):
    store = Store(str(tmp_path), "s")
    for epoch in (1, 2, 3):
        store.write_epoch("epochs", "a", epoch, [epoch_rows("a", epoch, 0.1 * epoch)])
    store.write_epoch("epochs", "b", 9, [epoch_rows("b", 9, 0.9)])
    assert latest_epoch(store, "a", {"epoch": 2})["epoch"] == 3
    assert latest_epoch(store, "a", {"epoch": 5}) == {"epoch": 5}
    store.compact_trial("a")
    assert latest_epoch(store, "a", {})["val_acc"] == pytest.approx(0.3)


def test_the_sweep_end_folds_final_trials_and_leaves_those_a_resume_reruns(tmp_path):
    store = Store(str(tmp_path), "s")
    statuses = dict(a="completed", b="early_stopped", c="error", d="running")
    for trial_id, status in statuses.items():
        for epoch in (1, 2):
            store.write_epoch("epochs", trial_id, epoch, [epoch_rows(trial_id, epoch, 0.1 * epoch)])
        if status != "running":
            store.compact_trial(trial_id)
        store.write_rows("trials", trial_id, [dict(trial_id=trial_id, status=status, error="")])
    before = frame(store, "epochs")
    trials = store.close_sweep()
    assert dict(zip(trials["trial_id"], trials["status"])) == dict(statuses, d="stopped")
    parts = [f for f in store.files("epochs") if f.startswith("part-")]
    assert len(parts) == 1 and sorted(store.part_trials("epochs", parts[0])) == ["a", "b"]
    assert sorted(set(store.files("epochs")) - set(parts)) == ["c.parquet", "d/e0001.parquet", "d/e0002.parquet"]
    assert len([f for f in store.files("trials") if f.startswith("part-")]) == 1
    pd.testing.assert_frame_equal(frame(store, "epochs"), before)
    assert len(pd.read_parquet(tmp_path / "s" / "epochs.parquet")) == 8
    assert len(pd.read_parquet(tmp_path / "s" / "trials.parquet")) == 4


def test_a_crash_mid_fold_never_duplicates_and_repair_removes_the_leftovers(tmp_path):
    store = Store(str(tmp_path), "s")
    for trial_id in ("a", "b"):
        store.write_epoch("epochs", trial_id, 1, [epoch_rows(trial_id, 1, 0.5)])
        store.compact_trial(trial_id)
        store.write_rows("trials", trial_id, [dict(trial_id=trial_id, status="completed")])
    kept = {p: (tmp_path / "s" / p).read_bytes() for p in ("epochs.parquet/a.parquet", "trials.parquet/a.parquet")}
    store.fold(["a", "b"])
    for path, data in kept.items():  # the driver died after writing the parts, before deleting a's files
        (tmp_path / "s" / path).write_bytes(data)
    assert list(frame(store, "epochs")["trial_id"]) == ["a", "b"]
    assert list(store.read_table("trials")["trial_id"]) == ["a", "b"]
    assert store.repair() == ["a"]
    assert all(f.startswith("part-") for t in ("epochs", "trials") for f in store.files(t))
    assert len(pd.read_parquet(tmp_path / "s" / "epochs.parquet")) == 2


def test_compaction_from_the_recorders_copy_still_keeps_an_earlier_drivers_epochs(tmp_path, monkeypatch):
    """A resumed trial: epoch 1 came from the killed driver, 2 and 3 from this one (which holds only those)."""
    store = Store(str(tmp_path), "s")
    store.write_epoch("epochs", "a", 1, [epoch_rows("a", 1, 0.1)])
    spec = dict(config=dict(epochs=3, task="train"), labels={}, facts={}, title="t", overrides={})
    recorder = Recorder(str(tmp_path), "s", dict(sweep="s", study="x", code_version="v"), [spec])
    trial = fake_trial("a")
    for epoch in (2, 3):
        trial.last_result = dict(epoch_rows("a", epoch, 0.1 * epoch), done=epoch == 3)
        recorder.on_trial_result(0, [], trial, trial.last_result)
    listed = []
    files = Store.files
    monkeypatch.setattr(Store, "files", lambda self, table, under="", recursive=True:
                        listed.append(under) or files(self, table, under, recursive))
    recorder.on_trial_complete(0, [], trial)
    recorder.flush()
    monkeypatch.undo()
    assert listed and set(listed) == {"a"}  # its own folders only
    assert store.files("epochs") == ["a.parquet"]
    assert list(store.read_table("epochs")["epoch"]) == [1, 2, 3]


def test_a_trial_folded_then_run_again_and_folded_again_reads_once_by_both_readers(tmp_path):
    """After a resume Ray may rerun a trial its snapshot had as unfinished although the killed driver had
    finished and folded it: folded again, it must not show twice (tests/engine/test_resume_scale.py)."""
    store = Store(str(tmp_path), "s")
    for trial_id in ("a", "b"):
        store.write_epoch("epochs", trial_id, 1, [epoch_rows(trial_id, 1, 0.5)])
        store.compact_trial(trial_id)
        store.write_rows("trials", trial_id, [dict(trial_id=trial_id, status="completed")])
    store.fold(["a", "b"])
    store.write_epoch("epochs", "a", 1, [epoch_rows("a", 1, 0.9)])  # run again
    store.compact_trial("a")
    store.write_rows("trials", "a", [dict(trial_id="a", status="completed")])
    store.fold(["a"])
    epochs = frame(store, "epochs")
    assert list(epochs["trial_id"]) == ["a", "b"] and list(epochs["val_acc"]) == [0.9, 0.5]
    assert sorted(pd.read_parquet(tmp_path / "s" / "epochs.parquet")["val_acc"]) == [0.5, 0.9]
    assert sorted(pd.read_parquet(tmp_path / "s" / "trials.parquet")["trial_id"]) == ["a", "b"]
