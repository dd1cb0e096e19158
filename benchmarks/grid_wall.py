"""Wall time of the whole study-000 grid (16 trials) under each way of sharing one device.

    python benchmarks/grid_wall.py                          # full size: 10 epochs x 50,000 images, batch 64
    python benchmarks/grid_wall.py --scale 0.005 --epochs 1 # a reduced version for a CPU

The grid is sweeps/depth_grid.py's (init x activation x depth {2,5,10,12}), on
synthetic images of CIFAR-10's size and count (the real set cannot be
downloaded everywhere), with `train_subset`/`test_subset` = scale x 50,000 / 10,000.
Options, each run on the current device (CUDA when present):

- sequential:   one trial at a time in this process (one trial per GPU);
- procs-N:      N worker processes share the device, as N Ray trials at 1/N GPU each
                do (`--trials-per-gpu N` in the runner). Each is its own CUDA context; they
                time-slice the GPU unless the CUDA MPS daemon runs (benchmarks/mps.sh
                start), which the header line reports;
- fused:        trials that differ only in seed/init train as one grouped model
                (benchmarks/packed.py), one pack after another.

It prints wall seconds and trials/hour per option, the ratio to sequential, and
last `grid_seconds: <seconds>` for the fastest option.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe, pick  # noqa: E402
from trainables.data import make_synthetic  # noqa: E402

FULL_TRAIN, FULL_TEST = 50_000, 10_000


def grid_configs(scale: float, epochs: int, device: str) -> list[dict]:
    from sweeps.depth_grid import SWEEP
    n_train, n_test = max(128, int(FULL_TRAIN * scale)), max(64, int(FULL_TEST * scale))
    return [{**SWEEP.fixed, **point, "dataset": "synthetic", "epochs": epochs, "device": device,
             "train_subset": n_train, "test_subset": n_test} for point, _ in SWEEP.grid.points()]


_DATA = None


def _worker_init(threads: int, n_train: int, n_test: int) -> None:
    global _DATA
    torch.set_num_threads(threads)
    _DATA = make_synthetic(num_train=n_train, num_test=n_test, seed=0)


def _run_one(config: dict) -> float:
    from trainables.train import train
    return train(config, _DATA)["test_acc"]


def sequential(configs, data) -> None:
    from trainables.train import train
    for config in configs:
        train(config, data)


def processes(configs, n: int, n_train: int, n_test: int) -> None:
    threads = max(1, (os.cpu_count() or 1) // n) if configs[0]["device"] == "cpu" else 1
    ctx = torch.multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads, n_train, n_test)) as pool:
        # Longest trials first, so no worker is left with a deep net at the end.
        list(pool.map(_run_one, sorted(configs, key=lambda c: -c["depth"])))


def fused(configs, data) -> None:
    from benchmarks.packed import pack_key, train_packed
    packs = defaultdict(list)
    for config in configs:
        packs[pack_key(config)].append(config)
    for members in packs.values():
        train_packed(members, data)


def mps_running() -> bool:
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return os.path.exists(os.path.join(pipe, "control"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the 50,000/10,000 images (e.g. 0.005 on CPU)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--procs", default="2,4", help="process counts to try (comma-separated)")
    p.add_argument("--options", default="sequential,procs,fused", help="which options to run")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    if not 0 < args.scale <= 1 or args.epochs < 1:
        p.error("--scale must be in (0, 1] and --epochs >= 1")
    device = pick(args.device)
    configs = grid_configs(args.scale, args.epochs, device.type)
    n_train, n_test = configs[0]["train_subset"], configs[0]["test_subset"]
    data = make_synthetic(num_train=n_train, num_test=n_test, seed=0)
    print(describe(device))
    print(f"# {len(configs)} trials x {args.epochs} epochs x {n_train:,} images (test {n_test:,}), batch 64"
          + (f"; CUDA MPS {'running' if mps_running() else 'not running'}" if device.type == "cuda" else ""))
    options = args.options.split(",")
    plan = []
    if "sequential" in options:
        plan.append(("sequential", lambda: sequential(configs, data)))
    if "procs" in options:
        for n in (int(k) for k in args.procs.split(",")):
            plan.append((f"procs-{n}" + ("+mps" if device.type == "cuda" and mps_running() else ""),
                         lambda n=n: processes(configs, n, n_train, n_test)))
    if "fused" in options:
        plan.append(("fused", lambda: fused(configs, data)))
    walls = {}
    for name, run in plan:
        started = time.perf_counter()
        run()
        walls[name] = time.perf_counter() - started
        print(f"  {name}: {walls[name]:.1f} s", file=sys.stderr, flush=True)
    base = walls.get("sequential")
    print("\n| option | wall s | trials/hour | vs sequential |")
    print("|---|---|---|---|")
    for name, wall in walls.items():
        ratio = f"{base / wall:.2f}x" if base else "-"
        print(f"| {name} | {wall:.1f} | {len(configs) * 3600 / wall:,.0f} | {ratio} |")
    best = min(walls, key=walls.get)
    print(f"# best: {best}")
    print(f"grid_seconds: {walls[best]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
