"""The "Tuned comparison" section: the report of a sweep that tuned every grid cell and confirmed the winners.

A sweep run with `--search-scope cell --confirm K` asks "is arm A better than arm B once each arm is tuned?"
(../shared/DESIGN.md, "Fair comparisons"). It runs in two phases, named by the tables' `phase` column:

- search: every grid cell (an arm such as init=he_normal depth=10) is tuned on its own, on the same budget;
  its winner is picked on the validation split;
- confirm: each winner is trained again, for the full planned epochs, on K seeds that no search trial used,
  the same K seeds in every cell, so the arms pair by seed.

The best of N noisy search trials overstates what its configuration gives (the winner's curse), so the arms
are compared on the confirm rows alone: analysis/report.py hands the study's own module the confirm rows and
the Search section the search rows. sweep.json's "confirmation" record (written when the search ended) names
each cell's winner, its search value and the search it cost. `build_tuned_section` adds from it:

- findings: how the winners were picked (validation, never test) and that no search trial used the confirm
  seeds; whether every cell got the same budget; how far the search's best overstates the confirmed value;
  which arm wins each compared pair (PAIRS); whether each source claim (CLAIMS) survives tuning;
- `tuned_cells` (main; numbers in `tuned_cells_long`): per cell, the selected hyperparameters, test accuracy
  mean ± 95% CI over the confirm seeds, the search's best validation value, the confirmed validation mean and
  the gap between the two;
- `tuned_budget`: per cell, the search trials and epochs spent (from the trials table, beside the record's
  counts), the epoch cap and the confirm seeds run;
- `tuned_paired_<factor>`: paired t tests between the arms, paired by confirm seed, Holm-adjusted per table,
  by analysis/tables.py's paired_table as every study's paired tables are;
- `tuned_claims`: one verdict per claimed cell: survives, reversed, or not shown.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.document import Report, reference
from analysis.results import CONFIRM, SEARCH, by_phase
from analysis.stats import format_cell, format_p, seed_warning, t_interval
from analysis.status import phase_split
from analysis.tables import FINISHED, fmt, paired_table

ALPHA = 0.05  # a claim survives (or reverses) when its Holm-adjusted paired p is below this


class Pair(NamedTuple):
    factor: str   # the key whose two values are the arms
    a: object
    b: object
    caption: str  # a few words: "He vs N(0,1) init"


class Claim(NamedTuple):
    text: str     # the claim as the source makes it
    factor: str   # "a beats b": a Pair of the study must test factor, a, b
    a: object
    b: object
    key: str      # where the source makes it: one verdict per tested cell with key in `at`
    at: tuple
    source: str   # the reference.json entry that documents the claim ("" if none)


# The arms each tuned study compares, and the source's claims it re-checks. A study missing here gets the
# selection, budget and cell tables but no tests, and its section says so.
PAIRS = {
    "depth_grid_tuned": (Pair("init", "he_normal", "normal", "He vs N(0,1) init"),
                         Pair("activation", "prelu", "relu", "PReLU vs ReLU")),
}
CLAIMS = {
    "depth_grid_tuned": (Claim("He init beats N(0,1) at depth 10 and 12", "init", "he_normal", "normal",
                               "depth", (10, 12), "depth_grid"),),
}


def confirmation(record: dict) -> dict | None:
    """sweep.json's "confirmation" record, or None (no confirmation asked for, or the search still runs)."""
    conf = record.get("confirmation") if isinstance(record, dict) else None
    return conf if isinstance(conf, dict) else None


def cell_names(trials: pd.DataFrame, cells: list[dict]) -> pd.Series:
    """Each row's cell name: its `cell` column where set, else the record's cell whose labels the row has."""
    named = trials["cell"].astype(object) if "cell" in trials.columns else pd.Series(None, index=trials.index,
                                                                                      dtype=object)
    for cell in cells:
        labels = cell.get("labels") or {}
        if not labels or not all(k in trials.columns for k in labels):
            continue
        match = named.isna()
        for key, value in labels.items():
            match &= trials[key].eq(value)
        named = named.mask(match, cell["cell"])
    return named


def scale_of(metric: str) -> tuple[float, str]:
    """Accuracies in percent, and their differences in points; losses as they are."""
    return (100.0, "points") if metric.endswith("_acc") else (1.0, "")


