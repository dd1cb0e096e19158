"""Reports for study 002 (vgg_depth, vgg_regularization, vgg_deeper): tables beside the study's figures,
loss/accuracy curves (train dashed, validation solid) and the gradient-flow figure.

Every trial gets a `variant` (the line it is drawn as) and a `panel`: the model for
vgg_depth/vgg_deeper; for vgg_regularization one panel per factor (weight decay, LR
speed-up, batch), each holding the baseline VGG38 RN+WP (weight decay 1e-3, x1,
batch 100) beside the settings that differ from it in that one factor.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps

from analysis.plots import panel_lines
from analysis.document import Report, data_caveats, reference
from trainables.models.vgg import weight_layer_count

METRICS = ["train_acc", "val_acc", "train_loss", "val_loss", "test_acc", "test_loss"]
BASELINE = dict(weight_decay=1e-3, lr_scale=1.0, batch_size=100)  # the study's "VGG38 RN+WP"
FACTORS = {"weight decay": "weight_decay", "LR speed-up": "lr_scale", "batch": "batch_size"}
MAX_FLOW_LINES = 12  # epochs drawn in the gradient-flow figure (evenly spaced, first and last included)


def describe(trials: pd.DataFrame) -> pd.DataFrame:
    trials = trials.copy()
    trials["weight_layers"] = [weight_layer_count(r) for r in trials[["stages", "blocks"]].to_dict("records")]
    trials["arch"] = trials["stages"].astype(str) + "x" + trials["blocks"].astype(str)
    return trials


def views(trials: pd.DataFrame, study: str) -> pd.DataFrame:
    """trials with `panel` and `variant`; a regularization baseline appears once per factor panel."""
    if study != "vgg_regularization":
        return trials.assign(panel=trials["model"], variant=trials["model"] + " (" + trials["arch"] + ")")
    parts = []
    for name, key in FACTORS.items():
        others = [k for k in BASELINE if k != key]
        sel = trials[np.logical_and.reduce([np.isclose(trials[k], BASELINE[k]) for k in others])]
        parts.append(sel.assign(panel=name, variant=[f"{key}={v:g}" for v in sel[key]]))
    return pd.concat(parts, ignore_index=True)


def final_table(trials: pd.DataFrame, epochs: pd.DataFrame, keys: list[str], study: str,
                describe_cols: list[str]) -> pd.DataFrame:
    """Final metrics per `keys` (mean over seeds, accuracies in %), each beside the study's figure."""
    done = trials[trials["status"].isin(["completed", "diverged"])].copy()
    for m in ("train_acc", "val_acc", "test_acc"):
        done[m] = done[m] * 100
    speed = epochs.groupby("trial_id")["it_per_s"].median().rename("it_per_s")
    done = done.merge(speed, left_on="trial_id", right_index=True, how="left")
    metrics = METRICS + ["it_per_s"]
    ours = done.groupby(keys).agg(**{c: (c, "first") for c in describe_cols}, n=("trial_id", "count"),
                                  **{m: (m, "mean") for m in metrics}).reset_index()
    ref = reference(study)
    src = pd.DataFrame(ref["values"], columns=[*ref["keys"], *ref["metrics"]])
    src = src.rename(columns={m: f"src {m}" for m in ref["metrics"]})
    table = ours.merge(src, on=ref["keys"], how="left")
    ordered = [*keys, *describe_cols, "n"]
    for m in metrics:
        ordered += [m] + ([f"src {m}"] if f"src {m}" in table else [])
    return table[ordered].round(3)


