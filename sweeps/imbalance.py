"""Study 004: imbalanced classification: model x class-weighted loss x imbalance ratio.

The source trained a 4-conv baseline, a deeper 7-conv net with Xavier init and a
pretrained ResNet18 on an imbalanced 200-identity face set, with cross-entropy
weighted by 1/n_class, and judged them by per-class metrics. That set is not
public; a long-tailed CIFAR-10 (n_c = n_max * rho^(-c/9)) stands in, and rho = 1
(balanced) is the control. The test set stays balanced.

Protocol here: Adam, batch 64, lr 1e-3 (the source's 1e-4 learns too little in
the few epochs a CPU run affords), crop + flip. Per-class metrics every epoch;
the last checkpoint carries the weights at init for the kernel pictures.
ResNet18 trains from scratch unless a weights file is given:
    --set resnet_weights=/path/resnet18.pth [--set freeze_backbone=true]
K-fold (the source used it to pick its model): add
    --set folds=5 --grid fold=0,1,2,3,4
"""
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main

MODELS = variants(
    "net",
    baseline=dict(model="baseline4", init="default"),
    deeper=dict(model="deeper7", init="xavier_normal", init_targets="all"),
    resnet18=dict(model="resnet18", init="default"),
)

SWEEP = Sweep(
    study="imbalance",
    description=__doc__,
    fixed=dict(dataset="cifar10", optimizer="adam", lr=1e-3, batch_size=64, epochs=10, augment=True,
               class_metrics="every", weight_snapshots=True),
    grid=cross(MODELS, axis("class_weights", ["none", "inverse"]), axis("imbalance_ratio", [1.0, 100.0])),
    smoke_grid=cross(MODELS, axis("class_weights", ["none", "inverse"]), axis("imbalance_ratio", [100.0])),
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
