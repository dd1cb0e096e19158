"""Report for study 000: final accuracy by init x activation x depth, curves, gradient flow."""
from __future__ import annotations

import pandas as pd

from analysis.plots import errorbar_lines, panel_lines
from analysis.document import Report
from analysis.tables import extremes_text, fmt, paired_table, stat_table, varying_keys


def build(report: Report, tables: dict) -> None:
    trials, epochs, layers = tables["trials"], tables["epochs"], tables["layers"]
    # The study's keys, plus any axis a run added with --grid (e.g. lr), so cells never mix settings.
    keys = varying_keys(trials, ["init", "activation", "depth"])
    rows = [k for k in keys if k != "depth"]
    stats = stat_table(report, "final_test_acc", trials, "test_acc", rows=rows, columns="depth", scale=100,
                       source="depth_grid", main=True, caption="Final test accuracy (%)")
    report.findings(extremes_text(stats, keys, "final test accuracy (%)"))
    paired_table(report, "paired_init", trials, "test_acc", factor="init", a="he_normal", b="normal", keys=keys,
                 scale=100, caption="He vs N(0,1) init, paired by seed (difference in accuracy points)")
    paired_table(report, "paired_activation", trials, "test_acc", factor="activation", a="prelu", b="relu",
                 keys=keys, scale=100, caption="PReLU vs ReLU, paired by seed (difference in accuracy points)")
    extra = {k: stats[k].iloc[0] for k in rows if k not in ("init", "activation")}
    shown = stats[(stats[list(extra)] == pd.Series(extra)).all(axis=1)] if extra else stats
    if len(shown):
        at = "".join(f", {k}={fmt(v)}" for k, v in extra.items())
        report.figure("final_test_acc_vs_depth", errorbar_lines(
            shown, "depth", "init", style="activation", reference="source", xlabel="depth (conv layers)",
            ylabel="final test accuracy (%)",
            title=f"Final test accuracy vs depth{at}: mean ± 95% CI over seeds; hollow squares = source"),
            f"Final test accuracy vs depth{at}", "Colour = init, line style = activation; mean ± 95% CI over seeds; "
            "hollow squares = the source's figures.", main=True)

    meta = trials[["trial_id", "init", "activation", "depth"]]
    curves = epochs.merge(meta, on="trial_id")
    curves["test_acc_pct"] = curves["test_acc"] * 100
    report.figure("test_acc_vs_epoch", panel_lines(
        curves, ["init", "activation"], "depth", "epoch", "test_acc_pct",
        ylabel="test accuracy (%)", xlabel="epoch", title="Test accuracy by epoch (mean over seeds)"),
        "Test accuracy vs epoch", "One line per depth, mean over seeds.")
    report.figure("avg_weight_vs_epoch", panel_lines(
        curves, ["init", "activation"], "depth", "epoch", "avg_weight",
        ylabel="mean of per-tensor parameter means", xlabel="epoch", title="Average weight by epoch"),
        "Average weight vs epoch", "The seed's 'average weight': the mean of the per-tensor parameter means.")

    flow = layers.merge(meta, on="trial_id")
    last = flow.groupby("trial_id")["epoch"].transform("max")
    flow = flow[(flow["epoch"] == 1) | (flow["epoch"] == last)].copy()
    flow["when"] = flow["epoch"].eq(1).map({True: "first epoch", False: "last epoch"})
    report.figure("gradient_flow", panel_lines(
        flow, ["init", "activation"], "depth", "layer", "grad_abs_mean",
        ylabel="mean |grad| over the epoch's steps", xlabel="layer (0 = input conv)", logy=True,
        title="Gradient flow: first (dashed) vs last (solid) epoch", style="when",
        style_values={"first epoch": "--", "last epoch": "-"}),
        "Gradient flow per layer", "Mean |grad| per layer, first epoch dashed, last epoch solid.")
