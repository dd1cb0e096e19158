"""The machinery every search-space file shares: flags, validation, data, Ray Tune, results.

    validate everything -> load each data set once -> Tuner(run_trial) -> Parquet rows
                                                        -> summary + exit code

Every user mistake (an unknown key, a bad value, a missing data folder, an
unwritable storage path, a bad sweep name) ends in one line on stderr and exit
code 2, before Ray starts and before anything is written.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sweeps.engine import search
from sweeps.engine.grid import Sweep, replace_axis, select_variants, variant_labels
from sweeps.engine.preflight import (check_address, check_cluster_gpus, check_local_gpus, check_resources, check_resume,
                              plan_record, ray_address)
from sweeps.engine.space import draw, parse_grid_value, sampled_nodes, without_sampled
from sweeps.results.store import Store
from trainables.defaults import DEFAULTS, coerce
from trainables.errors import ConfigError, DataError, DataMissing

EXIT_USAGE = 2
DEFAULT_MAX_FAILURES = 1
DEFAULT_PROGRESS_EVERY = 30.0  # seconds between the console view's summaries (sweeps/engine/console.py)


def parse_args(argv, description: str, default_name: str, defaults: dict | None = None) -> argparse.Namespace:
    """The flags; `defaults` (a Sweep's `flags`, e.g. scheduler="asha") replace the built-in defaults."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a tiny slice of the grid: 1 epoch, a few hundred images")
    p.add_argument("--dry-run", action="store_true", help="list the trials with parameter counts; start nothing")
    p.add_argument("--data-dir", default="./data",
                   help="folder holding cifar-10-batches-py / cifar-100-python (downloaded there if absent)")
    p.add_argument("--storage", default="./results", help="results root: a local path or a URI (s3://...)")
    p.add_argument("--name", default=default_name, help="sweep name; results go to <storage>/<name>/")
    p.add_argument("--epochs", type=int, help="shorthand for --set epochs=N")
    p.add_argument("--seeds", type=int, default=1, help="repeat every trial with seeds 0..K-1")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config value")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="replace (or add) the axis KEY with these values")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional GPUs, e.g. 0.25")
    p.add_argument("--max-failures", type=int, default=None,
                   help=f"retries of a crashed trial from its checkpoint (default {DEFAULT_MAX_FAILURES})")
    p.add_argument("--pack", type=int, default=1,
                   help="trials sharing each GPU: N trials at 1/N GPU each; start CUDA MPS first "
                        "(benchmarks/mps.sh start)")
    p.add_argument("--fresh-actors", action="store_true",
                   help="a new Ray worker process for every trial: nothing carries over between trials, "
                        "at several seconds of start-up each (default: workers are reused)")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. auto or host:6379)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="logical CPUs of the private Ray this run starts (default: the machine's cores); more than "
                        "the cores oversubscribes them, e.g. to run many light trials at once")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep of this --name: finished trials are kept, unfinished "
                        "and errored ones continue from their last checkpoint")
    p.add_argument("--log", action="append", default=[], metavar="TRACKER",
                   help="also stream every epoch to tensorboard, mlflow or wandb (repeatable); "
                        "see README \"Watching a sweep\"")
    p.add_argument("--progress-every", type=float, default=DEFAULT_PROGRESS_EVERY, metavar="SECONDS",
                   help="print the sweep's summary (counts, running trials, best so far, ETA) this often "
                        f"(default {DEFAULT_PROGRESS_EVERY:g}); a line per trial start and end comes anyway")
    p.add_argument("--verbose", action="count", default=0,
                   help="also print Ray Tune's own trial tables (twice: every trial's every result too)")
    search.add_args(p)
    if defaults:
        known = {a.dest for a in p._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ConfigError(f"Sweep.flags: unknown flag {unknown[0]!r} (flags are argparse names, e.g. scheduler)")
        p.set_defaults(**defaults)
    return p.parse_args(argv)


def _split_kv(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def plan(sweep: Sweep, args) -> list[dict]:
    """The validated trial specs; raises ConfigError. Each trial's config is resolved here, once:

        config     the resolved config (every key), which travels with the trial to the trainable
        overrides  the keys the sweep and flags set, as they stand in sweep.json's plan
        labels, title, facts   variant/group labels, the console title, parameter count and data facts
    """
    from trainables.config import resolve  # torch from here on: the registries and the models
    from trainables.data import NUM_CLASSES
    from trainables.models import build_model, count_params
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: must be >= 1")
    if args.epochs is not None:
        args.set = [*args.set, f"epochs={args.epochs}"]
    sets = dict(_split_kv(s, "--set") for s in args.set)
    sets = {k: coerce(k, v) for k, v in sets.items()}
    args.parsed_sets = sets  # shown by --dry-run with their parsed types
    grid = (sweep.smoke_grid or sweep.grid) if args.smoke else sweep.grid
    sampled = {node.key: node for node in sampled_nodes(grid)}  # drawn below, never crossed like an axis
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
    shown_sampled = sorted(sampled) if searcher != "optuna" else []  # an Optuna trial's title gets its values later
    varied = sorted(grid.axis_keys()) + shown_sampled + (["seed"] if args.seeds > 1 else [])
    cells = grid.points()
    if searcher == "optuna":  # the searcher draws at run time: one template, sampled keys at their lower bound
        draws = [[{k: coerce(k, node.args[0][0] if node.kind == "choice" else node.args[0])
                   for k, node in sampled.items()}] for _ in cells]
    elif sampled:
        draws = draw(list(sampled.values()), len(cells), args.samples, args.search_seed, args.constant_draws)
    else:
        draws = [[{}] for _ in cells]
    specs = []
    for (point, labels), cell_draws in zip(cells, draws):
        for sample, values in enumerate(cell_draws):
            for seed in seeds:
                overrides = {**base, **point, **values, **({"seed": seed} if seed is not None else {}), **sets}
                config = resolve(overrides)  # raises on unknown keys, bad values and keys this trial does not read
                tags = {**labels, **({"sample": sample} if sampled and searcher != "optuna" else {})}
                shown = [f"{k}={v}" for k, v in tags.items()] + [f"{k}={config[k]:.4g}" if k in sampled and
                                                                 isinstance(config[k], float) else f"{k}={config[k]}"
                                                                 for k in varied if k not in tags]
                specs.append(dict(config=config, overrides={k: config[k] for k in overrides},
                                  labels={k: v for k, v in tags.items() if k not in DEFAULTS},
                                  title=" ".join(shown) or "default",
                                  facts=dict(params=count_params(build_model(config, NUM_CLASSES[config["dataset"]])))))
    specs = dedupe(specs)
    args.search_settings = search.settings(args, specs, sampled)
    args.sampled = sampled
    if args.search_settings["scheduler"] == "pbt" and any(s["config"]["checkpoint_every"] != 1 for s in specs):
        # An exploit copies the donor's latest checkpoint: without one every epoch it would restart from scratch.
        print("note: --scheduler pbt checkpoints every epoch (checkpoint_every=1)", file=sys.stderr)
        for spec in specs:
            spec["overrides"]["checkpoint_every"] = 1
            spec["config"] = resolve(spec["overrides"])
    return specs


def dedupe(specs: list[dict]) -> list[dict]:
    """Drop repeated trials (a variant and an axis can name the same config), keeping the first."""
    seen, kept = set(), []
    for spec in specs:
        key = repr(sorted(spec["config"].items())) + repr(sorted(spec["labels"].items()))
        if key not in seen:
            seen.add(key)
            kept.append(spec)
    return kept


def code_version() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def load_data(specs: list[dict], data_dir: str, smoke: bool = False) -> dict:
    """Each data set once. A --smoke run without the CIFAR files (and no download possible) runs on
    synthetic images of the same shape and class count, and says so loudly; a full sweep fails.
    The data's description is printed in the console view's header (run_sweep)."""
    from trainables.data import NUM_CLASSES, load_dataset, make_synthetic, split_facts
    datasets = {}
    configs = [spec["config"] for spec in specs]
    for name in dict.fromkeys(config["dataset"] for config in configs):  # each data set once, in order
        try:
            datasets[name] = load_dataset(name, data_dir)
        except DataMissing as exc:  # absent and not downloadable; a corrupt folder stays an error
            if not smoke:
                raise
            datasets[name] = make_synthetic(num_classes=NUM_CLASSES[name])
            print(f"WARNING: --smoke without {name} data ({str(exc).splitlines()[0]}): running on SYNTHETIC "
                  f"images instead; data_source says 'synthetic', and nothing here is about {name}",
                  file=sys.stderr)
    for spec, config in zip(specs, configs):
        data = datasets[config["dataset"]]
        n_train = min(config["train_subset"] or len(data.train_y), len(data.train_y))
        if config["val_size"] >= n_train:
            raise ConfigError(f"val_size={config['val_size']} leaves no training images "
                              f"({n_train} in {data.name})")
        spec["facts"].update(data_source=data.source, n_train=n_train - config["val_size"],
                             n_val=config["val_size"], n_test=min(config["test_subset"] or len(data.test_y),
                                                                   len(data.test_y)))
        try:  # study 004: a long tail or k-fold changes the training set; record its class counts
            spec["facts"].update(split_facts(data, config))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return datasets


def describe_data(datasets: dict, specs: list[dict]) -> dict[str, str]:
    """Each data set, and how many of its images the trials use: a --smoke run, a subset or a long tail
    trains on far fewer than the files hold, and the header must not suggest otherwise."""
    out = {}
    for name, data in datasets.items():
        facts = [spec["facts"] for spec in specs if spec["config"]["dataset"] == name]

        def span(key):
            values = sorted({f[key] for f in facts})
            return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"
        val = f" / {span('n_val')} val" if any(f["n_val"] for f in facts) else ""
        out[name] = data.describe(f"{span('n_train')} train{val} / {span('n_test')} test")
    return out


def print_dry_run(specs: list[dict], sets: dict | None = None, settings: dict | None = None) -> None:
    if sets:
        print("--set: " + ", ".join(f"{k}={v!r} ({type(v).__name__})" for k, v in sets.items()))
    settings = settings or {}
    if settings.get("sampled"):
        print(f"search: {settings['searcher']}, seed {settings['search_seed']}; sampled "
              + ", ".join(f"{k} ~ {v}" for k, v in settings["sampled"].items()))
    if settings.get("scheduler", "fifo") != "fifo":
        print(f"scheduler: {settings['scheduler']} on {settings['metric']} ({settings['mode']})")
    if settings.get("searcher") == "optuna":
        print(f"optuna picks {settings['trials']} trials at run time, {settings['max_concurrent']} at once; "
              "the sampled keys below show their lower bound only")
    for i, spec in enumerate(specs):
        print(f"{i:3d}  {spec['title']:<60s}  params={spec['facts']['params']:,}")
    print(f"{settings.get('trials', len(specs))} trials")


def run_sweep(sweep: Sweep, specs: list[dict], datasets: dict, store: Store, args) -> int:
    import ray
    from ray import tune

    from sweeps.engine.console import ConsoleView, emit, header_lines, plan_keys
    from sweeps.engine.recorder import Recorder, reconcile
    from sweeps.engine.tune_state import SlimTuneState
    from sweeps.engine.trackers.callback import callbacks as tracker_callbacks
    from trainables.environment import collect as environment
    from trainables.ray_trainable import run_trial

    settings = args.search_settings
    meta = dict(sweep=store.name, study=sweep.study, code_version=code_version(),
                searcher=settings["searcher"], scheduler=settings["scheduler"], search_seed=settings["search_seed"],
                trials=settings["trials"], search_keys=sorted(settings["sampled"]) if settings["searcher"] == "optuna"
                else settings.get("pbt_mutate", []))
    # Our Recorder writes the results. Tune's own CSV/JSON/TensorBoard loggers would write them a
    # second time, at 0.2 s per trial (0.39 vs 0.17 s of sweep overhead, docs/benchmarks.md), and warn
    # that they cannot log the per-layer lists. Export the variable as 0 to get them back. The Recorder
    # writes the one file Tune's ResultGrid reads, each trial's result.json (sweeps/engine/tune_state.py).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    address = ray_address(args)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning",
                 runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}},
                 **({"num_cpus": args.num_cpus} if args.num_cpus else {}))
    except (ConnectionError, ValueError) as exc:
        raise ConfigError(f"--address {address}: cannot join that Ray cluster "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    try:
        check_cluster_gpus(args, ray.nodes())  # before anything is written
        # the console view's header, once every check has passed (a mistake stays one `error:` line)
        data = describe_data(datasets, specs)
        emit(header_lines(store.name, sweep.study, settings, data, store.uri, resumed=args.resume))
        started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        if args.resume:
            record = store.read_json("sweep.json")
            record.setdefault("resumed_at", []).append(started_at)
            store.write_json("sweep.json", record)
            store.repair()  # a trial the killed driver was compacting: fold it before anything reads it
        else:
            store.write_json("sweep.json", dict(
                **meta, description=sweep.description.strip(), argv=sys.argv, smoke=args.smoke,
                seeds=args.seeds, max_failures=args.max_failures, started_at=started_at, host=socket.gethostname(),
                data=data, plan=plan_record(specs),
                search=settings, resume_policy=search.RESUME_POLICY[settings["scheduler"]], log=args.log,
                # the driver's; each trial's worker reports its own env_id, filed under `environments`
                environment=environment()))
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, specs=specs, datasets=datasets, cpus_per_trial=args.cpus_per_trial,
                                 search=dict(metric=settings["metric"], mode=settings["mode"],
                                             keys=meta["search_keys"])),
            {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
        tune_path = store.uri + "/tune"
        keys = plan_keys(specs, meta)

        def console(recorder):  # after the Recorder: it reads the trials row the Recorder has just decided
            return ConsoleView(recorder, specs, meta, keys, args.progress_every, settings)
        verbose = min(args.verbose, 2)  # 0: Ray's trial tables off; the ConsoleView prints instead
        if args.resume and tune.Tuner.can_restore(tune_path):
            # Same trainable (rebuilt from the same, checked plan); Ray keeps finished trials as they are.
            # Errored trials get another go from their last checkpoint: a resume means "try again", and a
            # transient fault (a lost node, an OOM) then heals while a deterministic one just errors again.
            # The Recorder comes back from Ray's pickle; it holds no state that matters.
            tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
            renew_console(tuner, console, verbose)
        else:  # a new sweep, or a resumed one that died before Ray saved any state: nothing to keep
            adaptive = settings["scheduler"] != "fifo" or settings["searcher"] == "optuna"
            if settings["scheduler"] == "pbt":  # PBT explores with Python's and numpy's global generators
                random.seed(settings["search_seed"])
                np.random.seed(settings["search_seed"])
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(specs, settings, args.sampled),
                # Reusing actors skips a process start (Python, torch, CUDA context: about 10 s a trial on
                # the 2-core CPU, docs/benchmarks.md) and keeps trainables.fast's compile cache. `train`
                # sets every piece of process-wide state it relies on, so trials stay independent.
                tune_config=tune.TuneConfig(
                    reuse_actors=not args.fresh_actors, num_samples=settings["trials"] if
                    settings["searcher"] == "optuna" else 1, time_budget_s=settings["time_budget"],
                    # metric/mode here only: Ray raises when the scheduler or searcher has them too
                    metric="objective" if adaptive else None, mode=settings["mode"] if adaptive else None,
                    scheduler=search.make_scheduler(settings, args.sampled),
                    search_alg=search.make_searcher(settings, store.name)),
                run_config=tune.RunConfig(
                    name="tune", storage_path=store.uri, verbose=verbose,
                    # the trackers (--log) and the console view come after the Recorder: they show the
                    # status it decided
                    callbacks=[recorder := Recorder(store.storage, store.name, meta, specs),
                               *tracker_callbacks(args.log, recorder, sorted(args.sampled)), console(recorder),
                               SlimTuneState()],  # last: it takes the lists out of each result
                    failure_config=tune.FailureConfig(max_failures=args.max_failures),
                    # PBT warns below 3: it must keep the checkpoint a donor is copied from
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if settings["scheduler"] == "pbt" else 2)))
        started = time.perf_counter()
        results = tuner.fit()  # Ctrl-C makes this return normally; unfinished trials are found below
        elapsed = time.perf_counter() - started
        reconcile(store, results, specs, meta)
    finally:
        ray.shutdown()
    return summarize(store, elapsed, args)


