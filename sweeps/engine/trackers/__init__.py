"""Live curves in TensorBoard, MLflow and W&B (`--log NAME`), from the results the Recorder writes to Parquet.

    results (once per epoch) -> Recorder (Parquet, decides the status) -> TrackerCallback -> Writer per tracker
    Parquet after the fact   -> replay() (python -m analysis.export)   ----------------->  the same Writers

    base.py         the Writer protocol, SweepInfo/RunInfo, run names, epoch scalars and final metrics
    tensorboard.py  mlflow.py  wandb.py   one Writer each, with the checks only that tracker needs
    callback.py     the Tune callback that feeds the writers live (the only module here that imports Ray)
    replay.py       the same runs from a finished sweep's Parquet (Ray-free, for analysis.export)
    this file       the registry, and the --log checks that run before Ray starts

A new tracker is one file here with a class that implements Writer, plus one line in WRITERS. Writer
classes are looked up by name when a tracker is asked for, so importing this package (as the runner's flag
checks and analysis.export do) loads neither Ray, torch nor any tracker library.

Each writer module is named after its --log name, even where that is also the library's name
(mlflow.py, wandb.py, tensorboard.py): the registry, the flag and the file then read the same, and it is
safe because Python 3 imports are absolute, so `import mlflow` inside sweeps/engine/trackers/mlflow.py
loads the real MLflow (tests/engine/test_trackers.py checks it). Run these files only as modules of the package,
never as scripts, which would put this folder first on sys.path.

Why not Ray's own integrations (ray.air.integrations.mlflow / .wandb, Tune's TBX logger): a trial's Ray
config is only an index into the runner's specs (trainables/ray_trainable.py), so they would log
`trial=3` instead of the resolved config; they name runs `run_trial_xxxxx_00003`, cannot nest MLflow runs
under a sweep, and skip the per-layer `layers` list. So each Writer is a few calls of the library's own
API (torch.utils.tensorboard, MlflowClient, wandb), and one tune.Callback feeds them all.

A trial's run is named by what tells it apart from the sweep's other trials (run_name), the same live and
exported. The Recorder decides each trial's status (sweeps.engine.recorder.outcome); the callback sits after it in
the callbacks list and reads that trial row back, so every tracker shows the status Parquet holds.

A tracker that fails (a server down, a package broken at run time) prints one warning and is off for the
rest of the sweep; the sweep and its Parquet go on. A missing package is a ConfigError before Ray starts.
"""
from __future__ import annotations

import importlib

from sweeps.engine.trackers.base import (EPOCH_SCALARS, FINAL_METRICS, INSTALL, LAYER_SCALARS, RunInfo, SweepInfo,
                                         Writer, epoch_scalars, final_metrics, local_root, missing, name_keys,
                                         number, run_info, run_name, sweep_info)
from sweeps.results.store import Store
from trainables.errors import ConfigError, suggest

__all__ = ["EPOCH_SCALARS", "FINAL_METRICS", "INSTALL", "LAYER_SCALARS", "RunInfo", "SweepInfo", "WRITERS",
           "Writer", "check", "check_resume", "epoch_scalars", "final_metrics", "local_root", "missing",
           "name_keys", "number", "run_info", "run_name", "sweep_info", "writer_class"]

# --log name -> "module:Class" in this package, imported only when that tracker is asked for
WRITERS = {
    "tensorboard": "tensorboard:TensorBoardWriter",
    "mlflow": "mlflow:MLflowWriter",
    "wandb": "wandb:WandbWriter",
}


def writer_class(name: str) -> type[Writer]:
    module, _, cls = WRITERS[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


# --- checks before Ray starts ------------------------------------------------------------------

def check(names: list[str]) -> list[str]:
    """The --log names, deduplicated; ConfigError for an unknown name, a missing package, or a tracker
    that cannot run here (see each Writer's check: W&B without a login, MLflow's store)."""
    names = list(dict.fromkeys(n.strip().lower() for n in names))
    for name in names:
        if name not in WRITERS:
            raise ConfigError(f"--log {name}: not a tracker{suggest(name, WRITERS)}")
        writer = writer_class(name)
        try:
            importlib.import_module(writer.library)
        except ImportError as exc:
            raise ConfigError(f"--log {name}: the {writer.package} package is missing ({exc}); "
                              f"install the trackers with: {INSTALL}") from None
    for name in names:  # only once every package imports: one `pip install` line fixes them all
        writer_class(name).check()
    return names


def check_resume(store: Store, names: list[str]) -> None:
    """Tuner.restore brings back the first run's callbacks as they were pickled: --log cannot change."""
    try:
        before = store.read_json("sweep.json").get("log", [])
    except (OSError, ValueError):
        return  # check_resume already stopped a sweep without a readable sweep.json
    if sorted(before) != sorted(names):
        first = " ".join(f"--log {n}" for n in before) or "no --log"
        raise ConfigError(f"--resume: a resumed sweep keeps the first run's trackers ({first}; Ray restores its "
                          "callbacks as they were); pass the same --log flags")
