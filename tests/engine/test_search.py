"""Adaptive search through a real Ray: sampled keys, ASHA, Optuna, PBT, divergence and resume (issue 13).

Every sweep trains the tiny study-000 CNN on synthetic data, so the trials take about a second an epoch.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from analysis.results import load
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.runner import main, parse_args, plan
from sweeps.engine.space import loguniform
from tests.engine.test_resume import assert_one_row_each, env, kill_driver_when, one_done_one_running

TINY = dict(dataset="synthetic", model="cnn", depth=2, width=8, batch_size=32, augment=False,
            train_subset=256, test_subset=128, epochs=4, optimizer="sgd")
SEARCH = Sweep(study="search_test", description="search test", fixed=TINY,
               grid=cross(axis("bn", [True]), loguniform("lr", 1e-4, 10.0)))
DIVERGES = ["--grid", "bn=false", "--grid", "lr=1e10,0.01"]  # lr 1e10 without BN: NaN loss in epoch 1


def run(tmp_path, name, *flags) -> tuple[int, dict]:
    code = main(SEARCH, str(tmp_path / "search_test.py"), ["--storage", str(tmp_path / "res"), "--name", name, *flags])
    return code, load(tmp_path / "res" / name)


def planned_lrs(*flags) -> list[float]:
    args = parse_args(["--smoke", *flags], "", "x")
    return [spec.config["lr"] for spec in plan(SEARCH, args)]


def test_sampling_is_deterministic_per_search_seed(capsys):
    first, again = planned_lrs("--samples", "5"), planned_lrs("--samples", "5")
    assert first == again and len(set(first)) == 5 and all(1e-4 <= lr <= 10 for lr in first)
    assert planned_lrs("--samples", "5", "--search-seed", "1") != first
    # --seeds repeats each draw: the seeds of one draw share its lr (paired), and the draws do not move
    seeded = planned_lrs("--samples", "5", "--seeds", "2")
    assert seeded == [lr for lr in first for _ in range(2)]
    assert main(SEARCH, "search_test.py", ["--dry-run", "--samples", "5"]) == 0
    shown = capsys.readouterr().out
    assert "lr ~ loguniform:0.0001:10.0" in shown and f"lr={first[0]:.4g}" in shown and "5 trials" in shown


BAD = {
    "log bound at zero": (["--grid", "lr=loguniform:0:1"], "low must be > 0"),
    "low above high": (["--grid", "lr=uniform:1:0.1"], "low must be < high"),
    "not a number": (["--grid", "lr=uniform:a:b"], "expected uniform:LOW:HIGH"),
    "float draw for an int key": (["--grid", "depth=uniform:2:5"], "depth is an integer key"),
    "out of the key's range": (["--grid", "dropout=uniform:0:1"], "dropout"),
    "samples without a distribution": (["--grid", "lr=0.1,0.2", "--samples", "3"], "nothing is sampled"),
    "optuna across the sweep's cells": (["--search", "optuna", "--search-scope", "sweep", "--grid", "bn=true,false"],
                                        "one TPE study per grid cell; --search-scope sweep would need it to pick "
                                        "the grid axes (bn)"),
    "optuna with --seeds": (["--search", "optuna", "--seeds", "2"], "leave out --seeds"),
    "unknown search scope": (["--search-scope", "cells"], "--search-scope cells: choose cell"),
    "cell scope with nothing varying per cell": (["--search-scope", "cell", "--grid", "lr=0.1",
                                                  "--grid", "bn=true,false"], "each of the 2 cells holds one trial"),
    "search axis without cell scope": (["--search-axis", "bn", "--grid", "bn=true,false"],
                                       "needs --search-scope cell"),
    "search axis that is no axis": (["--search-scope", "cell", "--search-axis", "depth"], "not a grid axis"),
    "confirm 0": (["--confirm", "0", "--set", "val_size=64"], "--confirm 0: must be >= 1 seed"),
    "confirm without a validation split": (["--confirm", "2"], "these trials have none: set val_size"),
    "confirm picked on test": (["--confirm", "2", "--set", "val_size=64", "--metric", "test_acc"], "never on test"),
    "confirm under pbt": (["--confirm", "2", "--set", "val_size=64", "--scheduler", "pbt", "--samples", "2"],
                          "a PBT trial's is a schedule"),
    "confirm with nothing searched": (["--confirm", "2", "--set", "val_size=64", "--grid", "lr=0.1"],
                                      "nothing is searched inside a cell"),
    "optuna with --samples": (["--search", "optuna", "--samples", "2"], "--samples"),
    "trials without a searcher": (["--trials", "4"], "--trials N is the budget of --search optuna"),
    "pbt on a key it cannot change": (["--scheduler", "pbt", "--samples", "4", "--pbt-mutate", "depth"],
                                      "PBT can change only lr, weight_decay, momentum"),
    "pbt over different architectures": (["--scheduler", "pbt", "--samples", "2", "--grid", "bn=true,false"],
                                         "these vary: bn"),
    "validation metric without a split": (["--scheduler", "asha", "--metric", "val_acc"], "no validation split"),
    "unknown metric": (["--scheduler", "asha", "--metric", "acc"], "not a per-epoch metric"),
    "grace above max_t": (["--scheduler", "asha", "--grace-period", "5"], "--max-t 4"),
    "sampled and set": (["--set", "lr=0.1"], "both sampled and set"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_search_settings_fail_before_ray_and_write_nothing(case, tmp_path, capsys):
    flags, expected = BAD[case]
    code = main(SEARCH, str(tmp_path / "search_test.py"), ["--storage", str(tmp_path / "res"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_asha_stops_trials_early_and_records_exactly_their_epochs(tmp_path, capsys):
    code, tables = run(tmp_path, "asha", "--samples", "8", "--scheduler", "asha", "--reduction-factor", "2")
    assert code == 0
    trials = tables["trials"]
    assert_one_row_each(tables, 8)
    stopped = trials[trials["status"] == "early_stopped"]
    assert len(stopped) >= 2 and (stopped["epochs_completed"] < 4).all()
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    assert (trials.loc[trials["status"] == "completed", "epochs_completed"] == 4).all()
    assert set(trials["scheduler"]) == {"asha"} and set(trials["searcher"]) == {"random"}
    assert sorted(trials["lr"]) == sorted(planned_lrs("--samples", "8"))  # what ran is what --dry-run listed
    record = json.loads((tmp_path / "res" / "asha" / "sweep.json").read_text())
    assert record["search"]["sampled"] == {"lr": "loguniform:0.0001:10.0"}
    assert record["resume_policy"] == "continue with a fresh scheduler"
    # --resume of the finished sweep: a fresh ASHA, nothing runs twice, no row is duplicated
    code, again = run(tmp_path, "asha", "--samples", "8", "--scheduler", "asha", "--reduction-factor", "2",
                      "--resume")
    assert code == 0
    assert_one_row_each(again, 8)
    assert (again["trials"].set_index("trial_id")["status"] == trials.set_index("trial_id")["status"]).all()
    # ... but not with another scheduler
    code = main(SEARCH, str(tmp_path / "search_test.py"), ["--storage", str(tmp_path / "res"), "--name", "asha",
                                                           "--samples", "8", "--scheduler", "median", "--resume"])
    assert code == 2 and "scheduler='asha'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("searcher", ["asha", "optuna"])
def test_a_diverging_trial_is_recorded_diverged_and_the_sweep_completes(tmp_path, searcher):
    if searcher == "asha":
        code, tables = run(tmp_path, "div", *DIVERGES, "--scheduler", "asha")
    else:
        code, tables = run(tmp_path, "div", "--grid", "bn=false", "--grid", "lr=loguniform:1e9:1e11",
                           "--search", "optuna", "--trials", "3", "--scheduler", "asha")
    assert code == 0
    trials = tables["trials"]
    assert (trials["status"] == "diverged").any()
    diverged = trials[trials["status"] == "diverged"]
    assert (diverged["lr"] >= 1e9).all() and (diverged["epochs_completed"] == 1).all()
    epochs = tables["epochs"].merge(diverged[["trial_id"]])
    assert epochs["train_loss"].map(math.isnan).all()  # Parquet keeps the real metrics, not the objective


@pytest.mark.slow
def test_pbt_records_its_lineage_and_the_lr_in_force(tmp_path, capsys):
    code, tables = run(tmp_path, "pbt", "--samples", "4", "--scheduler", "pbt", "--pbt-mutate", "lr",
                       "--epochs", "6")
    assert code == 0 and "checkpoints every epoch" in capsys.readouterr().err
    lineage, epochs = tables["lineage"], tables["epochs"].set_index(["trial_id", "epoch"])
    assert len(lineage), "no exploit in 6 epochs of a 4-trial population"
    trial_ids = set(tables["trials"]["trial_id"])
    for _, row in lineage.iterrows():
        assert row["source_trial_id"] in trial_ids and row["source_trial_id"] != row["trial_id"]
        assert row["source_epoch"] == row["epoch"] - 1
        assert epochs.loc[(row["trial_id"], row["epoch"]), "lr"] == row["lr"]  # the new lr is in force
    assert_one_row_each(tables, 4)
    code = main(SEARCH, str(tmp_path / "search_test.py"), ["--storage", str(tmp_path / "res"), "--name", "pbt",
                                                           "--samples", "4", "--scheduler", "pbt",
                                                           "--pbt-mutate", "lr", "--epochs", "6", "--resume"])
    assert code == 2 and "ray-project/ray#30838" in capsys.readouterr().err


RESUMABLE = f'''
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.runner import main
SWEEP = Sweep(study="search_test", description="optuna resume test",
              fixed=dict({dict(TINY, train_subset=2000, epochs=3)!r}), grid=axis("bn", [True]))
if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
'''


@pytest.mark.slow
def test_optuna_sweep_resumed_after_a_kill_keeps_its_draws(tmp_path):
    script = tmp_path / "optuna_sweep.py"
    script.write_text(RESUMABLE)
    argv = [sys.executable, str(script), "--storage", str(tmp_path / "res"), "--grid", "lr=loguniform:1e-3:1",
            "--search", "optuna", "--trials", "4", "--max-concurrent", "1"]
    sweep = tmp_path / "res" / "optuna_sweep"
    before = kill_driver_when(argv, sweep, tmp_path, one_done_one_running)
    second = subprocess.run([*argv, "--resume"], env=env(), cwd=tmp_path, capture_output=True, text=True,
                            timeout=400, start_new_session=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    final = load(sweep)
    assert_one_row_each(final, 4)
    assert set(final["trials"]["searcher"]) == {"optuna"}
    kept = final["trials"].set_index("trial_id").loc[before["trial_id"], "lr"]
    assert (kept.values == before.set_index("trial_id")["lr"].values).all()  # the searcher's draws survive


@pytest.mark.slow
def test_optuna_searches_each_grid_cell_on_its_own_equal_budget_reproducibly(tmp_path):
    flags = ["--search", "optuna", "--trials", "3", "--grid", "bn=true,false", "--max-concurrent", "2", "--epochs", "1"]
    draws = []
    for name in ("first", "again"):
        code, tables = run(tmp_path, name, *flags)
        assert code == 0
        trials = tables["trials"]
        assert sorted(trials.groupby("cell").size().items()) == [("bn=False", 3), ("bn=True", 3)]
        assert set(trials["search_scope"] if "search_scope" in trials else ["cell"]) == {"cell"}
        draws.append({cell: sorted(rows["lr"]) for cell, rows in trials.groupby("cell")})
    assert draws[0] == draws[1]  # the same --search-seed, the same draws in every cell
    assert draws[0]["bn=True"] != draws[0]["bn=False"]  # each cell has its own study and seed
    record = json.loads((tmp_path / "res" / "first" / "sweep.json").read_text())["search"]
    assert (record["search_scope"], record["trials_per_cell"], record["trials"]) == ("cell", 3, 6)
