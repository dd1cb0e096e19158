"""The one table of defaults: every config key, its default, and why it has that default.

A trial's config is a flat dict. A search-space file states only what its study changes; everything else
comes from DEFAULTS. This module imports nothing that is slow to load (no torch), so a sweep file's
flags, its grid and the results readers can name keys without paying for PyTorch; the checks of values
against the registries live in trainables.config.
"""
from __future__ import annotations

import math

from trainables.errors import ConfigError, suggest

DEFAULTS: dict = dict(
    # --- data ---
    dataset="cifar10",        # cifar10 | cifar100 | synthetic (random images, CIFAR shapes)
    train_subset=0,           # use only the first N training images (0 = all); for smoke runs
    test_subset=0,            # likewise for the test set
    val_size=0,               # images held out of train for validation, stratified by class
    split_seed=0,             # fixed apart from `seed`, so every trial sees the same split
    augment=True,             # random crop (pad 4) + horizontal flip, batched on the trial's device
    # --- model ---
    model="cnn",              # a name from trainables.models.MODELS
    depth=5,                  # cnn: number of conv layers (first conv + depth-1 blocks)
    width=32,                 # filters per conv
    bn=True,                  # cnn: BatchNorm in the blocks after the first conv
    activation="relu",        # a name from trainables.activations.ACTIVATIONS
    act_slope=0.01,           # leaky_relu negative slope
    prelu_init=0.25,          # PReLU's initial slope (PyTorch's default)
    prelu_shared=True,        # one PReLU slope per layer (the seed's choice) or one per channel
    # --- initialisation (applied after building; see trainables.inits) ---
    init="he_normal",         # a name from trainables.inits.INITS
    init_mode="fan_in",       # he_*: fan_in keeps forward variance, fan_out backward variance
    init_nonlinearity="auto", # gain: auto = relu (sqrt 2) for he_*, linear (1) for xavier_*/orthogonal
    init_std=1.0,             # std for init="normal"; the seed's baseline is N(0, 1)
    init_targets="conv",      # which weights the scheme touches: conv | linear | all
    # --- optimisation ---
    optimizer="adam",         # adam | sgd
    lr=1e-3,
    momentum=0.9,             # sgd only
    weight_decay=0.0,         # L2 term added to the gradient (Adam's classic weight_decay)
    schedule="constant",      # constant | cosine (annealed per epoch to lr_min)
    lr_min=0.0,
    epochs=10,
    batch_size=64,
    seed=0,
    # --- execution ---
    device="auto",            # auto (cuda when the trial was given a GPU) | cpu | cuda
    checkpoint_every=0,       # save model+optimizer+RNG every N epochs (0 = never)
    grad_stats=True,          # per-layer mean |grad| each step; costs a few small kernels
    diagnostics=True,         # per-layer update_ratio and dead_fraction once per epoch: one evaluation-mode
                              # forward of 256 training images (0.13 s at depth 5 on the 2-core CPU)
    # --- fast trial path (trainables/fast.py) ---
    precision="auto",         # auto = bf16 autocast on CUDA, fp32 on CPU | fp32 | bf16 (forward only; weights stay fp32)
    memory_format="auto",     # auto = channels_last (faster on CUDA and CPU, see fast.py) | channels_last | contiguous
    compile=False,            # torch.compile the training step; pays off only when Ray reuses workers
                              # (the runner's default), since compiled models are cached per process by architecture
    fail_at_epoch=0,          # fault injection for tests: raise after reporting this epoch (0 = never).
                              # A retry resumed from a checkpoint taken at that epoch does not fail again.
    # --- study 002: the VGG family (trainables/models/vgg.py; `bn`, `width`, `activation` apply too) ---
    stages=3,                 # vgg: stages, each ending in a reduction block that halves the map (<= 5)
    blocks=5,                 # vgg: processing blocks (conv, act, conv, act) per stage; 3 x 5 = VGG38
    residual=False,           # vgg: identity skip around each processing block, added before its last act
    lr_scale=1.0,             # multiplies lr AND lr_min: the study's "LR speed-up" of both cosine ends
    # --- study 003: signal propagation at init, dropout, LSUV ---
    task="train",             # train | probe: measure per-layer variances of one forward/backward pass at init,
                              # train nothing (trainables/probe.py); its rows are reported as epoch 1
    init_batch=256,           # images that task=probe measures on and that data-dependent inits (lsuv) fit to
    probe_input="data",       # data (normalised training images) | gaussian (N(0, I) of the same shape, as
                              # the variance derivations assume)
    init_bias="default",      # default (PyTorch's) | zero: biases of the targeted layers set to 0, as the
                              # He/Xavier derivations assume (a default bias puts a floor under a decaying variance)
    lsuv_tol=0.02,            # lsuv: stop rescaling a layer once |Var(its output) - 1| <= tol
    lsuv_max_iter=10,         # lsuv: at most this many rescalings per layer
    dropout=0.0,              # inverted-dropout drop probability in [0, 1) (0 = no dropout layers)
    dropout_at="head",        # head: before the classifier | blocks: after every hidden activation | all: both
    # --- class imbalance, per-class evaluation, k-fold, transfer (study 004) ---
    imbalance_ratio=1.0,      # rho of the long-tailed training set n_c = n_max * rho^(-c/(C-1)); 1 = keep
                              # the set as it is. The default stays 1 so every other study trains balanced;
                              # study 004's sweep sets 100 (its data set's stand-in). Test set never changes.
    class_weights="none",     # training-loss weights per class: none | inverse (1/n_c, the study's choice) |
                              # effective (Cui et al. 2019, (1-beta)/(1-beta^n_c)); normalised to mean 1
    effective_beta=0.999,     # beta of the effective-number weights (Cui et al. use 0.9 .. 0.9999)
    folds=0,                  # K stratified folds of the (long-tailed) training set; 0 = no k-fold
    fold=0,                   # with folds=K: validate on part `fold` (0..K-1) and train on the rest
    class_metrics="final",    # per-class metrics + confusion matrix: final epoch | every epoch | off
    weight_snapshots=False,   # checkpoint the last epoch too, carrying the weights at init ("init_model"),
                              # so analysis.kernels can draw kernels before and after training
    resnet_weights="",        # resnet18: "" = from scratch, a local state_dict file, or "imagenet" (download)
    freeze_backbone=False,    # resnet18 with weights: train only the new head
)


