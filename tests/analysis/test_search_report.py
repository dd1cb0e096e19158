"""Issue 13, analysis side: the Search section (sampled keys, early stopping, PBT lineage) and stat_table's
protocol-aware source figures and outcome texts, on sweep folders written directly (no Ray)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import report as report_mod
from analysis.document import Report
from analysis.tables import stat_table
from sweeps.results.store import Store
from tests.analysis.test_report import check_self_contained, fake_sweep, outline
from trainables.config import resolve

SEARCH = {"sampled": {"lr": "loguniform:1e-05:1.0"}, "searcher": "random", "scheduler": "asha",
          "metric": "val_acc", "mode": "max", "search_seed": 7, "samples": 4, "constant_draws": True,
          "grace_period": 1, "reduction_factor": 3.0, "max_t": 9}
LRS = [1e-4, 1e-3, 1e-2, 1.0]  # the 4 draws, the same in both init cells (constant_draws)
BASE = {("he_normal", 1e-3): 0.50, ("he_normal", 1e-2): 0.44, ("normal", 1e-3): 0.30, ("normal", 1e-2): 0.36}


def write_trial(store: Store, name: str, tid: str, cfg: dict, status: str, acc: float, ran: int, **extra) -> None:
    """One trial of a depth_grid-shaped sweep: its trials row and `ran` epochs (curves, layers)."""
    cfg = resolve({"train_subset": 500, **cfg})
    final = math.nan if status == "diverged" else acc
    store.write_rows("trials", tid, [dict(cfg, trial_id=tid, sweep=name, study="depth_grid", status=status, error="",
                                          data_source="subset", n_train=500, test_acc=final, val_acc=final,
                                          train_seconds=5.0, code_version="abc123", epochs_completed=ran,
                                          finished_at="2026-01-01T00:00:00", **extra)])
    for epoch in range(1, ran + 1):
        value = math.nan if status == "diverged" and epoch == ran else acc * (0.5 + 0.5 * epoch / ran)
        store.write_rows("epochs", f"{tid}-e{epoch}", [dict(trial_id=tid, sweep=name, epoch=epoch, test_acc=value,
                                                            val_acc=value, avg_weight=0.01 * epoch, lr=cfg["lr"])])
        store.write_rows("layers", f"{tid}-e{epoch}", [dict(
            trial_id=tid, epoch=epoch, layer=i, layer_name=f"conv{i + 1}", grad_abs_mean=10.0 ** -(i + epoch),
            weight_mean=0.0, weight_std=0.1) for i in range(cfg["depth"] + 1)])


def search_sweep(storage, name: str = "asha") -> tuple:
    """Random search over lr (4 draws x 2 inits x 2 seeds) under ASHA: 8 completed, 4 early-stopped (rungs 1
    and 3), 4 diverged (lr = 1). Returns the path and the completed values {(init, lr): [val_acc per seed]}."""
    store = Store(str(storage), name)
    store.write_json("sweep.json", {"argv": ["sweeps/depth_grid.py", "--grid", "lr=loguniform:1e-05:1.0"],
                                    "search": SEARCH})
    values = {}
    for init in ("he_normal", "normal"):
        for sample, lr in enumerate(LRS):
            for seed in (0, 1):
                tid = f"{name}_{init}_{sample}_{seed}"
                cfg = dict(init=init, depth=2, seed=seed, epochs=9, lr=lr)
                meta = dict(searcher="random", scheduler="asha", search_seed=7, sample=sample)
                if lr == 1.0:
                    write_trial(store, name, tid, cfg, "diverged", 0.1, 1, **meta)
                elif lr == 1e-4:
                    acc = (0.15 if init == "normal" else 0.22) + 0.01 * seed
                    write_trial(store, name, tid, cfg, "early_stopped", acc, 1 if init == "he_normal" else 3, **meta)
                else:
                    acc = BASE[(init, lr)] + 0.02 * seed + (0.01 if lr == 1e-2 else 0.0) * seed
                    values.setdefault((init, lr), []).append(100 * acc)
                    write_trial(store, name, tid, cfg, "completed", acc, 9, **meta)
    return storage / name, values


def test_search_section_figure_counts_rungs_and_best_configs(tmp_path):
    path, values = search_sweep(tmp_path)
    rep = report_mod.build_report(str(path))
    out = rep.outdir
    page = (out / "report.html").read_text()
    refs = check_self_contained(out / "report.html")
    assert len(refs.images) == 5 and (out / "search_space.png").stat().st_size > 10_000  # the study's 4 + search
    # the text says what searched, what stopped trials, on which metric and mode, with which seed
    assert "Searcher: random search, 4 draw(s) of the sampled keys per grid cell" in page
    assert "(search seed 7)" in page and "ASHA" in page and "<code>val_acc</code>, mode max" in page
    assert "<code>lr</code> ~ loguniform(1e-05, 1.0)" in page and "reduction factor rf = 3" in page
    assert rep.header["search"] == "random search, scheduler asha, metric val_acc (max), search seed 7"
    # counts by status, and the rungs of the early-stopped trials
    status = pd.read_csv(out / "search_status.csv").set_index("status")["trials"].to_dict()
    assert status == {"completed": 8, "early_stopped": 4, "diverged": 4}
    rungs = pd.read_csv(out / "search_rungs.csv")
    assert rungs.values.tolist() == [[1, 2], [3, 2]]
    # best configs: completed only, grouped over seeds, mean ± 95% t CI, sorted by val_acc (mode max)
    best = pd.read_csv(out / "search_best.csv")
    assert len(best) == 4 and set(best["n"]) == {2} and list(best["rank"]) == [1, 2, 3, 4]
    assert 1.0 not in set(best["lr"]) and 1e-4 not in set(best["lr"])
    assert list(best["mean"]) == sorted(best["mean"], reverse=True)
    top = best.iloc[0]
    assert (top["init"], top["lr"]) == ("he_normal", 1e-3) and top["seeds"] == "0, 1"
    v = values[("he_normal", 1e-3)]
    assert top["mean"] == pytest.approx(np.mean(v)) and top["ci"] == pytest.approx(sps.t.ppf(0.975, 1) * sps.sem(v))
    assert top["val_acc (%)"] == f"{np.mean(v):.1f} ± {top['ci']:.1f} (n=2)"
    # both sections lead with the answer: the search's best config and what became of the trials come first
    assert [s["parts"] for s in outline(out / "report.html")] == [
        ["findings", "figure:final_test_acc_vs_depth", "table:final_test_acc", "details"],
        ["findings", "figure:search_space", "table:search_best", "details"]]
    findings = page[page.index("<h2>Search</h2>"):page.index('<figure id="figure-search_space"')]
    assert "Best config by final val_acc (higher is better), among completed trials: lr=0.001, init=he_normal: " \
           f"val_acc (%) {top['val_acc (%)']}." in findings
    assert "Trials: 16 (8 completed, 4 early_stopped, 4 diverged)." in findings
    assert rep.main_table.startswith("Final test accuracy (%)\n")  # the command prints the study's table
    # the study's own table names the outcomes instead of averaging them in
    long = pd.read_csv(out / "final_test_acc_long.csv")
    assert {"on_protocol", "n_diverged", "n_early_stopped", "stopped_at"} <= set(long.columns)
    wide = pd.read_csv(out / "final_test_acc.csv")
    cells = set(wide["depth 2"])
    assert "diverged (2 of 2)" in cells and "early_stopped at epoch 1 (2 of 2)" in cells
    assert "early_stopped at epoch 3 (2 of 2)" in cells


def test_plain_grid_sweep_has_no_search_section(tmp_path):
    for name, info in (("old", None), ("grid", {"sampled": {}, "searcher": "grid", "scheduler": "fifo",
                                                 "metric": "test_acc", "mode": "max", "search_seed": 0})):
        path = fake_sweep(tmp_path, name, seeds=2)
        if info is not None:
            Store.at(str(path)).write_json("sweep.json", {"argv": ["x"], "search": info})
        rep = report_mod.build_report(str(path))
        assert not list(rep.outdir.glob("search_*")) and "search" not in rep.header
        assert "Search and early stopping" not in (rep.outdir / "report.html").read_text()


def test_scheduler_without_sampled_keys_still_gets_the_section(tmp_path):
    store = Store(str(tmp_path), "med")
    store.write_json("sweep.json", {"search": {**SEARCH, "sampled": {}, "searcher": "grid", "scheduler": "median"}})
    for seed in range(3):
        write_trial(store, "med", f"t{seed}", dict(depth=2, seed=seed, epochs=4),
                    "early_stopped" if seed == 2 else "completed", 0.4 + 0.01 * seed, 2 if seed == 2 else 4)
    rep = report_mod.build_report(str(tmp_path / "med"))
    assert (rep.outdir / "search_space.png").exists()
    assert pd.read_csv(rep.outdir / "search_rungs.csv").values.tolist() == [[2, 1]]
    best = pd.read_csv(rep.outdir / "search_best.csv")  # one config, 2 completed seeds
    assert len(best) == 1 and best["n"].iloc[0] == 2 and "median stopping rule" in (rep.outdir / "index.md").read_text()


def test_pbt_lineage_table(tmp_path):
    store = Store(str(tmp_path), "pbt")
    store.write_json("sweep.json", {"search": {**SEARCH, "scheduler": "pbt", "pbt_interval": 2,
                                               "pbt_mutate": ["lr"], "constant_draws": False}})
    for i, lr in enumerate(LRS[:3]):
        write_trial(store, "pbt", f"p{i}", dict(depth=2, seed=0, epochs=6, lr=lr), "completed", 0.3 + 0.05 * i, 6,
                    sample=i)
    store.write_rows("lineage", "p0-e2", [dict(trial_id="p0", epoch=2, source_trial_id="p2", source_epoch=2,
                                               lr=0.012)])
    store.write_rows("lineage", "p0-e4", [dict(trial_id="p0", epoch=4, source_trial_id="p1", source_epoch=4,
                                               lr=0.0008)])
    store.write_rows("lineage", "p1-e4", [dict(trial_id="p1", epoch=4, source_trial_id="p2", source_epoch=4,
                                               lr=0.009)])
    rep = report_mod.build_report(str(tmp_path / "pbt"))
    lin = pd.read_csv(rep.outdir / "search_lineage.csv").set_index("trial_id")
    assert lin["exploits"].to_dict() == {"p0": 2, "p1": 1, "p2": 0}
    assert lin.loc["p0", "at epochs"] == "2, 4" and lin.loc["p0", "sources"] == 2
    assert (lin.loc["p0", "lr start"], lin.loc["p0", "lr end"]) == (1e-4, 0.0008)
    assert (lin.loc["p0", "lr min"], lin.loc["p0", "lr max"]) == (1e-4, 0.012)
    assert lin.loc["p2", "lr end"] == 1e-2
    assert "starting values" in (rep.outdir / "index.md").read_text()


# --- stat_table: the source's figure only on its protocol, outcomes in the cell ----------------------------------

def protocol_sweep(storage, name: str = "proto"):
    """depth_grid with `--grid lr=0.001,50` and SGD at lr 50: on- and off-protocol cells, diverged trials."""
    store = Store(str(storage), name)
    plan = {  # (init, depth, lr): statuses of seeds 0, 1, 2
        ("he_normal", 2, 1e-3): ["completed"] * 3,
        ("he_normal", 2, 50.0): ["completed"] * 3,
        ("normal", 2, 1e-3): ["completed", "completed", "diverged"],
        ("normal", 2, 50.0): ["diverged", "diverged", "early_stopped"],
        ("normal", 5, 50.0): ["diverged"] * 3,
        ("he_normal", 5, 1e-3): ["completed"] * 3,
    }
    for (init, depth, lr), statuses in plan.items():
        for seed, status in enumerate(statuses):
            opt = "adam" if lr == 1e-3 else "sgd"
            acc = (0.6 if init == "he_normal" else 0.4) + 0.01 * seed if lr == 1e-3 else 0.10
            write_trial(store, name, f"{name}_{init}_{depth}_{lr:g}_{seed}",
                        dict(init=init, depth=depth, seed=seed, epochs=10, lr=lr, optimizer=opt), status, acc,
                        1 if status == "early_stopped" else 10)
    return storage / name


def test_source_figure_only_on_protocol_and_outcomes_in_cells(tmp_path):
    rep = report_mod.build_report(str(protocol_sweep(tmp_path)))
    # rows: init x optimizer (varying_keys adds optimizer, which fixes lr: adam 1e-3, sgd 50)
    wide = pd.read_csv(rep.outdir / "final_test_acc.csv").set_index(["init", "optimizer"])
    on = wide.loc[("he_normal", "adam"), "depth 2"]
    off = wide.loc[("he_normal", "sgd"), "depth 2"]
    assert on.startswith("61.0 ± ") and "[src 55.8, Δ +5.2]" in on
    assert off == "10.0 ± 0.0 (n=3)" and "[src" not in off  # SGD at lr 50 beside the source's Adam at 1e-3: no
    mixed = wide.loc[("normal", "adam"), "depth 2"]  # mean of the 2 completed seeds, then the diverged one
    assert mixed.startswith("40.5 ± ") and " (n=2) +1 diverged [src 37.6, Δ +2.9]" in mixed
    assert wide.loc[("normal", "sgd"), "depth 2"] == "diverged (2 of 3), early_stopped at epoch 1 (1 of 3)"
    assert wide.loc[("normal", "sgd"), "depth 5"] == "diverged (3 of 3)"
    caption = rep.main_table.split("\n\n")[0]  # the title, then the definitions beneath it
    assert ("the source's value stands only beside cells on its protocol "
            "(epochs=10, batch_size=64, lr=0.001, optimizer=adam)") in caption
    assert "3 of 6 cells are off it" in caption and "'+1 diverged' beside a mean" in caption
    long = pd.read_csv(rep.outdir / "final_test_acc_long.csv").set_index(["init", "optimizer", "depth"])
    assert long.loc[("he_normal", "sgd", 2), "on_protocol"] == False  # noqa: E712 (numpy bool from CSV)
    assert math.isnan(long.loc[("he_normal", "sgd", 2), "source"]) and long.loc[("he_normal", "adam", 2), "on_protocol"]
    cell = long.loc[("normal", "adam", 2)]
    assert (cell["n"], cell["n_diverged"], cell["n_early_stopped"]) == (2, 1, 0)
    assert cell["mean"] == pytest.approx(40.5)  # completed trials only: the diverged seed is not averaged in
    assert long.loc[("normal", "sgd", 2), "n"] == 0 and long.loc[("normal", "sgd", 2), "stopped_at"] == 1
    assert "epochs = " not in (rep.outdir / "report.html").read_text()  # the source's 10 epochs: no caveat
    assert "Search and early stopping" not in (rep.outdir / "report.html").read_text()


def test_optimizer_in_the_protocol_gates_the_source_figure(tmp_path):
    """A protocol key the trials hold decides per cell (optimizer here)."""
    entry = {"source": "s", "section": "1", "table": "t", "protocol": {"lr": 0.001, "optimizer": "adam", "epochs": 10},
             "keys": ["init"], "values": [["a", 50.0], ["b", 40.0]]}
    trials = pd.DataFrame([dict(init=i, seed=s, lr=0.001, optimizer="adam" if i == "a" else "sgd", epochs=10,
                                status="completed", acc=0.5 + 0.01 * s, depth=2) for i in "ab" for s in range(3)])
    report = Report(tmp_path, {}, "t")
    stats = stat_table(report, "t", trials, "acc", rows=["init"], columns="depth", caption="c", source=entry,
                       scale=100).set_index("init")
    assert stats.loc["a", "on_protocol"] and not stats.loc["b", "on_protocol"]
    assert stats.loc["a", "delta"] == pytest.approx(1.0) and math.isnan(stats.loc["b", "delta"])
    wide = report.frames["t"].set_index("init")["depth 2"]
    assert "[src 50.0, Δ +1.0]" in wide["a"] and "[src" not in wide["b"]
    assert "(lr=0.001, optimizer=adam, epochs=10): 1 of 2 cells are off it" in report.parts[-2].about


def test_loss_metric_ranks_ascending_and_single_draws_have_no_ci(tmp_path):
    """Optuna over three keys (one categorical) on val_loss (mode min): best = lowest, one trial per config."""
    from analysis.search import build_search_section
    rng = np.random.default_rng(0)
    rows = [dict(trial_id=f"t{i}", status=["completed", "early_stopped", "diverged", "error"][i % 4], seed=0,
                 lr=10 ** rng.uniform(-5, 0), weight_decay=10 ** rng.uniform(-6, -2), optimizer=["adam", "sgd"][i % 2],
                 epochs=6, epochs_completed=2 if i % 4 == 1 else 6,
                 val_loss=rng.uniform(0.5, 2.5) if i % 4 < 2 else math.nan)
            for i in range(12)]
    trials = pd.DataFrame(rows)
    epochs = pd.DataFrame([dict(trial_id=r["trial_id"], epoch=e, val_loss=1.0 + 1 / e) for r in rows for e in (1, 2)])
    report = Report(tmp_path, {}, "t")
    build_search_section(report, {"trials": trials, "epochs": epochs}, {
        "sampled": {"lr": "loguniform:1e-05:1.0", "weight_decay": "loguniform:1e-06:0.01",
                    "optimizer": "choice:adam,sgd"},
        "searcher": "optuna", "scheduler": "median", "metric": "val_loss", "mode": "min", "search_seed": 3,
        "trials": 12})
    best = report.frames["search_best"]
    done = trials[trials["status"] == "completed"].sort_values("val_loss")
    assert list(best["val_loss"]) == list(done["val_loss"].round(2)) and set(best["n"]) == {1}
    assert best["ci"].isna().all()
    assert "single values, no CI" in next(p.about for p in report.parts if p.name == "search_best")
    intro = next(p.body for p in report.parts if p.kind == "text" and "Optuna (TPE" in p.body)
    assert "at the top (the worse end)" in intro
    assert (tmp_path / "search_space.png").stat().st_size > 10_000
