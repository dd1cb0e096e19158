"""Tuned comparisons (issue 23): per-cell search, then each cell's winner confirmed on fresh seeds.

The selection rule and the confirm plan are checked on planned trials with made-up outcomes; the whole
path (search, selection, confirmation, resume mid-confirmation) through a real Ray on synthetic images.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from analysis.results import load
from sweeps.engine.confirm import confirm_plan, select
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.runner import main, parse_args, plan
from sweeps.engine.space import loguniform
from tests.engine.test_resume import assert_one_row_each, env, kill_driver_when

TINY = dict(dataset="synthetic", model="cnn", depth=2, width=8, batch_size=32, augment=False,
            train_subset=256, val_size=64, test_subset=64, epochs=3, optimizer="sgd")
TUNED = Sweep(study="tuned_test", description="tuned comparison test", fixed=TINY,
              grid=cross(axis("bn", [True, False]), loguniform("lr", 1e-3, 1.0)),
              flags=dict(search_scope="cell", samples=3, confirm=2))


def planned(*flags):
    return plan(TUNED, parse_args(list(flags), "", "tuned_test", TUNED.flags))


def outcomes(the_plan, values: dict[int, tuple]) -> pd.DataFrame:
    """A search-phase trials table: trial i -> (status, epochs, val_acc, test_acc)."""
    rows = []
    for i, spec in enumerate(the_plan):
        status, epochs, val, test = values[i]
        rows.append(dict(trial_id=f"t{i:02d}", phase="search", cell=the_plan.cell_of(spec), status=status,
                         epochs_completed=epochs, val_acc=val, test_acc=test, **spec.config))
    return pd.DataFrame(rows)


def test_the_winner_is_picked_on_validation_among_the_longest_trained_never_on_test():
    the_plan = planned()
    assert [the_plan.cell_of(s) for s in the_plan] == ["bn=True"] * 3 + ["bn=False"] * 3
    trials = outcomes(the_plan, {
        # bn=True: trial 1 has the best test accuracy, trial 2 the best validation accuracy
        0: ("completed", 3, 0.30, 0.40), 1: ("completed", 3, 0.31, 0.90), 2: ("completed", 3, 0.35, 0.20),
        # bn=False: trial 3 stopped at epoch 1 with the best value; trial 5 errored
        3: ("early_stopped", 1, 0.80, 0.80), 4: ("completed", 3, 0.25, 0.25), 5: ("error", 2, 0.99, 0.99)})
    record = select(trials, the_plan)
    chosen = {c["cell"]: c for c in record["cells"]}
    assert chosen["bn=True"]["selected_trial_id"] == "t02" and chosen["bn=True"]["search_value"] == 0.35
    assert chosen["bn=True"]["selected"] == {"lr": the_plan[2].config["lr"]}
    assert chosen["bn=False"]["selected_trial_id"] == "t04"  # the short-horizon and the errored trials lose
    assert chosen["bn=False"]["search_trials"] == 3 and chosen["bn=False"]["search_epochs"] == 6
    assert record["metric"] == "val_acc" and "validation" in record["rule"] and "test metrics play no part" in record["rule"]


def test_a_loss_metric_picks_the_lowest_and_a_cell_without_candidates_is_left_out():
    the_plan = planned("--metric", "val_loss")
    trials = outcomes(the_plan, {i: ("completed", 3, 0.5, 0.5) for i in range(6)}).assign(val_loss=[3, 1, 2, 9, 9, 9])
    trials.loc[trials["cell"] == "bn=False", "status"] = "error"
    record = select(trials, the_plan)
    assert [c["selected_trial_id"] for c in record["cells"]] == ["t01", None]
    confirming = confirm_plan(the_plan, record)
    assert len(confirming) == 2 and {s.config["bn"] for s in confirming} == {True}


def test_confirm_seeds_are_ones_no_search_trial_used_and_each_cell_runs_each_once():
    the_plan = planned("--seeds", "2", "--confirm", "3")
    search_seeds = {s.config["seed"] for s in the_plan}
    assert search_seeds == {0, 1} and the_plan.search["confirm_seeds"] == [2, 3, 4]
    trials = outcomes(the_plan, {i: ("completed", 3, 0.1 * (i % 6), 0.5) for i in range(len(the_plan))})
    confirming = confirm_plan(the_plan, select(trials, the_plan))
    runs = [(s.config["bn"], s.config["seed"], s.config["lr"]) for s in confirming]
    assert len(runs) == len(set(runs)) == 2 * 3
    assert {seed for _, seed, _ in runs} == {2, 3, 4} and not search_seeds & {seed for _, seed, _ in runs}
    assert all(s.config["epochs"] == 3 for s in confirming)  # the full planned epochs
    assert confirming.search["scheduler"] == "fifo" and confirming.picked_keys == ()
    assert [confirming.cell_of(s) for s in confirming] == ["bn=True"] * 3 + ["bn=False"] * 3
    assert "seed" in confirming[0].title and "sample" not in confirming[0].title


def test_the_dry_run_states_the_cells_and_the_confirmation(capsys):
    assert main(TUNED, "tuned_test.py", ["--dry-run", "--scheduler", "asha"]) == 0
    out = capsys.readouterr().out
    assert "one per grid cell (2 cells)" in out
    assert "confirm: then each cell's best by val_acc (validation) again on seeds [1, 2], full epochs, FIFO: " \
           "4 more trials" in out


def run(tmp_path, name, *flags):
    code = main(TUNED, str(tmp_path / "tuned_test.py"), ["--storage", str(tmp_path / "res"), "--name", name, *flags])
    return code, load(tmp_path / "res" / name)


@pytest.mark.slow
def test_a_confirmed_sweep_reruns_each_cells_winner_on_fresh_seeds(tmp_path, capsys):
    code, tables = run(tmp_path, "tuned", "--scheduler", "asha")
    captured = capsys.readouterr()
    err = captured.err
    assert code == 0, err[-3000:]
    trials = tables["trials"]
    assert_one_row_each(tables, 6 + 4)
    for table in ("trials", "epochs", "layers"):
        assert set(tables[table]["phase"]) == {"search", "confirm"}, table
    search, confirming = trials[trials["phase"] == "search"], trials[trials["phase"] == "confirm"]
    assert len(search) == 6 and set(search["scheduler"]) == {"asha"} and set(search["seed"]) == {0}
    assert len(confirming) == 4 and set(confirming["status"]) == {"completed"} and set(confirming["seed"]) == {1, 2}
    assert (confirming["epochs_completed"] == 3).all() and set(confirming["scheduler"]) == {"fifo"}
    record = json.loads((tmp_path / "res" / "tuned" / "sweep.json").read_text())
    assert record["search"]["search_scope"] == "cell"
    for cell in record["confirmation"]["cells"]:
        winner = search.set_index("trial_id").loc[cell["selected_trial_id"]]
        mine = search[search["cell"] == cell["cell"]]
        longest = mine[mine["epochs_completed"] == mine["epochs_completed"].max()]
        assert winner["val_acc"] == longest["val_acc"].max() == cell["search_value"]
        runs = confirming[confirming["cell"] == cell["cell"]]
        assert len(runs) == 2 and (runs["lr"] == winner["lr"]).all()
    assert "confirm: 2 cells x seeds [1, 2]" in err
    assert "; confirm: 4 completed in" in captured.out  # the summary counts each phase apart


RESUMABLE = f'''
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.runner import main
from sweeps.engine.space import loguniform
SWEEP = Sweep(study="tuned_test", description="confirm resume test",
              fixed=dict({dict(TINY, train_subset=1500, epochs=4)!r}),
              grid=cross(axis("bn", [True, False]), loguniform("lr", 1e-3, 1.0)),
              flags=dict(search_scope="cell", samples=2, confirm=2))
if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
'''


def tuned_script(tmp_path):
    """The resumable tuned sweep as a script in tmp_path: (its command line, its sweep folder)."""
    script = tmp_path / "tuned_sweep.py"
    script.write_text(RESUMABLE)
    return [sys.executable, str(script), "--storage", str(tmp_path / "res")], tmp_path / "res" / "tuned_sweep"


def resume(argv, cwd) -> None:
    """Run the sweep again with --resume; it must finish cleanly."""
    second = subprocess.run([*argv, "--resume"], env=env(), cwd=cwd, capture_output=True, text=True,
                            timeout=400, start_new_session=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]


def confirming_mid_way(tables):
    """A confirm trial has completed and another is running."""
    trials = tables["trials"]
    if "phase" not in trials.columns:
        return None
    mine = trials[trials["phase"] == "confirm"]
    ready = (mine["status"] == "completed").any() and (mine["status"] == "running").any()
    return trials if ready else None


@pytest.mark.slow
def test_a_driver_killed_mid_confirmation_resumes_it_with_every_row_once(tmp_path):
    argv, sweep = tuned_script(tmp_path)
    before = kill_driver_when(argv, sweep, tmp_path, confirming_mid_way)
    selected = json.loads((sweep / "sweep.json").read_text())["confirmation"]
    resume(argv, tmp_path)
    final = load(sweep)
    assert_one_row_each(final, 4 + 4)
    trials = final["trials"]
    confirming = trials[trials["phase"] == "confirm"]
    assert len(confirming) == 4 and set(confirming["status"]) == {"completed"}
    assert sorted(zip(confirming["cell"], confirming["seed"])) == sorted((c, s) for c in ("bn=False", "bn=True")
                                                                        for s in (1, 2))
    # the search was not run again, and the recorded selection is what was confirmed
    search = trials[trials["phase"] == "search"]
    assert set(search["trial_id"]) == set(before.loc[before["phase"] == "search", "trial_id"])
    assert json.loads((sweep / "sweep.json").read_text())["confirmation"] == selected
    done_before = before.loc[(before["phase"] == "confirm") & (before["status"] == "completed"), "trial_id"]
    assert set(done_before) <= set(confirming["trial_id"])  # what finished before the kill is kept, not re-run


def test_study_000_tuned_searches_each_cell_with_asha_and_confirms_on_three_seeds(capsys):
    from sweeps.depth_grid_tuned import SWEEP
    the_plan = plan(SWEEP, parse_args(["--smoke"], "", "depth_grid_tuned", SWEEP.flags))
    search = the_plan.search
    assert (search["scheduler"], search["search_scope"], search["confirm"]) == ("asha", "cell", 3)
    assert search["metric"] == "val_acc" and search["sampled"] == {"lr": "loguniform:1e-05:0.1"}
    cells = {the_plan.cell_of(spec) for spec in the_plan}
    assert cells == {f"depth={d} init={i}" for d in (10, 12) for i in ("he_normal", "normal")}
    sizes = [sum(the_plan.cell_of(spec) == cell for spec in the_plan) for cell in cells]
    assert sizes == [8] * 4  # an equal budget: the same draws in every cell
    assert main(SWEEP, "depth_grid_tuned.py", ["--dry-run"]) == 0  # the full grid plans too
    assert "16 cells" in capsys.readouterr().out


@pytest.mark.slow
def test_a_driver_killed_mid_search_resumes_the_search_then_confirms(tmp_path):
    argv, sweep = tuned_script(tmp_path)

    def searching_mid_way(tables):
        trials = tables["trials"]
        if "status" not in trials.columns:
            return None
        done, running = (trials["status"] == "completed").any(), (trials["status"] == "running").any()
        return trials if done and running and "confirmation" not in json.loads((sweep / "sweep.json").read_text()) \
            else None
    kill_driver_when(argv, sweep, tmp_path, searching_mid_way)
    resume(argv, tmp_path)
    final = load(sweep)
    assert_one_row_each(final, 4 + 4)
    trials = final["trials"]
    assert (trials.groupby("phase").size() == 4).all() and set(trials["phase"]) == {"search", "confirm"}
    assert json.loads((sweep / "sweep.json").read_text())["confirmation"]["seeds"] == [1, 2]
