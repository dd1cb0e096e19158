"""--log wandb: one W&B run per trial, grouped by sweep.

`import wandb` below reaches the real library, not this module: imports are absolute in Python 3, and
this file is only ever imported as sweeps.engine.trackers.wandb.
"""
from __future__ import annotations

import netrc
import os
import sys
from urllib.parse import urlparse

from sweeps.engine.trackers.base import RunInfo, SweepInfo
from trainables.errors import ConfigError

WANDB_PROJECT = "cnn-sweeps"


def logged_in() -> bool:
    """Whether W&B can start a run without asking: offline or disabled, a key or token, or a ~/.netrc entry."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or \
            os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true"):
        return True
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbWriter:
    """One W&B run per trial in the group <sweep>, project WANDB_PROJECT (default cnn-sweeps), entity
    WANDB_ENTITY; W&B itself honours WANDB_MODE=offline (runs under <root>/wandb/, `wandb sync` later)."""
    name = "wandb"
    library = "wandb"
    package = "wandb"

    def __init__(self, sweep: SweepInfo):
        self.sweep, self.runs = sweep, {}

    @classmethod
    def check(cls) -> None:
        if not logged_in():
            # Online W&B without a key would stop at a login prompt inside the sweep's driver loop.
            raise ConfigError("--log wandb: no W&B login (WANDB_API_KEY or ~/.netrc); run `wandb login`, "
                              "or set WANDB_MODE=offline and `wandb sync` later")

    def open(self, run: RunInfo) -> None:
        import wandb
        os.makedirs(self.sweep.root, exist_ok=True)
        settings = wandb.Settings(console="off", silent=True, save_code=False, disable_git=True,
                                  x_disable_stats=True,  # no system-metrics sampler per trial on the driver
                                  init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 20)))
        self.runs[run.trial_id] = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or WANDB_PROJECT, entity=os.environ.get("WANDB_ENTITY"),
            group=self.sweep.name, job_type="trial", name=run.name, id=f"{run.trial_id}-{self.sweep.key}",
            config={**run.config, **run.labels}, tags=[self.sweep.study] if self.sweep.study else None,
            dir=self.sweep.root, reinit="create_new", resume="allow", settings=settings)
        self.runs[run.trial_id].summary.update({**run.tags, "status": "running"})

    def log(self, trial_id: str, epoch: int, scalars: dict) -> None:
        self.runs[trial_id].log({**scalars, "epoch": epoch}, step=epoch)

    def close(self, trial_id: str, status: str, final: dict) -> None:
        run = self.runs.pop(trial_id)
        run.summary.update({**final, "status": status})
        run.tags = tuple(run.tags or ()) + (status,)
        run.finish(exit_code=1 if status == "error" else 0)

    def end(self) -> None:
        for trial_id in list(self.runs):
            self.close(trial_id, "stopped", {})
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()  # stop W&B's background service with the sweep
