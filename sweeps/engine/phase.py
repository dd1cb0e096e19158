"""One phase of a sweep (the search, or the confirmation of each cell's winner) as Ray Tune runs.

A phase's trials go to Tune in plan order through a PlanFeeder (sweeps/engine/feeder.py). Tune keeps every
trial of a run in its experiment state, 16-20 KB each, and writes that state whole at every snapshot: 16 MB
per snapshot at 1,000 trials, 160 MB at 10,000 (docs/benchmarks.md). So a search of more than
`--trials-per-run` trials (default 5,000) runs as consecutive Tune runs of that many trials, in the Tune
folders `tune`, `tune-2`, `tune-3`, ..., all writing into the one Parquet store, with one console whose
counts and clock span the phase. The state any snapshot writes is then bounded by the run size.

Across the runs of a phase, the scheduler is one object: ASHA's rungs (or each cell's, under
--search-scope cell) keep the results of earlier runs, so trials are ranked against all that went before,
as in one run; only at a run's end does the concurrency dip while its last trials finish. A resume finds
the first run with a trial that has not ended (by the trials rows' plan_index), restores it, and goes on
from there; the restored run's scheduler (from its tuner.pkl, which holds the earlier runs' rungs) carries
on into the later runs. Optuna's per-cell studies and PBT's populations stay in one run.
"""
from __future__ import annotations

import glob
import os
import pickle
import random
import time

import numpy as np

from sweeps.engine import search
from sweeps.engine.flags import RunSettings
from sweeps.results.plan import Plan
from sweeps.results.store import ENDED, PHASE, Store, is_uri
from trainables.errors import ConfigError


