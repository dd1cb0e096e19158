"""One Optuna TPE study per grid cell, in one Ray Tune run (issue 23, "tuned comparisons").

A study compares grid cells (init x depth, ...). One sweep-wide model-based search would spend its budget
where the objective is best, so the weaker arms get few, poorly tuned trials and the comparison measures
the search's preference, not the arms. PerCellSearcher gives every cell its own model-based search with
the same budget: each cell's trials come from its own Ray OptunaSearch (TPE), which learns only from that
cell's results, and each cell gets exactly `trials_per_cell` of them. The arms are then compared each at
its own tuned setting. Nothing is reimplemented: every draw is Optuna's, every event is Ray's.

How it meets Tune:
  * a suggestion is {"trial": templates[j], **values}: the planner's template trial of cell j (the
    runner's index into the plan) plus the sampled keys drawn by cell j's study;
  * cells are served round-robin over those with budget left, so cell j's k-th draw is its study's k-th
    ask whatever the timing; Searcher.FINISHED once every cell has spent its budget;
  * cell j's TPE sampler is seeded with SeedSequence([seed, j]) (cell_seed below): cells draw different,
    reproducible values. Exactly reproducible while a cell is in TPE's random start-up phase (its first
    10 completed trials); after it, a draw depends on which of the cell's trials had finished when it was
    asked, as with any OptunaSearch run more than one trial at a time;
  * Tune's param_space is ignored (the runner gives {"trial": 0} plus the domains of `space`, which every
    suggestion overrides); metric and mode come from TuneConfig through set_search_properties.

Ray is imported at the top: the class must subclass Searcher. So import this module only inside
functions that already run Ray (as sweeps/engine/cells.py), never at the top of the runner or search:
parsing flags and reading results must stay free of Ray (tests/test_layering.py).
"""
from __future__ import annotations

import logging

import numpy as np
import ray.cloudpickle as cloudpickle
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import parse_spec_vars

logger = logging.getLogger(__name__)


def cell_seed(seed: int, cell: int) -> int:
    """The TPE seed of cell `cell`: one number per (search seed, cell), far apart for neighbouring cells
    (a plain seed + cell would make sweep seed 1's cell 0 replay sweep seed 0's cell 1)."""
    return int(np.random.SeedSequence([seed, cell]).generate_state(1)[0])


