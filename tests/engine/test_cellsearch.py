"""One Optuna TPE study per grid cell (sweeps/engine/cellsearch.py, issue 23), through a real Ray Tune.

Three cells of a synthetic study (their template trials are plan indices 0, 3 and 5), four trials each.
The trainable is a plain function reporting a score of (trial, lr, epoch), no torch, so a run takes a few
seconds, most of it Ray starting actors. Four trials per cell stay inside TPE's random start-up phase
(10 trials), where a cell's draws depend on its seed alone, so reproducibility is exact here.
"""
from __future__ import annotations

import glob
import os
import signal
from collections import Counter

import optuna
import pytest
import ray.cloudpickle as cloudpickle
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from sweeps.engine.cellsearch import PerCellSearcher, cell_seed

TEMPLATES = [0, 3, 5]
PER_CELL = 4
EPOCHS = 3
SPACE = {"lr": tune.loguniform(1e-5, 1e-1)}


def score(trial: int, lr: float, epoch: int) -> float:
    return epoch / 10 + trial - abs(lr - 0.01)


def synthetic(config: dict) -> None:
    for epoch in range(1, EPOCHS + 1):
        tune.report({"objective": score(config["trial"], config["lr"], epoch)})


def tuner(folder, name: str, searcher: PerCellSearcher, callbacks=()) -> tune.Tuner:
    return tune.Tuner(
        tune.with_resources(synthetic, {"cpu": 1}),
        param_space={"trial": 0, **SPACE},  # what the runner gives an optuna sweep; every suggestion overrides lr
        tune_config=tune.TuneConfig(metric="objective", mode="max", reuse_actors=True,
                                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
                                    num_samples=len(searcher.templates) * searcher.trials_per_cell),
        run_config=tune.RunConfig(storage_path=str(folder), name=name, verbose=0, callbacks=list(callbacks)))


def draws(grid) -> dict[int, list[float]]:
    """{template: sorted lr values} of a finished run."""
    out: dict[int, list[float]] = {}
    for result in grid:
        out.setdefault(result.config["trial"], []).append(result.config["lr"])
    return {trial: sorted(lrs) for trial, lrs in out.items()}


def fit(folder, name: str, seed: int = 0) -> tuple[PerCellSearcher, object]:
    searcher = PerCellSearcher(SPACE, TEMPLATES, PER_CELL, seed=seed)
    grid = tuner(folder, name, searcher).fit()
    assert not grid.errors, grid.errors
    return searcher, grid


@pytest.fixture(scope="module")
def seed0(ray_local, tmp_path_factory):
    return fit(tmp_path_factory.mktemp("seed0"), "seed0")


# --- through Tune ------------------------------------------------------------------------------------

def test_each_cell_gets_exactly_its_budget(seed0):
    searcher, grid = seed0
    assert len(grid) == len(TEMPLATES) * PER_CELL
    assert Counter(r.config["trial"] for r in grid) == {t: PER_CELL for t in TEMPLATES}
    assert searcher.cells == (PER_CELL,) * len(TEMPLATES)
    assert searcher.suggest("one-more") == Searcher.FINISHED


def test_each_cells_study_saw_only_its_own_trials(seed0):
    searcher, grid = seed0
    for template, study in zip(TEMPLATES, searcher.studies):
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert len(trials) == len(study.trials) == PER_CELL
        # the lrs it was told about are its cell's, and each value is the final score of that cell's trial
        assert sorted(t.params["lr"] for t in trials) == draws(grid)[template]
        for t in trials:
            assert t.value == pytest.approx(score(template, t.params["lr"], EPOCHS))
            assert sorted(t.intermediate_values) == list(range(1, EPOCHS + 1))  # every epoch's result routed


def test_draws_are_reproducible_per_seed_and_differ_between_cells_and_seeds(seed0, tmp_path):
    _, first = seed0
    _, again = fit(tmp_path, "again", seed=0)
    _, other = fit(tmp_path, "other", seed=1)
    assert draws(again) == draws(first)
    for template in TEMPLATES:
        assert set(draws(other)[template]).isdisjoint(draws(first)[template])
    lrs = [set(draws(first)[template]) for template in TEMPLATES]
    assert all(a.isdisjoint(b) for i, a in enumerate(lrs) for b in lrs[i + 1:])


class InterruptOnce(tune.Callback):
    """Ctrl+C on the driver after the 5th completed trial: Tune saves its state and ends the run. Once per
    test process (an environment variable, since Tuner.restore brings the callback back from tuner.pkl)."""

    def __init__(self):
        self.completed = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed == 5 and not os.environ.get("CELLSEARCH_INTERRUPTED"):
            os.environ["CELLSEARCH_INTERRUPTED"] = "1"
            os.kill(os.getpid(), signal.SIGINT)


