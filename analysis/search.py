"""The "Search" section every study's report gets when its sweep sampled keys or stopped trials early.

A sweep records its search settings in sweep.json as "search" (sweeps/engine/search.py): which keys were
sampled and from what (`"lr": "loguniform:1e-05:1.0"`), the searcher (grid, random, optuna), the
scheduler (fifo, asha, hyperband, median, pbt), the metric and mode it optimised, and the search seed.
`build_search_section` turns that, the trials table and (PBT) the lineage table into:

- findings: the best config and what became of the trials, then (with the details) a sentence or two
  saying what searched and what stopped trials, in plain words;
- `search_space.png`: per sampled key, the final metric against the key's value (log axis for log
  distributions), one point per trial coloured by status: early-stopped trials hollow and labelled
  with the epochs they ran, diverged trials (no meaningful metric) on a row at the worse end (the bottom for
  an accuracy, the top for a loss); with a
  scheduler, one more panel of the metric by epoch, one line per trial;
- `search_status` (trials by status), `search_rungs` (early-stopped trials by epochs run),
  `search_best` (the best configs among completed trials, mean ± 95% CI over seeds where a config
  ran with several seeds) and, for PBT, `search_lineage` (exploits per trial and the path of each
  mutated key).

A plain grid sweep (nothing sampled, fifo) gets no section. Older sweeps have no "search" in
sweep.json: the trials' own `searcher` / `scheduler` / `search_seed` columns stand in, else nothing.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.document import Report  # noqa: E402
from analysis.results import open_store  # noqa: E402
from analysis.stats import cell_stats, format_cell  # noqa: E402
from analysis.tables import varying_keys  # noqa: E402
from sweeps.engine import schedulers  # noqa: E402  (the table imports Ray only to build a scheduler)

# How each status is drawn. `bottom`: always drawn on the no-metric row at the worse end of the y axis (its metric
# is NaN or meaningless); any other trial goes there only when its metric is NaN.
STYLES = {
    "completed": dict(color="tab:blue", marker="o", filled=True),
    "early_stopped": dict(color="tab:orange", marker="o", filled=False),
    "diverged": dict(color="tab:red", marker="x", filled=True, bottom=True),
    "error": dict(color="tab:gray", marker="s", filled=False),
    "stopped": dict(color="tab:purple", marker="v", filled=False),
    "running": dict(color="tab:green", marker=".", filled=True),
}
LOG_SPECS = ("loguniform", "qloguniform", "lograndint", "qlograndint")
BEST = 10  # rows of the best-config table
MANY = 10 ** 9  # min_n for count tables: they have no seed cells, so no seed warning


# --- reading what the sweep recorded ---------------------------------------------------------------------------

def search_settings(path: str, trials: pd.DataFrame) -> dict:
    """sweep.json's "search" dict; for a sweep without one, what the trials' own columns say; else {}."""
    try:
        info = open_store(path).read_json("sweep.json")
    except Exception:  # an older or hand-made sweep folder
        info = {}
    search = info.get("search") if isinstance(info, dict) else None
    if isinstance(search, dict):
        return search
    if "scheduler" not in trials and "searcher" not in trials:
        return {}
    first = trials.iloc[0]
    metric = "val_acc" if "val_acc" in trials and trials["val_acc"].notna().any() else "test_acc"
    return {"sampled": {}, "searcher": str(first.get("searcher", "grid")),
            "scheduler": str(first.get("scheduler", "fifo")), "metric": metric, "mode": "max",
            "search_seed": first.get("search_seed"), "from_trials": True}


def wanted(search: dict) -> bool:
    """A search section is written when keys were sampled or a scheduler other than fifo ran."""
    return bool(search) and (bool(search.get("sampled")) or search.get("scheduler", "fifo") != "fifo"
                             or search.get("searcher", "grid") not in ("grid", None))


# --- plain words --------------------------------------------------------------------------------------------------

def spec_text(spec) -> str:
    """'loguniform:1e-05:1.0' -> 'loguniform(1e-05, 1.0)'; anything else as recorded."""
    if isinstance(spec, str) and ":" in spec:
        kind, *args = spec.split(":")
        return f"{kind}({', '.join(args)})"
    return str(spec)


def is_log(spec) -> bool:
    return isinstance(spec, str) and spec.split(":", 1)[0] in LOG_SPECS


def metric_scale(metric: str) -> tuple[float, str]:
    """(factor, unit) for showing `metric`: accuracies in percent, losses as they are."""
    return (100.0, " (%)") if metric.endswith("_acc") else (1.0, "")


def searcher_text(search: dict) -> str:
    searcher, seed = search.get("searcher", "grid"), search.get("search_seed")
    seeded = f" (search seed {seed})" if seed is not None and not pd.isna(seed) else " (search seed not recorded)"
    if searcher == "random":
        draws = search.get("samples")
        cells = ("the same draws in every grid cell, so cells compare pair by pair" if search.get("constant_draws")
                 else "fresh draws in every grid cell")
        return (f"random search, {draws} draw(s) of the sampled keys per grid cell, {cells}" if draws
                else "random search") + seeded
    if searcher == "optuna":
        budget = search.get("trials")
        limit = search.get("max_concurrent")
        return ("Optuna (TPE, model-based: each trial's values chosen from the results so far)"
                + (f", {budget} trials" if budget else "") + (f", at most {limit} at once" if limit else "") + seeded)
    return f"{searcher} (every listed configuration run)" + seeded


def scheduler_text(search: dict) -> str:
    """The scheduler in words, with the values of the flags it read (sweeps/engine/schedulers.py's table)."""
    return schedulers.describe(search)


def mode_text(mode: str) -> str:
    return "lower is better" if mode == "min" else "higher is better"


# --- the section --------------------------------------------------------------------------------------------------

def build_search_section(report: Report, tables: dict, search: dict) -> None:
    """Add the Search section (text, figure, tables) to `report`; nothing for a plain grid sweep."""
    if not wanted(search):
        return
    report.section("Search")
    trials = tables["trials"]
    metric = search.get("metric") or "test_acc"
    mode = search.get("mode") or ("min" if metric.endswith("_loss") else "max")
    if metric not in trials.columns:
        report.findings(f"The sweep searched on {metric}, which the trials table does not hold: "
                        "no search figure or ranking.")
        return
    sampled = {k: v for k, v in (search.get("sampled") or {}).items() if k in trials.columns}
    counts = trials["status"].value_counts()
    status_words = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    sampled_words = "; ".join(f"`{k}` ~ {spec_text(v)}" for k, v in sampled.items()) or "nothing (grid values only)"
    scheduler = search.get("scheduler", "fifo")
    seed = search.get("search_seed")
    report.header["search"] = (f"{search.get('searcher', 'grid')} search, scheduler {scheduler}, metric {metric} "
                               f"({mode}), search seed {'not recorded' if seed is None or pd.isna(seed) else seed}")
    adaptive = [w for w, on in (("the scheduler", scheduler != "fifo"),
                                ("the searcher", search.get("searcher") == "optuna")) if on]
    used = (f"{' and '.join(adaptive)} saw it after every epoch" if adaptive
            else "nothing adapted to it during the sweep (random draws, no early stopping)")
    intro = (f"**Search and early stopping.** Searcher: {searcher_text(search)}. Sampled: {sampled_words}. "
             f"Scheduler: {scheduler_text(search)}. Metric: `{metric}`, mode {mode} ({mode_text(mode)}): "
             f"{used}; below, trials are ranked by its final value. Trials: {len(trials)} ({status_words}).")
    notes = []
    if counts.get("early_stopped", 0):
        notes.append("Early-stopped trials ran fewer epochs than planned: their metric is not comparable with a "
                     "completed trial's, so the best-config table ranks completed trials only.")
    if counts.get("diverged", 0):
        notes.append("Diverged trials (NaN/inf loss) have no meaningful metric: the figure draws them on a row "
                     f"at the {'top' if mode == 'min' else 'bottom'} (the worse end) of each panel, and no table "
                     "ranks them.")
    if scheduler == "pbt":
        notes.append("PBT changes hyperparameters inside a running trial: a trial's config columns (and the "
                     "figure's x values) are its starting values; the lineage table gives the exploits.")
    if search.get("from_trials"):
        notes.append("sweep.json records no search settings: searcher, scheduler and seed are read from the "
                     "trials table; the metric shown is a guess and the sampled keys are unknown.")
    report.text(intro + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else ""))

    scale, unit = metric_scale(metric)
    report.figure("search_space", search_figure(trials, tables.get("epochs"), sampled, metric, mode, scheduler),
                  f"Final {metric}{unit} per sampled value", "One point per trial, colour = status.", main=True)
    status_table(report, trials)
    best = best_table(report, trials, sampled, metric, mode, scale, unit)
    report.findings(search_findings(trials, best, metric, unit, mode))
    lineage = tables.get("lineage")
    if lineage is not None and len(lineage):
        lineage_table(report, trials, lineage, metric, scale, unit)


