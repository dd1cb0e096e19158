"""Faults against a real Ray: retries from checkpoints, exhausted retries, and a SIGKILLed driver resumed.

Each test starts its own private Ray (the runner uses address "local") and
every process it starts is gone when it ends.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from analysis.results import load
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main
from sweeps.results.store import Store
from tests.conftest import write_cifar10

REPO = Path(__file__).resolve().parents[2]
TINY = dict(model="cnn", depth=2, width=8, batch_size=32, augment=False, train_subset=64, test_subset=32)

FAULTS = Sweep(study="faults", description="retry test", fixed=dict(TINY, epochs=2),
               grid=variants("case",
                             # fails after epoch 1, retried from the epoch-1 checkpoint: does not fail again
                             recovers=dict(fail_at_epoch=1, checkpoint_every=1),
                             # no checkpoint, so every retry fails again until the retries run out
                             exhausted=dict(fail_at_epoch=1, checkpoint_every=0),
                             clean=dict(fail_at_epoch=0, checkpoint_every=0)))

LONG = 6  # epochs of the long trials: with reused Ray workers they must last long enough to be caught mid-way
RESUMABLE = f'''
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.runner import main
SWEEP = Sweep(study="resume", description="kill-and-resume test",
              fixed=dict({dict(TINY, train_subset=0, width=32)!r}, checkpoint_every=1),
              grid=cross(axis("epochs", [1, {LONG}]), axis("seed", [0, 1])))
if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
'''


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**e, "PYTHONPATH": str(REPO), "RAY_AIR_NEW_OUTPUT": "0"}


def assert_one_row_each(tables, n_trials):
    """Every finished epoch has exactly its row, 1..epochs_completed. The one allowed gap is a PBT exploit
    from a trial that was ahead: the exploiting trial jumps to the source's epoch, whose earlier epochs
    it never trained itself, and lineage.parquet records the jump at the epoch it resumed at."""
    trials, epochs, layers = tables["trials"], tables["epochs"], tables["layers"]
    assert len(trials) == n_trials and trials["trial_id"].is_unique
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert not layers.duplicated(["trial_id", "epoch", "layer"]).any()
    lineage = tables.get("lineage")
    lineage = None if lineage is None or lineage.empty else lineage
    for _, t in trials.iterrows():
        reported = set(epochs.loc[epochs["trial_id"] == t["trial_id"], "epoch"])
        jumps = set() if lineage is None else set(lineage.loc[lineage["trial_id"] == t["trial_id"], "epoch"])
        for missing in set(range(1, int(t["epochs_completed"]) + 1)) - reported:
            resumed_at = min((e for e in jumps if e > missing), default=None)
            assert resumed_at is not None and not reported & set(range(missing, resumed_at)), \
                f"{t['trial_id']}: epoch {missing} has no row and no exploit skipped it"
        assert max(reported) == int(t["epochs_completed"])


@pytest.mark.slow
def test_retries_from_checkpoint_then_error_once_exhausted(tmp_path, tiny_cifar10, capsys):
    code = main(FAULTS, str(tmp_path / "faults.py"),
                ["--data-dir", str(tiny_cifar10), "--storage", str(tmp_path / "res"), "--max-failures", "1"])
    out = capsys.readouterr().out
    assert code == 1  # one trial ended in error
    tables = load(tmp_path / "res" / "faults")
    assert_one_row_each(tables, 3)
    t = tables["trials"].set_index("case")
    assert t.loc["exhausted", "status"] == "error"
    assert "fail_at_epoch=1: injected failure" in t.loc["exhausted", "error"]
    assert t.loc["exhausted", "failures"] == 2  # the first run and its one retry
    assert t.loc["exhausted", "epochs_completed"] == 1
    assert t.loc["recovers", "status"] == "completed" and t.loc["recovers", "failures"] == 1
    assert t.loc["recovers", "epochs_completed"] == 2 and t.loc["recovers", "error"] == ""
    assert t.loc["clean", "status"] == "completed" and t.loc["clean", "failures"] == 0
    assert "2 completed" in out and "1 error" in out and "python -m analysis.report" in out


# Ray copies its state files to storage in place: a driver killed mid-copy can leave one torn (CI saw an empty
# searcher state). "searcher": the feeder rebuilds its count from Tune's experiment state, and trials still go
# on from their checkpoints. "experiment": Ray cannot restore the run; the runner says so in one line and starts
# it afresh, the trials that ended keeping their rows and the others starting again.
TORN = {"searcher": "searcher-state-*.pkl", "experiment": "experiment_state-*.json"}


def ray_statuses(sweep: str) -> dict:
    """{trial_id: status} in the newest experiment state Ray has uploaded for the sweep.

    Ray uploads its state in the background and skips a snapshot while the previous upload runs, so on
    S3 it can lag our rows by a snapshot: a trial that completed in the last moment before a SIGKILL
    is then run again by --resume (from its last checkpoint; its rows are replaced, not duplicated).
    The test kills the driver once Ray has saved the completion, which is what it checks."""
    store = Store.at(sweep)
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(store.path("tune")))
    except FileNotFoundError:
        return {}
    newest = max((i.path for i in infos if i.base_name.startswith("experiment_state-")), default=None)
    if newest is None:
        return {}
    with store.fs.open_input_stream(newest) as f:
        raw = f.readall()
    try:
        state = json.loads(raw)
    except ValueError:  # caught mid-upload (the feeder now lets Ray snapshot more often): not caught up yet
        return {}
    return {trial["trial_id"]: trial["status"] for trial in (json.loads(t[0]) for t in state["trial_data"])}


def lose_end_job(sweep: Path, trial_id: str) -> None:
    """Make the killed driver's leftovers those of a kill after Ray's snapshot had the trial TERMINATED but
    before the Recorder's queued end job (its final row, its result.json) reached storage: the row of its
    last epoch, no result.json, and, in Ray's state, its last result without `done`. Ray sets `done` by
    changing that result in place, which the JSON it caches of the trial's run does not see (Ray 2.60
    _process_trial_result), so a snapshot can hold it so. CI hit this race on S3."""
    store = Store.at(str(sweep))
    row = store.read_table("trials").set_index("trial_id").loc[trial_id].to_dict()
    store.write_rows("trials", trial_id, [dict(row, trial_id=trial_id, status="running")])
    (folder,) = (sweep / "tune").glob(f"*_{trial_id}_*")
    (folder / "result.json").unlink()
    state_file = max((sweep / "tune").glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:
        metadata = json.loads(entry[1])  # as Ray wrote it: its non-JSON values stay encoded
        if metadata["last_result"].get("trial_id") == trial_id:
            assert json.loads(entry[0])["status"] == "TERMINATED"
            metadata["last_result"].pop("done", None)
            entry[1] = json.dumps(metadata)
    state_file.write_text(json.dumps(state))


@pytest.mark.slow
@pytest.mark.parametrize("fault", [None, *TORN, "end_job"])
def test_sigkilled_driver_resumes_without_loss_or_duplicates(tmp_path, fault):
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    storage = tmp_path / "res"
    data = write_cifar10(tmp_path / "c10", per_file=200)  # 1,000 training images: epochs long enough to interrupt
    argv = [sys.executable, str(script), "--data-dir", str(data), "--storage", str(storage)]
    sweep = storage / "resumable"

    # 1. Start the sweep; once a short trial has completed and a long one is mid-way, SIGKILL the driver.
    def mid_way(tables):
        trials, epochs = tables["trials"], tables["epochs"]
        if not len(trials) or not len(epochs):
            return None
        reached = epochs.merge(trials[trials["epochs"] == LONG], on="trial_id").groupby("trial_id")["epoch"].max()
        completed = trials.loc[trials["status"] == "completed", "trial_id"]
        saved = ray_statuses(str(sweep))  # Ray's state has caught up with the completion (see ray_statuses)
        if len(completed) and all(saved.get(t) == "TERMINATED" for t in completed) and (reached >= 2).any() \
                and (reached < LONG).all():
            return trials, list(reached[reached >= 2].index)
        return None

    before, resumed = kill_driver_when(argv, sweep, tmp_path, mid_way)
    mid = load(sweep)
    mid_epochs = mid["epochs"]
    assert (mid["trials"]["status"] == "running").any()  # a hard kill leaves no time to tidy up

    # 2. Without --resume the name is taken; with it the sweep continues.
    taken = subprocess.run(argv, env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert taken.returncode == 2 and "--resume" in taken.stderr
    done = before[before["status"] == "completed"].set_index("trial_id")
    if fault in TORN:
        state = max((sweep / "tune").glob(TORN[fault]))
        state.write_bytes(state.read_bytes()[:len(state.read_bytes()) // 2])  # cut short, as by a kill mid-copy
    elif fault == "end_job":
        lose_end_job(sweep, done.index[0])
        done = done.drop(done.index[0])  # its row is written again, on resume, with a new finished_at
    output = resume_to_the_end(argv, tmp_path, timeout=400)
    assert ("is torn" in output) == (fault == "experiment") and "Traceback" not in output

    final = load(sweep)
    assert_one_row_each(final, 4)
    trials = final["trials"]
    assert set(trials["status"]) == {"completed"}, trials[["trial_id", "status"]]
    assert sorted(trials["epochs_completed"]) == [1, 1, LONG, LONG]
    assert len(final["epochs"]) == 1 + 1 + LONG + LONG
    # Trials that had finished before the kill were not run again: their rows are untouched.
    again = trials.set_index("trial_id").loc[done.index]
    assert (again["trial_started"] == done["trial_started"]).all()
    assert (again["finished_at"] == done["finished_at"]).all()
    if fault == "experiment":  # started again under new trial ids; the interrupted ones' rows are gone
        assert len(resumed) and not set(resumed) & set(trials["trial_id"])
        return
    # Interrupted trials continued from their checkpoint, not from scratch: the epoch-1 row written
    # before the kill is still the same row (a rerun would have replaced it with a new one).
    old, new = (t.set_index(["trial_id", "epoch"])["seconds"] for t in (mid_epochs, final["epochs"]))
    assert len(resumed) and all(old[(tid, 1)] == new[(tid, 1)] for tid in resumed)


def one_done_one_running(tables):
    """kill_driver_when's signal for a sweep mid-way: a trial has completed and another is running."""
    trials = tables["trials"]
    ready = len(trials) and (trials["status"] == "completed").any() and (trials["status"] == "running").any()
    return trials if ready else None


def kill_driver_when(argv: list[str], sweep: Path, cwd: Path, ready):
    """Start the sweep `argv`; once `ready(tables)` returns something, SIGKILL the driver and return that.

    Ray snapshots its experiment state on every step here (it is tiny), so what it restores matches
    what was on disk when the driver died.
    """
    first = subprocess.Popen(argv, env={**env(), "TUNE_GLOBAL_CHECKPOINT_S": "0"}, cwd=cwd,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and found is None:
            time.sleep(0.5)
            try:
                tables = load(sweep)
            except Exception:  # not there yet, or a file being renamed
                continue
            found = ready(tables)
        assert first.poll() is None, "the sweep finished before it could be interrupted"
        assert found is not None, "no point mid-sweep was reached"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill_group(first)
    return found


def resume_to_the_end(argv: list[str], cwd: Path, timeout: float) -> str:
    """Run the sweep `argv` with --resume in its own process group; it must exit 0. Returns its output."""
    second = subprocess.Popen([*argv, "--resume"], env=env(), cwd=cwd, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = second.communicate(timeout=timeout)
    finally:
        kill_group(second)
    assert second.returncode == 0, output[-3000:]
    return output


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the process group the test started (Ray's own processes included)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

