"""The plan's trials handed to Tune in order, one per `suggest()`, at O(1) each (issue 25).

The runner used to give Tune `{"trial": tune.grid_search(list(range(n)))}`. Tune's variant generator
deep-copies the whole spec, index list included, for every trial it makes: O(n) per trial, so O(n^2) per
sweep (1.4 s at 1,000 trials, about 140 s at 10,000; docs/benchmarks.md). The runner already holds the
whole plan, so a Searcher that counts is all Tune needs: trial i gets `{"trial": i}`. A sweep split into
several Tune runs (sweeps/engine/phase.py) has one feeder per run, for its span of plan indices. (Ray's PBT
refuses any search algorithm: a PBT population, small by nature, still comes from grid_search.)

Resume: Tune saves the searcher with its experiment state in the same snapshot as the trials, and on
`Tuner.restore` calls `restore()`: the count goes on from where the trials Tune restored end, and the draws
stay those of the plan. Tune snapshots every 10 s or more, so a killed driver has usually handed out trials
after its last snapshot, which Tune's state does not hold but the Parquet store does, under trial ids Tune
will not use again. `AfterSnapshot` settles them from the store's trials rows (each carries its
`plan_index`): a trial that ended is not handed out again, and the rows of one that had not are deleted
before it starts again from scratch. So every planned trial ends with one row, whenever the driver died.

Ray copies its state files to storage in place, so on local disk a driver killed mid-copy can leave one torn
(an empty searcher-state file, seen in CI). A torn feeder state is rebuilt from Tune's experiment state next
to it: the count goes on after the last plan index Tune holds. A run Tune cannot restore (no state saved, or
its experiment state torn: sweeps/engine/phase.py starts it afresh) has a feeder that restore() never saw;
it settles at its first suggestion, from the run's first plan index.

Ray is imported at the top: the class must subclass Searcher. Import this module only inside functions
of modules that must stay Ray-free.
"""
from __future__ import annotations

import json
import os

from ray.tune.search import Searcher

from sweeps.results.store import ENDED, PHASE, Store


class AfterSnapshot:
    """The sweep's trials rows of the plan indices handed out after Tune's last snapshot. Strings only, so it
    pickles with the Tuner (tuner.pkl) and reads the store when the sweep is restored."""

    def __init__(self, storage: str, name: str, phase: str):
        self.storage, self.name, self.phase = storage, name, phase

    def settle(self, first: int, end: int) -> set[int]:
        """Plan indices in [first, end) that ended (not to be handed out again); rows of those that had not
        are deleted."""
        store = Store(self.storage, self.name)
        trials = store.read_table("trials")
        if "plan_index" not in trials.columns or not len(trials):
            return set()
        phase = trials[PHASE].fillna("search") if PHASE in trials.columns else "search"
        later = trials[(phase == self.phase) & (trials["plan_index"] >= first) & (trials["plan_index"] < end)]
        ended = later["status"].isin(ENDED)
        store.drop_trials(later.loc[~ended, "trial_id"].tolist())
        return {int(i) for i in later.loc[ended, "plan_index"]}


    def drop_unknown(self, known) -> list[str]:
        """Delete the rows of this phase's trials whose ids are not in `known` (the trials a searcher had
        suggested at Tune's last snapshot): Tune will never run those trial ids again. Returns the ids dropped."""
        store = Store(self.storage, self.name)
        trials = store.read_table("trials")
        if not len(trials):
            return []
        phase = trials[PHASE].fillna("search") if PHASE in trials.columns else "search"
        unknown = sorted(set(trials.loc[phase == self.phase, "trial_id"]) - set(known))
        store.drop_trials(unknown)
        return unknown


class PlanFeeder(Searcher):
    """Suggests trial start, start + 1, ..., size - 1 of the plan, then FINISHED (one Tune run's share)."""

    def __init__(self, size: int, rows: AfterSnapshot | None = None, start: int = 0):
        super().__init__()
        self._size, self._start, self._next = size, start, start
        self._rows = rows
        self._ended: set[int] = set()  # plan indices that ended after Tune's last snapshot (a restored sweep)
        self._settled = False  # settled with the store once this process; never pickled (tuner.pkl)

    def __getstate__(self):
        return {**self.__dict__, "_settled": False}

    @property
    def handed_out(self) -> int:
        return self._next - self._start

    def settle(self) -> None:
        """Before a run hands anything out: skip the trials from here on that ended, and delete the rows of
        those that had not (AfterSnapshot). restore() does this itself; otherwise the first suggest() does
        (a new run reads no rows of its span; a run started afresh reads those a killed driver left)."""
        self._settled = True
        if self._rows is not None:
            self._ended = self._rows.settle(self._next, self._size)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # Nothing is searched here: the plan fixed every trial. Accepting lets Tune pass the scheduler's
        # metric and mode (an ASHA sweep) without refusing this searcher.
        return True

    def suggest(self, trial_id: str):
        if not self._settled:  # a new run, or one Ray could not restore and started afresh
            self.settle()
        while self._next in self._ended:
            self._next += 1
        if self._next >= self._size:
            return Searcher.FINISHED
        index, self._next = self._next, self._next + 1
        return {"trial": index}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the plan does not learn from results

    # Three numbers, whatever the sweep's size; plain JSON, so a saved state is readable and never unpickles code.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as file:
            json.dump({"start": self._start, "size": self._size, "next": self._next}, file)

    def restore(self, checkpoint_path: str) -> None:
        try:
            with open(checkpoint_path) as file:
                state = json.load(file)
        except ValueError:  # torn by a driver killed while Ray copied it (see the module's docstring)
            state = {"start": self._start, "size": self._size,
                     "next": next_after_tune_state(os.path.dirname(checkpoint_path), self._start, self._size)}
        if (state["start"], state["size"]) != (self._start, self._size):  # it would skip or repeat trials
            raise ValueError(f"PlanFeeder.restore: the saved state hands out plan trials {state['start']} to "
                             f"{state['size'] - 1}, this one {self._start} to {self._size - 1}")
        self._next = int(state["next"])
        self.settle()


def next_after_tune_state(folder: str, start: int, size: int) -> int:
    """The plan index after the last one in [start, size) among the trials of the newest Tune experiment
    state in `folder` (Ray's staging copy of it, read with Ray's own loaders); `start` where it holds none.
    Raises where that state is unreadable too: Ray then starts the run afresh."""
    from pyarrow.fs import LocalFileSystem
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
    from ray.tune.utils.serialization import _loads_with_cloudpickle
    path = _find_newest_experiment_checkpoint(folder, fs=LocalFileSystem())
    if path is None:
        raise ValueError(f"PlanFeeder.restore: its saved state is torn and {folder} holds no Tune experiment state")
    with open(path) as file:
        state = _loads_with_cloudpickle(file.read())
    indices = [_loads_with_cloudpickle(trial)["config"]["trial"] for trial, _ in state["trial_data"]]
    return max((i + 1 for i in indices if start <= i < size), default=start)
