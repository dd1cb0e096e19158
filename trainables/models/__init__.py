"""Model families by name. Each family has one builder with parameters, never copies.

A family registers a ModelSpec (trainables/models/registry.py): `build(config,
num_classes)` returns an un-initialised nn.Module (trainables.inits applies the
scheme afterwards), `keys` lists the config keys the builder reads, and
`check(config)` raises ConfigError for combinations the builder cannot make.
Importing this package imports every family, which fills MODELS.
"""
from __future__ import annotations

# Each family registers itself; this order is the registry order (cnn first, the default).
from trainables.models import cnn, vgg, mlp, conv_stack, resnet  # noqa: F401,I001
from trainables.models.registry import MODELS, ModelSpec, build_model, count_params, register  # noqa: F401