def search_findings(trials: pd.DataFrame, best: pd.DataFrame, metric: str, unit: str, mode: str) -> str:
    """The best config found and what became of the trials, in two lines."""
    counts = trials["status"].value_counts()
    fates = ", ".join(f"{int(counts[s])} {s}" for s in [*STYLES, *sorted(set(counts.index) - set(STYLES))]
                      if s in counts)
    lines = [f"- Trials: {len(trials)} ({fates})."]
    if len(best):
        top = best.iloc[0]
        keys = [c for c in best.columns if c not in ("rank", f"{metric}{unit}", "n", "seeds", "mean", "ci")]
        where = ", ".join(f"{k}={top[k]:.3g}" if isinstance(top[k], float) else f"{k}={top[k]}" for k in keys)
        lines.insert(0, f"- Best config by final {metric} ({mode_text(mode)}), among completed trials: "
                        f"{where or 'the one config'}: {metric}{unit} {top[f'{metric}{unit}']}.")
    return "\n".join(lines)


def status_table(report: Report, trials: pd.DataFrame) -> None:
    counts = trials["status"].value_counts()
    order = [s for s in STYLES if s in counts] + sorted(s for s in counts.index if s not in STYLES)
    table = pd.DataFrame({"status": order, "trials": [int(counts[s]) for s in order]})
    table["share (%)"] = (100 * table["trials"] / table["trials"].sum()).round(1)
    report.table("search_status", table, "Trials by status", min_n=MANY)
    early = trials[trials["status"] == "early_stopped"]
    if not len(early) or "epochs_completed" not in early:
        return
    rungs = early["epochs_completed"].value_counts().sort_index()
    planned = early["epochs"].max() if "epochs" in early else math.nan
    rung_table = pd.DataFrame({"epochs run": rungs.index.astype(int), "early-stopped trials": rungs.values.astype(int)})
    about = "Early-stopped trials by the epoch they stopped after (the scheduler's rungs)"
    if not pd.isna(planned):
        about += f"; trials planned {int(planned)} epochs"
    report.table("search_rungs", rung_table, "Early stops by rung", about + ".", min_n=MANY)


