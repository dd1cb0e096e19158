"""Search efficiency (issues 14 and 23): the full lr grid under FIFO vs ASHA at both search scopes, on the
same cells and the same lr grid, in one run.

    python benchmarks/search_efficiency.py --data-dir ../shared/data/cifar-10-subset --scale 0.01
    python benchmarks/search_efficiency.py --synthetic --scale 0.005 --cell init=he_normal --cell opt=sgd \\
        --cell depth=2,10 --lrs 1e-3:1 --per-decade 1 --epochs 3 --val-size 100     # a smoke run

Three sweeps of study lr_window (sweeps/lr_window.py) go through the real runner in this process
(sweeps.engine.runner.main: plan, data loaded once, Ray Tune, Parquet), into one storage folder:

  lr_window_fifo       every cell x every lr of the grid, each trial trained for all its epochs (the full grid);
  lr_window_asha       joint ASHA: the same trials under `--scheduler asha --search-scope sweep`, one ASHA
                       (rungs at grace, grace*rf, ... below max_t = epochs) ranking every trial of every cell
                       together, as the study ran before issue 23;
  lr_window_asha_cell  per-cell ASHA: `--scheduler asha --search-scope cell --search-axis lr`, one ASHA per
                       cell inside the one Tune run (sweeps/engine/cells.py), so a trial is ranked only against
                       the other lrs of its own cell; the study's default scope now.

lr is a log grid in all three (`--grid lr=v1,v2,...`, never sampled; `--search-axis lr` has the per-cell
sweep search that axis inside each cell instead of making each lr a cell of its own), so the three sweeps
train identical trials (same configs, seeds, splits) and an ASHA trial follows its fifo twin until ASHA
stops it; the output checks that for both ASHA sweeps. What is compared, for each scope against the grid:

  epochs      the sum of epochs_completed over all trials of each sweep, and asha/fifo;
  best lr     per cell: fifo's = the lr with the best final metric of the cell's trials (the sweep's own
              metric from sweep.json, val_acc; ties: lower val_loss). ASHA's = its recommendation: the best
              final metric among the cell's trials that trained longest, i.e. reached max_t where any did.
              Trials ASHA stopped early are not candidates (their last value is from a shorter horizon) unless
              no trial of the cell got further (joint ASHA can stop a whole cell; the table shows the epoch).
              A diverged trial is never a candidate in either: its last val_acc is that of NaN weights;
  agreement   |index(asha's lr) - index(fifo's lr)| <= 1 in the sorted lr grid, as a fraction of the cells
              where fifo found a best lr (a cell where every lr diverged has none: shown "n/a", not counted).
              Beside it, not a target: the cells whose pick's lr scored, in the fifo run, within one binomial
              standard error of fifo's best (how much of a disagreement is the validation set's noise).

`--scale S` trains on S x 49,000 images (the study: 50,000 minus its 1,000 validation images; capped
by the data set's size, and the table header says what ran), validates on max(500, S x 1,000) and
cuts the unused test set to as many. Epochs stay the study's 10 unless `--epochs` says otherwise.
Targets, for per-cell ASHA (the study's scope): <= 35% of the grid's epochs, and agreement in >= 90% of
the cells. Joint ASHA's figures are printed beside them (issue 14 held it to 35% and 75%). The last four
lines are `joint_asha_epoch_fraction: <ratio>` and `joint_asha_best_lr_agreement: <fraction of cells>`,
then the per-cell scope's `asha_epoch_fraction: <ratio>` and `asha_best_lr_agreement: <fraction of cells>`.
(`--asha-scope joint|cell`, which ran one ASHA sweep per cell for "cell", is gone: every run has both scopes.)

One ASHA sweep is one draw of the order in which its trials reached the rungs, and ASHA's decisions depend on
it. `--replay N` re-runs each ASHA sweep's own scheduler on the full grid's recorded epochs (nothing trains;
benchmarks/asha_replay.py): first with that sweep's own timing, which should give its figures back, then in
the runner's order and in N random orders, printing each scope's median and 5-95% range and how often the
per-cell targets are met. `--replay-asha GRACE:RF` adds per-cell ASHA settings that never ran.
`--report-only --storage DIR` reports on (and replays) the sweeps an earlier run left in DIR, training
nothing; it refuses flags that plan other trials or search settings than that run's.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EPOCH_TARGET, AGREEMENT_TARGET = 0.35, 0.90  # per-cell ASHA's
STUDY_TRAIN, STUDY_VAL = 49_000, 1_000  # lr_window on full CIFAR-10: 50,000 training images, 1,000 held out
MIN_VAL = 500  # below this the validation accuracy's noise (~2 points at 500) swamps neighbouring lrs
# The representative slice: He vs N(0, 1), shallow vs deep, no BN (where the window moves most), both optimisers.
SWEEPS = ("lr_window_fifo", "lr_window_asha", "lr_window_asha_cell")  # full grid, joint ASHA, per-cell ASHA
SEARCH_KEYS = ("scheduler", "search_scope", "search_axes", "grace_period", "reduction_factor", "max_t")  # --report-only
SLICE = dict(init=["he_normal", "normal"], depth=[2, 10], bn=[False], opt=["sgd", "adam"])


class Parser(argparse.ArgumentParser):
    """Mistakes end in one line on stderr and exit 2, as the runner's do."""

    def error(self, message):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


