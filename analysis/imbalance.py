"""Report for study 004: per-class tables, weighted vs unweighted loss, k-fold, confusion, kernels.

A condition is (net, class_weights, imbalance_ratio). With k-fold, each
condition and seed keeps the fold whose validation score (macro aggregated on
its validation part) is best and reports that model's test metrics, as the
source did; the mean ± std over folds is reported beside it. Per-class numbers
are on the (balanced) test set at the last epoch, averaged over seeds.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.kernels import conv_weights, find_checkpoint, init_vs_final, kernel_figure, load_state
from analysis.plots import colours
from analysis.document import Report, data_caveats, reference

COND = ["net", "class_weights", "imbalance_ratio"]
METRICS = ["ova_acc", "precision", "recall", "bcr", "aggregated"]
def weight_order(values) -> list:
    """Class-weight schemes with the unweighted baseline first."""
    return sorted(set(values), key=lambda w: (w != "none", w))


SHORT = dict(ova_acc="Acc", precision="P", recall="R", bcr="BCR", aggregated="Agg")


def last_epoch(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["epoch"] == df.groupby("trial_id")["epoch"].transform("max")]


def trial_meta(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[trials["status"].isin(["completed", "diverged"])].copy()
    if "net" not in done:
        done["net"] = done["model"]
    return done[["trial_id", *COND, "fold", "folds", "seed", "test_acc", "val_acc"]]


def pick_best_fold(meta: pd.DataFrame, classes: pd.DataFrame) -> pd.DataFrame:
    """One trial per condition and seed: the fold with the best validation macro aggregated score."""
    val = last_epoch(classes[classes["split"] == "val"]).groupby("trial_id")["aggregated"].mean()
    meta = meta.assign(val_score=meta["trial_id"].map(val).fillna(meta["val_acc"]).fillna(0.0))
    best = meta.sort_values("val_score", ascending=False).groupby([*COND, "seed"], sort=False).head(1)
    return best.sort_values([*COND, "seed"])


def per_class_table(chosen: pd.DataFrame, classes: pd.DataFrame) -> pd.DataFrame:
    """Test metrics per condition and class (mean over seeds), with training count and test support."""
    test = last_epoch(classes[classes["split"] == "test"]).merge(chosen[["trial_id", *COND]], on="trial_id")
    return (test.groupby([*COND, "class_index", "class_name"])[["train_count", "support", *METRICS]]
            .mean().reset_index())


def ranked(per_class: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Top-n and worst-n classes by aggregated score, per condition, with all metrics."""
    out = []
    for key, sub in per_class.groupby(COND):
        order = sub.sort_values("aggregated", ascending=False)
        for which, part in (("top", order.head(n)), ("worst", order.tail(n).iloc[::-1])):
            out.append(part.assign(which=which, rank=range(1, len(part) + 1)))
    return pd.concat(out, ignore_index=True)


def cell(r) -> str:
    return (f"{r['class_name']} ({int(r['train_count'])}) "
            + ", ".join(f"{SHORT[m]}={r[m]:.2f}" for m in METRICS))


def ranked_wide(rank: pd.DataFrame, weights: str, ratio: float) -> pd.DataFrame:
    """The source's layout: rank rows, one column per net, each cell 'class (n_train) Acc=.. P=.. ...'."""
    sub = rank[(rank["class_weights"] == weights) & (rank["imbalance_ratio"] == ratio)].copy()
    sub["cell"] = sub.apply(cell, axis=1)
    wide = sub.pivot(index=["which", "rank"], columns="net", values="cell").reset_index()
    wide["which"] = pd.Categorical(wide["which"], ["top", "worst"])
    return wide.sort_values(["which", "rank"]).rename(columns={"which": "class set"})


def averages(chosen: pd.DataFrame, per_class: pd.DataFrame) -> pd.DataFrame:
    """The study's summary numbers per condition: overall accuracy, macro means, median aggregated."""
    macro = per_class.groupby(COND)[METRICS].mean().add_prefix("macro_")
    median = per_class.groupby(COND)["aggregated"].median().rename("median_aggregated")
    acc = chosen.groupby(COND)["test_acc"].mean().rename("accuracy")
    return pd.concat([acc, macro, median], axis=1).reset_index()


