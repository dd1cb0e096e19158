"""Search efficiency (issue 14): ASHA vs the full grid on the same cells and the same lr grid, in one run.

    python benchmarks/search_efficiency.py --data-dir ../shared/data/cifar-10-subset --scale 0.02
    python benchmarks/search_efficiency.py --synthetic --scale 0.005 --cell init=he_normal --cell opt=sgd \\
        --cell depth=2,10 --lrs 1e-3:1 --per-decade 1 --epochs 3 --val-size 100     # a smoke run

Two sweeps of study lr_window (sweeps/lr_window.py) go through the real runner in this process
(sweeps.engine.runner.main: plan, data loaded once, Ray Tune, Parquet), into one storage folder:

  fifo   every cell x every lr of the grid, each trial trained for all its epochs (the full grid);
  asha   the same trials under `--scheduler asha` (rungs at grace, grace*rf, ... below max_t = epochs).
         By default one sweep for all cells, as the study runs it: ASHA then ranks every trial of every
         cell together. `--asha-scope cell` runs one ASHA sweep per cell instead (what the README advises
         for per-cell answers; each sweep pays Ray's start-up again).

lr is a log grid in both (`--grid lr=v1,v2,...`, never sampled), so the two sweeps train identical trials
(same configs, seeds, splits) and an ASHA trial follows its fifo twin until ASHA stops it; the output
checks that. What is compared:

  epochs      the sum of epochs_completed over all trials of each sweep, and asha/fifo;
  best lr     per cell: fifo's = the lr with the best final metric of the cell's trials (the sweep's own
              metric from sweep.json, val_acc; ties: lower val_loss). ASHA's = its recommendation: the best
              final metric among the cell's trials that trained longest, i.e. reached max_t where any did.
              Trials ASHA stopped early are not candidates (their last value is from a shorter horizon) unless
              no trial of the cell got further (joint ASHA can stop a whole cell; the table shows the epoch);
  agreement   |index(asha's lr) - index(fifo's lr)| <= 1 in the sorted lr grid, as a fraction of the cells.

`--scale S` trains on S x 49,000 images (the study: 50,000 minus its 1,000 validation images; capped
by the data set's size, and the table header says what ran), validates on max(500, S x 1,000) and
cuts the unused test set to as many. Epochs stay the study's 10 unless `--epochs` says otherwise.
Targets: ASHA <= 35% of the grid's epochs, and agreement in >= 75% of the cells. The last two lines are
`asha_epoch_fraction: <ratio>` and `asha_best_lr_agreement: <fraction of cells>`.
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

EPOCH_TARGET, AGREEMENT_TARGET = 0.35, 0.75
STUDY_TRAIN, STUDY_VAL = 49_000, 1_000  # lr_window on full CIFAR-10: 50,000 training images, 1,000 held out
MIN_VAL = 500  # below this the validation accuracy's noise (~2 points at 500) swamps neighbouring lrs
# The representative slice: He vs N(0, 1), shallow vs deep, no BN (where the window moves most), both optimisers.
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


def pick_fifo(trials, metric, mode):
    finite = trials[trials[metric].notna()]
    return None if finite.empty else ranked(finite, metric, mode).iloc[0]


def pick_asha(trials, metric, mode):
    finite = trials[trials[metric].notna()]
    if finite.empty:
        return None
    furthest = finite[finite["epochs_completed"] == finite["epochs_completed"].max()]
    return ranked(furthest, metric, mode).iloc[0]


def fmt_lr(lr: float) -> str:
    return f"{lr:.3g}"


def main(argv=None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="./data", help="folder holding cifar-10-batches-py (not downloaded here)")
    p.add_argument("--synthetic", action="store_true", help="synthetic images of CIFAR's shape (tests, smoke runs)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="train on SCALE x 49,000 images, 0 < SCALE <= 1 (about 0.02 fits 30 min on 2 CPU cores)")
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
    p.add_argument("--asha-scope", choices=("joint", "cell"), default="joint",
                   help="joint: one ASHA sweep ranking all cells together (the study's way); cell: one per cell")
    p.add_argument("--storage", default=None, help="keep both sweeps here (default: a temporary folder, removed)")
    p.add_argument("--dry-run", action="store_true", help="check the flags, print the plan and exit; nothing trains")
    args = p.parse_args(argv)

    try:  # the cheap checks first: the study's module imports torch
        if not 0 < args.scale <= 1:
            raise Usage(f"--scale {args.scale:g}: must be in (0, 1]")
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
        if storage is not None and (any(storage.glob("lr_window_fifo")) or any(storage.glob("lr_window_asha*"))):
            raise Usage(f"--storage {storage}: already holds an lr_window_fifo/asha sweep; choose another folder")
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
    extra = {"flags": {}} if hasattr(SWEEP, "flags") else {}  # every flag is explicit below
    sweep = dataclasses.replace(SWEEP, grid=grid, smoke_grid=None, **extra)
    common = ["--data-dir", str(data_dir), "--epochs", str(epochs), "--cpus-per-trial", "1",
              "--set", f"train_subset={n_train + val}", "--set", f"val_size={val}", "--set", f"test_subset={val}",
              "--grid", "lr=" + ",".join(f"{lr:g}" for lr in lrs), "--samples", "1",
              *(["--set", "dataset=synthetic"] if args.synthetic else [])]
    asha_flags = ["--scheduler", "asha", "--grace-period", str(args.grace_period),
                  "--reduction-factor", f"{args.reduction_factor:g}"]

    # Everything the runner would refuse, refused now: before the header, before Ray, before any sweep.
    from sweeps.engine.runner import parse_args, plan
    from trainables.config import ConfigError
    asha_runs = [("lr_window_asha", sweep)] if args.asha_scope == "joint" else [
        (f"lr_window_asha_c{i}", dataclasses.replace(sweep, grid=cells_grid(dims, {
            dim: [labels.get(dim, config.get(dim))] for dim in dims})))
        for i, (config, labels) in enumerate(cells)]
    try:
        for flags in ([*common, "--scheduler", "fifo"], [*common, *asha_flags]):
            plan(sweep, parse_args(flags, "", "x"))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch
    from benchmarks.env import describe
    rerun = ["python", "benchmarks/search_efficiency.py",
             *(["--synthetic"] if args.synthetic else ["--data-dir", args.data_dir]),
             "--scale", f"{args.scale:g}", "--epochs", str(epochs), "--val-size", str(val),
             "--lrs", ",".join(fmt_lr(lr) for lr in lrs) if ":" not in args.lrs else args.lrs,
             *(["--per-decade", str(args.per_decade)] if ":" in args.lrs else []),
             "--cells", args.cells, *[a for c in args.cell for a in ("--cell", c)],
             "--grace-period", str(args.grace_period), "--reduction-factor", f"{args.reduction_factor:g}",
             "--asha-scope", args.asha_scope]
    rungs = asha_rungs(args.grace_period, args.reduction_factor, epochs)
    print(describe(torch.device("cpu")))
    print(f"# rerun: {shlex.join(rerun)}")
    print(f"# study lr_window: {len(cells)} cells x {len(lrs)} lrs ({fmt_lr(lrs[0])} .. {fmt_lr(lrs[-1])}) "
          f"x {epochs} epochs = {len(cells) * len(lrs)} trials per sweep; 1 CPU thread per trial")
    print(f"# asha: grace {args.grace_period}, reduction factor {args.reduction_factor:g}, max_t {epochs} "
          f"(rungs {', '.join(f'{r:g}' for r in rungs if r < epochs) or 'none below max_t'}); "
          + ("one sweep ranking all cells together" if args.asha_scope == "joint" else "one sweep per cell"))
    print(f"# plan: {n_train:,} training + {val:,} validation images per trial (capped by the data set), "
          f"{'synthetic data' if args.synthetic else args.data_dir}; fifo: 1 sweep, asha: {len(asha_runs)} sweep"
          + ("s" if len(asha_runs) > 1 else ""))
    sys.stdout.flush()
    if args.dry_run:
        print("# dry run: nothing trained")
        return 0

    with contextlib.ExitStack() as stack:
        root = storage or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="search_efficiency_")))
        base = [*common, "--storage", str(root)]
        print("# running the fifo sweep ...", file=sys.stderr, flush=True)
        fifo_wall = run_sweep(sweep, "lr_window_fifo", [*base, "--scheduler", "fifo"])
        asha_walls = []
        for name, asha_sweep in asha_runs:
            print(f"# running the {name} sweep ...", file=sys.stderr, flush=True)
            asha_walls.append(run_sweep(asha_sweep, name, [*base, *asha_flags]))
        fifo, fifo_epochs, search = read_sweep(root / "lr_window_fifo")
        parts = [read_sweep(root / name) for name, _ in asha_runs]
    import pandas as pd
    asha = pd.concat([t for t, _, _ in parts], ignore_index=True)
    asha_epochs = pd.concat([e for _, e, _ in parts], ignore_index=True)
    metric, mode = search["metric"], search["mode"]

    first = fifo.iloc[0]
    ran_train, ran_val = int(first["n_train"]), int(first["n_val"])
    source = f"{first['dataset']} ({first['data_source']})"
    print(f"# data: {source}, {ran_train:,} training and {ran_val:,} validation images per trial"
          + (f" (asked for {n_train:,}: the data set has fewer)" if ran_train < n_train else "")
          + f"; test set cut to {val:,} (unused here); metric {metric} ({mode}), from sweep.json")
    print(f"# wall: fifo sweep {fifo_wall:.1f} s ({fifo['train_seconds'].sum():.0f} s of training in its trials); "
          f"asha {sum(asha_walls):.1f} s ({asha['train_seconds'].sum():.0f} s of training"
          + (f", {len(asha_walls)} sweeps" if len(asha_walls) > 1 else "") + ")")
    print(f"# fifo's lr per cell: the best final {metric} of the cell's trials. asha's: its recommendation, "
          f"the best final {metric} among the cell's trials that trained longest (reached max_t = {epochs} where "
          "any did; an early-stopped trial counts only when none got further, shown as '@ epoch'). "
          "Agree: at most one grid step apart")

    # Determinism: a trial and its twin (same config and seed) should agree epoch for epoch until ASHA stops it.
    twin_keys = [k for k in ("init", "init_mode", "init_targets", "init_std", "depth", "bn", "optimizer", "lr", "seed")
                 if k in fifo.columns]
    pairs = fifo[["trial_id", *twin_keys]].merge(asha[["trial_id", *twin_keys]], on=twin_keys,
                                                 suffixes=("_fifo", "_asha"))
    both = pairs.merge(fifo_epochs[["trial_id", "epoch", metric]].rename(columns={"trial_id": "trial_id_fifo"}),
                       on="trial_id_fifo").merge(
        asha_epochs[["trial_id", "epoch", metric]].rename(columns={"trial_id": "trial_id_asha"}),
        on=["trial_id_asha", "epoch"], suffixes=("_fifo", "_asha"))
    a, b = both[f"{metric}_fifo"], both[f"{metric}_asha"]
    same = int(((a - b).abs() < 1e-9).sum() + (a.isna() & b.isna()).sum())

    rows, agree, larger, smaller, untrainable, cut_short, regrets = [], 0, [], [], [], [], []
    chance = 1.0 / 10  # cifar10 and synthetic have 10 classes
    noise = 2 * math.sqrt(chance * (1 - chance) / ran_val)
    for config, labels in cells:
        name = cell_name(dims, config, labels)
        f_trials, a_trials = in_cell(fifo, config), in_cell(asha, config)
        f_best, a_best = pick_fifo(f_trials, metric, mode), pick_asha(a_trials, metric, mode)
        f_ep, a_ep = int(f_trials["epochs_completed"].sum()), int(a_trials["epochs_completed"].sum())
        f_txt = f"{fmt_lr(f_best['lr'])} ({f_best[metric]:.3f})" if f_best is not None else "none (all diverged)"
        if a_best is None:
            a_txt, steps, ok, regret = "none (all diverged)", "-", False, "-"
        else:
            reached = int(a_best["epochs_completed"])
            a_txt = f"{fmt_lr(a_best['lr'])} ({a_best[metric]:.3f}" + (f" @ epoch {reached})" if reached < epochs
                                                                         else ")")
            if reached < epochs:
                cut_short.append(f"{name} (epoch {reached})")
            if f_best is None:
                steps, ok, regret = "-", False, "-"
            else:
                d = lr_index(lrs, a_best["lr"]) - lr_index(lrs, f_best["lr"])
                steps, ok = f"{d:+d}", abs(d) <= 1
                twin = f_trials[(f_trials["lr"] - a_best["lr"]).abs() < 1e-12 * a_best["lr"] + 1e-15]
                lost = (f_best[metric] - twin[metric].iloc[0]) * (1 if mode == "max" else -1) if len(twin) else math.nan
                regret = "diverged" if math.isnan(lost) else f"{100 * lost:.1f}"
                if not math.isnan(lost):
                    regrets.append(lost)
                if not ok:
                    (larger if d > 0 else smaller).append(f"{name} ({d:+d})")
        if f_best is not None and metric.endswith("acc") and f_best[metric] < chance + noise:
            untrainable.append(name)
        agree += ok
        rows.append(f"| {name} | {f_txt} | {a_txt} | {steps} | {'yes' if ok else 'no'} | {regret} | {f_ep} | {a_ep} |")

    print(f"\n| cell | fifo best lr ({metric}) | asha best lr ({metric}) | steps apart (asha - fifo) | agree "
          "| points lost at asha's lr (fifo run) | epochs fifo | epochs asha |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    total_f, total_a = int(fifo["epochs_completed"].sum()), int(asha["epochs_completed"].sum())
    fraction, agreement = total_a / total_f, agree / len(cells)
    print(f"| total | | | | {agree}/{len(cells)} | | {total_f} | {total_a} |")

    status = asha["status"].value_counts().to_dict()
    sync = halving_fraction(rungs, args.reduction_factor, epochs)
    print("\nasha trials: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
          + "; fifo: " + ", ".join(f"{n} {s}" for s, n in sorted(fifo["status"].value_counts().to_dict().items())))
    print(f"epochs: asha {total_a} of fifo's {total_f} = {100 * fraction:.1f}% (target <= {100 * EPOCH_TARGET:.0f}%: "
          f"{'met' if fraction <= EPOCH_TARGET else 'MISSED'}; synchronous successive halving on these rungs: "
          f"{100 * sync:.1f}%)")
    print(f"agreement within one grid step: {agree} of {len(cells)} cells = {100 * agreement:.1f}% "
          f"(target >= {100 * AGREEMENT_TARGET:.0f}%: {'met' if agreement >= AGREEMENT_TARGET else 'MISSED'})"
          + (f"; mean loss at asha's lr {100 * sum(regrets) / len(regrets):.1f} points of {metric}" if regrets else ""))
    print(f"same-trajectory check: {same} of {len(both)} trial-epochs run by both sweeps have the same {metric}"
          + ("" if same == len(both) else " (trials are not bit-reproducible here: part of any disagreement is noise)"))

    notes = []
    if fraction > EPOCH_TARGET:
        why = []
        if sync > EPOCH_TARGET:
            why.append(f"even synchronous halving needs {100 * sync:.0f}% with rungs "
                       f"{', '.join(f'{r:g}' for r in rungs if r < epochs)} below max_t {epochs} (more epochs, "
                       "a smaller grace period or a larger reduction factor lower it)")
        if fraction > sync + 0.02:
            why.append(f"ASHA is asynchronous: a trial reaching a rung early is compared with the few recorded "
                       f"there so far and promoted more easily ({100 * (fraction - sync):.0f} points above "
                       f"synchronous halving{'; with few trials per sweep this dominates' if len(asha_runs) > 1 or len(asha) < 30 else ''})")
        notes.append("epoch target missed: " + "; ".join(why or ["see the rungs above"]))
    if agreement < AGREEMENT_TARGET or larger or smaller:
        why = []
        if larger:
            why.append(f"asha picked a larger lr in {', '.join(larger)}: the short-horizon bias, large lrs lead "
                       "in the first epochs (where ASHA ranks) and are overtaken later")
        if smaller:
            why.append(f"asha picked a smaller lr in {', '.join(smaller)}")
        if cut_short:
            why.append(f"no trial of {', '.join(cut_short)} reached max_t: "
                       + ("joint ASHA ranks every cell together and stopped each of them, so its pick there is "
                          "from a short horizon" if args.asha_scope == "joint" else "its pick is from a short horizon"))
        bad = [c for c in untrainable if any(c in s for s in larger + smaller)]
        if untrainable:
            why.append(f"no lr trains in {', '.join(untrainable)} (fifo's best {metric} within 2 standard errors of "
                       f"chance at {ran_val} images): the best lr there is noise"
                       + (f" (so is the disagreement in {', '.join(bad)})" if bad else ""))
        notes.append(("agreement target missed: " if agreement < AGREEMENT_TARGET else "disagreements: ")
                     + "; ".join(why or ["see the table"]))
    for note in notes:
        print(f"interpretation: {note}")
    print(f"asha_epoch_fraction: {fraction:.3f}")
    print(f"asha_best_lr_agreement: {agreement:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
