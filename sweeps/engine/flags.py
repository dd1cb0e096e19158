"""The command line of every study file: the flags, parsed once and read-only after, and the few values
the runner derives from them (RunSettings). Nothing writes onto the parsed flags: what the engine works
out goes into the Plan (sweeps/results/plan.py) or RunSettings, so `args` always says what the user typed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from sweeps.engine import search
from sweeps.results.retry import DEFAULT_TIMEOUT
from trainables.errors import ConfigError

DEFAULT_MAX_FAILURES = 1
DEFAULT_PROGRESS_EVERY = 30.0  # seconds between the console view's summaries (sweeps/engine/console.py)
DEFAULT_STORAGE_TIMEOUT = DEFAULT_TIMEOUT  # seconds of unreachable storage before a sweep stops (--storage-timeout)


class Flags(argparse.Namespace):
    """Parsed flags that refuse writes: a value derived from them belongs in the Plan or in RunSettings."""

    def __init__(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"the flags are read-only after parsing (tried to set {name!r}): "
                             "put derived values in the Plan or in RunSettings")

    def __delattr__(self, name):
        raise AttributeError(f"the flags are read-only after parsing (tried to delete {name!r})")


@dataclass(frozen=True)
class RunSettings:
    """What the runner derives from the flags before it starts Ray.

    file            the study file: the "continue with" hint names it
    address         where Ray runs: "local" (a private Ray), auto, or host:port (preflight.ray_address)
    gpus_per_trial  --gpus-per-trial, or 1/N under --trials-per-gpu N
    max_failures    --max-failures, else DEFAULT_MAX_FAILURES
    log             the --log trackers, checked and deduplicated
    """
    file: str
    address: str
    gpus_per_trial: float
    max_failures: int
    log: tuple[str, ...] = ()


class DeprecatedAlias(argparse.Action):
    """An old flag name that still works for one release, saying what replaced it (--pack meant fractional
    GPUs, never fused models: benchmarks/packed.py is those)."""
    NEW = {"--pack": "--trials-per-gpu"}

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated and will be removed; use {self.NEW[option_string]}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def parse_args(argv, description: str, default_name: str, defaults: dict | None = None) -> Flags:
    """The flags; `defaults` (a Sweep's `flags`, e.g. scheduler="asha") replace the built-in defaults."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a tiny slice of the grid: 1 epoch, a few hundred images")
    p.add_argument("--dry-run", action="store_true", help="list the trials with parameter counts; start nothing")
    p.add_argument("--data-dir", default="./data",
                   help="folder holding cifar-10-batches-py / cifar-100-python (downloaded there if absent)")
    p.add_argument("--storage", default="./results", help="results root: a local path or a URI (s3://...)")
    p.add_argument("--storage-timeout", type=float, default=DEFAULT_STORAGE_TIMEOUT, metavar="SECONDS",
                   help="how long the storage may stay unreachable before the sweep stops cleanly (default "
                        f"{DEFAULT_STORAGE_TIMEOUT:g}); meanwhile training goes on and results wait in the driver")
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
    p.add_argument("--trials-per-gpu", type=int, default=1, metavar="N",
                   help="trials sharing each GPU: N trials at 1/N GPU each; start CUDA MPS first "
                        "(benchmarks/mps.sh start)")
    p.add_argument("--pack", type=int, dest="trials_per_gpu", action=DeprecatedAlias, help=argparse.SUPPRESS)
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
    p.add_argument("--force", action="store_true",
                   help="with --resume, take over the lease of a sweep whose driver still heartbeats (it stops "
                        "writing within seconds); without it a running sweep refuses a second driver")
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
    return Flags(**vars(p.parse_args(argv)))
