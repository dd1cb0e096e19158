"""`train(config, data, report)`: one training run, plain Python, with or without Ray.

`report(metrics, state)` is called once per epoch. `metrics` is a flat dict of
numbers plus `layers`, a list of per-layer dicts; `state` is a checkpoint dict
on the epochs where one is due (`checkpoint_every`), else None. Passing such a
dict back as `resume=` continues the run exactly where it stopped.

Per-step statistics stay on the device and are read once per epoch, so the
step loop never waits on a host sync.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from trainables.classes import class_weights, evaluate_classes
from trainables.config import resolve
from trainables.data import Dataset, Normalizer, init_batch, random_crop_flip, trial_splits
from trainables.fast import autocast, memory_format, prepare_model, setup_backend, to_format
from trainables.inits import apply_init, needs_batch, weight_layers
from trainables.models import build_model

Report = Callable[[dict, Optional[dict]], None]
EVAL_BATCH = 1000


def pick_device(config: dict) -> torch.device:
    if config["device"] == "cuda" or (config["device"] == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


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


def layer_names(model: torch.nn.Module) -> list[str]:
    """conv1, conv2, ..., fc1: readable names in forward order."""
    counts: dict[str, int] = {}
    names = []
    for _, layer in weight_layers(model):
        kind = "conv" if isinstance(layer, torch.nn.Conv2d) else "fc"
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind}{counts[kind]}")
    return names


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
def weight_metrics(model, tracked, names, grad_means: torch.Tensor, config: dict) -> dict:
    """avg_weight and the per-layer rows, read from the device once per epoch."""
    grad_means = grad_means.tolist()
    layers = [dict(layer=k, layer_name=names[k], grad_abs_mean=grad_means[k] if config["grad_stats"] else math.nan,
                   weight_mean=w.float().mean().item(), weight_std=w.float().std().item())
              for k, w in enumerate(tracked)]
    return dict(avg_weight=torch.stack([p.float().mean() for p in model.parameters()]).mean().item(), layers=layers)


def train(config: dict, data: Dataset, report: Optional[Report] = None, resume: Optional[dict] = None) -> dict:
    config = resolve(config)
    # On CPU a network whose signals vanish (plain VGG38) spends most of its time on denormal
    # floats; flushing them to zero gave identical metrics at 2.5x the speed (31 s vs 76 s an epoch).
    # The probe measures raw variances, so it runs without. Set both ways: a reused Ray worker keeps
    # the previous trial's setting.
    torch.set_flush_denormal(config["task"] != "probe")
    if config["task"] == "probe":  # study 003: measure signal propagation at init, train nothing
        from trainables.probe import probe
        return probe(config, data, report)
    device = pick_device(config)
    setup_backend(device)
    torch.manual_seed(config["seed"])
    splits = {k: (x.to(device), y.to(device)) for k, (x, y) in trial_splits(data, config).items()}
    train_x, train_y = splits["train"]
    normalize = Normalizer(data.mean, data.std, device)
    generator = torch.Generator(device=device).manual_seed(config["seed"])

    fit_batch = init_batch(train_x, train_y, config, normalize)[0].cpu() if needs_batch(config) else None
    model = apply_init(build_model(config, data.num_classes), config, fit_batch)
    # study 004: class counts of this trial's training set, the loss weights made from them, and the
    # weights at init (kept for the kernel pictures when weight_snapshots is on).
    train_counts = torch.bincount(train_y.cpu(), minlength=data.num_classes).tolist()
    loss_weight = class_weights(train_counts, config["class_weights"], config["effective_beta"])
    loss_weight = loss_weight.to(device) if loss_weight is not None else None
    init_model = ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                  if config["weight_snapshots"] else None)
    model, step_model = prepare_model(model, config, device)  # channels_last / torch.compile (trainables.fast)
    fmt = memory_format(config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    tracked = [layer.weight for _, layer in weight_layers(model)]
    names = layer_names(model)
    start = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        start = resume["epoch"] + 1
        init_model = resume.get("init_model", init_model)

    status, metrics = "completed", {}
    n, batch = len(train_y), config["batch_size"]
    for epoch in range(start, config["epochs"] + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        grad_sum = torch.zeros(len(tracked), device=device)
        steps = seen = 0
        order = torch.randperm(n, device=device, generator=generator)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            if len(idx) < 2 and n > 1:  # a lone image breaks BatchNorm's batch statistics
                continue
            xb, yb = train_x[idx], train_y[idx]
            if config["augment"]:
                xb = random_crop_flip(xb, generator)
            with autocast(config, device):
                out = step_model(to_format(normalize(xb), fmt))
                loss = F.cross_entropy(out, yb, weight=loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config["grad_stats"]:
                grad_sum += torch.stack([w.grad.abs().mean() if w.grad is not None else w.new_zeros(())
                                         for w in tracked])
            optimizer.step()
            loss_sum += loss.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
            steps += 1
            seen += len(yb)
        scheduler.step()
        train_seconds = time.perf_counter() - started
        metrics = dict(epoch=epoch, train_loss=loss_sum.item() / max(seen, 1), train_acc=correct.item() / max(seen, 1))
        diverged = not math.isfinite(metrics["train_loss"])
        diverged = eval_splits(model, splits, normalize, config, device, metrics) or diverged
        metrics.update(weight_metrics(model, tracked, names, grad_sum / max(steps, 1), config))
        if config["class_metrics"] == "every" or (config["class_metrics"] == "final" and
                                                  (epoch == config["epochs"] or diverged)):
            metrics["classes"], confusion = evaluate_classes(model, splits, normalize, data.classes, train_counts)
            if epoch == config["epochs"] or diverged:  # C x C cells: only once per trial
                metrics["confusion"] = confusion
        metrics.update(lr=lr, seconds=time.perf_counter() - started, it_per_s=steps / max(train_seconds, 1e-9))
        if diverged:
            status = "diverged"
        metrics["status"] = status if diverged or epoch == config["epochs"] else "running"
        due = config["checkpoint_every"] and (epoch % config["checkpoint_every"] == 0) and not diverged
        due = due or (config["weight_snapshots"] and epoch == config["epochs"])
        state = None
        if due:
            # A snapshot, not live references: training goes on mutating the tensors.
            state = copy.deepcopy(dict(epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                       scheduler=scheduler.state_dict(), generator=generator.get_state(),
                                       torch_rng=torch.get_rng_state()))
            if init_model is not None:
                state["init_model"] = init_model
        if report is not None:
            report(metrics, state)
        if diverged:
            break
        if epoch == config["fail_at_epoch"]:
            raise RuntimeError(f"fail_at_epoch={epoch}: injected failure")
    return {**{k: v for k, v in metrics.items() if k not in ("layers", "classes", "confusion")}, "status": status}