class Usage(Exception):
    pass


def study_dims(grid) -> dict[str, tuple[str, list]]:
    """{dim: (kind, values)} of the study's grid without its lr: kind 'variants' (values are (label, opts))
    or 'axis' (values are config values)."""
    from sweeps.engine.grid import Axis, Variants
    dims = {}
    for part in getattr(grid, "parts", (grid,)):
        if isinstance(part, Variants):
            dims[part.name] = ("variants", list(part.options))
        elif isinstance(part, Axis) and part.key != "lr":
            dims[part.key] = ("axis", list(part.values))
    return dims


def parse_value(dim: str, kind: str, known: list, text: str):
    if kind == "variants":
        labels = [label for label, _ in known]
        if text not in labels:
            raise Usage(f"--cell {dim}={text}: the study has no {dim} {text!r} (choose from {', '.join(labels)})")
        return text
    for value in known:
        if str(value).lower() == text.lower():
            return value
    raise Usage(f"--cell {dim}={text}: the study has no {dim} {text!r} (choose from {', '.join(map(str, known))})")


def choose_cells(dims: dict, base: str, cells: list[str]) -> dict[str, list]:
    """{dim: chosen values}: the slice (or all of the study), with each `--cell DIM=V1,V2` replacing one dim."""
    chosen = {}
    for dim, (kind, known) in dims.items():
        every = [label for label, _ in known] if kind == "variants" else list(known)
        chosen[dim] = every if base == "all" else [parse_value(dim, kind, known, str(v)) for v in SLICE[dim]]
    for text in cells:
        dim, sep, values = text.partition("=")
        dim = dim.strip()
        if not sep or dim not in dims:
            raise Usage(f"--cell {text!r}: expected DIM=V1,V2 with DIM one of {', '.join(dims)}")
        kind, known = dims[dim]
        parsed = [parse_value(dim, kind, known, v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise Usage(f"--cell {text!r}: no values")
        chosen[dim] = list(dict.fromkeys(parsed))
    return chosen


def cells_grid(dims: dict, chosen: dict):
    from sweeps.engine.grid import axis, cross, variants
    parts = []
    for dim, (kind, known) in dims.items():
        if kind == "variants":
            parts.append(variants(dim, **{label: opts for label, opts in known if label in chosen[dim]}))
        else:
            parts.append(axis(dim, [v for v in known if v in chosen[dim]]))
    return cross(*parts)


def cell_name(dims: dict, config: dict, labels: dict) -> str:
    """e.g. he_normal/d2/nobn/sgd: the cell's value of each dimension, in the study's order."""
    bits = []
    for dim, (kind, _) in dims.items():
        value = labels[dim] if kind == "variants" else config[dim]
        bits.append(f"d{value}" if dim == "depth" else ("bn" if value else "nobn") if dim == "bn"
                    else str(value) if kind == "variants" else f"{dim}={value}")
    return "/".join(bits)


def lr_grid(text: str, per_decade: int) -> list[float]:
    """`V1,V2,...`, or `LOW:HIGH`: per_decade log-spaced values from LOW up to HIGH (both included)."""
    try:
        if ":" in text:
            low, high = (float(v) for v in text.split(":"))
            if not 0 < low < high:
                raise Usage(f"--lrs {text}: expected 0 < LOW < HIGH")
            n = int(math.floor(math.log10(high / low) * per_decade + 0.01)) + 1  # 1% of a step of slack
            values = [float(f"{low * 10 ** (i / per_decade):.4g}") for i in range(n)]
        else:
            values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise Usage(f"--lrs {text}: expected V1,V2,... or LOW:HIGH") from None
    if len(values) < 2 or values[0] <= 0:
        raise Usage(f"--lrs {text}: need at least 2 positive learning rates")
    return values


def asha_rungs(grace: int, rf: float, max_t: int) -> list[int]:
    """The milestones of Ray's ASHAScheduler (one bracket), ascending (ray.tune.schedulers.async_hyperband)."""
    import numpy as np
    n = int(np.log(max_t / grace) / np.log(rf) + 1)
    return sorted(grace * rf ** k for k in range(n))


def halving_fraction(rungs: list, rf: float, max_t: int) -> float:
    """Epochs of synchronous successive halving with these rungs, as a fraction of the full grid's."""
    below = [r for r in rungs if r < max_t]
    if not below:
        return 1.0
    epochs, keep = below[0], 1.0
    for k, rung in enumerate(below):
        keep /= rf
        epochs += keep * ((below[k + 1] if k + 1 < len(below) else max_t) - rung)
    return epochs / max_t


def run_sweep(sweep, name: str, argv: list[str]) -> float:
    from sweeps.engine.runner import main
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the runner's progress to stderr; stdout stays the report
        code = main(sweep, str(REPO / "sweeps" / "lr_window.py"), ["--name", name, *argv])
    wall = time.perf_counter() - started
    if code != 0:
        print(f"error: the {name} sweep exited with {code} (see above)", file=sys.stderr)
        raise SystemExit(code)
    return wall


def read_sweep(path: Path):
    from analysis.results import load
    tables = load(str(path))
    search = json.loads((path / "sweep.json").read_text())["search"]
    return tables["trials"], tables["epochs"], search


def in_cell(trials, config: dict):
    mask = None
    for key, value in config.items():
        m = trials[key] == value
        mask = m if mask is None else mask & m
    return trials[mask]


def lr_index(lrs: list[float], lr: float) -> int:
    return min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / lr)))


