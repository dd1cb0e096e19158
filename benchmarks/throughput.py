"""Train-step images/s: a seed-style loop vs our `train` (defaults) vs our fastest settings, side by side.

    python benchmarks/throughput.py            # depths 2, 5, 12 on CUDA if present, else CPU
    python benchmarks/throughput.py --quick    # depth 5 only, a few steps (under a minute on a 2-core CPU)

(a) seed-style: a torch Dataset of PIL images with torchvision transforms
    (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), a
    DataLoader with 2 workers, fp32, and `.item()` on loss and accuracy every step,
    as the seed notebook's loop did.
(b) `trainables.train.train` with the default config (precision/memory format "auto").
(c) `train` with the fastest settings: grad_stats off and torch.compile on
    (compile is left out with --quick or --no-compile, since compiling takes
    tens of seconds on a CPU).

All three train the same study-000 CNN (32 filters, batch 64, Adam) on
synthetic CIFAR-sized images on the same device, and the three are measured in
interleaved rounds so load changes on a shared machine hit them alike; the table
shows the median round. For (b) and (c), the speed is the training loop of the
second epoch (`it_per_s` x batch): the first epoch pays one-off costs (cuDNN
autotuning, compilation). For (a), worker start-up and a few warm-up steps are
excluded, which flatters the seed-style loop if anything.

(d) The per-layer diagnostics (update_ratio, dead_fraction: trainables/loop.py) run once per epoch,
    outside the step loop. `--diagnostics` measures what they cost a whole epoch (its `seconds`:
    steps, evaluation and metrics) of (b), against the same epoch with `diagnostics=false`, interleaved.

The last line, `speedup_vs_seed_style_depth5: <ratio>`, is (b) over (a) at depth 5.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.env import describe, pick  # noqa: E402
from trainables.config import resolve  # noqa: E402
from trainables.data import make_synthetic  # noqa: E402
from trainables.inits import apply_init  # noqa: E402
from trainables.models import build_model  # noqa: E402
from trainables.train import train  # noqa: E402

BATCH = 64
STUDY_000 = dict(dataset="synthetic", model="cnn", width=32, optimizer="adam", lr=1e-3, batch_size=BATCH,
                 init="he_normal", init_mode="fan_out", activation="relu")


class PILImages(torch.utils.data.Dataset):
    """The seed's input pipeline: PIL images through torchvision transforms, one image at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std):
        from PIL import Image
        from torchvision import transforms
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
        self.labels = y.tolist()
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def seed_style(data, depth: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of the seed-style loop, over `steps` steps after `warmup` steps."""
    n = (steps + warmup) * BATCH
    dataset = PILImages(data.train_x[:n], data.train_y[:n], data.mean, data.std)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2,
                                         pin_memory=device.type == "cuda", drop_last=True)
    config = resolve({**STUDY_000, "depth": depth})
    torch.manual_seed(0)
    model = apply_init(build_model(config, 10), config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    model.train()
    started, running_loss, correct = None, 0.0, 0
    for step, (x, y) in enumerate(loader):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()                      # the seed read these every step
        correct += (out.argmax(1) == y).sum().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - started)


def ours(data, depth: int, steps: int, device: torch.device, **settings) -> float:
    """Images/s of `train`'s step loop in its second epoch."""
    seen = []
    config = {**STUDY_000, "depth": depth, "epochs": 2, "train_subset": steps * BATCH, "test_subset": BATCH,
              "device": device.type, **settings}
    train(config, data, lambda metrics, state: seen.append(metrics["it_per_s"]))
    return seen[-1] * BATCH


def epoch_seconds(data, depth: int, steps: int, device: torch.device, diagnostics: bool) -> float:
    """Wall seconds of `train`'s second epoch (steps, evaluation, metrics), with or without the diagnostics."""
    seen = []
    config = {**STUDY_000, "depth": depth, "epochs": 2, "train_subset": steps * BATCH, "test_subset": 10 * BATCH,
              "device": device.type, "diagnostics": diagnostics}
    train(config, data, lambda metrics, state: seen.append(metrics["seconds"]))
    return seen[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="depth 5 only, few steps, no compile")
    p.add_argument("--depths", default=None, help="comma-separated depths (default 2,5,12; --quick: 5)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=None, help="interleaved repetitions; the median is shown")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the fastest settings")
    p.add_argument("--diagnostics", action="store_true",
                   help="(d): the epoch's cost of update_ratio and dead_fraction, on vs diagnostics=false")
    args = p.parse_args(argv)
    device = pick(args.device)
    cuda = device.type == "cuda"
    depths = [int(d) for d in (args.depths or ("5" if args.quick else "2,5,12")).split(",")]
    steps = args.steps or (6 if args.quick else (200 if cuda else 30))
    rounds = args.rounds or (1 if args.quick else 3)
    compile_ = not (args.quick or args.no_compile)
    fastest = dict(grad_stats=False, compile=compile_)
    warmup = 3
    data = make_synthetic(num_train=(steps + warmup) * BATCH, num_test=BATCH, seed=0)
    print(describe(device))
    print(f"# batch {BATCH}, {steps} timed steps, {rounds} round(s); fastest = {fastest} + precision/memory_format auto")
    rows = []
    for depth in depths:
        runs = {"seed": [], "default": [], "fastest": []}
        for _ in range(rounds):
            runs["seed"].append(seed_style(data, depth, steps, warmup, device))
            runs["default"].append(ours(data, depth, steps, device))
            runs["fastest"].append(ours(data, depth, steps, device, **fastest))
        med = {k: statistics.median(v) for k, v in runs.items()}
        rows.append((depth, med))
        print(f"  depth {depth}: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in med.items()), file=sys.stderr)
    print(f"\n| depth | (a) seed-style img/s | (b) ours default img/s | (c) ours fastest img/s | (b)/(a) | (c)/(a) |")
    print("|---|---|---|---|---|---|")
    for depth, med in rows:
        print(f"| {depth} | {med['seed']:,.0f} | {med['default']:,.0f} | {med['fastest']:,.0f} | "
              f"{med['default'] / med['seed']:.2f} | {med['fastest'] / med['seed']:.2f} |")
    if args.diagnostics:
        for depth in depths:
            with_, without = [], []
            for _ in range(max(rounds, 3)):
                with_.append(epoch_seconds(data, depth, steps, device, True))
                without.append(epoch_seconds(data, depth, steps, device, False))
            a, b = statistics.median(with_), statistics.median(without)
            print(f"(d) depth {depth}: epoch {a:.3f} s with the diagnostics, {b:.3f} s without: "
                  f"diagnostics_epoch_overhead_depth{depth}: {a / b:.3f}")
    depth5 = dict(rows).get(5)
    ratio = depth5["default"] / depth5["seed"] if depth5 else float("nan")
    print(f"speedup_vs_seed_style_depth5: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
