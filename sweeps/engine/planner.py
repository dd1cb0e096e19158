"""From a Sweep and the flags to the Plan: every trial's config resolved and validated once, the sampled
keys drawn, the search settings checked, each trial named. Raises ConfigError for any mistake, so a bad
flag ends in one line before Ray starts; reads the flags and never writes them.
"""
from __future__ import annotations

import sys

from sweeps.engine import search
from sweeps.engine.grid import Sweep, replace_axis, select_variants, variant_labels
from sweeps.engine.space import draw, parse_grid_value, sampled_nodes, without_sampled
from sweeps.results.naming import name_keys
from sweeps.results.plan import Plan, TrialSpec
from trainables.defaults import DEFAULTS, coerce
from trainables.errors import ConfigError


def plan(sweep: Sweep, args) -> Plan:
    """The validated Plan; raises ConfigError. Each trial's config is resolved here, once (TrialSpec)."""
    from trainables.config import resolve  # torch from here on: the registries and the models
    from trainables.data import NUM_CLASSES
    from trainables.models import build_model, count_params
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: must be >= 1")
    texts = [*args.set, *([f"epochs={args.epochs}"] if args.epochs is not None else [])]
    sets = {key: coerce(key, value) for key, value in (_split_kv(s, "--set") for s in texts)}
    grid, sampled = _grid(sweep, args)
    clash = sorted(set(sampled) & (set(sets) | grid.keys()))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: both sampled and set (by --set, an axis or a variant); keep one")
    seeds = [None]
    if args.seeds > 1:
        if "seed" in grid.keys() or "seed" in sets or "seed" in sampled:
            raise ConfigError("--seeds: this sweep already sets `seed`; use one or the other")
        seeds = list(range(args.seeds))  # innermost, so the seeds of one draw are paired
    base = {**sweep.fixed, **(sweep.smoke if args.smoke else {})}
    searcher = args.search or ("random" if sampled else "grid")
    cells = grid.points()
    if searcher == "optuna":  # the searcher draws at run time: one template, sampled keys at their lower bound
        draws = [[{k: coerce(k, node.args[0][0] if node.kind == "choice" else node.args[0])
                   for k, node in sampled.items()}] for _ in cells]
    elif sampled:
        draws = draw(list(sampled.values()), len(cells), args.samples, args.search_seed, args.constant_draws)
    else:
        draws = [[{}] for _ in cells]
    trials = []
    for (point, labels), cell_draws in zip(cells, draws):
        for sample, values in enumerate(cell_draws):
            for seed in seeds:
                overrides = {**base, **point, **values, **({"seed": seed} if seed is not None else {}), **sets}
                config = resolve(overrides)  # raises on unknown keys, bad values and keys this trial does not read
                tags = {**labels, **({"sample": sample} if sampled and searcher != "optuna" else {})}
                trials.append(TrialSpec(config=config, overrides={k: config[k] for k in overrides},
                                        labels={k: v for k, v in tags.items() if k not in DEFAULTS},
                                        facts=dict(params=count_params(build_model(config,
                                                                                   NUM_CLASSES[config["dataset"]])))))
    trials = dedupe(trials)
    settings = search.settings(args, trials, sampled)
    if settings["scheduler"] == "pbt" and any(t.config["checkpoint_every"] != 1 for t in trials):
        # An exploit copies the donor's latest checkpoint: without one every epoch it would restart from scratch.
        print("note: --scheduler pbt checkpoints every epoch (checkpoint_every=1)", file=sys.stderr)
        trials = [t.picking(dict(checkpoint_every=1)) for t in trials]
    # The sampled keys name a trial even where they happen not to vary: a searcher or PBT sets them per trial.
    shown_labels, keys = name_keys(({"config": t.config, "labels": t.labels} for t in trials), always=sampled)
    picked = sorted(sampled) if searcher == "optuna" else settings.get("pbt_mutate", [])
    return Plan(trials=tuple(TrialSpec(config=t.config, overrides=t.overrides, labels=t.labels, facts=t.facts,
                                       title_keys=(*shown_labels, *keys)) for t in trials),
                search=settings, sampled=sampled, sets=sets, picked_keys=picked)


def _grid(sweep: Sweep, args):
    """The sweep's grid with the --grid flags applied, and the sampled keys taken out of it ({key: Sampled})."""
    grid = (sweep.smoke_grid or sweep.grid) if args.smoke else sweep.grid
    sampled = {node.key: node for node in sampled_nodes(grid)}  # drawn in plan(), never crossed like an axis
    grid = without_sampled(grid)
    for text in args.grid:
        key, values = _split_kv(text, "--grid")
        if variant_labels(grid, key) or (args.smoke and variant_labels(sweep.grid, key)):
            # --grid NAME=... on a variants(NAME, ...) selects variants, even where NAME is also a config
            # key (depth_grid's "init"): an init value alone would drop the keys its variant sets with it
            labels = [v.strip() for v in values.split(",") if v.strip()]
            if not labels:
                raise ConfigError(f"--grid {text!r}: no values")
            grid = select_variants(grid, key, labels, full=sweep.grid if args.smoke else None)
            continue
        distribution = parse_grid_value(key, values)
        if distribution is not None:  # --grid lr=loguniform:1e-5:1 samples the key instead of listing it
            sampled[key] = distribution
            grid = replace_axis(grid, key, None)
            continue
        parsed = [coerce(key, v) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ConfigError(f"--grid {text!r}: no values")
        sampled.pop(key, None)
        grid = replace_axis(grid, key, parsed)
    return grid, sampled


def _split_kv(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def dedupe(trials: list[TrialSpec]) -> list[TrialSpec]:
    """Drop repeated trials (a variant and an axis can name the same config), keeping the first."""
    seen, kept = set(), []
    for spec in trials:
        key = repr(sorted(spec.config.items())) + repr(sorted(spec.labels.items()))
        if key not in seen:
            seen.add(key)
            kept.append(spec)
    return kept


def print_dry_run(plan: Plan) -> None:
    """The --dry-run listing: the parsed --set values, the search, and one line per trial."""
    if plan.sets:
        print("--set: " + ", ".join(f"{k}={v!r} ({type(v).__name__})" for k, v in plan.sets.items()))
    settings = plan.search
    if settings.get("sampled"):
        print(f"search: {settings['searcher']}, seed {settings['search_seed']}; sampled "
              + ", ".join(f"{k} ~ {v}" for k, v in settings["sampled"].items()))
    scope = settings.get("search_scope", "sweep")
    if settings.get("scheduler", "fifo") != "fifo":
        where = (f"one per grid cell ({settings['cells']} cells)" if scope == "cell" else "one for the sweep")
        print(f"scheduler: {settings['scheduler']} on {settings['metric']} ({settings['mode']}), {where}")
    if settings.get("searcher") == "optuna":
        print(f"optuna: one TPE study per grid cell, {settings['trials_per_cell']} trials each ({settings['trials']} "
              f"in all), {settings['max_concurrent']} at once; the sampled keys below show their lower bound only")
    if settings.get("confirm"):
        print(f"confirm: then each cell's best by {settings['metric']} (validation) again on seeds "
              f"{settings['confirm_seeds']}, full epochs, FIFO: {settings['cells'] * settings['confirm']} more trials")
    for i, spec in enumerate(plan):
        print(f"{i:3d}  {spec.title:<60s}  params={spec.facts['params']:,}")
    print(f"{settings.get('trials', len(plan))} trials")
