"""Issue 14, analysis side: the lr_window report (windows, map, claim statements, upper edges) on fake sweeps
written directly with Store (no Ray), with known windows per cell."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from analysis import report as report_mod
from analysis.lr_window import compute
from sweeps.results.store import Store
from tests.analysis.test_report import check_self_contained, outline
from trainables import data, geometry
from trainables.config import resolve
from trainables.models import build_model

LRS = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]  # the same draws in every cell (constant draws)
EPOCHS = 4
# (init, depth) -> (lowest, highest) lr that trains; None = trains nowhere
WINDOWS = {
    ("he_normal", 2): (1e-4, 1.0), ("he_normal", 5): (1e-4, 1e-1),
    ("he_normal", 10): (1e-3, 1e-1), ("he_normal", 20): (1e-3, 1e-1),
    ("xavier_normal", 2): (1e-4, 1e-1), ("xavier_normal", 5): (1e-3, 1e-1),
    ("xavier_normal", 10): (1e-3, 1e-2), ("xavier_normal", 20): (1e-2, 1e-2),
    ("normal", 2): (1e-3, 1e-2), ("normal", 5): (1e-2, 1e-2), ("normal", 10): None, ("normal", 20): None,
}
WINDOWS_BN = {("he_normal", 10): (1e-4, 1.0)}  # with BN, He at depth 10 is wider than at 5: not monotone
INITS = {"he_normal": dict(init="he_normal", init_mode="fan_in", init_targets="conv"),
         "xavier_normal": dict(init="xavier_normal", init_targets="conv"),
         "normal": dict(init="normal", init_std=1.0, init_targets="all")}
SEARCH = {"sampled": {"lr": "loguniform:1e-05:3.0"}, "searcher": "random", "scheduler": "asha",
          "metric": "val_acc", "mode": "max", "search_seed": 0, "samples": len(LRS), "constant_draws": True,
          "grace_period": 1, "reduction_factor": 3.0, "max_t": EPOCHS}


def window(init, depth, bn):
    return (WINDOWS_BN if bn else {}).get((init, depth), WINDOWS[(init, depth)])


def outcome(init, depth, bn, opt, lr, seed, lrs=LRS) -> tuple[str, float, int]:
    """(status, final val_acc, epochs run) of one trial; the windows above hold for the mean over seeds."""
    win = window(init, depth, bn)
    if win and win[0] <= lr <= win[1]:
        if (init, depth, lr) == ("he_normal", 2, 1.0):
            return "early_stopped", 0.25, 3  # stopped at rung 3, already above the threshold: trains
        if (init, depth, lr, seed) == ("he_normal", 20, 1e-3, 2):
            return "completed", 0.15, EPOCHS  # seed 2 fails at 1e-3; the mean over 3 seeds still trains
        if (init, depth, opt, lr) == ("xavier_normal", 2, "adam", 1e-3):
            return "completed", 0.18, EPOCHS  # a gap inside the window
        inside = [x for x in lrs if win[0] <= x <= win[1]]
        best = inside[(len(inside) - 1) // 2]
        return "completed", 0.6 - 0.05 * abs(math.log10(lr / best)) + 0.01 * seed, EPOCHS
    if (win and lr > win[1]) or (win is None and lr >= 1e-2):
        if opt == "sgd":
            return ("diverged", math.nan, 1) if lr >= 1.0 else ("early_stopped", 0.12, 1)
        return "completed", 0.11, EPOCHS
    return "completed", 0.15 + 0.01 * seed, EPOCHS  # too slow to train in the budget


def update_ratio(lr, layer, epoch):
    return lr * (layer + 1) * epoch / 100


def dead_fraction(lr, layer, epoch):
    return round(min(1.0, lr * 0.5 + 0.01 * layer + 0.001 * epoch), 6)


def lr_sweep(storage, name="lrw", inits=tuple(INITS), depths=(2, 5, 10, 20), bns=(True, False),
             opts=("adam", "sgd"), seeds=1, lrs=LRS, new_columns=True, epochs=EPOCHS, layers=True):
    store = Store(str(storage), name)
    store.write_json("sweep.json", {"argv": ["sweeps/lr_window.py", "--smoke"], "search": SEARCH})
    for init in inits:
        for depth in depths:
            for bn in bns:
                for opt in opts:
                    for sample, lr in enumerate(lrs):
                        for seed in range(seeds):
                            status, acc, ran = outcome(init, depth, bn, opt, lr, seed, lrs)
                            ran = min(ran, epochs)
                            cfg = resolve(dict(INITS[init], depth=depth, bn=bn, optimizer=opt, lr=lr, seed=seed,
                                               epochs=epochs, train_subset=1000, val_size=200,
                                               **({"momentum": 0.9} if opt == "sgd" else {})))
                            tid = f"{name}_{init}_{depth}_{int(bn)}_{opt}_{sample}_{seed}"
                            store.write_rows("trials", tid, [dict(
                                cfg, trial_id=tid, sweep=name, study="lr_window", status=status, error="", opt=opt,
                                sample=sample, data_source="subset", n_train=800, n_val=200, val_acc=acc,
                                test_acc=acc, epochs_completed=ran, train_seconds=1.0, code_version="abc",
                                searcher="random", scheduler="asha", search_seed=0,
                                finished_at="2026-01-01T00:00:00")])
                            for epoch in range(1, ran + 1):
                                value = math.nan if status == "diverged" else acc * (0.5 + 0.5 * epoch / ran)
                                store.write_rows("epochs", f"{tid}-e{epoch}", [dict(
                                    trial_id=tid, sweep=name, epoch=epoch, val_acc=value, test_acc=value, lr=lr)])
                                if not layers:
                                    continue
                                rows = []
                                for i in range(depth + 1):
                                    row = dict(trial_id=tid, epoch=epoch, layer=i,
                                               layer_name=f"conv{i + 1}" if i < depth else "fc",
                                               grad_abs_mean=1e-3, weight_mean=0.0, weight_std=0.1)
                                    if new_columns:
                                        row.update(update_ratio=update_ratio(lr, i, epoch),
                                                   dead_fraction=dead_fraction(lr, i, epoch) if i < depth else math.nan)
                                    rows.append(row)
                                store.write_rows("layers", f"{tid}-e{epoch}", rows)
    return storage / name


def cell(frame, init, depth, bn=False, opt="sgd"):
    row = frame[(frame["init"] == init) & (frame["depth"] == depth) & (frame["bn"] == bn)
                & (frame["optimizer"] == opt)]
    assert len(row) == 1, (init, depth, bn, opt)
    return row.iloc[0]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One seed per lr: all 3 inits x depths 2, 5, 10, 20 x BN on/off x Adam/SGD (48 cells x 6 lrs)."""
    path = lr_sweep(tmp_path_factory.mktemp("single"))
    return report_mod.build_report(str(path))