def best_table(report: Report, trials: pd.DataFrame, sampled: dict, metric: str, mode: str, scale: float,
               unit: str) -> pd.DataFrame:
    """The best configs among completed trials; configs that ran with several seeds as mean ± 95% CI (n)."""
    done = trials[(trials["status"] == "completed") & trials[metric].notna()].copy()
    if not len(done):
        report.text(f"**Best configs.** No trial completed with a {metric}: nothing to rank.")
        return pd.DataFrame()
    keys = varying_keys(trials, list(sampled))
    done["_value"] = done[metric] * scale
    if keys:
        stats = cell_stats(done, keys, "_value")
    else:  # every trial shares its config: one cell
        stats = cell_stats(done.assign(_all="all"), ["_all"], "_value").drop(columns="_all")
    seeds = (done.groupby(keys, dropna=False)["seed"].apply(lambda s: ", ".join(map(str, sorted(s.unique()))))
             .reset_index(name="seeds") if keys and "seed" in done else None)
    if seeds is not None:
        stats = stats.merge(seeds, on=keys, how="left")
    stats = stats.sort_values("mean", ascending=(mode == "min"), kind="stable").head(BEST).reset_index(drop=True)
    repeated = bool((stats["n"] > 1).any())
    label = f"{metric}{unit}"
    if repeated:
        stats.insert(0, label, [format_cell(m, c, n) for m, c, n in zip(stats["mean"], stats["ci"], stats["n"])])
    else:
        stats.insert(0, label, stats["mean"].round(2))
    stats.insert(0, "rank", range(1, len(stats) + 1))
    shown = stats[["rank", *keys, label, "n", *(["seeds"] if "seeds" in stats else []), "mean", "ci"]]
    how = ("configs that ran with several seeds as mean ± 95% CI half-width (n seeds)" if repeated
           else "one trial per config (no config repeated with another seed): single values, no CI")
    report.table("search_best", shown, f"Best {len(shown)} config(s) by final {metric}",
                 f"Among {len(done)} completed trials, {mode_text(mode)}; {how}.", main=True,
                 min_n=int(stats["n"].min()) if repeated else MANY)
    return shown