def check_keys(keys, where: str = "config") -> None:
    for key in keys:
        if key not in DEFAULTS:
            raise ConfigError(f'unknown {where} key "{key}"{suggest(key, DEFAULTS)}')


CHOICES: dict[str, tuple] = dict(
    init_mode=("fan_in", "fan_out"),
    init_nonlinearity=("auto", "relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu"),
    init_targets=("conv", "linear", "all"),
    optimizer=("adam", "sgd"),
    schedule=("constant", "cosine"),
    device=("auto", "cpu", "cuda"),
    class_weights=("none", "inverse", "effective"),
    class_metrics=("final", "every", "off"),
    precision=("auto", "fp32", "bf16"),
    memory_format=("auto", "channels_last", "contiguous"),
)

POSITIVE = ("depth", "width", "epochs", "batch_size", "lr", "stages", "lr_scale")
NON_NEGATIVE = ("train_subset", "test_subset", "val_size", "split_seed", "momentum",
                "weight_decay", "lr_min", "checkpoint_every", "init_std", "prelu_init",
                "act_slope", "seed", "fail_at_epoch", "blocks", "folds", "fold")

# study 003 keys (see their block in DEFAULTS)
CHOICES.update(task=("train", "probe"), probe_input=("data", "gaussian"), init_bias=("default", "zero"),
               dropout_at=("head", "blocks", "all"))
POSITIVE += ("init_batch", "lsuv_tol", "lsuv_max_iter")
PROBABILITY = ("dropout",)  # in [0, 1): p = 1 would drop every unit and divide by zero


def coerce(key: str, value):
    """Convert `value` (possibly a command-line string) to the type of DEFAULTS[key]."""
    check_keys([key])
    default = DEFAULTS[key]
    want = type(default)
    if isinstance(value, str) and want is not str:
        text = value.strip()
        if want is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f'{key}={value!r}: expected true or false')
        try:
            return want(float(text)) if want is int and "e" in text.lower() else want(text)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected {want.__name__}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_value(key: str, value, choices: dict) -> None:
    want = type(DEFAULTS[key])
    ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {want.__name__}, got {type(value).__name__}")
    if key in choices and value not in choices[key]:
        raise ConfigError(f'{key}="{value}" is not a known {key}{suggest(value, choices[key])}')
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be a finite number")
    if key in POSITIVE and value <= 0:
        raise ConfigError(f"{key}={value!r}: must be > 0")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}={value!r}: must be >= 0")
    if key in PROBABILITY and not 0 <= value < 1:
        raise ConfigError(f"{key}={value!r}: must be in [0, 1) (a drop probability; 1 would drop every unit)")
