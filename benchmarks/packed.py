"""Fused multi-model training: G same-architecture trials as one grouped network (HFTA-style).

A small CNN at batch 64 leaves a GPU idle between kernel launches; G such trials
in G processes (Ray's fractional GPUs) time-slice the GPU unless MPS runs. Here
the G models become ONE model whose kernels are G times wider, so one Python
loop and one stream of launches trains all of them:

- Conv2d(Ci, Co)  -> Conv2d(G*Ci, G*Co, groups=G): each group sees only its own model's channels;
- BatchNorm2d(C)  -> BatchNorm2d(G*C): BN statistics are per channel, so per model;
- PReLU           -> one slope (or C slopes) per model, expanded to its channels;
- Flatten, Linear -> per-model flatten and a batched matmul (one weight matrix per model);
- stateless layers (ReLU, LeakyReLU, pooling, ...) are shared as they are.

The loss is the sum of the G models' mean losses, so each model's gradient is
exactly its own; Adam is elementwise, so one Adam over the fused tensors equals
G separate Adams. Each member keeps its own seed: its own init, data order and
augmentation draws, from the same generator calls `train` makes. So a packed
run reproduces G separate `train` runs up to floating-point summation order
(tests/trainables/test_fast_path.py checks it).

A pack must share everything but `seed` and the init settings (same architecture,
optimiser, batch size, epochs, data); `pack_key` says which configs can share a
pack.

This is a benchmark, not a second trainer: it lives in benchmarks/ because it
has its own epoch loop, runs no study hooks, does not checkpoint and the Ray
runner never calls it (the runner's `--trials-per-gpu` shares a GPU between
separate trials instead). benchmarks/grid_wall.py measures what fusing would
buy; see docs/benchmarks.md. Configs whose training `train` would change in a
way the fused loop does not (class-weighted loss, a data-dependent init) are
refused rather than silently trained differently.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import ConfigError, resolve
from trainables.data import Dataset, Normalizer, trial_splits
from trainables.fast import autocast, memory_format, pick_device, setup_backend, to_format
from trainables.inits import apply_init, layer_names, needs_batch, weight_layers
from trainables.loop import (augment, batches, close_epoch, diagnostic_batch, epoch_metrics, make_optimizer,
                             make_scheduler, snapshot, summary)
from trainables.models import build_model

MEMBER_KEYS = ("seed", "init", "init_mode", "init_nonlinearity", "init_std", "init_targets", "prelu_init")
STATELESS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity,
             nn.MaxPool2d, nn.AvgPool2d)


def pack_key(config: dict) -> tuple:
    """Configs with equal keys can train in one pack."""
    config = resolve(config)
    return tuple(sorted((k, v) for k, v in config.items() if k not in MEMBER_KEYS))


class GroupPReLU(nn.Module):
    def __init__(self, layers: list[nn.PReLU], channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([p.weight.detach().clone() for p in layers]))  # G x slopes
        self.channels = channels

    def forward(self, x):
        g, slopes = self.weight.shape
        per_channel = self.weight.view(g, slopes, 1).expand(g, slopes, self.channels // slopes).reshape(-1)
        return F.prelu(x, per_channel)


class GroupFlatten(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):  # B x G*C x h x w -> B x G x C*h*w
        return x.reshape(x.shape[0], self.groups, -1)


class GroupLinear(nn.Module):
    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach().clone() for l in layers]))  # G x out x in
        self.bias = nn.Parameter(torch.stack([l.bias.detach().clone() for l in layers]))      # G x out

    def forward(self, x):  # B x G x in -> B x G x out
        return torch.einsum("bgi,goi->bgo", x, self.weight) + self.bias


def fuse(models: list[nn.Sequential]) -> nn.Sequential:
    """One grouped network computing every model of `models` (same architecture) side by side."""
    g, fused, channels = len(models), [], 3
    for layers in zip(*models):
        first = layers[0]
        if isinstance(first, nn.Conv2d):
            conv = nn.Conv2d(g * first.in_channels, g * first.out_channels, first.kernel_size, first.stride,
                             first.padding, first.dilation, g * first.groups, first.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(torch.cat([l.weight for l in layers]))
                if first.bias is not None:
                    conv.bias.copy_(torch.cat([l.bias for l in layers]))
            fused.append(conv)
            channels = first.out_channels
        elif isinstance(first, nn.BatchNorm2d):
            bn = nn.BatchNorm2d(g * first.num_features, first.eps, first.momentum, first.affine)
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, name).copy_(torch.cat([getattr(l, name) for l in layers]))
            fused.append(bn)
        elif isinstance(first, nn.PReLU):
            fused.append(GroupPReLU(list(layers), channels))
        elif isinstance(first, nn.Flatten):
            fused.append(GroupFlatten(g))
        elif isinstance(first, nn.Linear):
            fused.append(GroupLinear(list(layers)))
        elif isinstance(first, STATELESS):
            fused.append(copy.deepcopy(first))
        else:
            raise ConfigError(f"packing cannot fuse a {type(first).__name__} layer; run these trials unpacked")
    return nn.Sequential(*fused)


@torch.no_grad()
def unfuse(fused: nn.Sequential, models: list[nn.Sequential]) -> None:
    """Copy each member's slice of the fused weights back into its own model."""
    g = len(models)
    for big, layers in zip(fused, zip(*models)):
        for name, tensor in list(big.named_parameters(recurse=False)) + list(big.named_buffers(recurse=False)):
            if name == "num_batches_tracked":
                for l in layers:
                    l.num_batches_tracked.copy_(tensor)
                continue
            for l, part in zip(layers, tensor.reshape(g, -1)):
                getattr(l, name).copy_(part.reshape_as(getattr(l, name)))


