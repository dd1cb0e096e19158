"""The pieces of an epoch that `train` (one model) and `train_packed` (G fused models) share:
the optimiser and its schedule, the batch order with its skip rule, augmentation, evaluation,
and the per-epoch metrics. A change here reaches both loops.

Per-step statistics stay on the device and are read once per epoch, so the step
loop never waits on a host sync.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Iterator

import torch
import torch.nn.functional as F

from torch import nn

from trainables.data import random_crop_flip
from trainables.fast import autocast
from trainables.inits import eval_forward, weight_layers

EVAL_BATCH = 1000


def make_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.Optimizer:
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config["lr"] * config["lr_scale"], momentum=config["momentum"],
                               weight_decay=config["weight_decay"])
    # Adam's weight_decay adds an L2 term to the gradient, as the source studies did.
    return torch.optim.Adam(model.parameters(), lr=config["lr"] * config["lr_scale"], weight_decay=config["weight_decay"])


def make_scheduler(optimizer, config: dict):
    if config["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"],
                                                          eta_min=config["lr_min"] * config["lr_scale"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def retune(optimizer, scheduler, config: dict) -> None:
    """Put the config's lr, weight_decay and momentum in force after loading a checkpoint that was made
    under other values (PBT's explore step copies a donor's optimizer state). A checkpoint of the same
    config is left bit for bit as it was."""
    base = config["lr"] * config["lr_scale"]
    if any(old != base for old in scheduler.base_lrs):
        scheduler.base_lrs = [base for _ in scheduler.base_lrs]
        for group in optimizer.param_groups:
            group["initial_lr"] = base
        closed_form = getattr(scheduler, "_get_closed_form_lr", scheduler.get_lr)  # the schedule at its epoch
        with warnings.catch_warnings():  # LambdaLR.get_lr is its closed form; torch warns outside step()
            warnings.simplefilter("ignore", UserWarning)
            lrs = closed_form()
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
    for group in optimizer.param_groups:
        group["weight_decay"] = config["weight_decay"]
        if "momentum" in group:
            group["momentum"] = config["momentum"]


def batches(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Index batches of one epoch in `order`; a lone trailing image is skipped, since it
    would break BatchNorm's batch statistics."""
    n = len(order)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        if len(idx) < 2 and n > 1:
            continue
        yield idx


def augment(x: torch.Tensor, config: dict, generator: torch.Generator) -> torch.Tensor:
    return random_crop_flip(x, generator) if config["augment"] else x


@torch.no_grad()
def evaluate(model, x, y, normalize) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(y), EVAL_BATCH):
        out = model(normalize(x[i:i + EVAL_BATCH])).float()
        yb = y[i:i + EVAL_BATCH]
        loss_sum += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)


def eval_splits(model, splits: dict, normalize, config: dict, device, metrics: dict) -> bool:
    """Adds val_/test_ loss and accuracy to `metrics`; True if a loss is not finite."""
    diverged = False
    for split in ("val", "test"):
        if split in splits:
            with autocast(config, device):
                loss, acc = evaluate(model, *splits[split], normalize)
            metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss, acc
            diverged = diverged or not math.isfinite(loss)
    return diverged


@torch.no_grad()
def weight_metrics(model, tracked, names, grad_means: torch.Tensor, config: dict, starts: list[torch.Tensor]) -> dict:
    """avg_weight and the per-layer rows, read from the device once per epoch. `starts`: each tracked
    weight as it was when the epoch began, for update_ratio = ||W_end - W_start|| / ||W_start||."""
    grad_means = grad_means.tolist()
    ratios = [math.nan] * len(tracked)
    if config["diagnostics"]:
        ratios = torch.stack([(w.float() - w0.float()).norm() / w0.float().norm()
                              for w, w0 in zip(tracked, starts)]).tolist()
    layers = [dict(layer=k, layer_name=names[k], grad_abs_mean=grad_means[k] if config["grad_stats"] else math.nan,
                   weight_mean=w.float().mean().item(), weight_std=w.float().std().item(), update_ratio=ratios[k])
              for k, w in enumerate(tracked)]
    return dict(avg_weight=torch.stack([p.float().mean() for p in model.parameters()]).mean().item(), layers=layers)


