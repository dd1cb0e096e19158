"""The VGG family of study 002 (vanishing gradients, BatchNorm, residual connections).

One builder, driven by `stages` (S), `blocks` (B), `bn`, `residual`, `width` (F)
and `activation`; it reproduces every parameter count the study reports (see
../shared/DESIGN.md, "VGG family of study 002"):

    entry      conv 3->F (no bias), BN, act                      (BN even when bn=False)
    S stages   B x processing block: conv, [BN], act, conv, [BN], (+x if residual), act   (convs without bias)
               1 x reduction block:  conv, [BN], act, avgpool 2, conv, [BN], act        (convs with bias)
    head       global average pool, Linear(F, classes)

Weight layers = 2 + 2*S*(B+1). Modules are registered in forward order, so the
`layer` index of layers.parquet runs from the entry conv (0) to the head (last).

The study's names are presets: `model=vgg38_res` fixes stages/blocks/bn/residual/
activation (trainables.config.resolve copies them into the config, so every
result row shows the true architecture); `model=vgg` takes the keys as given.
"""
from __future__ import annotations

from torch import nn

from trainables.activations import make_activation
from trainables.errors import ConfigError
from trainables.models.registry import ModelSpec, register

MAX_STAGES = 5  # each stage halves the map: 32 px -> 1 px after five


def conv_unit(config: dict, width: int, bias: bool) -> list[nn.Module]:
    """conv 3x3 (+ BN when the config asks for it), without its activation."""
    layers: list[nn.Module] = [nn.Conv2d(width, width, 3, padding=1, bias=bias)]
    if config["bn"]:
        layers.append(nn.BatchNorm2d(width))
    return layers


class ProcessingBlock(nn.Module):
    """conv, act, conv, act; with `residual` the input is added before the last activation."""

    def __init__(self, config: dict, width: int):
        super().__init__()
        self.first = nn.Sequential(*conv_unit(config, width, bias=False), make_activation(config, width))
        self.second = nn.Sequential(*conv_unit(config, width, bias=False))
        self.act = make_activation(config, width)
        self.residual = config["residual"]

    def forward(self, x):
        out = self.second(self.first(x))
        return self.act(out + x if self.residual else out)


def reduction_block(config: dict, width: int) -> nn.Sequential:
    return nn.Sequential(*conv_unit(config, width, bias=True), make_activation(config, width), nn.AvgPool2d(2),
                         *conv_unit(config, width, bias=True), make_activation(config, width))


def build_vgg(config: dict, num_classes: int) -> nn.Sequential:
    width = config["width"]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                               make_activation(config, width)]
    for _ in range(config["stages"]):
        layers += [ProcessingBlock(config, width) for _ in range(config["blocks"])]
        layers.append(reduction_block(config, width))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


def weight_layer_count(config: dict) -> int:
    return 2 + 2 * config["stages"] * (config["blocks"] + 1)


def check_vgg(config: dict) -> None:
    if config["stages"] > MAX_STAGES:
        raise ConfigError(f"stages={config['stages']}: at most {MAX_STAGES} (each stage halves the 32 px image)")


LEAKY = dict(activation="leaky_relu")  # the study changed every non-linearity to LeakyReLU (slope 0.01)
PRESETS = {
    "vgg08": dict(stages=3, blocks=0, bn=False, residual=False, **LEAKY),
    "vgg38": dict(stages=3, blocks=5, bn=False, residual=False, **LEAKY),
    "vgg38_bn": dict(stages=3, blocks=5, bn=True, residual=False, **LEAKY),
    "vgg38_res": dict(stages=3, blocks=5, bn=True, residual=True, **LEAKY),
    "vgg38_res_sigmoid": dict(stages=3, blocks=5, bn=True, residual=True, activation="sigmoid"),
    "vgg68": dict(stages=3, blocks=10, bn=True, residual=True, **LEAKY),
    "vgg72": dict(stages=5, blocks=6, bn=True, residual=True, **LEAKY),
    "vgg106": dict(stages=5, blocks=12, bn=True, residual=True, **LEAKY),  # the study's name; 132 weight layers
}

KEYS = ("stages", "blocks", "bn", "residual", "width", "activation")
register("vgg", ModelSpec(build_vgg, KEYS, "vgg", check_vgg, "study-002 VGG: stages x [blocks x processing + reduction]"))
for _name, _preset in PRESETS.items():
    register(_name, ModelSpec(build_vgg, KEYS, "vgg", check_vgg, f"study-002 {_name}", preset=_preset))