def test_window_table_values(single):
    long = single.frames["lr_window_long"]
    assert len(long) == 3 * 4 * 2 * 2 and set(long["lrs_tried"]) == {len(LRS)}
    he = cell(long, "he_normal", 20)
    assert (he["low"], he["high"], he["best_lr"], he["above"], he["below"]) == (1e-3, 1e-1, 1e-2, 1.0, 1e-4)
    assert he["width"] == pytest.approx(2.0) and he["lrs_trained"] == 3 and he["gaps"] == 0
    assert he["best_mean"] == pytest.approx(60.0) and he["best_n"] == 1 and math.isnan(he["best_ci"])
    # He at depth 2 reaches the top of the range through an early-stopped trial that was above the threshold
    top = cell(long, "he_normal", 2)
    assert (top["low"], top["high"]) == (1e-4, 1.0) and top["width"] == pytest.approx(4.0) and math.isnan(top["above"])
    # N(0,1) at depth 20 trains nowhere: NaN numbers, width 0 for comparisons, its best lr still named
    none = cell(long, "normal", 20)
    assert math.isnan(none["low"]) and math.isnan(none["high"]) and math.isnan(none["width"])
    assert none["width_or_zero"] == 0.0 and none["lrs_trained"] == 0
    # a single trainable lr: width 0, not none
    one = cell(long, "xavier_normal", 20)
    assert (one["low"], one["high"], one["width"], one["lrs_trained"]) == (1e-2, 1e-2, 0.0, 1)
    # a gap: Xavier depth 2 with Adam fails at 1e-3 inside 1e-4..1e-1
    gap = cell(long, "xavier_normal", 2, opt="adam")
    assert (gap["low"], gap["high"], gap["gaps"]) == (1e-4, 1e-1, 1) and gap["width"] == pytest.approx(3.0)
    # every cell against the windows the sweep was built with
    for _, row in long.iterrows():
        win = window(row["init"], row["depth"], row["bn"])
        if win is None:
            assert math.isnan(row["low"])
        else:
            assert (row["low"], row["high"]) == win
            assert row["width"] == pytest.approx(math.log10(win[1] / win[0]))


