"""A plain MLP on flattened 3x32x32 inputs: the network of the seed's variance derivations (study 003).

depth = number of linear layers: 3072 -> width, then depth-2 hidden layers
width -> width, then width -> classes, with the activation after every layer
but the last. depth=1 is a linear classifier. Widths are equal inside, so the
per-layer variance factors of He/Xavier/N(0,1) apply exactly to the hidden layers.

Dropout (config `dropout`): "blocks" puts one after every hidden activation.
In an MLP the head position (before the classifier) is the same place as the
last hidden activation's, so "head" puts one only there and "all" equals "blocks".
"""
from __future__ import annotations

from torch import nn

from trainables.activations import make_activation, make_dropout
from trainables.models.registry import ModelSpec, register

INPUT_SIZE = 3 * 32 * 32


def build_mlp(config: dict, num_classes: int) -> nn.Sequential:
    width, depth = config["width"], config["depth"]
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = INPUT_SIZE
    for k in range(depth - 1):
        layers += [nn.Linear(fan_in, width), make_activation(config, width)]
        last_hidden = k == depth - 2
        layers += make_dropout(config, "blocks") or (make_dropout(config, "head") if last_hidden else [])
        fan_in = width
    if depth == 1:
        layers += make_dropout(config, "head")
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)



KEYS = ("depth", "width", "activation", "dropout", "dropout_at")
register("mlp", ModelSpec(build_mlp, KEYS, "mlp", dropout=True,
                          describe="MLP on flattened images: depth linear layers of `width` units"))
