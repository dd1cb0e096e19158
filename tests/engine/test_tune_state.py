"""Tune's per-trial result.json and params.json (sweeps/engine/tune_state.py): written by the Recorder straight
to storage when a trial ends, not through Tune's staging folder, whose every snapshot would upload them
again. Tune's ResultGrid reads result.json; these tests read it the way Tune does."""
from __future__ import annotations

import json
import os
import pickle
import threading

from ray.tune.analysis.experiment_analysis import ExperimentAnalysis

from sweeps.engine.recorder import Recorder
from sweeps.results.store import Store
from sweeps.engine.tune_state import write_trial_files
from tests.results.test_store import epoch_rows, fake_trial

SPEC = dict(config=dict(epochs=4, task="train", lr=0.1), labels={}, facts={}, title="t", overrides={})
META = dict(sweep="s", study="x", code_version="v")


def tune_frame(tmp_path, trial):
    """The trial's metrics as Tune's ResultGrid reads them (its own reader, on the trial's folder)."""
    trial.storage.trial_fs_path = str(tmp_path / "s" / "tune" / trial.storage.trial_dir_name)
    trial.storage.storage_filesystem = Store(str(tmp_path), "s").fs
    return ExperimentAnalysis._fetch_trial_dataframe(None, trial)


def run(recorder, trial, epochs, acc=0.1, end="complete"):
    for epoch in epochs:
        result = dict(epoch_rows(trial.trial_id, epoch, acc * epoch), epoch=epoch, config={"trial": 0},
                      layers=[dict(layer=0, layer_name="l0", weight_std=1.0)])
        trial.last_result = result
        recorder.on_trial_result(0, [], trial, result)
    if end == "complete":
        recorder.on_trial_complete(0, [], trial)
    elif end == "error":
        recorder.on_trial_error(0, [], trial)


def test_a_finished_trials_metrics_read_back_through_tunes_reader(tmp_path):
    recorder = Recorder(str(tmp_path), "s", META, [SPEC])
    trial = fake_trial("t1")
    recorder.on_trial_start(0, [], trial)
    run(recorder, trial, [1, 2, 3, 4])
    recorder.on_experiment_end([trial])
    frame = tune_frame(tmp_path, trial)
    assert list(frame["epoch"]) == [1, 2, 3, 4] and list(frame["val_acc"]) == [0.1, 0.2, 0.1 * 3, 0.4]
    assert "layers" not in frame.columns  # Parquet holds the lists
    assert json.loads((tmp_path / "s" / "tune" / "run_t1" / "params.json").read_text()) == {"trial": 0}


def test_a_resumed_trial_keeps_the_earlier_drivers_epochs_and_replaces_re_reported_ones(tmp_path):
    first = Recorder(str(tmp_path), "s", META, [SPEC])
    trial = fake_trial("t1")
    run(first, trial, [1, 2, 3], acc=0.1, end="error")  # an errored trial: a --resume runs it again
    first.on_experiment_end([trial])
    again = Recorder(str(tmp_path), "s", META, [SPEC])  # the resumed driver, restored from its checkpoint
    run(again, trial, [3, 4], acc=0.2)  # epoch 3 reported again: its new line replaces the old one
    again.on_experiment_end([trial])
    frame = tune_frame(tmp_path, trial)
    assert list(frame["epoch"]) == [1, 2, 3, 4]
    assert [round(v, 3) for v in frame["val_acc"]] == [0.1, 0.2, 0.6, 0.8]


def test_a_trial_still_running_when_the_sweep_stops_gets_its_files(tmp_path):
    recorder = Recorder(str(tmp_path), "s", META, [SPEC])
    done, running = fake_trial("t1"), fake_trial("t2")
    run(recorder, done, [1, 2, 3, 4])
    run(recorder, running, [1, 2], end=None)  # an interrupted sweep: no end event for this one
    recorder.on_experiment_end([done, running])
    assert list(tune_frame(tmp_path, running)["epoch"]) == [1, 2]


def test_a_trial_with_nothing_new_leaves_the_earlier_result_file_alone(tmp_path):
    store = Store(str(tmp_path), "s")
    write_trial_files(store, "tune/run_t1", b"{}", {1: '{"epoch": 1}'})
    write_trial_files(store, "tune/run_t1", b"{}", {})  # resumed, errored again before reporting
    assert (tmp_path / "s" / "tune" / "run_t1" / "result.json").read_text() == '{"epoch": 1}\n'


def test_tune_keeps_each_trials_last_result_without_the_lists():
    """SlimTuneState, the last callback, takes the lists out of the result Tune then keeps (Ray lets a
    callback change it in place); what callbacks before it saw, and built from it, is untouched."""
    from sweeps.engine.tune_state import SlimTuneState
    layers = [dict(layer=0, weight_std=1.0)]
    result = dict(epoch=1, val_acc=0.5, layers=layers, classes=[], config={"trial": 0})
    seen_before = dict(result)
    SlimTuneState().on_trial_result(0, [], fake_trial("t1"), result)
    assert result == dict(epoch=1, val_acc=0.5, config={"trial": 0})
    assert seen_before["layers"] is layers and layers == [dict(layer=0, weight_std=1.0)]


def test_a_trials_end_does_not_wait_on_tunes_thread_for_its_writes(tmp_path, monkeypatch):
    """A trial's end is one background job (compaction, its row, Tune's files). A second job for the same
    trial would wait for the first on Tune's thread (one write in flight per trial): on S3 that stalled
    Tune's loop for every trial that ended."""
    gate = threading.Event()
    compact = Store.compact_trial

    def slow_compaction(self, trial_id, written=None):
        assert gate.wait(5), "on_trial_complete waited for the compaction"
        return compact(self, trial_id, written)
    monkeypatch.setattr(Store, "compact_trial", slow_compaction)
    recorder = Recorder(str(tmp_path), "s", META, [SPEC])
    trial = fake_trial("t1")
    run(recorder, trial, [1, 2, 3, 4], end=None)
    recorder.on_trial_complete(0, [], trial)
    returned_first = not gate.is_set()
    gate.set()
    recorder.on_experiment_end([trial])
    assert returned_first and list(tune_frame(tmp_path, trial)["epoch"]) == [1, 2, 3, 4]


def test_a_finished_trials_empty_staging_folder_goes_and_one_with_files_stays(tmp_path):
    """Tune copies its staging area to storage at every snapshot: an empty folder per finished trial
    was a folder marker per trial per snapshot on S3."""
    from sweeps.engine.tune_state import SlimTuneState
    done, failed, restored = (fake_trial(t) for t in ("t1", "t2", "t3"))
    for trial in (done, failed, restored):
        trial.local_path = str(tmp_path / "staging" / trial.trial_id)
        os.makedirs(trial.local_path)
        trial.is_finished = lambda: True
    (tmp_path / "staging" / "t2" / "error.txt").write_text("RuntimeError: boom")
    slim = SlimTuneState()
    slim.on_trial_complete(0, [], done)
    slim.on_trial_error(0, [], failed)
    assert not os.path.exists(done.local_path) and os.path.exists(failed.local_path)
    again = pickle.loads(pickle.dumps(slim))  # a resumed sweep: Tune made folders for all its trials again
    os.makedirs(done.local_path)
    again.on_step_begin(0, [done, failed, restored])
    assert sorted(os.listdir(tmp_path / "staging")) == ["t2"]