def snapshot(tracked: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tracked weights at the start of an epoch (copies: training updates them in place)."""
    return [w.detach().clone() for w in tracked]


# Rectifiers: a unit can output exactly 0 for every input. (Leaky variants only at input 0; tanh,
# sigmoid and GELU never in practice, so their layers report NaN.)
RECTIFIERS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU)
DIAGNOSTIC_BATCH = 256


def diagnostic_batch(train_x: torch.Tensor, config: dict, normalize) -> torch.Tensor:
    """The fixed batch dead_fraction is measured on: DIAGNOSTIC_BATCH training images, normalised, the same
    every epoch, drawn with a generator of its own so no other random stream moves."""
    g = torch.Generator().manual_seed(config["split_seed"])
    idx = torch.randperm(len(train_x), generator=g)[:DIAGNOSTIC_BATCH].to(train_x.device)
    return normalize(train_x[idx])


@torch.no_grad()
def dead_fractions(model, layers: list[nn.Module], x: torch.Tensor) -> list[float]:
    """Per weight layer: the fraction of its units (channels, or neurons) for which the first rectifier after
    it outputs exactly 0 on every image and position of `x`; NaN where no rectifier follows (the classifier).

    Measured in evaluation mode (inits.eval_forward): it leaves no trace in training.
    """
    index = {id(layer): k for k, layer in enumerate(layers)}
    dead = [math.nan] * len(layers)
    current = [-1]  # the weight layer that ran last: the one a rectifier's output belongs to

    def on_layer(module, args, output):
        current[0] = index[id(module)]

    def on_rectifier(module, args, output):
        k = current[0]
        if k >= 0 and math.isnan(dead[k]):
            # one reduction per unit over images and positions (cheaper than two `any`s over a mask)
            alive = output.abs().amax(dim=(0, *range(2, output.dim()))) > 0
            dead[k] = 1.0 - alive.float().mean().item()

    eval_forward(model, x, [(layer, on_layer) for layer in layers]
                 + [(m, on_rectifier) for m in model.modules() if isinstance(m, RECTIFIERS)])
    return dead


def epoch_metrics(model, tracked, names, splits: dict, normalize, config: dict, device, *, epoch: int,
                  train_loss: float, train_acc: float, grad_means: torch.Tensor, starts: list[torch.Tensor],
                  probe_x: torch.Tensor, extra=None) -> tuple[dict, bool]:
    """(metrics, diverged) of one model after one epoch: the training figures, validation and test
    loss and accuracy, the weight and gradient statistics, and the per-layer diagnostics (update_ratio
    against `starts`, dead_fraction on the fixed batch `probe_x`). `extra(final)` adds the hooks'
    entries (final: the last epoch, or the run diverged and stops here)."""
    metrics = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc)
    diverged = not math.isfinite(train_loss)
    diverged = eval_splits(model, splits, normalize, config, device, metrics) or diverged
    metrics.update(weight_metrics(model, tracked, names, grad_means, config, starts))
    layers = [layer for _, layer in weight_layers(model)]
    dead = dead_fractions(model, layers, probe_x) if config["diagnostics"] else [math.nan] * len(layers)
    for row, fraction in zip(metrics["layers"], dead):
        row["dead_fraction"] = fraction
    if extra is not None:
        metrics.update(extra(epoch == config["epochs"] or diverged))
    return metrics, diverged


def close_epoch(metrics: dict, config: dict, *, lr: float, started: float, train_seconds: float, steps: int,
                diverged: bool) -> dict:
    """The epoch's timing, learning rate and status (`running` until the last epoch)."""
    metrics.update(lr=lr, seconds=time.perf_counter() - started, it_per_s=steps / max(train_seconds, 1e-9))
    last = diverged or metrics["epoch"] == config["epochs"]
    metrics["status"] = ("diverged" if diverged else "completed") if last else "running"
    return metrics


def summary(metrics: dict) -> dict:
    """What a run returns: its last epoch's metrics without the per-layer and per-class lists."""
    return {k: v for k, v in metrics.items() if k not in ("layers", "classes", "confusion")}
