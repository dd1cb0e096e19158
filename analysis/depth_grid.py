"""Report for study 000: final accuracy by init x activation x depth, curves, gradient flow."""
from __future__ import annotations

import pandas as pd

from analysis.plots import panel_lines
from analysis.report import Report, data_caveats, reference


def reference_frame(study: str) -> pd.DataFrame:
    ref = reference(study)
    return pd.DataFrame(ref["values"], columns=[*ref["keys"], "reported"])


def final_accuracy(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, std and n of final test accuracy (percent) per cell, over seeds."""
    done = trials[trials["status"].isin(["completed", "diverged"])].copy()
    done["acc"] = done["test_acc"] * 100
    stats = done.groupby(keys)["acc"].agg(mean="mean", std="std", n="count").reset_index()
    return stats


def build(report: Report, tables: dict) -> None:
    trials, epochs, layers = tables["trials"], tables["epochs"], tables["layers"]
    ref = reference("depth_grid")
    for note in data_caveats(trials, {k: v for k, v in ref["protocol"].items() if k != "data_source"}):
        report.text(f"> {note}")
    keys = ["init", "activation", "depth"]
    stats = final_accuracy(trials, keys).merge(reference_frame("depth_grid"), on=keys, how="left")
    stats["delta"] = stats["mean"] - stats["reported"]
    report.table("final_test_acc_long", stats.round(2),
                 "Final test accuracy (%) per cell: mean, std over seeds, n, the source's figure and our delta")
    cell = stats.apply(lambda r: (f"{r['mean']:.1f} (n=1, no spread)" if r["n"] == 1 else
                                  f"{r['mean']:.1f} ± {r['std']:.1f} (n={r['n']})")
                       + ("" if pd.isna(r["reported"]) else f" [src {r['reported']:.1f}]"), axis=1)
    wide = stats.assign(cell=cell).pivot(index=["init", "activation"], columns="depth", values="cell")
    wide.columns = [f"depth {d}" for d in wide.columns]
    report.table("final_test_acc", wide.reset_index(),
                 "Final test accuracy (%): mean ± std (n seeds) [source document's value]", main=True)

    meta = trials[["trial_id", "init", "activation", "depth"]]
    curves = epochs.merge(meta, on="trial_id")
    curves["test_acc_pct"] = curves["test_acc"] * 100
    report.figure("test_acc_vs_epoch", panel_lines(
        curves, ["init", "activation"], "depth", "epoch", "test_acc_pct",
        ylabel="test accuracy (%)", xlabel="epoch", title="Test accuracy by epoch (mean over seeds)"),
        "Test accuracy vs epoch, one line per depth")
    report.figure("avg_weight_vs_epoch", panel_lines(
        curves, ["init", "activation"], "depth", "epoch", "avg_weight",
        ylabel="mean of per-tensor parameter means", xlabel="epoch", title="Average weight by epoch"),
        "Average weight vs epoch (the seed's 'average weight')")

    flow = layers.merge(meta, on="trial_id")
    last = flow.groupby("trial_id")["epoch"].transform("max")
    flow = flow[(flow["epoch"] == 1) | (flow["epoch"] == last)].copy()
    flow["when"] = flow["epoch"].eq(1).map({True: "first epoch", False: "last epoch"})
    report.figure("gradient_flow", panel_lines(
        flow, ["init", "activation"], "depth", "layer", "grad_abs_mean",
        ylabel="mean |grad| over the epoch's steps", xlabel="layer (0 = input conv)", logy=True,
        title="Gradient flow: first (dashed) vs last (solid) epoch", style="when",
        style_values={"first epoch": "--", "last epoch": "-"}),
        "Gradient flow per layer, first vs last epoch")