def ranked(trials, metric: str, mode: str):
    """Trials best first by the final metric (NaN, i.e. diverged, last); ties: lower val_loss."""
    sign = -1 if mode == "max" else 1
    key = trials[metric] * sign
    return trials.assign(_key=key.fillna(math.inf), _loss=trials["val_loss"].fillna(math.inf)) \
        .sort_values(["_key", "_loss"], kind="stable")


def candidates(trials, metric):
    """The trials that can be a cell's best: a finite final metric, and not diverged. A diverged trial's last
    val_acc is that of NaN weights (one class everywhere, ~0.10), the same for every lr, not a result."""
    ok = trials[metric].notna()
    if "status" in trials.columns:
        ok &= trials["status"] != "diverged"
    return trials[ok]


def pick_fifo(trials, metric, mode):
    finite = candidates(trials, metric)
    return None if finite.empty else ranked(finite, metric, mode).iloc[0]


def pick_asha(trials, metric, mode):
    finite = candidates(trials, metric)
    if finite.empty:
        return None
    furthest = finite[finite["epochs_completed"] == finite["epochs_completed"].max()]
    return ranked(furthest, metric, mode).iloc[0]


def fmt_lr(lr: float) -> str:
    return f"{lr:.3g}"


def parse_asha(text: str) -> tuple[int, float]:
    """`GRACE:RF` of --replay-asha."""
    grace, sep, rf = text.partition(":")
    try:
        parsed = int(grace), float(rf)
    except ValueError:
        parsed = None
    if not sep or parsed is None or parsed[1] <= 1:
        raise Usage(f"--replay-asha {text}: expected GRACE:RF, a whole number of epochs and a factor > 1 (e.g. 1:3)")
    return parsed


def wall_text(seconds: float) -> str:
    return "n/a (--report-only)" if math.isnan(seconds) else f"{seconds:.1f} s"


def yes_no(ok: bool | None) -> str:
    return "n/a" if ok is None else "yes" if ok else "no"


@dataclasses.dataclass
class Scope:
    """One ASHA sweep of the comparison: how it runs, then what it gave."""
    key: str  # joint | cell
    name: str  # its folder in the storage
    label: str  # in the report
    flags: list[str]
    per_asha: int  # trials one ASHA instance ranks
    wall: float = math.nan
    trials: object = None
    epochs: object = None
    search: dict | None = None


def same_trajectory(fifo, fifo_epochs, asha, asha_epochs, metric: str) -> tuple[int, int]:
    """(trial-epochs with the same metric, trial-epochs run by both): a trial and its twin (same config and
    seed) should agree epoch for epoch until ASHA stops it."""
    twin_keys = [k for k in ("init", "init_mode", "init_targets", "init_std", "depth", "bn", "optimizer", "lr", "seed")
                 if k in fifo.columns]
    pairs = fifo[["trial_id", *twin_keys]].merge(asha[["trial_id", *twin_keys]], on=twin_keys,
                                                 suffixes=("_fifo", "_asha"))
    both = pairs.merge(fifo_epochs[["trial_id", "epoch", metric]].rename(columns={"trial_id": "trial_id_fifo"}),
                       on="trial_id_fifo").merge(
        asha_epochs[["trial_id", "epoch", metric]].rename(columns={"trial_id": "trial_id_asha"}),
        on=["trial_id_asha", "epoch"], suffixes=("_fifo", "_asha"))
    a, b = both[f"{metric}_fifo"], both[f"{metric}_asha"]
    return int(((a - b).abs() < 1e-9).sum() + (a.isna() & b.isna()).sum()), len(both)


def judge(fifo, asha, cells, dims, lrs, metric: str, mode: str, epochs: int, n_val: int | None = None) -> dict:
    """Per cell, ASHA's pick against fifo's best lr: {"cells": [{name, text, steps, ok, epochs}], agree,
    counted, within_se, larger, smaller, cut_short, regrets}. A cell where every lr diverged under fifo has no
    best lr, so no agreement to judge: it is shown ("n/a") but not counted. within_se (accuracy metrics, given
    n_val): cells whose pick's lr scored, in the fifo run, within one binomial standard error of fifo's best."""
    out = dict(cells=[], agree=0, counted=0, within_se=0, larger=[], smaller=[], cut_short=[], regrets=[])
    for config, labels in cells:
        name = cell_name(dims, config, labels)
        f_trials, a_trials = in_cell(fifo, config), in_cell(asha, config)
        f_best, a_best = pick_fifo(f_trials, metric, mode), pick_asha(a_trials, metric, mode)
        steps, ok = ("-", False) if f_best is not None else ("n/a", None)
        if a_best is None:
            text = "none (all diverged)"
        else:
            reached = int(a_best["epochs_completed"])
            text = f"{fmt_lr(a_best['lr'])} ({a_best[metric]:.3f}" + (f" @ epoch {reached})" if reached < epochs
                                                                       else ")")
            if reached < epochs:
                out["cut_short"].append(f"{name} (epoch {reached})")
            if f_best is not None:
                d = lr_index(lrs, a_best["lr"]) - lr_index(lrs, f_best["lr"])
                steps, ok = f"{d:+d}", abs(d) <= 1
                twin = f_trials[(f_trials["lr"] - a_best["lr"]).abs() < 1e-12 * a_best["lr"] + 1e-15]
                lost = (f_best[metric] - twin[metric].iloc[0]) * (1 if mode == "max" else -1) if len(twin) else math.nan
                if not math.isnan(lost):
                    out["regrets"].append(lost)
                    if n_val and metric.endswith("acc"):
                        p = f_best[metric]
                        out["within_se"] += lost <= math.sqrt(p * (1 - p) / n_val) + 1e-12
                if not ok:
                    lost_txt = "its lr diverged in fifo" if math.isnan(lost) else f"{100 * lost:.1f} points lost"
                    (out["larger"] if d > 0 else out["smaller"]).append(f"{name} ({d:+d}, {lost_txt})")
        out["agree"] += bool(ok)
        out["counted"] += ok is not None
        out["cells"].append(dict(name=name, text=text, steps=steps, ok=ok,
                                 epochs=int(a_trials["epochs_completed"].sum())))
    return out


