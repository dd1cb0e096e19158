"""The driver at cluster scale, by simulation: many trivial trials, 16 at once, on local disk and on S3.

    python benchmarks/driver_scale.py                       # 100 and 1,000 trials, 3 runs each; local and s3
    python benchmarks/driver_scale.py --sizes 100,300,1000 --repeats 1 --storages local

On a cluster the driver sees results from dozens of trials at once and writes every row. Here a private
Ray advertises 16 logical CPUs (`--num-cpus 16`, one per trial), so 16 trials run at once on this
machine's cores, and each trial does almost nothing (a one-conv CNN, 2 epochs of 64 images of a tiny
CIFAR-format folder: 16 workers each holding the 60,000-image synthetic set would need 21 GB):
what is measured is the driver. Each sweep goes through the real runner (plan, Tuner, Recorder
writing Parquet, the console view), with `--storage` a local folder or `s3://` on a local
moto_server process (tests/fixtures.py).

For each storage and size it prints the sweep's wall time and the driver process's CPU time (all its
threads: Tune's event loop and the Recorder's writers), and the Recorder's own measure of how long a
result waited before its row was on storage (median and p99).

The cost per trial at n is the steady-state time between trial completions in the n-trial sweep: the
least-squares slope of completion time (each trial's last `reported_at`, read back from the sweep's
trials table) against completion rank, over ranks [2 x 16, n - 16). That leaves out Ray's start-up
and the first waves of actor starts (50 to 70 s, varying by +-10 s between identical runs, which
swamped a whole-sweep difference of a few seconds at 100 trials) and the last wave, which drains with
no new trials behind it. Each size runs `--repeats` times, the sizes back to back within a run; the table shows every run, and
the ratio is the median of the per-run ratios (benchmarks/rounds.py) with its spread. The whole-sweep marginal, (wall(n) - wall(smallest)) / (n - smallest), is printed
beside it.

Target (issue 15): the cost per trial at 1,000 trials within 1.5x of the cost at 100, on both storages.
The last line is `driver_cost_ratio_1000_vs_100: <local ratio> <s3 ratio>`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe  # noqa: E402
from benchmarks.overhead import TRIVIAL  # noqa: E402
from benchmarks.rounds import ratio  # noqa: E402

CONCURRENT = 16
WINDOW = 100  # trials in the early and late steady-state windows of a long sweep
LAG = re.compile(r"storage: (\d+) results written; .*median (\d+) ms, p99 (\d+) ms")


def driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def slope(times) -> float:
    """Seconds per trial: least-squares slope of completion time against completion rank."""
    return float(np.polyfit(np.arange(len(times)), times, 1)[0])


def steady_costs(finished: list[float]) -> dict:
    """Seconds per trial in steady state, between the first two waves of 16 (actor starts) and the last
    wave (draining): over that whole span, and over its first and last 100 trials (`early`, `late`),
    which shows within one sweep whether a trial costs more once many trials have gone before it."""
    times = np.sort(np.asarray(finished, dtype=float))[2 * CONCURRENT:len(finished) - CONCURRENT]
    costs = dict(steady=slope(times))
    if len(times) >= 4 * WINDOW:
        costs.update(early=slope(times[:WINDOW]), late=slope(times[-WINDOW:]))
    return costs


def sweep(n: int, storage: str, data_dir: str, run: int) -> dict:
    from sweeps.engine.grid import Sweep, axis
    from sweeps.engine.runner import main
    plan = Sweep(study="driver_scale", fixed={**TRIVIAL, "dataset": "cifar10", "epochs": 2},
                 grid=axis("seed", list(range(n))), description="driver at scale")
    argv = ["--storage", storage, "--name", f"n{n}-{run}", "--num-cpus", str(CONCURRENT), "--cpus-per-trial", "1",
            "--progress-every", "60", "--data-dir", data_dir]
    err = io.StringIO()
    cpu, started = driver_cpu(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(plan, "driver_scale.py", argv)
    wall, cpu = time.perf_counter() - started, driver_cpu() - cpu
    if code != 0:
        raise SystemExit(f"the {n}-trial sweep on {storage} exited with {code}:\n{err.getvalue()[-3000:]}")
    lag = LAG.search(err.getvalue())
    if lag is None:
        raise SystemExit(f"no storage line from the Recorder in the {n}-trial sweep's output")
    results, median, p99 = (int(g) for g in lag.groups())
    from sweeps.results.store import Store
    trials = Store(storage, f"n{n}-{run}").read_table("trials")
    if len(trials) != n or set(trials["status"]) != {"completed"}:
        raise SystemExit(f"the {n}-trial sweep on {storage} recorded {len(trials)} trials, "
                         f"statuses {sorted(set(trials['status']))}")
    return dict(wall=wall, cpu=cpu, results=results, median_ms=median, p99_ms=p99,
                **steady_costs(trials["reported_at"].tolist()))


def measure(storage: str, sizes: list[int], repeats: int, data_dir: str) -> dict:
    """{n: [one dict per run]}, the sizes interleaved run by run so that a slow spell hits all sizes."""
    rows = {n: [] for n in sizes}
    for run in range(repeats):
        for n in sizes:
            rows[n].append(sweep(n, storage, data_dir, run))
            r = rows[n][-1]
            print(f"  {storage}: {n} trials in {r['wall']:.1f} s, {r['steady']:.3f} s per trial in steady state",
                  file=sys.stderr, flush=True)
    small = min(sizes)
    for n in sizes:
        for run, r in enumerate(rows[n]):
            if n > small:
                base = rows[small][run]
                r["per_trial"] = (r["wall"] - base["wall"]) / (n - small)
                r["cpu_per_trial"] = (r["cpu"] - base["cpu"]) / (n - small)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="trial counts, 64 or more each")
    p.add_argument("--repeats", type=int, default=3, help="runs of each size (default 3)")
    p.add_argument("--storages", default="local,s3", help="local, s3 or both")
    args = p.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        p.error(f"--sizes {args.sizes!r}: expected trial counts, e.g. 16,100,1000")
    storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    if len(sizes) < 2 or sizes[0] < 4 * CONCURRENT or not storages or set(storages) - {"local", "s3"}:
        p.error(f"--sizes needs two or more counts of {4 * CONCURRENT} or more; --storages is local, s3 or both")
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: needs 1 or more")
    import torch
    print(describe(torch.device("cpu")))
    print(f"# {CONCURRENT} trials at once (ray.init(num_cpus={CONCURRENT})), {os.cpu_count()} cores; "
          f"trivial trials: {TRIVIAL['model']} depth {TRIVIAL['depth']}, 2 epochs of {TRIVIAL['train_subset']} images "
          "(a 320-image CIFAR-format folder)")
    from tests.fixtures import moto_s3, write_cifar10
    table = {}
    with tempfile.TemporaryDirectory() as root:
        data_dir = str(write_cifar10(Path(root) / "c10", per_file=64))
        for storage in storages:
            if storage == "local":
                table[storage] = measure(f"{root}/results", sizes, args.repeats, data_dir)
                continue
            with moto_s3("bench") as env:
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)  # the driver and the Ray it starts reach the bucket through these
                try:
                    table[storage] = measure("s3://bench/driver", sizes, args.repeats, data_dir)
                finally:
                    for k, v in saved.items():
                        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    print("\n| storage | trials | run | results | wall s | driver CPU s | s per trial, steady state "
          "| s per trial, whole-sweep marginal | driver CPU s per trial (marginal) "
          "| result to storage, median ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for storage, rows in table.items():
        for n, runs in rows.items():
            for run, r in enumerate(runs, 1):
                marginal = f"{r['per_trial']:.3f}" if "per_trial" in r else "(baseline)"
                cpu = f"{r['cpu_per_trial']:.3f}" if "cpu_per_trial" in r else "(baseline)"
                print(f"| {storage} | {n} | {run} | {r['results']} | {r['wall']:.1f} | {r['cpu']:.1f} "
                      f"| {r['steady']:.3f} | {marginal} | {cpu} | {r['median_ms']} | {r['p99_ms']} |")
    ratios = []
    for storage, rows in table.items():
        if 100 in rows and 1000 in rows:
            at = {n: statistics.median(r["steady"] for r in rows[n]) for n in (100, 1000)}
            # Per-run ratios: the two sizes of one run ran back to back, under nearly the same load.
            per_run = ratio([r["steady"] for r in rows[1000]], [r["steady"] for r in rows[100]])
            ratios.append(f"{per_run.median:.2f}")
            print(f"{storage}: cost per trial in steady state, median of {len(rows[100])} runs: "
                  f"{at[100]:.3f} s at 100, {at[1000]:.3f} s at 1000; per-run ratio {per_run.text()} "
                  f"(target <= 1.5)")
            early = statistics.median(r["early"] for r in rows[1000])
            late = statistics.median(r["late"] for r in rows[1000])
            print(f"{storage}: within the 1000-trial sweeps, its first {WINDOW} steady trials cost {early:.3f} s "
                  f"each, its last {WINDOW} {late:.3f} s (x{late / early:.2f})")
    print(f"driver_cost_ratio_1000_vs_100: {' '.join(ratios) if ratios else 'n/a'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