def curves(epochs: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per trial x epoch x split, with loss and accuracy (%)."""
    rows = []
    for split, prefix in (("train", "train"), ("validation", "val")):
        part = epochs[["trial_id", "epoch"]].assign(split=split, loss=epochs[f"{prefix}_loss"],
                                                    acc=epochs[f"{prefix}_acc"] * 100)
        rows.append(part)
    return pd.concat(rows, ignore_index=True).merge(meta, on="trial_id")


def flow_epochs(epochs: pd.Series) -> list[int]:
    unique = sorted(epochs.unique())
    if len(unique) <= MAX_FLOW_LINES:
        return unique
    return [unique[i] for i in np.linspace(0, len(unique) - 1, MAX_FLOW_LINES).round().astype(int)]


def gradient_summary(flow: pd.DataFrame) -> pd.DataFrame:
    """Per variant, first and last epoch: mean |grad| at the entry conv, the middle, the last conv, the head."""
    bounds = flow.groupby("variant")["epoch"].agg(["min", "max"])
    rows = []
    for (variant, epoch), part in flow.groupby(["variant", "epoch"]):
        if epoch not in tuple(bounds.loc[variant]):
            continue
        g = part.groupby("layer")["grad_abs_mean"].mean()
        convs = g.index[:-1]
        rows.append(dict(variant=variant, epoch=epoch, entry_conv=g.iloc[0], middle_conv=g[convs[len(convs) // 2]],
                         last_conv=g[convs[-1]], head=g.iloc[-1], entry_over_last_conv=g.iloc[0] / g[convs[-1]]))
    return pd.DataFrame(rows)


def best_text(table: pd.DataFrame, keys: list[str]) -> str:
    """The setting with the highest final validation accuracy (test accuracy if none), beside the source's."""
    metric = next((m for m in ("val_acc", "test_acc") if m in table and table[m].notna().any()), None)
    if metric is None:
        return "No finished trial with an accuracy: nothing to rank."
    best = table.loc[table[metric].idxmax()]
    where = ", ".join(f"{k}={best[k]:g}" if isinstance(best[k], float) else f"{k}={best[k]}" for k in keys)
    source = best.get(f"src {metric}")
    beside = f" (source: {source:.1f}%)" if source is not None and not pd.isna(source) else ""
    return (f"Highest final {metric}: {where}, {best[metric]:.1f}%{beside}, mean over {int(best['n'])} trial(s); "
            f"{len(table)} setting(s) in the table.")


def build(report: Report, tables: dict) -> None:
    trials, epochs, layers = describe(tables["trials"]), tables["epochs"], tables["layers"]
    study = trials["study"].iloc[0]
    ref = reference(study)
    for note in data_caveats(trials, ref["protocol"]):
        report.text(f"> {note}")
    report.text(f"Source figures (`src` columns): {ref['source']}; {ref['section']}. "
                "Accuracies in %, `it_per_s` is the median over epochs of training steps per second.")

    shown = ["stages", "blocks", "weight_layers", "bn", "residual", "activation", "params"]
    metrics_note = "Mean over seeds; `src` columns: the source's figures."
    if study == "vgg_regularization":
        keys = ["weight_decay", "lr_scale", "batch_size"]
        table = final_table(trials, epochs, keys, study, ["group"])
        wd = table[np.isclose(table["lr_scale"], 1.0) & (table["batch_size"] == 100)]
        lr_batch = table[np.isclose(table["weight_decay"], BASELINE["weight_decay"])]
        report.table("weight_decay", wd, "Weight decay on VGG38 BN+residual",
                     f"L2 in Adam; final metrics. {metrics_note}", main=True)
        report.table("lr_batch", lr_batch, "LR speed-up and batch size",
                     f"Around VGG38 RN+WP (weight decay 1e-3). {metrics_note}")
    else:
        keys = ["model"]
        table = final_table(trials, epochs, keys, study, shown)
        report.table("final_metrics", table, "Final metrics per model",
                     "Train, validation and test" + (", with training speed" if study == "vgg_deeper" else "")
                     + f". {metrics_note}", main=True)
    report.findings(best_text(table, keys))

    meta = views(trials, study)[["trial_id", "panel", "variant"]]
    long = curves(epochs, meta)
    style = dict(style="split", style_values={"train": "--", "validation": "-"})
    panels = ["panel"] if study == "vgg_regularization" else []
    for name, col, label in (("loss", "loss", "cross-entropy"), ("accuracy", "acc", "accuracy (%)")):
        report.figure(f"{name}_vs_epoch", panel_lines(
            long, panels, "variant", "epoch", col, ylabel=label, xlabel="epoch",
            title=f"{name.capitalize()} by epoch: train dashed, validation solid (mean over seeds)", **style),
            f"{name.capitalize()} vs epoch", "Train dashed, validation solid; mean over seeds.",
            main=name == "accuracy")

    flow = layers.merge(meta.drop_duplicates("trial_id"), on="trial_id")  # each trial once
    summary = gradient_summary(flow)
    flow = flow[flow["epoch"].isin(flow_epochs(flow["epoch"]))]
    cmap = colormaps["viridis"]
    chosen = sorted(flow["epoch"].unique())
    palette = {e: cmap(i / max(len(chosen) - 1, 1)) for i, e in enumerate(chosen)}
    report.figure("gradient_flow", panel_lines(
        flow, ["variant"], "epoch", "layer", "grad_abs_mean", ylabel="mean |grad| of the weights",
        xlabel="weight layer (0 = entry conv, last = linear head)", logy=True, palette=palette,
        title="Gradient flow: one line per epoch (dark = early, yellow = late)"),
        "Gradient flow per layer", "One line per epoch" + (f" ({len(chosen)} evenly spaced epochs shown)"
                                                           if len(chosen) < flow["epoch"].max() else "") + ".")
    report.table("gradient_summary", summary, "Gradient at the ends of the net",
                 "Mean |grad| at the entry conv, middle conv, last conv and head, first and last epoch.")
    if len(summary):
        last = summary[summary["epoch"] == summary.groupby("variant")["epoch"].transform("max")]
        ratio = last["entry_over_last_conv"]
        report.findings(f"At the last epoch the entry conv's mean |grad| is {ratio.min():.3g} to {ratio.max():.3g} "
                        f"times the last conv's (over {len(last)} variant(s)).")
