"""The thin Ray Tune wrapper around `run_task`: checkpoints in, metrics and checkpoints out.

Trials get their data set as an object-store reference through
`tune.with_parameters`, so it is read from disk once per sweep, on the driver.
Nothing here depends on the trial's working directory.
"""
from __future__ import annotations

import os
import tempfile
import time

import torch
from ray import tune

from trainables.tasks import run_task

STATE_FILE = "state.pt"


def run_trial(trial: dict, specs: list[dict], datasets: dict, cpus_per_trial: float = 1.0) -> None:
    """Ray's function trainable. `trial["trial"]` indexes the runner's list of trial specs, whose
    `config` the runner's plan() has already resolved and validated."""
    torch.set_num_threads(max(1, int(cpus_per_trial)))  # share the node, not every core per trial
    where = placement()
    config = specs[trial["trial"]]["config"]
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=False)

    def report(metrics: dict, state: dict | None) -> None:
        metrics = {**metrics, **where, "reported_at": time.time()}
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    run_task(config, datasets[config["dataset"]], report, resume=resume)


def placement() -> dict:
    """Where this trial runs, reported with every result: the Ray node (several nodes can share an
    IP), the logical GPU ids Ray assigned, and when the trial (or its latest retry) started."""
    import ray
    return dict(node_id=ray.get_runtime_context().get_node_id(),
                gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()), trial_started=time.time())