def test_a_restored_run_continues_each_cells_study_within_its_budget(ray_local, tmp_path, monkeypatch):
    monkeypatch.delenv("CELLSEARCH_INTERRUPTED", raising=False)
    searcher = PerCellSearcher(SPACE, TEMPLATES, PER_CELL, seed=0)
    tuner(tmp_path, "resumed", searcher, callbacks=[InterruptOnce()]).fit()
    assert os.environ.get("CELLSEARCH_INTERRUPTED") and sum(searcher.cells) < len(TEMPLATES) * PER_CELL
    grid = tune.Tuner.restore(str(tmp_path / "resumed"), trainable=tune.with_resources(synthetic, {"cpu": 1}),
                              resume_unfinished=True, resume_errored=True).fit()
    assert not grid.errors, grid.errors
    assert len({r.metrics["trial_id"] for r in grid}) == len(grid) == len(TEMPLATES) * PER_CELL
    assert Counter(r.config["trial"] for r in grid) == {t: PER_CELL for t in TEMPLATES}
    # the newest by name (a session's start time), as Searcher.restore_from_dir picks it; not by mtime,
    # which the sync to storage_path rewrites
    newest = max(glob.glob(str(tmp_path / "resumed" / "searcher-state-*.pkl")))
    with open(newest, "rb") as file:
        state = cloudpickle.load(file)
    assert state["_counts"] == [PER_CELL] * len(TEMPLATES)
    # the restored studies went on from the first session's trials: each holds its whole budget, told once
    for cell in state["_cells"]:
        assert [t.state for t in cell._ot_study.trials] == [optuna.trial.TrialState.COMPLETE] * PER_CELL


# --- the searcher alone (no Tune) --------------------------------------------------------------------

def ready(seed: int = 0, templates=TEMPLATES, per_cell: int = PER_CELL) -> PerCellSearcher:
    searcher = PerCellSearcher(SPACE, templates, per_cell, seed=seed)
    assert searcher.set_search_properties("objective", "max", {"trial": 0})
    return searcher


def complete(searcher: PerCellSearcher, trial_id: str, config: dict) -> None:
    searcher.on_trial_result(trial_id, {"objective": 0.5, "training_iteration": 1})
    searcher.on_trial_complete(trial_id, {"objective": score(config["trial"], config["lr"], 1)})


def test_cells_are_served_round_robin_until_every_budget_is_spent():
    searcher = ready(per_cell=2)
    order = [searcher.suggest(f"t{i}")["trial"] for i in range(6)]
    assert order == TEMPLATES * 2
    assert searcher.suggest("t6") == Searcher.FINISHED
    assert searcher.cells == (2, 2, 2)


def test_a_cell_that_cannot_suggest_now_is_skipped_not_charged(monkeypatch):
    searcher = ready()
    searcher.suggest("t0")  # makes the cells
    monkeypatch.setattr(searcher._cells[1], "suggest", lambda trial_id: None)
    assert searcher.suggest("t1")["trial"] == TEMPLATES[2]
    assert searcher.cells == (1, 0, 1)
    for cell in searcher._cells:
        monkeypatch.setattr(cell, "suggest", lambda trial_id: None)
    assert searcher.suggest("t2") is None


def test_save_and_restore_continue_each_cell_within_its_budget(tmp_path):
    total = len(TEMPLATES) * PER_CELL
    straight = ready()
    reference = [straight.suggest(f"t{i}") for i in range(total)]

    first = ready()
    configs = {f"t{i}": first.suggest(f"t{i}") for i in range(5)}
    for trial_id in ("t0", "t1", "t2"):  # t3 and t4 are still running when the run stops
        complete(first, trial_id, configs[trial_id])
    first.save(str(tmp_path / "searcher.pkl"))

    second = PerCellSearcher(SPACE, TEMPLATES, PER_CELL, seed=0)  # as Tune: a fresh instance, then restore
    second.set_search_properties("objective", "max", {"trial": 0})
    second.restore(str(tmp_path / "searcher.pkl"))
    assert second.cells == first.cells == (2, 2, 1)
    for trial_id in ("t3", "t4"):  # the interrupted trials run again and report to the cell that drew them
        complete(second, trial_id, configs[trial_id])
    rest = [second.suggest(f"t{i}") for i in range(5, total)]
    assert second.suggest("extra") == Searcher.FINISHED
    assert second.cells == (PER_CELL,) * len(TEMPLATES)
    assert Counter(c["trial"] for c in [*configs.values(), *rest]) == {t: PER_CELL for t in TEMPLATES}
    # in TPE's start-up phase the draws depend only on the seed: the restored run draws what one
    # uninterrupted run draws
    assert [*configs.values(), *rest] == reference
    states = [[t.state for t in study.trials] for study in second.studies]
    assert sum(s.count(optuna.trial.TrialState.COMPLETE) for s in states) == 5


