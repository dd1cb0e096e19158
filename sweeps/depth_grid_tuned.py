"""Study 000, tuned: does He init still beat N(0, 1) when every arm gets its own tuned learning rate?

Study 000 (sweeps/depth_grid.py) trains every cell at the seed's Adam lr 1e-3. A deep net with a bad init
may just need another lr, so "He beats N(0, 1)" there means "at lr 1e-3". Here each cell of the same grid
(init x activation x depth, the seed's He and N(0, 1) variants) searches lr over 1e-5 .. 1e-1 (log-uniform,
`--samples` draws per cell, the same draws in every cell) under one ASHA per cell, on an equal budget;
then each cell's winner, picked on a held-out validation split, trains again on 3 seeds that no search
trial used (`--confirm 3`), and the report compares the arms on those runs' test accuracy, paired by seed.

`--search optuna --trials N` searches each cell with its own TPE study instead of random draws.
The validation split is 5,000 of the 50,000 training images (the source study had none: it reported
the test accuracy of its one lr, so nothing was picked on it).
"""
from sweeps.depth_grid import SWEEP as STUDY_000
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.runner import main
from sweeps.engine.space import loguniform

INITS = variants("init",
                 he_normal=dict(init="he_normal", init_mode="fan_out", init_targets="conv"),
                 normal=dict(init="normal", init_std=1.0, init_targets="all"))
LR = loguniform("lr", 1e-5, 1e-1)

SWEEP = Sweep(
    study="depth_grid_tuned",
    description=__doc__,
    fixed={**STUDY_000.fixed, "val_size": 5000},
    grid=cross(INITS, axis("activation", ["relu", "prelu"]), axis("depth", [2, 5, 10, 12]), LR),
    # --smoke: the question the README asks, He vs N(0, 1) at depth 10 and 12, on a few hundred images
    smoke_grid=cross(INITS, axis("activation", ["relu"]), axis("depth", [10, 12]), LR),
    smoke=dict(epochs=3, train_subset=1000, test_subset=500, val_size=200, width=16),
    flags=dict(scheduler="asha", search_scope="cell", samples=8, constant_draws=True, confirm=3),
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
