"""Resume at scale (issue 25): a 3,000-trial sweep of trivial trials, 16 at once, its driver SIGKILLed a third
of the way through, then `--resume`: every planned trial ends with exactly one trials row and one row per
epoch, and trials that had finished before the kill were not run again.

Unlike tests/engine/test_resume.py this keeps Tune's own snapshot period: at this size Tune saves its
experiment state every few seconds, not every step, so the driver dies with trials that started, and
some that finished, after Tune's last snapshot. Those are the ones a resume could lose or run twice.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from analysis.results import load
from sweeps.results.store import Store
from tests.conftest import write_cifar10
from tests.engine.test_resume import assert_one_row_each, env, kill_group, resume_to_the_end

TRIALS = 3000
SCRIPT = f'''
from benchmarks.overhead import TRIVIAL
from sweeps.engine.grid import Sweep, axis
from sweeps.engine.runner import main
SWEEP = Sweep(study="scale", fixed={{**TRIVIAL, "dataset": "cifar10", "epochs": 2}},
              grid=axis("seed", list(range({TRIALS}))), description="resume at scale")
if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
'''


@pytest.mark.slow
def test_a_3000_trial_sweep_killed_a_third_through_resumes_with_every_row_once(tmp_path):
    script = tmp_path / "scale.py"
    script.write_text(SCRIPT)
    data = write_cifar10(tmp_path / "c10", per_file=64)
    argv = [sys.executable, str(script), "--data-dir", str(data), "--storage", str(tmp_path / "res"),
            "--num-cpus", "16", "--cpus-per-trial", "1", "--progress-every", "60"]
    store = Store(str(tmp_path / "res"), "scale")

    first = subprocess.Popen(argv, env=env(), cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, done = time.time() + 1200, None
        while time.time() < deadline and first.poll() is None:
            time.sleep(3)
            try:
                trials = store.read_table("trials")
            except Exception:  # not there yet, or a file being renamed
                continue
            if len(trials) and (trials["status"] == "completed").sum() >= TRIALS // 3:
                done = trials
                break
        assert first.poll() is None, "the sweep ended before it could be killed"
        assert done is not None, "a third of the trials did not finish in 20 minutes"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill_group(first)

    resume_to_the_end(argv, tmp_path, timeout=1800)

    final = load(tmp_path / "res" / "scale")
    trials = final["trials"]
    assert_one_row_each(final, TRIALS)
    assert sorted(trials["seed"]) == list(range(TRIALS))  # each planned trial once: none lost, none run twice
    assert set(trials["status"]) == {"completed"} and set(trials["epochs_completed"]) == {2}
    assert len(final["epochs"]) == 2 * TRIALS
    # Trials finished before the kill kept their rows. The ones run again are exactly those Ray's last
    # snapshot held as unfinished (running or queued then): Ray restores and reruns them, their rows replaced.
    finished = done[done["status"] == "completed"].set_index("trial_id")
    again = trials.set_index("trial_id").reindex(finished.index)
    assert again["trial_started"].notna().all(), "trials that had finished before the kill lost their rows"
    rerun = set(finished.index[again["trial_started"] != finished["trial_started"]])
    snapshot = first_drivers_snapshot(tmp_path / "res" / "scale" / "tune")
    assert rerun <= {t for t, status in snapshot.items() if status != "TERMINATED"}, "finished trials were run again"


def first_drivers_snapshot(tune_folder) -> dict[str, str]:
    """trial_id -> status in the killed driver's last experiment-state snapshot (each driver writes its own
    experiment_state-<its start>.json: the first by name is the killed one's)."""
    first = sorted(tune_folder.glob("experiment_state-*.json"))[0]
    states = (json.loads(trial) for trial, _ in json.loads(first.read_text())["trial_data"])
    return {state["trial_id"]: state["status"] for state in states}
