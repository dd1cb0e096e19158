"""Per-cell scope for Ray's own schedulers (sweeps/engine/cells.py, issue 23), through a real Ray.

Two cells of a tiny synthetic study: the deep cell's score lags the shallow cell's by exactly 1.0 at every
epoch (score = epoch/10 + 5*lr - lag). A sweep-wide ASHA ranks the deep trials against the shallow ones
and stops every one at its first rung; one ASHA per cell ranks them among themselves. The trainable is a
plain function reporting numbers (no torch), so a sweep takes seconds, most of it Ray starting actors.
"""
from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining

from sweeps.engine.cells import PerCellScheduler
from sweeps.engine.search import cell_key, cell_sizes
from trainables.errors import ConfigError

MAX_T = 8
LRS = [0.01, 0.02, 0.03, 0.04]  # ascending: under one-at-a-time ASHA each shallow trial beats those before it
POINTS = [dict(depth=depth, init="kaiming", lr=lr, seed=0) for depth in (2, 8) for lr in LRS]
LAG = {2: 0.0, 8: 1.0}
SAMPLED = ("lr", "seed")
SHALLOW, DEEP = (cell_key(POINTS[i], SAMPLED) for i in (0, len(LRS)))


def cell_of(trial) -> tuple:
    return cell_key(POINTS[trial.config["trial"]], SAMPLED)


def synthetic(config: dict) -> None:
    """Like trainables/ray_trainable.py: `trial` indexes the plan, and PBT's `lr`, when the trial carries
    one, overrides the plan's. The checkpoint holds the epoch reached, so an exploit continues the donor."""
    point = POINTS[config["trial"]]
    lr = config.get("lr", point["lr"])
    start = 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads(Path(folder, "state.json").read_text())["epoch"]
    for epoch in range(start + 1, config.get("epochs", MAX_T) + 1):
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"score": epoch / 10 + 5 * lr - LAG[point["depth"]]},
                        checkpoint=tune.Checkpoint.from_directory(folder))


class CellSpy:
    """Notes the cell of every trial a scheduler is handed, or can list through its controller, and the
    PAUSED trials it chose to resume."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: set = set()
        self.resumed: set = set()

    def _see(self, controller, trial=None):
        self.seen |= {cell_of(t) for t in controller.get_trials()} | ({cell_of(trial)} if trial else set())

    def on_trial_add(self, tune_controller, trial):
        self._see(tune_controller, trial)
        return super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        self._see(tune_controller, trial)
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        self._see(tune_controller, trial)
        return super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        self._see(tune_controller, trial)
        return super().on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        self._see(tune_controller)
        chosen = super().choose_trial_to_run(tune_controller)
        if chosen is not None and chosen.status == Trial.PAUSED:
            self.resumed.add(chosen.trial_id)
        return chosen


class SpyASHA(CellSpy, ASHAScheduler):
    pass


class SpyHyperBand(CellSpy, HyperBandScheduler):
    pass


class SpyPBT(CellSpy, PopulationBasedTraining):
    """Also notes each exploit as (the trial's cell, the cell of the trial it copies)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.exploits: list[tuple] = []

    def _exploit(self, tune_controller, trial, trial_to_clone):
        self.exploits.append((cell_of(trial), cell_of(trial_to_clone)))
        super()._exploit(tune_controller, trial, trial_to_clone)


def asha():
    return SpyASHA(time_attr="training_iteration", max_t=MAX_T, grace_period=1, reduction_factor=2)


def hyperband():
    # max_t 2, eta 2: a cell's first two trials fill a bracket that runs them to 2 epochs, the next two one
    # that pauses both at epoch 1 and resumes only the better (the smallest HyperBand that halves)
    return SpyHyperBand(time_attr="training_iteration", max_t=2, reduction_factor=2)


def pbt():
    # synch: every trial of a population waits at the perturbation point, so the exploits are deterministic
    return SpyPBT(time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.25,
                  hyperparam_mutations={"lr": tune.uniform(0.0, 0.05)}, synch=True)


def fit(folder, scheduler, points=range(len(POINTS)), concurrent=1, extra=None) -> dict:
    """{trial_id: (cell, epochs run)}. Trials start in `points` order, `concurrent` of them at most: one at
    a time makes ASHA's asynchronous decisions deterministic."""
    tuner = tune.Tuner(
        tune.with_resources(synthetic, {"cpu": 1}),
        param_space={"trial": tune.grid_search(list(points)), **(extra or {})},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, reuse_actors=True,
                                    max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(name="cells", storage_path=str(folder), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=4)))
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    return {r.metrics["trial_id"]: (cell_key(POINTS[r.config["trial"]], SAMPLED), r.metrics["training_iteration"])
            for r in grid}


def epochs_in(trials: dict, cell) -> list[int]:
    return sorted(epochs for c, epochs in trials.values() if c == cell)


