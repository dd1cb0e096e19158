"""The model registry: ModelSpec, MODELS and `register`. Families import this, never the package,
so trainables.models (which imports every family to fill the registry) closes no cycle."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[dict, int], nn.Module]
    # The config keys the builder reads. A key the user sets that the trial's family does not
    # read is a ConfigError (trainables.config.used_keys), never a silent no-op.
    keys: tuple[str, ...]
    family: str
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
