"""What the fault handling costs when nothing fails (issue 24): the driver at scale, in two checkouts side by
side, interleaved round by round, on local disk and on S3 (a local moto_server process).

    git worktree add /tmp/before ee12f07     # the last commit before the lease and the storage retries
    python benchmarks/fault_cost.py --before /tmp/before --after . --rounds 3

Each sweep is `benchmarks/driver_scale.py`'s: trivial trials, 16 at once, through the real runner, run as a
fresh process with cwd and PYTHONPATH at its checkout, so the two checkouts never share imports. Per round
and storage each checkout runs one sweep (the order rotates each round, benchmarks/rounds.py); each writes
under its own storage prefix. Reported per checkout: the steady-state cost per trial, the driver's CPU per
trial and the median and p99 result-to-storage lag; then the after/before ratio of each, as the median of
the per-round ratios with its spread. Target: cost per trial and lag within 10% (ratio <= 1.10).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.rounds import ratio, spread  # noqa: E402

MEASURES = {"steady": "s per trial, steady state", "cpu_per_trial": "driver CPU s per trial",
            "median_ms": "result to storage, median ms", "p99_ms": "result to storage, p99 ms"}
CHILD = """
import json, sys
from benchmarks.driver_scale import sweep
r = sweep(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
print(json.dumps(r))
"""


def one_sweep(root: Path, n: int, storage: str, data_dir: str, run: int, env: dict) -> dict:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(n), storage, data_dir, str(run)], cwd=root, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {n}-trial sweep in {root} on {storage} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu_per_trial"] = result["cpu"] / n
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="checkout after the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-trials", type=int, default=1000, help="trials per local sweep (default 1000)")
    parser.add_argument("--s3-trials", type=int, default=300, help="trials per S3 sweep (default 300)")
    parser.add_argument("--storages", default="local,s3", help="local, s3 or both")
    args = parser.parse_args(argv)
    roots = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, root in roots.items():
        if not (root / "benchmarks" / "driver_scale.py").is_file():
            parser.error(f"--{name} {root}: not a checkout of this project (no benchmarks/driver_scale.py)")
    storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    if not storages or set(storages) - {"local", "s3"}:
        parser.error(f"--storages {args.storages!r}: local, s3 or both")
    if args.rounds < 1 or min(args.local_trials, args.s3_trials) < 64:
        parser.error("--rounds needs 1 or more, and each sweep 64 trials or more")
    from tests.fixtures import moto_s3, write_cifar10
    print(f"# before {roots['before']}, after {roots['after']}; {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = str(write_cifar10(Path(tmp) / "c10", per_file=64))
        for storage in storages:
            n = args.local_trials if storage == "local" else args.s3_trials
            with (moto_s3("bench") if storage == "s3" else contextlib.nullcontext({})) as env:
                results = {name: [] for name in roots}
                for r in range(args.rounds):
                    names = list(roots)[r % 2:] + list(roots)[:r % 2]
                    for name in names:
                        where = f"s3://bench/{name}" if storage == "s3" else f"{tmp}/results-{name}"
                        results[name].append(one_sweep(roots[name], n, where, data_dir, r, env))
                        got = results[name][-1]
                        print(f"  {storage} round {r + 1} {name}: {n} trials in {got['wall']:.1f} s, "
                              f"{got['steady']:.3f} s per trial, lag median {got['median_ms']} ms", flush=True)
            print(f"\n{storage}, {n} trials, {args.rounds} rounds:")
            print("| measure | before (median) | after (median) | after/before, per-round ratio |")
            print("|---|---|---|---|")
            for key, label in MEASURES.items():
                before, after = ([run[key] for run in results[name]] for name in ("before", "after"))
                print(f"| {label} | {spread(before).median:.3f} | {spread(after).median:.3f} "
                      f"| {ratio(after, before).text()} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