def notes(scope: Scope, judged: dict, fraction: float, agreement: float, sync: float, rungs: list, epochs: int,
          untrainable: list, metric: str, ran_val: int, targets: bool) -> list[str]:
    """Why a target was missed, or (joint scope, no targets) where it disagrees: one string per note."""
    below = ", ".join(f"{r:g}" for r in rungs if r < epochs)
    out = []
    if fraction > EPOCH_TARGET:
        why = []
        if sync > EPOCH_TARGET:
            why.append(f"even synchronous halving needs {100 * sync:.0f}% with rungs {below} below max_t {epochs} "
                       "(more epochs, a smaller grace period or a larger reduction factor lower it)")
        if fraction > sync + 0.02:
            why.append(f"ASHA is asynchronous: a trial reaching a rung early is compared with the few recorded "
                       f"there so far and promoted more easily ({100 * (fraction - sync):.0f} points above "
                       f"synchronous halving, with {scope.per_asha} trials per ASHA"
                       + ("; with this few trials per ASHA that dominates)" if scope.per_asha < 30 else ")"))
        out.append(("epoch target missed: " if targets else f"epochs above {100 * EPOCH_TARGET:.0f}%: ")
                   + "; ".join(why or ["see the rungs above"]))
    larger, smaller, cut_short = judged["larger"], judged["smaller"], judged["cut_short"]
    if (targets and agreement < AGREEMENT_TARGET) or larger or smaller:
        why = []
        if larger:
            why.append(f"a larger lr than fifo's in {', '.join(larger)}: the short-horizon bias, large lrs lead "
                       "in the first epochs (where ASHA ranks) and are overtaken later")
        if smaller:
            why.append(f"a smaller lr than fifo's in {', '.join(smaller)}")
        if cut_short:
            why.append(f"no trial of {', '.join(cut_short)} reached max_t: "
                       + ("one ASHA ranks every cell together and stopped all of the cell's trials, so the pick "
                          "there is from a short horizon" if scope.key == "joint"
                          else "the pick there is from a short horizon"))
        bad = [c for c in untrainable if any(s.startswith(c + " ") for s in larger + smaller)]
        if untrainable:
            why.append(f"no lr trains in {', '.join(untrainable)} (fifo's best {metric} within 2 standard errors of "
                       f"chance at {ran_val} images): the best lr there is noise"
                       + (f" (so is the disagreement in {', '.join(bad)})" if bad else ""))
        out.append(("agreement target missed: " if targets and agreement < AGREEMENT_TARGET else "disagreements: ")
                   + "; ".join(why or ["see the table"]))
    return out


@dataclasses.dataclass
class Replayed:
    """A scheduler to replay on fifo's recorded epochs: an ASHA sweep that ran (scope), or a per-cell ASHA
    setting that did not (--replay-asha; scope None)."""
    label: str
    plan: object
    per_cell: bool
    scope: Scope | None = None