def rung_cells(scheduler, trials: dict) -> set:
    """The cells of the trials an ASHA has ranked at any rung: what its cutoffs were computed from."""
    return {trials[trial_id][0] for bracket in scheduler._brackets for _, recorded in bracket._rungs
            for trial_id in recorded}


@pytest.mark.slow  # a real Ray run
def test_sweep_wide_asha_stops_every_trial_of_the_lagging_cell_at_its_first_rung(ray_local, tmp_path):
    scheduler = asha()
    trials = fit(tmp_path, scheduler)
    assert epochs_in(trials, SHALLOW)[-1] == MAX_T and epochs_in(trials, DEEP) == [1] * len(LRS), trials
    # what the per-cell checks below must never see
    assert scheduler.seen == rung_cells(scheduler, trials) == {SHALLOW, DEEP}


@pytest.fixture(scope="module")
def per_cell_asha(ray_local, tmp_path_factory):
    scheduler = PerCellScheduler(asha, cell_of)
    return scheduler, fit(tmp_path_factory.mktemp("per_cell_asha"), scheduler)


@pytest.mark.slow  # a real Ray run
def test_per_cell_asha_sends_a_trial_of_each_cell_to_max_t(per_cell_asha):
    scheduler, trials = per_cell_asha
    assert set(scheduler.cells) == {SHALLOW, DEEP}
    for cell in (SHALLOW, DEEP):
        assert epochs_in(trials, cell)[-1] == MAX_T, trials
    assert epochs_in(trials, DEEP) == epochs_in(trials, SHALLOW)  # a constant lag changes no decision


@pytest.mark.slow  # a real Ray run
def test_per_cell_asha_never_ranks_trials_of_different_cells_together(per_cell_asha):
    scheduler, trials = per_cell_asha
    for cell, instance in scheduler.cells.items():
        assert instance.seen == {cell} and rung_cells(instance, trials) == {cell}
    assert "PerCellScheduler: one SpyASHA per cell, 2 cells" in scheduler.debug_string()


def fake_trial(point: int, status=Trial.PENDING) -> Trial:
    trial = Trial("__fake", config={"trial": point}, stub=True)
    trial.set_status(status)
    return trial


class FakeController:
    def __init__(self, trials):
        self.trials, self.search_alg = trials, None

    def get_trials(self):
        return list(self.trials)

    def get_live_trials(self):
        return {t for t in self.trials if not t.is_finished()}


def same_rungs(first: PerCellScheduler, second: PerCellScheduler) -> bool:
    def rungs(scheduler):
        return {cell: [dict(recorded) for _, recorded in instance._brackets[0]._rungs]
                for cell, instance in scheduler.cells.items()}
    return rungs(first) == rungs(second) and rungs(first) != {}


@pytest.mark.slow  # a real Ray run
def test_the_scheduler_pickles_with_its_cells_and_keeps_routing(per_cell_asha, tmp_path):
    scheduler, _ = per_cell_asha
    again = pickle.loads(pickle.dumps(scheduler))  # module-level factory and cell_of: plain pickle will do
    assert same_rungs(scheduler, again) and again.metric == "score" and again.mode == "max"
    deep = fake_trial(len(LRS) + 1)
    again.on_trial_add(FakeController([deep]), deep)  # an existing cell's instance takes it
    assert len(again.cells) == 2 and again.cells[DEEP].seen == {DEEP}
    # save/restore (cloudpickle): a lambda factory, and a cell first seen after restore gets metric and mode
    lambdas = PerCellScheduler(lambda: ASHAScheduler(max_t=MAX_T), lambda t: t.config["trial"])
    lambdas.set_search_properties("score", "max")
    lambdas.save(str(tmp_path / "scheduler.pkl"))
    restored = PerCellScheduler(FIFOScheduler, cell_of)
    restored.restore(str(tmp_path / "scheduler.pkl"))
    late = fake_trial(0)
    restored.on_trial_add(FakeController([late]), late)  # ASHA raises here without a metric and mode
    assert restored.cells[0]._metric == "score" and restored.cells[0]._mode == "max"
    assert cloudpickle.loads(cloudpickle.dumps(restored)).cells.keys() == {0}


def test_search_properties_are_accepted_or_refused_as_the_plain_scheduler_would():
    scheduler = PerCellScheduler(lambda: ASHAScheduler(metric="loss", mode="min"), cell_of)
    assert scheduler.metric == "loss" and scheduler.mode == "min"
    assert scheduler.set_search_properties("score", "max") is False  # Ray then raises its usual clash error
    assert PerCellScheduler(HyperBandScheduler, cell_of).supports_buffered_results is False  # Tune asks
    with pytest.raises(ConfigError, match="not a Ray TrialScheduler"):
        PerCellScheduler(dict, cell_of)


