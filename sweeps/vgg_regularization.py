"""Study 002 §5.2-5.3: VGG38 BN+residual under weight decay, larger learning rates, larger batches.

One factor at a time, as the study did, around its best model "VGG38 RN+WP"
(vgg38_res with weight decay 1e-3), not a cross product:

    weight_decay  {1e-2, 1e-3, 1e-4, 0}          (1e-3 is the shared baseline)
    lr_speedup    lr_scale x{5, 30, 100}          both ends of the cosine schedule
    batch         batch_size {256, 512}

The baseline (weight decay 1e-3, x1, batch 100) runs once, in the weight_decay
group; the report places it beside the learning-rate and batch groups too.
"""
from sweeps.engine.grid import Sweep, axis, union
from sweeps.engine.runner import main
from sweeps.vgg_protocol import PROTOCOL, SMOKE

SWEEP = Sweep(
    study="vgg_regularization",
    description=__doc__,
    fixed={**PROTOCOL, "model": "vgg38_res", "weight_decay": 1e-3},
    grid=union(
        weight_decay=axis("weight_decay", [1e-2, 1e-3, 1e-4, 0.0]),
        lr_speedup=axis("lr_scale", [5.0, 30.0, 100.0]),
        batch=axis("batch_size", [256, 512]),
    ),
    smoke_grid=union(
        weight_decay=axis("weight_decay", [1e-3]),
        lr_speedup=axis("lr_scale", [30.0]),
        batch=axis("batch_size", [256]),
    ),
    smoke=SMOKE,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
