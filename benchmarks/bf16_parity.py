"""bf16 autocast vs fp32 on the same seeds and data order: does the default precision on CUDA learn as well?

    python benchmarks/bf16_parity.py --data-dir ../shared/data/cifar-10-subset   # real CIFAR-10 images
    python benchmarks/bf16_parity.py --dataset synthetic --epochs 2 --device cpu # anywhere (slow in bf16 on CPU)

`precision="auto"` is bf16 autocast on CUDA, so every GPU sweep trains in bf16 unless told otherwise. This
trains the study-000 CNN once per seed in each precision and prints, per depth, the test accuracies, the
final training losses and a paired comparison: the mean accuracy difference with a t-based 95% interval
over seeds (scipy), and the largest two-proportion z over the seeds. Last line:
`bf16_minus_fp32_test_acc_depth<d>: <mean> [<lo>, <hi>]` for the deepest depth.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe, pick  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "synthetic"))
    p.add_argument("--data-dir", default="../shared/data/cifar-10-subset")
    p.add_argument("--depths", default="5,12", help="comma-separated CNN depths")
    p.add_argument("--seeds", type=int, default=3, help="seeds per depth and precision")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        p.error(f"--depths {args.depths!r}: expected comma-separated integers such as 5,12")
    if args.seeds < 2 or args.epochs < 1:
        p.error("--seeds must be at least 2 (the interval needs two) and --epochs at least 1")

    import numpy as np
    from scipy import stats

    from trainables.data import load_dataset, make_synthetic
    from trainables.errors import ConfigError, DataError
    from trainables.train import train

    device = pick(args.device)
    print(describe(device))
    try:
        data = make_synthetic() if args.dataset == "synthetic" else load_dataset("cifar10", args.data_dir)
    except (ConfigError, DataError) as exc:
        print(f"bf16_parity: {exc}", file=sys.stderr)
        return 2
    print(f"# data: {data.describe()}")
    print("| depth | seed | fp32 test acc | bf16 test acc | fp32 train loss | bf16 train loss | z | fp32 s | bf16 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    last = ""
    for depth in depths:
        diffs, zs = [], []
        for seed in range(args.seeds):
            runs = {}
            for precision in ("fp32", "bf16"):
                start = time.perf_counter()
                result = train({"dataset": args.dataset, "depth": depth, "epochs": args.epochs, "seed": seed,
                                "device": device.type, "precision": precision}, data)
                runs[precision] = (result, time.perf_counter() - start)
            (f, f_s), (b, b_s) = runs["fp32"], runs["bf16"]
            n = len(data.test_y)
            pooled = (f["test_acc"] + b["test_acc"]) / 2
            z = abs(f["test_acc"] - b["test_acc"]) / math.sqrt(max(2 * pooled * (1 - pooled) / n, 1e-12))
            diffs.append(b["test_acc"] - f["test_acc"])
            zs.append(z)
            print(f"| {depth} | {seed} | {f['test_acc']:.4f} | {b['test_acc']:.4f} | {f['train_loss']:.4f} "
                  f"| {b['train_loss']:.4f} | {z:.2f} | {f_s:.1f} | {b_s:.1f} |", flush=True)
        mean = float(np.mean(diffs))
        half = float(stats.t.ppf(0.975, len(diffs) - 1) * stats.sem(diffs)) if np.std(diffs) > 0 else 0.0
        print(f"# depth {depth}: bf16 - fp32 test accuracy {mean:+.4f}, 95% CI [{mean - half:+.4f}, "
              f"{mean + half:+.4f}] over {len(diffs)} seeds; largest z {max(zs):.2f}")
        last = f"bf16_minus_fp32_test_acc_depth{depth}: {mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
