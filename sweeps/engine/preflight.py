"""Checks a sweep passes before Ray starts (or, for the cluster, right after it joins): resources, the
cluster address and its GPUs, and --resume (the same plan, the same retry budget, the same search).
Each raises ConfigError with one line; the runner turns it into exit code 2 before anything is written.
"""
from __future__ import annotations

import os
import socket
import sys
import time

from sweeps.engine import search
from sweeps.results import retry
from sweeps.results.outbox import spill_folder
from sweeps.results.plan import Plan
from sweeps.results.store import Store
from trainables.errors import ConfigError


def check_resources(args) -> float:
    """The flags' CPU and GPU requests checked; returns the GPU share of each trial (--trials-per-gpu N: 1/N)."""
    if args.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {args.cpus_per_trial}: must be > 0")
    if args.gpus_per_trial < 0 or (0 < args.gpus_per_trial and args.gpus_per_trial > 1
                                   and not float(args.gpus_per_trial).is_integer()):
        raise ConfigError(f"--gpus-per-trial {args.gpus_per_trial}: use a fraction in (0, 1] or a whole number")
    if args.num_cpus is not None and (args.num_cpus < 1 or ray_address(args) != "local"):
        raise ConfigError(f"--num-cpus {args.num_cpus}: " + ("must be >= 1" if args.num_cpus < 1 else
                          "sets the CPUs of a private Ray; a cluster's nodes say theirs in `ray start --num-cpus`"))
    if args.max_failures is not None and args.max_failures < 0:
        raise ConfigError(f"--max-failures {args.max_failures}: must be >= 0")
    if args.trials_per_gpu < 1:
        raise ConfigError(f"--trials-per-gpu {args.trials_per_gpu}: must be >= 1 (1 = one trial per GPU share "
                          "given by --gpus-per-trial)")
    if args.trials_per_gpu > 1 and args.gpus_per_trial:
        raise ConfigError("--trials-per-gpu and --gpus-per-trial both set the GPU share per trial: give one of them")
    # N trials per GPU; see docs/benchmarks.md for why and what MPS adds
    return 1.0 / args.trials_per_gpu if args.trials_per_gpu > 1 else args.gpus_per_trial


def ray_address(args) -> str:
    """Without --address, start a private Ray here ("local"): plain ray.init() would join any cluster this
    machine happens to run. Under `ray job submit`, RAY_ADDRESS names the cluster the job belongs to."""
    return args.address or os.environ.get("RAY_ADDRESS") or "local"


def check_local_gpus(args, run) -> None:
    """A private Ray starts here, so a GPU request needs a GPU here (checked before Ray starts).
    `run`: the RunSettings (its gpus_per_trial is --trials-per-gpu's share where that is given)."""
    if run.gpus_per_trial > 0 and run.address == "local":
        import torch
        have = torch.cuda.device_count()
        if have < run.gpus_per_trial:
            flag = f"--trials-per-gpu {args.trials_per_gpu}" if args.trials_per_gpu > 1 else f"--gpus-per-trial {run.gpus_per_trial:g}"
            raise ConfigError(f"{flag}: this machine has {have} GPUs; "
                              "use 0 to train on the CPU, or --address to join a cluster that has GPUs")


def check_address(address: str) -> None:
    """A mistyped --address would leave ray.init retrying for minutes; a plain TCP probe fails in seconds.
    `address`: ray_address()'s."""
    if address in ("local", "auto"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected host:port (the head's GCS, usually port 6379), "
                          "ray://host:port, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: nothing answers there ({exc.strerror or exc}); "
                          "is the Ray head running (ray start --head / ray up)?") from None


def check_cluster_gpus(gpus_per_trial: float, nodes: list[dict]) -> None:
    """A trial asking for G GPUs must fit on one node; otherwise Tune would wait for it forever."""
    if gpus_per_trial > 0:
        best = max((n["Resources"].get("GPU", 0) for n in nodes if n.get("Alive")), default=0)
        if best < gpus_per_trial:
            raise ConfigError(f"--gpus-per-trial {gpus_per_trial:g}: no node of the Ray cluster has that "
                              f"many GPUs (the most on one node is {best:g})")


def check_storage(store: Store, args) -> None:
    """--storage-timeout (> 0 seconds; set for every Store of this process), then that the storage can be
    written: a local folder, or an object store's bucket that exists and answers (sweeps/results/store.py). A
    spill folder a stopped run left for a sweep of this name that no longer exists on storage is set aside,
    so that a new sweep starts clean."""
    if not args.storage_timeout > 0:  # NaN too
        raise ConfigError(f"--storage-timeout {args.storage_timeout:g}: must be > 0 seconds")
    retry.configure(args.storage_timeout)
    store.check_writable()
    folder = spill_folder(store)
    if not args.resume and folder.is_dir() and not store.exists():
        aside = folder.with_name(f"{folder.name}.abandoned-{int(time.time())}")
        folder.rename(aside)
        print(f"note: {store.uri} does not exist; the results a stopped run of a sweep by that name kept are "
              f"set aside in {aside}", file=sys.stderr)


# --- resume: the same sweep, continued; never a silent overwrite or a mix of two plans ---

def check_resume(store: Store, plan: Plan, args) -> None:
    """Without --resume the name must be free; with it, the sweep must exist and run the same plan (each
    trial's overrides and labels, Plan.record), the same retry budget and the same search."""
    if not args.resume:
        if store.exists():
            raise ConfigError(f"sweep {args.name!r} already exists at {store.uri}: pass --resume to continue it, "
                              "or choose a new --name")
        return
    if not store.exists():
        raise ConfigError(f"--resume: no sweep {args.name!r} at {store.uri} to continue (check --name and --storage)")
    try:
        record = store.read_json("sweep.json")
    except (OSError, ValueError):
        record = {}
    recorded = record.get("plan")
    if recorded is None:
        raise ConfigError(f"--resume: {store.uri} has no readable sweep.json plan; start it again under a new --name")
    # Ray's Tuner.restore takes no new run config, so the first run's retry budget stays.
    kept = record.get("max_failures")
    if args.max_failures is not None and kept is not None and args.max_failures != kept:
        raise ConfigError(f"--resume --max-failures {args.max_failures}: a resumed sweep keeps the first run's "
                          f"--max-failures {kept} (Ray cannot change it on restore); leave the flag out")
    search.check_resume(plan.search, record.get("search"))
    now = plan.record()
    if recorded != now:
        changed = next((i for i, (a, b) in enumerate(zip(recorded, now)) if a != b), min(len(recorded), len(now)))
        raise ConfigError(f"--resume: the trials differ from the ones sweep {args.name!r} started with "
                          f"({len(recorded)} then, {len(now)} now; first difference at trial {changed}); "
                          "use the same sweep file and flags, or a new --name")