def test_main_table_is_readable_with_none(single):
    main = pd.read_csv(single.outdir / "lr_window.csv", keep_default_na=False)
    assert list(main.columns) == ["init", "depth", "bn", "optimizer", "lrs trained", "lowest lr", "highest lr",
                                  "width (decades)", "best lr", "best val_acc (%)", "first lr above", "notes"]
    he, none = cell(main, "he_normal", 20), cell(main, "normal", 20)
    assert (he["lowest lr"], he["highest lr"], he["width (decades)"]) == ("0.001", "0.1", "2.00")
    assert single.frames["lr_window"].set_index(["init", "depth", "bn", "optimizer"]).loc[
        ("he_normal", 20, False, "sgd"), "best lr"] == "0.01"
    assert he["best val_acc (%)"] == "60.0 (n=1, no CI)" and he["first lr above"] == "1"
    assert he["lrs trained"] == "3 of 6"
    assert (none["lowest lr"], none["highest lr"], none["width (decades)"]) == ("none", "none", "none")
    assert none["first lr above"] == "-" and "nan" not in " ".join(main.astype(str).values.ravel()).lower()
    assert "1 lr(s) inside fail" in cell(main, "xavier_normal", 2, opt="adam")["notes"]
    assert "one lr trains" in cell(main, "xavier_normal", 20)["notes"]
    assert "reaches the highest lr tried" in cell(main, "he_normal", 2)["notes"]
    assert cell(main, "he_normal", 2)["first lr above"] == "top of range"
    # the main table is what the command prints: a short title, the threshold in the definitions beneath it
    assert single.main_table.startswith("Trainable lr window per cell\ntrains = final val_acc above 20.0% "
                                        "(chance 10.0% for 10 classes + 10 points)")
    assert "| he_normal | 20 | False | sgd | 3 of 6 | 0.001 | 0.1 | 2.00 | 0.01 |" in single.main_table


def test_points_early_stopped_and_diverged(single):
    pts = single.frames["lr_window_points"]
    div = pts[(pts["init"] == "he_normal") & (pts["depth"] == 20) & ~pts["bn"] & (pts["optimizer"] == "sgd")
              & (pts["lr"] == 1.0)].iloc[0]
    assert div["n_diverged"] == 1 and not div["trains"] and div["mean"] == pytest.approx(10.0)  # at chance
    early = pts[(pts["init"] == "he_normal") & (pts["depth"] == 2) & ~pts["bn"] & (pts["optimizer"] == "sgd")
                & (pts["lr"] == 1.0)].iloc[0]
    assert early["n_early_stopped"] == 1 and early["stopped_at"] == "3" and early["trains"]
    low = pts[(pts["init"] == "he_normal") & (pts["depth"] == 20) & ~pts["bn"] & (pts["optimizer"] == "sgd")
              & (pts["lr"] == 1e-4)].iloc[0]
    assert not low["trains"] and low["mean"] == pytest.approx(15.0)
    text = (single.outdir / "index.md").read_text()
    assert "an early-stopped trial counts with the value at which it was stopped" in text
    assert "a diverged trial never trains" in text


