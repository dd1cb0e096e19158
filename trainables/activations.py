"""Activations by name. Each factory gets the config and the channel count of the layer."""
from __future__ import annotations

from torch import nn

ACTIVATIONS = {
    "relu": lambda cfg, ch: nn.ReLU(inplace=True),
    # The seed's PReLU shares one learnable slope per layer (num_parameters=1).
    "prelu": lambda cfg, ch: nn.PReLU(1 if cfg["prelu_shared"] else ch, init=cfg["prelu_init"]),
    "leaky_relu": lambda cfg, ch: nn.LeakyReLU(cfg["act_slope"], inplace=True),
    "sigmoid": lambda cfg, ch: nn.Sigmoid(),
    "tanh": lambda cfg, ch: nn.Tanh(),
    "elu": lambda cfg, ch: nn.ELU(inplace=True),
    "gelu": lambda cfg, ch: nn.GELU(),
}


# The extra config keys an activation reads; setting them under another activation is an error.
ACTIVATION_KEYS = {"prelu": ("prelu_init", "prelu_shared"), "leaky_relu": ("act_slope",)}


def make_activation(config: dict, channels: int) -> nn.Module:
    return ACTIVATIONS[config["activation"]](config, channels)


def make_dropout(config: dict, where: str) -> list[nn.Module]:
    """[nn.Dropout(p)] when the config puts dropout at `where` ("head" or "blocks"), else [].

    nn.Dropout is inverted dropout: kept units are scaled by 1/(1-p) in training,
    so evaluation needs no rescaling (checked in analysis/theory.py).
    """
    p = config["dropout"]
    if p > 0 and config["dropout_at"] in (where, "all"):
        return [nn.Dropout(p)]
    return []
