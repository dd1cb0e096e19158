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

On S3, also the CPU time of the moto_server process per trial (`server CPU s per trial`): the test server
answers a listing by walking its whole bucket, so its share shows what grows with the bucket.

Also per sweep: the bytes of Tune's experiment state at its last snapshot (Tune uploads them whole at every
snapshot; `tune_state_bytes`).

Targets: the cost per trial at the largest size within 1.5x of the cost at the smallest, on both storages
(issue 15: 1,000 vs 100; issue 25: 10,000 vs 100), and the state per snapshot not growing with the trials.
The last line is `driver_cost_ratio_<largest>_vs_<smallest>: <local ratio> <s3 ratio>`.
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
from sweeps.engine.search import DEFAULT_TRIALS_PER_RUN  # noqa: E402

CONCURRENT = 16
WINDOW = 100  # trials in the early and late steady-state windows of a long sweep
LAG = re.compile(r"storage: (\d+) results written; .*median (\d+) ms, p99 (\d+) ms")


def driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu() -> float | None:
    """CPU seconds so far of the moto_server answering AWS_ENDPOINT_URL (None on local disk)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint:
        return None
    port = endpoint.rsplit(":", 1)[-1]
    for proc in Path("/proc").glob("[0-9]*"):  # Linux; elsewhere the column stays empty
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if any(b"moto_server" in part for part in cmdline) and port.encode() in cmdline:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except OSError:  # a process that ended while being looked at
            continue
    return None


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


def sweep(n: int, storage: str, data_dir: str, run: int, extra: tuple[str, ...] = ()) -> dict:
    from sweeps.engine.grid import Sweep, axis
    from sweeps.engine.runner import main
    plan = Sweep(study="driver_scale", fixed={**TRIVIAL, "dataset": "cifar10", "epochs": 2},
                 grid=axis("seed", list(range(n))), description="driver at scale")
    argv = ["--storage", storage, "--name", f"n{n}-{run}", "--num-cpus", str(CONCURRENT), "--cpus-per-trial", "1",
            "--progress-every", "60", "--data-dir", data_dir, *extra]
    err = io.StringIO()
    cpu, server, started = driver_cpu(), server_cpu(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(plan, "driver_scale.py", argv)
    wall, cpu = time.perf_counter() - started, driver_cpu() - cpu
    server = server_cpu() - server if server is not None else None
    if code != 0:
        raise SystemExit(f"the {n}-trial sweep on {storage} exited with {code}:\n{err.getvalue()[-3000:]}")
    lags = [[int(g) for g in found] for found in LAG.findall(err.getvalue())]  # one line per Tune run
    if not lags:
        raise SystemExit(f"no storage line from the Recorder in the {n}-trial sweep's output")
    # results in all runs; the median of the runs' medians (runs of equal size) and the worst run's p99
    results, median, p99 = sum(r for r, _, _ in lags), int(np.median([m for _, m, _ in lags])), max(p for *_, p in lags)
    from sweeps.results.store import Store
    trials = Store(storage, f"n{n}-{run}").read_table("trials")
    if len(trials) != n or set(trials["status"]) != {"completed"}:
        raise SystemExit(f"the {n}-trial sweep on {storage} recorded {len(trials)} trials, "
                         f"statuses {sorted(set(trials['status']))}")
    return dict(wall=wall, cpu=cpu, server_per_trial=server / n if server is not None else None, results=results, median_ms=median, p99_ms=p99,
                state_kb=tune_state_bytes(Store(storage, f"n{n}-{run}")) / 1024,
                **steady_costs(trials["reported_at"].tolist()))


def tune_state_bytes(store) -> int:
    """What one experiment-state snapshot uploads, at the sweep's end (the state only grows): Tune's own
    files at the top of its folder (experiment_state-*.json, the searcher's state, tuner.pkl)."""
    import pyarrow.fs as pafs
    infos = store.fs.get_file_info(pafs.FileSelector(store.path("tune"), allow_not_found=True))
    return sum(info.size for info in infos if info.type == pafs.FileType.File)


def measure(storage: str, sizes: list[int], repeats: int, data_dir: str, extra: tuple[str, ...] = ()) -> dict:
    """{n: [one dict per run]}, the sizes interleaved run by run so that a slow spell hits all sizes."""
    rows = {n: [] for n in sizes}
    for run in range(repeats):
        for n in sizes:
            rows[n].append(sweep(n, storage, data_dir, run, extra))
            r = rows[n][-1]
            print(f"  {storage}: {n} trials in {r['wall']:.1f} s, {r['steady']:.3f} s per trial in steady state"
                  + (f", server CPU {r['server_per_trial']:.3f} s per trial" if r["server_per_trial"] is not None else ""),
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
    p.add_argument("--trials-per-run", type=int, default=None,
                   help=f"passed to each sweep (default: the runner's, {DEFAULT_TRIALS_PER_RUN:,}): trials per Ray Tune run")
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
    extra = ("--trials-per-run", str(args.trials_per_run)) if args.trials_per_run is not None else ()
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
                table[storage] = measure(f"{root}/results", sizes, args.repeats, data_dir, extra)
                continue
            with moto_s3("bench") as env:
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)  # the driver and the Ray it starts reach the bucket through these
                try:
                    table[storage] = measure("s3://bench/driver", sizes, args.repeats, data_dir, extra)
                finally:
                    for k, v in saved.items():
                        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    print("\n| storage | trials | run | results | wall s | driver CPU s | s per trial, steady state "
          "| s per trial, whole-sweep marginal | driver CPU s per trial (marginal) | Tune state per snapshot, KB "
          "| result to storage, median ms | p99 ms | server CPU s per trial |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for storage, rows in table.items():
        for n, runs in rows.items():
            for run, r in enumerate(runs, 1):
                marginal = f"{r['per_trial']:.3f}" if "per_trial" in r else "(baseline)"
                cpu = f"{r['cpu_per_trial']:.3f}" if "cpu_per_trial" in r else "(baseline)"
                server = f"{r['server_per_trial']:.3f}" if r["server_per_trial"] is not None else "-"
                print(f"| {storage} | {n} | {run} | {r['results']} | {r['wall']:.1f} | {r['cpu']:.1f} "
                      f"| {r['steady']:.3f} | {marginal} | {cpu} | {r['state_kb']:.0f} | {r['median_ms']} "
                      f"| {r['p99_ms']} | {server} |")
    small, large = sizes[0], sizes[-1]
    ratios = []
    for storage, rows in table.items():
        at = {n: statistics.median(r["steady"] for r in rows[n]) for n in (small, large)}
        # Per-run ratios: the sizes of one run ran back to back, under nearly the same load.
        per_run = ratio([r["steady"] for r in rows[large]], [r["steady"] for r in rows[small]])
        ratios.append(f"{per_run.median:.2f}")
        print(f"{storage}: cost per trial in steady state, median of {len(rows[small])} runs: "
              f"{at[small]:.3f} s at {small}, {at[large]:.3f} s at {large}; per-run ratio {per_run.text()} "
              f"(target <= 1.5)")
        if "early" in rows[large][0]:
            early = statistics.median(r["early"] for r in rows[large])
            late = statistics.median(r["late"] for r in rows[large])
            print(f"{storage}: within the {large}-trial sweeps, its first {WINDOW} steady trials cost {early:.3f} s "
                  f"each, its last {WINDOW} {late:.3f} s (x{late / early:.2f})")
    print(f"driver_cost_ratio_{large}_vs_{small}: {' '.join(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