def test_claim_statements(single):
    claims = single.frames["lr_window_claim"]
    deep = claims[(claims["depth"] == 20) & ~claims["bn"] & (claims["optimizer"] == "sgd")].iloc[0]
    assert deep["he_vs_normal"] == "wider than" and deep["he_minus_normal"] == pytest.approx(2.0)
    assert deep["he_vs_xavier_normal"] == "wider than" and deep["he_minus_xavier_normal"] == pytest.approx(2.0)
    assert deep["statement"] == ("he_normal's window (0.001 to 0.1, 2.00 decades) is wider than normal's (none) by "
                                 "2.00 decades, and wider than xavier_normal's (0.01 to 0.01, 0.00 decades) by "
                                 "2.00 decades.")
    shallow = claims[(claims["depth"] == 2) & ~claims["bn"] & (claims["optimizer"] == "sgd")].iloc[0]
    assert shallow["he_minus_normal"] == pytest.approx(3.0) and shallow["he_minus_xavier_normal"] == pytest.approx(1.0)
    text = (single.outdir / "index.md").read_text()
    assert "- depth 20, no BN, sgd: he_normal's window (0.001 to 0.1, 2.00 decades) is wider than normal's" in text
    assert "against normal, He's window is wider in 16, as wide in 0 and narrower in 0 of 16 cells" in text
    assert "no test of the differences is possible" in text and "lr_window_paired" not in single.frames
    depth = single.frames["lr_window_depth"]
    he_sgd = depth[(depth["init"] == "he_normal") & ~depth["bn"] & (depth["optimizer"] == "sgd")].iloc[0]
    assert he_sgd["verdict"] == "narrows monotonically"
    assert he_sgd["widths"] == "4.00 at depth 2, 3.00 at depth 5, 2.00 at depth 10, 2.00 at depth 20"
    he_bn = depth[(depth["init"] == "he_normal") & depth["bn"] & (depth["optimizer"] == "sgd")].iloc[0]
    assert he_bn["verdict"] == "not monotone"
    assert "- he_normal, BN, sgd: 4.00 at depth 2, 3.00 at depth 5, 4.00 at depth 10, 2.00 at depth 20: not " \
           "monotone (widens from depth 5 (3.00) to depth 10 (4.00))." in text
    assert "- normal, no BN, adam: 1.00 at depth 2, 0.00 at depth 5, none at depth 10, none at depth 20: narrows " \
           "monotonically (down to none)." in text


def test_edges_pick_the_right_lrs(single):
    summary = single.frames["lr_window_edge_summary"]
    # every cell with a window that ends below the highest lr tried, and only those
    expected = sum(1 for (i, d) in WINDOWS for bn in (True, False) for o in ("adam", "sgd")
                   if window(i, d, bn) and window(i, d, bn)[1] < LRS[-1])
    assert len(summary) == expected
    he = cell(summary, "he_normal", 20)
    assert (he["lr_inside"], he["lr_above"], he["epoch"]) == (1e-1, 1.0, 1)
    assert he["epoch_used"] == "epoch 1: the lr above stopped after epoch 1" and he["status_above"] == "1 diverged"
    adam = cell(summary, "he_normal", 20, opt="adam")
    assert (adam["lr_inside"], adam["lr_above"], adam["epoch"]) == (1e-1, 1.0, EPOCHS)
    assert adam["epoch_used"] == f"epoch {EPOCHS}: the last epoch of both"
    xav = cell(summary, "xavier_normal", 10)
    assert (xav["lr_inside"], xav["lr_above"], xav["epoch"]) == (1e-2, 1e-1, 1)  # 0.1 early-stopped at rung 1
    assert xav["status_above"] == "1 early_stopped"
    edges = single.frames["lr_window_edges"]
    assert list(edges.columns) == ["init", "depth", "bn", "optimizer", "lr_inside", "lr_above", "epoch", "layer",
                                   "layer_name", "update_ratio_inside", "update_ratio_above", "dead_fraction_inside",
                                   "dead_fraction_above"]
    rows = edges[(edges["init"] == "he_normal") & (edges["depth"] == 20) & ~edges["bn"]
                 & (edges["optimizer"] == "sgd")].sort_values("layer")
    assert list(rows["layer"]) == list(range(21)) and list(rows["layer_name"])[-1] == "fc"
    for _, r in rows.iterrows():
        assert r["update_ratio_inside"] == pytest.approx(update_ratio(1e-1, r["layer"], 1))
        assert r["update_ratio_above"] == pytest.approx(update_ratio(1.0, r["layer"], 1))
        if r["layer_name"] == "fc":
            assert math.isnan(r["dead_fraction_inside"]) and math.isnan(r["dead_fraction_above"])
        else:
            assert r["dead_fraction_above"] == pytest.approx(dead_fraction(1.0, r["layer"], 1))
    assert he["update_ratio_median_above"] == pytest.approx(10 * he["update_ratio_median_inside"])
    assert (single.outdir / "lr_window_edges.png").stat().st_size > 10_000
    assert "times larger just above the window than just inside" in (single.outdir / "index.md").read_text()


