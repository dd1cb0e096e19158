"""Replays of a finished full-grid sweep through the sweep service's own schedulers (issue 23).

ASHA is asynchronous: a trial reaching a rung is compared with whatever its rivals recorded there so far, so
what one ASHA sweep stops depends on the order in which its trials happened to reach the rungs. One sweep is
one draw of that order. Because an ASHA trial follows its full-grid twin epoch for epoch (same config, seed
and split: benchmarks/search_efficiency.py checks it), the full grid's recorded trajectories let the real
scheduler, `sweeps.engine.search.make_scheduler(plan)` (Ray's ASHAScheduler, one per cell under
`--search-scope cell`), be run again on other orders without training anything:

  - trials start in the given order, `concurrency` at a time, each epoch lasting what it took in the full
    grid, and a finished or stopped trial's slot goes to the next;
  - each epoch's result goes to the scheduler, whose STOP ends the trial there, as Tune would;
  - the outcome is, per trial, the epochs it ran, so the replayed sweep's trials table (epochs_completed,
    final metric, status) is what that ASHA sweep would have recorded.

Replaying the order a real ASHA sweep ran in should give that sweep's figures back (the fidelity check);
replaying many random orders gives their spread. Nothing here trains, and every decision is Ray's.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace


@dataclass(frozen=True)
class Trajectory:
    """One full-grid trial, epoch by epoch: seconds, metric and val_loss per epoch (index 0 = epoch 1)."""
    seconds: tuple[float, ...]
    metric: tuple[float, ...]
    val_loss: tuple[float, ...]
    diverged: bool  # it ended itself at its last epoch (the trainable's divergence stop)


def trajectories(trials, epochs, metric: str) -> dict[int, Trajectory]:
    """{plan index: Trajectory} from a full-grid (FIFO) sweep's trials and epochs tables."""
    out = {}
    by_trial = {tid: rows.sort_values("epoch") for tid, rows in epochs.groupby("trial_id")}
    for row in trials.itertuples():
        rows = by_trial[row.trial_id]
        out[int(row.plan_index)] = Trajectory(tuple(rows["seconds"]), tuple(rows[metric]), tuple(rows["val_loss"]),
                                              row.status == "diverged")
    return out


def concurrency(trials) -> int:
    """How many trials of a sweep trained at once, at most: from each trial's start and training time."""
    events = sorted([(s, 1) for s in trials["trial_started"]]
                    + [(s + d, -1) for s, d in zip(trials["trial_started"], trials["train_seconds"])])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant (-1 < 1)
        running += step
        peak = max(peak, running)
    return max(1, peak)


def replay(scheduler, paths: dict[int, Trajectory], order, slots: int, metric: str,
           timeline: dict[int, tuple[float, tuple[float, ...]]] | None = None) -> dict[int, int]:
    """{plan index: epochs run} when the trials in `order` go through `scheduler`, `slots` at a time, each epoch
    as long as in `paths`. With `timeline` ({plan index: (start time, epoch seconds)}, e.g. a real ASHA sweep's
    own), every trial starts when the timeline says and its epochs last what it says (paths' where it says
    nothing), instead. The scheduler gets what Tune gives it: on_trial_add at the start, on_trial_result per
    epoch (training_iteration and the metric), on_trial_complete when a trial ends or is stopped."""
    from ray.tune.schedulers import TrialScheduler
    waiting, events, ran, seq = deque(order), [], {}, 0

    def push(when: float, index: int, epoch: int, trial=None):
        nonlocal seq
        heapq.heappush(events, (when, seq, index, epoch, trial))  # epoch 0: the trial starts
        seq += 1

    def seconds(index: int, epoch: int) -> float:
        own = timeline[index][1] if timeline and index in timeline else ()
        return own[epoch - 1] if epoch <= len(own) else paths[index].seconds[epoch - 1]

    if timeline:
        for index in waiting:
            push(timeline[index][0], index, 0)
        waiting.clear()
    while waiting and len(events) < slots:
        push(0.0, waiting.popleft(), 0)
    while events:
        clock, _, index, epoch, trial = heapq.heappop(events)
        if epoch == 0:
            trial = SimpleNamespace(trial_id=f"{index:05d}", config={"trial": index})
            scheduler.on_trial_add(None, trial)
            push(clock + seconds(index, 1), index, 1, trial)
            continue
        path = paths[index]
        result = {"training_iteration": epoch, metric: path.metric[epoch - 1]}
        action = scheduler.on_trial_result(None, trial, result)
        if action == TrialScheduler.STOP or epoch == len(path.seconds):
            scheduler.on_trial_complete(None, trial, result)
            ran[index] = epoch
            if waiting:
                push(clock, waiting.popleft(), 0)
        else:
            push(clock + seconds(index, epoch + 1), index, epoch + 1, trial)
    return ran


def timeline(trials, epochs) -> dict[int, tuple[float, tuple[float, ...]]]:
    """{plan index: (start, epoch seconds)} of a real sweep, to replay the order its trials reached the rungs."""
    seconds = {tid: tuple(rows.sort_values("epoch")["seconds"]) for tid, rows in epochs.groupby("trial_id")}
    return {int(row.plan_index): (float(row.trial_started), seconds.get(row.trial_id, ()))
            for row in trials.itertuples()}


def replayed_trials(fifo_trials, paths: dict[int, Trajectory], ran: dict[int, int], metric: str):
    """The trials table the replayed ASHA sweep would have written: each full-grid trial cut at its epochs."""
    rows = fifo_trials.copy()
    index = rows["plan_index"].astype(int)
    rows["epochs_completed"] = [ran[i] for i in index]
    rows[metric] = [paths[i].metric[ran[i] - 1] for i in index]
    rows["val_loss"] = [paths[i].val_loss[ran[i] - 1] for i in index]
    rows["status"] = ["diverged" if paths[i].diverged and ran[i] == len(paths[i].seconds)
                      else "early_stopped" if ran[i] < len(paths[i].seconds) else "completed" for i in index]
    return rows


def spread(values) -> str:
    """median [5th .. 95th percentile] of a list of numbers."""
    import numpy as np
    if not len(values):
        return "-"
    low, mid, high = np.percentile(values, [5, 50, 95])
    return f"{mid:.3f} [{low:.3f} .. {high:.3f}]"


def share(flags) -> str:
    flags = list(flags)
    return f"{100 * sum(flags) / len(flags):.1f}%" if flags else "-"