def build_tuned_section(report: Report, tables: dict, record: dict) -> None:
    """Add the Tuned comparison section for the sweep whose sweep.json is `record`; nothing without a
    confirmation record. `tables`: every phase (this section splits them itself)."""
    conf = confirmation(record)
    if conf is None:
        return
    report.section("Tuned comparison")
    cells = [c for c in conf.get("cells") or [] if isinstance(c, dict) and "cell" in c]
    search, confirm = by_phase(tables, SEARCH)["trials"], by_phase(tables, CONFIRM)["trials"]
    report.header["phases"] = phase_split(tables["trials"], len(cells) * int(conf.get("k") or 0))
    if not cells:
        report.findings("The confirmation record lists no cells: nothing to compare.")
        return
    search = search.assign(_cell=cell_names(search, cells)) if len(search) else search.assign(_cell=None)
    confirm = confirm.assign(_cell=cell_names(confirm, cells)) if len(confirm) else confirm.assign(_cell=None)
    study = str(tables["trials"]["study"].iloc[0])
    scope = (record.get("search") or {}).get("search_scope", "cell")
    seeds = [int(s) for s in conf.get("seeds") or []]
    report.header["tuned"] = (f"each grid cell searched on its own (search scope {scope}); winners re-run on "
                              f"{len(seeds)} fresh seeds ({', '.join(map(str, seeds))})")
    report.findings(selection_text(conf, search, confirm, seeds))
    budget = budget_table(report, search, confirm, cells, seeds)
    report.findings(budget_text(budget))
    stats = cell_table(report, confirm, cells, conf)
    report.findings(curse_text(stats, conf))
    keys = [k for k in dict.fromkeys(k for c in cells for k in c.get("labels") or {}) if k in confirm.columns]
    pairs = PAIRS.get(study, ())
    if not pairs:
        report.findings(f"No compared pairs are defined for study `{study}` (analysis/tuned.py: PAIRS): the cells "
                        "are shown side by side, not tested against each other.")
    results = {}
    done = confirm[confirm["status"].isin(FINISHED)] if len(confirm) else confirm
    for pair in pairs:
        if len(done) and pair.factor in done.columns:
            results[pair.factor, pair.a, pair.b] = paired_table(
                report, f"tuned_paired_{pair.factor}", done, "test_acc", factor=pair.factor, a=pair.a, b=pair.b,
                keys=keys, scale=100, caption=f"{pair.caption} after tuning, paired by confirmation seed "
                                              "(difference in test accuracy points)")
    claims_table(report, CLAIMS.get(study, ()), results)


# --- selection and budget --------------------------------------------------------------------------------------

def selection_text(conf: dict, search: pd.DataFrame, confirm: pd.DataFrame, seeds: list[int]) -> str:
    """How the winners were picked and on which seeds they were confirmed, checked against the rows."""
    metric, mode = conf.get("metric") or "?", conf.get("mode") or "max"
    rule = str(conf.get("rule") or "").strip()
    rule += "" if not rule or rule.endswith((".", "!", "?")) else "."
    lines = []
    if metric.startswith("test"):  # the record says so; never hide it behind the usual sentence
        lines.append(f"- **Warning:** each cell's winner was picked on `{metric}`, a test metric: the confirmed "
                     "test accuracy then favours the winners and no longer estimates them fairly.")
    else:
        lines.append(f"- Each cell's winner was picked on the validation split (`{metric}`, {mode}), never on "
                     f"test{': ' + rule if rule else '.'}")
    used = sorted({int(s) for s in search["seed"].dropna()}) if "seed" in search.columns else []
    shared = sorted(set(seeds) & set(used))
    if shared:
        lines.append(f"- **Warning:** confirmation seed(s) {', '.join(map(str, shared))} were also used by search "
                     "trials: those confirm runs repeat a search run and share its luck.")
    else:
        lines.append(f"- The confirmation seeds ({', '.join(map(str, seeds)) or 'none recorded'}) were used by no "
                     f"search trial (search trials used seed{'s' if len(used) != 1 else ''} "
                     f"{', '.join(map(str, used)) or 'not recorded'}).")
    ran = sorted({int(s) for s in confirm["seed"].dropna()}) if "seed" in confirm.columns else []
    if ran and not set(ran) <= set(seeds):
        lines.append(f"- **Warning:** confirm rows ran seeds {', '.join(map(str, ran))}, not only the recorded "
                     f"{', '.join(map(str, seeds))}.")
    warning = seed_warning([len(seeds)], "The tuned comparison")
    if warning:
        lines.append(f"- **Warning:** {warning}")
    return "\n".join(lines)


