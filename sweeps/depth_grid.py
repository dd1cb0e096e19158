"""Study 000: He initialisation x activation x depth (He et al. 2015, as replicated in the seed notebook).

Protocol: CIFAR-10, crop (pad 4) + flip, per-channel normalisation, Adam lr 1e-3,
batch 64, 10 epochs, the study-000 CNN with 32 filters. The seed re-drew only
the conv weights for He (kaiming_normal_, fan_out, gain sqrt 2) but both the conv
and the final linear weights for its N(0, 1) baseline; the variants keep that.
"""
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main

SWEEP = Sweep(
    study="depth_grid",
    description=__doc__,
    fixed=dict(dataset="cifar10", model="cnn", width=32, optimizer="adam", lr=1e-3,
               batch_size=64, epochs=10, augment=True),
    grid=cross(
        variants("init",
                 he_normal=dict(init="he_normal", init_mode="fan_out", init_targets="conv"),
                 normal=dict(init="normal", init_std=1.0, init_targets="all")),
        axis("activation", ["relu", "prelu"]),
        axis("depth", [2, 5, 10, 12]),
    ),
    smoke_grid=cross(
        variants("init",
                 he_normal=dict(init="he_normal", init_mode="fan_out", init_targets="conv"),
                 normal=dict(init="normal", init_std=1.0, init_targets="all")),
        axis("activation", ["relu"]),
        axis("depth", [2, 5]),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
