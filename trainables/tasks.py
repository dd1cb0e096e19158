"""What a trial does, chosen by its `task` key: train a network, or probe one at init.

The Ray trainable (trainables/ray_trainable.py), the benchmarks and the tests all
start a trial through `run_task`; each task has the signature
`(config, data, report=None, resume=None) -> summary dict`.
"""
from __future__ import annotations

from typing import Optional

from trainables.config import CHOICES, resolve
from trainables.data import Dataset
from trainables.probe import probe
from trainables.train import Report, train

TASKS = {"train": train, "probe": probe}
assert set(TASKS) == set(CHOICES["task"]), "trainables.config.CHOICES['task'] must list the TASKS"


def run_task(config: dict, data: Dataset, report: Optional[Report] = None, resume: Optional[dict] = None) -> dict:
    config = resolve(config)
    return TASKS[config["task"]](config, data, report, resume)