def train_packed(configs: list[dict], data: Dataset, reports: list | None = None) -> list[dict]:
    """Train len(configs) compatible trials as one fused model; like `train`, one report per member per epoch."""
    configs = [resolve(c) for c in configs]
    if len({pack_key(c) for c in configs}) != 1:
        raise ConfigError("a pack must share every key except " + ", ".join(MEMBER_KEYS))
    for c in configs:  # what `train` honours and this loop does not: refuse rather than train differently
        if c["class_weights"] != "none":
            raise ConfigError(f'class_weights="{c["class_weights"]}": the fused loop has no weighted loss; '
                              "train these trials unpacked")
        if needs_batch(c):
            raise ConfigError(f'init="{c["init"]}" is fitted to data, which the fused loop does not do; '
                              "train these trials unpacked")
    config, g = configs[0], len(configs)
    device = pick_device(config)
    setup_backend(device)
    splits = {k: (x.to(device), y.to(device)) for k, (x, y) in trial_splits(data, config).items()}
    train_x, train_y = splits["train"]
    normalize = Normalizer(data.mean, data.std, device)
    members, generators = [], []
    for c in configs:  # the same global-RNG and generator calls as `train`, member by member
        torch.manual_seed(c["seed"])
        members.append(apply_init(build_model(c, data.num_classes), c).to(device))
        generators.append(torch.Generator(device=device).manual_seed(c["seed"]))
    fmt = memory_format(config)
    model = fuse(members).to(device=device, memory_format=fmt)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    tracked = [layer.weight for layer in model if isinstance(layer, (nn.Conv2d, GroupLinear))]
    member_tracked = [[layer.weight for _, layer in weight_layers(m)] for m in members]
    names = layer_names(members[0])
    probe_x = diagnostic_batch(train_x, config, normalize)  # the same fixed batch as `train` uses
    n, batch = len(train_y), config["batch_size"]
    results = [dict(status="completed") for _ in configs]
    finished = [False] * g
    for epoch in range(1, config["epochs"] + 1):
        starts = [snapshot(t) for t in member_tracked]  # members hold the weights of the last unfuse
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum = torch.zeros(g, device=device)
        correct = torch.zeros(g, device=device, dtype=torch.long)
        grad_sum = torch.zeros(len(tracked), g, device=device)
        steps = seen = 0
        orders = [torch.randperm(n, device=device, generator=gen) for gen in generators]
        for idx in zip(*(batches(order, batch) for order in orders)):  # every member skips the same batches
            xs = [augment(train_x[k], config, gen) for k, gen in zip(idx, generators)]
            ys = torch.stack([train_y[k] for k in idx], 1)  # B x G
            xb = torch.cat(xs, 1)  # B x G*3 x H x W: member k in channels 3k..3k+2
            with autocast(config, device):
                out = model(to_format(normalize(xb.view(-1, 3, *xb.shape[2:])).view_as(xb), fmt))
                losses = F.cross_entropy(out.float().permute(0, 2, 1), ys, reduction="none").mean(0)  # G
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if config["grad_stats"]:
                grad_sum += torch.stack([w.grad.reshape(g, -1).abs().mean(1) for w in tracked])
            optimizer.step()
            loss_sum += losses.detach() * len(ys)
            correct += (out.argmax(2) == ys).sum(0)
            steps += 1
            seen += len(ys)
        scheduler.step()
        train_seconds = time.perf_counter() - started
        unfuse(model, members)
        train_loss, train_acc = (loss_sum / max(seen, 1)).tolist(), (correct.double() / max(seen, 1)).tolist()
        for k, (c, member) in enumerate(zip(configs, members)):
            if finished[k]:
                continue
            metrics, diverged = epoch_metrics(member, member_tracked[k], names, splits, normalize, c, device,
                                              epoch=epoch, train_loss=train_loss[k], train_acc=train_acc[k],
                                              grad_means=grad_sum[:, k] / max(steps, 1), starts=starts[k],
                                              probe_x=probe_x)
            close_epoch(metrics, c, lr=lr, started=started, train_seconds=train_seconds, steps=steps,
                        diverged=diverged)
            finished[k] = diverged  # a diverged member stops reporting; the pack trains on
            if reports is not None:
                reports[k](metrics, None)
            results[k] = {**summary(metrics), "status": "diverged" if diverged else "completed"}
    return results
