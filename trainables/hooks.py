"""Per-epoch hooks: what particular studies add to the generic loop of trainables/train.py.

`train()` knows nothing of any study. Each hook below is switched on by its own
config keys (`applies`), declares them (`keys`, which trainables.config uses to
reject a key nothing reads) and joins the loop at fixed points:

    start(run)                 the model is built and initialised, training has not begun
    resume(state)              a checkpoint is being restored (the hook's own entries are in it)
    epoch_metrics(run, epoch, final) -> dict   extra entries of this epoch's metrics (final: last
                               epoch, or the run diverged and stops here)
    wants_checkpoint(epoch)    force a checkpoint at this epoch
    state() -> dict            entries the hook adds to every checkpoint
    reported(epoch)            the epoch's report is out

A new study adds a hook class here and to HOOKS; it does not add a branch to train().
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.classes import evaluate_classes
from trainables.data import Dataset, Normalizer


@dataclass
class Run:
    """What a hook may look at: the trial's resolved config, data, model and device splits."""
    config: dict
    data: Dataset
    model: torch.nn.Module
    splits: dict
    normalize: Normalizer
    train_counts: list[int]


class Hook:
    keys: tuple[str, ...] = ()

    def __init__(self, config: dict):
        self.config = config

    @staticmethod
    def applies(config: dict) -> bool:
        return False

    def start(self, run: Run) -> None:
        pass

    def resume(self, state: dict) -> None:
        pass

    def epoch_metrics(self, run: Run, epoch: int, final: bool) -> dict:
        return {}

    def wants_checkpoint(self, epoch: int) -> bool:
        return False

    def state(self) -> dict:
        return {}

    def reported(self, epoch: int) -> None:
        pass


class ClassMetrics(Hook):
    """Study 004: per-class metrics every epoch or the last one, and the confusion matrix once."""
    keys = ("class_metrics",)

    @staticmethod
    def applies(config):
        return config["class_metrics"] != "off"

    def epoch_metrics(self, run, epoch, final):
        if self.config["class_metrics"] == "final" and not final:
            return {}
        classes, confusion = evaluate_classes(run.model, run.splits, run.normalize, run.data.classes,
                                              run.train_counts)
        return dict(classes=classes, confusion=confusion) if final else dict(classes=classes)  # C x C: once


class InitSnapshot(Hook):
    """Study 004's kernel pictures: the weights at init ride along in every checkpoint, and the last
    epoch is always checkpointed, so analysis.kernels can draw kernels before and after training."""
    keys = ("weight_snapshots",)

    @staticmethod
    def applies(config):
        return config["weight_snapshots"]

    def start(self, run):
        self.init_model = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}

    def resume(self, state):
        self.init_model = state.get("init_model", self.init_model)

    def wants_checkpoint(self, epoch):
        return epoch == self.config["epochs"]

    def state(self):
        return dict(init_model=self.init_model)


class FailAt(Hook):
    """Fault injection for the retry tests: crash after reporting epoch `fail_at_epoch`. A retry resumed
    from that epoch's checkpoint starts after it, so it does not fail again."""
    keys = ("fail_at_epoch",)

    @staticmethod
    def applies(config):
        return config["fail_at_epoch"] > 0

    def reported(self, epoch):
        if epoch == self.config["fail_at_epoch"]:
            raise RuntimeError(f"fail_at_epoch={epoch}: injected failure")


HOOKS = (ClassMetrics, InitSnapshot, FailAt)
HOOK_KEYS = tuple(key for hook in HOOKS for key in hook.keys)


def hooks_for(config: dict) -> list[Hook]:
    return [hook(config) for hook in HOOKS if hook.applies(config)]
