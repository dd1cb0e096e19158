"""Study 003: signal propagation at init. Trains nothing (task=probe); seconds per trial.

For every init x activation x architecture, one forward and one backward pass
of a depth-50 network on one batch record, per weight layer, the variance of
the pre-activations, of the post-activations, and of the gradients w.r.t. the
layer's input and weights (layers.parquet, see trainables/probe.py). The MLP
(width 256) sees N(0, I) inputs, as in the seed's derivations; the study-000
CNN without BN sees real normalised CIFAR images. Every scheme touches every
weight layer and zeroes the biases, so the closed-form per-layer factors apply
(He: 1, Xavier: 1/2, N(0,1): n/2 for ReLU). PReLU sits at its initial slope.
"""
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main

SCHEMES = dict(  # the label `scheme` (a trials column): `init` alone cannot tell he_fan_in from he_fan_out
    he_fan_in=dict(init="he_normal", init_mode="fan_in"),
    he_fan_out=dict(init="he_normal", init_mode="fan_out"),
    xavier=dict(init="xavier_normal"),
    normal_1=dict(init="normal", init_std=1.0),
    normal_0_01=dict(init="normal", init_std=0.01),
    orthogonal=dict(init="orthogonal"),
    lsuv=dict(init="lsuv"),
)
# Per-trial work stays tiny: 128 vectors through the MLP; 16 images through the CNN still give
# 16 x H x W samples per channel, and its full-resolution convs are the sweep's main cost.
ARCHS = dict(
    mlp=dict(model="mlp", width=256, probe_input="gaussian", init_batch=128),
    cnn=dict(model="cnn", width=32, bn=False, probe_input="data", init_batch=16),
)
ACTIVATIONS = ["relu", "prelu", "leaky_relu", "tanh", "sigmoid"]

SWEEP = Sweep(
    study="init_variance",
    description=__doc__,
    fixed=dict(task="probe", dataset="cifar10", init_targets="all", init_bias="zero"),
    grid=cross(variants("scheme", **SCHEMES), axis("activation", ACTIVATIONS), variants("arch", **ARCHS),
               axis("depth", [50])),
    smoke_grid=cross(variants("scheme", **{k: SCHEMES[k] for k in ("he_fan_in", "normal_1", "lsuv")}),
                     axis("activation", ["relu"]), variants("arch", **ARCHS), axis("depth", [10])),
    smoke=dict(train_subset=384, test_subset=256),  # no `epochs`: a probe trains nothing
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
