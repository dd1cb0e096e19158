"""Weight-initialisation schemes by name, applied to a built model.

Building and initialising are separate steps so that one builder serves every
scheme (the source notebook kept two near-copies of its builder for this).
`init_targets` chooses which weights a scheme touches: the seed's He runs only
re-drew the conv weights, its N(0, 1) runs the conv and the final linear ones.
Biases, BatchNorm and PReLU parameters keep their PyTorch defaults.
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
}

TARGETS = {"conv": (nn.Conv2d,), "linear": (nn.Linear,), "all": (nn.Conv2d, nn.Linear)}


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers in forward-definition order: the `layer` index of layers.parquet."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def apply_init(model: nn.Module, config: dict) -> nn.Module:
    scheme = INITS[config["init"]]
    kinds = TARGETS[config["init_targets"]]
    for _, layer in weight_layers(model):
        if isinstance(layer, kinds):
            scheme(layer.weight, config)
    return model
