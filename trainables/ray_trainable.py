"""The thin Ray Tune wrapper around `run_task`: checkpoints in, metrics and checkpoints out.

Trials get their data set as an object-store reference through
`tune.with_parameters`, so it is read from disk once per sweep, on the driver.
Nothing here depends on the trial's working directory.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import uuid

import torch
from ray import cloudpickle, tune

from trainables import environment
from trainables.fast import pick_device
from trainables.tasks import run_task

STATE_FILE = "state.pt"


# Finite, and below (above) anything a real trial reports. ASHA compares `metric < cutoff`, never true for
# NaN, and Optuna rejects NaN: a diverged trial reported as NaN would never be stopped and would stall
# the searcher, so schedulers and searchers see this value instead (Parquet keeps the real metrics).
WORST = {"max": -1e30, "min": 1e30}


_UNPICKLED: dict[str, object] = {}  # this worker process's OncePerWorker objects, oldest first
_KEEP = 4  # a reused worker may serve several sweeps or phases; older objects go


class OncePerWorker:
    """An object every trial gets through `tune.with_parameters`, unpickled once per worker process.

    Ray fetches and unpickles a with_parameters argument again at every trial start, even on a reused
    worker. For the runner's Plan that grows with the sweep (4 MB and about 0.2 s on 2 cores at 10,000
    trials: docs/benchmarks.md, "10,000 trials"). Wrapped, it travels as (key, bytes): a trial start
    copies the bytes and finds the key in this process's cache. Unpickling gives the object itself, so
    the trainable never sees the wrapper. Only for objects no trial changes."""

    def __init__(self, obj):
        self.key, self.obj = uuid.uuid4().hex, obj

    def __reduce__(self):
        return _unpickle_once, (self.key, cloudpickle.dumps(self.obj))


def _unpickle_once(key: str, payload: bytes):
    if key not in _UNPICKLED:
        while len(_UNPICKLED) >= _KEEP:
            _UNPICKLED.pop(next(iter(_UNPICKLED)))
        _UNPICKLED[key] = cloudpickle.loads(payload)
    return _UNPICKLED[key]


def objective(metrics: dict, search: dict) -> float:
    """The one number per epoch that schedulers and searchers see: the search metric, or WORST."""
    value = metrics.get(search["metric"], math.nan)
    if metrics.get("status") == "diverged" or not isinstance(value, (int, float)) or not math.isfinite(value):
        return WORST[search["mode"]]
    return float(value)


def run_trial(trial: dict, plan, datasets: dict, cpus_per_trial: float = 1.0, search: dict | None = None) -> None:
    """Ray's function trainable. `plan` is the runner's Plan (sweeps/results/plan.py, handed over, not
    imported: this layer knows nothing of sweeps); `trial["trial"]` indexes its specs, whose config the
    planner has already resolved and validated, and `plan.for_trial(trial)` puts in force the values a
    searcher (Optuna) or PBT set in `trial` (plan.picked_keys). `search` holds the metric and mode of
    `objective`."""
    torch.set_num_threads(max(1, int(cpus_per_trial)))  # share the node, not every core per trial
    search = search or dict(metric="test_acc", mode="max")
    where = placement()
    config = plan.for_trial(trial).config
    picked_keys = plan.picked_keys
    env = environment.collect()
    where.update(env_id=env["env_id"], torch_version=env["torch"],
                 device_name=environment.device_name(env, pick_device(config).type))
    # The whole record, with the first result only: the Recorder files each env_id it has not seen in sweep.json
    first = {"environment": json.dumps(env)}
    me = tune.get_context().get_trial_id()
    resume, lineage = None, {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=False)
        if resume.get("trial_id", me) != me:  # PBT's exploit: another trial's checkpoint, new hyperparameters
            lineage = dict(continued_from=resume["trial_id"], continued_from_epoch=int(resume["epoch"]))

    def report(metrics: dict, state: dict | None) -> None:
        in_force = {k: config[k] for k in picked_keys if k not in metrics}
        metrics = {**metrics, **in_force, **where, **lineage, **first, "reported_at": time.time(),
                   "objective": objective(metrics, search)}
        lineage.clear()  # only the first epoch after an exploit carries it
        first.clear()
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save({**state, "trial_id": me}, os.path.join(folder, STATE_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    run_task(config, datasets[config["dataset"]], report, resume=resume)


def placement() -> dict:
    """Where this trial runs, reported with every result: the Ray node (several nodes can share an
    IP), the logical GPU ids Ray assigned, and when the trial (or its latest retry) started.
    run_trial adds what the worker computes with (trainables/environment.py)."""
    import ray
    return dict(node_id=ray.get_runtime_context().get_node_id(),
                gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()), trial_started=time.time())


def exit_quietly_when_killed() -> None:
    """Ray's `worker_process_setup_hook` for trial workers. Ray answers a SIGTERM (a stopped trial, the end of
    the sweep) by raising SystemExit wherever the worker's main thread is. When that is inside a garbage
    collector callback, Python cannot raise it and prints "Exception ignored in ..." with a traceback, which
    Ray forwards to the sweep's console. The worker was told to stop, so it stops, without the noise; every
    other unraisable exception is printed as before."""
    default = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, SystemExit):
            sys.stdout.flush()
            sys.stderr.flush()
            code = unraisable.exc_value.code
            os._exit(code if isinstance(code, int) else 1)
        default(unraisable)

    sys.unraisablehook = hook
