"""Adaptive search on Ray Tune's own machinery: schedulers that stop or perturb trials, and model-based
searchers, with the settings recorded in sweep.json and every outcome in Parquet.

    --search random   the default when a key is sampled: `--samples N` draws per grid cell, made in
                      plan() with Ray's own domains (sweeps/engine/space.py), so --dry-run lists what runs
    --search optuna   Ray's OptunaSearch (TPE) behind a ConcurrencyLimiter; `--trials N` is the budget.
                      A model-based searcher picks every trial itself, so it takes no grid axes and no
                      --seeds: those are a ConfigError (run one sweep per cell instead)
    --scheduler fifo | asha | hyperband | median | pbt   (sweeps/engine/schedulers.py: one table)

Schedulers and searchers see one number per epoch, `objective` (trainables/ray_trainable.py): the
metric (`--metric`, default val_acc where every trial has a validation split, else test_acc), or the
worst finite value when the trial diverged; Parquet still records such a trial as `diverged`.
"""
from __future__ import annotations

from sweeps.engine.schedulers import MUTABLE, SCHEDULERS, flag_help
from sweeps.results.naming import differing
from trainables.errors import ConfigError

SEARCHERS = ("grid", "random", "optuna")
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")


def add_args(p) -> None:
    g = p.add_argument_group("search and early stopping (see the README section)")
    g.add_argument("--samples", type=int, default=1, help="draws of the sampled keys per grid cell (random search)")
    g.add_argument("--search-seed", type=int, default=0, help="fixes every draw (recorded in sweep.json)")
    g.add_argument("--constant-draws", action="store_true",
                   help="the same draws in every grid cell, so cells compare pair by pair")
    g.add_argument("--search", choices=("random", "optuna"), default=None,
                   help="random (default with sampled keys) | optuna (TPE; needs sampled keys, no grid axes)")
    g.add_argument("--trials", type=int, default=None, help="--search optuna: how many trials (default 16)")
    g.add_argument("--max-concurrent", type=int, default=4, help="--search optuna: trials in flight at once")
    g.add_argument("--time-budget", type=float, default=None, help="stop starting trials after this many seconds")
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
    if searcher == "optuna":
        if not sampled:
            raise ConfigError("--search optuna: nothing to search; give a distribution, e.g. --grid lr=loguniform:1e-5:1")
        if len(trials) > 1:
            varies = ", ".join([*differing(configs), *(f"{k} (label)" for k in differing([t.labels for t in trials]))])
            raise ConfigError(f"--search optuna picks every trial itself and cannot take grid axes ({varies}); "
                              "fix them with --set, or run one sweep per cell")
        if args.samples > 1 or args.constant_draws:
            raise ConfigError("--samples/--constant-draws are for random search; --search optuna takes --trials N")
    elif args.trials is not None:
        raise ConfigError("--trials N is the budget of --search optuna; random search draws --samples per grid cell")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: must be >= 1")
    if args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent {args.max_concurrent}: must be >= 1")
    if args.time_budget is not None and args.time_budget <= 0:
        raise ConfigError(f"--time-budget {args.time_budget}: must be > 0 seconds")
    adaptive = args.scheduler != "fifo" or searcher == "optuna"
    if adaptive and any(c["task"] != "train" for c in configs):
        raise ConfigError(f"--scheduler {args.scheduler} / --search {searcher}: a probe trial reports one "
                          "measurement, nothing to stop or search over; use the default fifo")
    metric = args.metric or ("val_acc" if all(c["val_size"] or c["folds"] for c in configs) else "test_acc")
    if metric not in METRICS:
        raise ConfigError(f'--metric {metric}: not a per-epoch metric (choose from {", ".join(METRICS)})')
    if metric.startswith("val_") and not all(c["val_size"] or c["folds"] for c in configs):
        raise ConfigError(f"--metric {metric}: some trials have no validation split (set val_size or folds)")
    mode = args.mode or ("min" if metric.endswith("_loss") else "max")
    if args.grace_period < 1:
        raise ConfigError(f"--grace-period {args.grace_period}: must be >= 1 epoch")
    if args.reduction_factor <= 1:
        raise ConfigError(f"--reduction-factor {args.reduction_factor}: must be > 1")
    max_t = args.max_t or max(c["epochs"] for c in configs)
    if max_t < args.grace_period:
        raise ConfigError(f"--max-t {max_t}: must be >= --grace-period {args.grace_period}")
    out = dict(searcher=searcher, scheduler=args.scheduler, metric=metric, mode=mode, search_seed=args.search_seed,
               samples=args.samples, constant_draws=args.constant_draws,
               sampled={k: node.spec() for k, node in sampled.items()},
               trials=(args.trials or 16) if searcher == "optuna" else len(trials),
               max_concurrent=args.max_concurrent if searcher == "optuna" else None,
               time_budget=args.time_budget, grace_period=args.grace_period,
               reduction_factor=args.reduction_factor, max_t=max_t)
    if args.scheduler == "pbt":
        out.update(pbt_settings(args, trials, searcher))
    return out


def pbt_settings(args, trials, searcher: str) -> dict:
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
    # An exploit copies another member's weights, so the population must share architecture and data.
    free = set(mutate) | {"seed", "checkpoint_every"}
    varying = sorted(k for k in differing([t.config for t in trials]) if k not in free)
    if varying:
        raise ConfigError(f"--scheduler pbt: an exploit copies another trial's weights, so the population must "
                          f"share everything but {', '.join(mutate)} and seed; these vary: {', '.join(varying)} "
                          "(run one sweep per cell)")
    if len(trials) < 2:
        raise ConfigError("--scheduler pbt needs a population: --samples N (N >= 2) or --seeds K")
    return dict(pbt_mutate=mutate, pbt_interval=args.pbt_interval)


def make_searcher(search: dict, sweep_name: str):
    """Ray's OptunaSearch (TPE, seeded) behind a ConcurrencyLimiter, or None for grid/random."""
    if search["searcher"] != "optuna":
        return None
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    # In-memory Optuna storage: a persistent one with the default study name would merge sweeps.
    return ConcurrencyLimiter(OptunaSearch(seed=search["search_seed"], study_name=sweep_name),
                              max_concurrent=search["max_concurrent"])


def check_resume(search: dict, recorded: dict | None) -> None:
    """A resume must search as the sweep did, with a scheduler that can continue (its `resume` in
    sweeps/engine/schedulers.py; README, "Search and early stopping")."""
    if recorded is None:
        recorded = dict(searcher="grid", scheduler="fifo", search_seed=0)
    for key in ("searcher", "scheduler", "search_seed", "metric", "mode"):
        if key in recorded and recorded[key] != search[key]:
            raise ConfigError(f"--resume: this sweep ran with {key}={recorded[key]!r}, not {search[key]!r}; "
                              "resume it with the same flags, or start a new --name")
    refusal = SCHEDULERS[search["scheduler"]].refusal
    if refusal:
        raise ConfigError(f"--resume --scheduler {search['scheduler']}: {refusal}; start it again under a new --name")
