"""`task="probe"`: how signals and gradients propagate through a freshly initialised network (study 003).

No training. The network a training trial would start from (same builder, same
init, same seed) sees one batch: `init_batch` normalised training images, or
N(0, I) inputs of the same shape with `probe_input="gaussian"` and random labels.
One forward pass and one backward pass of the cross-entropy give, per weight
layer (the `layer` index of layers.parquet):

    pre_act_var      Var of the layer's output (the pre-activation; before BN when a BN follows)
    post_act_var     Var of the first activation's output after that layer (NaN for the classifier)
    grad_input_var   Var of d loss / d (the layer's input)
    grad_weight_var  Var of d loss / d (the layer's weight)

each pooled over every element (batch x units x positions). They are reported
once, as epoch 1, through the same `report(metrics, state)` as training.

The pass runs in float64: under N(0, 1) init a 50-layer ReLU net's variance
grows ~n/2 per layer, about 1e108 at the top, far past float32's 3e38.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainables.activations import ACTIVATIONS
from trainables.config import DEFAULTS, resolve
from trainables.data import Dataset, Normalizer, init_batch, trial_splits
from trainables.fast import pick_device
from trainables.inits import apply_init, layer_names, weight_layers
from trainables.models import build_model

# Every registered activation's module type, so a newly registered activation is recognised too.
ACTIVATION_TYPES = tuple({type(make(DEFAULTS, 1)) for make in ACTIVATIONS.values()})


def probe_batch(data: Dataset, config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's (inputs, labels) on the CPU: real normalised images, or N(0, I) with random labels."""
    if config["probe_input"] == "gaussian":
        g = torch.Generator().manual_seed(config["seed"])
        x = torch.randn(config["init_batch"], *data.train_x.shape[1:], generator=g)
        return x, torch.randint(0, data.num_classes, (len(x),), generator=g)
    train_x, train_y = trial_splits(data, config)["train"]
    return init_batch(train_x, train_y, config, Normalizer(data.mean, data.std, "cpu"))


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, backward: bool = True) -> tuple[float, list[dict]]:
    """(loss, one dict per weight layer with the four variances above) for one forward/backward pass.

    backward=False runs the forward pass only (the gradient columns are then NaN).
    """
    layers = [layer for _, layer in weight_layers(model)]
    index = {id(layer): k for k, layer in enumerate(layers)}
    rows = [dict(pre_act_var=math.nan, post_act_var=math.nan) for _ in layers]
    inputs: list[Optional[torch.Tensor]] = [None] * len(layers)
    current = [-1]  # the weight layer that ran last: the one an activation's output belongs to

    def on_layer(module, args, output):
        k = index[id(module)]
        rows[k]["pre_act_var"] = output.detach().var().item()  # now, before an in-place activation runs
        if args[0].requires_grad:
            args[0].retain_grad()
            inputs[k] = args[0]
        current[0] = k

    def on_activation(module, args, output):
        k = current[0]
        if k >= 0 and math.isnan(rows[k]["post_act_var"]):
            rows[k]["post_act_var"] = output.detach().var().item()

    handles = [layer.register_forward_hook(on_layer) for layer in layers]
    handles += [m.register_forward_hook(on_activation) for m in model.modules() if isinstance(m, ACTIVATION_TYPES)]
    try:
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(backward):
            loss = F.cross_entropy(model(x.detach().requires_grad_(backward)), y)
        if backward:
            loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    for row, layer, inp in zip(rows, layers, inputs):
        grad_w = layer.weight.grad
        row.update(grad_input_var=inp.grad.var().item() if inp is not None and inp.grad is not None else math.nan,
                   grad_weight_var=grad_w.var().item() if grad_w is not None else math.nan,
                   grad_abs_mean=grad_w.abs().mean().item() if grad_w is not None else math.nan)
    return loss.item(), rows


def probe(config: dict, data: Dataset, report=None, resume: Optional[dict] = None) -> dict:
    """Same signature as `train`; `resume` is ignored (there is nothing to resume)."""
    config = resolve(config)
    # Variances are measured raw: no flushing of denormals (a reused Ray worker may have it on).
    torch.set_flush_denormal(False)
    started = time.perf_counter()
    torch.manual_seed(config["seed"])
    x, y = probe_batch(data, config)
    model = apply_init(build_model(config, data.num_classes), config, x)  # float32, exactly as training would
    device = pick_device(config)
    model = model.double().to(device)
    model.train()  # batch statistics and dropout as the first training step sees them
    loss, rows = measure(model, x.double().to(device), y.to(device))
    names = layer_names(model)
    with torch.no_grad():
        for k, (row, (_, layer)) in enumerate(zip(rows, weight_layers(model))):
            row.update(layer=k, layer_name=names[k], weight_mean=layer.weight.mean().item(),
                       weight_std=layer.weight.std().item())
        avg_weight = torch.stack([p.mean() for p in model.parameters()]).mean().item()
    metrics = dict(epoch=1, train_loss=loss, avg_weight=avg_weight, lr=math.nan, layers=rows,
                   seconds=time.perf_counter() - started, it_per_s=math.nan, status="completed")
    if report is not None:
        report(metrics, None)
    return {k: v for k, v in metrics.items() if k != "layers"}
