"""Issue 23, analysis side: the report of a sweep that tuned each cell and confirmed its winner on fresh seeds,
on sweep folders written directly (no Ray), so every expected number is computed here from the values written."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import report as report_mod
from analysis import status
from analysis.stats import holm
from sweeps.results.store import Store
from tests.analysis.test_report import check_self_contained, fake_sweep, outline
from trainables.config import resolve

SEARCH = {"sampled": {"lr": "loguniform:1e-05:1.0"}, "searcher": "random", "scheduler": "asha", "metric": "val_acc",
          "mode": "max", "search_seed": 7, "samples": 4, "grace_period": 1, "reduction_factor": 3.0, "max_t": 4,
          "search_scope": "cell", "confirm": 3}
CAP = 4  # planned epochs of every trial
LRS = (1e-4, 1e-3, 3e-3, 1e-2)  # the search trials' lr, by index within a cell
# per cell: each search trial's status and epochs run (a different number of early stops per cell), the
# winner's index and its val_acc at its last epoch (the record's search_value)
PLAN = {("he_normal", 10): ([("completed", 4), ("completed", 4), ("early_stopped", 1), ("early_stopped", 2)], 1, 0.70),
        ("he_normal", 12): ([("completed", 4), ("completed", 4), ("completed", 4), ("early_stopped", 1)], 2, 0.66),
        ("normal", 10): ([("early_stopped", 1), ("completed", 4), ("early_stopped", 1), ("early_stopped", 2)], 1, 0.50),
        ("normal", 12): ([("completed", 4)] * 4, 0, 0.55)}
SEEDS = (1, 2, 3)  # the confirmation seeds; every search trial ran seed 0
# confirmed test_acc per seed: He clearly ahead at depth 10, no consistent difference at depth 12
TEST = {("he_normal", 10): [0.60, 0.62, 0.61], ("normal", 10): [0.45, 0.46, 0.44],
        ("he_normal", 12): [0.55, 0.50, 0.53], ("normal", 12): [0.52, 0.54, 0.51]}
ABSURD = 0.99  # a search trial's test_acc: it must not reach any confirmed mean


def write_trial(store: Store, tid: str, cfg: dict, status_: str, ran: int, val: float, test: float, study: str,
                **tags) -> None:
    """A trials row and its epochs and layers rows; `tags` (phase, cell) go on the epochs rows too."""
    cfg = resolve({"train_subset": 500, "epochs": CAP, **cfg})
    store.write_rows("trials", tid, [dict(cfg, trial_id=tid, sweep=store.name, study=study, status=status_, error="",
                                          data_source="subset", n_train=500, val_acc=val, test_acc=test,
                                          epochs_completed=ran, train_seconds=2.0, code_version="abc123",
                                          finished_at="2026-01-01T00:00:00", **tags)])
    for epoch in range(1, ran + 1):
        share = 0.5 + 0.5 * epoch / ran
        store.write_rows("epochs", f"{tid}-e{epoch}", [dict(trial_id=tid, sweep=store.name, epoch=epoch,
                                                            val_acc=val * share, test_acc=test * share,
                                                            avg_weight=0.01 * epoch, lr=cfg["lr"], **tags)])
        store.write_rows("layers", f"{tid}-e{epoch}", [dict(trial_id=tid, epoch=epoch, layer=i, layer_name=f"conv{i}",
                                                            grad_abs_mean=10.0 ** -(i + epoch), weight_mean=0.0,
                                                            weight_std=0.1) for i in range(3)])


def tuned_sweep(storage, name: str = "tuned", study: str = "depth_grid_tuned", confirm: bool = True) -> Store:
    """2 inits x 2 depths, 4 search trials per cell on seed 0, the confirmation record, and (`confirm`) the
    winners re-run on SEEDS."""
    store = Store(str(storage), name)
    cells = []
    for (init, depth), (runs, win, best) in PLAN.items():
        cell = f"init={init} depth={depth}"
        for i, (status_, ran) in enumerate(runs):
            val = best if i == win else best - 0.05 - 0.01 * i
            test = ABSURD if (init, depth, i) == ("he_normal", 12, 0) else val - 0.03
            # one search row as an older engine writes it: no phase, no cell (both are then inferred)
            tags = {} if (init, depth, i) == ("he_normal", 10, 3) else {"phase": "search", "cell": cell}
            write_trial(store, f"{name}_s_{init}_{depth}_{i}", dict(init=init, depth=depth, seed=0, lr=LRS[i]),
                        status_, ran, val, test, study=study, **tags)
        cells.append({"cell": cell, "labels": {"init": init, "depth": depth}, "selected_trial_id":
                      f"{name}_s_{init}_{depth}_{win}", "search_value": best, "selected": {"lr": LRS[win]},
                      "search_trials": len(runs), "search_epochs": sum(r for _, r in runs)})
        if confirm:
            for seed, test in zip(SEEDS, TEST[init, depth]):
                write_trial(store, f"{name}_c_{init}_{depth}_{seed}", dict(init=init, depth=depth, seed=seed,
                                                                             lr=LRS[win]),
                            "completed", CAP, test - 0.02, test, study=study, phase="confirm", cell=cell)
    store.write_json("sweep.json", {"argv": ["sweeps/depth_grid_tuned.py", "--search-scope", "cell", "--confirm", "3"],
                                    "search": SEARCH, "confirmation": {
                                        "k": 3, "seeds": list(SEEDS), "metric": "val_acc", "mode": "max",
                                        "rule": "the completed search trial with the highest val_acc at its last epoch",
                                        "cells": cells}})
    return store


def cell_of(frame: pd.DataFrame, init: str, depth: int) -> pd.Series:
    return frame[(frame["init"] == init) & (frame["depth"] == depth)].iloc[0]


def test_tuned_report_uses_confirm_rows_and_judges_the_claim(tmp_path):
    tuned_sweep(tmp_path)
    rep = report_mod.build_report(f"{tmp_path}/tuned")
    out = rep.outdir
    check_self_contained(out / "report.html")
    assert [s["heading"] for s in outline(out / "report.html")] == [
        "Study depth_grid_tuned", "Tuned comparison", "Search"]
    index = (out / "index.md").read_text()

    # the study's own table: confirm rows only (the search row with test_acc 0.99 moves nothing)
    study = pd.read_csv(out / "final_test_acc_long.csv")
    for (init, depth), values in TEST.items():
        row = cell_of(study, init, depth)
        assert row["n"] == 3 and row["mean"] == pytest.approx(100 * np.mean(values))
    # the tuned cells: mean ± t CI over the 3 confirm seeds, the search's best and the winner's-curse gap
    cells = pd.read_csv(out / "tuned_cells_long.csv")
    shown = pd.read_csv(out / "tuned_cells.csv")
    for (init, depth), values in TEST.items():
        x = 100 * np.array(values)
        half = sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
        row = cell_of(cells, init, depth)
        assert row["n"] == 3 and row["test_mean"] == pytest.approx(x.mean()) and row["test_ci"] == pytest.approx(half)
        runs, win, best = PLAN[init, depth]
        assert row["lr (selected)"] == pytest.approx(LRS[win])
        assert row["search_best"] == pytest.approx(100 * best)
        assert row["gap"] == pytest.approx(100 * best - (x - 2).mean())  # confirm val_acc = test - 0.02
        text = cell_of(shown, init, depth)
        assert text["test acc (%)"] == f"{x.mean():.1f} ± {half:.1f} (n=3)"
        assert text["gap (points)"] == pytest.approx(round(100 * best - (x - 2).mean(), 1))
    assert rep.main_table.startswith("Final test accuracy (%)")  # the study's answer is still printed first

    # the budget: counted from the search rows (one without phase/cell columns included), beside the record
    budget = pd.read_csv(out / "tuned_budget.csv")
    for (init, depth), (runs, _, _) in PLAN.items():
        row = cell_of(budget, init, depth)
        assert row["search trials"] == 4 and row["epoch cap"] == CAP
        assert row["early stopped"] == sum(s == "early_stopped" for s, _ in runs)
        assert row["search epochs"] == sum(r for _, r in runs) == row["record: epochs"]
        assert row["table = record"] == "yes" and row["confirm seeds run"] == "3 of 3"
    assert f"Equal budgets: every cell's search ran 4 trials with an epoch cap of {CAP}; early stopping left 8 to " \
           "16 epochs spent per cell." in index
    # selection on validation, confirm seeds unused by the search
    assert "picked on the validation split (`val_acc`, max), never on test: the completed search trial" in index
    assert "The confirmation seeds (1, 2, 3) were used by no search trial (search trials used seed 0)." in index
    assert rep.header["phases"] == "search: 10 completed, 6 early_stopped; confirm: 12 of 12 started (12 completed)"

    # paired by confirmation seed, Holm-adjusted over the two depths, and the claim's verdicts
    p = {d: sps.ttest_rel(TEST["he_normal", d], TEST["normal", d]).pvalue for d in (10, 12)}
    adjusted = dict(zip(p, holm(list(p.values()))))
    paired = pd.read_csv(out / "tuned_paired_init.csv").set_index("depth")
    assert paired.loc[10, "p_holm"] == pytest.approx(adjusted[10]) and paired.loc[12, "n"] == 3
    claims = pd.read_csv(out / "tuned_claims.csv").set_index("where")
    assert claims.loc["depth=10", "verdict"] == "survives"
    assert claims.loc["depth=12", "verdict"] == f"not shown (n=3 seeds, p={adjusted[12]:.3f})"
    assert "- depth=10: survives; he_normal ahead by 16.0" in index
    assert not (out / "tuned_paired_activation.csv").exists()  # one activation: nothing to pair

    # the Search section counts the search rows only
    counts = pd.read_csv(out / "search_status.csv").set_index("status")["trials"].to_dict()
    assert counts == {"completed": 10, "early_stopped": 6}
    # and the status command splits the counts by phase
    lines = status.summary_lines(f"{tmp_path}/tuned")
    assert lines[4] == "phases: search: 10 completed, 6 early_stopped; confirm: 12 of 12 started (12 completed)"


def test_unequal_budgets_and_a_record_the_rows_contradict(tmp_path):
    tuned_sweep(tmp_path)
    lost = tmp_path / "tuned" / "trials.parquet" / "tuned_s_normal_12_3.parquet"
    lost.unlink()  # the record says 4 trials for this cell; the table now holds 3
    rep = report_mod.build_report(f"{tmp_path}/tuned")
    index = (rep.outdir / "index.md").read_text()
    assert "**Unequal budgets:** search trials per cell 3, 4; epoch caps 4." in index
    assert "disagree on the search spent in 1 cell(s)" in index
    row = cell_of(pd.read_csv(rep.outdir / "tuned_budget.csv"), "normal", 12)
    assert (row["search trials"], row["record: trials"], row["table = record"]) == (3, 4, "no")


def test_an_unknown_study_gets_the_cells_but_no_pairs(tmp_path):
    tuned_sweep(tmp_path, study="mystery_tuned")
    rep = report_mod.build_report(f"{tmp_path}/tuned")
    index = (rep.outdir / "index.md").read_text()
    assert "No compared pairs are defined for study `mystery_tuned` (analysis/tuned.py: PAIRS)" in index
    assert (rep.outdir / "tuned_cells.csv").exists() and not (rep.outdir / "tuned_claims.csv").exists()
    assert rep.main_table.startswith("Tuned cells")  # no study table: the tuned table is the answer


def test_confirmation_not_run_yet(tmp_path):
    tuned_sweep(tmp_path, confirm=False)
    rep = report_mod.build_report(f"{tmp_path}/tuned")
    index = (rep.outdir / "index.md").read_text()
    assert "no confirm run has written a row yet" in index and "not run yet" in index
    assert "confirm: not started (12 planned)" in rep.header["phases"]
    assert cell_of(pd.read_csv(rep.outdir / "tuned_budget.csv"), "he_normal", 10)["confirm seeds run"] == "0 of 3"


def test_a_sweep_without_confirmation_reports_as_before(tmp_path):
    """A phase column of "search" only, and no confirmation record: the same tables as a sweep from before."""
    old = fake_sweep(tmp_path / "a", "dg", seeds=3)
    new = tmp_path / "b" / "dg"
    shutil.copytree(old, new)
    for f in (new / "trials.parquet").glob("*.parquet"):
        pd.read_parquet(f).assign(phase="search").to_parquet(f)
    reports = [report_mod.build_report(str(p)) for p in (old, new)]
    for name in ("final_test_acc.csv", "final_test_acc_long.csv", "paired_init.csv"):
        assert (reports[0].outdir / name).read_text() == (reports[1].outdir / name).read_text()
    for rep in reports:
        assert not list(rep.outdir.glob("tuned_*")) and "phases" not in rep.header
        assert [s["heading"] for s in outline(rep.outdir / "report.html")] == ["Study depth_grid"]


def test_a_confirm_run_still_running_is_named_not_averaged(tmp_path):
    store = tuned_sweep(tmp_path)
    tid = "tuned_c_normal_12_3"
    row = store.read_table("trials").set_index("trial_id").loc[tid].to_dict()
    store.write_rows("trials", tid, [dict(row, trial_id=tid, status="running", test_acc=math.nan, val_acc=math.nan)])
    rep = report_mod.build_report(f"{tmp_path}/tuned")
    shown = cell_of(pd.read_csv(rep.outdir / "tuned_cells.csv"), "normal", 12)
    x = 100 * np.array(TEST["normal", 12][:2])
    half = sps.t.ppf(0.975, 1) * x.std(ddof=1) / math.sqrt(2)
    assert shown["test acc (%)"] == f"{x.mean():.1f} ± {half:.1f} (n=2) +1 running"
    assert cell_of(pd.read_csv(rep.outdir / "tuned_budget.csv"), "normal", 12)["confirm seeds run"] == "2 of 3"
    assert rep.header["phases"].endswith("confirm: 12 of 12 started (11 completed, 1 running)")
    assert "rests on as few as 2 seed(s)" in (rep.outdir / "index.md").read_text()  # the table's seed warning