def test_map_and_caveats(single):
    assert (single.outdir / "lr_window_map.png").stat().st_size > 30_000
    text = (single.outdir / "index.md").read_text()
    assert "At depth 20 the feature map reaches 1x1 after 5 pools (pooling stops at 1x1), so the last 9 of its 20 " \
           "convs see a 1x1 map" in text
    assert "Data: a subset of cifar10 (800 training images, 200 validation images)" in text
    assert f"Trials were planned for {EPOCHS} epoch(s)" in text
    assert "stopped early by ASHA (after epoch(s) 1, 3)" in text
    assert "(4 of them were already above the threshold and count as training)" in text
    assert "adjacent lrs are 1.00 decades apart" in text
    refs = check_self_contained(single.outdir / "report.html")
    assert len(refs.images) == 3  # the map, the edges, the search section's figure
    # the generic search section follows the study's own
    assert (single.outdir / "search_space.png").exists() and text.index("lr_window_map") < text.index("search_space")


def test_seeds_give_cis_and_a_paired_statement(tmp_path):
    path = lr_sweep(tmp_path, "seeds", inits=("he_normal", "normal"), depths=(2, 20), bns=(False,), opts=("sgd",),
                    seeds=3)
    rep = report_mod.build_report(str(path))
    long = rep.frames["lr_window_long"]
    he = cell(long, "he_normal", 20)
    # seed 2 fails at 1e-3, but the mean over the 3 seeds trains: the window is unchanged
    assert (he["low"], he["high"], he["best_lr"], he["best_n"]) == (1e-3, 1e-1, 1e-2, 3)
    scores = [60.0, 61.0, 62.0]
    assert he["best_mean"] == pytest.approx(61.0)
    assert he["best_ci"] == pytest.approx(sps.t.ppf(0.975, 2) * sps.sem(scores))
    main = rep.frames["lr_window"]
    assert cell(main, "he_normal", 20)["best val_acc (%)"] == f"61.0 ± {he['best_ci']:.1f} (n=3)"
    pts = rep.frames["lr_window_points"]
    mixed = pts[(pts["init"] == "he_normal") & (pts["depth"] == 20) & (pts["lr"] == 1e-3)].iloc[0]
    assert mixed["n"] == 3 and mixed["mean"] == pytest.approx((55.0 + 56.0 + 15.0) / 3) and mixed["trains"]
    # per-seed widths at depth 20: He 2, 2, 1 decades, N(0,1) none (0): paired t over 3 seeds
    res = rep.frames["lr_window_paired"]
    deep = res[(res["depth"] == 20) & (res["comparison"] == "he_normal vs normal")].iloc[0]
    diffs = np.array([2.0, 2.0, 1.0])
    assert deep["n"] == 3 and deep["diff"] == pytest.approx(diffs.mean())
    assert deep["p"] == pytest.approx(sps.ttest_rel(diffs, np.zeros(3)).pvalue)
    assert deep["statement"].startswith(f"he_normal wider than normal by {diffs.mean():.1f} ± {deep['ci']:.1f} "
                                        "decades (95% CI), 3 seeds, paired t p=")
    same = res[(res["depth"] == 2)].iloc[0]  # 4 vs 1 decades in every seed: no spread
    assert same["diff"] == pytest.approx(3.0)
    assert same["statement"] == ("he_normal wider than normal by 3.00 decades in every seed (3 seeds): the same "
                                 "difference each time, so no t test.")
    text = (rep.outdir / "index.md").read_text()
    assert "- depth 20, no BN, sgd: he_normal wider than normal by 1.7" in text
    assert "Each lr ran with several seeds: a lr trains in a cell when the mean over its seeds is above" in text
    assert (rep.outdir / "lr_window_map.png").exists()


def test_old_sweep_without_new_layer_columns_builds(tmp_path):
    path = lr_sweep(tmp_path, "old", inits=("he_normal", "normal"), depths=(2, 20), bns=(False,), opts=("sgd",),
                    new_columns=False)
    rep = report_mod.build_report(str(path))
    assert "lr_window_edges" not in rep.frames and not (rep.outdir / "lr_window_edges.png").exists()
    assert "has no update_ratio or dead_fraction values" in (rep.outdir / "index.md").read_text()
    assert cell(rep.frames["lr_window_long"], "he_normal", 20)["width"] == pytest.approx(2.0)
    assert (rep.outdir / "lr_window_map.png").exists() and (rep.outdir / "report.html").exists()


def test_command_prints_the_window_table(tmp_path, capsys):
    path = lr_sweep(tmp_path, "cli", inits=("he_normal", "normal"), depths=(20,), bns=(False,), opts=("sgd",),
                    layers=False)
    assert report_mod.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Trainable lr window per cell")
    assert "| normal | 20 | False | sgd | 0 of 6 | none | none | none |" in out


