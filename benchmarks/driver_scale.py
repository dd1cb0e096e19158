"""The driver at cluster scale, by simulation: many trivial trials, 16 at once, on local disk and on S3.

    python benchmarks/driver_scale.py                       # 16, 100 and 1,000 trials; local and s3
    python benchmarks/driver_scale.py --sizes 16,100 --storages local

On a cluster the driver sees results from dozens of trials at once and writes every row. Here a private
Ray advertises 16 logical CPUs (`--num-cpus 16`, one per trial), so 16 trials run at once on this
machine's cores, and each trial does almost nothing (a one-conv CNN, 2 epochs of 64 images of a tiny
CIFAR-format folder: 16 workers each holding the 60,000-image synthetic set would need 21 GB):
what is measured is the driver. Each sweep goes through the real runner (plan, Tuner, Recorder
writing Parquet, the console view), with `--storage` a local folder or `s3://` on a local
moto_server process (benchmarks/fixtures.py).

For each storage and size it prints the sweep's wall time and the driver process's CPU time (all its
threads: Tune's event loop and the Recorder's writers), and the Recorder's own measure of how long a
result waited before its row was on storage (median and p99). The cost per trial is marginal, so that
Ray's start-up, paid once per sweep, cancels out:

    cost per trial at n = (wall(n) - wall(smallest)) / (n - smallest)

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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe  # noqa: E402
from benchmarks.overhead import TRIVIAL  # noqa: E402

CONCURRENT = 16
LAG = re.compile(r"storage: (\d+) results written; .*median (\d+) ms, p99 (\d+) ms")


def driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sweep(n: int, storage: str, data_dir: str) -> dict:
    from sweeps.grid import Sweep, axis
    from sweeps.runner import main
    plan = Sweep(study="driver_scale", fixed={**TRIVIAL, "dataset": "cifar10", "epochs": 2},
                 grid=axis("seed", list(range(n))), description="driver at scale")
    argv = ["--storage", storage, "--name", f"n{n}", "--num-cpus", str(CONCURRENT), "--cpus-per-trial", "1",
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
    return dict(wall=wall, cpu=cpu, results=results, median_ms=median, p99_ms=p99)


def measure(storage: str, sizes: list[int], data_dir: str) -> dict:
    rows = {}
    for n in sizes:
        rows[n] = sweep(n, storage, data_dir)
        print(f"  {storage}: {n} trials in {rows[n]['wall']:.1f} s", file=sys.stderr, flush=True)
    small = min(sizes)
    for n in sizes:
        if n > small:
            rows[n]["per_trial"] = (rows[n]["wall"] - rows[small]["wall"]) / (n - small)
            rows[n]["cpu_per_trial"] = (rows[n]["cpu"] - rows[small]["cpu"]) / (n - small)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="16,100,1000", help="trial counts; the smallest is the baseline")
    p.add_argument("--storages", default="local,s3", help="local, s3 or both")
    args = p.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        p.error(f"--sizes {args.sizes!r}: expected trial counts, e.g. 16,100,1000")
    storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    if len(sizes) < 2 or sizes[0] < 1 or not storages or set(storages) - {"local", "s3"}:
        p.error("--sizes needs two or more positive counts; --storages is local, s3 or both")
    import torch
    print(describe(torch.device("cpu")))
    print(f"# {CONCURRENT} trials at once (ray.init(num_cpus={CONCURRENT})), {os.cpu_count()} cores; "
          f"trivial trials: {TRIVIAL['model']} depth {TRIVIAL['depth']}, 2 epochs of {TRIVIAL['train_subset']} images "
          "(a 320-image CIFAR-format folder)")
    from benchmarks.fixtures import moto_s3, write_cifar10
    table = {}
    with tempfile.TemporaryDirectory() as root:
        data_dir = str(write_cifar10(Path(root) / "c10", per_file=64))
        for storage in storages:
            if storage == "local":
                table[storage] = measure(f"{root}/results", sizes, data_dir)
                continue
            with moto_s3("bench") as env:
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)  # the driver and the Ray it starts reach the bucket through these
                try:
                    table[storage] = measure("s3://bench/driver", sizes, data_dir)
                finally:
                    for k, v in saved.items():
                        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    print("\n| storage | trials | results | wall s | driver CPU s | s per trial (marginal) | driver CPU s per trial "
          "| result to storage, median ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for storage, rows in table.items():
        for n, r in rows.items():
            marginal = f"{r['per_trial']:.3f}" if "per_trial" in r else "(baseline)"
            cpu = f"{r['cpu_per_trial']:.3f}" if "cpu_per_trial" in r else "(baseline)"
            print(f"| {storage} | {n} | {r['results']} | {r['wall']:.1f} | {r['cpu']:.1f} | {marginal} | {cpu} "
                  f"| {r['median_ms']} | {r['p99_ms']} |")
    ratios = []
    for storage, rows in table.items():
        if 100 in rows and 1000 in rows and "per_trial" in rows[100]:
            ratio = rows[1000]["per_trial"] / rows[100]["per_trial"]
            ratios.append(f"{ratio:.2f}")
            print(f"{storage}: cost per trial at 1000 / at 100 = {ratio:.2f} (target <= 1.5)")
    print(f"driver_cost_ratio_1000_vs_100: {' '.join(ratios) if ratios else 'n/a'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
