"""Study: the trainability window. For which learning rates does the study-000 CNN train, at each depth,
init and normalisation, under Adam and under SGD with momentum?

He et al.'s claim (study 000) is that He init lets deep ReLU nets train. The sharper question is for
which learning rates: a good init should keep a wide window of trainable learning rates as depth grows,
a bad one should narrow it until nothing trains. Grid: init {he_normal (fan_in, convs, as the seed
re-drew them), xavier_normal, normal(0, 1) on convs and the classifier (the seed's baseline)} x depth
{2, 5, 10, 20} x BatchNorm {on, off} x optimizer {adam, sgd + momentum 0.9}, with lr log-sampled over
1e-5 .. 3 (`--samples` draws per cell, the same draws in every cell so cells compare lr for lr).
Adam's bounded step hides much of the effect, hence SGD too.

ASHA stops hopeless trials by default (rungs at 1, 3, 9 epochs), one ASHA per cell, so a trial is ranked
only against the other lrs of its own cell (`--search-scope sweep`: against every trial of the sweep, which
counts a slow-starting deep cell out at the first rung); `--scheduler fifo` runs every trial to the end, and `--grid lr=1e-5,1e-4,...` makes lr a grid (benchmarks/search_efficiency.py compares
the two on the same cells). The metric is validation accuracy: 1,000 training images are held out.
At depth 20 the map reaches 1x1 after 5 pools (pooling follows every second block and stops at 1x1,
trainables/models/cnn.py), so the deepest blocks convolve a 1x1 map with 3x3 kernels, i.e. act as
1x1 convs; the report states it.
"""
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main
from sweeps.engine.space import loguniform

INITS = variants("init",
                 he_normal=dict(init="he_normal", init_mode="fan_in", init_targets="conv"),
                 xavier_normal=dict(init="xavier_normal", init_targets="conv"),
                 normal=dict(init="normal", init_std=1.0, init_targets="all"))
OPTIMIZERS = variants("opt", adam=dict(optimizer="adam"), sgd=dict(optimizer="sgd", momentum=0.9))
LR = loguniform("lr", 1e-5, 3.0)

SWEEP = Sweep(
    study="lr_window",
    description=__doc__,
    fixed=dict(dataset="cifar10", model="cnn", width=32, activation="relu", batch_size=64, epochs=10,
               augment=True, val_size=1000),
    grid=cross(INITS, axis("depth", [2, 5, 10, 20]), axis("bn", [True, False]), OPTIMIZERS, LR),
    # --smoke: He vs N(0, 1), shallow vs deep, no BN, SGD: the cells where the window moves most
    smoke_grid=cross(variants("init", he_normal=INITS.options[0][1], normal=INITS.options[2][1]),
                     axis("depth", [2, 10]), axis("bn", [False]),
                     variants("opt", sgd=dict(optimizer="sgd", momentum=0.9)), LR),
    smoke=dict(epochs=3, train_subset=1000, test_subset=500, val_size=200, width=16),
    flags=dict(scheduler="asha", samples=8, constant_draws=True, search_scope="cell"),
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
