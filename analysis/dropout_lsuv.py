"""Report for the dropout/LSUV slice of the depth grid: final accuracy by scheme x dropout x depth, curves."""
from __future__ import annotations

from analysis.depth_grid import final_accuracy
from analysis.plots import panel_lines
from analysis.report import Report, data_caveats, reference


def build(report: Report, tables: dict) -> None:
    trials, epochs = tables["trials"], tables["epochs"]
    protocol = {k: v for k, v in reference("depth_grid")["protocol"].items() if k != "data_source"}
    for note in data_caveats(trials, protocol):
        report.text(f"> {note}")
    keys = ["scheme", "dropout", "depth"]
    stats = final_accuracy(trials, keys)
    report.table("final_test_acc_long", stats.round(2), "Final test accuracy (%): mean, std over seeds, n")
    wide = stats.pivot_table(index=["scheme", "dropout"], columns="depth", values="mean").round(2)
    wide.columns = [f"depth {d}" for d in wide.columns]
    report.table("final_test_acc", wide.reset_index(), "Final test accuracy (%), mean over seeds", main=True)
    curves = epochs.merge(trials[["trial_id", *keys]], on="trial_id")
    for split in ("train", "test"):
        curves[f"{split}_acc_pct"] = curves[f"{split}_acc"] * 100
        report.figure(f"{split}_acc_vs_epoch", panel_lines(
            curves, ["scheme", "depth"], "dropout", "epoch", f"{split}_acc_pct", ylabel=f"{split} accuracy (%)",
            xlabel="epoch", title=f"{split.capitalize()} accuracy by epoch, one line per dropout rate"),
            f"{split.capitalize()} accuracy vs epoch, one line per dropout rate")