class PerCellSearcher(Searcher):
    """One OptunaSearch per grid cell; `trials_per_cell` suggestions each, handed out round-robin.

    `space`: {key: Ray domain}, the keys searched in every cell. `templates`: the plan index of each
    cell's template trial, in cell order. `seed`: the sweep's --search-seed (see cell_seed).
    """

    def __init__(self, space: dict, templates: list[int], trials_per_cell: int, seed: int, study_name: str = "sweep",
                 rows=None):
        super().__init__(metric=None, mode=None)
        self._rows = rows  # sweeps.engine.feeder.AfterSnapshot: the sweep's rows, settled on restore
        templates = list(templates)
        if not templates:
            raise ValueError("PerCellSearcher: no grid cells (templates is empty)")
        if len(set(templates)) != len(templates):
            raise ValueError(f"PerCellSearcher: a template trial appears in two cells ({templates})")
        if isinstance(trials_per_cell, bool) or not isinstance(trials_per_cell, int) or trials_per_cell < 1:
            raise ValueError(f"PerCellSearcher: trials_per_cell {trials_per_cell!r} must be an integer >= 1")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"PerCellSearcher: seed {seed!r} must be an integer >= 0")
        if not space:
            raise ValueError("PerCellSearcher: empty search space; give {key: tune domain}, e.g. "
                             "{'lr': tune.loguniform(1e-5, 1e-1)}")
        if "trial" in space:
            raise ValueError("PerCellSearcher: 'trial' is the plan index each suggestion carries; it cannot be searched")
        # Converted once here so a bad space fails at construction, not at the first suggestion inside Tune
        # (convert_search_space refuses grid_search); the cells get Optuna distributions, which also spares
        # each OptunaSearch its "unresolved search space" warning.
        distributions = OptunaSearch.convert_search_space(space)
        if not distributions:
            raise ValueError(f"PerCellSearcher: the space {sorted(space)} holds no tune domain to search")
        self._space = distributions
        self._templates = templates
        self._budget = trials_per_cell
        self._seed = int(seed)
        self._study_name = study_name
        self._counts = [0] * len(templates)
        self._next = 0  # the cell asked first at the next suggestion: the round-robin position
        self._cell_of: dict[str, int] = {}  # trial_id -> cell, to route its results
        self._cells: list[OptunaSearch] | None = None  # made once metric and mode are known

    # --- what tests and reports read ---------------------------------------------------------------

    @property
    def cells(self) -> tuple[int, ...]:
        """Suggestions made so far, per cell (cell j is templates[j])."""
        return tuple(self._counts)

    @property
    def studies(self) -> list:
        """Each cell's optuna.Study (read-only use), or [] before the first suggestion."""
        return [cell._ot_study for cell in self._cells] if self._cells else []

    @property
    def templates(self) -> list[int]:
        return list(self._templates)

    @property
    def trials_per_cell(self) -> int:
        return self._budget

    # --- what Tune calls ----------------------------------------------------------------------------

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # `config` is Tune's param_space. Returning True tells Tune not to resolve its domains itself; that
        # is only safe when every suggestion overrides them all, else a trial would carry a Domain object.
        _, domains, grids = parse_spec_vars(config or {})
        stray = sorted("/".join(map(str, path)) for path, _ in [*domains, *grids]
                       if "/".join(map(str, path)) not in self._space)
        if stray:
            raise ValueError(f"PerCellSearcher: param_space samples {', '.join(stray)}, which the cells do not "
                             f"search ({', '.join(sorted(self._space))}); give param_space only 'trial' and those keys")
        if self._cells is not None and ((metric and metric != self._metric) or (mode and mode != self._mode)):
            raise ValueError(f"PerCellSearcher: the cells already search for {self._mode} {self._metric}, "
                             f"not {mode} {metric}")
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def _make_cells(self) -> list[OptunaSearch]:
        if not self._metric or not self._mode:
            raise RuntimeError("PerCellSearcher: no metric/mode; give TuneConfig(metric=..., mode=...) and a "
                               "non-empty param_space (Tune calls set_search_properties only then)")
        # In-memory storage (none given): each cell's study lives in its OptunaSearch and is pickled with it.
        return [OptunaSearch(space=self._space, metric=self._metric, mode=self._mode, seed=cell_seed(self._seed, j),
                             study_name=f"{self._study_name}-cell{j}")
                for j in range(len(self._templates))]

    def suggest(self, trial_id: str):
        if all(n >= self._budget for n in self._counts):
            return Searcher.FINISHED
        if self._cells is None:  # a fresh state: a new sweep, or one whose Ray state was lost or torn
            self._cells = self._make_cells()
            if self._rows is not None:  # trials a killed driver started under ids Tune will not run: drawn again
                self._rows.drop_unknown(())
        n = len(self._templates)
        for step in range(n):
            j = (self._next + step) % n
            if self._counts[j] >= self._budget:
                continue
            values = self._cells[j].suggest(trial_id)
            if values is None:  # this cell cannot suggest now; another may
                continue
            self._counts[j] += 1
            self._cell_of[trial_id] = j
            self._next = (j + 1) % n
            return {"trial": self._templates[j], **values}
        return None

    def _cell(self, trial_id: str) -> OptunaSearch | None:
        j = self._cell_of.get(trial_id)
        if j is None:
            # Tune reports only trials it got from suggest(); one unknown here was not suggested by this
            # searcher (a state restored from another run), and no cell's study has an Optuna trial for it.
            logger.warning("PerCellSearcher: result for trial %s, which no cell suggested; ignored", trial_id)
            return None
        return self._cells[j]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if (cell := self._cell(trial_id)) is not None:
            cell.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # An errored trial still counts against its cell's budget: it was drawn, and giving the cell another
        # draw would make the cells' budgets depend on crashes.
        if (cell := self._cell(trial_id)) is not None:
            cell.on_trial_complete(trial_id, result=result, error=error)

    # Tune saves the searcher with its experiment state and, on Tuner.restore, calls restore() on the
    # searcher unpickled from tuner.pkl. The whole state goes, as OptunaSearch saves itself (its __dict__):
    # the cells' studies and samplers (TPE continues where it stopped), the budgets spent and the
    # round-robin position (no cell gets more than trials_per_cell), and trial_id -> cell (trials that were
    # running when the run stopped report to their cell when Tune runs them again). cloudpickle, as Tune uses.
    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as file:
            cloudpickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as file:
            state = cloudpickle.load(file)
        # Restoring another sweep's state would hand out its budgets as this one's.
        mine = (self._templates, self._budget, self._seed, sorted(self._space))
        theirs = (state["_templates"], state["_budget"], state["_seed"], sorted(state["_space"]))
        if mine != theirs:
            raise ValueError(f"PerCellSearcher.restore: the saved searcher has (templates, trials_per_cell, seed, "
                             f"keys) = {theirs}, this one {mine}")
        rows = self._rows
        self.__dict__.update(state)
        self._rows = rows
        # Trials suggested after Tune's last snapshot have rows on storage under trial ids Tune will not run
        # again, and this state does not count them against their cells: delete those rows, and their cells
        # draw again, so each cell still ends with exactly trials_per_cell trials.
        if rows is not None:
            dropped = rows.drop_unknown(self._cell_of)
            if dropped:
                logger.info("PerCellSearcher: %d trial(s) started after Ray's last snapshot are drawn again: %s",
                            len(dropped), ", ".join(dropped))
