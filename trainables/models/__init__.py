"""Model families by name. Each family has one builder with parameters, never copies.

A family registers a ModelSpec: `build(config, num_classes)` returns an
un-initialised nn.Module (trainables.inits applies the scheme afterwards) and
`check(config)` raises ConfigError for combinations the builder cannot make.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[dict, int], nn.Module]
    check: Callable[[dict], None] = lambda config: None
    describe: str = ""
    # A named preset (e.g. vgg38_res) fixes these config keys; resolve() copies them into the
    # config so every result row shows the true architecture, and rejects a conflicting override.
    preset: dict = field(default_factory=dict)
    # Families whose builder places dropout layers; for the others dropout > 0 is an error, not a no-op.
    dropout: bool = False


MODELS: dict[str, ModelSpec] = {}


def register(name: str, spec: ModelSpec) -> None:
    MODELS[name] = spec


def build_model(config: dict, num_classes: int) -> nn.Module:
    return MODELS[config["model"]].build(config, num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from trainables.models import cnn  # noqa: E402,F401  (registers itself)
from trainables.models import vgg  # noqa: E402,F401  (registers vgg and the study-002 presets)
from trainables.models import mlp  # noqa: E402,F401  (registers itself)
from trainables.models import conv_stack, resnet  # noqa: E402,F401  (study 004: baseline4, deeper7, resnet18)
