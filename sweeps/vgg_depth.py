"""Study 002 §5.1: a plain deep VGG stops learning; BatchNorm and residual connections fix it.

Five models on the study-002 protocol (sweeps/vgg_protocol.py): VGG08 and VGG38
(no BN inside the blocks), VGG38 with BN, VGG38 with BN + residual, and the same
with sigmoid in place of LeakyReLU. layers.parquet carries the per-layer mean
|grad| of every epoch: the gradient-flow figure of the report.
"""
from sweeps.engine.grid import Sweep, axis
from sweeps.engine.runner import main
from sweeps.vgg_protocol import PROTOCOL, SMOKE

SWEEP = Sweep(
    study="vgg_depth",
    description=__doc__,
    fixed=PROTOCOL,
    grid=axis("model", ["vgg08", "vgg38", "vgg38_bn", "vgg38_res", "vgg38_res_sigmoid"]),
    smoke_grid=axis("model", ["vgg08", "vgg38_res"]),
    smoke=SMOKE,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