def lineage_table(report: Report, trials: pd.DataFrame, lineage: pd.DataFrame, metric: str, scale: float,
                  unit: str) -> None:
    """PBT: per trial, how often it copied another trial (exploits) and where each mutated key went."""
    fixed = {"trial_id", "epoch", "source_trial_id", "source_epoch", "sweep"}
    mutated = [c for c in lineage.columns if c not in fixed and pd.api.types.is_numeric_dtype(lineage[c])]
    lineage = lineage.sort_values(["trial_id", "epoch"])
    rows = []
    for _, trial in trials.sort_values("trial_id").iterrows():
        steps = lineage[lineage["trial_id"] == trial["trial_id"]]
        row = {"trial_id": trial["trial_id"], "status": trial["status"], "exploits": len(steps),
               "at epochs": ", ".join(str(int(e)) for e in steps["epoch"]) or "-",
               "sources": int(steps["source_trial_id"].nunique()) if "source_trial_id" in steps else 0}
        for key in mutated:
            start = trial.get(key, math.nan)
            path = [v for v in [start, *steps[key].tolist()] if not pd.isna(v)]
            row[f"{key} start"] = start
            row[f"{key} end"] = path[-1] if path else math.nan
            row[f"{key} min"] = min(path) if path else math.nan
            row[f"{key} max"] = max(path) if path else math.nan
        row[f"final {metric}{unit}"] = trial.get(metric, math.nan) * scale
        rows.append(row)
    table = pd.DataFrame(rows)
    report.table("search_lineage", table, f"PBT exploits per trial ({len(lineage)} in all)",
                 "The epochs a trial copied another trial's checkpoint, from how many trials, and each mutated key "
                 "from its start to its end (min/max over the path).", min_n=MANY)


# --- the figure -------------------------------------------------------------------------------------------------

