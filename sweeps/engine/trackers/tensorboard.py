"""--log tensorboard: event files under <root>/tensorboard/<run name>/, through torch.utils.tensorboard."""
from __future__ import annotations

import os

from sweeps.engine.trackers.base import RunInfo, SweepInfo


class TensorBoardWriter:
    """<root>/tensorboard/<run name>/: scalars with step = epoch, and at the end the config, labels and
    status as hparams (the HParams view compares trials on the final values of the metric scalars)."""
    name = "tensorboard"
    library = "torch.utils.tensorboard"
    package = "tensorboard"
    METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epochs_completed")

    def __init__(self, sweep: SweepInfo):
        self.dir = os.path.join(sweep.root, "tensorboard")
        self.runs = {}

    @classmethod
    def check(cls) -> None:
        """Nothing beyond the package: it writes local files, and a full disk is a warning during the sweep."""

    def open(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.runs[run.trial_id] = (SummaryWriter(os.path.join(self.dir, run.name)), run)

    def log(self, trial_id: str, epoch: int, scalars: dict) -> None:
        writer, _ = self.runs[trial_id]
        for key, value in scalars.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()  # one flush an epoch: curves appear now, not after SummaryWriter's 2-minute timer

    def close(self, trial_id: str, status: str, final: dict) -> None:
        from torch.utils.tensorboard.summary import hparams
        writer, run = self.runs.pop(trial_id)
        if "epochs_completed" in final:
            writer.add_scalar("epochs_completed", final["epochs_completed"], int(final["epochs_completed"]))
        values = {**run.config, **run.labels, "status": status}
        # SummaryWriter.add_hparams would write into a new sub-run; these summaries go into the trial's own
        values = {k: str(v) if isinstance(v, bool) or not isinstance(v, (int, float, str)) else v
                  for k, v in values.items()}
        # the HParams tab reads each metric's final value from the run's scalars of that name: the zeros only list them
        for summary in hparams(values, {k: 0.0 for k in self.METRICS}):
            writer.file_writer.add_summary(summary)
        writer.close()

    def end(self) -> None:
        for trial_id in list(self.runs):
            self.close(trial_id, "stopped", {})
