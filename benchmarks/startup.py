"""What a user waits for before anything trains: `--help`, `analysis.status` and a smoke sweep, timed in
two checkouts side by side (issue 22: the engine and the results format moved so that parsing flags and
reading Parquet no longer import torch or Ray).

    git worktree add /tmp/before <commit before the change>
    python benchmarks/startup.py --before /tmp/before --after . --rounds 3

Each command runs as a fresh process with cwd and PYTHONPATH at its checkout, so the two checkouts never
share imports. The rounds interleave the checkouts (benchmarks/rounds.py), and each line reports the
median wall time per checkout and the median of the per-round after/before ratios with their spread.
`analysis.status` reads the sweep that each checkout's own smoke sweep wrote in the first round.
The smoke sweep trains the study-000 smoke slice on synthetic data (`--set dataset=synthetic`), so it runs
without the CIFAR files; its time is mostly Ray's start and the training, which the move does not change.
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.rounds import interleave, ratio, spread  # noqa: E402


def timed(command: list[str], root: Path) -> float:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {root}: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def sweep(storage: Path, name: str) -> list[str]:
    return [sys.executable, "sweeps/depth_grid.py", "--smoke", "--set", "dataset=synthetic",
            "--storage", str(storage), "--name", name]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="checkout after the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-smoke", action="store_true", help="skip timing the smoke sweep (about a minute a run)")
    args = parser.parse_args(argv)
    roots = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, root in roots.items():
        if not (root / "sweeps" / "depth_grid.py").is_file():
            parser.error(f"--{name} {root}: not a checkout of this project (no sweeps/depth_grid.py)")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        for name, root in roots.items():  # a sweep for analysis.status to read, written by its own checkout
            timed(sweep(storage / name, "status"), root)
        runs = itertools.count()  # every timed smoke sweep writes a fresh folder
        commands = {"--help": lambda name: [sys.executable, "sweeps/depth_grid.py", "--help"],
                    "analysis.status": lambda name: [sys.executable, "-m", "analysis.status",
                                                     str(storage / name / "status")]}
        if not args.no_smoke:
            commands["smoke sweep"] = lambda name: sweep(storage / name, f"timed{next(runs)}")
        for label, command in commands.items():
            variants = {name: (lambda root=root, name=name: timed(command(name), root)) for name, root in roots.items()}
            times = interleave(variants, args.rounds)
            print(f"{label}: before {spread(times['before']).text()} s, after {spread(times['after']).text()} s, "
                  f"after/before {ratio(times['after'], times['before']).text()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
