"""The CNN of study 000 (He et al. 2015 replication), at any depth.

conv 3->w + act (no BN), then depth-1 blocks of conv w->w + BN + act, with a
2x2 max-pool after every second block, then flatten and one linear layer.
Pooling stops once the feature map is 1x1, so depths beyond the seed's 12
still build (study 003 goes to 50).

Dropout (config `dropout`, off by default): `dropout_at="blocks"` puts one
after every activation (the first conv's and each block's, before any pool),
"head" one on the flattened features before the linear layer, "all" both.
"""
from __future__ import annotations

from torch import nn

from trainables.activations import make_activation, make_dropout
from trainables.geometry import IMAGE_SIZE, cnn_map_sides
from trainables.models.registry import ModelSpec, register


def build_cnn(config: dict, num_classes: int, image_size: int = IMAGE_SIZE) -> nn.Sequential:
    width = config["width"]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), make_activation(config, width),
                               *make_dropout(config, "blocks")]
    # where the pools go is trainables/geometry.py's rule, which the reports read too
    sides = cnn_map_sides(config["depth"], image_size)
    for block in range(1, config["depth"]):
        layers.append(nn.Conv2d(width, width, 3, padding=1))
        if config["bn"]:
            layers.append(nn.BatchNorm2d(width))
        layers.append(make_activation(config, width))
        layers += make_dropout(config, "blocks")
        if sides[block] < sides[block - 1]:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), *make_dropout(config, "head"), nn.Linear(width * sides[-1] ** 2, num_classes)]
    return nn.Sequential(*layers)


KEYS = ("depth", "width", "bn", "activation", "dropout", "dropout_at")
register("cnn", ModelSpec(build_cnn, KEYS, "cnn", dropout=True,
                          describe="study-000 CNN: conv + (depth-1) x [conv, BN, act], pool every 2nd"))