def test_restore_deletes_the_rows_of_trials_suggested_after_the_snapshot_and_their_cells_draw_again(tmp_path):
    """A driver killed after Tune's last snapshot had started t3 (ended, folded) and t4 (running): Tune will
    not run those trial ids again, so their rows go, wherever they are, and their cells draw again."""
    from sweeps.engine.feeder import AfterSnapshot
    from sweeps.results.store import Store

    first = ready()
    configs = {f"t{i}": first.suggest(f"t{i}") for i in range(5)}
    snapshot = tmp_path / "searcher.pkl"
    at_snapshot = ready()  # Tune's last snapshot: taken after t0..t2 were suggested
    for i in range(3):
        assert at_snapshot.suggest(f"t{i}") == configs[f"t{i}"]
    at_snapshot.save(str(snapshot))

    store = Store(str(tmp_path), "s")
    rows = [("t0", "completed", "search"), ("t1", "completed", "search"), ("t2", "running", "search"),
            ("t3", "completed", "search"), ("t4", "running", "search"), ("c0", "completed", "confirm")]
    for trial_id, status, phase in rows:
        store.write_rows("trials", trial_id, [dict(trial_id=trial_id, status=status, phase=phase)])
        store.write_epoch("epochs", trial_id, 1, [dict(trial_id=trial_id, epoch=1, phase=phase)])
    for trial_id in ("t0", "t3", "c0"):
        store.compact_trial(trial_id)
    store.fold(["t0", "t3", "c0"])

    second = PerCellSearcher(SPACE, TEMPLATES, PER_CELL, seed=0, rows=AfterSnapshot(str(tmp_path), "s", "search"))
    second.set_search_properties("objective", "max", {"trial": 0})
    second.restore(str(snapshot))
    for table in ("trials", "epochs"):
        assert sorted(store.read_table(table)["trial_id"]) == ["c0", "t0", "t1", "t2"], table
    assert second.cells == (1, 1, 1)  # t3 and t4 are not counted: their cells draw them again
    assert [second.suggest(f"n{i}") for i in range(2)] == [configs["t3"], configs["t4"]]


def test_restore_refuses_another_sweeps_state(tmp_path):
    saved = ready()
    saved.suggest("t0")
    saved.save(str(tmp_path / "searcher.pkl"))
    other = PerCellSearcher(SPACE, TEMPLATES, PER_CELL + 1, seed=0)
    with pytest.raises(ValueError, match="saved searcher has"):
        other.restore(str(tmp_path / "searcher.pkl"))


def test_cell_seeds_are_fixed_and_distinct():
    seeds = {(s, j): cell_seed(s, j) for s in range(3) for j in range(4)}
    assert len(set(seeds.values())) == len(seeds)
    assert cell_seed(0, 1) == cell_seed(0, 1)
    assert ready(seed=7).suggest("t") == ready(seed=7).suggest("t") != ready(seed=8).suggest("t")


@pytest.mark.parametrize("kwargs, message", [
    (dict(templates=[]), "no grid cells"),
    (dict(trials_per_cell=0), "trials_per_cell 0 must be an integer >= 1"),
    (dict(space={}), "empty search space"),
    (dict(space={"lr": 0.1}), "holds no tune domain"),
    (dict(space={"trial": tune.randint(0, 3)}), "'trial' is the plan index"),
    (dict(templates=[0, 0]), "appears in two cells"),
    (dict(seed=-1), "seed -1 must be an integer >= 0"),
])
def test_misuse_is_a_one_line_value_error(kwargs, message):
    args = {**dict(space=SPACE, templates=TEMPLATES, trials_per_cell=PER_CELL, seed=0), **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        PerCellSearcher(**args)
    assert "\n" not in str(info.value)


def test_param_space_may_sample_only_the_searched_keys():
    searcher = PerCellSearcher(SPACE, TEMPLATES, PER_CELL, seed=0)
    with pytest.raises(ValueError, match="param_space samples wd"):
        searcher.set_search_properties("objective", "max", {"trial": 0, "wd": tune.uniform(0, 1), **SPACE})


def test_suggest_without_metric_says_how_to_give_one():
    searcher = PerCellSearcher(SPACE, TEMPLATES, PER_CELL, seed=0)
    with pytest.raises(RuntimeError, match="TuneConfig"):
        searcher.suggest("t0")
