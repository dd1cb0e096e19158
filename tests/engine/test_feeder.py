"""The plan's trials handed to Tune in order (sweeps/engine/feeder.py, issue 25): each exactly once, PBT's
keys at their planned start, and a restored feeder going on where the saved one stopped."""
from __future__ import annotations

from collections import Counter

import pytest
from ray import tune
from ray.tune.search import Searcher

from sweeps.engine.feeder import AfterSnapshot, PlanFeeder
from sweeps.results.store import Store


def drain(feeder: PlanFeeder, limit: int = 10_000) -> list:
    out = []
    for k in range(limit):
        suggestion = feeder.suggest(f"t{k}")
        if suggestion == Searcher.FINISHED:
            return out
        out.append(suggestion)
    raise AssertionError("the feeder never said FINISHED")


def test_hands_out_each_plan_index_once_in_order_then_finishes():
    feeder = PlanFeeder(5)
    assert drain(feeder) == [{"trial": i} for i in range(5)]
    assert feeder.suggest("again") == Searcher.FINISHED and feeder.handed_out == 5


def test_accepts_the_schedulers_metric_and_mode():
    assert PlanFeeder(2).set_search_properties("objective", "max", {"trial": 0}) is True


def test_a_restored_feeder_goes_on_after_the_saved_count(tmp_path):
    first = PlanFeeder(6)
    handed = drain_some(first, 4)
    first.save(str(tmp_path / "state"))
    again = PlanFeeder(6)
    again.restore(str(tmp_path / "state"))
    assert handed + drain(again) == [{"trial": i} for i in range(6)]


def test_restoring_another_plans_state_is_refused(tmp_path):
    PlanFeeder(6).save(str(tmp_path / "state"))
    with pytest.raises(ValueError, match="plan trials 0 to 5, this one 0 to 6"):
        PlanFeeder(7).restore(str(tmp_path / "state"))


def killed_sweep(tmp_path) -> Store:
    """A sweep whose driver died after handing out plan indices 0..5, Tune's last snapshot having seen 0..2:
    3 completed and 4 was running after it; 1 was running at the snapshot (Tune restores it itself); and a
    confirm-phase trial with index 4 that ended (another phase: not this feeder's)."""
    store = Store(str(tmp_path), "s")
    for trial_id, index, status, phase in [("a", 0, "completed", "search"), ("b", 1, "running", "search"),
                                           ("c", 2, "early_stopped", "search"), ("d", 3, "completed", "search"),
                                           ("e", 4, "running", "search"), ("f", 4, "completed", "confirm")]:
        store.write_rows("trials", trial_id, [dict(trial_id=trial_id, plan_index=index, status=status, phase=phase)])
        store.write_epoch("epochs", trial_id, 1, [dict(trial_id=trial_id, epoch=1, phase=phase)])
    return store


def test_after_a_kill_trials_that_ended_after_the_snapshot_are_not_handed_out_again(tmp_path):
    store = killed_sweep(tmp_path)
    saved = PlanFeeder(7)
    drain_some(saved, 3)  # Tune's last snapshot: 0, 1 and 2 handed out
    saved.save(str(tmp_path / "state"))
    restored = PlanFeeder(7, rows=AfterSnapshot(str(tmp_path), "s", "search"))
    restored.restore(str(tmp_path / "state"))
    assert drain(restored) == [{"trial": 4}, {"trial": 5}, {"trial": 6}]  # 3 ended after the snapshot
    trials, epochs = store.read_table("trials"), store.read_table("epochs")
    # the rows of 4, which had not ended, are gone before it starts again; everything else stays
    assert sorted(trials["trial_id"]) == sorted(epochs["trial_id"]) == ["a", "b", "c", "d", "f"]


def test_a_sweep_without_plan_indices_settles_nothing(tmp_path):
    store = Store(str(tmp_path), "s")
    store.write_rows("trials", "a", [dict(trial_id="a", status="running")])  # written before plan_index existed
    assert AfterSnapshot(str(tmp_path), "s", "search").settle(0, 10) == set()
    assert list(store.read_table("trials")["trial_id"]) == ["a"]


def drain_some(feeder: PlanFeeder, k: int) -> list:
    return [feeder.suggest(f"t{i}") for i in range(k)]


def report_index(config: dict) -> None:
    tune.report({"objective": float(config["trial"])})


@pytest.mark.slow
def test_through_tune_every_index_runs_exactly_once(ray_local, tmp_path):
    n = 12
    grid = tune.Tuner(
        tune.with_resources(report_index, {"cpu": 1}), param_space={"trial": 0},
        tune_config=tune.TuneConfig(search_alg=PlanFeeder(n), num_samples=n, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="feed", verbose=0)).fit()
    assert not grid.errors
    assert Counter(result.config["trial"] for result in grid) == Counter(range(n))


def test_a_runs_feeder_hands_out_its_span_and_settles_only_its_own_trials(tmp_path):
    """One Tune run of a split sweep (sweeps/engine/phase.py): plan indices 3..5. A row of index 7 belongs
    to a later run and is left alone, even unfinished. No restore() saw this feeder (a run Ray kept no
    state of, or one started afresh): it settles at its first suggestion."""
    store = Store(str(tmp_path), "s")
    for trial_id, index, status in [("a", 4, "completed"), ("b", 5, "running"), ("c", 7, "running")]:
        store.write_rows("trials", trial_id, [dict(trial_id=trial_id, plan_index=index, status=status)])
    feeder = PlanFeeder(6, rows=AfterSnapshot(str(tmp_path), "s", "search"), start=3)
    assert drain(feeder) == [{"trial": 3}, {"trial": 5}] and feeder.handed_out == 3
    assert sorted(store.read_table("trials")["trial_id"]) == ["a", "c"]


@pytest.mark.slow
def test_a_torn_saved_state_is_rebuilt_from_tunes_experiment_state(ray_local, tmp_path):
    """Ray copies its state files in place; a driver killed mid-copy left an empty searcher state in CI. The
    feeder of plan indices 2..6 then counts on from the last index in Tune's own experiment state."""
    tune.Tuner(
        tune.with_resources(report_index, {"cpu": 1}), param_space={"trial": 0},
        tune_config=tune.TuneConfig(search_alg=PlanFeeder(7, start=2), num_samples=5, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="feed", verbose=0)).fit()
    (state,) = (tmp_path / "feed").glob("searcher-state-*.pkl")
    state.write_bytes(b"")
    again = PlanFeeder(7, start=2)
    again.restore(str(state))
    assert again.handed_out == 5 and again.suggest("more") == Searcher.FINISHED
    nothing = PlanFeeder(9, start=7)  # a later run's span: Tune's state holds none of its indices
    nothing.restore(str(state))
    assert drain(nothing) == [{"trial": 7}, {"trial": 8}]