def tail_head(per_class: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Mean test recall of the k rarest and the k most frequent training classes, per condition."""
    def one(sub):
        order = sub.sort_values(["train_count", "class_index"])
        return pd.Series(dict(tail_recall=order.head(k)["recall"].mean(), head_recall=order.tail(k)["recall"].mean()))
    return per_class.groupby(COND).apply(one, include_groups=False).reset_index()


def weighted_vs_unweighted(avg: pd.DataFrame, th: pd.DataFrame) -> pd.DataFrame:
    both = avg.merge(th, on=COND)
    cols = ["accuracy", "macro_recall", "macro_precision", "macro_aggregated", "tail_recall", "head_recall"]
    wide = both.pivot(index=["net", "imbalance_ratio"], columns="class_weights", values=cols)
    wide = wide[[(m, w) for m in cols for w in weight_order(both["class_weights"])]]
    wide.columns = [f"{metric} [{w}]" for metric, w in wide.columns]
    return wide.reset_index()


def fold_table(meta: pd.DataFrame, chosen: pd.DataFrame, per_trial_agg: pd.Series) -> pd.DataFrame:
    """Best fold's test numbers beside mean ± std over all folds, per condition."""
    meta = meta.assign(test_macro_aggregated=meta["trial_id"].map(per_trial_agg))
    spread = meta.groupby(COND).agg(folds=("fold", "nunique"), test_acc_mean=("test_acc", "mean"),
                                    test_acc_std=("test_acc", "std"),
                                    test_agg_mean=("test_macro_aggregated", "mean"),
                                    test_agg_std=("test_macro_aggregated", "std"))
    best = chosen.assign(test_macro_aggregated=chosen["trial_id"].map(per_trial_agg)).groupby(COND).agg(
        best_fold=("fold", "first"), best_val_score=("val_score", "mean"), best_test_acc=("test_acc", "mean"),
        best_test_agg=("test_macro_aggregated", "mean"))
    return best.join(spread).reset_index()


def recall_vs_frequency(per_class: pd.DataFrame, ratio: float):
    sub = per_class[per_class["imbalance_ratio"] == ratio]
    nets = sorted(sub["net"].unique())
    weights = weight_order(sub["class_weights"])
    palette = colours(weights)
    fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4), squeeze=False, sharey=True)
    for ax, net in zip(axes.flat, nets):
        part = sub[sub["net"] == net]
        names = part.drop_duplicates("class_index").sort_values("class_index")
        x = np.arange(len(names))
        width = 0.8 / len(weights)
        for i, w in enumerate(weights):
            rec = part[part["class_weights"] == w].set_index("class_index")["recall"].reindex(names["class_index"])
            ax.bar(x + (i - (len(weights) - 1) / 2) * width, rec.values, width, color=palette[w],
                   label=f"class_weights={w}")
        ax.set_xticks(x, names["class_name"], rotation=60, fontsize=8)
        ax.set_ylabel("test recall")
        ax.set_ylim(0, 1)
        ax.set_title(f"net={net}, imbalance_ratio={ratio:g}")
        twin = ax.twinx()
        twin.plot(x, names["train_count"].values, "k.-", label="training images")
        twin.set_yscale("log")
        twin.set_ylabel("training images per class (log)")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def confusion_heatmaps(chosen: pd.DataFrame, confusion: pd.DataFrame, per_class: pd.DataFrame, ratio: float):
    picks = chosen[chosen["imbalance_ratio"] == ratio].groupby(["net", "class_weights"]).head(1)
    nets, weights = sorted(picks["net"].unique()), weight_order(picks["class_weights"])
    names = per_class.drop_duplicates("class_index").sort_values("class_index")["class_name"].tolist()
    n = len(names)
    fig, axes = plt.subplots(len(nets), len(weights), figsize=(4.2 * len(weights), 4 * len(nets)), squeeze=False)
    test = last_epoch(confusion[confusion["split"] == "test"])
    for _, row in picks.iterrows():
        ax = axes[nets.index(row["net"]), weights.index(row["class_weights"])]
        cells = test[test["trial_id"] == row["trial_id"]]
        m = np.zeros((n, n))
        np.add.at(m, (cells["true"].to_numpy(), cells["pred"].to_numpy()), cells["count"].to_numpy())
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), names if n <= 20 else [], rotation=90, fontsize=7)
        ax.set_yticks(range(n), names if n <= 20 else [], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{row['net']}, class_weights={row['class_weights']}", fontsize=9)
    fig.suptitle(f"Test confusion (row-normalised), imbalance_ratio={ratio:g}")
    fig.tight_layout()
    return fig


def kernel_rows(path, chosen: pd.DataFrame, ratio: float) -> list:
    rows = []
    picks = chosen[chosen["imbalance_ratio"] == ratio]
    picks = picks.sort_values("class_weights", key=lambda s: s != "none").groupby("net").head(1)
    for _, row in picks.iterrows():
        ckpt = find_checkpoint(path, row["trial_id"])
        if ckpt is None:
            continue
        state = load_state(ckpt)
        if "init_model" not in state:
            continue
        rows.append((f"{row['net']} ({row['class_weights']})", conv_weights(state["init_model"])[0][1],
                     conv_weights(state["model"])[0][1], conv_weights(state["model"])[-1]))
    return rows


def weighting_findings(avg: pd.DataFrame, heads: pd.DataFrame) -> str:
    """Per net and imbalance ratio: what each loss weighting does to tail recall, macro aggregated score and
    accuracy against the unweighted loss."""
    both = avg.merge(heads, on=COND)
    plain = both[both["class_weights"] == "none"].set_index(["net", "imbalance_ratio"])
    lines = []
    for _, row in both[both["class_weights"] != "none"].iterrows():
        key = (row["net"], row["imbalance_ratio"])
        if key not in plain.index:
            continue
        ref = plain.loc[key]
        changes = ", ".join(f"{label} {ref[col]:.2f} -> {row[col]:.2f}" for col, label in (
            ("tail_recall", "tail recall (3 rarest classes)"), ("macro_aggregated", "macro aggregated"),
            ("accuracy", "accuracy")))
        lines.append(f"- {row['net']}, imbalance_ratio={row['imbalance_ratio']:g}, class_weights="
                     f"{row['class_weights']} against none: {changes}.")
    if lines:
        return "**Weighted against unweighted loss** (test set, mean over seeds):\n\n" + "\n".join(lines)
    best = both.loc[both["macro_aggregated"].idxmax()]
    return (f"Highest macro aggregated test score: {best['net']}, class_weights={best['class_weights']}, "
            f"imbalance_ratio={best['imbalance_ratio']:g}: {best['macro_aggregated']:.2f} (no unweighted run "
            "beside a weighted one to compare).")


def build(report: Report, tables: dict) -> None:
    trials, classes, confusion = tables["trials"], tables["classes"], tables["confusion"]
    for note in data_caveats(trials, {}):  # the source states no epochs or learning rate for all nets
        report.text(f"> {note}")
    if not len(classes):
        report.findings("No per-class rows (classes.parquet is empty): run with class_metrics=final or every.")
        return
    meta = trial_meta(trials)
    chosen = pick_best_fold(meta, classes)
    per_class = per_class_table(chosen, classes)
    ratios = sorted(per_class["imbalance_ratio"].unique())
    tail_ratio = ratios[-1]
    report.text("Class counts of the training sets (imbalance_ratio: counts per class index): "
                + "; ".join(f"{r:g}: {c}" for r, c in trials.groupby("imbalance_ratio")["train_class_counts"]
                            .first().items()))

    rank = ranked(per_class)
    report.table("top_worst_classes_long", rank.round(3), "Top-5 and worst-5 classes, all conditions",
                 "By aggregated score, one row per condition and class.", fold=True)
    for ratio in ratios[::-1]:
        for weights in weight_order(per_class["class_weights"]):
            report.table(f"top_worst_w-{weights}_rho-{ratio:g}", ranked_wide(rank, weights, ratio),
                         f"Top-5 / worst-5 test classes, class_weights={weights}, imbalance_ratio={ratio:g}",
                         "Each cell: class (training images), one-vs-rest Acc, P, R, BCR, Agg.",
                         main=(ratio == tail_ratio and weights == "none"))

    avg = averages(chosen, per_class)
    heads = tail_head(per_class)
    report.findings(weighting_findings(avg, heads))
    report.table("average_metrics", avg.round(3), "Average test metrics per model",
                 "Over classes: accuracy = overall; macro means; median aggregated.")
    report.table("weighted_vs_unweighted", weighted_vs_unweighted(avg, heads).round(3),
                 "Weighted vs unweighted loss",
                 "Side by side per net and imbalance ratio; tail/head recall = mean over the 3 rarest / most "
                 "frequent training classes.")
    ref = reference("imbalance")
    if ref:
        src = pd.DataFrame(ref["values"], columns=[*ref["keys"], "reported"])
        src = src.pivot(index="metric", columns=["net", "class_weights"], values="reported")
        src.columns = [f"{net} [{w}]" for net, w in src.columns]
        report.table("source_averages", src.reset_index(), "The source's average metrics", f"{ref['note']}.")
    if meta["folds"].max() > 0:
        agg = last_epoch(classes[classes["split"] == "test"]).groupby("trial_id")["aggregated"].mean()
        report.table("kfold", fold_table(meta, chosen, agg).round(3), "K-fold",
                     "The best fold by validation score (its test numbers) and mean ± std over folds.")

    report.figure("recall_vs_frequency", recall_vs_frequency(per_class, tail_ratio),
                  f"Per-class test recall, imbalance_ratio={tail_ratio:g}",
                  "Bars: test recall per class; line: training images per class (log).", main=True)
    for ratio in ratios[::-1]:
        report.figure(f"confusion_rho-{ratio:g}", confusion_heatmaps(chosen, confusion, per_class, ratio),
                      f"Test confusion matrices, imbalance_ratio={ratio:g}", "Row-normalised.")
    if "://" in report.source:  # the checkpoints are files under <sweep>/tune/: read them where they lie
        report.text("> Kernel pictures are drawn from the sweep's checkpoints, which this report cannot read "
                    f"from {report.source}; build it from a local copy of the sweep to get them.")
    rows = [] if "://" in report.source else kernel_rows(report.source or report.outdir.parent, chosen, tail_ratio)
    if rows:
        report.figure("kernels_first_layer", init_vs_final([r[:3] for r in rows]), "First-layer kernels",
                      "At init (left) and after training (right), one RGB tile per filter.")
        for label, _, _, (name, weight) in rows:  # the deepest conv, per input channel, as the source drew it
            tag = label.split(" ")[0]
            report.figure(f"kernels_last_conv_{tag}", kernel_figure(weight, f"{label}: {name}", max_out=8),
                          f"{label}: last conv's kernels", "After training; filters x input channels.")
    else:
        report.text("No kernel pictures: no checkpoint with init weights (run with weight_snapshots=true).")