def renew_console(tuner, console, verbose: int) -> None:
    """A restored Tuner brings back the first run's callbacks and verbosity (Tuner.restore takes no new
    RunConfig), so this run's --verbose and --progress-every would be lost. Reach into the restored run
    config (Tuner._local_tuner: no public way in Ray 2.60) and put a fresh ConsoleView after the restored
    Recorder, replacing the old one (a sweep started before the view existed gets one too), and a
    SlimTuneState last (a sweep started before it existed gets one; an earlier version's result.json
    logger goes)."""
    from sweeps.engine.console import ConsoleView
    from sweeps.engine.recorder import Recorder
    from sweeps.engine.tune_state import ScalarJsonLogger, SlimTuneState
    local = getattr(tuner, "_local_tuner", None)
    run_config = local.get_run_config() if local is not None else None
    if run_config is None:  # Ray client mode: the restored view prints with the first run's settings
        return
    run_config.verbose = verbose
    callbacks = [c for c in run_config.callbacks or []
                 if not isinstance(c, (ConsoleView, SlimTuneState, ScalarJsonLogger))]
    recorder = next((c for c in callbacks if isinstance(c, Recorder)), None)
    if recorder is not None:
        run_config.callbacks = callbacks + [console(recorder), SlimTuneState()]


def param_space(specs: list[dict], settings: dict, sampled: dict) -> dict:
    """What Ray varies. Trials carry an index into `specs` (Ray would expand dicts inside grid_search).
    An Optuna trial also carries the keys the searcher picked; a PBT trial the keys PBT perturbs, starting
    at its spec's values, since PBT mutates the trial's config in place."""
    from ray import tune
    if settings["searcher"] == "optuna":
        return {"trial": 0, **{k: node.domain() for k, node in sampled.items()}}
    space = {"trial": tune.grid_search(list(range(len(specs))))}
    for key in settings.get("pbt_mutate", []):
        start = [spec["config"][key] for spec in specs]
        space[key] = tune.sample_from(lambda spec, start=start: start[spec.config.trial])
    return space


