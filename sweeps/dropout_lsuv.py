"""Study 003 in training: dropout {0, 0.3, 0.5} and LSUV init on a slice of the study-000 depth grid.

Same protocol as sweeps/depth_grid.py (its `fixed` values are imported, not
copied): the study-000 CNN with BN, ReLU, Adam lr 1e-3, batch 64, 10 epochs.
The seed's He init (kaiming_normal_, fan_out, convs only) is the baseline;
LSUV (orthogonal, then each conv rescaled to unit output variance on
`init_batch` of the trial's own training images) is the data-dependent
alternative. Dropout sits before the classifier (`dropout_at="head"`); use
`--set dropout_at=all` to add it after every block's activation as well.
"""
from sweeps.depth_grid import SWEEP as DEPTH_GRID
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main

SCHEMES = dict(he_normal=dict(init="he_normal", init_mode="fan_out", init_targets="conv"),
               lsuv=dict(init="lsuv", init_targets="conv"))

SWEEP = Sweep(
    study="dropout_lsuv",
    description=__doc__,
    fixed=dict(DEPTH_GRID.fixed, activation="relu", dropout_at="head"),
    grid=cross(variants("scheme", **SCHEMES), axis("dropout", [0.0, 0.3, 0.5]), axis("depth", [5, 10])),
    smoke_grid=cross(variants("scheme", **SCHEMES), axis("dropout", [0.0, 0.5]), axis("depth", [2])),
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
