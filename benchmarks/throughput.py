"""Train-step images/s: a seed-style loop vs our `train` (defaults) vs our fastest settings, side by side.

    python benchmarks/throughput.py            # depths 2, 5, 12 on CUDA if present, else CPU
    python benchmarks/throughput.py --quick    # depth 5 only, short rounds (about a minute on a 2-core CPU)

(a) seed-style: a torch Dataset of PIL images with torchvision transforms
    (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), a
    DataLoader with 2 workers, fp32, and `.item()` on loss and accuracy every step,
    as the seed notebook's loop did.
(b) `trainables.train.train` with the default config (precision/memory format "auto").
(c) `train` with the fastest settings: grad_stats off and torch.compile on
    (compile is left out with --quick or --no-compile, since compiling takes
    tens of seconds on a CPU).

All three train the same study-000 CNN (32 filters, batch 64, Adam) on
synthetic CIFAR-sized images on the same device. The three run once per round, in an order that rotates
from round to round (benchmarks/rounds.py), so load changes on a shared machine hit them alike; the table
shows each one's median round, and the ratios are medians of the per-round ratios with their interquartile
range. For (b) and (c), the speed is the training loop of the
second epoch (`it_per_s` x batch): the first epoch pays one-off costs (cuDNN
autotuning, compilation). For (a), worker start-up and a few warm-up steps are
excluded, which flatters the seed-style loop if anything.

(d) The per-layer diagnostics (update_ratio, dead_fraction: trainables/loop.py) run once per epoch,
    outside the step loop. `--diagnostics` measures what they cost a whole epoch (its `seconds`:
    steps, evaluation and metrics) of (b), against the same epoch with `diagnostics=false`, interleaved.

The last line, `speedup_vs_seed_style_depth5: <ratio>`, is the median per-round (b)/(a) at depth 5; the line
before it gives that ratio's spread.
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


def seed_style(data, depth: int, steps: int, warmup: int, device: torch.device, dataset=None) -> float:
    """Images/s of the seed-style loop, over `steps` steps after `warmup` steps. `dataset`: the PIL images,
    made once and shared by the rounds (their conversion is not part of the timed steps)."""
    n = (steps + warmup) * BATCH
    if dataset is None:
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
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved repetitions (default 7 with --quick, else 5); medians are shown")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the fastest settings")
    p.add_argument("--diagnostics", action="store_true",
                   help="(d): the epoch's cost of update_ratio and dead_fraction, on vs diagnostics=false")
    args = p.parse_args(argv)
    device = pick(args.device)
    cuda = device.type == "cuda"
    depths = [int(d) for d in (args.depths or ("5" if args.quick else "2,5,12")).split(",")]
    steps = args.steps or (30 if args.quick else (200 if cuda else 60))
    rounds = args.rounds or (7 if args.quick else 5)
    if steps < 1 or rounds < 1:
        p.error("--steps and --rounds must be >= 1")
    compile_ = not (args.quick or args.no_compile)
    fastest = dict(grad_stats=False, compile=compile_)
    warmup = 3
    data = make_synthetic(num_train=(steps + warmup) * BATCH, num_test=BATCH, seed=0)
    print(describe(device))
    print(f"# batch {BATCH}, {steps} timed steps, {rounds} round(s); fastest = {fastest} + precision/memory_format auto")
    rows = []
    pil = PILImages(data.train_x, data.train_y, data.mean, data.std)
    for depth in depths:
        runs = interleave({"seed": lambda: seed_style(data, depth, steps, warmup, device, pil),
                           "default": lambda: ours(data, depth, steps, device),
                           "fastest": lambda: ours(data, depth, steps, device, **fastest)}, rounds)
        med = {k: spread(v).median for k, v in runs.items()}
        rows.append((depth, med, ratio(runs["default"], runs["seed"]), ratio(runs["fastest"], runs["seed"])))
        print(f"  depth {depth}: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in med.items()), file=sys.stderr)
    print("\n| depth | (a) seed-style img/s | (b) ours default img/s | (c) ours fastest img/s | (b)/(a) | (c)/(a) |")
    print("|---|---|---|---|---|---|")
    for depth, med, b_over_a, c_over_a in rows:
        print(f"| {depth} | {med['seed']:,.0f} | {med['default']:,.0f} | {med['fastest']:,.0f} | "
              f"{b_over_a.text()} | {c_over_a.text()} |")
    if args.diagnostics:
        for depth in depths:
            runs = interleave({"with": lambda: epoch_seconds(data, depth, steps, device, True),
                               "without": lambda: epoch_seconds(data, depth, steps, device, False)}, max(rounds, 3))
            overhead = ratio(runs["with"], runs["without"])
            print(f"(d) depth {depth}: epoch {spread(runs['with']).median:.3f} s with the diagnostics, "
                  f"{spread(runs['without']).median:.3f} s without: diagnostics_epoch_overhead_depth{depth}: "
                  f"{overhead.text(3)}")
    depth5 = next((b_over_a for depth, _, b_over_a, _ in rows if depth == 5), None)
    if depth5 is not None:
        print(f"speedup_vs_seed_style_depth5 spread: {depth5.text()}")
    print(f"speedup_vs_seed_style_depth5: {depth5.median if depth5 else float('nan'):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
