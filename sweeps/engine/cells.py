"""Per-cell scope for Ray Tune's own schedulers (issue 23, "tuned comparisons").

A study compares grid cells (init x depth, ...). A sweep-wide ASHA ranks every trial against every other,
so a cell that starts slowly (deep nets) is stopped at the first rung, before it is compared with its peers.
PerCellScheduler keeps one instance of a real Ray scheduler per cell and hands each trial's events to its
cell's instance only, so successive halving, median stopping, HyperBand's brackets and PBT's exploits all
happen among the trials of one cell. Nothing is reimplemented: every decision is Ray's.

Ray is imported at the top: the class must subclass TrialScheduler. So import this module only inside
functions that already run Ray (as the builders in schedulers.SCHEDULERS import Ray's schedulers), never at the top of
the runner or search: parsing flags and reading results must stay free of Ray (tests/test_layering.py).
"""
from __future__ import annotations

from typing import Callable, Hashable

import ray.cloudpickle as cloudpickle
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from trainables.errors import ConfigError


class _CellView:
    """What a cell's scheduler sees of the TuneController: the same controller, but get_trials() and
    get_live_trials() list only the cell's trials. That is what keeps PBT's pause decisions, its synch
    barrier and every scheduler's choose_trial_to_run inside the cell (they index their own per-trial
    state by these lists, and would fail on a trial of another cell). Everything else -- stop_trial,
    pause_trial, _schedule_trial_save, search_alg -- goes to the real controller, which reports the
    consequences back through PerCellScheduler to this same cell."""

    def __init__(self, controller, in_cell: Callable[[Trial], bool]):
        self._controller = controller
        self._in_cell = in_cell

    def get_trials(self):
        return [trial for trial in self._controller.get_trials() if self._in_cell(trial)]

    def get_live_trials(self):
        return {trial for trial in self._controller.get_live_trials() if self._in_cell(trial)}

    def __getattr__(self, name):
        return getattr(self._controller, name)