def test_the_page_leads_with_the_answer(single):
    """Findings, the map, the window table, then the details, in the study's section and the search section;
    the per-cell-and-lr table and the per-layer one folded away; the prose's Markdown rendered."""
    html_page = single.outdir / "report.html"
    assert outline(html_page) == [
        {"heading": "Study lr_window",
         "parts": ["findings", "figure:lr_window_map", "table:lr_window", "details"]},
        {"heading": "Search", "parts": ["findings", "figure:search_space", "table:search_best", "details"]}]
    page = html_page.read_text()
    findings = page[page.index('<div class="findings">'):page.index('<figure id="figure-lr_window_map"')]
    assert "A lr trains when its final val_acc above 20.0%" in findings
    assert "40 of 48 cells have a window; 8 train at no lr tried." in findings
    assert "Against normal, He&#x27;s window is wider in 16, as wide in 0 and narrower in 0 of 16 cells" in findings
    assert "the window narrows monotonically in 10 and is not monotone in 2 of 12 (init, bn, optimizer)" in findings
    assert "times larger just above the window than just inside" in findings
    # a short title, the definitions beneath it
    assert '<h3 id="lr_window">Trainable lr window per cell</h3><div class="about"><p>trains = final val_acc' in page
    # Markdown in the prose is rendered, not shown
    assert "A trial <em>trains</em> when" in page and "*trains*" not in page
    assert "<strong>Which learning rates train.</strong>" in page and "**" not in page
    # long tables: folded in the page, a CSV link in index.md
    for name, rows in (("lr_window_points", 288), ("lr_window_long", 48), ("lr_window_edges", None)):
        assert re.search(f'<details id="{name}"><summary>[^<]* \\({rows or "[0-9]+"} rows\\)</summary>', page), name
    index = (single.outdir / "index.md").read_text()
    assert "[lr_window_points.csv](lr_window_points.csv): 288 rows, not shown here" in index
    assert "| he_normal | 20 | False | sgd | 1e-05 |" not in index  # no row of the points table on the page
    assert index.index("### Findings") < index.index("![Which lrs train](lr_window_map.png)") \
        < index.index("### Trainable lr window per cell") < index.index("### Details")


@pytest.mark.parametrize("depth", [1, 2, 5, 10, 11, 12, 20, 50])
def test_cnn_geometry_matches_the_torch_model(depth):
    """trainables.geometry is what the CNN builder uses: the map side each conv reads and the side the classifier
    flattens, measured on the real model, agree with it at every depth."""
    model = build_model(resolve(dict(model="cnn", depth=depth, width=4, bn=False)), 10)
    seen, flattened = [], []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
        elif isinstance(module, torch.nn.Flatten):
            module.register_forward_pre_hook(lambda m, args: flattened.append(args[0].shape[-1]))
    model(torch.zeros(1, 3, geometry.IMAGE_SIZE, geometry.IMAGE_SIZE))
    sides = geometry.cnn_map_sides(depth)
    assert seen == [geometry.IMAGE_SIZE, *sides[:-1]] and flattened == [sides[-1]]
    assert geometry.cnn_convs_on_1x1(depth) == seen.count(1)
    assert geometry.cnn_pools(depth) == sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_lr_window_reads_geometry_and_class_counts_from_trainables():
    """No copy of the model's pooling or of the class counts in the report: one table, trainables'."""
    assert compute.NUM_CLASSES is geometry.NUM_CLASSES is data.NUM_CLASSES
    assert not hasattr(compute, "map_size") and not hasattr(compute, "CLASSES")
    trials = pd.DataFrame({"dataset": ["cifar100"], "val_acc": [0.5], "status": ["completed"]})
    s = compute.judge_settings("/nonexistent", trials)
    assert (s["classes"], s["chance"], s["threshold"]) == (100, 1.0, 11.0)
    t = pd.DataFrame({"depth": [2, 12], "status": "completed", "epochs": 1, "ran": 1, "trains": True, "lr": 1e-3})
    notes = compute.caveats(t, t, t.assign(init="he_normal"), ["init"], dict(datasets=["cifar10"], search={}))
    assert notes[0].startswith(f"At depth 12 the feature map reaches 1x1 after {geometry.cnn_pools(12)} pools")
    assert f"the last {geometry.cnn_convs_on_1x1(12)} of its 12 convs see a 1x1 map" in notes[0]
