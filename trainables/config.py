"""The checks every config passes before anything runs, against the one table of defaults
(trainables/defaults.py).

A key that is not in DEFAULTS, a value of the wrong type, a name that no registry knows or a number out of
range raises ConfigError with a message that names the key and, for names, the closest valid choice.
"""
from __future__ import annotations

from trainables import activations, data, hooks, inits, models
from trainables.defaults import (  # noqa: F401 (re-exported: the one table and its torch-free checks)
    CHOICES, DEFAULTS, NON_NEGATIVE, POSITIVE, PROBABILITY, _check_value, check_keys, coerce)
from trainables.errors import ConfigError, suggest

def registry_choices() -> dict[str, tuple]:
    return dict(dataset=tuple(data.DATASETS), model=tuple(models.MODELS),
                activation=tuple(activations.ACTIVATIONS), init=tuple(inits.INITS))


def apply_preset(config: dict, overrides: dict) -> None:
    """Copy a named model's preset keys (e.g. model=vgg38 -> stages=3, blocks=5, bn=False) into `config`.

    The name means exactly that architecture, so an explicit override that contradicts
    it is a mistake, not a tweak; the generic family name takes such keys instead.
    """
    spec = models.MODELS.get(config["model"])
    if spec is None or not spec.preset:
        return  # an unknown model name is reported with the other registry checks
    for key, value in spec.preset.items():
        if key in overrides and config[key] != value:
            raise ConfigError(f'{key}={config[key]!r} contradicts model="{config["model"]}", which fixes '
                              f"{key}={value!r}; use the generic family (e.g. model=vgg) with explicit keys")
    config.update(spec.preset)


class Resolved(dict):
    """A config that resolve() has completed and validated. resolve() hands it back unchanged, so a
    trial's config is resolved once (in the runner's plan()) however many layers pass it on."""


def resolve(overrides: dict) -> Resolved:
    """DEFAULTS updated with `overrides`, type-coerced and fully validated.

    Every key in `overrides` counts as set by the user: one that the trial's model,
    init, task or hooks do not read is a ConfigError (see `used_keys` and `unused_message`).
    """
    if isinstance(overrides, Resolved):
        return overrides
    check_keys(overrides)
    config = dict(DEFAULTS)
    config.update({k: coerce(k, v) for k, v in overrides.items()})
    apply_preset(config, overrides)
    choices = {**CHOICES, **registry_choices()}
    for key, value in config.items():
        _check_value(key, value, choices)
    check_imbalance(config)
    spec = models.MODELS[config["model"]]
    if config["dropout"] > 0 and not spec.dropout:
        with_dropout = sorted(name for name, s in models.MODELS.items() if s.dropout)
        raise ConfigError(f'dropout={config["dropout"]}: model="{config["model"]}" has no dropout layers '
                          f"(models with dropout: {', '.join(with_dropout)})")
    spec.check(config)
    unused = [key for key in overrides if key not in used_keys(config)]
    if unused:
        raise ConfigError(unused_message(unused[0], config))
    return Resolved(config)


# --- which keys a trial reads ---------------------------------------------------------------------
# Each registry declares the keys its parts read (ModelSpec.keys, inits.INIT_KEYS,
# activations.ACTIVATION_KEYS, hooks.HOOKS); the tasks and the keys that only matter under
# another key's value are declared here. A key the user sets that none of them reads for
# this trial is an error: `--set depth=7` on a VGG does nothing, and the user should know.

EVERY_TRIAL = ("task", "model", "init", "init_targets", "init_bias", "dataset", "seed", "device",
               "train_subset", "test_subset", "val_size", "split_seed", "imbalance_ratio", "folds", "fold")
TASK_KEYS = {
    "train": ("optimizer", "lr", "lr_scale", "weight_decay", "schedule", "epochs", "batch_size", "augment",
              "class_weights", "checkpoint_every", "grad_stats", "diagnostics", "precision", "memory_format", "compile",
              *hooks.HOOK_KEYS),
    "probe": ("probe_input", "init_batch"),
}
CONDITIONAL = {  # (key, value) -> keys read only while that key, itself read, has that value
    ("optimizer", "sgd"): ("momentum",),
    ("schedule", "cosine"): ("lr_min",),
    ("class_weights", "effective"): ("effective_beta",),
    ("init_nonlinearity", "leaky_relu"): ("act_slope",),
    **{("activation", name): keys for name, keys in activations.ACTIVATION_KEYS.items()},
}


def used_keys(config: dict) -> set[str]:
    """The keys this trial's model, init, task and hooks read, given its other values."""
    used = {*EVERY_TRIAL, *TASK_KEYS[config["task"]], *models.MODELS[config["model"]].keys,
            *inits.INIT_KEYS[config["init"]]}
    grown = True
    while grown:  # a conditional key can switch on another (init_nonlinearity -> act_slope)
        before = len(used)
        for (key, value), keys in CONDITIONAL.items():
            if key in used and config[key] == value:
                used.update(keys)
        grown = len(used) > before
    return used


def readers(key: str) -> list[str]:
    """Where `key` is read, as `name=value` conditions: ["model=cnn", "model=mlp", "task=train", ...]."""
    where = [f"model={name}" for name, spec in models.MODELS.items() if key in spec.keys and not spec.preset]
    where += [f"task={task}" for task, keys in TASK_KEYS.items() if key in keys]
    where += [f"init={init}" for init, keys in inits.INIT_KEYS.items() if key in keys]
    where += [f"{k}={v}" for (k, v), keys in CONDITIONAL.items() if key in keys]
    return where


def unused_message(key: str, config: dict) -> str:
    spec = models.MODELS[config["model"]]
    value = f"{key}={config[key]!r}"
    if any(key in s.keys for s in models.MODELS.values()):
        return (f'{value}: model="{config["model"]}" does not read {key}; the {spec.family} family reads '
                f"{', '.join(spec.keys)} ({key} is read by {', '.join(readers(key))})")
    conditions = sorted({r.split("=")[0] for r in readers(key)})
    here = ", ".join(f"{k}={config[k]!r}" for k in conditions)
    return f"{value}: this trial does not read {key}; it is read with {' or '.join(readers(key))} (here {here})"


def check_imbalance(config: dict) -> None:
    """Cross-key rules of the study-004 options (long tail, class weights, k-fold)."""
    if config["imbalance_ratio"] < 1:
        raise ConfigError(f"imbalance_ratio={config['imbalance_ratio']}: must be >= 1 (1 = balanced; "
                          "100 = the rarest class has 1/100 of the images of the most frequent)")
    if not 0 < config["effective_beta"] < 1:
        raise ConfigError(f"effective_beta={config['effective_beta']}: must be in (0, 1)")
    if config["folds"] == 1:
        raise ConfigError("folds=1: k-fold needs at least 2 folds (0 = no k-fold)")
    if config["folds"] and config["val_size"]:
        raise ConfigError(f"folds={config['folds']} and val_size={config['val_size']}: k-fold makes its own "
                          "validation split; set val_size=0")
    if config["fold"] and config["fold"] >= max(config["folds"], 1):
        raise ConfigError(f"fold={config['fold']}: must be in 0..{config['folds'] - 1}" if config["folds"]
                          else f"fold={config['fold']}: set folds=K (K >= 2) to use k-fold")
