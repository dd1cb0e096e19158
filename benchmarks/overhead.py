"""The sweep's own cost per trial: Ray scheduling, data sharing and Parquet writing, on trials that do almost nothing.

    python benchmarks/overhead.py                         # reused workers (the default) and --fresh-actors
    python benchmarks/overhead.py --trials 4,32 --options reused --trials-per-gpu 4   # on a GPU

Each trial trains a one-conv CNN for 1 epoch on 64 synthetic images (test 64),
so nearly all of a trial's wall time is the machinery. Two sweeps of different
sizes go through the real runner (sweeps/engine/runner.py: plan, load data once,
Tuner, Recorder writing Parquet), one trial at a time (--cpus-per-trial = all
cores, so trials do not overlap). The same trials also run through `train()`
in this process. Then

    per-trial overhead = (wall_large - wall_small) / (n_large - n_small) - train() seconds per trial
    fixed cost         = wall_small - n_small x (per-trial overhead + train() seconds per trial)

The difference of two sweep sizes removes Ray's start-up and shutdown, which a
sweep pays once. Both runner modes are measured in the same run: `reused`
(the default: Ray keeps its worker processes between trials) and `fresh`
(`--fresh-actors`: a new worker process per trial). The last line is
`overhead_per_trial_s: <seconds>` for the first mode measured (`reused` unless
`--options` says otherwise).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe  # noqa: E402

TRIVIAL = dict(dataset="synthetic", model="cnn", depth=1, width=8, epochs=1, train_subset=64, test_subset=64,
               batch_size=64, device="cpu")


def sweep_wall(n: int, storage: str, extra: list[str]) -> float:
    from sweeps.engine.grid import Sweep, axis
    from sweeps.engine.runner import main
    sweep = Sweep(study="overhead", fixed=TRIVIAL, grid=axis("seed", list(range(n))), description="overhead")
    argv = ["--storage", storage, "--name", f"n{n}", "--cpus-per-trial", str(os.cpu_count() or 1), *extra]
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(sweep, "overhead.py", argv)
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"the {n}-trial sweep exited with {code}")
    return wall


def train_seconds(n: int) -> float:
    """Mean seconds of train() per trial for the same trials, outside Ray (data made once, as the runner does)."""
    from trainables.data import make_synthetic
    from trainables.train import train
    data = make_synthetic()
    train({**TRIVIAL, "seed": 99}, data)  # warm-up: first-call costs are not per-trial costs
    started = time.perf_counter()
    for seed in range(n):
        train({**TRIVIAL, "seed": seed}, data)
    return (time.perf_counter() - started) / n


OPTIONS = {"reused": [], "fresh": ["--fresh-actors"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", default="4,16", help="two sweep sizes, small,large")
    p.add_argument("--options", default="reused,fresh", help=f"runner modes to measure, of {','.join(OPTIONS)}")
    p.add_argument("--trials-per-gpu", type=int, default=0, help="pass --trials-per-gpu N to the runner (needs a GPU)")
    args = p.parse_args(argv)
    try:
        small, large = sorted(int(k) for k in args.trials.split(","))
    except ValueError:
        p.error(f"--trials {args.trials!r}: expected two sizes, e.g. 4,16")
    if not 0 < small < large:
        p.error("--trials needs two different positive sizes")
    options = [o.strip() for o in args.options.split(",") if o.strip()]
    unknown = [o for o in options if o not in OPTIONS]
    if unknown or not options:
        p.error(f"--options {args.options!r}: choose from {', '.join(OPTIONS)}")
    import torch
    print(describe(torch.device("cpu")))
    extra = ["--trials-per-gpu", str(args.trials_per_gpu)] if args.trials_per_gpu else []
    per_train = train_seconds(large)
    rows = {}
    for option in options:
        with tempfile.TemporaryDirectory() as storage:
            walls = {n: sweep_wall(n, storage, [*extra, *OPTIONS[option]]) for n in (small, large)}
        per_trial = (walls[large] - walls[small]) / (large - small)
        rows[option] = dict(small=walls[small], large=walls[large], per_trial=per_trial,
                            overhead=per_trial - per_train, fixed=walls[small] - small * per_trial)
        print(f"  {option}: {rows[option]['overhead']:.2f} s overhead per trial", file=sys.stderr)
    print(f"\n# train() seconds per trial, no Ray: {per_train:.3f}")
    print(f"\n| runner mode | sweep wall, {small} trials | sweep wall, {large} trials | s per extra trial "
          "| overhead per trial s | fixed cost per sweep s |")
    print("|---|---|---|---|---|---|")
    for option, r in rows.items():
        print(f"| {option} | {r['small']:.1f} | {r['large']:.1f} | {r['per_trial']:.2f} | {r['overhead']:.2f} "
              f"| {r['fixed']:.1f} |")
    print(f"overhead_per_trial_s: {rows[options[0]]['overhead']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