def test_choose_trial_to_run_is_what_a_sweep_wide_fifo_pick_would_be_for_fifo_based_schedulers():
    # FIFO-based (ASHA, median): one instance per cell must not change which trial starts next
    scheduler = PerCellScheduler(ASHAScheduler, cell_of)
    scheduler.set_search_properties("score", "max")
    trials = [fake_trial(point) for point in (0, 4, 1, 5)]  # cells interleaved
    controller = FakeController(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    for statuses in ["PPPP", "RPRP", "RAPA", "RARA", "ARRR", "RRRR", "TATA"]:
        for trial, status in zip(trials, statuses):
            trial.set_status(dict(P=Trial.PENDING, R=Trial.RUNNING, A=Trial.PAUSED, T=Trial.TERMINATED)[status])
        assert scheduler.choose_trial_to_run(controller) is FIFOScheduler().choose_trial_to_run(controller), statuses


@pytest.mark.slow  # a real Ray run
def test_per_cell_hyperband_halves_each_cell_in_its_own_brackets(ray_local, tmp_path):
    # HyperBand resumes only the PAUSED trials its bracket releases: choose_trial_to_run is each cell's own.
    # Cells interleaved, so one sweep-wide HyperBand would put a shallow and a deep trial in each bracket.
    # Per cell, lr 0.04 then 0.03 in the halving bracket: the first (paused at epoch 1 while the second
    # runs; 2 CPUs) wins, so its bracket must resume it.
    scheduler = PerCellScheduler(hyperband, cell_of)
    per_cell_order = [0, 1, 3, 2]
    interleaved = [i + offset for i in per_cell_order for offset in (0, len(LRS))]
    trials = fit(tmp_path, scheduler, interleaved, concurrent=len(POINTS))
    assert set(scheduler.cells) == {SHALLOW, DEEP}
    for cell, instance in scheduler.cells.items():
        assert instance.seen == {cell} and {cell_of(t) for t in instance._trial_info} == {cell}
        assert epochs_in(trials, cell) == [1, 2, 2, 2], trials
        assert {trials[trial_id][0] for trial_id in instance.resumed} == {cell}  # the bracket's pick


PBT_POINTS = [0, 3, 4, 7]  # two trials a cell, lr 0.01 and 0.04 in each
# The trial carries the lr PBT rewrites (as the runner does for PBT's keys). 4 epochs: one exploit round,
# at epoch 2, since every exploit restarts a trial from a checkpoint (seconds on 2 busy cores).
PBT_SPACE = {"lr": tune.sample_from(lambda spec: POINTS[spec.config.trial]["lr"]), "epochs": 4}


@pytest.mark.slow  # a real Ray run
def test_sweep_wide_pbt_copies_trials_of_another_cell(ray_local, tmp_path):
    scheduler = pbt()
    fit(tmp_path, scheduler, PBT_POINTS, concurrent=len(PBT_POINTS), extra=PBT_SPACE)
    assert (DEEP, SHALLOW) in scheduler.exploits, scheduler.exploits


@pytest.mark.slow  # a real Ray run
def test_per_cell_pbt_exploits_only_within_the_cell(ray_local, tmp_path):
    # Ray's PBT draws the donor from its own population (_quantiles over the trials it was added), and the
    # cell view keeps its pause, synch and choose_trial_to_run lists to the cell: per-cell PBT works
    scheduler = PerCellScheduler(pbt, cell_of)
    fit(tmp_path, scheduler, PBT_POINTS, concurrent=len(PBT_POINTS), extra=PBT_SPACE)
    exploits = [pair for instance in scheduler.cells.values() for pair in instance.exploits]
    assert {mine for mine, _ in exploits} == {SHALLOW, DEEP} and all(a == b for a, b in exploits), exploits
    for cell, instance in scheduler.cells.items():
        assert instance.seen == {cell}


def test_cell_key_drops_the_keys_inside_a_cell_and_ignores_order():
    a = dict(depth=8, init={"name": "kaiming", "gain": [1, 2]}, lr=0.1, seed=3)
    b = dict(seed=4, lr=0.5, init={"gain": [1, 2], "name": "kaiming"}, depth=8)
    assert cell_key(a, ["lr", "seed"]) == cell_key(b, ["lr", "seed"]) and hash(cell_key(a, ["lr", "seed"]))
    assert cell_key(a, ["seed"]) != cell_key(b, ["seed"])  # lr then splits cells
    assert cell_key(dict(bn=True), []) != cell_key(dict(bn=1), [])  # equal in Python, different settings


def test_cell_sizes_count_the_trials_of_each_cell():
    grid = [dict(depth=d, init=i, seed=0) for d in (2, 8) for i in ("kaiming", "xavier")]
    assert sorted(cell_sizes(grid, ["seed"]).values()) == [1, 1, 1, 1]
    seeded = [{**config, "seed": s} for config in grid for s in (0, 1)]
    assert sorted(cell_sizes(seeded, ["seed"]).values()) == [2, 2, 2, 2]
    assert sorted(cell_sizes(POINTS, SAMPLED).values()) == [len(LRS), len(LRS)]
