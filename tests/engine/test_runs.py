"""A large sweep as consecutive Ray Tune runs of --trials-per-run trials (sweeps/engine/phase.py, issue 25):
how the plan splits, which sweeps split, the resume refusals, and real sweeps split in three runs: every
trial once, one console, one scheduler for all the runs, and a driver killed in the second run resumed."""
from __future__ import annotations

import sys

import pytest

from analysis.results import load
from sweeps.engine import phase, search
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.phase import run_spans
from sweeps.engine.runner import main, parse_args, plan
from sweeps.engine.space import loguniform
from sweeps.results.store import Store
from tests.engine.test_resume import kill_driver_when, resume_to_the_end
from trainables.errors import ConfigError

TINY = dict(dataset="synthetic", model="cnn", depth=1, width=8, batch_size=32, augment=False, train_subset=64,
            test_subset=32, epochs=2, bn=False)
TEN = Sweep(study="runs", description="ten trials", fixed=TINY, grid=axis("seed", list(range(10))))


def test_a_plan_splits_into_runs_of_at_most_n_trials_in_numbered_folders():
    assert run_spans(10, 4, "tune") == [(0, 4, "tune"), (4, 8, "tune-2"), (8, 10, "tune-3")]
    assert run_spans(8, 4, "tune") == [(0, 4, "tune"), (4, 8, "tune-2")]
    assert run_spans(4, 4, "tune") == run_spans(4, None, "tune") == [(0, 4, "tune")]


def settings_of(sweep: Sweep, *flags: str) -> dict:
    return plan(sweep, parse_args(["--storage", "/tmp/unused", *flags], "", "runs")).search


def test_grid_and_random_sweeps_split_optuna_and_pbt_stay_in_one_run():
    assert settings_of(TEN, "--trials-per-run", "4")["trials_per_run"] == 4
    assert settings_of(TEN)["trials_per_run"] is None  # 10 trials: below the default 5,000
    assert settings_of(TEN, "--trials-per-run", "0")["trials_per_run"] is None
    sampled = Sweep(study="runs", description="sampled", fixed=dict(TINY, val_size=32),
                    grid=cross(axis("depth", [1, 2]), loguniform("lr", 1e-4, 1e-1)))
    assert settings_of(sampled, "--samples", "5", "--trials-per-run", "4")["trials_per_run"] == 4
    assert settings_of(sampled, "--search", "optuna", "--trials", "5", "--trials-per-run", "4")["trials_per_run"] is None
    pbt = settings_of(sampled, "--samples", "5", "--scheduler", "pbt", "--trials-per-run", "4",
                      "--pbt-mutate", "lr", "--search-scope", "cell")
    assert pbt["trials_per_run"] is None


def test_a_negative_trials_per_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(TEN, str(tmp_path / "runs.py"), ["--storage", str(tmp_path), "--trials-per-run", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --trials-per-run -1: must be >= 1, or 0 for one run"]
    assert not (tmp_path / "runs").exists()


def test_resume_keeps_the_split_and_a_one_run_sweep_of_an_earlier_version_says_how_to_resume_it():
    now = dict(searcher="grid", scheduler="fifo", search_seed=0, metric="test_acc", mode="max", search_scope="sweep",
               search_axes=[], confirm=None, trials_per_run=4)
    search.check_resume(now, dict(now))
    with pytest.raises(ConfigError, match="ran with trials_per_run=4, not 5"):
        search.check_resume({**now, "trials_per_run": 5}, now)
    earlier = {k: v for k, v in now.items() if k != "trials_per_run"}
    with pytest.raises(ConfigError, match="ran as one Ray Tune run .* with --trials-per-run 0"):
        search.check_resume(now, earlier)
    search.check_resume({**now, "trials_per_run": None}, earlier)


@pytest.mark.slow
def test_ten_trials_in_three_runs_one_row_each_one_console_one_scheduler(tmp_path, capfd, monkeypatch):
    built = []
    make = search.make_scheduler
    monkeypatch.setattr(phase.search, "make_scheduler", lambda p: built.append(1) or make(p))
    code = main(TEN, str(tmp_path / "runs.py"), ["--storage", str(tmp_path / "res"), "--name", "ten",
                                                 "--trials-per-run", "4", "--scheduler", "asha",
                                                 "--progress-every", "600"])
    err = capfd.readouterr().err
    assert code == 0, err[-3000:]
    assert len(built) == 1  # ASHA's rungs span the runs: each trial is ranked against all before it
    tables = load(tmp_path / "res" / "ten")
    trials = tables["trials"]
    assert sorted(trials["plan_index"]) == sorted(trials["seed"]) == list(range(10))
    assert not tables["epochs"].duplicated(["trial_id", "epoch"]).any()
    assert all((tmp_path / "res" / "ten" / folder).is_dir() for folder in ("tune", "tune-2", "tune-3"))
    ends = [line for line in err.splitlines() if line.startswith("end    [")]
    assert sorted(int(line.split("[")[1].split("/")[0]) for line in ends) == list(range(1, 11))  # one count
    assert sum(line.startswith("-- final at ") for line in err.splitlines()) == 1


KILLABLE = f'''
from sweeps.engine.grid import Sweep, axis, cross
from sweeps.engine.runner import main
SWEEP = Sweep(study="runs", description="killed in its second run", fixed=dict({TINY!r}, train_subset=256),
              grid=axis("seed", list(range(12))))
if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
'''


@pytest.mark.slow
def test_a_driver_killed_in_the_second_run_resumes_with_every_trial_once(tmp_path):
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    argv = [sys.executable, str(script), "--storage", str(tmp_path / "res"), "--trials-per-run", "4"]
    store = Store(str(tmp_path / "res"), "killable")

    def second_run_started(tables):
        trials = tables["trials"]
        return trials if len(trials) and (trials["plan_index"] >= 4).any() else None

    before = kill_driver_when(argv, tmp_path / "res" / "killable", tmp_path, second_run_started)
    resume_to_the_end(argv, tmp_path, timeout=600)
    trials = store.read_table("trials")
    assert sorted(trials["plan_index"]) == sorted(trials["seed"]) == list(range(12))
    assert set(trials["status"]) == {"completed"}
    epochs = store.read_table("epochs")
    assert len(epochs) == 24 and not epochs.duplicated(["trial_id", "epoch"]).any()
    first_run = before[(before["plan_index"] < 4) & (before["status"] == "completed")].set_index("trial_id")
    kept = trials.set_index("trial_id").reindex(first_run.index)
    assert (kept["trial_started"] == first_run["trial_started"]).all()  # the finished first run was not redone