class Phase:
    """One phase of a sweep: the search (Tune's folders `tune`, `tune-2`, ...), or the confirmation of each
    cell's winner on fresh seeds (folder `confirm`, FIFO). Both write into the one Parquet store, their rows
    told apart by `phase`; each resumes from its own Tune state."""

    def __init__(self, name: str, plan: Plan, meta: dict, tune_name: str, store: Store, datasets: dict, args,
                 run: RunSettings):
        from ray import tune

        from trainables.ray_trainable import OncePerWorker, run_trial
        self.name, self.plan, self.meta, self.tune_name = name, plan, {**meta, "phase": name}, tune_name
        self.store, self.args, self.run = store, args, run
        settings = plan.search
        self.trainable = tune.with_resources(
            tune.with_parameters(run_trial, plan=OncePerWorker(plan), datasets=datasets,
                                 cpus_per_trial=args.cpus_per_trial,
                                 search=dict(metric=settings["metric"], mode=settings["mode"])),
            {"cpu": args.cpus_per_trial, "gpu": run.gpus_per_trial})
        self.verbose = min(args.verbose, 2)  # 0: Ray's trial tables off; the ConsoleView prints instead
        self.scheduler = None  # built for the phase's first run, carried into the later ones
        self.started: float | None = None  # time.monotonic() at the phase's start: the console's clock

    @classmethod
    def confirming(cls, plan: Plan, meta: dict, confirmation: dict, store: Store, datasets: dict, args, run) -> Phase:
        from sweeps.engine.confirm import confirm_plan
        confirming = confirm_plan(plan, confirmation)
        return cls("confirm", confirming, {**meta, "scheduler": "fifo", "searcher": "grid",
                                           "trials": len(confirming), "search_keys": []},
                   "confirm", store, datasets, args, run)

    def runs(self) -> list[tuple[int, int, str]]:
        return run_spans(len(self.plan), self.plan.search.get("trials_per_run") if self.name == "search" else None,
                         self.tune_name)

    def tune_path(self, folder: str) -> str:
        return f"{self.store.uri}/{folder}"

    def console(self, recorder, final: bool = True):  # after the Recorder: it reads the row the Recorder decided
        from sweeps.engine.console import ConsoleView
        return ConsoleView(recorder, self.args.progress_every, since=self.started, final=final)

    def restore(self) -> tuple[int, object]:
        """(the run to go on with, its Tuner as the killed driver left it, or None where Ray saved no state
        for it). With several runs, the runs whose trials all ended are done."""
        runs = self.runs()
        k = 0 if len(runs) == 1 else self.first_unfinished(runs)
        if k == len(runs):
            return k, None
        final = k == len(runs) - 1
        tuner = restore(self.tune_path(runs[k][2]), self.trainable, lambda rec: self.console(rec, final), self.verbose,
                        searcher_state=self.plan.search["searcher"] == "optuna")
        if tuner is not None and len(runs) > 1:  # the scheduler that ranked the earlier runs' trials goes on
            config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)  # no public way in Ray 2.60
            self.scheduler = getattr(config, "scheduler", None)
        return k, tuner

    def first_unfinished(self, runs) -> int:
        trials = self.store.read_table("trials")
        if not len(trials) or "plan_index" not in trials.columns:
            return 0
        phase = trials[PHASE].fillna("search") if PHASE in trials.columns else "search"
        ended = set(trials.loc[(phase == self.name) & trials["status"].isin(ENDED), "plan_index"].astype(int))
        return next((k for k, (start, end, _) in enumerate(runs) if not set(range(start, end)) <= ended), len(runs))

    def fit(self, restored: tuple[int, object] | None) -> None:
        """Run the phase to its end (or to Ctrl-C, which makes fit() return, or the time budget), run by run,
        and after each fix the rows of trials whose end the callbacks missed (reconcile)."""
        from sweeps.engine.recorder import reconcile
        self.started = time.monotonic()
        runs = self.runs()
        first, tuner = restored if restored is not None else (0, None)
        for k in range(first, len(runs)):
            start, end, folder = runs[k]
            if tuner is None:
                if self.name == "confirm" and self.args.resume:  # a confirmation Ray kept no state of: from scratch
                    from sweeps.engine.confirm import phase_rows
                    self.store.drop_trials(phase_rows(self.store.read_table("trials"), "confirm")["trial_id"])
                budget = self.budget_left()
                if budget is not None and budget <= 0:
                    return
                tuner = self.tuner(k, budget)
            results = tuner.fit()  # Ctrl-C makes this return normally; unfinished trials are found by summarize
            reconcile(self.store, results, self.plan, self.meta)
            tuner = None
            if k + 1 < len(runs) and self.first_unfinished(runs[k:k + 1]) == 0:
                return  # this run stopped early (Ctrl-C, the time budget): the next must not start

    def budget_left(self) -> float | None:
        budget = self.plan.search["time_budget"]
        return None if budget is None else budget - (time.monotonic() - self.started)

    def tuner(self, k: int = 0, budget: float | None = None):
        """A new Tuner for run k: a new sweep, a new confirmation, a later run of a large search, or a resumed
        one that died before Ray saved any state."""
        from ray import tune

        from sweeps.engine.recorder import Recorder
        from sweeps.engine.trackers.callback import callbacks as tracker_callbacks
        from sweeps.engine.tune_state import SlimTuneState
        plan, settings, store, run = self.plan, self.plan.search, self.store, self.run
        runs = self.runs()
        start, end, folder = runs[k]
        adaptive = settings["scheduler"] != "fifo" or settings["searcher"] == "optuna"
        if self.scheduler is None:
            if settings["scheduler"] == "pbt":  # PBT explores with Python's and numpy's global generators
                random.seed(settings["search_seed"])
                np.random.seed(settings["search_seed"])
            self.scheduler, told = search.make_scheduler(plan), False
        else:
            told = True  # a carried-over scheduler has its metric and mode: Ray refuses to set them twice
        searcher = search.make_searcher(plan, store.name, (store.storage, store.name, self.name), (start, end))
        return tune.Tuner(
            self.trainable,
            param_space=param_space(plan),
            # Reusing actors skips a process start (Python, torch, CUDA context: about 10 s a trial on
            # the 2-core CPU, docs/benchmarks.md) and keeps trainables.fast's compile cache. `train`
            # sets every piece of process-wide state it relies on, so trials stay independent.
            tune_config=tune.TuneConfig(
                reuse_actors=not self.args.fresh_actors, time_budget_s=budget,
                num_samples=settings["trials"] if settings["searcher"] == "optuna" else
                1 if settings["scheduler"] == "pbt" else end - start,  # PBT: the grid_search makes the trials
                # metric/mode here only: Ray raises when the scheduler or searcher has them too
                metric="objective" if adaptive and not told else None,
                mode=settings["mode"] if adaptive and not told else None,
                scheduler=self.scheduler, search_alg=searcher),
            run_config=tune.RunConfig(
                name=folder, storage_path=store.uri, verbose=self.verbose,
                # the trackers (--log) and the console view come after the Recorder: they show the
                # status it decided
                callbacks=[recorder := Recorder(store.storage, store.name, self.meta, plan),
                           *tracker_callbacks(list(run.log), recorder, sorted(plan.sampled)),
                           self.console(recorder, final=k == len(runs) - 1),
                           SlimTuneState()],  # last: it takes the lists out of each result
                failure_config=tune.FailureConfig(max_failures=run.max_failures),
                # PBT warns below 3: it must keep the checkpoint a donor is copied from
                checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if settings["scheduler"] == "pbt" else 2)))


def run_spans(trials: int, per_run: int | None, folder: str) -> list[tuple[int, int, str]]:
    """(first plan index, end, Tune folder) of each Tune run of a phase of `trials` trials: one run, in
    `folder`, unless `per_run` is set and smaller; then `folder`, `folder-2`, ... of per_run trials each."""
    if not per_run or trials <= per_run:
        return [(0, trials, folder)]
    return [(start, min(start + per_run, trials), folder if k == 0 else f"{folder}-{k + 1}")
            for k, start in enumerate(range(0, trials, per_run))]


