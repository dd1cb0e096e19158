"""torchvision's ResNet18 with a new head, from scratch or from pretrained weights (study 004's transfer net).

`resnet_weights`:
    ""          from scratch (torchvision's own layer init; set init=default to keep it)
    a path      a local file holding a ResNet18 state_dict (or a dict with it under "model" or
                "state_dict"), e.g. `torch.save(torchvision.models.resnet18(weights=...).state_dict(), f)`
    "imagenet"  torchvision's IMAGENET1K_V1 weights, downloaded into torch's cache (needs network)
The 1000-class head of the file is dropped and a fresh Linear(512, classes) takes
its place; every other tensor must match, or the build fails naming the keys.
`freeze_backbone` stops gradients everywhere but the head; BatchNorm running
statistics still follow the new data, since the trial trains in train mode.
The ImageNet stem (7x7 stride-2 conv + max-pool) is kept so pretrained weights fit;
on 32x32 inputs the last stage therefore sees a 1x1 map.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainables.errors import ConfigError
from trainables.models.registry import ModelSpec, register

HEAD = "fc."


def load_backbone_weights(source: str) -> dict:
    """The state_dict named by `resnet_weights`; ConfigError with the reason when it cannot be had."""
    import torchvision
    if source == "imagenet":
        try:
            model = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
        except Exception as exc:
            raise ConfigError(f"resnet_weights=imagenet: downloading torchvision's ResNet18 weights failed "
                              f"({type(exc).__name__}: {exc}). Without network, save a ResNet18 state_dict to "
                              "a file and pass its path as resnet_weights.") from None
        return model.state_dict()
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(f"resnet_weights={source!r}: no such file (give a ResNet18 state_dict file, "
                          "\"imagenet\" to download, or \"\" to train from scratch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"resnet_weights={source!r}: not a readable torch file ({type(exc).__name__}: {exc})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"resnet_weights={source!r}: holds a {type(state).__name__}, not a state_dict")
    return state


def build_resnet18(config: dict, num_classes: int) -> nn.Module:
    import torchvision
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if config["resnet_weights"]:
        state = {k: v for k, v in load_backbone_weights(config["resnet_weights"]).items() if not k.startswith(HEAD)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(HEAD)]
        if missing or unexpected:
            raise ConfigError(f"resnet_weights={config['resnet_weights']!r}: not a ResNet18 state_dict "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        if config["freeze_backbone"]:
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith(HEAD))
    return model


def check_resnet(config: dict) -> None:
    if config["resnet_weights"] and config["init"] != "default":
        raise ConfigError(f"model=resnet18 with resnet_weights: init={config['init']!r} would overwrite the "
                          "pretrained weights; set init=default")
    weights = config["resnet_weights"]
    if weights and weights != "imagenet" and not Path(weights).expanduser().is_file():
        load_backbone_weights(weights)  # raises the "no such file" message before anything starts
    if config["freeze_backbone"] and not config["resnet_weights"]:
        raise ConfigError("freeze_backbone=true needs resnet_weights (a frozen random backbone learns nothing)")


register("resnet18", ModelSpec(build_resnet18, ("resnet_weights", "freeze_backbone"), "resnet18", check_resnet,
                               "torchvision ResNet18, new head; scratch or transfer (resnet_weights)"))