def replays(args, replayed: list[Replayed], fifo_plan, fifo, fifo_epochs, cells, dims, lrs, metric, mode, epochs,
            real) -> list[str]:
    """Each scheduler re-run on fifo's recorded epochs (benchmarks/asha_replay.py): for a sweep that ran, with
    its own timing first (it should give that sweep's figures back), then as many trials at once as fifo ran,
    with fifo's epoch times, in the order the runner hands trials out and in --replay random orders: the spread of
    the epoch fraction, the agreement and (per cell) how often the targets are met."""
    import random

    from benchmarks.asha_replay import concurrency, replay, replayed_trials, share, spread, timeline, trajectories
    from sweeps.engine.search import make_scheduler
    paths = trajectories(fifo, fifo_epochs, metric)
    total = sum(len(p.seconds) for p in paths.values())
    slots = args.replay_concurrency or concurrency(fifo)
    rng = random.Random(args.replay_seed)
    orders = [rng.sample(sorted(paths), len(paths)) for _ in range(args.replay)]
    lines = [f"replay: each scheduler (make_scheduler of its sweep's plan) re-run on fifo's recorded epochs: for a "
             f"sweep that ran, with its own timing (a fidelity check); then {slots} trials at a time with fifo's "
             f"epoch times, in the runner's order and in {args.replay} random orders (seed {args.replay_seed}); "
             "nothing trains"]
    for r in replayed:
        if r.plan.record() != fifo_plan.record():
            lines.append(f"replay, {r.label}: skipped, its plan lists other trials than fifo's")
            continue

        def outcome(order, own_times=None):
            scheduler = make_scheduler(r.plan)
            scheduler.set_search_properties(metric, mode)
            ran = replay(scheduler, paths, order, slots, metric, own_times)
            judged = judge(fifo, replayed_trials(fifo, paths, ran, metric), cells, dims, lrs, metric, mode, epochs)
            return sum(ran.values()) / total, judged["agree"] / judged["counted"] if judged["counted"] else math.nan

        own = outcome(sorted(paths))
        line = f"replay, {r.label}: "
        if r.scope is not None:
            timed = outcome(sorted(paths), timeline(r.scope.trials, r.scope.epochs))
            line += (f"the sweep itself {real[r.scope.key][0]:.3f} of the epochs, agreement "
                     f"{real[r.scope.key][1]:.3f}; its own start times and epoch times give {timed[0]:.3f}, "
                     f"{timed[1]:.3f}; ")
        line += f"the runner's order with fifo's epoch times gives {own[0]:.3f}, {own[1]:.3f}"
        many = [outcome(order) for order in orders]
        if many:
            fractions, agreements = [m[0] for m in many], [m[1] for m in many]
            line += (f"; random orders: epochs {spread(fractions)}, agreement {spread(agreements)} (median [5% .. "
                     "95%])")
            if r.per_cell:
                line += (f"; epoch target met in {share(f <= EPOCH_TARGET for f in fractions)}, agreement target "
                         f"in {share(a >= AGREEMENT_TARGET for a in agreements)}, both in "
                         f"{share(f <= EPOCH_TARGET and a >= AGREEMENT_TARGET for f, a in many)} of the orders")
        lines.append(line)
    return lines


