"""Model families, inits, tasks and hooks own their config keys: a key the user sets that the trial does
not read is a ConfigError naming the key and what does read it; unused defaults stay fine."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainables.config import DEFAULTS, ConfigError, Resolved, resolve, used_keys
from trainables.data import make_synthetic
from trainables.hooks import HOOK_KEYS
from trainables.models import MODELS
from trainables.tasks import run_task
from trainables.train import train

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("overrides, expected", [
    (dict(model="vgg38", depth=7), ['depth=7', 'model="vgg38" does not read depth',
                                    "vgg family reads stages, blocks, bn, residual, width, activation"]),
    (dict(model="baseline4", width=16), ["width=16", 'model="baseline4" does not read width', "reads activation"]),
    (dict(model="deeper7", bn=False), ["bn=False", "does not read bn"]),
    (dict(model="resnet18", init="default", depth=3), ["depth=3", "resnet18 family reads resnet_weights"]),
    (dict(init_batch=128), ["init_batch=128", "read with task=probe or init=lsuv", "init='he_normal'"]),
    (dict(momentum=0.5), ["momentum=0.5", "optimizer=sgd", "optimizer='adam'"]),
    (dict(lr_min=1e-5), ["lr_min", "schedule=cosine"]),
    (dict(prelu_init=0.1), ["prelu_init", "activation=prelu"]),
    (dict(init="xavier_normal", init_mode="fan_out"), ["init_mode", "init=he_normal"]),
    (dict(init="he_normal", init_std=0.1), ["init_std", "init=normal"]),
    (dict(task="probe", epochs=3), ["epochs=3", "task=train", "task='probe'"]),
    (dict(task="probe", class_metrics="every"), ["class_metrics", "task=train"]),
    (dict(effective_beta=0.99), ["effective_beta", "class_weights=effective"]),
])
def test_a_set_key_the_trial_does_not_read_is_an_error(overrides, expected):
    with pytest.raises(ConfigError) as err:
        resolve(overrides)
    for text in expected:
        assert text in str(err.value), str(err.value)


@pytest.mark.parametrize("overrides", [
    dict(model="vgg38"),                                    # unused defaults (depth) are fine
    dict(model="cnn", depth=3, width=8, bn=False),
    dict(optimizer="sgd", momentum=0.5),
    dict(schedule="cosine", lr_min=1e-5),
    dict(activation="leaky_relu", act_slope=0.2),
    dict(init="he_normal", init_nonlinearity="leaky_relu", act_slope=0.2),  # the gain reads the slope
    dict(init="lsuv", init_batch=64, lsuv_tol=0.05),
    dict(task="probe", init_batch=64, probe_input="gaussian"),
    dict(class_weights="effective", effective_beta=0.99),
    dict(model="vgg38", bn=False),                          # a preset's own value, stated again
])
def test_keys_the_trial_reads_are_accepted(overrides):
    assert isinstance(resolve(overrides), Resolved)


def test_every_key_has_a_reader():
    """Each default is read by some model, init, task, hook or condition: no key is dead weight."""
    everything = set()
    for model in MODELS:
        for task in ("train", "probe"):
            for init in ("he_normal", "normal", "lsuv"):
                for extra in (dict(optimizer="sgd", schedule="cosine", class_weights="effective",
                                   activation="prelu"), dict(activation="leaky_relu")):
                    config = {**DEFAULTS, "model": model, "task": task, "init": init, **extra}
                    everything |= used_keys(config)
    assert set(DEFAULTS) - everything == set()
    assert set(HOOK_KEYS) <= everything


def test_resolve_once_and_direct_calls_still_validate():
    config = resolve(dict(depth=3))
    assert resolve(config) is config  # a resolved config passes through untouched
    data = make_synthetic(32, 16)
    with pytest.raises(ConfigError, match='unknown config key "dept"'):
        train(dict(dept=3), data)
    with pytest.raises(ConfigError, match="width=16"):
        run_task(dict(model="baseline4", width=16), data)
    with pytest.raises(ConfigError, match='task="probe"'):
        train(dict(task="probe"), data)


@pytest.mark.parametrize("sweep, flags, expected", [
    ("vgg_depth.py", ["--set", "depth=7"], ["depth=7", "vgg family reads", "stages", "blocks"]),
    ("depth_grid.py", ["--set", "model=baseline4", "--set", "width=16"], ["width=16", 'model="baseline4"']),
])
def test_sweep_cli_rejects_a_key_the_family_does_not_read(sweep, flags, expected):
    done = subprocess.run([sys.executable, f"sweeps/{sweep}", "--dry-run", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