def restore(tune_path: str, trainable, console, verbose: int, searcher_state: bool = True):
    """The Tuner of an interrupted sweep, or None where Ray saved no state before the driver died. A sweep
    an earlier version started (its pickled callbacks name classes that have moved or gone) cannot be
    restored: a ConfigError says so."""
    from ray import tune
    if not tune.Tuner.can_restore(tune_path):
        return None
    if (torn := torn_tune_state(tune_path, searcher_state)) is not None:
        print(f"note: Ray's last snapshot of this run ({torn}) is torn: its driver died while Ray copied it. "
              "Its unfinished trials start again from scratch; those that ended keep their rows.", flush=True)
        return None
    try:
        tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    except (AttributeError, ImportError) as exc:  # pickle's "Can't get attribute ..." / "No module named ..."
        raise ConfigError(f"--resume: this sweep was started by an earlier version of the code, whose saved Ray "
                          f"state this version cannot read ({str(exc).splitlines()[0]}); start it again under a "
                          "new --name") from None
    renew_console(tuner, console, verbose)
    return tuner


def torn_tune_state(tune_path: str, searcher_state: bool) -> str | None:
    """The name of a Tune state file in the local folder `tune_path` that cannot be read, else None. Ray
    copies its state files to storage in place, so on local disk a driver killed mid-copy can leave one
    torn (an object store's PUT is atomic); Ray would log the error with its traceback and start the run
    afresh with its searcher unrestored. Checked, each read as Ray reads it: the newest experiment state,
    search-generator (or variant-generator) state, and with `searcher_state` the searcher's own (a
    PlanFeeder's is JSON, and it rebuilds a torn one from the experiment state: sweeps/engine/feeder.py)."""
    import ray.cloudpickle as cloudpickle
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import BasicVariantGenerator, SearchGenerator, Searcher
    from ray.tune.utils.serialization import _loads_with_cloudpickle
    tune_path = tune_path.removeprefix("file://")
    if is_uri(tune_path):
        return None
    readers = {TuneController: lambda data: _loads_with_cloudpickle(data.decode()),
               SearchGenerator: cloudpickle.loads, BasicVariantGenerator: cloudpickle.loads}
    if searcher_state:
        readers[Searcher] = cloudpickle.loads
    for cls, read in readers.items():
        paths = glob.glob(os.path.join(tune_path, cls.CKPT_FILE_TMPL.format("*")))
        if not paths:
            continue
        newest = max(paths)  # Ray's own choice: the names carry the run's start time
        try:
            with open(newest, "rb") as file:
                read(file.read())
        except (ValueError, EOFError, pickle.UnpicklingError):  # empty or cut short
            return os.path.basename(newest)
    return None


def renew_console(tuner, console, verbose: int) -> None:
    """A restored Tuner brings back the first run's callbacks and verbosity (Tuner.restore takes no new
    RunConfig), so this run's --verbose and --progress-every would be lost. Reach into the restored run
    config (Tuner._local_tuner: no public way in Ray 2.60) and put a fresh ConsoleView after the restored
    Recorder, replacing the old one, and a SlimTuneState last."""
    from sweeps.engine.console import ConsoleView
    from sweeps.engine.recorder import Recorder
    from sweeps.engine.tune_state import SlimTuneState
    local = getattr(tuner, "_local_tuner", None)
    run_config = local.get_run_config() if local is not None else None
    if run_config is None:  # Ray client mode: the restored view prints with the first run's settings
        return
    run_config.verbose = verbose
    callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, (ConsoleView, SlimTuneState))]
    recorder = next((c for c in callbacks if isinstance(c, Recorder)), None)
    if recorder is not None:
        run_config.callbacks = callbacks + [console(recorder), SlimTuneState()]


def param_space(plan: Plan) -> dict:
    """What Tune's config starts from: every trial's config is this plus its searcher's suggestion. Trials
    carry an index into the plan (sweeps/engine/feeder.py hands them out; Ray would expand dicts inside
    the configs). An Optuna trial also carries the keys the searcher picks. Ray's PBT refuses searchers, so
    a PBT population comes from a grid_search over the indices, each trial carrying the keys PBT perturbs,
    starting at its spec's values, since PBT mutates the trial's config in place (Plan.for_trial reads them
    back)."""
    from ray import tune
    settings = plan.search
    if settings["searcher"] == "optuna":
        return {"trial": 0, **{k: node.domain() for k, node in plan.sampled.items()}}
    if settings["scheduler"] != "pbt":
        return {"trial": 0}
    space = {"trial": tune.grid_search(list(range(len(plan))))}
    for key in settings.get("pbt_mutate", []):
        start = [spec.config[key] for spec in plan]
        space[key] = tune.sample_from(lambda spec, start=start: start[spec.config.trial])
    return space
