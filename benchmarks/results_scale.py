"""The results store at scale: sweeps of 100, 1,000 and 10,000 trials x 100 epochs x 12 layers.

    python benchmarks/results_scale.py            # 100, 1,000 and 10,000 trials (about 30 min on 2 cores)
    python benchmarks/results_scale.py --quick    # 100 and 1,000 trials only

Each sweep is fabricated through the real write path: a `sweeps.engine.recorder.Recorder` gets the calls
Tune makes (on_trial_start, one on_trial_result per epoch with 12 layer rows, on_trial_complete),
16 trials at a time with their results interleaved as on a cluster, and writes Parquet through
`sweeps.results.store.Store` exactly as in a sweep (background writes, compaction when a trial ends).
For each size it prints:

  - the driver's cost per reported epoch: the time inside on_trial_result (what holds up Tune's event
    loop), and the wall time per epoch of the whole write path (with the background writes and each
    trial's compaction, which compete for the same 2 cores);
  - `load s unfolded`: `analysis.results.load` before the sweep's end, as a running or killed sweep
    reads (a file per trial per table);
  - files on disk and their size, after the sweep's end folded its finished trials (Store.close_sweep,
    timed as `fold s`);
  - the time of `analysis.results.load` (every table, sorted) and of `pd.read_parquet` on each table
    folder, on a cold process-level start (each in a fresh subprocess, so no cache of ours helps;
    the OS page cache is warm, as it is for a user opening a sweep that just ran).

Targets (issue 15): load <= 2 s at 1,000 trials and <= 20 s at 10,000, and a write cost per epoch
that stays flat from 100 to 10,000 trials. The last line is `load_s_1000_trials: <seconds>`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
EPOCHS, LAYERS, CONCURRENT = 100, 12, 16


def spec() -> dict:
    from trainables.config import resolve
    config = resolve(dict(model="cnn", depth=LAYERS - 1, epochs=EPOCHS, dataset="synthetic"))
    return dict(config=config, labels=dict(depth=LAYERS - 1), facts=dict(params=123456), title="depth=11",
                overrides={})


def result(trial_id: str, epoch: int, rng: random.Random) -> dict:
    acc = min(0.1 + 0.008 * epoch + rng.gauss(0, 0.01), 1.0)
    return dict(epoch=epoch, train_loss=2.3 - acc, train_acc=acc, val_loss=2.3 - acc, val_acc=acc, test_loss=math_nan(),
                test_acc=math_nan(), avg_weight=0.01, lr=0.01, seconds=1.0, it_per_s=100.0, trial_id=trial_id,
                reported_at=time.time(), done=epoch == EPOCHS, node_id="n", gpu_ids="", trial_started=0.0,
                layers=[dict(layer=i, layer_name=f"features.{i}", grad_abs_mean=rng.random(), weight_mean=0.0,
                             weight_std=rng.random(), update_ratio=rng.random() * 1e-2, dead_fraction=rng.random())
                        for i in range(LAYERS)])


def math_nan() -> float:
    return float("nan")


def fabricate(root: str, n: int) -> dict:
    """n trials through the Recorder; returns the driver's timings."""
    from sweeps.engine.recorder import Recorder
    meta = dict(sweep=f"n{n}", study="scale", code_version="bench", trials=n, searcher="grid", scheduler="fifo",
                search_seed=0, search_keys=[])
    recorder = Recorder(root, f"n{n}", meta, [spec()])
    rng = random.Random(0)
    in_callback = 0.0
    started = time.perf_counter()
    last_note = started
    for first in range(0, n, CONCURRENT):
        batch = [SimpleNamespace(trial_id=f"t{i:05d}", config={"trial": 0}, last_result={}, num_failures=0,
                                 storage=SimpleNamespace(experiment_dir_name="tune", trial_dir_name=f"run_t{i:05d}"))
                 for i in range(first, min(first + CONCURRENT, n))]
        for trial in batch:
            recorder.on_trial_start(0, [], trial)
        for epoch in range(1, EPOCHS + 1):
            for trial in batch:
                res = result(trial.trial_id, epoch, rng)
                trial.last_result = res
                t0 = time.perf_counter()
                recorder.on_trial_result(0, [], trial, res)
                in_callback += time.perf_counter() - t0
        for trial in batch:
            recorder.on_trial_complete(0, [], trial)
        if time.perf_counter() - last_note > 30:
            last_note = time.perf_counter()
            print(f"  ... {first + len(batch)}/{n} trials written ({last_note - started:.0f} s)", file=sys.stderr)
    recorder.on_experiment_end([])
    wall = time.perf_counter() - started
    epochs = n * EPOCHS
    return dict(callback_ms=1e3 * in_callback / epochs, wall_ms=1e3 * wall / epochs, write_s=wall,
                latency_ms=1e3 * sorted(recorder.latencies)[len(recorder.latencies) // 2])


READ = """
import json, sys, time
import pandas as pd
t0 = time.perf_counter()
from analysis.results import load
imported = time.perf_counter() - t0
path = sys.argv[1]
t0 = time.perf_counter(); tables = load(path); load_s = time.perf_counter() - t0
rows = {k: len(v) for k, v in tables.items() if len(v)}
del tables
t0 = time.perf_counter()
for t in ("trials", "epochs", "layers"):
    pd.read_parquet(f"{path}/{t}.parquet")
print(json.dumps(dict(load_s=load_s, pandas_s=time.perf_counter() - t0, rows=rows)))
"""


def read_times(path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", READ, path], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def on_disk(path: str) -> tuple[int, int]:
    # the tables only: Tune's per-trial result.json and params.json under tune/ are not read by `load`
    files = [p for p in Path(path).rglob("*") if p.is_file() and p.relative_to(path).parts[0] != "tune"]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 trials only")
    parser.add_argument("--sizes", default=None, help="comma-separated trial counts (default 100,1000,10000)")
    parser.add_argument("--dir", default=None, help="where to write the sweeps (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [100, 1000] if args.quick else [100, 1000, 10000]
    if any(s < 1 for s in sizes):
        print("error: --sizes: trial counts must be positive integers", file=sys.stderr)
        return 2
    if 1000 not in sizes:
        sizes.append(1000)  # the last line reports it
    import torch
    from benchmarks.env import describe
    from sweeps.results.store import Store
    print(describe(torch.device("cpu")))
    print(f"# {EPOCHS} epochs x {LAYERS} layers per trial, {CONCURRENT} trials interleaved; load in a fresh process")
    root = args.dir or tempfile.mkdtemp(prefix="results_scale-")
    print(f"{'trials':>7} {'epoch rows':>10} {'layer rows':>10} {'files':>7} {'MB':>7} {'callback ms/epoch':>17} "
          f"{'write ms/epoch':>14} {'median latency ms':>17} {'load s unfolded':>15} {'fold s':>6} {'load s':>7} "
          f"{'read_parquet s':>14}")
    results = {}
    try:
        for n in sorted(set(sizes)):
            shutil.rmtree(f"{root}/n{n}", ignore_errors=True)
            write = fabricate(root, n)
            unfolded = read_times(f"{root}/n{n}")  # as a running or killed sweep reads: a file per trial
            t0 = time.perf_counter()
            Store(root, f"n{n}").close_sweep()  # what the runner does when fit() returns
            write["fold_s"] = time.perf_counter() - t0
            files, size = on_disk(f"{root}/n{n}")
            read = read_times(f"{root}/n{n}")
            results[n] = dict(write, **read, files=files, unfolded_s=unfolded["load_s"])
            print(f"{n:>7} {read['rows'].get('epochs', 0):>10} {read['rows'].get('layers', 0):>10} {files:>7} "
                  f"{size / 1e6:>7.1f} {write['callback_ms']:>17.3f} {write['wall_ms']:>14.3f} "
                  f"{write['latency_ms']:>17.1f} {unfolded['load_s']:>15.2f} {write['fold_s']:>6.1f} {read['load_s']:>7.2f} {read['pandas_s']:>14.2f}", flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    small, large = min(results), max(results)
    print(f"write cost per epoch, {large} vs {small} trials: callback x{results[large]['callback_ms'] / results[small]['callback_ms']:.2f}, "
          f"wall x{results[large]['wall_ms'] / results[small]['wall_ms']:.2f}")
    print(f"load_s_1000_trials: {results[1000]['load_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
