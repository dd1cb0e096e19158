"""Adaptive search on Ray Tune's own machinery: schedulers that stop or perturb trials, and model-based
searchers, with the settings recorded in sweep.json and every outcome in Parquet.

    --search random   the default when a key is sampled: `--samples N` draws per grid cell, made in
                      plan() with Ray's own domains (sweeps/engine/space.py), so --dry-run lists what runs
    --search optuna   Ray's OptunaSearch (TPE): one study per grid cell (sweeps/engine/cellsearch.py), each
                      with `--trials N`, all behind one ConcurrencyLimiter
    --scheduler fifo | asha | hyperband | median | pbt   (sweeps/engine/schedulers.py: one table)
    --search-scope    cell: a scheduler ranks a trial only against its own grid cell (sweeps/engine/cells.py);
                      sweep: against every trial of the sweep
    --confirm K       then each cell's best configuration again on K fresh seeds (sweeps/engine/confirm.py)

Schedulers and searchers see one number per epoch, `objective` (trainables/ray_trainable.py): the
metric (`--metric`, default val_acc where every trial has a validation split, else test_acc), or the
worst finite value when the trial diverged; Parquet still records such a trial as `diverged`.
"""
from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping

from sweeps.engine.schedulers import MUTABLE, SCHEDULERS, flag_help
from sweeps.results.naming import differing
from trainables.errors import ConfigError

SEARCHERS = ("grid", "random", "optuna")
SCOPES = ("cell", "sweep")
DEFAULT_OPTUNA_TRIALS = 16
# Tune's experiment state holds every trial (16-20 KB each) and each snapshot writes it whole, so a sweep
# runs as consecutive Tune runs of at most this many trials (sweeps/engine/phase.py). Each new run starts
# its trial actors again (about 60 s for 16 on the 2-core bench machine), hence runs this large.
DEFAULT_TRIALS_PER_RUN = 5000
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")


def add_args(p) -> None:
    g = p.add_argument_group("search and early stopping (see the README section)")
    g.add_argument("--samples", type=int, default=1, help="draws of the sampled keys per grid cell (random search)")
    g.add_argument("--search-seed", type=int, default=0, help="fixes every draw (recorded in sweep.json)")
    g.add_argument("--constant-draws", action="store_true",
                   help="the same draws in every grid cell, so cells compare pair by pair")
    g.add_argument("--search", choices=("random", "optuna"), default=None,
                   help="random (default with sampled keys) | optuna (TPE, one study per grid cell; needs "
                        "sampled keys)")
    g.add_argument("--trials", type=int, default=None,
                   help=f"--search optuna: trials per grid cell (default {DEFAULT_OPTUNA_TRIALS})")
    g.add_argument("--search-scope", default=None, metavar="cell|sweep",
                   help="cell: a scheduler ranks each trial only against the trials of its own grid cell (one "
                        "ASHA/HyperBand/median/PBT per cell, in one run); sweep: against every trial "
                        "(default: the study's, else sweep; --search optuna is always per cell)")
    g.add_argument("--search-axis", action="append", default=[], metavar="KEY",
                   help="a grid axis searched inside each cell like a sampled key, e.g. an lr grid under "
                        "--search-scope cell (repeatable)")
    g.add_argument("--confirm", type=int, default=None, metavar="K",
                   help="after the search, train each cell's best configuration (picked on the validation "
                        "split) again with K seeds no search trial used, for the full epochs")
    g.add_argument("--max-concurrent", type=int, default=4, help="--search optuna: trials in flight at once")
    g.add_argument("--time-budget", type=float, default=None, help="stop starting trials after this many seconds")
    g.add_argument("--trials-per-run", type=int, default=DEFAULT_TRIALS_PER_RUN, metavar="N",
                   help="a larger sweep runs as consecutive Ray Tune runs of N trials each, into one store, so "
                        "Tune's saved state stays small; 0: one run (default %(default)s; --search optuna "
                        "and --scheduler pbt always use one run)")
    g.add_argument("--scheduler", choices=tuple(SCHEDULERS), default="fifo", help="; ".join(
        f"{k}: {s.summary}" for k, s in SCHEDULERS.items()))
    g.add_argument("--metric", default=None, help=f"what schedulers and searchers optimise: {', '.join(METRICS)} "
                   "(default val_acc with a validation split, else test_acc)")
    g.add_argument("--mode", choices=("max", "min"), default=None, help="default: max for *_acc, min for *_loss")
    g.add_argument("--grace-period", type=int, default=1, help=flag_help("grace_period"))
    g.add_argument("--reduction-factor", type=float, default=3.0, help=flag_help("reduction_factor"))
    g.add_argument("--max-t", type=int, default=None, help=flag_help("max_t"))
    g.add_argument("--pbt-mutate", default="lr,weight_decay", help=flag_help("pbt_mutate"))
    g.add_argument("--pbt-interval", type=int, default=1, help=flag_help("pbt_interval"))