def budget_table(report: Report, search: pd.DataFrame, confirm: pd.DataFrame, cells: list[dict],
                 seeds: list[int]) -> pd.DataFrame:
    """Per cell: what its search spent (counted in the trials table, beside the record's own counts), the
    epoch cap its trials ran under, and the confirm seeds run."""
    rows = []
    for cell in cells:
        mine = search[search["_cell"] == cell["cell"]]
        ran = mine["epochs_completed"].fillna(0) if "epochs_completed" in mine.columns else pd.Series(dtype=float)
        trials, spent = len(mine), int(ran.sum())
        said_trials, said_epochs = cell.get("search_trials"), cell.get("search_epochs")
        agree = ((said_trials is None or int(said_trials) == trials)
                 and (said_epochs is None or int(said_epochs) == spent))
        confirmed = confirm[(confirm["_cell"] == cell["cell"]) & confirm["status"].isin(FINISHED)]
        rows.append({**(cell.get("labels") or {"cell": cell["cell"]}),
                     "search trials": trials,
                     "early stopped": int((mine["status"] == "early_stopped").sum()),
                     "search epochs": spent,
                     "epoch cap": mine["epochs"].max() if "epochs" in mine.columns and trials else math.nan,
                     "record: trials": said_trials, "record: epochs": said_epochs,
                     "table = record": "yes" if agree else "no",
                     "confirm seeds run": f"{len(confirmed)} of {len(seeds)}"})
    table = pd.DataFrame(rows)
    report.table("tuned_budget", table, "Equal budgets, shown",
                 "Per cell: the search trials and the epochs they ran (counted in the trials table, early-stopped "
                 "trials by the epochs they ran), the most epochs any of its trials was planned (the cap), the "
                 "same counts as the confirmation record states them, and the confirm runs finished.",
                 min_n=10 ** 9)  # counts, not seed cells: no seed warning
    return table


def budget_text(budget: pd.DataFrame) -> str:
    """Whether every cell got the same trial count and epoch cap, and whether the rows match the record."""
    counts = sorted(set(budget["search trials"]))
    caps = sorted({int(c) for c in budget["epoch cap"].dropna()})
    spent = budget["search epochs"]
    if len(counts) == 1 and len(caps) <= 1:
        text = (f"- Equal budgets: every cell's search ran {counts[0]} trials"
                + (f" with an epoch cap of {caps[0]}" if caps else "")
                + (f"; early stopping left {spent.min()} to {spent.max()} epochs spent per cell."
                   if spent.min() != spent.max() else f"; each spent {spent.min()} epochs."))
    else:
        text = (f"- **Unequal budgets:** search trials per cell {', '.join(map(str, counts))}; epoch caps "
                f"{', '.join(map(str, caps)) or 'not recorded'}. A difference between arms may be the budget's.")
    off = budget[budget["table = record"] == "no"]
    if len(off):
        text += (f"\n- The trials table and the confirmation record disagree on the search spent in {len(off)} "
                 "cell(s) (budget table: the table's counts beside the record's).")
    return text


# --- the cells ---------------------------------------------------------------------------------------------------