class PerCellScheduler(TrialScheduler):
    """One `make_scheduler()` instance per cell (created when the cell's first trial arrives); each
    trial's events go to its cell's instance, so a trial is only ever ranked against its own cell.

    `make_scheduler` is called with no arguments and must return a fresh scheduler (ASHAScheduler,
    AsyncHyperBandScheduler, HyperBandScheduler, MedianStoppingRule, PopulationBasedTraining, ...),
    without metric/mode: those come from TuneConfig through set_search_properties, as Ray wants.
    `cell_of(trial)` names the trial's cell (the runner: Plan.cell_of of the trial's planned spec).
    With PBT, every key PBT mutates must be left out of the cell (a sampled key), since PBT rewrites
    trial.config: a trial's cell is fixed when it is first added, but a resumed sweep's scheduler comes
    fresh from tuner.pkl and asks `cell_of` again (the runner's `trial` index into its plan is safe)."""

    def __init__(self, make_scheduler: Callable[[], TrialScheduler], cell_of: Callable[[Trial], Hashable]):
        super().__init__()
        self._make_scheduler = make_scheduler
        self._cell_of = cell_of
        # One instance that never sees a trial: it answers metric, mode and supports_buffered_results
        # before any cell exists (Tune asks at start), and vets set_search_properties once for all cells.
        self._template = make_scheduler()
        if not isinstance(self._template, TrialScheduler):
            raise ConfigError(f"per-cell scheduling: make_scheduler returned {type(self._template).__name__}, "
                              "not a Ray TrialScheduler")
        self._supports_buffered_results = self._template.supports_buffered_results
        self._search_properties: tuple | None = None  # applied to every cell's instance, later ones too
        self._cells: dict[Hashable, TrialScheduler] = {}  # in the order cells were first seen
        # trial_id -> cell, fixed at the trial's first add: PBT rewrites trial.config, and a requeued
        # trial (an error, then on_trial_add again) must land in the cell that holds its history
        self._trial_cells: dict[str, Hashable] = {}

    @property
    def metric(self):
        return self._template.metric

    @property
    def mode(self):
        return getattr(self._template, "_mode", None)

    @property
    def cells(self) -> dict[Hashable, TrialScheduler]:
        """Each cell's scheduler (read-only use: tests, reports)."""
        return dict(self._cells)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        # Accept exactly when a lone instance would: Ray then reports a metric/mode clash just as it would
        # for the plain scheduler.
        if not self._template.set_search_properties(metric, mode, **spec):
            return False
        if self._search_properties is not None:  # a later Tune run of the sweep passes none: keep the first's
            metric = metric if metric is not None else self._search_properties[0]
            mode = mode if mode is not None else self._search_properties[1]
        self._search_properties = (metric, mode, spec)
        for scheduler in self._cells.values():
            scheduler.set_search_properties(metric, mode, **spec)
        return True

    def _new_cell_scheduler(self) -> TrialScheduler:
        scheduler = self._make_scheduler()
        if self._search_properties is not None:
            metric, mode, spec = self._search_properties
            if not scheduler.set_search_properties(metric, mode, **spec):
                raise ConfigError("per-cell scheduling: make_scheduler must return a fresh scheduler each call "
                                  "(this one refused the metric/mode the first one accepted)")
        return scheduler

    def _route(self, controller, trial: Trial) -> tuple[TrialScheduler, _CellView]:
        cell = self._trial_cells.get(trial.trial_id)
        if cell is None:
            cell = self._trial_cells[trial.trial_id] = self._cell_of(trial)
        if cell not in self._cells:
            self._cells[cell] = self._new_cell_scheduler()
        return self._cells[cell], self._view(controller, cell)

    def _view(self, controller, cell: Hashable) -> _CellView:
        return _CellView(controller, lambda trial: self._trial_cells.get(trial.trial_id) == cell)

    def on_trial_add(self, tune_controller, trial: Trial):
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_add(view, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        scheduler, view = self._route(tune_controller, trial)
        return scheduler.on_trial_result(view, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_complete(view, trial, result)

    def on_trial_error(self, tune_controller, trial: Trial):
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_error(view, trial)

    def on_trial_remove(self, tune_controller, trial: Trial):
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_remove(view, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """Each cell's scheduler picks among its own trials; of those picks, a PENDING trial goes before a
        PAUSED one, then the earlier trial in Tune's order. Per scheduler, that is right because:
        - FIFO-based ones (ASHA/AsyncHyperBand, MedianStoppingRule, FIFO) pick their first PENDING trial,
          else their first PAUSED one; the rule above then returns exactly what one sweep-wide instance
          would, so scope changes nothing here.
        - HyperBandScheduler only resumes a PAUSED trial its bracket has marked for unpausing; a global
          FIFO pick would resume trials their bracket is still holding, so the choice must be the cell's.
        - PopulationBasedTraining picks the least-trained trial of its population (in synch mode, only
          ones behind the next sync point) and indexes its state by trial, so it must see only its cell;
          a PENDING trial has (as a rule) trained least, so PENDING first keeps its rule across cells.
        The cells' own choices are idempotent and the tie-break is fixed, so this is idempotent too."""
        position = {trial.trial_id: i for i, trial in enumerate(tune_controller.get_trials())}
        picks = [scheduler.choose_trial_to_run(self._view(tune_controller, cell))
                 for cell, scheduler in self._cells.items()]
        picks = [trial for trial in picks if trial is not None]
        if not picks:
            return None
        return min(picks, key=lambda trial: (trial.status != Trial.PENDING, position.get(trial.trial_id, 0)))

    def debug_string(self) -> str:
        kind = type(self._template).__name__
        lines = [f"PerCellScheduler: one {kind} per cell, {len(self._cells)} cells"]
        for cell, scheduler in self._cells.items():
            label = " ".join(f"{key}={value}" for key, value in cell) if _is_cell_key(cell) else str(cell)
            lines.append(f"[{label}] " + scheduler.debug_string().replace("\n", "\n    "))
        return "\n".join(lines)

    # Tune 2.60 never calls save/restore (it pickles the scheduler inside tuner.pkl, before any trial runs;
    # ray-project/ray#30838), but the interface asks for them. cloudpickle, as Tune uses: make_scheduler
    # and cell_of are often lambdas, which plain pickle refuses.
    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as file:
            cloudpickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(cloudpickle.load(file))


def _is_cell_key(cell) -> bool:
    return isinstance(cell, tuple) and all(isinstance(item, tuple) and len(item) == 2 for item in cell)