def settings(args, trials, sampled: dict) -> dict:
    """The validated search settings of this sweep (recorded in sweep.json as "search"); ConfigError on misuse.

    `trials`: the planned TrialSpecs; `sampled`: {key: Sampled}. Reads `args`, never writes it.
    """
    searcher = args.search or ("random" if sampled else "grid")
    configs = [t.config for t in trials]
    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: must be >= 1")
    if args.samples > 1 and not sampled:
        raise ConfigError(f"--samples {args.samples}: nothing is sampled; give a distribution, "
                          "e.g. --grid lr=loguniform:1e-5:1")
    scope, axes = scope_settings(args, configs, sampled, searcher)
    inside = {"seed", *sampled, *axes}
    sizes = cell_sizes(configs, inside)
    if searcher == "optuna":
        if not sampled:
            raise ConfigError("--search optuna: nothing to search; give a distribution, e.g. --grid lr=loguniform:1e-5:1")
        if "seed" in differing(configs):
            raise ConfigError("--search optuna runs --trials N per grid cell and would make every seed a cell of its "
                              "own; leave out --seeds (--confirm K re-runs each cell's winner on K seeds)")
        if args.samples > 1 or args.constant_draws:
            raise ConfigError("--samples/--constant-draws are for random search; --search optuna takes --trials N")
    elif args.trials is not None:
        raise ConfigError("--trials N is the budget of --search optuna; random search draws --samples per grid cell")
    elif scope == "cell" and max(sizes.values()) < 2:
        raise ConfigError(f"--search-scope cell: each of the {len(sizes)} cells holds one trial, so nothing varies "
                          "inside a cell to rank; sample a key (e.g. --grid lr=loguniform:1e-5:1e-1 --samples 8), "
                          "name a searched grid axis (--search-axis lr) or add --seeds")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: must be >= 1")
    if args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent {args.max_concurrent}: must be >= 1")
    if args.time_budget is not None and args.time_budget <= 0:
        raise ConfigError(f"--time-budget {args.time_budget}: must be > 0 seconds")
    if args.trials_per_run < 0:
        raise ConfigError(f"--trials-per-run {args.trials_per_run}: must be >= 1, or 0 for one run")
    adaptive = args.scheduler != "fifo" or searcher == "optuna" or args.confirm is not None
    if adaptive and any(c["task"] != "train" for c in configs):
        raise ConfigError(f"--scheduler {args.scheduler} / --search {searcher} / --confirm: a probe trial reports "
                          "one measurement, nothing to stop, search over or confirm; use the default fifo")
    has_val = all(c["val_size"] or c["folds"] for c in configs)
    metric = args.metric or ("val_acc" if has_val else "test_acc")
    if metric not in METRICS:
        raise ConfigError(f'--metric {metric}: not a per-epoch metric (choose from {", ".join(METRICS)})')
    if metric.startswith("val_") and not has_val:
        raise ConfigError(f"--metric {metric}: some trials have no validation split (set val_size or folds)")
    mode = args.mode or ("min" if metric.endswith("_loss") else "max")
    if args.grace_period < 1:
        raise ConfigError(f"--grace-period {args.grace_period}: must be >= 1 epoch")
    if args.reduction_factor <= 1:
        raise ConfigError(f"--reduction-factor {args.reduction_factor}: must be > 1")
    max_t = args.max_t or max(c["epochs"] for c in configs)
    if max_t < args.grace_period:
        raise ConfigError(f"--max-t {max_t}: must be >= --grace-period {args.grace_period}")
    per_cell = (args.trials or DEFAULT_OPTUNA_TRIALS) if searcher == "optuna" else None
    out = dict(searcher=searcher, scheduler=args.scheduler, metric=metric, mode=mode, search_seed=args.search_seed,
               samples=args.samples, constant_draws=args.constant_draws,
               sampled={k: node.spec() for k, node in sampled.items()},
               trials=per_cell * len(trials) if per_cell else len(trials), trials_per_cell=per_cell,
               max_concurrent=args.max_concurrent if searcher == "optuna" else None,
               time_budget=args.time_budget, grace_period=args.grace_period,
               reduction_factor=args.reduction_factor, max_t=max_t, search_scope=scope, search_axes=axes,
               cells=len(sizes), trials_per_run=trials_per_run(args, searcher, len(trials)))
    if args.scheduler == "pbt":
        out.update(pbt_settings(args, trials, searcher, scope, sizes))
    out.update(confirm_settings(args, configs, metric, has_val, bool(sampled or axes)))
    return out


