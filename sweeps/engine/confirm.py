"""Confirmation on fresh seeds (`--confirm K`, issue 23): after the search, each grid cell's best
configuration trains again with K seeds that no search trial used, for its full planned epochs, under FIFO,
in the same sweep folder, its rows marked phase="confirm".

Why: the best of N noisy trials is biased upward (the winner's curse). The validation numbers that picked
the winner cannot also report it, and test numbers must not pick it at all. So the winner is picked on the
validation split only (search.confirm_settings refuses a sweep without one), and the tuned comparison
reports the confirm runs' test accuracy, with the search's best validation value beside it.

The selection is recorded in sweep.json ("confirmation") before the first confirm trial starts, so a
resumed sweep confirms exactly what was selected, and the report says how it was picked.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from sweeps.results.plan import Plan, TrialSpec
from sweeps.results.store import ENDED, PHASE, Store, plain

RULE = ("the trial with the best final {metric} (validation split) among the cell's search trials that trained "
        "the most epochs; a trial a scheduler stopped earlier is a candidate only where none went further (its "
        "value is from a shorter horizon); test metrics play no part")


def phase_rows(trials: pd.DataFrame, phase: str = "search") -> pd.DataFrame:
    """The trials rows of one phase (a table from before phases existed is all search)."""
    if not len(trials):
        return trials.assign(trial_id=[]) if "trial_id" not in trials.columns else trials
    if PHASE not in trials.columns:
        return trials if phase == "search" else trials.iloc[:0]
    return trials[trials[PHASE].fillna("search") == phase]


def search_ended(store: Store, plan: Plan) -> tuple[int, int]:
    """(search trials that ended, trials the search plans): the confirmation starts only when they are equal."""
    trials = store.read_table("trials")
    ended = int(phase_rows(trials)["status"].isin(ENDED).sum()) if len(trials) else 0
    return ended, int(plan.search["trials"])


def select(trials: pd.DataFrame, plan: Plan) -> dict:
    """sweep.json's "confirmation": each cell's winner by RULE, with the budget the cell's search spent."""
    search = plan.search
    metric, mode = search["metric"], search["mode"]
    searched = searched_keys(plan)
    rows = phase_rows(trials)
    cells = []
    for cell, template in cell_templates(plan).items():
        mine = rows[rows["cell"] == cell] if len(rows) else rows
        entry = dict(cell=cell, labels={k: plain(v) for k, v in cell_labels(plan, template).items()},
                     search_trials=int(len(mine)), search_epochs=int(mine["epochs_completed"].sum()) if len(mine) else 0,
                     selected_trial_id=None, search_value=None, selected={})
        candidates = mine[mine["status"].isin(("completed", "early_stopped")) & mine[metric].notna()] \
            if len(mine) else mine
        if len(candidates):
            longest = candidates[candidates["epochs_completed"] == candidates["epochs_completed"].max()]
            best = longest.sort_values([metric, "trial_id"], ascending=[mode == "min", True]).iloc[0]
            entry.update(selected_trial_id=str(best["trial_id"]), search_value=float(best[metric]),
                         selected={k: plain(best[k]) for k in searched})
        cells.append(entry)
    return dict(k=search["confirm"], seeds=list(search["confirm_seeds"]), metric=metric, mode=mode,
                rule=RULE.format(metric=metric), cells=cells)


def confirm_plan(plan: Plan, record: dict) -> Plan:
    """The confirm runs of the recorded selection: per cell with a winner, its values in force, one trial per
    confirm seed. FIFO, no sampling: the trials are fixed, and their titles name the cell, the values and the
    seed. A cell whose search produced no candidate is left out (the report says so)."""
    templates = cell_templates(plan)
    trials = []
    for entry in record["cells"]:
        if entry["selected_trial_id"] is None:
            continue
        template = templates[entry["cell"]]
        labels = {k: v for k, v in template.labels.items() if k != "sample"}
        title = tuple(dict.fromkeys([*(k for k in template.title_keys if k not in ("sample", "seed")), "seed"]))
        for seed in record["seeds"]:
            spec = template.picking({**entry["selected"], "seed": seed})
            trials.append(replace(spec, labels=labels, title_keys=title))
    return Plan(trials=tuple(trials), search={**plan.search, "searcher": "grid", "scheduler": "fifo",
                                              "trials": len(trials), "time_budget": None},
                sampled=plan.sampled, sets=plan.sets)


def cell_templates(plan: Plan) -> dict[str, TrialSpec]:
    """Each cell's first planned trial, in plan order: the cell's config, before its searched values."""
    templates: dict[str, TrialSpec] = {}
    for spec in plan:
        templates.setdefault(plan.cell_of(spec), spec)
    return templates


def cell_labels(plan: Plan, spec: TrialSpec) -> dict:
    """The keys and labels that name the cell, with their values (the report's columns)."""
    values = {**spec.config, **spec.labels}
    return {k: values[k] for k in spec.title_keys if k not in plan.inside_cell and k in values}


def searched_keys(plan: Plan) -> list[str]:
    """What the search varied inside a cell, and so what the winner fixes: sampled keys and searched axes."""
    return [*plan.sampled, *plan.search.get("search_axes", ())]


def summary_line(record: dict) -> str:
    """The console's line as the confirmation starts."""
    chosen = [c for c in record["cells"] if c["selected_trial_id"] is not None]
    missing = len(record["cells"]) - len(chosen)
    values = "; ".join(f"{c['cell']}: " + ", ".join(f"{k}={_short(v)}" for k, v in c["selected"].items())
                       for c in chosen[:4]) + ("; ..." if len(chosen) > 4 else "")
    return (f"confirm: {len(chosen)} cells x seeds {record['seeds']} ({len(chosen) * len(record['seeds'])} trials, "
            f"FIFO, full epochs); winners by {record['metric']} on validation: {values}"
            + (f"; {missing} cell(s) had no finished search trial and are not confirmed" if missing else ""))


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
