"""Report for the dropout/LSUV slice of the depth grid: final accuracy by scheme x dropout x depth, curves."""
from __future__ import annotations

from analysis.plots import panel_lines
from analysis.document import Report
from analysis.tables import extremes_text, paired_table, stat_table, varying_keys


def build(report: Report, tables: dict) -> None:
    trials, epochs = tables["trials"], tables["epochs"]
    keys = varying_keys(trials, ["scheme", "dropout", "depth"])
    stats = stat_table(report, "final_test_acc", trials, "test_acc", rows=[k for k in keys if k != "depth"],
                       columns="depth", scale=100, main=True, caption="Final test accuracy (%)")
    report.findings(extremes_text(stats, keys, "final test accuracy (%)"))
    if trials["scheme"].nunique() == 2:
        a, b = sorted(trials["scheme"].unique())
        paired_table(report, "paired_scheme", trials, "test_acc", factor="scheme", a=a, b=b, keys=keys, scale=100,
                     caption=f"{a} vs {b} init, paired by seed (difference in accuracy points)")
    curves = epochs.merge(trials[["trial_id", *keys]], on="trial_id")
    for split in ("train", "test"):
        curves[f"{split}_acc_pct"] = curves[f"{split}_acc"] * 100
        report.figure(f"{split}_acc_vs_epoch", panel_lines(
            curves, ["scheme", "depth"], "dropout", "epoch", f"{split}_acc_pct", ylabel=f"{split} accuracy (%)",
            xlabel="epoch", title=f"{split.capitalize()} accuracy by epoch, one line per dropout rate"),
            f"{split.capitalize()} accuracy vs epoch", "One panel per scheme and depth, one line per dropout rate.",
            main=split == "test")
