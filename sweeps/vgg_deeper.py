"""Study 002 §5.4: deeper BN+residual VGGs with the best weight decay (1e-3).

Stages x blocks 3x5 (VGG38 RN+WP), 3x10 (vgg68), 5x6 (vgg72) and 5x12 ("vgg106",
132 weight layers). The study compares training speed too: epochs.parquet holds
each epoch's iterations per second (`it_per_s`), which the report tabulates.
"""
from sweeps.engine.grid import Sweep, axis
from sweeps.engine.runner import main
from sweeps.vgg_protocol import PROTOCOL, SMOKE

SWEEP = Sweep(
    study="vgg_deeper",
    description=__doc__,
    fixed={**PROTOCOL, "weight_decay": 1e-3},
    grid=axis("model", ["vgg38_res", "vgg68", "vgg72", "vgg106"]),
    smoke_grid=axis("model", ["vgg38_res", "vgg72"]),
    smoke=SMOKE,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