def summarize(store: Store, elapsed: float, args=None) -> int:
    trials = store.close_sweep()
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    print(f"\nsweep {store.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + f" in {elapsed:.0f} s")
    print(f"results: {store.uri}")
    print(f"report:  python -m analysis.report {store.uri}")
    if counts.get("stopped") and args is not None:
        print(f"interrupted: continue with  python {os.path.relpath(args.file)} --resume "
              f"--name {store.name} --storage {args.storage}")
    return 1 if counts.get("error") or counts.get("stopped") else 0


def main(sweep: Sweep, file: str, argv=None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, sweep.description, Path(file).stem, sweep.flags)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args.file = file
    try:
        if not args.progress_every > 0:  # NaN too
            raise ConfigError(f"--progress-every {args.progress_every:g}: must be > 0 seconds")
        check_resources(args)
        specs = plan(sweep, args)
        if args.log:  # imported only when asked for: the trackers' packages are an optional extra
            from sweeps.engine import trackers
            args.log = trackers.check(args.log)
        if args.dry_run:
            print_dry_run(specs, getattr(args, "parsed_sets", None), args.search_settings)
            return 0
        store = Store(args.storage, args.name)
        store.check_writable()
        check_resume(store, specs, args)
        if args.resume:
            from sweeps.engine.trackers import check_resume as check_trackers_resume
            check_trackers_resume(store, args.log)
        if args.max_failures is None:
            args.max_failures = DEFAULT_MAX_FAILURES
        check_local_gpus(args)
        check_address(args)
        datasets = load_data(specs, os.path.abspath(os.path.expanduser(args.data_dir)), smoke=args.smoke)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_sweep(sweep, specs, datasets, store, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
