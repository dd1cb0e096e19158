"""The after-the-fact side of --log: a finished sweep's Parquet written through a Writer, as the live callback
would have (python -m analysis.export). Ray-free."""
from __future__ import annotations

from sweeps.engine.trackers.base import SweepInfo, Writer, epoch_scalars, final_metrics, run_info
from sweeps.results.store import EPOCH_COLUMNS, PHASE
from trainables.defaults import DEFAULTS


def replay(writer: Writer, sweep: SweepInfo, trials, epochs, layers) -> int:
    """Write every trial of the tables through `writer`, as the live callback would have; returns the count."""
    extra = [c for c in epochs.columns if c not in (*EPOCH_COLUMNS, PHASE)]  # hyperparameters in force (PBT, Optuna)
    by_epoch = {key: group.to_dict("records") for key, group in layers.groupby(["trial_id", "epoch"])} \
        if len(layers) else {}
    label_keys = [k for k in sweep.labels if k in trials.columns]
    count = 0
    for row in trials.sort_values("trial_id").to_dict("records"):
        trial_id = row["trial_id"]
        config = {k: row[k] for k in DEFAULTS if k in row}
        labels = {k: row[k] for k in label_keys}
        writer.open(run_info(sweep, trial_id, config, labels, str(row.get("code_version", ""))))
        mine = epochs[epochs["trial_id"] == trial_id].sort_values("epoch") if len(epochs) else epochs
        for erow in mine.to_dict("records"):
            epoch = int(erow["epoch"])
            writer.log(trial_id, epoch, epoch_scalars(erow, by_epoch.get((trial_id, epoch), []), extra))
        writer.close(trial_id, str(row["status"]), final_metrics(row))
        count += 1
    writer.end()
    return count
