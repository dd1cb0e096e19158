"""`train(config, data, report)`: one training run, plain Python, with or without Ray.

It reads top to bottom: data, model, optimiser, loop, report. Everything a
particular study adds (per-class metrics, init snapshots, fault injection) joins
the loop as a hook from trainables/hooks.py; the epoch's shared pieces live in
trainables/loop.py, which the fused packs of trainables/packed.py use too.

`report(metrics, state)` is called once per epoch. `metrics` is a flat dict of
numbers plus `layers`, a list of per-layer dicts; `state` is a checkpoint dict
on the epochs where one is due (`checkpoint_every`, or a hook asks), else None.
Passing such a dict back as `resume=` continues the run exactly where it stopped.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from trainables.classes import class_weights
from trainables.config import ConfigError, resolve
from trainables.data import Dataset, Normalizer, init_batch, trial_splits
from trainables.fast import autocast, memory_format, pick_device, prepare_model, setup_backend, to_format
from trainables.hooks import Run, hooks_for
from trainables.inits import apply_init, layer_names, needs_batch, weight_layers
from trainables.loop import (augment, batches, close_epoch, diagnostic_batch, epoch_metrics, make_optimizer,
                             make_scheduler, retune, snapshot, summary)
from trainables.models import build_model

Report = Callable[[dict, Optional[dict]], None]


def train(config: dict, data: Dataset, report: Optional[Report] = None, resume: Optional[dict] = None) -> dict:
    config = resolve(config)  # a no-op for the runner's trials, resolved once in plan()
    if config["task"] != "train":
        raise ConfigError(f'task="{config["task"]}": train() runs task="train"; use trainables.tasks.run_task')
    # On CPU a network whose signals vanish (plain VGG38) spends most of its time on denormal
    # floats; flushing them to zero gave identical metrics at 2.5x the speed (31 s vs 76 s an epoch).
    # Set on every run: a reused Ray worker keeps the previous trial's setting (the probe turns it off).
    torch.set_flush_denormal(True)
    device = pick_device(config)
    setup_backend(device)
    torch.manual_seed(config["seed"])

    # --- data: this trial's splits on its device, augmented and normalised per batch ---
    splits = {k: (x.to(device), y.to(device)) for k, (x, y) in trial_splits(data, config).items()}
    train_x, train_y = splits["train"]
    normalize = Normalizer(data.mean, data.std, device)
    generator = torch.Generator(device=device).manual_seed(config["seed"])
    train_counts = torch.bincount(train_y.cpu(), minlength=data.num_classes).tolist()
    loss_weight = class_weights(train_counts, config["class_weights"], config["effective_beta"])
    loss_weight = loss_weight.to(device) if loss_weight is not None else None

    # --- model: built, initialised (data-dependent inits fit to a batch), then put in its fast form ---
    fit_batch = init_batch(train_x, train_y, config, normalize)[0].cpu() if needs_batch(config) else None
    model = apply_init(build_model(config, data.num_classes), config, fit_batch)
    run = Run(config, data, model, splits, normalize, train_counts)
    hooks = hooks_for(config)
    for hook in hooks:
        hook.start(run)
    model, step_model = prepare_model(model, config, device)  # channels_last / torch.compile (trainables.fast)
    run.model = model
    fmt = memory_format(config)

    # --- optimiser, and where a resumed run left off ---
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    tracked = [layer.weight for _, layer in weight_layers(model)]
    names = layer_names(model)
    probe_x = diagnostic_batch(train_x, config, normalize)  # dead_fraction's fixed batch
    start = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        start = resume["epoch"] + 1
        retune(optimizer, scheduler, config)  # a checkpoint made under other hyperparameters (PBT)
        for hook in hooks:
            hook.resume(resume)

    # --- the loop ---
    metrics, diverged = {}, False
    for epoch in range(start, config["epochs"] + 1):
        starts = snapshot(tracked)  # for update_ratio; before the clock, so it_per_s stays the step speed
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        grad_sum = torch.zeros(len(tracked), device=device)
        steps = seen = 0
        for idx in batches(torch.randperm(len(train_y), device=device, generator=generator), config["batch_size"]):
            xb, yb = augment(train_x[idx], config, generator), train_y[idx]
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

        # --- report ---
        metrics, diverged = epoch_metrics(
            model, tracked, names, splits, normalize, config, device, epoch=epoch,
            train_loss=loss_sum.item() / max(seen, 1), train_acc=correct.item() / max(seen, 1),
            grad_means=grad_sum / max(steps, 1), starts=starts, probe_x=probe_x,
            extra=lambda final: {k: v for hook in hooks for k, v in hook.epoch_metrics(run, epoch, final).items()})
        close_epoch(metrics, config, lr=lr, started=started, train_seconds=train_seconds, steps=steps,
                    diverged=diverged)
        every = config["checkpoint_every"]
        due = (every and epoch % every == 0 and not diverged) or any(h.wants_checkpoint(epoch) for h in hooks)
        state = None
        if due:
            # A snapshot, not live references: training goes on mutating the tensors.
            state = copy.deepcopy(dict(epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                       scheduler=scheduler.state_dict(), generator=generator.get_state(),
                                       torch_rng=torch.get_rng_state()))
            for hook in hooks:
                state.update(hook.state())
        if report is not None:
            report(metrics, state)
        if diverged:
            break
        for hook in hooks:
            hook.reported(epoch)
    return {**summary(metrics), "status": "diverged" if diverged else "completed"}
