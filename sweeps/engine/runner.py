"""The machinery every search-space file shares: main() from the flags to the exit code.

    flags (flags.py) -> Plan (planner.py) -> checks (preflight.py) -> each data set loaded once
        -> Tuner(run_trial) -> Parquet rows (recorder.py) -> summary + exit code

Every user mistake (an unknown key, a bad value, a missing data folder, an
unwritable storage path, a bad sweep name) ends in one line on stderr and exit
code 2, before Ray starts and before anything is written. The parsed flags are
never written to: what is derived from them lives in the Plan and in RunSettings.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from sweeps.engine.flags import DEFAULT_MAX_FAILURES, RunSettings, parse_args  # noqa: F401 (parse_args re-exported)
from sweeps.engine.grid import Sweep
from sweeps.engine.phase import Phase
from sweeps.engine.planner import plan, print_dry_run
from sweeps.engine.preflight import (check_address, check_cluster_gpus, check_local_gpus, check_resources, check_resume,
                                     check_storage, ray_address)
from sweeps.engine.schedulers import SCHEDULERS
from sweeps.results import lease
from sweeps.results.outbox import count, kept_in, spill_folder
from sweeps.results.plan import Plan
from sweeps.results.retry import StorageError
from sweeps.results.store import Store
from trainables.errors import ConfigError, DataError, DataMissing

EXIT_USAGE = 2


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


def load_data(plan: Plan, data_dir: str, smoke: bool = False) -> tuple[dict, Plan]:
    """Each data set once, and the plan with each trial's data facts. A --smoke run without the CIFAR files
    (and no download possible) runs on synthetic images of the same shape and class count, and says so
    loudly; a full sweep fails. The data's description is printed in the console view's header (run_sweep)."""
    from trainables.data import NUM_CLASSES, load_dataset, make_synthetic, split_facts
    datasets = {}
    for name in dict.fromkeys(spec.config["dataset"] for spec in plan):  # each data set once, in order
        try:
            datasets[name] = load_dataset(name, data_dir)
        except DataMissing as exc:  # absent and not downloadable; a corrupt folder stays an error
            if not smoke:
                raise
            datasets[name] = make_synthetic(num_classes=NUM_CLASSES[name])
            print(f"WARNING: --smoke without {name} data ({str(exc).splitlines()[0]}): running on SYNTHETIC "
                  f"images instead; data_source says 'synthetic', and nothing here is about {name}",
                  file=sys.stderr)
    facts = []
    for spec in plan:
        config = spec.config
        data = datasets[config["dataset"]]
        n_train = min(config["train_subset"] or len(data.train_y), len(data.train_y))
        if config["val_size"] >= n_train:
            raise ConfigError(f"val_size={config['val_size']} leaves no training images "
                              f"({n_train} in {data.name})")
        more = dict(data_source=data.source, n_train=n_train - config["val_size"], n_val=config["val_size"],
                    n_test=min(config["test_subset"] or len(data.test_y), len(data.test_y)))
        try:  # study 004: a long tail or k-fold changes the training set; record its class counts
            more.update(split_facts(data, config))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        facts.append(more)
    return datasets, plan.with_facts(facts)


def describe_data(datasets: dict, plan: Plan) -> dict[str, str]:
    """Each data set, and how many of its images the trials use: a --smoke run, a subset or a long tail
    trains on far fewer than the files hold, and the header must not suggest otherwise."""
    out = {}
    for name, data in datasets.items():
        facts = [spec.facts for spec in plan if spec.config["dataset"] == name]

        def span(key):
            values = sorted({f[key] for f in facts})
            return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"
        val = f" / {span('n_val')} val" if any(f["n_val"] for f in facts) else ""
        out[name] = data.describe(f"{span('n_train')} train{val} / {span('n_test')} test")
    return out


PENDING = "TUNE_MAX_PENDING_TRIALS_PG"


def run_sweep(sweep: Sweep, plan: Plan, datasets: dict, store: Store, args, run: RunSettings) -> int:
    import ray

    from sweeps.engine import confirm
    from sweeps.engine.console import emit, header_lines
    from trainables.environment import collect as environment
    from trainables.ray_trainable import exit_quietly_when_killed

    settings = plan.search
    meta = dict(sweep=store.name, study=sweep.study, code_version=code_version(),
                searcher=settings["searcher"], scheduler=settings["scheduler"], search_seed=settings["search_seed"],
                trials=settings["trials"], search_keys=list(plan.picked_keys), phase="search")
    # Our Recorder writes the results. Tune's own CSV/JSON/TensorBoard loggers would write them a
    # second time, at 0.2 s per trial (0.39 vs 0.17 s of sweep overhead, docs/benchmarks.md), and warn
    # that they cannot log the per-layer lists. Export the variable as 0 to get them back. The Recorder
    # writes the one file Tune's ResultGrid reads, each trial's result.json (sweeps/engine/tune_state.py).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    try:
        ray.init(address=run.address, include_dashboard=False, logging_level="warning",
                 runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"},
                              "worker_process_setup_hook": exit_quietly_when_killed},
                 **({"num_cpus": args.num_cpus} if args.num_cpus else {}))
    except (ConnectionError, ValueError) as exc:
        raise ConfigError(f"--address {run.address}: cannot join that Ray cluster "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    pending = os.environ.get(PENDING)
    try:
        check_cluster_gpus(run.gpus_per_trial, ray.nodes())  # before anything is written
        if pending is None:
            # Tune keeps one trial pending for a searcher other than its own variant generator (it would wait
            # for results), which starts trials one at a time. The plan's feeder (sweeps/engine/feeder.py)
            # waits for nothing: as many pending as Tune allows a grid, by Tune's own rule for that.
            os.environ[PENDING] = str(max(200, int(ray.cluster_resources().get("CPU", 1.0) * 1.1)))
        # A resumed sweep whose search ended goes on with its recorded confirmation (sweeps/engine/confirm.py).
        confirmation = store.read_json("sweep.json").get("confirmation") if args.resume else None
        phases = [Phase("search", plan, meta, "tune", store, datasets, args, run)] if confirmation is None else []
        if confirmation is not None:
            phases.append(Phase.confirming(plan, meta, confirmation, store, datasets, args, run))
        # Same trainable (rebuilt from the same, checked plan); Ray keeps finished trials as they are.
        # Errored trials get another go from their last checkpoint: a resume means "try again", and a
        # transient fault (a lost node, an OOM) then heals while a deterministic one just errors again.
        # The Recorder comes back from Ray's pickle; it holds no state that matters. Restored before
        # anything is written, so a sweep this version cannot restore stays as it was.
        restored = phases[0].restore() if args.resume else None
        # the console view's header, once every check has passed (a mistake stays one `error:` line)
        data = describe_data(datasets, plan)
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
                seeds=args.seeds, max_failures=run.max_failures, started_at=started_at, host=socket.gethostname(),
                data=data, plan=plan.record(), search=settings,
                resume_policy=SCHEDULERS[settings["scheduler"]].resume, log=list(run.log),
                # the driver's; each trial's worker reports its own env_id, filed under `environments`
                environment=environment()))
        started = time.perf_counter()
        phases[0].fit(restored)
        if settings.get("confirm") and confirmation is None:
            ended, planned = confirm.search_ended(store, plan)
            if ended < planned:  # interrupted, or out of --time-budget: a --resume continues the search first
                emit([f"confirm: not started, {ended} of {planned} search trials ended"])
            else:
                confirmation = confirm.select(store.read_table("trials"), plan)
                record = store.read_json("sweep.json")
                store.write_json("sweep.json", {**record, "confirmation": confirmation})
                emit([confirm.summary_line(confirmation)])
                Phase.confirming(plan, meta, confirmation, store, datasets, args, run).fit(None)
        elapsed = time.perf_counter() - started
    finally:
        ray.shutdown()
        if pending is None:
            os.environ.pop(PENDING, None)
    return summarize(store, elapsed, args, run)


def summarize(store: Store, elapsed: float, args=None, run: RunSettings | None = None) -> int:
    lease.check(store.uri, strict=True)  # close_sweep writes `stopped` rows and folds: only while the lease is ours
    trials = store.close_sweep()
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    phases = trials.groupby(trials["phase"].fillna("search"), sort=False) if "phase" in trials.columns else []
    by_phase = {phase: rows["status"].value_counts().to_dict() for phase, rows in phases}
    if set(by_phase) - {"search"}:  # a confirmed sweep: the search's trials and the confirmation's, apart
        told = "; ".join(f"{phase}: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
                         for phase, c in sorted(by_phase.items(), key=lambda item: item[0] != "search"))
    else:
        told = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"\nsweep {store.name}: {told} in {elapsed:.0f} s")
    print(f"results: {store.uri}")
    print(f"report:  python -m analysis.report {store.uri}")
    if counts.get("stopped") and args is not None and run is not None:
        print(f"interrupted: continue with  python {os.path.relpath(run.file)} --resume "
              f"--name {store.name} --storage {args.storage}")
    return 1 if counts.get("error") or counts.get("stopped") else 0


def main(sweep: Sweep, file: str, argv=None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, sweep.description, Path(file).stem, sweep.flags)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # A first look at the sweep's lease: a live driver refuses this one now, not after planning's seconds
        # (torch's import); one that looks dead is watched from here on by acquire() below.
        seen = None if args.dry_run else lease.sight(args.storage, args.name, force=args.force)
        if not args.progress_every > 0:  # NaN too
            raise ConfigError(f"--progress-every {args.progress_every:g}: must be > 0 seconds")
        gpus_per_trial = check_resources(args)
        planned = plan(sweep, args)
        log = ()
        if args.log:  # imported only when asked for: the trackers' packages are an optional extra
            from sweeps.engine import trackers
            log = tuple(trackers.check(args.log))
        run = RunSettings(file=file, address=ray_address(args), gpus_per_trial=gpus_per_trial, log=log,
                          max_failures=DEFAULT_MAX_FAILURES if args.max_failures is None else args.max_failures)
        if args.dry_run:
            print_dry_run(planned)
            return 0
        store = Store(args.storage, args.name)
        check_storage(store, args)
        try:
            check_resume(store, planned, args)
        except ConfigError:
            if args.resume:  # e.g. no sweep.json yet: a driver is starting this sweep; name it instead
                lease.refuse_if_held(store)
            raise
        if args.resume:
            from sweeps.engine.trackers import check_resume as check_trackers_resume
            check_trackers_resume(store, list(run.log))
        # One driver per sweep (sweeps/results/lease.py): after the checks, before anything is written.
        held = lease.Lease.acquire(store, force=args.force, resume=args.resume, seen=seen)
    except (ConfigError, DataError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        try:
            check_local_gpus(args, run)
            check_address(run.address)
            datasets, planned = load_data(planned, os.path.abspath(os.path.expanduser(args.data_dir)),
                                          smoke=args.smoke)
            return run_sweep(sweep, planned, datasets, store, args, run)
        except (ConfigError, DataError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except lease.LeaseLost as exc:  # another driver took over: it continues the sweep
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except StorageError as exc:  # the storage stopped the sweep (sweeps/engine/recorder.py): one line, no traceback
            # Ray's storage threads may still be failing against the dead storage and logging it (CI saw an
            # ERROR from ray/train/_internal/storage.py 6 s after this line); the sweep is over, so ours is last.
            logging.disable(logging.CRITICAL)
            print(f"error: {storage_stop_line(exc, store, run, sys.argv[1:] if argv is None else argv)}",
                  file=sys.stderr)
            return 1
    finally:
        held.release()  # a normal end, Ctrl-C or an error: the next driver need not wait for it to go stale


def storage_stop_line(exc: StorageError, store: Store, run: RunSettings, argv: list[str]) -> str:
    """Why the storage stopped the sweep, where what it had not written is kept, and the command that continues
    it (the same flags, with --resume)."""
    folder = spill_folder(store)
    results, others = kept_in(folder)
    there = (count(results, "result") + (f" and {count(others, 'other write')}" if others else "")
             + f" {'is' if results + others == 1 else 'are'} kept in {folder}")
    if exc.lost:
        kept = exc.lost + (f"; {there}" if results or others else "")
    elif results or others:
        kept = f"nothing reported is lost: {there}"
    else:
        kept = "nothing reported is lost: every result is on storage"
    again = [os.path.relpath(run.file), *[a for a in argv if a != "--resume"], "--resume"]
    return f"{exc}; {kept}; continue with  python {shlex.join(again)}"
