"""Weight-initialisation schemes by name, applied to a built model.

Building and initialising are separate steps so that one builder serves every
scheme (the source notebook kept two near-copies of its builder for this).
`init_targets` chooses which weights a scheme touches: the seed's He runs only
re-drew the conv weights, its N(0, 1) runs the conv and the final linear ones.
Biases keep their PyTorch defaults unless `init_bias="zero"`; BatchNorm and
PReLU parameters always do.

Data-dependent schemes (LSUV) draw their weights like any other scheme, then
REFINE fits them to a batch of inputs: `apply_init(model, config, batch)`.
`needs_batch(config)` says whether a caller has to supply one.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def gain(config: dict, default: str) -> float:
    nonlinearity = config["init_nonlinearity"]
    if nonlinearity == "auto":
        nonlinearity = default
    return nn.init.calculate_gain(nonlinearity, config["act_slope"])


def fan(weight: torch.Tensor, mode: str) -> int:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return fan_in if mode == "fan_in" else fan_out


def he_std(weight: torch.Tensor, config: dict) -> float:
    """He et al. 2015: std = gain / sqrt(fan); gain sqrt(2) for ReLU."""
    return gain(config, "relu") / math.sqrt(fan(weight, config["init_mode"]))


def xavier_std(weight: torch.Tensor, config: dict) -> float:
    """Glorot & Bengio 2010: std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return gain(config, "linear") * math.sqrt(2.0 / (fan_in + fan_out))


def _uniform(weight, std):
    bound = math.sqrt(3.0) * std  # U(-b, b) has std b / sqrt(3)
    nn.init.uniform_(weight, -bound, bound)


INITS = {
    "he_normal": lambda w, cfg: nn.init.normal_(w, 0.0, he_std(w, cfg)),
    "he_uniform": lambda w, cfg: _uniform(w, he_std(w, cfg)),
    "xavier_normal": lambda w, cfg: nn.init.normal_(w, 0.0, xavier_std(w, cfg)),
    "xavier_uniform": lambda w, cfg: _uniform(w, xavier_std(w, cfg)),
    "normal": lambda w, cfg: nn.init.normal_(w, 0.0, cfg["init_std"]),
    "orthogonal": lambda w, cfg: nn.init.orthogonal_(w, gain(cfg, "linear")),
    "default": lambda w, cfg: None,  # keep PyTorch's own layer init
    # LSUV (Mishkin & Matas 2016), step 1: orthonormal weights; step 2 (REFINE) rescales them on data.
    "lsuv": lambda w, cfg: nn.init.orthogonal_(w, 1.0),
}

# The config keys each scheme reads besides init_targets and init_bias (which every scheme honours).
# act_slope joins them when init_nonlinearity is leaky_relu (trainables.config.CONDITIONAL).
INIT_KEYS = {
    "he_normal": ("init_mode", "init_nonlinearity"), "he_uniform": ("init_mode", "init_nonlinearity"),
    "xavier_normal": ("init_nonlinearity",), "xavier_uniform": ("init_nonlinearity",),
    "normal": ("init_std",), "orthogonal": ("init_nonlinearity",), "default": (),
    "lsuv": ("lsuv_tol", "lsuv_max_iter", "init_batch"),
}

TARGETS = {"conv": (nn.Conv2d,), "linear": (nn.Linear,), "all": (nn.Conv2d, nn.Linear)}


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers in forward-definition order: the `layer` index of layers.parquet."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def layer_names(model: nn.Module) -> list[str]:
    """conv1, conv2, ..., fc1: readable names of weight_layers(model), in forward order."""
    counts: dict[str, int] = {}
    names = []
    for _, layer in weight_layers(model):
        kind = "conv" if isinstance(layer, nn.Conv2d) else "fc"
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind}{counts[kind]}")
    return names


@torch.no_grad()
def lsuv_rescale(model: nn.Module, config: dict, batch: torch.Tensor, layers: list[nn.Module]) -> None:
    """LSUV step 2: in forward order, scale each layer's weights until Var(its output) on `batch` is ~1.

    One forward pass does it: each layer's forward hook rescales that layer and
    hands the rescaled output on, so every later layer is fitted to the inputs
    it will really see. Evaluation mode: dropout off, and BatchNorm neither uses
    nor updates batch statistics, so fitting leaves no trace but the weights.
    """
    def fit(module, inputs, output):
        for _ in range(config["lsuv_max_iter"]):
            var = output.var().item()
            if not math.isfinite(var) or var == 0 or abs(var - 1.0) <= config["lsuv_tol"]:
                break
            module.weight.mul_(var ** -0.5)
            output = module.forward(*inputs)  # .forward, not __call__: no recursion into this hook
        return output

    eval_forward(model, batch, [(layer, fit) for layer in layers])


def eval_forward(model: nn.Module, x: torch.Tensor, hooks: list) -> None:
    """One forward pass of `x` in evaluation mode with forward `hooks` [(module, fn), ...] attached, then
    the hooks removed and the model's mode restored: BatchNorm neither uses nor updates batch statistics
    and dropout is off, so the pass leaves no trace in training."""
    handles = [module.register_forward_hook(fn) for module, fn in hooks]
    training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()


REFINE = {"lsuv": lsuv_rescale}  # data-dependent second steps: (model, config, batch, layers)


def needs_batch(config: dict) -> bool:
    return config["init"] in REFINE


@torch.no_grad()
def apply_init(model: nn.Module, config: dict, batch: torch.Tensor | None = None) -> nn.Module:
    """Initialise the targeted layers of `model` in place; `batch` (normalised inputs) for data-dependent schemes."""
    scheme = INITS[config["init"]]
    kinds = TARGETS[config["init_targets"]]
    targets = [layer for _, layer in weight_layers(model) if isinstance(layer, kinds)]
    for layer in targets:
        scheme(layer.weight, config)
        if config["init_bias"] == "zero" and layer.bias is not None:
            layer.bias.zero_()
    if needs_batch(config):
        if batch is None:
            raise ValueError(f'init="{config["init"]}" is data-dependent: apply_init needs a batch of inputs')
        REFINE[config["init"]](model, config, batch, targets)
    return model
