"""Train-step images/s in NCHW (contiguous) vs NHWC (channels_last), per model family, side by side.

    python benchmarks/memory_format.py            # every family, CUDA if present, else CPU
    python benchmarks/memory_format.py --models cnn5,vgg08 --steps 10

This is the measurement behind `memory_format="auto"` meaning channels_last on
every device (trainables/fast.py). Each model takes plain fp32 Adam steps on one
fixed random batch of 64, so only the layout differs; the two layouts alternate
over `--rounds` rounds, the first one rotating (benchmarks/rounds.py). The table shows each layout's
median and the median per-round ratio with its interquartile range. The last line is
`channels_last_speedup_min: <ratio>`, the smallest of the models' median NHWC/NCHW ratios.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe, pick  # noqa: E402
from benchmarks.rounds import interleave, ratio, spread  # noqa: E402
from trainables.config import resolve  # noqa: E402
from trainables.inits import apply_init  # noqa: E402
from trainables.models import build_model  # noqa: E402

MODELS = {
    "cnn2": dict(model="cnn", depth=2), "cnn5": dict(model="cnn", depth=5), "cnn12": dict(model="cnn", depth=12),
    "cnn5_bn_prelu": dict(model="cnn", depth=5, bn=True, activation="prelu"),
    "vgg08": dict(model="vgg08"), "vgg38_bn": dict(model="vgg38_bn"), "vgg38_res": dict(model="vgg38_res"),
    "baseline4": dict(model="baseline4"), "resnet18": dict(model="resnet18"),
}
BATCH = 64


def images_per_second(config: dict, fmt: torch.memory_format, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = apply_init(build_model(config, 10), config).to(device=device, memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (BATCH,), device=device)
    warmup = 3
    for step in range(steps + warmup):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - started)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 40 on CPU, 200 on CUDA)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        p.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    if args.rounds < 1 or (args.steps is not None and args.steps < 1):
        p.error("--steps and --rounds must be >= 1")
    device = pick(args.device)
    torch.set_flush_denormal(True)  # as train() does
    print(describe(device))
    print("\n| model | NCHW img/s | channels_last img/s | channels_last / NCHW |\n|---|---|---|---|")
    ratios = []
    for name in names:
        config = resolve(MODELS[name])
        steps = args.steps or ((200 if device.type == "cuda" else 40) if name.startswith("cnn") else
                               (100 if device.type == "cuda" else 10))
        runs = interleave({"nchw": lambda: images_per_second(config, torch.contiguous_format, steps, device),
                           "nhwc": lambda: images_per_second(config, torch.channels_last, steps, device)}, args.rounds)
        nhwc_over_nchw = ratio(runs["nhwc"], runs["nchw"])
        ratios.append(nhwc_over_nchw.median)
        print(f"| {name} | {spread(runs['nchw']).median:,.0f} | {spread(runs['nhwc']).median:,.0f} | "
              f"{nhwc_over_nchw.text()} |", flush=True)
    print(f"channels_last_speedup_min: {min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
