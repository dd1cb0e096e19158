"""Every scheduler `--scheduler` offers, in one table: the Ray class it builds, the flags it reads, what
--resume does with it, and the words the flag help, the report and the lr-window notes use.

Ray is imported inside the builders only: analysis.report and analysis.status read this table and must
load neither torch nor Ray (tests/test_layering.py).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# PBT changes these in a running trial (trainables.loop.retune puts them in force after the exploit);
# the rest of a config shapes the model or the data, which a copied checkpoint cannot change.
MUTABLE = ("lr", "weight_decay", "momentum")
PBT_RANGES = dict(lr=("loguniform", 1e-5, 1.0), weight_decay=("loguniform", 1e-6, 1e-2),
                  momentum=("uniform", 0.5, 0.99))  # resample ranges for keys the space does not sample

# The search settings a scheduler may read (argparse dests), with what each flag's help says it does and
# how the report words its value.
FLAGS = {
    "grace_period": ("epochs before any stop", lambda v: f"grace period {v} epoch(s)"),
    "reduction_factor": ("keep the top 1/rf a rung", lambda v: f"reduction factor rf = {v:g}"),
    "max_t": ("last rung (default: the trials' epochs)", lambda v: f"last rung at epoch {v}"),
    "pbt_mutate": (f"keys to perturb, from {', '.join(MUTABLE)}", lambda v: "mutating " + ", ".join(v)),
    "pbt_interval": ("epochs between exploit/explore steps", lambda v: f"every {v} epoch(s)"),
}


@dataclass(frozen=True)
class Scheduler:
    """One --scheduler choice.

    summary    the --scheduler help: what it does, in Ray's terms
    report     the report's sentence for it (analysis.search)
    called     how a sentence names it ("stopped early by ASHA")
    flags      the search settings it reads (FLAGS): their help names it, the report states their values
    resume     what --resume does with it, recorded in sweep.json as resume_policy
    refusal    why --resume is refused ("" when it is not)
    build      (search settings, sampled nodes) -> the Ray scheduler; imports Ray itself
    """
    summary: str
    report: str
    called: str
    flags: tuple[str, ...]
    resume: str
    build: Callable[[Mapping, Mapping], Any]
    refusal: str = ""


def _fifo(search, sampled):
    from ray.tune.schedulers import FIFOScheduler
    return FIFOScheduler()


# metric/mode live in TuneConfig only: Ray raises when a scheduler has them too.
def _asha(search, sampled):
    from ray.tune.schedulers import ASHAScheduler
    return ASHAScheduler(time_attr="training_iteration", max_t=search["max_t"], grace_period=search["grace_period"],
                         reduction_factor=search["reduction_factor"])


def _hyperband(search, sampled):
    from ray.tune.schedulers import AsyncHyperBandScheduler
    return AsyncHyperBandScheduler(time_attr="training_iteration", max_t=search["max_t"],
                                   grace_period=search["grace_period"],
                                   reduction_factor=search["reduction_factor"], brackets=3)


def _median(search, sampled):
    from ray.tune.schedulers import MedianStoppingRule
    return MedianStoppingRule(time_attr="training_iteration", grace_period=search["grace_period"],
                              min_samples_required=3)


def _pbt(search, sampled):
    from ray.tune.schedulers import PopulationBasedTraining
    return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=search["pbt_interval"],
                                   hyperparam_mutations={k: pbt_domain(k, sampled) for k in search["pbt_mutate"]})


def pbt_domain(key: str, sampled: Mapping):
    """Where PBT resamples `key` from: the space's own distribution for it, else a wide default range."""
    if key in sampled:
        return sampled[key].domain()
    from ray import tune
    kind, low, high = PBT_RANGES[key]
    return getattr(tune, kind)(low, high)


FRESH = "continue with a fresh scheduler"
# Ray restores the searcher but not the scheduler's state (ray-project/ray#30838): ASHA, hyperband and median
# continue with a fresh scheduler; PBT's population and lineage cannot be rebuilt, so a PBT sweep is not resumed.
SCHEDULERS: dict[str, Scheduler] = {
    "fifo": Scheduler(
        summary="run every trial to the end (no early stopping)",
        report="none (FIFO: every trial runs all its epochs)",
        called="the scheduler", flags=(), resume="continue", build=_fifo),
    "asha": Scheduler(
        summary="ASHAScheduler: stop a trial at a rung (grace, grace*rf, ...) unless it is in the top 1/rf there",
        report="ASHA (asynchronous successive halving): at each rung (the grace period, then grace x rf, ...) "
               "a trial goes on only if it is in the top 1/rf of the trials that reached that rung",
        called="ASHA", flags=("grace_period", "reduction_factor", "max_t"), resume=FRESH, build=_asha),
    "hyperband": Scheduler(
        summary="AsyncHyperBandScheduler with 3 brackets: ASHA hedged over several grace periods",
        report="asynchronous HyperBand: ASHA hedged over 3 brackets with different grace periods",
        called="HyperBand", flags=("grace_period", "reduction_factor", "max_t"), resume=FRESH, build=_hyperband),
    "median": Scheduler(
        summary="MedianStoppingRule: stop a trial whose best result is below the median of the others' "
                "running averages at the same epoch",
        report="the median stopping rule: after the grace period, a trial whose best result is worse than the "
               "median of the other trials' running averages at the same epoch is stopped",
        called="the median stopping rule", flags=("grace_period",), resume=FRESH, build=_median),
    "pbt": Scheduler(
        summary="PopulationBasedTraining: every --pbt-interval epochs the bottom quarter copies a top-quarter "
                "trial's checkpoint and perturbs --pbt-mutate (x0.8 / x1.2, or a resample)",
        report="population-based training: at every interval the bottom quarter of the population copies a "
               "top-quarter trial's checkpoint (exploit) and perturbs the mutated keys (explore)",
        called="PBT", flags=("pbt_interval", "pbt_mutate"), resume="refused", build=_pbt,
        refusal="Ray does not restore a PBT population (ray-project/ray#30838), so its exploits could not continue"),
}


def flag_help(flag: str) -> str:
    """`asha/hyperband: keep the top 1/rf a rung`: which schedulers read the flag, and what it does."""
    users = "/".join(name for name, s in SCHEDULERS.items() if flag in s.flags)
    return f"{users}: {FLAGS[flag][0]}"


def build(search: Mapping, sampled: Mapping):
    """The Ray scheduler of these search settings (sweep.json's "search")."""
    return SCHEDULERS[search["scheduler"]].build(search, sampled)


def describe(search: Mapping) -> str:
    """The report's words for the sweep's scheduler, with the values of the flags it read; an unknown name
    (a sweep from another version) as it is recorded."""
    kind = search.get("scheduler", "fifo")
    scheduler = SCHEDULERS.get(kind)
    if scheduler is None:
        return str(kind)
    params = [FLAGS[flag][1](search[flag]) for flag in scheduler.flags
              if (search.get(flag) if flag == "pbt_mutate" else search.get(flag) is not None)]
    return scheduler.report + (f" ({'; '.join(params)})" if params else "")


def called(kind: str | None) -> str:
    """How a sentence names the scheduler `kind`: "ASHA", "the median stopping rule"; else "the scheduler"."""
    scheduler = SCHEDULERS.get(kind)
    return scheduler.called if scheduler is not None else "the scheduler"