def trials_per_run(args, searcher: str, trials: int) -> int | None:
    """Trials per Tune run, or None for one run: Optuna's studies and PBT's populations live in one run."""
    split = searcher != "optuna" and args.scheduler != "pbt" and 0 < args.trials_per_run < trials
    return args.trials_per_run if split else None


def scope_settings(args, configs, sampled: dict, searcher: str) -> tuple[str, list[str]]:
    """--search-scope and --search-axis, checked: (scope, the grid axes searched inside a cell)."""
    scope = args.search_scope or ("cell" if searcher == "optuna" else "sweep")
    if scope not in SCOPES:
        raise ConfigError(f"--search-scope {scope}: choose cell (rank each trial within its grid cell) or sweep")
    if searcher == "optuna" and scope == "sweep" and len(cell_sizes(configs, {"seed", *sampled})) > 1:
        varies = ", ".join(k for k in differing(configs) if k not in sampled)
        raise ConfigError(f"--search optuna runs one TPE study per grid cell; --search-scope sweep would need it to "
                          f"pick the grid axes ({varies}) too; leave --search-scope out")
    axes = list(dict.fromkeys(args.search_axis))
    if axes and scope != "cell":
        raise ConfigError("--search-axis: names a grid axis searched inside each cell, so it needs "
                          "--search-scope cell")
    varying = differing(configs)
    for key in axes:
        if key in sampled:
            raise ConfigError(f"--search-axis {key}: {key} is sampled, and a sampled key is searched inside each "
                              "cell already")
        if key not in varying:
            raise ConfigError(f"--search-axis {key}: not a grid axis of this sweep (it has one value); give it "
                              f"values, e.g. --grid {key}=V1,V2")
    return scope, axes


def cell_sizes(configs, inside) -> Counter:
    """Trials per grid cell, a cell being a config without the keys that vary inside one (`inside`)."""
    return Counter(cell_key(config, inside) for config in configs)


def cell_key(config: Mapping, inside: Iterable[str]) -> tuple:
    """The grid point a trial belongs to: its config without the keys that vary inside a cell.
    Values go through a canonical JSON dump, so nested dicts/lists hash, key order does not matter, and
    True, 1 and 1.0 stay three different cells (Python would hash them alike)."""
    inside = set(inside)
    return tuple((key, json.dumps(config[key], sort_keys=True, default=repr))
                 for key in sorted(config) if key not in inside)


def confirm_settings(args, configs, metric: str, has_val: bool, searched: bool) -> dict:
    """--confirm K, checked, with the K seeds it will use: the smallest that no search trial used."""
    k = args.confirm
    if k is None:
        return dict(confirm=None, confirm_seeds=[])
    if k < 1:
        raise ConfigError(f"--confirm {k}: must be >= 1 seed")
    if not has_val:
        raise ConfigError("--confirm picks each cell's winner on the validation split, and these trials have none: "
                          "set val_size (e.g. --set val_size=5000) or folds")
    if not metric.startswith("val_"):
        raise ConfigError(f"--confirm picks each cell's winner on the validation split, never on test: use "
                          f"--metric val_acc or val_loss, not {metric}")
    if args.scheduler == "pbt":
        raise ConfigError("--confirm re-runs one configuration per cell, and a PBT trial's is a schedule of "
                          "values that changed as it trained; use asha, hyperband, median or fifo")
    if not searched:
        raise ConfigError("--confirm: nothing is searched inside a cell to confirm; sample a key (e.g. "
                          "--grid lr=loguniform:1e-5:1e-1) or name a searched grid axis (--search-axis lr)")
    used = {c["seed"] for c in configs}
    return dict(confirm=k, confirm_seeds=list(itertools.islice((s for s in itertools.count() if s not in used), k)))