def selected_match(confirm: pd.DataFrame, selected: dict) -> bool:
    """Whether the confirm rows ran with the selected values (where the trials table holds the key)."""
    for key, value in selected.items():
        if key not in confirm.columns or not len(confirm):
            continue
        col = confirm[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and pd.api.types.is_numeric_dtype(col):
            if not np.isclose(col.astype(float), float(value), rtol=1e-9).all():
                return False
        elif not col.eq(value).all():
            return False
    return True


def cell_table(report: Report, confirm: pd.DataFrame, cells: list[dict], conf: dict) -> pd.DataFrame:
    """Per cell: the winner's values, test accuracy over the confirm seeds, and the search's best beside it."""
    metric = conf.get("metric") or "val_acc"
    scale, unit = scale_of(metric)
    rows, mismatched = [], []
    for cell in cells:
        mine = confirm[confirm["_cell"] == cell["cell"]]
        done = mine[mine["status"] == "completed"]  # as stat_table: the others are named, not averaged
        mean, ci, n = t_interval(done["test_acc"] * 100)
        val = float((done[metric] * scale).mean()) if metric in done.columns and n else math.nan
        best = cell.get("search_value")
        best = float(best) * scale if best is not None else math.nan
        others = mine[mine["status"] != "completed"]["status"].value_counts()
        selected = cell.get("selected") or {}
        if not selected_match(mine, selected):
            mismatched.append(cell["cell"])
        rows.append({**(cell.get("labels") or {"cell": cell["cell"]}),
                     **{f"{k} (selected)": v for k, v in selected.items()},
                     "test_mean": mean, "test_ci": ci, "n": n,
                     "others": ", ".join(f"{k} {s}" for s, k in others.items()),
                     "search_best": best, "confirm_mean": val, "gap": best - val,
                     "selected_trial_id": cell.get("selected_trial_id")})
    stats = pd.DataFrame(rows)
    label = f"{metric}{' (%)' if scale == 100 else ''}"
    gap = f"gap ({unit})" if unit else "gap"
    shown = stats.drop(columns=["test_mean", "test_ci", "others", "search_best", "confirm_mean", "gap",
                                "selected_trial_id"])
    for col in [c for c in shown.columns if c.endswith(" (selected)")]:
        shown[col] = shown[col].map(lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt(v))
    shown.insert(len(shown.columns) - 1, "test acc (%)", [confirmed_text(r) for r in stats.itertuples()])
    shown.insert(len(shown.columns) - 1, f"search best {label}", stats["search_best"].round(1))
    shown.insert(len(shown.columns) - 1, f"confirmed {label}", stats["confirm_mean"].round(1))
    shown.insert(len(shown.columns) - 1, gap, stats["gap"].round(1))
    report.table("tuned_cells", shown, "Tuned cells: test accuracy over the confirmation seeds",
                 f"Per cell: the winner's values, test accuracy mean ± 95% CI half-width over the confirm seeds "
                 f"(completed runs; others named), the search's best {metric} (the winner's, at its last epoch), "
                 f"the confirm runs' mean {metric}, and {gap} = search best - confirmed mean: how much the "
                 "selection flattered the winner.", main=True)
    report.table("tuned_cells_long", stats, "Tuned cells, numbers", "One row per cell: every number.", fold=True)
    if mismatched:
        report.findings(f"- **Warning:** the confirm rows of {len(mismatched)} cell(s) did not run with the "
                        f"selected values: {', '.join(mismatched)}.")
    return stats


def confirmed_text(row) -> str:
    """'61.0 ± 2.5 (n=3)', then the confirm runs that did not complete: '+1 diverged, 1 running' after a
    mean, 'not run yet (2 running)' before any completed."""
    if not row.n:
        return "not run yet" + (f" ({row.others})" if row.others else "")
    return format_cell(row.test_mean, row.test_ci, row.n) + (f" +{row.others}" if row.others else "")


def curse_text(stats: pd.DataFrame, conf: dict) -> str:
    gaps = stats["gap"].dropna()
    if not len(gaps):
        return "- No cell has both a search value and a completed confirm run yet: no winner's-curse gap."
    metric = conf.get("metric") or "val_acc"
    unit = scale_of(metric)[1] or "units"
    return (f"- The search's best `{metric}` differs from the confirmed mean by {gaps.mean():+.1f} {unit} on "
            f"average ({gaps.min():+.1f} to {gaps.max():+.1f} over {len(gaps)} cells; positive: the search's best "
            "overstated its winner, the winner's curse). The arms are compared on the confirm runs.")


# --- the source's claims -------------------------------------------------------------------------------------

def verdict(row) -> str:
    """survives / reversed (Holm-adjusted paired p < ALPHA, a ahead / b ahead) / not shown (n, p)."""
    p, n = row["p_holm"], int(row["n"])
    if pd.notna(p) and p < ALPHA:
        return "survives" if row["diff"] > 0 else "reversed"
    return f"not shown (n={n} seeds, {format_p(p) if pd.notna(p) else 'p=n/a'})"


def claims_table(report: Report, claims, results: dict) -> None:
    """One verdict per claimed cell, from the paired tables already written (their Holm-adjusted p)."""
    rows = []
    for claim in claims:
        res = results.get((claim.factor, claim.a, claim.b))
        for value in claim.at:
            hit = res[res[claim.key] == value] if res is not None and len(res) and claim.key in res else ()
            if not len(hit):
                rows.append({"claim": claim.text, "where": f"{claim.key}={fmt(value)}", "n": 0, "diff": math.nan,
                             "p_holm": math.nan, "verdict": f"not tested (no {claim.key}={fmt(value)} cell with "
                                                            "both arms confirmed)"})
                continue
            by = [c for c in hit.columns if c not in ("n", "diff", "ci", "p", "p_holm", "d_z", "statement")]
            for _, r in hit.iterrows():
                rows.append({"claim": claim.text, "where": ", ".join(f"{k}={fmt(r[k])}" for k in by), "n": int(r["n"]),
                             "diff": r["diff"], "p_holm": r["p_holm"], "verdict": verdict(r)})
    if not rows:
        return
    table = pd.DataFrame(rows)
    lines = []
    for claim in claims:
        entry = reference(claim.source) if claim.source else {}
        where = f" ({entry['source']})" if entry.get("source") else ""
        mine = table[table["claim"] == claim.text]
        lines.append(f"**Source claim: \"{claim.text}\"{where}. After tuning ({claim.a} - {claim.b}, test accuracy "
                     f"points, Holm-adjusted paired p):**\n\n"
                     + "\n".join(f"- {r['where']}: {r['verdict']}"
                                 + (f"; {claim.a} {'ahead' if r['diff'] > 0 else 'behind'} by {abs(r['diff']):.1f}"
                                    if pd.notna(r["diff"]) else "") for _, r in mine.iterrows()))
    report.findings("\n\n".join(lines))
    report.table("tuned_claims", table, "Source claims after tuning",
                 f"verdict: survives = Holm-adjusted paired p < {ALPHA} with the claimed arm ahead, reversed = the "
                 "same the other way, not shown = neither; diff = claimed arm - other in test accuracy points.",
                 min_n=int(table["n"].min()) if len(table) else None)