def main(argv=None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="./data", help="folder holding cifar-10-batches-py (not downloaded here)")
    p.add_argument("--synthetic", action="store_true", help="synthetic images of CIFAR's shape (tests, smoke runs)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="train on SCALE x 49,000 images, 0 < SCALE <= 1 (0.01 takes about 25 min on 2 CPU cores)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial = ASHA's max_t (default: the study's)")
    p.add_argument("--val-size", type=int, default=None,
                   help=f"validation images (default max({MIN_VAL}, SCALE x {STUDY_VAL:,}))")
    p.add_argument("--lrs", default="1e-4:3.1623",
                   help="the lr grid: LOW:HIGH (log-spaced, --per-decade a decade) or V1,V2,... (default 1e-4 .. 10^0.5)")
    p.add_argument("--per-decade", type=int, default=2, help="grid points per decade for --lrs LOW:HIGH (default 2)")
    p.add_argument("--cells", choices=("slice", "all"), default="slice",
                   help="slice: init {he_normal, normal} x depth {2, 10} x bn {False} x opt {sgd, adam}; "
                        "all: every cell of the study")
    p.add_argument("--cell", action="append", default=[], metavar="DIM=V1,V2",
                   help="replace one dimension of --cells (init, depth, bn, opt), e.g. --cell depth=2,20")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before the first rung")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA: keep the top 1/rf at each rung")
    p.add_argument("--trials-per-gpu", type=int, default=0, metavar="N",
                   help="train on the GPU, N trials sharing it (default 0: on the CPU, one core per trial)")
    p.add_argument("--storage", default=None, help="keep the three sweeps here (default: a temporary folder, removed)")
    p.add_argument("--dry-run", action="store_true", help="check the flags, print the plan and exit; nothing trains")
    p.add_argument("--replay", type=int, default=0, metavar="N",
                   help="also re-run both ASHA scopes' schedulers on the full grid's recorded epochs in N random "
                        "trial orders (nothing trains; benchmarks/asha_replay.py), for the figures' spread")
    p.add_argument("--replay-seed", type=int, default=0, help="seed of the --replay orders (default 0)")
    p.add_argument("--replay-asha", action="append", default=[], metavar="GRACE:RF",
                   help="also replay per-cell ASHA with this grace period and reduction factor (none ran; repeatable)")
    p.add_argument("--replay-concurrency", type=int, default=0, metavar="K",
                   help="trials at once in the replays (default: as many as the full grid ran at once)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: report on the three sweeps an earlier run left in --storage (same flags)")
    args = p.parse_args(argv)

    try:  # the cheap checks first: the study's module imports torch
        if not 0 < args.scale <= 1:
            raise Usage(f"--scale {args.scale:g}: must be in (0, 1]")
        if args.trials_per_gpu < 0:
            raise Usage(f"--trials-per-gpu {args.trials_per_gpu}: must be >= 0 (0 = CPU only)")
        if args.replay < 0 or args.replay_concurrency < 0:
            raise Usage(f"--replay {args.replay} / --replay-concurrency {args.replay_concurrency}: must be >= 0")
        replay_asha = [parse_asha(text) for text in args.replay_asha]
        if args.per_decade < 1:
            raise Usage(f"--per-decade {args.per_decade}: must be >= 1")
        lrs = lr_grid(args.lrs, args.per_decade)
        val = max(MIN_VAL, round(STUDY_VAL * args.scale)) if args.val_size is None else args.val_size
        if val < 10:
            raise Usage(f"--val-size {val}: must be >= 10")
        n_train = max(64, round(STUDY_TRAIN * args.scale))
        data_dir = Path(args.data_dir).expanduser()
        if not args.synthetic and not ((data_dir / "cifar-10-batches-py" / "batches.meta").exists()
                                       or (data_dir / "batches.meta").exists()):
            raise Usage(f"--data-dir {args.data_dir}: no cifar-10-batches-py there (e.g. "
                        "../shared/data/cifar-10-subset), or pass --synthetic")
        storage = Path(args.storage).expanduser() if args.storage else None
        if args.report_only:
            missing = [n for n in SWEEPS if not (storage and (storage / n / "sweep.json").exists())]
            if storage is None or missing:
                raise Usage(f"--report-only: {'no --storage given' if storage is None else storage} holds no "
                            f"{', '.join(missing)} sweep; pass the --storage of an earlier run")
        elif storage is not None and (any(storage.glob("lr_window_fifo")) or any(storage.glob("lr_window_asha*"))):
            raise Usage(f"--storage {storage}: already holds an lr_window_fifo/asha sweep; choose another folder "
                        "(or add --report-only to report on it)")
        from sweeps.lr_window import SWEEP
        epochs = SWEEP.fixed["epochs"] if args.epochs is None else args.epochs
        if epochs < 1:
            raise Usage(f"--epochs {epochs}: must be >= 1")
        if not 1 <= args.grace_period <= epochs:
            raise Usage(f"--grace-period {args.grace_period}: must be in 1 .. --epochs ({epochs})")
        dims = study_dims(SWEEP.grid)
        chosen = choose_cells(dims, args.cells, args.cell)
    except Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    grid = cells_grid(dims, chosen)
    cells = grid.points()  # [(config overrides, labels)]
    # Every flag is explicit below: the study's own (samples 8, scope cell) would not fit an lr grid.
    extra = {"flags": {}} if hasattr(SWEEP, "flags") else {}
    sweep = dataclasses.replace(SWEEP, grid=grid, smoke_grid=None, **extra)
    common = ["--data-dir", str(data_dir), "--epochs", str(epochs), "--cpus-per-trial", "1",
              "--set", f"train_subset={n_train + val}", "--set", f"val_size={val}", "--set", f"test_subset={val}",
              "--grid", "lr=" + ",".join(f"{lr:g}" for lr in lrs), "--samples", "1",
              *(["--set", "dataset=synthetic"] if args.synthetic else []),
              *(["--trials-per-gpu", str(args.trials_per_gpu)] if args.trials_per_gpu > 1 else
                ["--gpus-per-trial", "1"] if args.trials_per_gpu == 1 else [])]
    asha_flags = ["--scheduler", "asha", "--grace-period", str(args.grace_period),
                  "--reduction-factor", f"{args.reduction_factor:g}"]
    fifo_flags = ["--scheduler", "fifo"]
    scopes = [Scope("joint", "lr_window_asha", "joint asha", [*asha_flags, "--search-scope", "sweep"],
                    per_asha=len(cells) * len(lrs)),
              Scope("cell", "lr_window_asha_cell", "per-cell asha",
                    [*asha_flags, "--search-scope", "cell", "--search-axis", "lr"], per_asha=len(lrs))]

    # Everything the runner would refuse, refused now: before the header, before Ray, before any sweep.
    from sweeps.engine.runner import parse_args, plan
    from trainables.config import ConfigError
    plans = {}
    try:
        for name, flags in zip(SWEEPS, (fifo_flags, *(s.flags for s in scopes))):
            planned = plans[name] = plan(sweep, parse_args([*common, *flags], "", "x"))
            if args.report_only:
                record = json.loads((storage / name / "sweep.json").read_text())
                ran = {k: record.get("search", {}).get(k) for k in SEARCH_KEYS}
                if record.get("plan") != planned.record() or ran != {k: planned.search.get(k) for k in SEARCH_KEYS}:
                    raise ConfigError(f"--report-only: {storage / name} ran other trials or search settings than "
                                      "these flags plan; pass the flags of its run (its '# rerun:' line)")
        for g, rf in replay_asha:
            if not 1 <= g <= epochs:
                raise ConfigError(f"--replay-asha {g}:{rf:g}: the grace period must be in 1 .. --epochs ({epochs})")
            plans[(g, rf)] = plan(sweep, parse_args([*common, "--scheduler", "asha", "--grace-period", str(g),
                                                     "--reduction-factor", f"{rf:g}", "--search-scope", "cell",
                                                     "--search-axis", "lr"], "", "x"))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch
    from benchmarks.env import describe
    if args.trials_per_gpu and not torch.cuda.is_available():
        print(f"error: --trials-per-gpu {args.trials_per_gpu}: torch sees no CUDA GPU here; leave it out to train on "
              "the CPU", file=sys.stderr)
        return 2
    rerun = ["python", "benchmarks/search_efficiency.py",
             *(["--synthetic"] if args.synthetic else ["--data-dir", args.data_dir]),
             "--scale", f"{args.scale:g}", "--epochs", str(epochs), "--val-size", str(val),
             "--lrs", ",".join(fmt_lr(lr) for lr in lrs) if ":" not in args.lrs else args.lrs,
             *(["--per-decade", str(args.per_decade)] if ":" in args.lrs else []),
             "--cells", args.cells, *[a for c in args.cell for a in ("--cell", c)],
             "--grace-period", str(args.grace_period), "--reduction-factor", f"{args.reduction_factor:g}",
             *(["--trials-per-gpu", str(args.trials_per_gpu)] if args.trials_per_gpu else []),
             *(["--replay", str(args.replay), "--replay-seed", str(args.replay_seed)] if args.replay else []),
             *(["--replay-concurrency", str(args.replay_concurrency)] if args.replay_concurrency else []),
             *[a for text in args.replay_asha for a in ("--replay-asha", text)]]
    rungs = asha_rungs(args.grace_period, args.reduction_factor, epochs)
    print(describe(torch.device("cuda" if args.trials_per_gpu else "cpu")))
    print(f"# rerun: {shlex.join(rerun)}")
    print(f"# study lr_window: {len(cells)} cells x {len(lrs)} lrs ({fmt_lr(lrs[0])} .. {fmt_lr(lrs[-1])}) "
          f"x {epochs} epochs = {len(cells) * len(lrs)} trials per sweep; 1 CPU thread per trial"
          + (f", {args.trials_per_gpu} trials per GPU" if args.trials_per_gpu else ""))
    print(f"# asha: grace {args.grace_period}, reduction factor {args.reduction_factor:g}, max_t {epochs} "
          f"(rungs {', '.join(f'{r:g}' for r in rungs if r < epochs) or 'none below max_t'}); "
          f"joint: one ASHA ranking all {len(cells) * len(lrs)} trials together (--search-scope sweep); "
          f"per cell: one ASHA per cell ranking its {len(lrs)} lrs, in one sweep "
          "(--search-scope cell --search-axis lr)")
    print(f"# plan: {n_train:,} training + {val:,} validation images per trial (capped by the data set), "
          f"{'synthetic data' if args.synthetic else args.data_dir}; 3 sweeps: "
          + ", ".join(["lr_window_fifo", *(s.name for s in scopes)]))
    sys.stdout.flush()
    if args.dry_run:
        print("# dry run: nothing trained")
        return 0

    with contextlib.ExitStack() as stack:
        root = storage or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="search_efficiency_")))
        base = [*common, "--storage", str(root)]
        fifo_wall = math.nan
        if not args.report_only:
            print("# running the fifo sweep ...", file=sys.stderr, flush=True)
            fifo_wall = run_sweep(sweep, "lr_window_fifo", [*base, *fifo_flags])
            for scope in scopes:
                print(f"# running the {scope.label} sweep ...", file=sys.stderr, flush=True)
                scope.wall = run_sweep(sweep, scope.name, [*base, *scope.flags])
        fifo, fifo_epochs, search = read_sweep(root / "lr_window_fifo")
        for scope in scopes:
            scope.trials, scope.epochs, scope.search = read_sweep(root / scope.name)
    metric, mode = search["metric"], search["mode"]
    joint, per_cell = scopes

    first = fifo.iloc[0]
    ran_train, ran_val = int(first["n_train"]), int(first["n_val"])
    source = f"{first['dataset']} ({first['data_source']})"
    print(f"# data: {source}, {ran_train:,} training and {ran_val:,} validation images per trial"
          + (f" (asked for {n_train:,}: the data set has fewer)" if ran_train < n_train else "")
          + f"; test set cut to {val:,} (unused here); metric {metric} ({mode}), from sweep.json")
    print(f"# wall: fifo sweep {wall_text(fifo_wall)} ({fifo['train_seconds'].sum():.0f} s of training in its "
          "trials); " + "; ".join(f"{s.label} sweep {wall_text(s.wall)} ({s.trials['train_seconds'].sum():.0f} s "
                                  "of training)" for s in scopes))
    print(f"# search scope in sweep.json: {joint.name} {joint.search.get('search_scope')!r}, "
          f"{per_cell.name} {per_cell.search.get('search_scope')!r} "
          f"(searched inside a cell: {', '.join(per_cell.search.get('search_axes') or []) or 'nothing'})")
    print(f"# fifo's lr per cell: the best final {metric} of the cell's trials. asha's pick: its recommendation, "
          f"the best final {metric} among the cell's trials that trained longest (reached max_t = {epochs} where "
          "any did; an early-stopped trial counts only when none got further, shown as '@ epoch'). "
          "Agree: at most one grid step apart")

    chance = 1.0 / 10  # cifar10 and synthetic have 10 classes
    noise = 2 * math.sqrt(chance * (1 - chance) / ran_val)
    fifo_rows, untrainable = [], []
    for config, labels in cells:
        name = cell_name(dims, config, labels)
        f_trials = in_cell(fifo, config)
        f_best = pick_fifo(f_trials, metric, mode)
        fifo_rows.append((f"{fmt_lr(f_best['lr'])} ({f_best[metric]:.3f})" if f_best is not None
                          else "none (all diverged)", int(f_trials["epochs_completed"].sum())))
        if f_best is not None and metric.endswith("acc") and f_best[metric] < chance + noise:
            untrainable.append(name)
    judged = {s.key: judge(fifo, s.trials, cells, dims, lrs, metric, mode, epochs, ran_val) for s in scopes}
    j, c = judged["joint"], judged["cell"]

    print(f"\n| cell | fifo best lr ({metric}) | joint asha pick ({metric}) | per-cell asha pick ({metric}) "
          "| steps apart, joint (asha - fifo) | agree, joint | steps apart, per cell (asha - fifo) | agree, per cell "
          "| epochs fifo | epochs joint asha | epochs per-cell asha |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (f_txt, f_ep), jc, cc in zip(fifo_rows, j["cells"], c["cells"]):
        print(f"| {jc['name']} | {f_txt} | {jc['text']} | {cc['text']} | {jc['steps']} | {yes_no(jc['ok'])} "
              f"| {cc['steps']} | {yes_no(cc['ok'])} | {f_ep} | {jc['epochs']} | {cc['epochs']} |")
    total_f = int(fifo["epochs_completed"].sum())
    totals = {s.key: int(s.trials["epochs_completed"].sum()) for s in scopes}
    print(f"| total | | | | | {j['agree']}/{j['counted']} | | {c['agree']}/{c['counted']} | {total_f} "
          f"| {totals['joint']} | {totals['cell']} |")

    fraction = {k: totals[k] / total_f for k in totals}
    agreement = {k: judged[k]["agree"] / judged[k]["counted"] if judged[k]["counted"] else math.nan for k in judged}
    uncounted = len(cells) - c["counted"]
    sync = halving_fraction(rungs, args.reduction_factor, epochs)

    def statuses(trials):
        return ", ".join(f"{n} {s}" for s, n in sorted(trials["status"].value_counts().to_dict().items()))

    def lost(k):
        r = judged[k]["regrets"]
        return f"{100 * sum(r) / len(r):.1f}" if r else "-"

    print(f"\ntrials: fifo {statuses(fifo)}; " + "; ".join(f"{s.label} {statuses(s.trials)}" for s in scopes))
    print(f"epochs: per-cell asha {totals['cell']} of fifo's {total_f} = {100 * fraction['cell']:.1f}% (target <= "
          f"{100 * EPOCH_TARGET:.0f}%: {'met' if fraction['cell'] <= EPOCH_TARGET else 'MISSED'}); joint asha "
          f"{totals['joint']} = {100 * fraction['joint']:.1f}%; synchronous successive halving on these rungs: "
          f"{100 * sync:.1f}%")
    print(f"agreement within one grid step: per-cell asha {c['agree']} of {c['counted']} cells = "
          f"{100 * agreement['cell']:.1f}% (target >= {100 * AGREEMENT_TARGET:.0f}%: "
          f"{'met' if agreement['cell'] >= AGREEMENT_TARGET else 'MISSED'}); joint asha {j['agree']} of {j['counted']} "
          f"= {100 * agreement['joint']:.1f}%; mean points of {metric} lost at the pick's lr (fifo run): "
          f"per-cell {lost('cell')}, joint {lost('joint')}"
          + (f"; {uncounted} cell(s) where every lr diverged under fifo have no best lr and are not counted"
             if uncounted else ""))
    if metric.endswith("acc"):
        print(f"within noise (not a target): the pick's lr scored, in the fifo run, within one binomial standard "
              f"error of fifo's best {metric} ({ran_val} validation images) in {c['within_se']} of {c['counted']} "
              f"cells per cell, {j['within_se']} of {j['counted']} joint")
    checks = []
    for s in scopes:
        same, n = same_trajectory(fifo, fifo_epochs, s.trials, s.epochs, metric)
        checks.append(f"{s.label} {same} of {n} trial-epochs run by both it and fifo have the same {metric}"
                      + ("" if same == n else " (not bit-reproducible here: part of any disagreement is noise)"))
    print("same-trajectory check: " + "; ".join(checks))

    if args.replay or replay_asha:
        replayed = [Replayed(s.label, plans[s.name], s.key == "cell", s) for s in scopes] + [
            Replayed(f"per-cell asha, grace {g}, reduction factor {rf:g}", plans[(g, rf)], True)
            for g, rf in replay_asha]
        for line in replays(args, replayed, plans["lr_window_fifo"], fifo, fifo_epochs, cells, dims, lrs, metric,
                            mode, epochs, {k: (fraction[k], agreement[k]) for k in fraction}):
            print(line)
    for s in (per_cell, joint):
        for note in notes(s, judged[s.key], fraction[s.key], agreement[s.key], sync, rungs, epochs, untrainable,
                          metric, ran_val, targets=s is per_cell):
            print(f"interpretation, {s.label}: {note}")
    print(f"joint_asha_epoch_fraction: {fraction['joint']:.3f}")
    print(f"joint_asha_best_lr_agreement: {agreement['joint']:.3f}")
    print(f"asha_epoch_fraction: {fraction['cell']:.3f}")
    print(f"asha_best_lr_agreement: {agreement['cell']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