def pbt_settings(args, trials, searcher: str, scope: str, sizes: Counter) -> dict:
    mutate = [k.strip() for k in args.pbt_mutate.split(",") if k.strip()]
    bad = [k for k in mutate if k not in MUTABLE]
    if not mutate or bad:
        raise ConfigError(f"--pbt-mutate {args.pbt_mutate}: PBT can change only {', '.join(MUTABLE)} in a running "
                          "trial (the rest shapes the model or the data, which a copied checkpoint cannot change)")
    if searcher == "optuna":
        raise ConfigError("--scheduler pbt explores by itself; it cannot take --search optuna (Ray refuses both)")
    if args.pbt_interval < 1:
        raise ConfigError(f"--pbt-interval {args.pbt_interval}: must be >= 1 epoch")
    if "momentum" in mutate and any(t.config["optimizer"] != "sgd" for t in trials):
        raise ConfigError("--pbt-mutate momentum: only optimizer=sgd reads momentum")
    if scope == "cell":  # one population per cell: its members differ only in what varies inside a cell
        if min(sizes.values()) < 2:
            raise ConfigError("--scheduler pbt --search-scope cell: some cell holds one trial, no population; "
                              "--samples N (N >= 2) or --seeds K")
        return dict(pbt_mutate=mutate, pbt_interval=args.pbt_interval)
    # An exploit copies another member's weights, so the population must share architecture and data.
    free = set(mutate) | {"seed", "checkpoint_every"}
    varying = sorted(k for k in differing([t.config for t in trials]) if k not in free)
    if varying:
        raise ConfigError(f"--scheduler pbt: an exploit copies another trial's weights, so the population must "
                          f"share everything but {', '.join(mutate)} and seed; these vary: {', '.join(varying)} "
                          "(add --search-scope cell: one population per cell)")
    if len(trials) < 2:
        raise ConfigError("--scheduler pbt needs a population: --samples N (N >= 2) or --seeds K")
    return dict(pbt_mutate=mutate, pbt_interval=args.pbt_interval)


def make_scheduler(plan):
    """The Ray scheduler of the plan's search settings: one per grid cell under --search-scope cell
    (sweeps/engine/cells.py), else one for the sweep."""
    settings = plan.search
    scheduler = SCHEDULERS[settings["scheduler"]]
    if settings.get("search_scope") != "cell" or settings["scheduler"] == "fifo":
        return scheduler.build(settings, plan.sampled)
    from sweeps.engine.cells import PerCellScheduler  # Ray
    cells = [plan.cell_of(spec) for spec in plan]  # by plan index: PBT rewrites the picked keys of trial.config
    return PerCellScheduler(lambda: scheduler.build(settings, plan.sampled), lambda trial: cells[trial.config["trial"]])


def make_searcher(plan, sweep_name: str, rows=None, span: tuple[int, int] | None = None):
    """One seeded Optuna TPE study per grid cell (the plan's trials are the cells' templates) behind one
    ConcurrencyLimiter; for grid/random, whose trials the plan lists, a PlanFeeder handing them out in order
    (sweeps/engine/feeder.py); None under PBT, which refuses search algorithms. `rows`: where the
    sweep's trials rows are, (storage, name, phase), for a searcher restored after a killed driver. `span`:
    the plan indices [start, end) of one Tune run (default: all)."""
    search = plan.search
    if search["scheduler"] == "pbt":
        return None
    if search["searcher"] != "optuna":
        from sweeps.engine.feeder import AfterSnapshot, PlanFeeder  # Ray
        start, end = span or (0, len(plan))
        return PlanFeeder(end, AfterSnapshot(*rows) if rows else None, start=start)
    from ray.tune.search import ConcurrencyLimiter

    from sweeps.engine.cellsearch import PerCellSearcher  # Ray
    from sweeps.engine.feeder import AfterSnapshot  # Ray
    # In-memory Optuna storage: a persistent one with the default study name would merge sweeps.
    searcher = PerCellSearcher({k: node.domain() for k, node in plan.sampled.items()}, list(range(len(plan))),
                               search["trials_per_cell"], search["search_seed"], study_name=sweep_name,
                               rows=AfterSnapshot(*rows) if rows else None)
    return ConcurrencyLimiter(searcher, max_concurrent=search["max_concurrent"])


def check_resume(search: dict, recorded: dict | None) -> None:
    """A resume must search as the sweep did, with a scheduler that can continue (its `resume` in
    sweeps/engine/schedulers.py; README, "Search and early stopping")."""
    if recorded is None:
        recorded = dict(searcher="grid", scheduler="fifo", search_seed=0)
    for key in ("searcher", "scheduler", "search_seed", "metric", "mode", "search_scope", "search_axes", "confirm",
                "trials_per_run"):
        if key in recorded and recorded[key] != search[key]:
            raise ConfigError(f"--resume: this sweep ran with {key}={recorded[key]!r}, not {search[key]!r}; "
                              "resume it with the same flags, or start a new --name")
    if "trials_per_run" not in recorded and search.get("trials_per_run"):
        raise ConfigError("--resume: this sweep ran as one Ray Tune run (an earlier version started it); resume it "
                          "with --trials-per-run 0")
    refusal = SCHEDULERS[search["scheduler"]].refusal
    if refusal:
        raise ConfigError(f"--resume --scheduler {search['scheduler']}: {refusal}; start it again under a new --name")