def search_figure(trials: pd.DataFrame, epochs, sampled: dict, metric: str, mode: str, scheduler: str):
    """Per sampled key: final metric against the key's value; with a scheduler, the metric by epoch per trial.
    Trials without a meaningful metric (diverged, or NaN) sit on a row at the worse end of the y axis."""
    scale, unit = metric_scale(metric)
    curves = (scheduler != "fifo" or (trials["status"] == "early_stopped").any()) and epochs is not None \
        and len(epochs) and metric in epochs and epochs[metric].notna().any()
    panels = list(sampled) + (["_curves"] if curves else [])
    if not panels:  # a scheduler without curves to draw: final metric against epochs run
        panels = ["epochs_completed"] if "epochs_completed" in trials else []
    ncols = min(max(len(panels), 1), 3)
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.2 * nrows), squeeze=False, sharey=True)
    y = trials[metric] * scale
    bottom_mask = (trials["status"] == "diverged") | y.isna() | ~np.isfinite(y.astype(float))
    finite = y[~bottom_mask]
    if len(epochs if epochs is not None else []) and curves:
        per_epoch = epochs[metric].astype(float) * scale
        finite = pd.concat([finite, per_epoch[np.isfinite(per_epoch)]])
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = (hi - lo) or max(abs(hi), 1.0) * 0.1
    # The row for trials without a meaningful metric, past a dotted line at the worse end of the axis:
    # the bottom for accuracies (mode max), the top for losses (mode min).
    sign = 1 if mode == "min" else -1
    floor = (hi if sign > 0 else lo) + sign * 0.14 * span
    row = "top" if sign > 0 else "bottom"
    has_floor = bool(bottom_mask.any())
    for ax, panel in zip(axes.flat, panels):
        if panel == "_curves":
            curve_panel(ax, trials, epochs, metric, scale, floor)
            ax.set_ylabel(f"{metric}{unit} at each epoch")
        else:
            scatter_panel(ax, trials, panel, sampled.get(panel), y, bottom_mask, floor, span)
            ax.set_ylabel(f"final {metric}{unit}")
            if scheduler == "pbt":
                ax.set_xlabel(f"{panel} at the trial's start (PBT changes it later)"
                              + (f"  ~ {spec_text(sampled[panel])}" if panel in sampled else ""))
        if has_floor:
            ax.axhline(floor - sign * 0.07 * span, color="0.6", lw=0.8, ls=":")
        low, high = (min(lo, floor), max(hi, floor)) if has_floor else (lo, hi)
        ax.set_ylim(low - 0.07 * span, high + 0.07 * span)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[1:]:
        if ax.get_subplotspec().colspan.start:  # shared y: one label per row, on the left
            ax.set_ylabel("")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    counts = trials["status"].value_counts()
    handles = []
    for status, style in STYLES.items():
        if status not in counts:
            continue
        label = f"{status} ({counts[status]})"
        if status == "early_stopped":
            label += ": hollow, number = epochs run (×k: k trials)"
        if style.get("bottom"):
            label += f": no meaningful metric, drawn on the {row} row"
        elif bottom_mask[trials["status"] == status].any():
            label += f": {int(bottom_mask[trials['status'] == status].sum())} without a metric, on the {row} row"
        handles.append(Line2D([], [], ls="none", marker=style["marker"], color=style["color"], ms=7,
                              mfc=style["color"] if style["filled"] else "none", label=label))
    ncol = len(handles) if len(handles) <= 3 else 2
    fig.legend(handles=handles, loc="lower center", ncol=max(ncol, 1), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(f"Search: final {metric}{unit} per trial ({mode_text(mode)}); scheduler {scheduler}")
    legend_rows = math.ceil(len(handles) / max(ncol, 1))
    fig.tight_layout(rect=(0, min(0.3, (0.035 + 0.03 * legend_rows) / nrows ** 0.5), 1, 1))
    return fig


def style_of(status: str) -> dict:
    return STYLES.get(status, dict(color="black", marker="d", filled=False))


def label_points(ax, x: pd.Series, y: pd.Series, tags: pd.Series, colour, span: float) -> None:
    """Label points that share a position once: 'tag' (the epochs an early-stopped trial ran), with 'x k' when
    k trials coincide; labels at one x that would overlap are stacked upwards."""
    frame = pd.DataFrame({"x": x.to_numpy(), "y": y.round(6).to_numpy(),
                          "tag": tags.map(lambda t: "" if pd.isna(t) else str(int(t)) if isinstance(t, (int, float))
                                          else str(t)).to_numpy()})
    groups = frame.groupby(["x", "y", "tag"], sort=True).size().reset_index(name="k")
    if len(groups) > 80:  # too many to read: the colour and the legend say enough
        return
    groups["text"] = [" ".join(p for p in (t, f"×{k}" if k > 1 else "") if p)
                      for t, k in zip(groups["tag"], groups["k"])]
    spots = groups.groupby(["x", "y"], sort=True)["text"].agg(lambda t: ", ".join(p for p in t if p)).reset_index()
    for _, at_x in spots.groupby("x", sort=False):
        last, bump = None, 0
        for _, g in at_x.sort_values("y").iterrows():
            bump = bump + 8 if last is not None and abs(g["y"] - last) < 0.04 * span else 0
            last = g["y"]
            if g["text"]:
                ax.annotate(g["text"], (g["x"], g["y"]), xytext=(5, bump - 3), textcoords="offset points",
                            fontsize=7, color=colour)


def scatter_panel(ax, trials: pd.DataFrame, key: str, spec, y: pd.Series, bottom: pd.Series, floor: float,
                  span: float) -> None:
    x = trials[key]
    numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
    if not numeric:  # a categorical choice: one position per value, jittered a little so points do not hide
        cats = sorted(x.astype(str).unique())
        pos = x.astype(str).map({c: i for i, c in enumerate(cats)}).astype(float)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(pos))
        x = pos + jitter
        ax.set_xticks(range(len(cats)), cats)
    for status, part in trials.groupby("status", sort=False):
        style = style_of(status)
        idx = part.index
        ys = np.where(bottom[idx], floor, y[idx])
        if style["filled"]:  # filled markers, and line markers (x) that have no face
            ax.scatter(x[idx], ys, marker=style["marker"], s=34, linewidths=1.3, zorder=3, color=style["color"])
        else:
            ax.scatter(x[idx], ys, marker=style["marker"], s=34, linewidths=1.3, zorder=3, facecolors="none",
                       edgecolors=style["color"])
        if status == "early_stopped" and "epochs_completed" in part:
            label_points(ax, x[idx], pd.Series(ys, index=idx), part["epochs_completed"], style["color"], span)
        elif style.get("bottom") or bottom[idx].any():
            on_floor = idx[bottom[idx]]
            label_points(ax, x[on_floor], pd.Series(floor, index=on_floor), pd.Series("", index=on_floor),
                         style["color"], span)
    if numeric and is_log(spec) and (x > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(f"{key}" + (f"  ~ {spec_text(spec)}" if spec else ""))
    ax.set_title(f"final metric vs {key}" + (" (log axis)" if numeric and is_log(spec) else ""), fontsize=10)


def curve_panel(ax, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, scale: float, floor: float) -> None:
    """The metric by epoch, one line per trial, colour = the trial's final status; a diverged trial's last
    epoch is drawn on the no-metric row (`floor`)."""
    status = trials.set_index("trial_id")["status"]
    for tid, part in epochs.sort_values(["trial_id", "epoch"]).groupby("trial_id", sort=True):
        st = status.get(tid, "running")
        style = style_of(st)
        ys = part[metric].astype(float) * scale
        ok = np.isfinite(ys)
        ax.plot(part["epoch"][ok], ys[ok], color=style["color"], lw=1, alpha=0.55)
        last_x = part["epoch"].iloc[-1]
        if st == "diverged" or not ok.iloc[-1]:
            ax.scatter([last_x], [floor], marker=style["marker"], color=style["color"], s=30, zorder=3)
        elif st == "early_stopped":
            ax.scatter([last_x], [ys.iloc[-1]], marker="o", facecolors="none", edgecolors=style["color"], s=30,
                       zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_title(f"{metric} by epoch, one line per trial", fontsize=10)
