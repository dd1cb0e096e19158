"""benchmarks/asha_replay.py and the judging in benchmarks/search_efficiency.py (issue 23): Ray's own ASHA
re-run on recorded trajectories, and how a cell's pick is judged. No training: hand-made trajectories
whose successive-halving outcome can be worked out on paper."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.asha_replay import Trajectory, concurrency, replay, replayed_trials  # noqa: E402
from benchmarks.search_efficiency import judge  # noqa: E402


def flat(value: float, epochs: int = 9, seconds: float = 1.0, diverged: bool = False) -> Trajectory:
    return Trajectory((seconds,) * epochs, (value,) * epochs, (1.0,) * epochs, diverged)


def asha(rf: float = 3, max_t: int = 9):
    from ray.tune.schedulers import ASHAScheduler
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=1, reduction_factor=rf)
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def test_one_at_a_time_ray_asha_promotes_what_beats_the_rung_so_far_and_stops_the_rest():
    # Rungs 1 and 3 below max_t 9; a trial stops when below the 66.7th percentile of what its rung holds.
    # A (0.5) meets empty rungs and runs to 9; B (0.9) clears {0.5}; C (0.1) is below {0.5, 0.9} -> 0.767 at
    # rung 1; D (0.7) clears {0.1, 0.5, 0.9} -> 0.633 at rung 1, then is below {0.5, 0.9} -> 0.767 at rung 3.
    paths = {0: flat(0.5), 1: flat(0.9), 2: flat(0.1), 3: flat(0.7)}
    ran = replay(asha(), paths, [0, 1, 2, 3], slots=1, metric="val_acc")
    assert ran == {0: 9, 1: 9, 2: 1, 3: 3}
    # the same trials in another order: the best first, so every later one meets a high cutoff
    assert replay(asha(), paths, [1, 3, 0, 2], slots=1, metric="val_acc") == {1: 9, 3: 1, 0: 1, 2: 1}


def test_without_a_scheduler_that_stops_every_trial_runs_its_recorded_epochs():
    from ray.tune.schedulers import FIFOScheduler
    paths = {0: flat(0.5), 1: flat(0.2, epochs=2, diverged=True), 2: flat(0.3, epochs=9)}
    assert replay(FIFOScheduler(), paths, [2, 1, 0], slots=2, metric="val_acc") == {0: 9, 1: 2, 2: 9}


def test_a_timeline_sets_who_reaches_a_rung_first():
    # Two slots, trial 0 slow (10 s an epoch) and trial 1 fast: 1 reaches rung 1 first, unopposed, and
    # 0 then meets 1's 0.9 there and stops. Given a timeline in which 0 is fast, 0 passes first and 1
    # (better) passes too.
    paths = {0: flat(0.5, seconds=10.0), 1: flat(0.9)}
    assert replay(asha(), paths, [0, 1], slots=2, metric="val_acc") == {0: 1, 1: 9}
    timeline = {0: (0.0, (1.0,) * 9), 1: (0.5, (10.0,) * 9)}
    assert replay(asha(), paths, [0, 1], slots=2, metric="val_acc", timeline=timeline) == {0: 9, 1: 9}


def test_concurrency_is_the_most_trials_training_at_once():
    trials = pd.DataFrame({"trial_started": [0.0, 1.0, 5.0, 5.5, 9.0], "train_seconds": [5.0, 5.0, 2.0, 1.0, 1.0]})
    assert concurrency(trials) == 3  # [0,5) [1,6) [5,7) [5.5,6.5) [9,10): three at 5.5; an end before a start
    assert concurrency(trials.iloc[[0, 2]]) == 1  # [0,5) then [5,7): back to back, never together


LRS = [1e-3, 1e-2, 1e-1, 1.0]


def cell_rows(init: str, accs, statuses=None, epochs=None):
    return pd.DataFrame({"init": init, "lr": LRS, "val_acc": accs, "val_loss": [1.0] * 4,
                         "status": statuses or ["completed"] * 4, "epochs_completed": epochs or [10] * 4})


def test_the_judge_skips_diverged_trials_counts_no_cell_where_all_diverged_and_measures_noise():
    gone = ["diverged"] * 4
    fifo = pd.concat([
        cell_rows("a", [0.40, 0.50, 0.48, 0.60], ["completed"] * 3 + ["diverged"]),  # the 0.60 diverged: not a best
        cell_rows("b", [0.10] * 4, gone, [1] * 4),  # every lr diverged: no best lr, not counted
        cell_rows("c", [0.20, 0.30, 0.60, 0.10])])
    asha = pd.concat([
        cell_rows("a", [0.40, 0.45, 0.48, 0.60], ["early_stopped", "early_stopped", "completed", "diverged"],
                  [1, 1, 10, 10]),  # picks 0.1: one step from fifo's 0.01, 2 points below, within 1 SE (2.2)
        cell_rows("b", [0.10] * 4, gone, [1] * 4),
        cell_rows("c", [0.20, 0.25, 0.30, 0.10], ["completed"] + ["early_stopped"] * 3, [10, 1, 1, 1])])
    cells = [({"init": name}, {}) for name in "abc"]
    judged = judge(fifo, asha, cells, {"init": ("axis", list("abc"))}, LRS, "val_acc", "max", 10, n_val=500)
    assert [c["steps"] for c in judged["cells"]] == ["+1", "n/a", "-2"]
    assert [c["ok"] for c in judged["cells"]] == [True, None, False]
    assert (judged["agree"], judged["counted"], judged["within_se"]) == (1, 2, 1)
    assert judged["regrets"] == pytest.approx([0.02, 0.40])
    assert judged["cells"][1]["text"] == "none (all diverged)"


def test_a_replayed_trial_is_recorded_as_the_sweep_would_have_recorded_it():
    paths = {0: flat(0.5), 1: Trajectory((1.0,) * 2, (0.3, 0.1), (1.0, math.nan), True), 2: flat(0.7)}
    fifo = pd.DataFrame({"plan_index": [0, 1, 2], "val_acc": [0.5, 0.1, 0.7], "val_loss": [1.0, math.nan, 1.0],
                         "status": ["completed", "diverged", "completed"], "epochs_completed": [9, 2, 9]})
    rows = replayed_trials(fifo, paths, {0: 3, 1: 2, 2: 9}, "val_acc")
    assert rows["epochs_completed"].tolist() == [3, 2, 9]
    assert rows["status"].tolist() == ["early_stopped", "diverged", "completed"]
    assert rows["val_acc"].tolist() == [0.5, 0.1, 0.7] and math.isnan(rows["val_loss"].iloc[1])
    assert replayed_trials(fifo, paths, {0: 9, 1: 1, 2: 9}, "val_acc")["status"].iloc[1] == "early_stopped"
